"""The timbre mean shift kernel is bit-identical to the NumPy float32 code it replaced (the
float64 reference of the behaviour is in tests/test_converter.py)."""

import numpy as np

from rtvc._native.timbre import mean_shift

EMA, RAMP = 300.0, 20.0


def _numpy_map(target, feats, voiced, st):
    """TimbreMapper.map as it was written in NumPy (float32 operations)."""
    n = target.shape[0]
    mean, scratch = st[:n], st[n + 1:]
    c = feats[1:1 + n]
    if voiced:
        k = float(st[n]) + 1.0
        st[n] = k
        np.subtract(c, mean, out=scratch)
        scratch *= np.float32(1.0 / (k if k <= EMA else EMA))
        mean += scratch
    k = float(st[n])
    if k > 0.0:
        np.subtract(target, mean, out=scratch)
        scratch *= np.float32(min(1.0, k / RAMP))
        c += scratch


def test_mean_shift_is_bit_identical_to_the_numpy_float32_code():
    rng = np.random.default_rng(3)
    n = 19
    target = rng.normal(0, 10, n).astype(np.float32)
    feats = (rng.normal(0, 3, (800, n + 4)) + rng.normal(0, 10, n + 4)).astype(np.float32)
    voiced = rng.random(800) < 0.6
    voiced[:7] = False
    st_k, st_r = np.zeros(2 * n + 1, np.float32), np.zeros(2 * n + 1, np.float32)
    for t in range(800):  # past the EMA switch at 300 voiced frames
        a, b = feats[t].copy(), feats[t].copy()
        mean_shift(a, 1, bool(voiced[t]), target, st_k, EMA, RAMP)
        _numpy_map(target, b, bool(voiced[t]), st_r)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(st_k, st_r)
    assert st_k[n] == voiced.sum()
