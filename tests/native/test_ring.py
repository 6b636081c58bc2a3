"""Ring buffer kernels against a plain Python deque reference."""

from collections import deque

import numpy as np

from rtvc._native.ring import ring_discard, ring_read, ring_read_available, ring_write, ring_write_available


def test_ring_matches_deque_reference_under_random_traffic():
    rng = np.random.default_rng(1)
    buf = np.zeros(64, np.float32)
    idx = np.zeros(2, np.int64)
    ref: deque[float] = deque()
    counter = 0
    for _ in range(3000):
        op = rng.integers(0, 3)
        n = int(rng.integers(0, 80))
        if op == 0:
            x = (np.arange(n) + counter).astype(np.float32)
            counter += n
            w = ring_write(buf, idx, x)
            expected_w = min(n, 64 - len(ref))
            assert w == expected_w
            ref.extend(x[:w].tolist())
        elif op == 1:
            out = np.full(n, -1.0, np.float32)
            r = ring_read(buf, idx, out)
            assert r == min(n, len(ref))
            got = [ref.popleft() for _ in range(r)]
            np.testing.assert_array_equal(out[:r], np.asarray(got, np.float32))
            assert np.all(out[r:] == -1.0), "a short read must not touch the rest of out"
        else:
            d = ring_discard(idx, n)
            assert d == min(n, len(ref))
            for _ in range(d):
                ref.popleft()
        assert ring_read_available(idx) == len(ref)
        assert ring_write_available(buf, idx) == 64 - len(ref)


def test_ring_counters_are_monotonic_across_wraparound():
    buf = np.zeros(8, np.float32)
    idx = np.zeros(2, np.int64)
    out = np.zeros(5, np.float32)
    for k in range(100):
        x = np.arange(5, dtype=np.float32) + 5 * k
        assert ring_write(buf, idx, x) == 5
        assert ring_read(buf, idx, out) == 5
        np.testing.assert_array_equal(out, x)
    assert idx[0] == idx[1] == 500
