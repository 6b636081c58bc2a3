"""Mel filterbank application, log compression and DCT-II (for MFCC), per frame.

The filterbank and DCT matrices are built once by the caller (``rtvc.features``), so the
per-hop path is three matrix-vector loops over caller-allocated arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .linalg import matvec

__all__ = ["power_spectrum", "mel_apply", "log_db", "dct_apply", "mfcc_frame"]


@njit(cache=True, nogil=True)
def power_spectrum(spec: np.ndarray, out: np.ndarray) -> None:
    """``out[k] = |spec[k]|**2`` for a complex ``(n_bins,)`` spectrum."""
    for k in range(spec.shape[0]):
        out[k] = spec[k].real * spec[k].real + spec[k].imag * spec[k].imag


@njit(cache=True, nogil=True)
def mel_apply(power: np.ndarray, fb: np.ndarray, out: np.ndarray) -> None:
    """``out = fb @ power``; ``fb`` is ``(n_mels, n_bins)``, ``power`` ``(n_bins,)``."""
    matvec(fb, power, out)


@njit(cache=True, nogil=True)
def log_db(x: np.ndarray, amin: float, out: np.ndarray) -> None:
    """``out = 10 * log10(max(x, amin))`` (librosa's ``power_to_db`` with ``ref=1``, no top_db)."""
    for i in range(x.shape[0]):
        v = x[i] if x[i] > amin else amin
        out[i] = 10.0 * np.log10(v)


@njit(cache=True, nogil=True)
def dct_apply(x: np.ndarray, dct: np.ndarray, out: np.ndarray) -> None:
    """``out = dct @ x``: ``dct`` is the first ``n_out`` rows of the orthonormal DCT-II matrix."""
    matvec(dct, x, out)


@njit(cache=True, nogil=True)
def mfcc_frame(spec: np.ndarray, fb: np.ndarray, dct: np.ndarray, amin: float, power: np.ndarray,
               mel: np.ndarray, out: np.ndarray) -> None:
    """``power_spectrum`` -> ``mel_apply`` -> ``log_db`` -> ``dct_apply`` in one call."""
    power_spectrum(spec, power)
    mel_apply(power, fb, mel)
    log_db(mel, amin, mel)
    dct_apply(mel, dct, out)
