"""Causal YIN kernels and the CausalF0 / track_f0 wrappers.

References: a pure-NumPy YIN written from the paper's equations (vectorised, no shared code with
the kernels), and librosa's ``yin`` / ``pyin``.

Tolerances: the difference kernel is rearranged for speed (lags innermost over ascending
addresses, eight reference samples per pass) but performs the same float64 operations in the same
order as the plain double loop, so it is compared with a sequential NumPy accumulation *exactly*;
against the pairwise-summed NumPy reference it keeps ``rtol=1e-10``.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest

from rtvc._native.f0 import yin_cmndf, yin_continue, yin_difference, yin_frame, yin_step
from rtvc.errors import ConfigError
from rtvc.f0 import CausalF0, track_f0

SR = 16_000
HOP = 80


# ---------------------------------------------------------------- NumPy reference
def ref_difference(x: np.ndarray, tau_max: int) -> np.ndarray:
    """d(tau) between the last ``window`` samples and the same span ``tau`` samples earlier."""
    x = x.astype(np.float64)
    w = x.shape[0] - tau_max
    seg = x[tau_max:]
    lagged = np.stack([x[tau_max - tau:tau_max - tau + w] for tau in range(tau_max + 1)])
    return ((seg[None, :] - lagged) ** 2).sum(axis=1)


def ref_cmndf(d: np.ndarray) -> np.ndarray:
    taus = np.arange(d.shape[0])
    cum = np.cumsum(d)
    out = np.ones_like(d)
    ok = (taus > 0) & (cum > 0)
    out[ok] = d[ok] * taus[ok] / cum[ok]
    return out


def ref_yin(x: np.ndarray, *, fmin_hz: float = 60.0, fmax_hz: float = 600.0, threshold: float = 0.15,
            silence_ms: float = 1e-9) -> tuple[float, float]:
    tau_min = max(2, int(math.floor(SR / fmax_hz)))
    tau_max = int(math.ceil(SR / fmin_hz))
    if np.mean(x[tau_max:].astype(np.float64) ** 2) < silence_ms:
        return 0.0, 0.0
    c = ref_cmndf(ref_difference(x, tau_max))
    rng = c[tau_min:tau_max + 1]
    below = np.nonzero(rng < threshold)[0]
    if below.size:
        tau = tau_min + below[0]
        while tau < tau_max and c[tau + 1] < c[tau]:
            tau += 1
        voiced = True
    else:
        tau = tau_min + int(np.argmin(rng))
        voiced = False
    # parabola through the three points around the integer minimum
    y0, y1, y2 = c[tau - 1], c[tau], c[tau + 1] if tau + 1 < c.shape[0] else c[tau]
    lag = float(tau)
    if tau + 1 < c.shape[0]:
        coef = np.polyfit([-1.0, 0.0, 1.0], [y0, y1, y2], 2)
        if coef[0] > 0:
            lag += float(np.clip(-coef[1] / (2 * coef[0]), -1.0, 1.0))
    per = float(np.clip(1.0 - c[tau], 0.0, 1.0))
    return (SR / lag if voiced else 0.0), per


# ---------------------------------------------------------------- signals
@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def harmonic(f0_hz: float, n: int, *, n_harm: int = 8, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(n) / SR
    y = sum((0.6 / k) * np.sin(2 * np.pi * k * f0_hz * t + r.uniform(0, 2 * np.pi)) for k in range(1, n_harm + 1))
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def chirp(f_lo: float, f_hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic chirp (geometric sweep) and its instantaneous F0 per sample."""
    t = np.arange(n) / SR
    dur = n / SR
    f = f_lo * (f_hi / f_lo) ** (t / dur)
    ph = 2 * np.pi * np.cumsum(f) / SR
    y = sum((0.6 / k) * np.sin(k * ph) for k in range(1, 6))
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32), f


