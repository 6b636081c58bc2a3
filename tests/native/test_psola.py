"""PSOLA kernels against NumPy/SciPy references, and the mark scheduler's invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import CubicHermiteSpline

from rtvc._native.psola import (F_BETA, F_N_LOG, F_RF, LOG_COLS, N_FST, crossfade_dry, cubic_at, match_power,
                                ola_emit, ola_grain, peak_index, psola_marks, push_finite, xcorr_align)

SR = 16_000


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(777)


def ref_cubic(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Catmull-Rom == cubic Hermite with central-difference slopes (np.gradient's interior)."""
    xs = x.astype(np.float64)
    return CubicHermiteSpline(np.arange(xs.shape[0]), xs, np.gradient(xs))(pos)


def ref_grain(hist: np.ndarray, a_idx: float, ga: float, s_idx: int, rf: float, n_acc: int):
    n = np.arange(n_acc)
    u = (n - s_idx) * rf
    inside = np.abs(u) < ga
    w = np.where(inside, 0.5 + 0.5 * np.cos(np.pi * u / ga), 0.0)
    v = np.zeros(n_acc)
    v[inside] = ref_cubic(hist, a_idx + u[inside])
    return w * v, w


# ---------------------------------------------------------------- interpolation and grains
def test_cubic_matches_scipy_hermite(rng):
    x = rng.standard_normal(64).astype(np.float32)
    pos = rng.uniform(1.0, 61.0, 500)
    got = np.array([cubic_at(x, p) for p in pos])
    np.testing.assert_allclose(got, ref_cubic(x, pos), rtol=0, atol=1e-12)
    # exact at integer positions (the neutral-timing path relies on it)
    for i in range(64):
        assert cubic_at(x, float(i)) == np.float64(x[i])
    assert cubic_at(x, -5.0) == 0.0 and cubic_at(x, 70.5) == 0.0


@pytest.mark.parametrize("rf", [0.7, 0.93, 1.0, 1.18, 1.4])
@pytest.mark.parametrize("a_idx", [300.0, 300.37])
def test_ola_grain_matches_reference(rng, rf, a_idx):
    hist = rng.standard_normal(600).astype(np.float32)
    ga = 61.5
    y = np.zeros(256)
    w = np.zeros(256)
    y[:] = 0.25  # accumulates on top of what is there
    ola_grain(hist, a_idx, ga, 120, rf, y, w)
    ry, rw = ref_grain(hist, a_idx, ga, 120, rf, 256)
    np.testing.assert_allclose(y - 0.25, ry, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w, rw, rtol=0, atol=1e-12)
    # the grain's output half-length is ga / rf
    nz = np.nonzero(rw)[0]
    assert nz[-1] - nz[0] + 1 == pytest.approx(2 * ga / rf, abs=2.0)


def test_ola_grain_clips_at_the_accumulator_edges(rng):
    hist = rng.standard_normal(400).astype(np.float32)
    y = np.zeros(100)
    w = np.zeros(100)
    ola_grain(hist, 200.0, 50.0, 5, 1.0, y, w)
    ola_grain(hist, 200.0, 50.0, 97, 1.0, y, w)
    ry1, rw1 = ref_grain(hist, 200.0, 50.0, 5, 1.0, 100)
    ry2, rw2 = ref_grain(hist, 200.0, 50.0, 97, 1.0, 100)
    np.testing.assert_allclose(y, ry1 + ry2, atol=1e-12)
    np.testing.assert_allclose(w, rw1 + rw2, atol=1e-12)


def test_hann_grains_at_half_overlap_reconstruct_the_input(rng):
    """Grains of half-length G every G samples, analysis = synthesis - D: exact delay by D."""
    hist = rng.standard_normal(1200).astype(np.float32)
    y = np.zeros(1200)
    w = np.zeros(1200)
    g, d = 64, 160
    for s in range(200, 1100, g):
        ola_grain(hist, float(s - d), float(g), s, 1.0, y, w)
    out = np.zeros(80, np.float32)
    yy, ww = y.copy(), w.copy()
    got = np.concatenate([(ola_emit(yy, ww, 1.0, out), out.copy())[1] for _ in range(15)])
    ref = np.where(w > 1.0, y / np.maximum(w, 1e-300), y)[:1200]
    np.testing.assert_allclose(got, ref.astype(np.float32), rtol=1e-6, atol=1e-7)
    mid = slice(264, 1036)
    np.testing.assert_allclose(w[mid], 1.0, atol=1e-12)
    np.testing.assert_allclose(got[mid], hist[mid.start - d:mid.stop - d], atol=1e-6)


@pytest.mark.parametrize("w_floor", [1.0, 0.5])
def test_ola_emit_normalises_and_shifts(rng, w_floor):
    y = rng.standard_normal(300)
    w = rng.uniform(0.0, 3.0, 300)
    y0, w0 = y.copy(), w.copy()
    out = np.zeros(80, np.float32)
    ola_emit(y, w, w_floor, out)
    want = (y0[:80] / np.maximum(w0[:80], w_floor)).astype(np.float32)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(y[:220], y0[80:])
    np.testing.assert_array_equal(w[:220], w0[80:])
    assert not y[220:].any() and not w[220:].any()


