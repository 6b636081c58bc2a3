"""DSP voices (rtvc.dsp) end to end, and the LPC kernels behind "whisper" (rtvc._native.lpc).

F0 is measured with librosa's pyin (independent of the tracker the stage uses), median over
voiced frames; "whisper" voicing with rtvc's own causal YIN, as asked of it.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import librosa
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import soundfile
import soxr

from rtvc._native.lpc import lattice_allpole, levinson, noise_fill, warp_lpc, windowed_autocorr
from rtvc.dsp import LATENCY, LATENCY_RANGE, MODES, DspVoice
from rtvc.errors import ConfigError
from rtvc.f0 import track_f0
from rtvc.params import Params
from rtvc.voices import DSP_PRESETS, VoiceRegistry

SR = 16_000
HOP = 80


# ---------------------------------------------------------------- signals
def glottal_voice(*, f0_hz: float = 120.0, dur_s: float = 1.5, vibrato: float = 0.03, seed: int = 0,
                  formants=((700.0, 80.0), (1200.0, 100.0), (2600.0, 150.0))) -> np.ndarray:
    """Glottal-pulse train with 5 Hz vibrato through formant resonators, peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(SR * dur_s)
    t = np.arange(n) / SR
    f = f0_hz * (1.0 + vibrato * np.sin(2 * np.pi * 5.0 * t))
    ph = np.cumsum(f) / SR
    e = np.zeros(n)
    e[np.nonzero(np.diff(np.floor(ph)) > 0)[0] + 1] = 1.0
    y = scipy.signal.lfilter([1.0, -1.0], [1.0, -0.97], e) + 0.002 * rng.standard_normal(n)
    for fc, bw in formants:
        r = math.exp(-math.pi * bw / SR)
        y = scipy.signal.lfilter([1.0 - r], [1.0, -2.0 * r * math.cos(2 * math.pi * fc / SR), r * r], y)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return glottal_voice()


@pytest.fixture(scope="module")
def voice_f0(voice) -> float:
    return pyin_median(voice)


