"""A PortAudio stream callback compiled to machine code (a Numba ``cfunc``): the GIL-free
audio path.

PortAudio calls it on its real-time thread; it never enters the Python interpreter, so a
garbage collection, the websocket server or a model load holding the GIL cannot delay it. It
only moves samples between the device buffers and two SPSC rings (see ``ring.py``) and counts
under/overflows; the worker thread runs the pipeline.

``user_data`` points to an int64 control block (``CTL_*`` offsets below) that holds the
addresses of the rings and of a counters array; the arrays are owned by the Python side and
must outlive the stream. Publication order: samples are copied, then a fence, then the
owner's counter is stored, so the other side never sees a counter ahead of the data.

Where the control block names an eventfd (``wake_fd`` >= 0, Linux), the input side then writes
1 to it once the ring holds at least ``wake_min`` samples: the worker sleeps in ``poll`` on that
descriptor and wakes the moment a block's worth of input is there, instead of polling the ring
(``wake_min`` 0: after every callback; a PulseAudio monitor source delivers ~0.5 ms pieces).
``write`` on an eventfd never blocks and allocates nothing.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import carray, cfunc, njit, types

from .intrinsics import call_write, fence, int_to_voidptr as _int_to_voidptr, voidptr_to_int as _voidptr_to_int

__all__ = ["CTL_SIZE", "CTL", "CNT", "N_COUNTERS", "libc_write_address", "make_control_block", "pa_callback"]

# control block layout (int64 words)
CTL = {"in_buf": 0, "in_size": 1, "in_idx": 2, "out_buf": 3, "out_size": 4, "out_idx": 5,
       "in_channels": 6, "in_select": 7, "out_channels": 8, "counters": 9, "out_gain_q16": 10,
       "wake_fd": 11, "wake_write": 12, "wake_one": 13, "wake_min": 14}
CTL_SIZE = 15
# counters layout (int64 words)
CNT = {"callbacks": 0, "frames": 1, "in_ring_full": 2, "out_ring_empty": 3, "pa_input_underflow": 4,
       "pa_input_overflow": 5, "pa_output_underflow": 6, "pa_output_overflow": 7, "pa_priming": 8,
       "in_ring_full_events": 9, "out_ring_empty_events": 10}
"""``in_ring_full`` / ``out_ring_empty`` count frames; the ``*_events`` count callbacks that hit it."""
N_COUNTERS = 12

# PaStreamCallbackFlags bits
_IN_UNDER, _IN_OVER, _OUT_UNDER, _OUT_OVER, _PRIMING = 1, 2, 4, 8, 16


_ULONG = types.uint64 if ctypes.sizeof(ctypes.c_ulong) == 8 else types.uint32
_SIG = types.int32(types.voidptr, types.voidptr, _ULONG, types.voidptr, _ULONG, types.voidptr)


@njit(nogil=True, cache=True)
def _callback_body(inp: int, outp: int, frames: int, flags: int, ctl_addr: int) -> int:
    ctl = carray(_int_to_voidptr(ctl_addr), (CTL_SIZE,), np.int64)
    cnt = carray(_int_to_voidptr(ctl[9]), (N_COUNTERS,), np.int64)
    cnt[0] += 1
    cnt[1] += frames
    if flags & _IN_UNDER:
        cnt[4] += 1
    if flags & _IN_OVER:
        cnt[5] += 1
    if flags & _OUT_UNDER:
        cnt[6] += 1
    if flags & _OUT_OVER:
        cnt[7] += 1
    if flags & _PRIMING:
        cnt[8] += 1
    if inp != 0:
        nch = ctl[6]
        sel = ctl[7]
        x = carray(_int_to_voidptr(inp), (frames * nch,), np.float32)
        buf = carray(_int_to_voidptr(ctl[0]), (ctl[1],), np.float32)
        idx = carray(_int_to_voidptr(ctl[2]), (2,), np.int64)
        mask = ctl[1] - 1
        w = idx[0]
        free = ctl[1] - (w - idx[1])
        n = min(free, frames)
        inv = np.float32(1.0 / nch)
        for i in range(n):
            if sel >= 0:
                v = x[i * nch + sel]
            else:
                v = np.float32(0.0)
                for c in range(nch):
                    v += x[i * nch + c]
                v *= inv
            buf[(w + i) & mask] = v
        if n < frames:
            cnt[2] += frames - n
            cnt[9] += 1
        fence()
        idx[0] = w + n
        if ctl[11] >= 0 and w + n - idx[1] >= ctl[14]:
            call_write(ctl[12], ctl[11], ctl_addr + 13 * 8, 8)
    if outp != 0:
        och = ctl[8]
        y = carray(_int_to_voidptr(outp), (frames * och,), np.float32)
        buf = carray(_int_to_voidptr(ctl[3]), (ctl[4],), np.float32)
        idx = carray(_int_to_voidptr(ctl[5]), (2,), np.int64)
        mask = ctl[4] - 1
        r = idx[1]
        fence()
        n = min(idx[0] - r, frames)
        for i in range(n):
            v = buf[(r + i) & mask]
            for c in range(och):
                y[i * och + c] = v
        for i in range(n, frames):
            for c in range(och):
                y[i * och + c] = np.float32(0.0)
        if n < frames:
            cnt[3] += frames - n
            cnt[10] += 1
        fence()
        idx[1] = r + n
    return 0  # paContinue


@cfunc(_SIG, nopython=True, nogil=True, cache=True)
def pa_callback(inp, outp, frames, time_info, flags, user_data):
    return _callback_body(_voidptr_to_int(inp), _voidptr_to_int(outp), np.int64(frames), np.int64(flags),
                          _voidptr_to_int(user_data))


def libc_write_address() -> int:
    """Address of libc's ``write`` (0 where there is no such C library, e.g. Windows)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).write, ctypes.c_void_p).value or 0
    except (OSError, AttributeError, TypeError):
        return 0