# ---------------------------------------------------------------- kernels vs reference
def test_difference_and_cmndf_match_numpy_reference(rng):
    tau_max = 267
    x = rng.standard_normal(320 + tau_max).astype(np.float32)
    x += harmonic(147.0, x.shape[0])
    d = np.zeros(tau_max + 1)
    c = np.zeros(tau_max + 1)
    yin_difference(x, tau_max, d)
    yin_cmndf(d, c)
    np.testing.assert_allclose(d, ref_difference(x, tau_max), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(c, ref_cmndf(ref_difference(x, tau_max)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f0_hz", [70.0, 118.3, 220.0, 440.0, 590.0])
def test_frame_matches_numpy_reference(f0_hz):
    f = CausalF0()
    x = harmonic(f0_hz, f.frame_len, seed=int(f0_hz))
    d = np.zeros(f.tau_max + 1)
    c = np.zeros(f.tau_max + 1)
    got = yin_frame(x, f.tau_min, f.tau_max, f.threshold, f.silence_ms, float(SR), d, c)
    want = ref_yin(x)
    # same equations, different arithmetic order: agreement to rounding
    assert got[0] == pytest.approx(want[0], rel=1e-9)
    assert got[1] == pytest.approx(want[1], abs=1e-9)
    # and the estimate itself is right (parabolic refinement: well under 0.5 %)
    assert got[0] == pytest.approx(f0_hz, rel=5e-3)


def test_frame_matches_reference_on_noise_and_silence(rng):
    f = CausalF0()
    d = np.zeros(f.tau_max + 1)
    c = np.zeros(f.tau_max + 1)
    for _ in range(5):
        x = (0.3 * rng.standard_normal(f.frame_len)).astype(np.float32)
        got = yin_frame(x, f.tau_min, f.tau_max, f.threshold, f.silence_ms, float(SR), d, c)
        want = ref_yin(x)
        assert got[0] == 0.0 and want[0] == 0.0
        assert got[1] == pytest.approx(want[1], abs=1e-9)
    got = yin_frame(np.zeros(f.frame_len, np.float32), f.tau_min, f.tau_max, f.threshold, f.silence_ms,
                    float(SR), d, c)
    assert got == (0.0, 0.0)


# ---------------------------------------------------------------- voicing with continuity
def ref_continue(c: np.ndarray, tau_min: int, tau_max: int, f0_hz: float, per: float, prev_f0_hz: float,
                 threshold: float, tolerance: float) -> tuple[float, float]:
    """The continuity rule from its definition, over the lags as a NumPy range."""
    if f0_hz > 0 or prev_f0_hz <= 0:
        return f0_hz, per
    lag = SR / prev_f0_hz
    taus = np.arange(tau_min, tau_max + 1)
    near = taus[(taus >= math.floor(lag / (1 + tolerance))) & (taus <= math.ceil(lag * (1 + tolerance)))]
    if near.size == 0:
        return 0.0, per
    k = near[np.argmin(c[near])]  # the first of equal minima, as the kernel's strict ``<``
    return (SR / k, 1.0 - c[k]) if c[k] < threshold else (0.0, per)


def test_continue_matches_reference(rng):
    tau_min, tau_max = 26, 267
    checked = continued = 0
    for _ in range(400):
        c = rng.uniform(0.05, 1.2, tau_max + 1)
        c[rng.integers(tau_min, tau_max + 1)] = rng.uniform(0.0, 0.6)  # one trough somewhere
        prev = float(rng.choice([0.0, rng.uniform(40.0, 700.0)]))  # also lags outside the range
        f0, per = (0.0, float(rng.uniform())) if rng.uniform() < 0.8 else (float(rng.uniform(60, 600)), 0.9)
        thr, tol = float(rng.uniform(0.16, 0.9)), float(rng.uniform(0.01, 0.5))
        got = yin_continue(c, tau_min, tau_max, float(SR), f0, per, prev, thr, tol)
        want = ref_continue(c, tau_min, tau_max, f0, per, prev, thr, tol)
        assert got == pytest.approx(want, rel=1e-12, abs=0.0)
        checked += 1
        continued += f0 == 0.0 and got[0] > 0.0
    assert checked == 400 and continued > 20  # the draw exercises both outcomes


def test_silent_frame_leaves_no_trough_to_continue_from():
    f = CausalF0()
    d = np.zeros(f.tau_max + 1)
    c = np.zeros(f.tau_max + 1)
    f0, _ = yin_frame(harmonic(150.0, f.frame_len), f.tau_min, f.tau_max, f.threshold, f.silence_ms, float(SR), d, c)
    assert f0 > 0 and c.min() < 0.1
    # the same curve would carry the track on; a silent frame replaces it
    assert yin_continue(c, f.tau_min, f.tau_max, float(SR), 0.0, 0.0, f0, 0.4, 0.12)[0] > 0
    assert yin_frame(np.zeros(f.frame_len, np.float32), f.tau_min, f.tau_max, f.threshold, f.silence_ms,
                     float(SR), d, c) == (0.0, 0.0)
    np.testing.assert_array_equal(c, np.ones_like(c))
    assert yin_continue(c, f.tau_min, f.tau_max, float(SR), 0.0, 0.0, f0, 0.4, 0.12) == (0.0, 0.0)


def test_continuity_carries_a_noisy_tone_and_stops_at_noise(rng):
    """A 140 Hz tone sinking into noise (SNR 30 -> -5 dB): the strict threshold drops frames the
    continuity keeps, each near the F0 of the frame before; pure noise afterwards ends the track.
    (Here the strict tracker's last voiced frames are already an octave low, 70 Hz, and the
    continuity follows them: it extends the track it is given, right or wrong.)"""
    f = CausalF0()
    n = 24_000
    snr_db = np.linspace(30.0, -5.0, n)
    tone = harmonic(140.0, n, seed=3)
    noise = rng.standard_normal(n) * np.sqrt(np.mean(tone ** 2)) * 10 ** (-snr_db / 20)
    x = np.concatenate([tone + noise, 0.1 * rng.standard_normal(8000)]).astype(np.float32)
    st = f.init_state()
    strict, cont, prev = [], [], 0.0
    for i in range(x.shape[0] // HOP):
        f0, per = f.step(x[i * HOP:(i + 1) * HOP], st)[0]
        prev, _ = yin_continue(st.cmndf, f.tau_min, f.tau_max, float(SR), f0, per, prev, 0.4, 0.12)
        strict.append(f0)
        cont.append(prev)
    strict, cont = np.array(strict), np.array(cont)
    assert np.all(cont[strict > 0] == strict[strict > 0])  # voiced frames pass unchanged
    added = np.nonzero((cont > 0) & (strict == 0))[0]
    assert added.size >= 20 and added.max() < n // HOP, added
    # each added frame's integer lag lies in the window around the previous frame's lag
    lag, lag_prev = SR / cont[added], SR / cont[added - 1]
    assert np.all((lag >= np.floor(lag_prev / 1.12)) & (lag <= np.ceil(lag_prev * 1.12)))
    assert np.all(cont[n // HOP + 20:] == 0.0)  # noise alone: no trough, the track ends


def ref_difference_sequential(x: np.ndarray, tau_max: int) -> np.ndarray:
    """The plain double loop's arithmetic: per lag, float64 ``(a - b) * (a - b)`` added in order of j
    (NumPy elementwise ops, vectorised over lags only, so no sum is reassociated)."""
    x = x.astype(np.float64)
    taus = np.arange(1, tau_max + 1)
    d = np.zeros(tau_max + 1)
    for j in range(tau_max, x.shape[0]):
        v = x[j] - x[j - taus]
        d[1:] = d[1:] + v * v
    return d


@pytest.mark.parametrize("window, tau_max", [(320, 267), (321, 267), (322, 100), (323, 7), (80, 1), (5, 40)])
def test_difference_is_bit_identical_to_the_plain_double_loop(rng, window, tau_max):
    x = (0.5 * rng.standard_normal(window + tau_max)).astype(np.float32)
    d = np.full(tau_max + 1, np.nan)
    yin_difference(x, tau_max, d)
    np.testing.assert_array_equal(d, ref_difference_sequential(x, tau_max))
    # a float64 frame holding the same (float32) values gives the same bits
    d64 = np.full(tau_max + 1, np.nan)
    yin_difference(x.astype(np.float64), tau_max, d64)
    np.testing.assert_array_equal(d64, d)


def test_step_kernel_shifts_history_and_equals_frame(rng):
    f = CausalF0()
    x = np.concatenate([harmonic(180.0, 1600), (0.2 * rng.standard_normal(800)).astype(np.float32)])
    hist = np.zeros(f.frame_len, np.float64)
    d = np.zeros(f.tau_max + 1)
    c = np.zeros(f.tau_max + 1)
    d2 = np.zeros(f.tau_max + 1)
    c2 = np.zeros(f.tau_max + 1)
    xpad = np.concatenate([np.zeros(f.frame_len - HOP, np.float32), x])
    for i in range(x.shape[0] // HOP):
        got = yin_step(hist, x[i * HOP:(i + 1) * HOP], f.tau_min, f.tau_max, f.threshold, f.silence_ms,
                       float(SR), d, c)
        frame = xpad[i * HOP:i * HOP + f.frame_len]
        np.testing.assert_array_equal(hist, frame.astype(np.float64))
        assert got == yin_frame(frame, f.tau_min, f.tau_max, f.threshold, f.silence_ms, float(SR), d2, c2)


def test_float64_hop_is_rounded_like_the_offline_path():
    x = harmonic(210.0, 1600).astype(np.float64) + 1e-12  # below float32 resolution near 0.1-0.5
    f = CausalF0()
    st = f.init_state()
    stream = [f.step(x[i * HOP:(i + 1) * HOP], st)[0] for i in range(20)]
    f0_hz, per = track_f0(x)
    assert [tuple(p) for p in np.stack([f0_hz, per], axis=1)] == stream


# ---------------------------------------------------------------- wrappers
def test_streaming_equals_offline_exactly(rng):
    x = np.concatenate([harmonic(130.0, 4000), 0.1 * rng.standard_normal(2000).astype(np.float32),
                        chirp(90.0, 300.0, 6037)[0]])
    f = CausalF0()
    st = f.init_state()
    n_frames = -(-x.shape[0] // HOP)
    xp = np.zeros(n_frames * HOP, np.float32)
    xp[:x.shape[0]] = x
    stream = np.array([f.step(xp[i * HOP:(i + 1) * HOP], st)[0] for i in range(n_frames)])
    f0_hz, per = track_f0(x)
    assert f0_hz.shape == (n_frames,) and per.shape == (n_frames,)
    np.testing.assert_array_equal(f0_hz, stream[:, 0])
    np.testing.assert_array_equal(per, stream[:, 1])
    assert np.all((per >= 0) & (per <= 1))


def test_restart_after_init_state_is_identical():
    x = harmonic(200.0, 3200)
    f = CausalF0()
    runs = []
    for _ in range(2):
        st = f.init_state()
        runs.append([f.step(x[i * HOP:(i + 1) * HOP], st)[0] for i in range(40)])
    assert runs[0] == runs[1]


def test_harmonic_tone_against_librosa_yin():
    x = harmonic(155.0, SR)
    f0_hz, per = track_f0(x)
    lib = librosa.yin(x.astype(np.float64), fmin=60, fmax=600, sr=SR, frame_length=1024, hop_length=HOP)
    ours = f0_hz[10:]  # skip the start-up frames (history still zeros)
    assert np.all(ours > 0)
    # both within 0.5 % of each other (median) and of the truth
    assert np.median(ours) == pytest.approx(np.median(lib[10:-10]), rel=5e-3)
    assert np.median(ours) == pytest.approx(155.0, rel=5e-3)
    assert np.min(per[10:]) > 0.9


def test_chirp_against_librosa_pyin():
    x, f_true = chirp(90.0, 320.0, 2 * SR)
    f0_hz, _ = track_f0(x)
    lib, voiced, _ = librosa.pyin(x.astype(np.float64), fmin=60, fmax=600, sr=SR, frame_length=1024,
                                  hop_length=HOP, center=True)
    f = CausalF0()
    # our frame i ends at (i + 1) * HOP and describes about the middle of its reference window
    t_ours = (np.arange(f0_hz.shape[0]) + 1) * HOP - f.window / 2 - 0.5 * SR / np.maximum(f0_hz, 60.0)
    t_lib = np.arange(lib.shape[0]) * HOP
    ok = (f0_hz > 0) & (t_ours > 1024) & (t_ours < x.shape[0] - 1024)
    lib_at = np.interp(t_ours[ok], t_lib[voiced.astype(bool)], lib[voiced.astype(bool)])
    rel = np.abs(f0_hz[ok] / lib_at - 1.0)
    assert ok.mean() > 0.8
    # pyin quantises to 10-cent bins (0.6 %); the sweep moves 2 % per 30 ms frame
    assert np.median(rel) < 0.01
    assert np.quantile(rel, 0.95) < 0.03
    truth = np.interp(t_ours[ok], np.arange(x.shape[0]), f_true)
    assert np.median(np.abs(f0_hz[ok] / truth - 1.0)) < 0.01


def test_white_noise_and_silence_are_unvoiced(rng):
    noise = (0.3 * rng.standard_normal(SR)).astype(np.float32)
    f0_hz, per = track_f0(noise)
    assert np.mean(f0_hz > 0) < 0.05
    assert np.median(per) < 0.5
    f0_hz, per = track_f0(np.zeros(SR, np.float32))
    assert np.all(f0_hz == 0.0) and np.all(per == 0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_gives_finite_output(bad):
    x = harmonic(150.0, 4000)
    x[1000:1010] = bad
    f0_hz, per = track_f0(x)
    assert np.all(np.isfinite(f0_hz)) and np.all(np.isfinite(per))
    # frames whose reference segment (the last ``window`` samples) holds a bad sample are unvoiced
    # with periodicity 0; frames that never saw one stay voiced
    f = CausalF0()
    ends = (np.arange(f0_hz.shape[0]) + 1) * HOP
    in_ref = (ends > 1000) & (ends - f.window < 1010)
    assert in_ref.sum() == 4
    assert np.all(f0_hz[in_ref] == 0.0) and np.all(per[in_ref] == 0.0)
    before, after = ends <= 1000, ends - f.frame_len >= 1010
    assert np.all(f0_hz[10:][before[10:]] > 0) and np.all(f0_hz[after] > 0)


@pytest.mark.parametrize("kw, match", [
    ({"fmin_hz": 0.0}, "fmin_hz=0.0"),
    ({"fmin_hz": 300.0, "fmax_hz": 200.0}, "fmin_hz=300.0"),
    ({"fmax_hz": 9000.0}, "fmax_hz=9000.0"),
    ({"window": 10}, "window=10"),
    ({"hop": 0}, "hop=0"),
    ({"threshold": 1.5}, "threshold=1.5"),
    ({"sample_rate": 100}, "sample_rate=100"),
])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        CausalF0(**kw)


def test_wrong_hop_shape_is_refused():
    f = CausalF0()
    with pytest.raises(ConfigError, match=r"shape \(81,\); expected \(80,\)"):
        f.step(np.zeros(81, np.float32), f.init_state())
    with pytest.raises(ConfigError, match=r"expected \(n_samples,\)"):
        track_f0(np.zeros((2, 80), np.float32))
