"""Mel filterbank, dB log and DCT kernels against librosa / scipy."""

import librosa
import numpy as np
import scipy.fft

from rtvc._native.mel import dct_apply, log_db, mel_apply, power_spectrum
from rtvc.features import dct_matrix, mel_filterbank


def test_filterbank_matches_librosa():
    # tolerance: float32 storage of the same definition
    ours = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40)
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_dct_matrix_matches_scipy_ortho():
    x = np.random.default_rng(0).standard_normal(40).astype(np.float32)
    out = np.zeros(20, np.float32)
    dct_apply(x, dct_matrix(20, 40), out)
    np.testing.assert_allclose(out, scipy.fft.dct(x.astype(np.float64), type=2, norm="ortho")[:20], atol=1e-5)


def test_mfcc_pipeline_matches_librosa():
    # tolerance: 1e-3 dB on MFCCs of magnitude ~100 (float32 accumulation)
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((30, 257)) + 1j * rng.standard_normal((30, 257))
    frames = frames.astype(np.complex64)
    fb = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40)
    d = dct_matrix(20, 40)
    p = np.zeros(257, np.float32)
    mel = np.zeros(40, np.float32)
    ours = np.zeros((30, 20), np.float32)
    for t in range(30):
        power_spectrum(frames[t], p)
        mel_apply(p, fb, mel)
        log_db(mel, 1e-10, mel)
        dct_apply(mel, d, ours[t])
    S = np.abs(frames.astype(np.complex128).T) ** 2
    ref = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S, sr=16000, n_mels=40),
                                                     top_db=None), n_mfcc=20).T
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_log_db_floor():
    out = np.zeros(3, np.float32)
    log_db(np.array([0.0, 1.0, 100.0], np.float32), 1e-10, out)
    np.testing.assert_allclose(out, [-100.0, 0.0, 20.0], atol=1e-5)