def make_control_block(in_buf: np.ndarray, in_idx: np.ndarray, out_buf: np.ndarray, out_idx: np.ndarray,
                       counters: np.ndarray, *, in_channels: int, in_select: int, out_channels: int,
                       wake_fd: int | None = None, wake_min: int = 0) -> np.ndarray:
    """Fill an int64 control block with the arrays' addresses (the arrays must outlive the stream);
    ``wake_fd``: an eventfd the input side signals after a callback that leaves at least
    ``wake_min`` samples in the input ring (None: no signal)."""
    for name, a, dt in (("in_buf", in_buf, np.float32), ("out_buf", out_buf, np.float32)):
        if a.dtype != dt or not a.flags.c_contiguous or a.shape[0] & (a.shape[0] - 1):
            raise ValueError(f"{name} must be a contiguous float32 array of power-of-two length, got {a.dtype} {a.shape}")
    for name, a, n in (("in_idx", in_idx, 2), ("out_idx", out_idx, 2), ("counters", counters, N_COUNTERS)):
        if a.dtype != np.int64 or a.shape[0] < n or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a contiguous int64 array of length >= {n}")
    ctl = np.zeros(CTL_SIZE, np.int64)
    ctl[0], ctl[1], ctl[2] = in_buf.ctypes.data, in_buf.shape[0], in_idx.ctypes.data
    ctl[3], ctl[4], ctl[5] = out_buf.ctypes.data, out_buf.shape[0], out_idx.ctypes.data
    ctl[6], ctl[7], ctl[8], ctl[9] = in_channels, in_select, out_channels, counters.ctypes.data
    write = libc_write_address() if wake_fd is not None else 0
    ctl[11] = int(wake_fd) if write else -1
    ctl[12], ctl[13], ctl[14] = write, 1, max(0, int(wake_min))
    return ctl
