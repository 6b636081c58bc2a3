"""Seamless cuts (native/splice.py) against their NumPy references, and what they are for: a
cut out of a periodic signal leaves no phase jump."""

import numpy as np
import pytest

from rtvc._native.splice import find_cut, find_cut_reference, splice, splice_reference


@pytest.mark.parametrize("seed", range(4))
def test_find_cut_matches_reference(seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(480).astype(np.float32)
    lo, hi, fade = int(rng.integers(1, 100)), int(rng.integers(150, 400)), 48
    target = int(rng.integers(lo, hi + 1))
    s, r = find_cut(y, lo, hi, target, fade)
    s_ref, r_ref = find_cut_reference(y, lo, hi, target, fade)
    assert s == s_ref and r == pytest.approx(r_ref, abs=1e-7)


def test_find_cut_finds_the_period_and_prefers_the_target_among_equals():
    rate, f = 48_000, 375.0  # a period of 128 samples
    y = np.sin(2 * np.pi * f * np.arange(480) / rate + 0.3).astype(np.float32)
    s, r = find_cut(y, 60, 240, 120, 48)
    assert s == 128 and r > 0.9999
    s, r = find_cut(y, 60, 400, 300, 48)  # two whole periods are nearer to 300 than one
    assert s == 256 and r > 0.9999
    silence = np.zeros(240, np.float32)
    assert find_cut(silence, 10, 150, 77, 48) == (77, 1.0)
    flat = np.full(240, 0.1, np.float32)  # every cut matches: the target wins
    assert find_cut(flat, 10, 150, 77, 48)[0] == 77


@pytest.mark.parametrize("s,fade", [(1, 8), (100, 48), (192, 48), (10, 1)])
def test_splice_matches_reference(s, fade):
    y = np.random.default_rng(s).standard_normal(240).astype(np.float32)
    out = np.zeros(240, np.float32)
    m = splice(y, s, fade, out)
    ref = splice_reference(y, s, fade)
    assert m == 240 - s == ref.shape[0]
    np.testing.assert_allclose(out[:m], ref, rtol=1e-6, atol=1e-7)
    if m > fade:
        assert out[m - 1] == y[-1]  # the block ends where it ended


def test_a_cut_of_whole_periods_leaves_the_sine_intact():
    """Stream a sine in 240-sample blocks, cut one block by the chosen length: the result is
    the same sine, continuous in phase (what the load benchmark's detector checks)."""
    rate, f = 48_000, 375.0
    t = np.arange(2400)
    x = np.sin(2 * np.pi * f * t / rate).astype(np.float32)
    blocks = [x[i:i + 240] for i in range(0, 2400, 240)]
    s, r = find_cut(blocks[4], 60, 192, 120, 48)
    out = np.zeros(240, np.float32)
    m = splice(blocks[4], s, 48, out)
    y = np.concatenate(blocks[:4] + [out[:m]] + blocks[5:])
    expected = np.concatenate([x[:960], x[960 + s:]])
    assert s == 128
    np.testing.assert_allclose(y, expected, atol=1e-5)
    # an arbitrary cut of the same length minus 8 samples would jump by 8 samples of phase
    naive = np.concatenate([x[:960], x[960 + 120:]])
    assert np.max(np.abs(np.diff(naive))) > 2 * np.max(np.abs(np.diff(y)))
