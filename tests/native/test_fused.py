"""The fused per-hop kernels (one call per analysis or synthesis hop) against NumPy references
that rebuild each step with ``np.fft`` and float64 matrix products.

Tolerances: the kernels work on float32 arrays (float64 inside the FFT and the sums); the
references in float64. Features within 2e-4 (MFCC in dB, cepstra in nepers: values up to ~100
and ~10); synthesis output within 1e-4 of the hop's peak plus 1e-6 absolute, over 60 hops in which
the rounding differences feed back through the overlap-add (the pulse train and the noise
generator, whose state must stay exact, are compared bit for bit).
"""

import numpy as np
import pytest

from rtvc._native.analysis import feature_frame, feature_step
from rtvc._native.cepstrum import cepstrum_matrices, minimum_phase_matrix
from rtvc._native.fft import rfft_tables
from rtvc._native.spectral import asymmetric_windows
from rtvc._native.synth import pulse_noise_hop, pulse_noise_step, shape_overlap_add, target_envelope
from rtvc.features import F0_REF_HZ, MAG_FLOOR, POWER_AMIN, dct_matrix, mel_filterbank

N_FFT, HOP, SYN, NB, SR = 512, 80, 160, 257, 16000.0


def _speechy(n, seed=0, f0=140.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 20)) * 0.2
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def _ref_features(frame, f0_hz, per, fb, dct, fwd):
    spec = np.fft.rfft(frame.astype(np.float64))
    power = np.abs(spec) ** 2
    mfcc = dct.astype(np.float64) @ (10.0 * np.log10(np.maximum(fb.astype(np.float64) @ power, POWER_AMIN)))
    voiced = [np.log2(f0_hz / F0_REF_HZ), 1.0] if f0_hz > 0 else [0.0, 0.0]
    logmag = np.log(np.maximum(np.abs(spec), MAG_FLOOR))
    return spec, np.concatenate([mfcc, voiced, [per]]), logmag, fwd.astype(np.float64) @ logmag


