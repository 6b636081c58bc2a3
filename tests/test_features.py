"""Streaming features equal the offline analysis; features match independent references."""

import librosa
import numpy as np
import pytest

from rtvc.errors import ConfigError
from rtvc.features import N_CEP, N_INPUT, FeatureExtractor, analyze
from rtvc.synthesis import Synthesizer


def _voice(n=8000, f0=140.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / 16000
    x = sum(np.sin(k * ph) / k for k in range(1, 20)) * 0.2
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def test_streaming_equals_offline_exactly():
    x = _voice()
    fx = FeatureExtractor()
    ref = fx.analyze(x)
    st = fx.init_state()
    for t in range(len(x) // 80):
        f, st = fx.step(x[t * 80:(t + 1) * 80], st)
        np.testing.assert_array_equal(f, ref.inputs[t])
        np.testing.assert_array_equal(st["cep"], ref.cepstrum[t])
    assert ref.inputs.shape == (100, N_INPUT) and ref.cepstrum.shape == (100, N_CEP)


def test_mfcc_matches_librosa_on_the_same_frames():
    # tolerance 1e-2 dB: float32 STFT vs librosa's float64 path
    x = _voice(seed=3)
    a = FeatureExtractor()
    an = a.analyze(x)
    padded = np.concatenate([np.zeros(512 - 80, np.float32), x])
    S = np.abs(librosa.stft(padded, n_fft=512, hop_length=80, window=a.w_a.astype(np.float64), center=False)) ** 2
    ref = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S, sr=16000, n_mels=40),
                                                     top_db=None), n_mfcc=20).T
    np.testing.assert_allclose(an.inputs[:, :20], ref[: len(an.inputs)], atol=1e-2)


def test_voicing_features_follow_f0():
    x = _voice(16000, f0=150.0)
    an = analyze(x)
    late = an.inputs[40:]
    assert np.all(late[:, -2] == 1.0)  # voiced
    np.testing.assert_allclose(np.median(late[:, -3]), 0.0, atol=0.05)  # log2(150/150)
    silent = analyze(np.zeros(4000, np.float32))
    assert np.all(silent.inputs[:, -2] == 0.0) and np.all(silent.inputs[:, -3] == 0.0)