# ---------------------------------------------------------------- marks
def test_xcorr_align_matches_brute_force(rng):
    x = rng.standard_normal(800).astype(np.float32)
    x[400:700] = x[250:550]  # a copy 150 samples later, offset 3 from the candidate
    ref, cand, half = 300, 447, 40
    got = xcorr_align(x, ref, cand, half, -10, 10)
    xs = x.astype(np.float64)
    seg = xs[ref - half:ref + half + 1]
    scores = {o: seg @ xs[cand + o - half:cand + o + half + 1] / np.linalg.norm(xs[cand + o - half:cand + o + half + 1])
              for o in range(-10, 11)}
    assert got == max(scores, key=scores.get) == 3
    # an asymmetric window that excludes the true offset picks the best remaining one
    got = xcorr_align(x, ref, cand, half, -10, 1)
    assert got == max((o for o in scores if o <= 1), key=scores.get)
    assert xcorr_align(np.zeros(800, np.float32), ref, cand, half, -5, 5) == 0


def test_peak_index_matches_argmax(rng):
    x = rng.standard_normal(500).astype(np.float32)
    for lo, hi in [(0, 500), (17, 33), (100, 101), (250, 499)]:
        assert peak_index(x, lo, hi) == lo + int(np.argmax(np.abs(x[lo:hi])))


def test_match_power_matches_reference(rng):
    st = np.array([0.0, 0.0, 1.0])
    ref_st = [0.0, 0.0, 1.0]
    alpha, g_max = 0.2, 4.0
    for k in range(30):
        ref = (rng.standard_normal(80) * 0.5).astype(np.float32)
        y = rng.standard_normal(80) * (0.05 if k < 15 else 3.0)
        y0 = y.copy()
        match_power(ref, y, st, alpha, g_max)
        pr = ref_st[0] + alpha * (np.mean(ref.astype(np.float64) ** 2) - ref_st[0])
        py = ref_st[1] + alpha * (np.mean(y0 ** 2) - ref_st[1])
        g1 = float(np.clip(np.sqrt(pr / py), 1 / g_max, g_max))
        ramp = ref_st[2] + (g1 - ref_st[2]) * np.arange(1, 81) / 80
        np.testing.assert_allclose(y, y0 * ramp, rtol=1e-12)
        ref_st = [pr, py, g1]
        np.testing.assert_allclose(st, ref_st, rtol=1e-12)
    # silence out: the gain holds and nothing blows up
    y = np.zeros(80)
    match_power(np.ones(80, np.float32), y, st, alpha, g_max)
    assert not y.any() and np.isfinite(st).all()


def test_crossfade_dry_matches_reference_and_is_exact_at_the_ends(rng):
    dry = rng.standard_normal(80).astype(np.float32)
    wet = rng.standard_normal(80)
    st = np.array([1.0])
    out = np.zeros(80, np.float32)
    crossfade_dry(dry, wet, st, 1.0, 0.01, out)
    np.testing.assert_array_equal(out, dry)
    crossfade_dry(dry, wet, st, 0.0, 0.01, out)
    w = 1.0 - 0.01 * np.arange(1, 81)
    np.testing.assert_allclose(out, (wet + (dry - wet) * w).astype(np.float32), rtol=1e-6, atol=1e-7)
    assert st[0] == pytest.approx(0.2)
    for _ in range(3):
        crossfade_dry(dry, wet, st, 0.0, 0.01, out)
    np.testing.assert_array_equal(out, wet.astype(np.float32))


def test_push_finite_matches_numpy_roll_and_counts_bad_samples(rng):
    hist = rng.standard_normal(200).astype(np.float32)
    x = rng.standard_normal(80).astype(np.float32)
    x[[3, 40, 79]] = [np.nan, np.inf, -np.inf]
    want = np.concatenate([hist[80:], np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)])
    assert push_finite(hist, x) == 3
    np.testing.assert_array_equal(hist, want)


