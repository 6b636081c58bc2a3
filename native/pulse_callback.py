"""PulseAudio stream callbacks compiled to machine code (Numba ``cfunc``): the GIL-free audio path
without PortAudio or ALSA's ``pulse`` plugin in between.

libpulse calls them on its threaded mainloop's thread (``rtvc.pulse``): the write callback when the
server asks a playback stream for ``nbytes``, the read callback when a record stream has data, the
notify callbacks on a server-side underflow / overflow. They never enter the Python interpreter:
samples move between the server's memory blocks and the SPSC rings through the same
``_callback_body`` as the PortAudio callback (``pa_callback.py``), with its counters and its
eventfd wake-up, so the worker cannot tell the two hosts apart.

``userdata`` points to an int64 *pulse block* (``PB`` offsets below): the address of the
``pa_callback`` control block, the addresses of the libpulse functions the callbacks call (passed
in, so the compiled code stays cacheable), the frame size in bytes and two scratch words for the
out-parameters of ``pa_stream_peek`` / ``pa_stream_begin_write``.

A write request is answered with what the output ring holds, up to the request. What the ring
lacks is *deferred* (``out_deferred`` counts the frames), not replaced by silence, as long as the
server keeps at least ``keep`` frames queued (``tlength`` minus the request is what it holds):
requests do not come in whole blocks (a 44.1 kHz sink asks a 48 kHz stream for 262 frames now and
240 then), and the rest is asked for again with the next request, a fraction of a block later.
Only below ``keep`` is the gap filled with silence, counted as a ring underflow as on the
PortAudio path (the live output margin then widens). Priming: the first request asks for the
whole target buffer at once; its silence goes *ahead of* the ring's audio and counts as
``pa_priming``.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import carray, cfunc, njit, types

from .intrinsics import call_i32_p, call_i32_ppp, call_pa_write, int_to_voidptr as _int_to_voidptr
from .intrinsics import voidptr_to_int as _voidptr_to_int
from .pa_callback import CNT, CTL_SIZE, N_COUNTERS, _callback_body

__all__ = ["PB", "PB_SIZE", "PULSE_FUNCTIONS", "make_pulse_block", "pulse_read_cb", "pulse_write_cb",
           "pulse_underflow_cb", "pulse_overflow_cb"]

PB = {"ctl": 0, "peek": 1, "drop": 2, "begin_write": 3, "write": 4, "cancel_write": 5, "frame_bytes": 6,
      "data": 7, "nbytes": 8, "primed": 9, "tlength": 10, "keep": 11}
PB_SIZE = 12
PULSE_FUNCTIONS = ("pa_stream_peek", "pa_stream_drop", "pa_stream_begin_write", "pa_stream_write",
                   "pa_stream_cancel_write")
"""The libpulse functions the callbacks call, in ``PB`` order from ``peek``."""

_IN_OVERFLOW = CNT["pa_input_overflow"]
_PRIMING = CNT["pa_priming"]
_OUT_UNDERFLOW = CNT["pa_output_underflow"]
_DEFERRED = CNT["out_deferred"]

_SIZE_T = types.uint64 if ctypes.sizeof(ctypes.c_size_t) == 8 else types.uint32
_REQUEST_SIG = types.void(types.voidptr, _SIZE_T, types.voidptr)
_NOTIFY_SIG = types.void(types.voidptr, types.voidptr)


@njit(nogil=True, cache=True)
def _read_body(s: int, pb_addr: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    fb = pb[6]
    while True:
        pb[7] = 0
        pb[8] = 0
        if call_i32_ppp(pb[1], s, pb_addr + 7 * 8, pb_addr + 8 * 8) < 0:
            return
        n = pb[8]
        if n <= 0:
            return  # nothing buffered (and nothing to drop)
        if pb[7] != 0:
            _callback_body(pb[7], 0, n // fb, 0, pb[0])
        else:  # a hole in the record stream: count it as an input overflow (samples the server lost)
            ctl = carray(_int_to_voidptr(pb[0]), (CTL_SIZE,), np.int64)
            cnt = carray(_int_to_voidptr(ctl[9]), (N_COUNTERS,), np.int64)
            cnt[_IN_OVERFLOW] += 1
        call_i32_p(pb[2], s)


@njit(nogil=True, cache=True)
def _put(s: int, pb_addr: int, frames: int, zeros_first: int) -> int:
    """Write ``frames`` frames to the server (in as many ``pa_stream_begin_write`` pieces as it
    hands out): ``zeros_first`` frames of silence, then from the ring (``_callback_body``: what
    the ring lacks is zero-filled and counted). Returns the frames written."""
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    fb = pb[6]
    done = 0
    while done < frames:
        pb[7] = 0
        pb[8] = (frames - done) * fb
        if call_i32_ppp(pb[3], s, pb_addr + 7 * 8, pb_addr + 8 * 8) < 0:
            break
        k = min(pb[8] // fb, frames - done)
        if k <= 0 or pb[7] == 0:
            call_i32_p(pb[5], s)
            break
        z = min(k, max(0, zeros_first - done))
        if z > 0:
            y = carray(_int_to_voidptr(pb[7]), (z * fb // 4,), np.float32)
            y[:] = np.float32(0.0)
        if k > z:
            _callback_body(0, pb[7] + z * fb, k - z, 0, pb[0])
        if call_pa_write(pb[4], s, pb[7], k * fb) < 0:
            break
        done += k
    return done


@njit(nogil=True, cache=True)
def _write_body(s: int, nbytes: int, pb_addr: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    ctl = carray(_int_to_voidptr(pb[0]), (CTL_SIZE,), np.int64)
    cnt = carray(_int_to_voidptr(ctl[9]), (N_COUNTERS,), np.int64)
    idx = carray(_int_to_voidptr(ctl[5]), (2,), np.int64)
    req = nbytes // pb[6]
    if req <= 0:
        return
    queued = max(0, pb[10] - req)  # what the server still holds of its target buffer
    avail = idx[0] - idx[1]
    audio = min(avail, req)
    fill = min(req - audio, max(0, pb[11] - queued - audio))  # silence only where the server would run dry
    lead = 0
    if pb[9] == 0:  # the first request: silence ahead of the ring's audio, not an underflow
        pb[9] = 1
        lead = fill
        if lead > 0:
            cnt[_PRIMING] += 1
    done = _put(s, pb_addr, audio + fill, lead)
    if done < req:
        cnt[_DEFERRED] += req - done


@njit(nogil=True, cache=True)
def _count(pb_addr: int, which: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    ctl = carray(_int_to_voidptr(pb[0]), (CTL_SIZE,), np.int64)
    cnt = carray(_int_to_voidptr(ctl[9]), (N_COUNTERS,), np.int64)
    cnt[which] += 1


@cfunc(_REQUEST_SIG, nopython=True, nogil=True, cache=True)
def pulse_read_cb(s, nbytes, userdata):
    _read_body(_voidptr_to_int(s), _voidptr_to_int(userdata))


@cfunc(_REQUEST_SIG, nopython=True, nogil=True, cache=True)
def pulse_write_cb(s, nbytes, userdata):
    _write_body(_voidptr_to_int(s), np.int64(nbytes), _voidptr_to_int(userdata))


@cfunc(_NOTIFY_SIG, nopython=True, nogil=True, cache=True)
def pulse_underflow_cb(s, userdata):
    """The server ran out of this playback stream's audio."""
    _count(_voidptr_to_int(userdata), _OUT_UNDERFLOW)


