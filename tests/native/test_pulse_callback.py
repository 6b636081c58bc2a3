"""The GIL-free PulseAudio stream callbacks, called through their C addresses the way libpulse
calls them, against a stand-in for libpulse's stream functions (ctypes functions whose addresses
go into the pulse block) and against a plain-Python reference of the write policy.

The live tests (``tests/test_live_pulse.py``, ``tests/test_faults.py``) run them against a real
PulseAudio server."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from rtvc._native.pa_callback import CNT, N_COUNTERS, make_control_block
from rtvc._native.pulse_callback import PB, PULSE_FUNCTIONS, make_pulse_block, pulse_context_state_cb, pulse_overflow_cb
from rtvc._native.pulse_callback import pulse_read_cb, pulse_stream_state_cb, pulse_underflow_cb, pulse_write_cb

_VP, _SZ = ctypes.c_void_p, ctypes.c_size_t
_PEEK = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.POINTER(_VP), ctypes.POINTER(_SZ))
_DROP = ctypes.CFUNCTYPE(ctypes.c_int, _VP)
_BEGIN = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.POINTER(_VP), ctypes.POINTER(_SZ))
_WRITE = ctypes.CFUNCTYPE(ctypes.c_int, _VP, _VP, _SZ, _VP, ctypes.c_int64, ctypes.c_int)
_CANCEL = ctypes.CFUNCTYPE(ctypes.c_int, _VP)
_STATE = ctypes.CFUNCTYPE(ctypes.c_int, _VP)


class FakeServer:
    """What the callbacks see of libpulse: record chunks to peek (``None`` data: a hole) and a
    playback side that hands out write buffers of at most ``piece`` bytes and keeps what is
    written."""

    def __init__(self, piece: int = 1 << 20) -> None:
        self.chunks: list[tuple[np.ndarray | None, int]] = []
        self.written: list[np.ndarray] = []
        self.piece = piece
        self.wbuf = np.zeros(1 << 16, np.float32)
        self.calls = {"peek": 0, "drop": 0, "begin": 0, "write": 0, "cancel": 0}
        self.states = {"stream": 2, "context": 4}  # READY, READY
        self._fns = (_PEEK(self._peek), _DROP(self._drop), _BEGIN(self._begin), _WRITE(self._write),
                     _CANCEL(self._cancel), _STATE(lambda s: self.states["stream"]),
                     _STATE(lambda c: self.states["context"]))

    def addresses(self) -> dict[str, int]:
        return {n: ctypes.cast(f, _VP).value for n, f in zip(PULSE_FUNCTIONS, self._fns)}

    def _peek(self, s, data, nbytes):  # type: ignore[no-untyped-def]
        self.calls["peek"] += 1
        if not self.chunks:
            data[0], nbytes[0] = None, 0
            return 0
        x, n = self.chunks[0]
        data[0] = None if x is None else x.ctypes.data
        nbytes[0] = n
        return 0

    def _drop(self, s):  # type: ignore[no-untyped-def]
        self.calls["drop"] += 1
        self.chunks.pop(0)
        return 0

    def _begin(self, s, data, nbytes):  # type: ignore[no-untyped-def]
        self.calls["begin"] += 1
        data[0] = self.wbuf.ctypes.data
        nbytes[0] = min(nbytes[0], self.piece, self.wbuf.nbytes)
        return 0

    def _write(self, s, data, n, free_cb, offset, seek):  # type: ignore[no-untyped-def]
        self.calls["write"] += 1
        assert data == self.wbuf.ctypes.data and free_cb is None and offset == 0 and seek == 0
        self.written.append(self.wbuf[: n // 4].copy())
        return 0

    def _cancel(self, s):  # type: ignore[no-untyped-def]
        self.calls["cancel"] += 1
        return 0


class Rig:
    def __init__(self, *, channels: int = 1, size: int = 4096, piece: int = 1 << 20,
                 wake_fd: int | None = None, wake_min: int = 0, in_select: int = -1) -> None:
        self.srv = FakeServer(piece)
        self.buf = np.zeros(size, np.float32)
        self.idx = np.zeros(2, np.int64)
        self.cnt = np.zeros(N_COUNTERS, np.int64)
        self.ctl = make_control_block(self.buf, self.idx, self.buf, self.idx, self.cnt, in_channels=channels,
                                      in_select=in_select, out_channels=channels, wake_fd=wake_fd, wake_min=wake_min)
        self.pb = make_pulse_block(self.ctl, self.srv.addresses(), channels=channels)
        self.ud = self.pb.ctypes.data

    def ring_put(self, x: np.ndarray) -> None:
        for v in x:
            self.buf[self.idx[0] % self.buf.shape[0]] = v
            self.idx[0] += 1

    def ring_level(self) -> int:
        return int(self.idx[0] - self.idx[1])

    def request(self, frames: int) -> np.ndarray:
        """One write request; the interleaved samples written in answer to it."""
        n0 = len(self.srv.written)
        pulse_write_cb.ctypes(None, frames * 4 * int(self.pb[PB["frame_bytes"]] // 4), self.ud)
        new = self.srv.written[n0:]
        return np.concatenate(new) if new else np.zeros(0, np.float32)


def reference_write(ring: list[float], req: int, *, primed: bool) -> dict:
    """The write policy in plain Python: every request is answered in full, from the ring and
    with silence for what it lacks (after the audio, counted as an underflow; ahead of it, as
    priming, on the first request)."""
    audio = min(len(ring), req)
    short = req - audio
    lead = 0 if primed else short
    out = [0.0] * lead + ring[:audio] + [0.0] * (short - lead)
    return {"out": out, "taken": audio, "priming": int(lead > 0), "underflow_events": int(short - lead > 0),
            "missing": short - lead}


def test_write_requests_match_the_reference_policy_over_a_random_session():
    rng = np.random.default_rng(3)
    r = Rig()
    ring: list[float] = []
    primed = False
    expect = {"priming": 0, "underflow_events": 0, "missing": 0}
    sample = 1.0
    for _ in range(400):
        k = int(rng.choice([0, 0, 120, 240, 262, 300]))  # what the worker wrote since the last request
        x = np.arange(sample, sample + k, dtype=np.float32)
        sample += k
        r.ring_put(x)
        ring += list(x)
        req = int(rng.choice([120, 121, 131, 240, 262, 504]))
        ref = reference_write(ring, req, primed=primed)
        got = r.request(req)
        np.testing.assert_array_equal(got, np.asarray(ref["out"], np.float32))
        ring = ring[ref["taken"]:]
        primed = True
        for key in expect:
            expect[key] += ref[key]
        assert r.ring_level() == len(ring)
    assert r.cnt[CNT["pa_priming"]] == expect["priming"]
    assert r.cnt[CNT["out_ring_empty_events"]] == expect["underflow_events"] > 0
    assert r.cnt[CNT["out_ring_empty"]] == expect["missing"]


def test_first_request_primes_with_silence_ahead_of_the_audio():
    r = Rig()
    r.ring_put(np.arange(1, 101, dtype=np.float32))
    got = r.request(480)  # the server asks for its whole buffer; the ring has 100 frames
    np.testing.assert_array_equal(got[:380], 0.0)
    np.testing.assert_array_equal(got[380:], np.arange(1, 101))
    assert r.cnt[CNT["pa_priming"]] == 1 and r.cnt[CNT["out_ring_empty_events"]] == 0
    r.ring_put(np.arange(1, 51, dtype=np.float32))
    got = r.request(120)  # later: the audio first, then silence, counted
    np.testing.assert_array_equal(got, np.r_[np.arange(1, 51), np.zeros(70)])
    assert r.cnt[CNT["out_ring_empty_events"]] == 1 and r.cnt[CNT["out_ring_empty"]] == 70


def test_stereo_and_small_write_pieces_keep_the_order():
    r = Rig(channels=2, piece=40)  # 40 bytes: 5 stereo frames per begin_write
    r.pb[PB["primed"]] = 1
    r.ring_put(np.arange(1, 24, dtype=np.float32))
    got = r.request(23)
    np.testing.assert_array_equal(got[0::2], np.arange(1, 24))
    np.testing.assert_array_equal(got[1::2], np.arange(1, 24))
    assert r.srv.calls["begin"] == 5 and r.srv.calls["write"] == 5 and r.srv.calls["cancel"] == 0


def test_read_callback_mixes_down_drops_every_chunk_and_counts_holes():
    r = Rig(channels=2)
    a = np.arange(12, dtype=np.float32)  # 6 stereo frames
    b = np.arange(100, 108, dtype=np.float32)
    r.srv.chunks = [(a, a.nbytes), (None, 64), (b, b.nbytes)]
    pulse_read_cb.ctypes(None, a.nbytes + 64 + b.nbytes, r.ud)
    assert r.srv.chunks == [] and r.srv.calls["drop"] == 3
    want = np.concatenate([a.reshape(-1, 2).mean(1), b.reshape(-1, 2).mean(1)])
    np.testing.assert_allclose(r.buf[: r.ring_level()], want)
    assert r.cnt[CNT["pa_input_overflow"]] == 1 and r.cnt[CNT["callbacks"]] == 2


def test_read_callback_selects_a_channel():
    r = Rig(channels=2, in_select=1)
    a = np.arange(12, dtype=np.float32)
    r.srv.chunks = [(a, a.nbytes)]
    pulse_read_cb.ctypes(None, a.nbytes, r.ud)
    np.testing.assert_array_equal(r.buf[:6], a[1::2])


@pytest.mark.skipif(not hasattr(__import__("os"), "eventfd"), reason="eventfd is Linux-only")
def test_wake_up_waits_for_wake_min_samples():
    import os

    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        r = Rig(channels=1, wake_fd=fd, wake_min=10)
        x = np.ones(4, np.float32)
        for _ in range(2):
            r.srv.chunks = [(x, x.nbytes)]
            pulse_read_cb.ctypes(None, x.nbytes, r.ud)
        with pytest.raises(BlockingIOError):
            os.eventfd_read(fd)  # 8 samples: not yet
        r.srv.chunks = [(x, x.nbytes)]
        pulse_read_cb.ctypes(None, x.nbytes, r.ud)
        assert os.eventfd_read(fd) == 1  # 12 >= 10
    finally:
        os.close(fd)


def test_underflow_and_overflow_notifications_count():
    r = Rig()
    pulse_underflow_cb.ctypes(None, r.ud)
    pulse_underflow_cb.ctypes(None, r.ud)
    pulse_overflow_cb.ctypes(None, r.ud)
    assert r.cnt[CNT["pa_output_underflow"]] == 2 and r.cnt[CNT["pa_input_overflow"]] == 1


def test_pulse_block_checks_its_arguments():
    r = Rig()
    with pytest.raises(ValueError, match="missing"):
        make_pulse_block(r.ctl, {}, channels=1)
    with pytest.raises(ValueError, match="channels 0"):
        make_pulse_block(r.ctl, r.srv.addresses(), channels=0)
    with pytest.raises(ValueError, match="int64 control block"):
        make_pulse_block(r.ctl.astype(np.int32), r.srv.addresses(), channels=1)


def test_state_callbacks_store_the_states_for_a_lock_free_read():
    r = Rig()
    pulse_stream_state_cb.ctypes(None, r.ud)
    pulse_context_state_cb.ctypes(None, r.ud)
    assert r.pb[PB["stream_state"]] == 2 and r.pb[PB["context_state"]] == 4
    r.srv.states = {"stream": 3, "context": 5}  # the server went away: FAILED, FAILED
    pulse_stream_state_cb.ctypes(None, r.ud)
    pulse_context_state_cb.ctypes(None, r.ud)
    assert r.pb[PB["stream_state"]] == 3 and r.pb[PB["context_state"]] == 5


def test_pulse_block_layout():
    r = Rig(channels=2)
    addr = r.srv.addresses()
    slots = dict(zip(PULSE_FUNCTIONS, ("peek", "drop", "begin_write", "write", "cancel_write", "stream_get_state",
                                      "context_get_state")))
    for fn, slot in slots.items():
        assert r.pb[PB[slot]] == addr[fn], fn
    assert r.pb[PB["ctl"]] == r.ctl.ctypes.data and r.pb[PB["frame_bytes"]] == 8 and r.pb[PB["primed"]] == 0
