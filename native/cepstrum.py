"""Cepstral spectral envelope: log magnitude <-> low-quefrency real cepstrum, via cosine
matrices (no FFT inside the kernels).

For a real frame of length ``n_fft`` with ``n_bins = n_fft // 2 + 1`` rfft bins and natural-log
magnitude ``L[k]``, the real cepstrum is ``c[q] = (1/n_fft) * sum_k a_k L[k] cos(2 pi k q / n_fft)``
with ``a_k = 1`` for ``k = 0, n_fft/2`` and ``2`` otherwise (``np.fft.irfft(L)[q]``). The envelope
keeps ``q < n_cep`` (lifter): ``E[k] = c[0] + 2 sum_{q>=1} c[q] cos(2 pi k q / n_fft)``, which is
``np.fft.rfft`` of the liftered, symmetric cepstrum.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .linalg import matvec

__all__ = ["cepstrum_matrices", "minimum_phase_matrix", "log_magnitude", "logmag_to_cepstrum",
           "cepstrum_to_logenv", "warp_bins", "spectrum_envelope", "postfilter_logenv"]


def cepstrum_matrices(n_fft: int, n_cep: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis ``(n_cep, n_bins)`` and synthesis ``(n_bins, n_cep)`` cosine matrices (float32)."""
    n_bins = n_fft // 2 + 1
    k = np.arange(n_bins, dtype=np.float64)
    q = np.arange(n_cep, dtype=np.float64)
    cos = np.cos(2.0 * np.pi * np.outer(q, k) / n_fft)
    a = np.full(n_bins, 2.0)
    a[0] = 1.0
    a[-1] = 1.0
    fwd = cos * a[None, :] / n_fft
    b = np.full(n_cep, 2.0)
    b[0] = 1.0
    inv = (cos * b[:, None]).T
    return fwd.astype(np.float32), np.ascontiguousarray(inv).astype(np.float32)


def minimum_phase_matrix(n_fft: int, n_cep: int) -> np.ndarray:
    """``(n_bins, n_cep)`` float32 sine matrix giving the minimum phase of a liftered envelope.

    The minimum-phase filter with log magnitude ``E[k]`` (the envelope of ``c[0..n_cep)``) has
    the complex log spectrum ``c[0] + 2 sum_{q>=1} c[q] exp(-j 2 pi k q / n_fft)`` (causal
    cepstrum), so its phase is ``phi[k] = -2 sum_{q>=1} c[q] sin(2 pi k q / n_fft)``:
    ``phi = minimum_phase_matrix(...) @ c`` (use :func:`cepstrum_to_logenv` for the product).
    """
    n_bins = n_fft // 2 + 1
    k = np.arange(n_bins, dtype=np.float64)
    q = np.arange(n_cep, dtype=np.float64)
    m = -2.0 * np.sin(2.0 * np.pi * np.outer(k, q) / n_fft)
    m[:, 0] = 0.0
    return np.ascontiguousarray(m).astype(np.float32)


@njit(cache=True, nogil=True)
def log_magnitude(spec: np.ndarray, floor: float, out: np.ndarray) -> None:
    """``out[k] = log(max(|spec[k]|, floor))`` (natural log)."""
    fl2 = floor * floor
    for k in range(spec.shape[0]):
        p = spec[k].real * spec[k].real + spec[k].imag * spec[k].imag
        out[k] = 0.5 * np.log(p if p > fl2 else fl2)


@njit(cache=True, nogil=True)
def logmag_to_cepstrum(logmag: np.ndarray, fwd: np.ndarray, out: np.ndarray) -> None:
    """``out = fwd @ logmag``: ``(n_bins,)`` log magnitude -> ``(n_cep,)`` cepstrum."""
    matvec(fwd, logmag, out)


@njit(cache=True, nogil=True)
def cepstrum_to_logenv(cep: np.ndarray, inv: np.ndarray, out: np.ndarray) -> None:
    """``out = inv @ cep``: ``(n_cep,)`` cepstrum -> ``(n_bins,)`` natural-log envelope."""
    matvec(inv, cep, out)


@njit(cache=True, nogil=True)
def warp_bins(x: np.ndarray, ratio: float, out: np.ndarray) -> None:
    """Frequency warp ``out[k] = x(k / ratio)`` by linear interpolation, holding the last bin
    (``ratio > 1`` moves features up: a smaller vocal tract / higher formants)."""
    n = x.shape[0]
    for k in range(n):
        pos = k / ratio
        i = int(pos)
        if i >= n - 1:
            out[k] = x[n - 1]
        else:
            f = pos - i
            out[k] = x[i] * (1.0 - f) + x[i + 1] * f


@njit(cache=True, nogil=True)
def spectrum_envelope(spec: np.ndarray, floor: float, fwd: np.ndarray, inv: np.ndarray, logmag: np.ndarray,
                      cep: np.ndarray, env: np.ndarray) -> None:
    """``log_magnitude`` -> ``logmag_to_cepstrum`` -> ``cepstrum_to_logenv`` in one call
    (``logmag``, ``cep`` and ``env`` are all written)."""
    log_magnitude(spec, floor, logmag)
    logmag_to_cepstrum(logmag, fwd, cep)
    cepstrum_to_logenv(cep, inv, env)


@njit(cache=True, nogil=True)
def postfilter_logenv(logenv: np.ndarray, cep: np.ndarray, beta: float, inv: np.ndarray, out: np.ndarray) -> None:
    """Cepstral emphasis applied to an envelope: sharper formants, same frame power.

    ``out`` is the envelope of the cepstrum ``c'`` with ``c'[q] = beta * cep[q]`` for
    ``q >= 2`` (``c0``, ``c1``, level and tilt, kept), plus the constant that makes its power
    ``sum_k exp(2 out[k])`` over the rfft bins equal that of ``logenv``. It counters the
    over-smoothing of regressed envelopes (the classic postfilter of statistical parametric
    synthesis). Linear in the cepstrum, so no matrix product is needed:
    ``out = beta * logenv - (beta - 1) * (cep[0] inv[:, 0] + cep[1] inv[:, 1]) + const``.

    Parameters
    ----------
    logenv : (n_bins,) float32
        ``inv @ cep`` (:func:`cepstrum_to_logenv`).
    cep : (n_cep,) float32
    inv : (n_bins, n_cep) float32
        Synthesis matrix of :func:`cepstrum_matrices`.
    out : (n_bins,) float32
        Overwritten; may not alias ``logenv``.
    """
    nb = logenv.shape[0]
    b1 = beta - 1.0
    ma = logenv[0]
    mb = -1e30
    for k in range(nb):
        v = beta * logenv[k] - b1 * (cep[0] * inv[k, 0] + cep[1] * inv[k, 1])
        out[k] = v
        ma = max(ma, logenv[k])
        mb = max(mb, v)
    # log-sum-exp around the maxima: no overflow at any level
    sa = 0.0
    sb = 0.0
    for k in range(nb):
        sa += np.exp(2.0 * (logenv[k] - ma))
        sb += np.exp(2.0 * (out[k] - mb))
    g = (ma - mb) + 0.5 * (np.log(sa) - np.log(sb))
    for k in range(nb):
        out[k] += g
