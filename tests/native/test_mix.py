"""Engine mixing kernels against NumPy references of the same formulas."""

import numpy as np
import pytest

from rtvc._native.mix import all_finite, apply_gain_ramp, hop_mix, sanitize, soft_limit


def test_gain_ramp_matches_numpy():
    x = np.random.default_rng(0).standard_normal(80).astype(np.float32)
    out = np.zeros_like(x)
    peak = apply_gain_ramp(x, 0.5, 2.0, out)
    ref = x * (0.5 + 1.5 * np.arange(1, 81) / 80)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert peak == pytest.approx(np.max(np.abs(ref)), rel=1e-6)


@pytest.mark.parametrize("d,look", [(0, 0), (37, 5), (160, 32), (240, 240)])
def test_hop_mix_matches_numpy_stream(d, look):
    rng = np.random.default_rng(d)
    hop, n_hops, size = 80, 30, 1024
    xs = rng.standard_normal((n_hops, hop)).astype(np.float32)
    wets = rng.standard_normal((n_hops, hop)).astype(np.float32)
    gates = rng.uniform(0, 1, (n_hops, hop)).astype(np.float32)
    mixes = rng.uniform(0, 1, n_hops + 1)
    outs = rng.uniform(0, 2, n_hops + 1)
    dry_buf = np.zeros(size, np.float32)
    g_buf = np.zeros(size, np.float32)
    y = np.zeros(hop, np.float32)
    # reference over the whole stream: zero history before the start
    xf = np.concatenate([np.zeros(size), xs.ravel()])
    gf = np.concatenate([np.zeros(size), gates.ravel()])
    w = 0
    for k in range(n_hops):
        hop_mix(xs[k], wets[k], gates[k], dry_buf, g_buf, w, d, look, mixes[k], mixes[k + 1], outs[k], outs[k + 1], y)
        w = (w + hop) & (size - 1)
        i = size + k * hop + np.arange(hop)
        r = np.arange(1, hop + 1) / hop
        dry = xf[i - d]
        gate = gf[i - d + look]
        m = mixes[k] + (mixes[k + 1] - mixes[k]) * r
        o = outs[k] + (outs[k + 1] - outs[k]) * r
        np.testing.assert_allclose(y, (dry + (wets[k] - dry) * m) * gate * o, rtol=1e-5, atol=1e-6)


def test_soft_limit_matches_numpy_and_never_exceeds_full_scale():
    y = np.linspace(-4, 4, 2001).astype(np.float32)
    ref = np.where(np.abs(y) <= 0.95, y, np.sign(y) * (0.95 + 0.05 * np.tanh((np.abs(y) - 0.95) / 0.05)))
    out = y.copy()
    n = soft_limit(out, 0.95)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert n == int(np.sum(np.abs(y) > 0.95))
    assert np.max(np.abs(out)) <= 1.0


def test_sanitize_matches_isfinite_then_clip():
    rng = np.random.default_rng(4)
    x = (3.0 * rng.standard_normal(500)).astype(np.float32)
    x[rng.integers(0, 500, 40)] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), 40)
    ref = x.copy()
    bad = ~np.isfinite(ref)
    ref[bad] = 0.0
    np.clip(ref, -4.0, 4.0, out=ref)
    got = x.copy()
    assert sanitize(got, 4.0) == int(bad.sum())
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("shape", [(80,), (2, 1, 128), (1, 1, 64)])
def test_all_finite_matches_numpy(shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    assert all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y.flat[-1] = bad  # the last element too
        assert not all_finite(y) and not np.all(np.isfinite(y))
    assert all_finite(np.full(shape, 3e38, np.float32))  # huge but finite (a float32 sum would overflow)