# ---------------------------------------------------------------- scheduler
def pulse_train(period: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Decaying-resonance pulses every ``period`` samples (a crude voiced source)."""
    pos = np.arange(0.0, n, period)
    e = np.zeros(n)
    e[np.round(pos).astype(int) % n] = 1.0
    h = np.exp(-np.arange(120) / 18.0) * np.cos(2 * np.pi * 700 / SR * np.arange(120))
    return np.convolve(e, h)[:n].astype(np.float32), np.round(pos).astype(int)


def run_marks(x, *, lag, beta, rf, fixed_period=0.0, latency=160, align=0.0, hop=80, n_hist=2048):
    hist = np.zeros(n_hist, np.float32)
    y = np.zeros(512)
    w = np.zeros(512)
    fst = np.zeros(N_FST)
    fst[F_BETA] = beta
    fst[F_RF] = rf
    log = np.zeros((2000, LOG_COLS))
    out = np.zeros(hop)
    outs = []
    for i in range(x.shape[0] // hop):
        hist[:-hop] = hist[hop:]
        hist[-hop:] = x[i * hop:(i + 1) * hop]
        psola_marks(hist, (i + 1) * hop, hop, y, w, lag, beta, rf, fixed_period, latency, latency - 13.0, 64.0,
                    160.0, align, fst, log)
        ola_emit(y, w, 1.0, out)
        outs.append(out.copy())
    return log[:int(fst[F_N_LOG])], np.concatenate(outs)


@pytest.mark.parametrize("beta, rf", [(2.0, 1.0), (0.5, 1.0), (1.335, 1.18), (0.75, 0.7), (1.0, 1.4)])
def test_voiced_marks_are_causal_pitch_synchronous_and_spaced_by_period_over_beta(beta, rf):
    period = 133.3
    x, pulses = pulse_train(period, 16000)
    log, y = run_marks(x, lag=period, beta=beta, rf=rf)
    s, a, ga, rfs, voiced, t_end, spacing = log.T
    assert np.all(voiced == 1.0)
    assert np.all(rfs == rf)
    # causal: the interpolator reads at most a + ga + 2 < t_end
    assert np.all(a + ga + 2 < t_end)
    # each grain is first needed in its block: it starts before t_end, not before t_end - hop
    # (except at start-up, where the first mark is at output sample 0)
    later = t_end > 80
    assert np.all(s - ga / rf < t_end) and np.all((s - ga / rf)[later] >= t_end[later] - 80 - 1)
    # spacing = period / beta, marks rounded to whole samples
    np.testing.assert_allclose(spacing, period / beta, rtol=1e-9)
    np.testing.assert_allclose(np.diff(s), period / beta, atol=1.0)
    # analysis centres sit on the pulses (after the onset pick), so grains are pitch-synchronous
    steady = a[5:]
    dist = np.min(np.abs(steady[:, None] - pulses[None, :]), axis=1)
    assert np.all(dist <= 1)
    # time alignment: the analysis centre is the pulse nearest to s - latency, or one period
    # earlier when that one is not fully received yet
    off = np.abs(a - (s - 160))
    assert np.all(off <= period + 2) and np.median(off) <= period / 2 + 2
    assert np.all(np.isfinite(y))


def test_unvoiced_marks_are_time_aligned_and_half_overlapping(rng):
    x = rng.standard_normal(8000).astype(np.float32)
    log, y = run_marks(x, lag=0.0, beta=2.0, rf=1.0)
    s, a, ga, rfs, voiced, t_end, spacing = log.T
    assert np.all(voiced == 0.0)
    np.testing.assert_array_equal(a, s - 160)  # no pitch change: straight copy, delayed
    np.testing.assert_array_equal(spacing, 64.0)
    # Hann grains at half overlap sum to one: the output is the input delayed by 160
    np.testing.assert_allclose(y[400:7800], x[240:7640], atol=1e-6)


def test_robot_marks_use_the_fixed_period():
    x, _ = pulse_train(133.3, 8000)
    log, _ = run_marks(x, lag=133.3, beta=1.0, rf=1.0, fixed_period=SR / 110.0)
    np.testing.assert_allclose(log[:, 6], SR / 110.0, rtol=1e-12)


def test_align_locks_marks_onto_the_delayed_analysis_centres():
    x, _ = pulse_train(133.3, 16000)
    log, y = run_marks(x, lag=133.3, beta=1.0, rf=1.0, align=0.25)
    s, a = log[:, 0], log[:, 1]
    off = s - a
    np.testing.assert_array_less(np.abs(off[-40:] - 160), 1.5)
    # locked and unpitched, PSOLA returns the delayed input (bar the window-sum dips)
    seg = slice(8000, 15000)
    c = np.corrcoef(y[seg], x[seg.start - 160:seg.stop - 160])[0, 1]
    assert c > 0.95


def test_ratios_glide_towards_their_targets():
    x, _ = pulse_train(100.0, 16000)
    hist = np.zeros(2048, np.float32)
    y = np.zeros(512)
    w = np.zeros(512)
    fst = np.zeros(N_FST)
    fst[F_BETA] = 1.0
    fst[F_RF] = 1.0
    log = np.zeros((0, LOG_COLS))
    betas = []
    for i in range(100):
        hist[:-80] = hist[80:]
        hist[-80:] = x[i * 80:(i + 1) * 80]
        psola_marks(hist, (i + 1) * 80, 80, y, w, 100.0, 2.0, 1.4, 0.0, 160, 147.0, 64.0, 160.0, 0.0, fst, log)
        ola_emit(y, w, 1.0, np.zeros(80))
        betas.append(fst[F_BETA])
    b = np.array(betas)
    assert np.all(np.diff(b) >= 0) and b[0] < 1.5  # monotone, no jump in the first block
    assert b[-1] == pytest.approx(2.0, rel=1e-6) and fst[F_RF] == pytest.approx(1.4, rel=1e-6)
    # about 10 ms time constant: 63 % of the way (in log) after ~160 samples
    k = int(np.argmax(np.log(b) >= 0.63 * math.log(2.0)))
    assert 1 <= k <= 4
