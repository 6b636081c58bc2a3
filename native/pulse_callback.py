"""PulseAudio stream callbacks compiled to machine code (Numba ``cfunc``): the GIL-free audio path
without PortAudio or ALSA's ``pulse`` plugin in between.

libpulse calls them on its threaded mainloop's thread (``rtvc.audio.pulse``): the write callback when the
server asks a playback stream for ``nbytes``, the read callback when a record stream has data, the
notify callbacks on a server-side underflow / overflow. They never enter the Python interpreter:
samples move between the server's memory blocks and the SPSC rings through the same
``_callback_body`` as the PortAudio callback (``pa_callback.py``), with its counters and its
eventfd wake-up, so the worker cannot tell the two hosts apart.

``userdata`` points to an int64 *pulse block* (``PB`` offsets below): the address of the
``pa_callback`` control block, the addresses of the libpulse functions the callbacks call (passed
in, so the compiled code stays cacheable), the frame size in bytes, two scratch words for the
out-parameters of ``pa_stream_peek`` / ``pa_stream_begin_write``, and the stream's and the
connection's last state.

A write request is answered in full, as a PortAudio callback is: from the output ring, and what
the ring lacks as silence, counted as a ring underflow (the live output margin then widens).
(Answering with only what the ring holds and leaving the rest for the next request, half a block
later, while the server still held 1.25 blocks, was measured and dropped: 5-7 underflows a
minute against 1-3, aria at 5 ms blocks on the 2-core VM.) Priming: the first request asks for
the whole target buffer at once; its silence goes *ahead of* the ring's audio and counts as
``pa_priming``.

The state callbacks store the stream's and the connection's state in the pulse block whenever
they change, so nothing outside the mainloop needs its lock while the stream runs: a Python
thread that took the lock and then waited for the GIL (behind a garbage collection) would hold up
every callback meanwhile.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import carray, cfunc, njit, types

from .intrinsics import call_i32_p, call_i32_ppp, call_pa_write, int_to_voidptr as _int_to_voidptr
from .intrinsics import voidptr_to_int as _voidptr_to_int
from .pa_callback import CNT, CTL_SIZE, N_COUNTERS, _callback_body

__all__ = ["PB", "PB_SIZE", "PULSE_FUNCTIONS", "make_pulse_block", "pulse_read_cb", "pulse_write_cb",
           "pulse_underflow_cb", "pulse_overflow_cb", "pulse_stream_state_cb", "pulse_context_state_cb"]

PB = {"ctl": 0, "peek": 1, "drop": 2, "begin_write": 3, "write": 4, "cancel_write": 5, "frame_bytes": 6,
      "data": 7, "nbytes": 8, "primed": 9, "stream_get_state": 10, "context_get_state": 11, "stream_state": 12,
      "context_state": 13}
PB_SIZE = 14
PULSE_FUNCTIONS = ("pa_stream_peek", "pa_stream_drop", "pa_stream_begin_write", "pa_stream_write",
                   "pa_stream_cancel_write", "pa_stream_get_state", "pa_context_get_state")
"""The libpulse functions the callbacks call (``make_pulse_block`` puts each in its ``PB`` slot)."""

_IN_OVERFLOW = CNT["pa_input_overflow"]
_PRIMING = CNT["pa_priming"]
_OUT_UNDERFLOW = CNT["pa_output_underflow"]

_SIZE_T = types.uint64 if ctypes.sizeof(ctypes.c_size_t) == 8 else types.uint32
_REQUEST_SIG = types.void(types.voidptr, _SIZE_T, types.voidptr)
_NOTIFY_SIG = types.void(types.voidptr, types.voidptr)


@njit(nogil=True, cache=True)
def _count(pb_addr: int, which: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    ctl = carray(_int_to_voidptr(pb[0]), (CTL_SIZE,), np.int64)
    cnt = carray(_int_to_voidptr(ctl[9]), (N_COUNTERS,), np.int64)
    cnt[which] += 1


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
            _count(pb_addr, _IN_OVERFLOW)
        call_i32_p(pb[2], s)


@njit(nogil=True, cache=True)
def _put(s: int, pb_addr: int, frames: int, zeros_first: int) -> None:
    """Write ``frames`` frames to the server (in as many ``pa_stream_begin_write`` pieces as it
    hands out): ``zeros_first`` frames of silence, then from the ring (``_callback_body``: what
    the ring lacks is zero-filled and counted)."""
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


@njit(nogil=True, cache=True)
def _write_body(s: int, nbytes: int, pb_addr: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    req = nbytes // pb[6]
    if req <= 0:
        return
    lead = 0
    if pb[9] == 0:  # the first request: silence ahead of the ring's audio, not an underflow
        pb[9] = 1
        ctl = carray(_int_to_voidptr(pb[0]), (CTL_SIZE,), np.int64)
        idx = carray(_int_to_voidptr(ctl[5]), (2,), np.int64)
        lead = max(0, req - (idx[0] - idx[1]))
        if lead > 0:
            _count(pb_addr, _PRIMING)
    _put(s, pb_addr, req, lead)


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


@njit(nogil=True, cache=True)
def _store_state(obj: int, pb_addr: int, fn_slot: int, slot: int) -> None:
    pb = carray(_int_to_voidptr(pb_addr), (PB_SIZE,), np.int64)
    pb[slot] = call_i32_p(pb[fn_slot], obj)


@cfunc(_NOTIFY_SIG, nopython=True, nogil=True, cache=True)
def pulse_stream_state_cb(s, userdata):
    """The stream's state changed: store it (``stream_state``), so that the runner's supervisor can
    read it without the mainloop's lock."""
    _store_state(_voidptr_to_int(s), _voidptr_to_int(userdata), 10, 12)


@cfunc(_NOTIFY_SIG, nopython=True, nogil=True, cache=True)
def pulse_context_state_cb(c, userdata):
    """The connection's state changed (server gone: failed): store it (``context_state``)."""
    _store_state(_voidptr_to_int(c), _voidptr_to_int(userdata), 11, 13)


def make_pulse_block(ctl: np.ndarray, functions: dict[str, int], *, channels: int) -> np.ndarray:
    """The int64 pulse block for one stream: ``ctl`` (a ``make_control_block`` array, which must
    outlive the stream as this block must), ``functions`` the addresses of ``PULSE_FUNCTIONS``
    by name, ``channels`` of the stream's float32 samples."""
    if ctl.dtype != np.int64 or ctl.ndim != 1 or not ctl.flags.c_contiguous:
        raise ValueError(f"ctl must be a contiguous int64 control block, got {ctl.dtype} {ctl.shape}")
    missing = [f for f in PULSE_FUNCTIONS if not functions.get(f)]
    if missing:
        raise ValueError(f"libpulse function address(es) missing: {missing}")
    if channels < 1:
        raise ValueError(f"channels {channels} is out of range; expected >= 1")
    pb = np.zeros(PB_SIZE, np.int64)
    pb[PB["ctl"]] = ctl.ctypes.data
    for f, slot in zip(PULSE_FUNCTIONS, ("peek", "drop", "begin_write", "write", "cancel_write", "stream_get_state",
                                         "context_get_state")):
        pb[PB[slot]] = functions[f]
    pb[PB["frame_bytes"]] = 4 * channels
    return pb