def test_source_resynthesis_with_own_envelope_is_a_pure_delay():
    x = _voice(seed=5)
    fx = FeatureExtractor()
    syn = Synthesizer("source")
    fs, ss = fx.init_state(), syn.init_state()
    y = np.zeros_like(x)
    for t in range(len(x) // 80):
        _, fs = fx.step(x[t * 80:(t + 1) * 80], fs)
        y[t * 80:(t + 1) * 80] = syn.step(fs["cep"], ss, src_spec=fs["spec"], src_cep=fs["cep"])
    d = syn.latency
    assert d == 80
    np.testing.assert_allclose(y[d:], x[:-d], atol=1e-4)


@pytest.mark.parametrize("options", [None, {"phase": "minimum", "voicing": "adaptive"}])
def test_pulse_noise_resynthesis_keeps_envelope_and_pitch(options):
    x = _voice(16000, f0=150.0, seed=7)
    fx = FeatureExtractor()
    an = fx.analyze(x)
    syn = Synthesizer("pulse-noise", options=options)
    ss = syn.init_state()
    y = np.concatenate([syn.step(an.cepstrum[t], ss, f0_hz=float(an.f0_hz[t]), voicing=1.0).copy()
                        for t in range(len(an.cepstrum))])
    back = fx.analyze(y)
    # the resynthesis has the analysed envelope (c0..c8 within 0.3 nepers after settling)
    np.testing.assert_allclose(back.cepstrum[60:, :9].mean(0), an.cepstrum[60:, :9].mean(0), atol=0.3)
    np.testing.assert_allclose(np.median(back.f0_hz[60:]), 150.0, rtol=0.03)


# ----------------------------------------------------------------------------- synthesis kernels
def test_pulse_train_matches_reference_and_ignores_hop_splits():
    from rtvc._native.synth import pulse_noise_step

    f0 = 123.4
    n = 1600
    # reference: pulse k at t_k = k * sr / f0 (first wrap at phase 1), split linearly over the
    # two samples after it, one sample late
    ref = np.zeros(n + 2)
    k = 1
    while k * 16000 / f0 < n - 1:
        t = k * 16000 / f0 - 1  # sample index where the phase reaches 1 (phase starts at 0 before sample 0)
        i = int(np.ceil(t))
        d = i - t
        ref[i] += 1 - d
        ref[i + 1] += d
        k += 1

    def run(sizes):
        st = np.zeros(2, np.float64)
        rng = np.array([12345], np.uint64)
        p_out, n_out = [], []
        pos = 0
        for s in sizes:
            p, z = np.zeros(s, np.float32), np.zeros(s, np.float32)
            pulse_noise_step(f0, 16000.0, st, rng, p, z)
            p_out.append(p)
            n_out.append(z)
            pos += s
        return np.concatenate(p_out), np.concatenate(n_out)

    p80, n80 = run([80] * 20)
    p7, n7 = run([7] * 228 + [4])
    np.testing.assert_allclose(p80, ref[:n], atol=1e-5)
    np.testing.assert_allclose(p7, p80, atol=1e-5)
    np.testing.assert_array_equal(n7, n80)
    assert abs(n80.mean()) < 0.1 and abs(n80.std() - 1.0) < 0.1


def test_mix_and_reshape_against_numpy():
    from rtvc._native.synth import mix_excitation, reshape_spectrum

    rng = np.random.default_rng(0)
    p = (rng.standard_normal(257) + 1j * rng.standard_normal(257)).astype(np.complex64)
    z = (rng.standard_normal(257) + 1j * rng.standard_normal(257)).astype(np.complex64)
    pe, ze = rng.standard_normal(257).astype(np.float32), rng.standard_normal(257).astype(np.float32)
    out = np.zeros(257, np.complex64)
    mix_excitation(p, z, pe, ze, 0.7, 100.0, 50.0, out)
    k = np.arange(257)
    t = np.clip((k - 100.0) / 50.0, 0, 1)
    v = 0.7 * (0.5 + 0.5 * np.cos(np.pi * t))
    ref = p * np.sqrt(v) * np.exp(-pe) + z * np.sqrt(1 - v) * np.exp(-ze)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    out2 = np.zeros(257, np.complex64)
    reshape_spectrum(p, pe, ze, 1.0, out2)
    np.testing.assert_allclose(out2, p * np.exp(np.clip(ze - pe, -1, 1)), rtol=1e-5)


def test_source_method_moves_the_pitch_coherently():
    """A 200 Hz tone shifted to 300 Hz (own envelope kept) comes out as a clean 300 Hz tone."""
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    fx = FeatureExtractor()
    syn = Synthesizer("source")
    fs, ss = fx.init_state(), syn.init_state()
    y = np.zeros_like(x)
    for i in range(len(x) // 80):
        _, fs = fx.step(x[i * 80:(i + 1) * 80], fs)
        y[i * 80:(i + 1) * 80] = syn.step(fs["cep"], ss, f0_hz=300.0, src_f0_hz=200.0, src_spec=fs["spec"],
                                          src_cep=fs["cep"])
    seg = y[4000:]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / 16000)
    assert abs(freqs[np.argmax(spec)] - 300.0) < 3.0
    # coherent: the 300 Hz line holds most of the energy (no smearing from phase jumps)
    band = (freqs > 280) & (freqs < 320)
    assert (spec[band] ** 2).sum() / (spec ** 2).sum() > 0.9


def test_apply_envelope_and_adaptive_voicing_against_numpy():
    from rtvc._native.synth import adaptive_voicing, apply_envelope

    rng = np.random.default_rng(1)
    p = (rng.standard_normal(257) + 1j * rng.standard_normal(257)).astype(np.complex64)
    env = (3 * rng.standard_normal(257)).astype(np.float32)
    ph = rng.uniform(-4, 4, 257).astype(np.float32)
    out = np.zeros(257, np.complex64)
    apply_envelope(p, env, ph, 2.0, out)
    np.testing.assert_allclose(out, p * np.exp(np.clip(env, -2, 2) + 1j * ph), rtol=1e-5, atol=1e-6)
    vc = np.zeros(2)
    for per, v in [(0.1, 0.0), (0.35, 0.0), (0.575, 0.5), (0.8, 1.0), (0.95, 1.0)]:
        adaptive_voicing(per, 0.35, 0.8, 1500.0, 6000.0, vc)
        np.testing.assert_allclose(vc, [v, 1500.0 + v * 4500.0], atol=1e-12)


def test_minimum_phase_pulse_is_causal_and_zero_phase_is_symmetric():
    """A pulse through a formant envelope, as the synthesis shapes a frame: the zero-phase
    response rings on both sides of the pulse, the minimum-phase one only after it."""
    from rtvc._native.cepstrum import cepstrum_matrices, cepstrum_to_logenv, minimum_phase_matrix
    from rtvc._native.synth import apply_envelope, reshape_spectrum

    k = np.arange(257)
    full = np.fft.irfft(2.0 * np.exp(-0.5 * ((k - 25) / 3.0) ** 2))  # a formant near 780 Hz
    cep = full[:32].astype(np.float32)
    _, inv = cepstrum_matrices(512, 32)
    env, ph = np.zeros(257, np.float32), np.zeros(257, np.float32)
    cepstrum_to_logenv(cep, inv, env)
    cepstrum_to_logenv(cep, minimum_phase_matrix(512, 32), ph)
    pulse = np.zeros(512, np.float32)
    pulse[300] = 1.0
    spec = np.fft.rfft(pulse).astype(np.complex64)
    zs, ms = np.zeros(257, np.complex64), np.zeros(257, np.complex64)
    reshape_spectrum(spec, np.zeros(257, np.float32), env, 12.0, zs)
    apply_envelope(spec, env, ph, 12.0, ms)
    z, m = np.fft.irfft(zs, n=512), np.fft.irfft(ms, n=512)
    before = lambda y: np.sum(y[:300] ** 2) / np.sum(y ** 2)  # noqa: E731
    assert before(m) < 1e-3
    assert before(z) > 0.05
    np.testing.assert_allclose(z[300 - 40:300][::-1], z[301:341], atol=1e-6)  # symmetric about the pulse
    np.testing.assert_allclose(np.sum(m ** 2), np.sum(z ** 2), rtol=1e-3)  # same magnitude


@pytest.mark.parametrize("options, match", [({"phase": "maximum"}, "phase 'maximum'"),
                                            ({"voicing": 1}, "voicing 1"),
                                            ({"postfilter": 3.0}, r"postfilter 3.0; expected a number in \[1, 2\]"),
                                            ({"colour": "red"}, "option 'colour'"),
                                            ({"f0_continuity": 0.1}, r"f0_continuity 0.1; expected 0 \(off\) or a CMNDF"),
                                            ({"f0_continuity": float("nan")}, "f0_continuity nan"),
                                            ({"f0_continuity": True}, "f0_continuity True"),
                                            ({"f0_continuity_tolerance": 0.0},
                                             r"f0_continuity_tolerance 0.0; expected a number in \[0.01, 0.5\]")])
def test_bad_synthesis_options_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        Synthesizer("pulse-noise", options=options)


@pytest.mark.parametrize("warp", [0.8, 0.925, 1.0, 1.15, 1.25])
def test_warped_filterbank_matches_librosa_at_the_warped_rate(warp):
    """Reading the spectrum at ``warp`` times each band's frequency is the same as librosa's
    filterbank for a sample rate of ``16000 / warp`` (bins ``warp`` times narrower) with the band
    edges kept up to 8 kHz, divided by ``warp`` (the Slaney area over the warped axis)."""
    import warnings

    from rtvc.features import mel_filterbank

    got = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40, warp=warp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about bands beyond its (warped) Nyquist
        want = librosa.filters.mel(sr=16000 / warp, n_fft=512, n_mels=40, fmin=0.0, fmax=8000.0) / warp
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    # a formant-like peak at f * warp lights the bands a peak at f lights without the warp
    # (response centroids within a tenth of a band; the bins are 31 Hz, the peaks 3 bins wide)
    k = np.arange(257)
    plain_fb = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40)
    for f_bin in (30, 60, 100):
        warped = got @ np.exp(-0.5 * ((k - f_bin * warp) / (3 * warp)) ** 2)
        plain = plain_fb @ np.exp(-0.5 * ((k - f_bin) / 3) ** 2)
        centroid = lambda r: float(np.sum(np.arange(40) * r) / np.sum(r))  # noqa: E731
        assert centroid(warped) == pytest.approx(centroid(plain), abs=0.1)


def test_bad_warp_is_refused():
    from rtvc.features import mel_filterbank

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="warp="):
            mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40, warp=bad)
