"""The GIL-free PortAudio callback, called the way PortAudio calls it (through its C address)."""


import numpy as np
import pytest

from rtvc._native.pa_callback import CNT, N_COUNTERS, make_control_block, pa_callback

CB = pa_callback.ctypes  # the same machine code PortAudio would call


class Rig:
    def __init__(self, in_ch=2, sel=-1, out_ch=2, size=64):
        self.inb = np.zeros(size, np.float32)
        self.ini = np.zeros(2, np.int64)
        self.outb = np.zeros(size, np.float32)
        self.outi = np.zeros(2, np.int64)
        self.cnt = np.zeros(N_COUNTERS, np.int64)
        self.ctl = make_control_block(self.inb, self.ini, self.outb, self.outi, self.cnt,
                                      in_channels=in_ch, in_select=sel, out_channels=out_ch)

    def call(self, x, y, frames, flags=0):
        xp = x.ctypes.data if x is not None else None
        yp = y.ctypes.data if y is not None else None
        return CB(xp, yp, frames, None, flags, self.ctl.ctypes.data)


def test_input_mixdown_and_channel_select_match_numpy():
    x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
    r = Rig(in_ch=3)
    assert r.call(x, None, 16) == 0
    np.testing.assert_allclose(r.inb[:16], x.mean(axis=1), rtol=1e-6)
    assert r.ini[0] == 16
    r = Rig(in_ch=3, sel=2)
    r.call(x, None, 16)
    np.testing.assert_array_equal(r.inb[:16], x[:, 2])


def test_output_duplicates_mono_and_zero_fills_an_empty_ring():
    r = Rig(out_ch=2)
    r.outb[:5] = np.arange(1, 6)
    r.outi[0] = 5
    y = np.full((8, 2), 9.0, np.float32)
    r.call(None, y, 8)
    np.testing.assert_array_equal(y[:, 0], [1, 2, 3, 4, 5, 0, 0, 0])
    np.testing.assert_array_equal(y[:, 1], y[:, 0])
    assert r.cnt[CNT["out_ring_empty"]] == 3 and r.cnt[CNT["out_ring_empty_events"]] == 1
    assert r.outi[1] == 5
    r.call(None, y, 8)  # a second empty callback: one more event, 8 more frames
    assert r.cnt[CNT["out_ring_empty"]] == 11 and r.cnt[CNT["out_ring_empty_events"]] == 2


def test_full_input_ring_counts_dropped_frames_and_keeps_order():
    r = Rig(in_ch=1, size=16)
    x = np.arange(24, dtype=np.float32)[:, None].copy()
    r.call(x, None, 24)
    assert r.ini[0] == 16 and r.cnt[CNT["in_ring_full"]] == 8 and r.cnt[CNT["in_ring_full_events"]] == 1
    np.testing.assert_array_equal(r.inb, np.arange(16))


def test_status_flags_are_counted():
    r = Rig()
    x = np.zeros((4, 2), np.float32)
    y = np.zeros((4, 2), np.float32)
    for flags in (1, 2, 4, 8, 16, 1 | 4):
        r.call(x, y, 4, flags)
    c = r.cnt
    assert (c[CNT["pa_input_underflow"]], c[CNT["pa_input_overflow"]], c[CNT["pa_output_underflow"]],
            c[CNT["pa_output_overflow"]], c[CNT["pa_priming"]], c[CNT["callbacks"]]) == (2, 1, 2, 1, 1, 6)


def test_stream_through_rings_over_many_wraps():
    rng = np.random.default_rng(4)
    r = Rig(in_ch=1, out_ch=1, size=32)
    sent, got = [], []
    for _ in range(500):
        n = int(rng.integers(1, 12))
        x = rng.standard_normal((n, 1)).astype(np.float32)
        r.call(x, None, n)
        sent.append(x[:, 0])
        # move everything from the input ring to the output ring (what the worker does)
        avail = int(r.ini[0] - r.ini[1])
        for k in range(avail):
            r.outb[(r.outi[0] + k) & 31] = r.inb[(r.ini[1] + k) & 31]
        r.ini[1] += avail
        r.outi[0] += avail
        y = np.zeros((n, 1), np.float32)
        r.call(None, y, n)
        got.append(y[:, 0])
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(sent))
    assert r.cnt[CNT["out_ring_empty"]] == 0


def test_control_block_refuses_bad_arrays():
    good = np.zeros(16, np.float32)
    idx = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="power-of-two"):
        make_control_block(np.zeros(10, np.float32), idx, good, idx, np.zeros(N_COUNTERS, np.int64),
                           in_channels=1, in_select=-1, out_channels=1)


@pytest.mark.skipif(not hasattr(__import__("os"), "eventfd"), reason="eventfd is Linux-only")
def test_input_signals_the_wake_eventfd_once_per_callback():
    import os
    import select

    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        r = Rig(in_ch=1)
        r.ctl = make_control_block(r.inb, r.ini, r.outb, r.outi, r.cnt, in_channels=1, in_select=-1, out_channels=1,
                                   wake_fd=fd)
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == []  # nothing yet
        x = np.ones((8, 1), np.float32)
        r.call(x, None, 8)
        r.call(x, None, 8)
        assert p.poll(0) and os.eventfd_read(fd) == 2  # one signal per input callback, after the data
        assert r.ini[0] == 16
        y = np.zeros((4, 1), np.float32)
        r.call(None, y, 4)  # the output side does not signal
        assert p.poll(0) == []
    finally:
        os.close(fd)
    r = Rig(in_ch=1)  # no descriptor: no signal, nothing written anywhere
    assert r.ctl[11] == -1 and r.call(np.ones((8, 1), np.float32), None, 8) == 0