@cfunc(_NOTIFY_SIG, nopython=True, nogil=True, cache=True)
def pulse_overflow_cb(s, userdata):
    """The server dropped audio of this stream (a record stream read too late)."""
    _count(_voidptr_to_int(userdata), _IN_OVERFLOW)


def make_pulse_block(ctl: np.ndarray, functions: dict[str, int], *, channels: int, tlength: int = 0,
                     keep: int = 0) -> np.ndarray:
    """The int64 pulse block for one stream: ``ctl`` (a ``make_control_block`` array, which must
    outlive the stream as this block must), ``functions`` the addresses of ``PULSE_FUNCTIONS``
    by name, ``channels`` of the stream's float32 samples; playback: the server's target buffer
    ``tlength`` and the least it must keep queued, ``keep`` (frames; set once the server has
    granted the buffer, before the stream starts)."""
    if ctl.dtype != np.int64 or ctl.ndim != 1 or not ctl.flags.c_contiguous:
        raise ValueError(f"ctl must be a contiguous int64 control block, got {ctl.dtype} {ctl.shape}")
    missing = [f for f in PULSE_FUNCTIONS if not functions.get(f)]
    if missing:
        raise ValueError(f"libpulse function address(es) missing: {missing}")
    if channels < 1:
        raise ValueError(f"channels {channels} is out of range; expected >= 1")
    pb = np.zeros(PB_SIZE, np.int64)
    pb[PB["ctl"]] = ctl.ctypes.data
    for i, f in enumerate(PULSE_FUNCTIONS):
        pb[PB["peek"] + i] = functions[f]
    pb[PB["frame_bytes"]] = 4 * channels
    pb[PB["tlength"]], pb[PB["keep"]] = tlength, keep
    return pb
