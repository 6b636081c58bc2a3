"""Cepstral envelope kernels against a numpy irfft / lifter / rfft reference."""

import numpy as np

from rtvc._native.cepstrum import (cepstrum_matrices, cepstrum_to_logenv, log_magnitude, logmag_to_cepstrum,
                                   warp_bins)

N_FFT, N_CEP = 512, 32


def _logmag(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(N_FFT) * np.hanning(N_FFT)
    return np.log(np.abs(np.fft.rfft(x)) + 1e-5)


def test_cepstrum_matches_numpy_irfft():
    # tolerance: float32 matrices, 1e-5 on cepstra of magnitude ~1
    L = _logmag()
    fwd, _ = cepstrum_matrices(N_FFT, N_CEP)
    c = np.zeros(N_CEP, np.float32)
    logmag_to_cepstrum(L.astype(np.float32), fwd, c)
    np.testing.assert_allclose(c, np.fft.irfft(L)[:N_CEP], atol=1e-5)


def test_envelope_matches_liftered_rfft():
    L = _logmag(1)
    fwd, inv = cepstrum_matrices(N_FFT, N_CEP)
    c = np.zeros(N_CEP, np.float32)
    env = np.zeros(N_FFT // 2 + 1, np.float32)
    logmag_to_cepstrum(L.astype(np.float32), fwd, c)
    cepstrum_to_logenv(c, inv, env)
    full = np.fft.irfft(L)
    lift = np.zeros_like(full)
    lift[:N_CEP] = full[:N_CEP]
    lift[-(N_CEP - 1):] = full[-(N_CEP - 1):]
    ref = np.fft.rfft(lift).real
    np.testing.assert_allclose(env, ref, atol=1e-4)
    # a smooth envelope survives the round trip (up to the lifter)
    c2 = np.zeros(N_CEP, np.float32)
    logmag_to_cepstrum(env, fwd, c2)
    np.testing.assert_allclose(c2, c, atol=1e-4)


def test_log_magnitude_and_floor():
    s = np.array([0, 3 + 4j, 1e-9], np.complex64)
    out = np.zeros(3, np.float32)
    log_magnitude(s, 1e-5, out)
    np.testing.assert_allclose(out, [np.log(1e-5), np.log(5.0), np.log(1e-5)], rtol=1e-6)


def test_warp_matches_np_interp():
    x = np.random.default_rng(2).standard_normal(257).astype(np.float32)
    for r in (0.7, 1.0, 1.4):
        out = np.zeros_like(x)
        warp_bins(x, r, out)
        ref = np.interp(np.arange(257) / r, np.arange(257), x)
        np.testing.assert_allclose(out, ref, atol=1e-6)


def test_minimum_phase_matches_the_causal_cepstrum_fft():
    # reference: exp(rfft(causal cepstrum)) is the minimum-phase filter; tolerance 1e-4 rad (float32)
    from rtvc._native.cepstrum import minimum_phase_matrix

    rng = np.random.default_rng(4)
    c = (rng.standard_normal(N_CEP) / (1.0 + np.arange(N_CEP))).astype(np.float32)
    causal = np.zeros(N_FFT)
    causal[0] = c[0]
    causal[1:N_CEP] = 2.0 * c[1:]
    ref = np.fft.rfft(causal)
    phase = np.zeros(N_FFT // 2 + 1, np.float32)
    cepstrum_to_logenv(c, minimum_phase_matrix(N_FFT, N_CEP), phase)
    np.testing.assert_allclose(phase, ref.imag, atol=1e-4)
    # the filter is causal and front-loaded: almost no energy at negative times (the wrapped half)
    h = np.fft.irfft(np.exp(ref), n=N_FFT)
    assert np.sum(h[N_FFT // 2:] ** 2) < 1e-6 * np.sum(h ** 2)


def test_postfilter_equals_the_envelope_of_the_emphasised_cepstrum_at_the_same_power():
    from rtvc._native.cepstrum import postfilter_logenv

    rng = np.random.default_rng(5)
    c = (rng.standard_normal(N_CEP) / (1.0 + np.arange(N_CEP))).astype(np.float32)
    c[0] = -3.0
    _, inv = cepstrum_matrices(N_FFT, N_CEP)
    nb = N_FFT // 2 + 1

    def env(cc):  # numpy reference: the rfft of the liftered symmetric cepstrum
        full = np.zeros(N_FFT)
        full[:N_CEP] = cc
        full[-N_CEP + 1:] = cc[1:][::-1]
        return np.fft.rfft(full).real

    e = np.zeros(nb, np.float32)
    cepstrum_to_logenv(c, inv, e)
    out = np.zeros(nb, np.float32)
    postfilter_logenv(e, c, 1.3, inv, out)
    emph = c.astype(np.float64).copy()
    emph[2:] *= 1.3
    ref = env(emph)
    ref += 0.5 * np.log(np.sum(np.exp(2 * env(c.astype(np.float64)))) / np.sum(np.exp(2 * ref)))
    # tolerance 1e-4 nepers: float32 matrices on envelopes of magnitude ~3
    np.testing.assert_allclose(out, ref, atol=1e-4)
    postfilter_logenv(e, c, 1.0, inv, out)
    np.testing.assert_allclose(out, e, atol=1e-6)
