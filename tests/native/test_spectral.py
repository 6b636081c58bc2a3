"""Causal low-latency STFT kernels against librosa / numpy references."""

import librosa
import numpy as np
import pytest

from rtvc._native.spectral import asymmetric_windows, causal_frames, ola_step, overlap_add, push_hop, window_frame

N_FFT, SYN, HOP = 512, 160, 80


def _signal(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_window_pair_sums_to_one():
    w_a, w_s = asymmetric_windows(N_FFT, SYN, HOP)
    prod = (w_a.astype(np.float64) * w_s)[N_FFT - SYN:]
    cola = prod[:HOP] + prod[HOP:]
    np.testing.assert_allclose(cola, 1.0, atol=1e-6)
    assert np.all(w_a > 0) and np.all(w_s[: N_FFT - SYN] == 0)


def test_window_pair_rejects_bad_sizes():
    with pytest.raises(ValueError, match="syn_len a multiple of hop"):
        asymmetric_windows(512, 150, 80)


def test_causal_frames_match_librosa_stft():
    # tolerance: float32 framing vs librosa's float64 path, relative 1e-4 of the peak bin
    x = _signal()
    w_a, _ = asymmetric_windows(N_FFT, SYN, HOP)
    n = len(x) // HOP
    frames = np.zeros((n, N_FFT), np.float32)
    causal_frames(x, w_a, HOP, frames)
    ours = np.fft.rfft(frames, axis=1)
    padded = np.concatenate([np.zeros(N_FFT - HOP, np.float32), x])
    ref = librosa.stft(padded, n_fft=N_FFT, hop_length=HOP, window=w_a.astype(np.float64), center=False).T
    np.testing.assert_allclose(np.abs(ours - ref[:n]).max() / np.abs(ref).max(), 0.0, atol=1e-5)


def test_streaming_framing_equals_offline():
    x = _signal(4000)
    w_a, _ = asymmetric_windows(N_FFT, SYN, HOP)
    n = len(x) // HOP
    frames = np.zeros((n, N_FFT), np.float32)
    causal_frames(x, w_a, HOP, frames)
    buf = np.zeros(N_FFT, np.float32)
    fr = np.zeros(N_FFT, np.float32)
    for t in range(n):
        push_hop(buf, x[t * HOP:(t + 1) * HOP])
        window_frame(buf, w_a, fr)
        np.testing.assert_array_equal(fr, frames[t])


def test_stft_istft_round_trip_streaming_and_offline():
    """Unmodified frames come back as the input delayed by exactly SYN - HOP samples."""
    x = _signal()
    w_a, w_s = asymmetric_windows(N_FFT, SYN, HOP)
    n = len(x) // HOP
    frames = np.zeros((n, N_FFT), np.float32)
    causal_frames(x, w_a, HOP, frames)
    rec_frames = np.fft.irfft(np.fft.rfft(frames, axis=1), n=N_FFT, axis=1)
    ola = np.zeros(SYN, np.float32)
    out = np.zeros(HOP, np.float32)
    y = np.zeros(n * HOP, np.float32)
    for t in range(n):
        ola_step(rec_frames[t], w_s, ola, out)
        y[t * HOP:(t + 1) * HOP] = out
    d = SYN - HOP
    np.testing.assert_allclose(y[d:], x[: n * HOP - d], atol=1e-5)
    off = np.zeros(n * HOP, np.float32)
    overlap_add(rec_frames, w_s, HOP, off)
    np.testing.assert_allclose(off[:-d], x[: n * HOP - d], atol=1e-5)  # the tail awaits later frames
    np.testing.assert_allclose(y[d:], off[:-d], atol=1e-6)


def test_click_latency_is_syn_minus_hop():
    x = np.zeros(2400, np.float32)
    x[1001] = 1.0
    w_a, w_s = asymmetric_windows(N_FFT, SYN, HOP)
    buf, fr, ola, out = (np.zeros(N_FFT, np.float32), np.zeros(N_FFT, np.float32),
                         np.zeros(SYN, np.float32), np.zeros(HOP, np.float32))
    y = []
    for s in range(0, len(x), HOP):
        push_hop(buf, x[s:s + HOP])
        window_frame(buf, w_a, fr)
        ola_step(np.fft.irfft(np.fft.rfft(fr), n=N_FFT), w_s, ola, out)
        y.append(out.copy())
    y = np.concatenate(y)
    assert int(np.argmax(np.abs(y))) == 1001 + SYN - HOP
    assert abs(y[1001 + SYN - HOP] - 1.0) < 1e-5