@pytest.mark.parametrize("n_cep", (32, 64))
def test_feature_frame_matches_numpy(n_cep):
    fb = mel_filterbank(sample_rate=16000, n_fft=N_FFT, n_mels=40)
    dct = dct_matrix(20, 40)
    fwd, _ = cepstrum_matrices(N_FFT, n_cep)
    perm, tw = rfft_tables(N_FFT)
    w_a, _ = asymmetric_windows(N_FFT, SYN, HOP)
    spec = np.zeros(NB, np.complex64)
    logmag, cep, feats = np.zeros(NB, np.float32), np.zeros(n_cep, np.float32), np.zeros(23, np.float32)
    x = _speechy(N_FFT, seed=n_cep)
    frames = [x * w_a, np.zeros(N_FFT, np.float32), (1e-6 * x * w_a).astype(np.float32)]  # speech, silence, quiet
    for frame, f0, per in zip(frames, (141.3, 0.0, 88.0), (0.93, 0.0, 0.41)):
        feature_frame(frame.astype(np.float32), f0, per, F0_REF_HZ, fb, dct, POWER_AMIN, fwd, MAG_FLOOR, perm, tw,
                      np.zeros(N_FFT // 2, np.complex128), spec, np.zeros(NB, np.float32), np.zeros(40, np.float32),
                      logmag, cep, feats)
        r_spec, r_feats, r_logmag, r_cep = _ref_features(frame, f0, per, fb, dct, fwd)
        np.testing.assert_allclose(spec, r_spec, atol=1e-6 * max(1.0, np.abs(r_spec).max()))
        np.testing.assert_allclose(feats, r_feats, atol=2e-4)
        np.testing.assert_allclose(logmag, r_logmag, atol=2e-4)
        np.testing.assert_allclose(cep, r_cep, atol=2e-4)


def test_feature_step_frames_the_hop_and_returns_float32_rounded_f0():
    from rtvc.f0 import CausalF0

    f0t = CausalF0()
    fst = f0t.init_state()
    fb = mel_filterbank(sample_rate=16000, n_fft=N_FFT, n_mels=40)
    dct = dct_matrix(20, 40)
    fwd, _ = cepstrum_matrices(N_FFT, 32)
    perm, tw = rfft_tables(N_FFT)
    w_a, _ = asymmetric_windows(N_FFT, SYN, HOP)
    buf, frame = np.zeros(N_FFT, np.float32), np.zeros(N_FFT, np.float32)
    feats, cep = np.zeros(23, np.float32), np.zeros(32, np.float32)
    ref_st = f0t.init_state()
    x = _speechy(40 * HOP, seed=3)
    for t in range(40):
        h = x[t * HOP:(t + 1) * HOP]
        f0, per = feature_step(h, fst.frame, f0t.tau_min, f0t.tau_max, f0t.threshold, f0t.silence_ms, SR, fst.d,
                               fst.cmndf, buf, w_a, frame, F0_REF_HZ, fb, dct, POWER_AMIN, fwd, MAG_FLOOR, perm, tw,
                               np.zeros(N_FFT // 2, np.complex128), np.zeros(NB, np.complex64),
                               np.zeros(NB, np.float32), np.zeros(40, np.float32), np.zeros(NB, np.float32), cep,
                               feats)
        (rf, rp), ref_st = f0t.step(h, ref_st)
        assert f0 == float(np.float32(rf)) and per == float(np.float32(rp))
        hist = x[max(0, (t + 1) * HOP - N_FFT):(t + 1) * HOP]
        ref_frame = np.concatenate([np.zeros(N_FFT - hist.shape[0], np.float32), hist]) * w_a
        np.testing.assert_array_equal(frame, ref_frame)
        _, r_feats, _, r_cep = _ref_features(ref_frame, f0, per, fb, dct, fwd)
        np.testing.assert_allclose(feats, r_feats, atol=2e-4)
        np.testing.assert_allclose(cep, r_cep, atol=2e-4)
    assert feats[21] == 1.0  # voiced by the end


# ----------------------------------------------------------------------------- synthesis
def _ref_target(cep, inv, sin_m, beta, ratio, min_phase):
    c = cep.astype(np.float64)
    env = inv.astype(np.float64) @ c
    if beta != 1.0:
        cp = c.copy()
        cp[2:] *= beta
        pf = inv.astype(np.float64) @ cp
        env = pf + 0.5 * (np.log(np.sum(np.exp(2 * env))) - np.log(np.sum(np.exp(2 * pf))))
    ph = np.zeros(NB)
    if min_phase:
        cp = c.copy()
        cp[2:] *= beta
        ph = sin_m.astype(np.float64) @ cp
    if ratio != 1.0:
        k = np.arange(NB) / ratio
        env = np.interp(k, np.arange(NB), env)
        ph = np.interp(k, np.arange(NB), ph)
    return env, ph


@pytest.mark.parametrize("beta, ratio, min_phase", [(1.0, 1.0, False), (1.2, 1.0, False), (1.0, 1.15, True),
                                                     (1.3, 0.85, True)])
def test_target_envelope_matches_numpy(beta, ratio, min_phase):
    _, inv = cepstrum_matrices(N_FFT, 48)
    sin_m = minimum_phase_matrix(N_FFT, 48)
    rng = np.random.default_rng(5)
    cep = (rng.standard_normal(48) / (1.0 + np.arange(48))).astype(np.float32)
    cep[0] = -4.0
    env, ph = np.zeros(NB, np.float32), np.zeros(NB, np.float32)
    target_envelope(cep, ratio, inv, sin_m, beta, min_phase, *(np.zeros(NB, np.float32) for _ in range(5)), env, ph)
    r_env, r_ph = _ref_target(cep, inv, sin_m, beta, ratio, min_phase)
    np.testing.assert_allclose(env, r_env, atol=1e-4)
    np.testing.assert_allclose(ph, r_ph, atol=1e-4)


def _ref_shape(exc, env, ph, min_phase, max_gain_log):
    g = np.clip(env, -max_gain_log, max_gain_log)
    return exc * np.exp(g + (1j * ph if min_phase else 0.0))


class _RefPulseNoise:
    """The pulse + noise hop rebuilt with np.fft and float64 (the pulse/noise generator is the
    kernel itself: it has its own reference test in tests/test_features.py)."""

    def __init__(self, n_cep, seed):
        self.fwd, self.inv = cepstrum_matrices(N_FFT, n_cep)
        self.sin_m = minimum_phase_matrix(N_FFT, n_cep)
        self.w_a, self.w_s = asymmetric_windows(N_FFT, SYN, HOP)
        self.st = np.zeros(2, np.float64)
        self.rng = np.array([seed], np.uint64)
        self.pbuf, self.nbuf = np.zeros(N_FFT), np.zeros(N_FFT)
        self.ola = np.zeros(SYN)

    def _env(self, spec):
        logmag = np.log(np.maximum(np.abs(spec), MAG_FLOOR))
        return self.inv.astype(np.float64) @ (self.fwd.astype(np.float64) @ logmag)

    def step(self, cep, f0, v, cutoff, ratio, beta, min_phase, width, max_gain_log):
        env, ph = _ref_target(cep, self.inv, self.sin_m, beta, ratio, min_phase)
        p, z = np.zeros(HOP, np.float32), np.zeros(HOP, np.float32)
        pulse_noise_step(f0, SR, self.st, self.rng, p, z)
        self.pbuf = np.concatenate([self.pbuf[HOP:], p])
        self.nbuf = np.concatenate([self.nbuf[HOP:], z])
        ps, ns = np.fft.rfft(self.pbuf * self.w_a), np.fft.rfft(self.nbuf * self.w_a)
        t = np.clip((np.arange(NB) - cutoff) / width, 0.0, 1.0)
        w = v * (0.5 + 0.5 * np.cos(np.pi * t))
        exc = ps * np.sqrt(w) * np.exp(-self._env(ps)) + ns * np.sqrt(1 - w) * np.exp(-self._env(ns))
        frame = np.fft.irfft(_ref_shape(exc, env, ph, min_phase, max_gain_log), n=N_FFT)
        self.ola += (frame * self.w_s)[-SYN:]
        y = self.ola[:HOP].copy()
        self.ola = np.concatenate([self.ola[HOP:], np.zeros(HOP)])
        return y


@pytest.mark.parametrize("beta, ratio, min_phase", [(1.0, 1.0, False), (1.2, 1.0, False), (1.0, 1.12, True),
                                                     (1.2, 0.9, False)])
def test_pulse_noise_hop_matches_numpy(beta, ratio, min_phase):
    n_cep, seed, width, max_gain_log = 64, 987654321, 64.0, 12.0
    ref = _RefPulseNoise(n_cep, seed)
    fwd, inv, sin_m, w_a, w_s = ref.fwd, ref.inv, ref.sin_m, ref.w_a, ref.w_s
    perm, tw = rfft_tables(N_FFT)
    z = lambda n, t=np.float32: np.zeros(n, t)  # noqa: E731
    st, rng = z(2, np.float64), np.array([seed], np.uint64)
    pulses, noise = z(HOP), z(HOP)
    out = z(HOP)
    state = (st, rng, pulses, noise, z(N_FFT), z(N_FFT), z(N_FFT), z(NB, np.complex64), z(NB, np.complex64), z(NB),
             z(n_cep), z(NB), z(NB), z(NB, np.complex64), z(NB), z(NB), z(NB), z(NB), z(NB), z(NB),
             z(NB, np.complex64), z(SYN), out)
    rs = np.random.default_rng(1)
    base = (rs.standard_normal(n_cep) / (1.0 + np.arange(n_cep)) ** 1.5).astype(np.float32)
    base[0] = -3.0
    for t in range(60):
        cep = (base + 0.05 * rs.standard_normal(n_cep) / (1.0 + np.arange(n_cep))).astype(np.float32)
        f0 = 0.0 if 20 <= t < 30 else 110.0 + 3.0 * t  # an unvoiced stretch in the middle
        v = 0.0 if f0 == 0.0 else 0.8
        cutoff = 100.0 + t
        pulse_noise_hop(cep, f0, v, cutoff, ratio, SR, width, beta, min_phase, max_gain_log, MAG_FLOOR, w_a, w_s,
                        fwd, inv, sin_m, perm, tw, z(N_FFT // 2, np.complex128), *state)
        y_ref = ref.step(cep, f0, v, cutoff, ratio, beta, min_phase, width, max_gain_log)
        np.testing.assert_allclose(out, y_ref, rtol=0, atol=1e-6 + 1e-4 * np.abs(y_ref).max())
        np.testing.assert_array_equal(st, ref.st)  # the pulse phase and the noise stream stay exact
        np.testing.assert_array_equal(rng, ref.rng)
    assert np.abs(out).max() > 0.0


def test_shape_overlap_add_matches_numpy():
    w_a, w_s = asymmetric_windows(N_FFT, SYN, HOP)
    perm, tw = rfft_tables(N_FFT)
    rng = np.random.default_rng(9)
    ola, ref_ola = np.zeros(SYN, np.float32), np.zeros(SYN)
    for min_phase in (False, True, False):
        exc = (rng.standard_normal(NB) + 1j * rng.standard_normal(NB)).astype(np.complex64)
        env = (3.0 * rng.standard_normal(NB)).astype(np.float32)  # some bins beyond the +-2 gain clip
        ph = rng.uniform(-3, 3, NB).astype(np.float32)
        out = np.zeros(HOP, np.float32)
        shape_overlap_add(exc, env, ph, min_phase, 2.0, np.zeros(NB, np.float32), perm, tw,
                          np.zeros(N_FFT // 2, np.complex128), w_s, np.zeros(NB, np.complex64),
                          np.zeros(N_FFT, np.float32), ola, out)
        frame = np.fft.irfft(_ref_shape(exc.astype(np.complex128), env, ph, min_phase, 2.0), n=N_FFT)
        ref_ola += (frame * w_s)[-SYN:]
        np.testing.assert_allclose(out, ref_ola[:HOP], atol=1e-5)
        ref_ola = np.concatenate([ref_ola[HOP:], np.zeros(HOP)])