def pyin_median(y: np.ndarray) -> float:
    f0, voiced, _ = librosa.pyin(y.astype(np.float64), fmin=40.0, fmax=800.0, sr=SR, frame_length=1024,
                                 hop_length=160)
    v = voiced.astype(bool)
    assert v.mean() > 0.5, "the measurement needs a mostly voiced signal"
    return float(np.median(f0[v]))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """Synthetic male speech from espeak-ng (installed from Debian), resampled to 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav),
                    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."],
                   check=True, capture_output=True)
    x, sr = soundfile.read(wav, dtype="float64")
    x = soxr.resample(x, sr, SR)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def centroid_hz(y: np.ndarray) -> float:
    c = librosa.feature.spectral_centroid(y=y.astype(np.float64), sr=SR, n_fft=1024, hop_length=160)[0]
    return float(np.median(c[10:]))


def run(mode: str, x: np.ndarray, **params) -> np.ndarray:
    v = DspVoice(mode=mode)
    v.set_params(Params(**params))
    return v.process(x)


# ---------------------------------------------------------------- pitch and formant
@pytest.mark.parametrize("pitch_st", [12.0, -12.0, 5.0, -7.5])
def test_pitch_shift_scales_f0_and_keeps_duration(voice, voice_f0, pitch_st):
    y = run("shift", voice, pitch_st=pitch_st)
    assert y.shape == voice.shape and y.dtype == np.float32
    ratio = pyin_median(y) / voice_f0
    assert ratio == pytest.approx(2.0 ** (pitch_st / 12.0), rel=0.03)
    # loudness is matched to the input (within 3 dB)
    assert 0.7 < np.std(y) / np.std(voice) < 1.4


def pyin_frames(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, v, _ = librosa.pyin(y.astype(np.float64), fmin=40.0, fmax=800.0, sr=SR, frame_length=1024, hop_length=160)
    return f, v.astype(bool)


@pytest.fixture(scope="module")
def speech_f0(speech) -> tuple[np.ndarray, np.ndarray]:
    return pyin_frames(speech)


@pytest.mark.parametrize("pitch_st", [12.0, -12.0])
def test_pitch_shift_on_speech(speech, speech_f0, pitch_st):
    """On frames pyin finds voiced in both, the median F0 ratio is within 3 %."""
    f_in, v_in = speech_f0
    y = run("shift", speech, pitch_st=pitch_st)
    assert y.shape == speech.shape
    f_out, v_out = pyin_frames(y)
    both = v_in & v_out
    assert both.sum() > 0.15 * both.shape[0]
    assert np.median(f_out[both] / f_in[both]) == pytest.approx(2.0 ** (pitch_st / 12.0), rel=0.03)


@pytest.mark.parametrize("pitch_st, formant_ratio", [(0.0, 0.75), (0.0, 1.3), (5.0, 1.18), (-5.0, 0.85)])
def test_formant_ratio_moves_the_envelope_and_not_the_pitch(voice, voice_f0, pitch_st, formant_ratio):
    base = run("shift", voice, pitch_st=pitch_st, formant_ratio=1.0 if pitch_st else 1.0001)
    y = run("shift", voice, pitch_st=pitch_st, formant_ratio=formant_ratio)
    c0, c1 = centroid_hz(base), centroid_hz(y)
    # the centroid moves the right way, by at least half the ratio's own change
    assert (c1 / c0 - 1.0) * (formant_ratio - 1.0) > 0
    assert abs(math.log(c1 / c0)) > 0.5 * abs(math.log(formant_ratio))
    assert pyin_median(y) / voice_f0 == pytest.approx(2.0 ** (pitch_st / 12.0), rel=0.03)


def test_formant_ratio_is_monotone(voice):
    cs = [centroid_hz(run("shift", voice, formant_ratio=r)) for r in (0.7, 0.85, 1.0001, 1.18, 1.4)]
    assert all(b > a for a, b in zip(cs, cs[1:]))


# ---------------------------------------------------------------- latency and the neutral path
def test_latency_is_one_fixed_value_within_budget():
    assert LATENCY <= 240
    for mode in MODES:
        v = DspVoice(mode=mode)
        for p in (Params(), Params(pitch_st=-12.0, formant_ratio=0.7), Params(pitch_st=12.0, formant_ratio=1.4)):
            v.set_params(p)
            assert v.latency == LATENCY


def test_neutral_is_the_input_delayed_bit_exactly(voice):
    rng = np.random.default_rng(5)
    x = np.concatenate([voice, rng.uniform(-1, 1, 3000).astype(np.float32), np.zeros(500, np.float32)])
    x[200] = 1.0  # a click
    y = DspVoice(mode="shift").process(x)
    assert np.array_equal(y[:LATENCY], np.zeros(LATENCY, np.float32))
    assert np.array_equal(y[LATENCY:], x[:-LATENCY])
    assert int(np.argmax(y[:400])) == 200 + LATENCY


@pytest.mark.parametrize("latency", [LATENCY_RANGE[0], 200, LATENCY_RANGE[1]])
def test_other_latencies_keep_the_contract(voice, voice_f0, latency):
    v = DspVoice(mode="shift", latency=latency)
    assert v.latency == latency
    x = voice.copy()
    x[300] = 1.0
    y = v.process(x)
    assert np.array_equal(y[latency:], x[:-latency]) and not y[:latency].any()
    v.set_params(Params(pitch_st=12.0))
    assert pyin_median(v.process(voice)) / voice_f0 == pytest.approx(2.0, rel=0.03)
    w = DspVoice(mode="whisper", latency=latency)
    assert np.all(np.isfinite(w.process(voice)))


@pytest.mark.parametrize("hop", [16, 50, 160, 320])
def test_other_hops_keep_the_contract(voice, voice_f0, hop):
    v = DspVoice(mode="shift", hop=hop)
    y = v.process(voice)
    assert np.array_equal(y[LATENCY:], voice[:-LATENCY])
    v.set_params(Params(pitch_st=-12.0, formant_ratio=1.2))
    assert pyin_median(v.process(voice)) / voice_f0 == pytest.approx(0.5, rel=0.03)
    for mode in ("robot", "whisper"):
        assert np.all(np.isfinite(DspVoice(mode=mode, hop=hop).process(voice)))


@pytest.mark.parametrize("latency", [LATENCY_RANGE[0], LATENCY, LATENCY_RANGE[1]])
@pytest.mark.parametrize("pitch_st, formant_ratio", [(-12.0, 0.7), (12.0, 1.4), (3.0, 0.7), (-3.0, 1.4)])
def test_grains_are_causal_and_time_aligned(latency, pitch_st, formant_ratio):
    """Every grain reads only received input; unvoiced grains sit exactly ``latency`` back."""
    rng = np.random.default_rng(8)
    x = np.concatenate([glottal_voice(dur_s=0.5, seed=6), 0.3 * rng.standard_normal(4000).astype(np.float32),
                        glottal_voice(f0_hz=260.0, dur_s=0.5, seed=7)])
    v = DspVoice(mode="shift", latency=latency, log_grains=5000)
    v.set_params(Params(pitch_st=pitch_st, formant_ratio=formant_ratio))
    st = v.init_state()
    for i in range(x.shape[0] // HOP):
        _, st = v.step(x[i * HOP:(i + 1) * HOP], st)
    n = int(st.fst[6])
    assert 0 < n < 5000
    s, a, ga, rf, voiced, t_end, spacing = st.log[:n].T
    assert np.all(a + np.ceil(ga) + 2 < t_end)
    unv = (voiced == 0.0) & (t_end > 2 * HOP)
    assert unv.sum() > 20 and voiced.sum() > 20
    np.testing.assert_array_equal(a[unv], s[unv] - latency)
    # ratios glide towards the targets and stay inside the range
    assert np.all((rf >= 0.7 - 1e-9) & (rf <= 1.4 + 1e-9))
    assert rf[-1] == pytest.approx(formant_ratio, rel=1e-6)


def test_neutral_transitions_do_not_click(voice):
    """Switch neutral <-> shifted every 200 ms; no sample-level jump beyond steady-state ones."""
    v = DspVoice(mode="shift")
    v.set_params(Params())
    st = v.init_state()
    x = glottal_voice(dur_s=2.4, seed=3)
    sched = {40: Params(pitch_st=5.0, formant_ratio=1.18), 80: Params(), 120: Params(formant_ratio=0.8),
             160: Params(), 200: Params(pitch_st=-4.0, formant_ratio=0.88), 240: Params(),
             280: Params(pitch_st=12.0, formant_ratio=0.7), 320: Params(pitch_st=-12.0, formant_ratio=1.4),
             360: Params(pitch_st=12.0, formant_ratio=0.7), 400: Params()}
    out = []
    for i in range(x.shape[0] // HOP):
        if i in sched:
            v.set_params(sched[i])
        y, st = v.step(x[i * HOP:(i + 1) * HOP], st)
        out.append(y.copy())
    y = np.concatenate(out)
    assert np.all(np.isfinite(y))
    jump = np.abs(np.diff(y, 2))
    for k in sched:
        c = k * HOP
        at_switch = jump[c - 80:c + 800].max()
        # steady playing of the settings before and after the switch (2.5 ms to 150 ms away)
        steady = max(jump[c - 2400:c - 80].max(), jump[c + 800:c + 3200].max())
        assert at_switch <= 1.25 * steady, k
    # the neutral stretches are exact again once the fade is over
    for k0, k1 in [(80, 120), (160, 200), (240, 280)]:
        a, b = k0 * HOP + 400, k1 * HOP
        np.testing.assert_array_equal(y[a:b], x[a - LATENCY:b - LATENCY])


# ---------------------------------------------------------------- streaming contract
@pytest.mark.parametrize("mode", MODES)
def test_stream_restarts_identically_and_equals_offline(voice, mode):
    v = DspVoice(mode=mode)
    v.set_params(Params(pitch_st=3.0, formant_ratio=1.1))
    offline = v.process(voice)
    st = v.init_state()
    first = []
    for i in range(100):
        y, st = v.step(voice[i * HOP:(i + 1) * HOP], st)
        first.append(y.copy())
    st = v.init_state()  # restart mid-stream: everything starts over
    again = []
    for i in range(voice.shape[0] // HOP):
        y, st = v.step(voice[i * HOP:(i + 1) * HOP], st)
        again.append(y.copy())
    again_y = np.concatenate(again)
    np.testing.assert_array_equal(np.concatenate(first), again_y[:100 * HOP])
    np.testing.assert_array_equal(offline[:again_y.shape[0]], again_y)


def test_returned_block_is_a_view_owned_by_state(voice):
    v = DspVoice(mode="shift")
    st = v.init_state()
    y1, st = v.step(voice[:HOP], st)
    y2, st = v.step(voice[HOP:2 * HOP], st)
    assert y1 is y2 and y1.shape == (HOP,) and y1.dtype == np.float32


# ---------------------------------------------------------------- robustness
CORNERS = [(p, f) for p in (-12.0, 12.0) for f in (0.7, 1.4)]


def hostile_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    n = SR
    t = np.arange(n) / SR
    return {
        "white": rng.uniform(-1.0, 1.0, n).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "square": np.sign(np.sin(2 * np.pi * 97.0 * t)).astype(np.float32),
        "square_high": np.sign(np.sin(2 * np.pi * 590.0 * t)).astype(np.float32),
        "impulses": (np.arange(n) % 1000 == 0).astype(np.float32),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pitch_st, formant_ratio", CORNERS)
def test_extreme_parameters_and_hostile_inputs_stay_finite(mode, pitch_st, formant_ratio):
    v = DspVoice(mode=mode)
    v.set_params(Params(pitch_st=pitch_st, formant_ratio=formant_ratio))
    for name, x in hostile_inputs().items():
        st = v.init_state()
        peak = 0.0
        for i in range(x.shape[0] // HOP):
            y, st = v.step(x[i * HOP:(i + 1) * HOP], st)
            assert np.all(np.isfinite(y)), (name, i)
            peak = max(peak, float(np.max(np.abs(y))))
        assert peak < 8.0, name
        if name == "silence":
            assert peak == 0.0
        for arr in (st.hist, st.y_acc, st.w_acc, st.fst, st.b, st.agc):
            assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("mode", MODES)
def test_silence_in_silence_out_after_sound(mode, voice):
    v = DspVoice(mode=mode)
    v.set_params(Params(pitch_st=-3.0, formant_ratio=1.2))
    x = np.concatenate([voice[:8000], np.zeros(16000, np.float32)])
    y = v.process(x)
    tail = y[8000 + 2000:]  # after the grains / filter ring-down (125 ms)
    assert np.max(np.abs(tail)) < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_nonfinite_input_never_enters_state(mode, voice):
    v = DspVoice(mode=mode)
    v.set_params(Params(pitch_st=4.0))
    st = v.init_state()
    x = voice[:4000].copy()
    x[1234] = np.nan
    x[2345] = np.inf
    for i in range(x.shape[0] // HOP):
        y, st = v.step(x[i * HOP:(i + 1) * HOP], st)
        assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(st.hist)) and np.all(np.isfinite(st.y_acc))
    assert st.nonfinite == 2


# ---------------------------------------------------------------- robot and whisper
@pytest.mark.parametrize("pitch_st, f_hz", [(0.0, 110.0), (12.0, 220.0), (-7.0, 110.0 * 2 ** (-7 / 12))])
def test_robot_is_monotone_at_110_hz_times_the_pitch_ratio(pitch_st, f_hz):
    x = glottal_voice(f0_hz=150.0, vibrato=0.06, seed=4)
    y = run("robot", x, pitch_st=pitch_st)
    f0, voiced, _ = librosa.pyin(y.astype(np.float64), fmin=40.0, fmax=800.0, sr=SR, frame_length=1024,
                                 hop_length=160)
    f = f0[voiced.astype(bool)][5:]
    assert f.shape[0] > 0.7 * f0.shape[0]
    assert np.median(f) == pytest.approx(f_hz, rel=0.03)
    assert np.mean(np.abs(f / f_hz - 1.0) < 0.03) > 0.9  # flat, although the input has +-6 % vibrato


def test_whisper_is_unvoiced_and_gain_matched(voice):
    f_in, _ = track_f0(voice)
    assert np.mean(f_in > 0) > 0.9
    y = run("whisper", voice)
    f_out, per = track_f0(y)
    assert np.mean(f_out > 0) < 0.1
    assert 0.5 < np.std(y) / np.std(voice) < 2.0
    # the envelope is the speaker's: the centroid stays within 25 %
    assert centroid_hz(y) == pytest.approx(centroid_hz(voice), rel=0.25)


def test_whisper_formant_ratio_moves_the_envelope(voice):
    lo, mid, hi = (centroid_hz(run("whisper", voice, formant_ratio=r)) for r in (0.75, 1.0, 1.3))
    assert lo < mid < hi


# ---------------------------------------------------------------- construction
def test_unknown_mode_is_refused_with_the_accepted_ones():
    accepted = r"expected one of \['shift', 'robot', 'whisper'\]"
    with pytest.raises(ConfigError, match=r"mode 'chipmunk' is unknown; " + accepted):
        DspVoice(mode="chipmunk")


def test_bad_rate_hop_latency_and_block_are_refused():
    with pytest.raises(ConfigError, match="model_rate=22050"):
        DspVoice(mode="shift", model_rate=22050)
    with pytest.raises(ConfigError, match=r"hop=0: expected an integer in \[16, 320\]"):
        DspVoice(mode="shift", hop=0)
    with pytest.raises(ConfigError, match=r"latency=100: expected an integer in \[128, 240\]"):
        DspVoice(mode="shift", latency=100)
    with pytest.raises(ConfigError, match=r"latency=241"):
        DspVoice(mode="whisper", latency=241)
    v = DspVoice(mode="robot")
    with pytest.raises(ConfigError, match=r"shape \(79,\); expected \(80,\)"):
        v.step(np.zeros(79, np.float32), v.init_state())
    with pytest.raises(ConfigError, match="takes a Params snapshot"):
        v.set_params({"pitch_st": 1.0})


def test_registry_builds_every_dsp_preset(voice):
    reg = VoiceRegistry(model_dirs=[])
    for info in DSP_PRESETS:
        stage = reg.make_stage(info)
        stage.set_params(Params(voice=info.name, **info.defaults))
        st = stage.init_state()
        y, st = stage.step(voice[:HOP], st)
        assert y.shape == (HOP,) and stage.latency == LATENCY


# ---------------------------------------------------------------- LPC kernels (whisper)
def test_windowed_autocorr_matches_numpy():
    rng = np.random.default_rng(11)
    x = rng.standard_normal(320).astype(np.float32)
    win = np.hanning(320)
    r = np.zeros(25)
    windowed_autocorr(x, win, r)
    xw = x.astype(np.float64) * win
    ref = np.correlate(xw, xw, "full")[319:319 + 25]
    np.testing.assert_allclose(r, ref, rtol=1e-10, atol=1e-10)


def test_levinson_matches_scipy_toeplitz_solve(voice):
    r = np.zeros(17)
    windowed_autocorr(voice[4000:4320], np.hanning(320), r)
    a = np.zeros(17)
    k = np.zeros(17)
    err = levinson(r, a, k, np.zeros(17))
    ref = scipy.linalg.solve_toeplitz(r[:16], -r[1:17])
    np.testing.assert_allclose(a[1:], ref, rtol=1e-6, atol=1e-8)
    assert a[0] == 1.0
    assert err == pytest.approx(r[0] + r[1:] @ ref, rel=1e-6)
    assert np.all(np.abs(k[1:]) < 1.0)
    # silence: identity predictor, zero error
    assert levinson(np.zeros(17), a, k, np.zeros(17)) == 0.0
    assert a[0] == 1.0 and not a[1:].any() and not k.any()


def test_lattice_matches_lfilter_of_the_step_up_polynomial(voice):
    r = np.zeros(17)
    windowed_autocorr(voice[6000:6320], np.hanning(320), r)
    a = np.zeros(17)
    k = np.zeros(17)
    levinson(r, a, k, np.zeros(17))
    e = np.random.default_rng(2).standard_normal(600)
    b = np.zeros(16)
    out1 = np.zeros(300, np.float32)
    out2 = np.zeros(300, np.float32)
    lattice_allpole(e[:300], 0.5, 0.5, k, b, out1)  # state carried across calls
    lattice_allpole(e[300:], 0.5, 0.5, k, b, out2)
    ref = scipy.signal.lfilter([1.0], a, 0.5 * e)
    np.testing.assert_allclose(np.concatenate([out1, out2]), ref, rtol=1e-4, atol=1e-5)


def test_lattice_gain_ramp_is_linear():
    k = np.zeros(5)  # identity filter
    out = np.zeros(4, np.float32)
    lattice_allpole(np.ones(4), 0.0, 1.0, k, np.zeros(4), out)
    np.testing.assert_allclose(out, [0.25, 0.5, 0.75, 1.0])


def ref_warp(a: np.ndarray, err: float, ratio: float, n_lags: int) -> np.ndarray:
    w = np.linspace(0.0, np.pi, 512)
    _, h = scipy.signal.freqz([1.0], a, worN=np.minimum(w / ratio, np.pi))
    pw = err * np.abs(h) ** 2
    c = np.ones(512)
    c[[0, -1]] = 0.5
    return np.array([np.sum(c * pw * np.cos(w * k)) / 511 for k in range(n_lags)])


def test_warp_lpc_matches_freqz_reference_and_matches_autocorrelation_at_ratio_one(voice):
    r = np.zeros(17)
    windowed_autocorr(voice[5000:5320], np.hanning(320), r)
    r *= np.exp(-0.5 * (2 * np.pi * 40 / SR * np.arange(17)) ** 2)
    a = np.zeros(17)
    k = np.zeros(17)
    err = levinson(r, a, k, np.zeros(17))
    for ratio in (0.7, 1.0, 1.4):
        rw = np.zeros(17)
        warp_lpc(a, err, ratio, rw)
        np.testing.assert_allclose(rw, ref_warp(a, err, ratio, 17), rtol=1e-9, atol=1e-12 * r[0])
    rw = np.zeros(17)
    warp_lpc(a, err, 1.0, rw)
    # LPC autocorrelation matching, up to the 512-point frequency sampling: 1 % of r[0]
    np.testing.assert_allclose(rw, r, rtol=0, atol=0.01 * r[0])
    # the warped envelope peaks where the original one does, times the ratio
    for ratio in (0.8, 1.25):
        warp_lpc(a, err, ratio, rw)
        a2 = np.zeros(17)
        levinson(rw, a2, np.zeros(17), np.zeros(17))
        f, h1 = scipy.signal.freqz([1.0], a, worN=4096, fs=SR)
        _, h2 = scipy.signal.freqz([1.0], a2, worN=4096, fs=SR)
        f1 = f[np.argmax(np.abs(h1))]
        f2 = f[np.argmax(np.abs(h2))]
        assert f2 == pytest.approx(ratio * f1, rel=0.08)


def test_noise_is_seeded_white_and_unit_variance():
    st = np.array([12345], np.uint64)
    a = np.zeros(200_000)
    noise_fill(st, a)
    st2 = np.array([12345], np.uint64)
    b = np.zeros(200_000)
    noise_fill(st2, b[:100_000])
    noise_fill(st2, b[100_000:])
    np.testing.assert_array_equal(a, b)  # deterministic, and chunking does not matter
    assert abs(a.mean()) < 0.01 and a.var() == pytest.approx(1.0, rel=0.02)
    assert a.min() >= -math.sqrt(3) and a.max() <= math.sqrt(3)
    ac = np.correlate(a[:20000], a[:20000], "full")[19999:20005] / 20000
    assert np.all(np.abs(ac[1:]) < 0.03)
