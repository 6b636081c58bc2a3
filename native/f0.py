"""Causal YIN fundamental-frequency kernels (de Cheveigne & Kawahara, 2002).

One analysis frame is the most recent ``window + tau_max`` samples ``x``. The reference
segment is the *last* ``window`` samples (so the estimate always includes the newest input);
it is compared with the segments ``tau`` samples earlier:

    d(tau) = sum_{j=0}^{window-1} (x[tau_max + j] - x[tau_max + j - tau])**2
    cmndf(0) = 1,  cmndf(tau) = d(tau) * tau / sum_{k=1}^{tau} d(k)   (1 where the sum is 0)

The chosen lag is the first ``tau`` in ``[tau_min, tau_max]`` whose ``cmndf`` falls below
``threshold``, walked down to the bottom of its trough (voiced); when there is none, the global
minimum of ``cmndf`` over that range (unvoiced). The lag is refined by parabolic interpolation
of ``cmndf`` around the integer lag. Periodicity is ``1 - cmndf`` at the integer lag, clipped
to ``[0, 1]``. A frame whose reference segment has mean square below ``silence_ms`` is unvoiced
with periodicity 0 (YIN itself is scale-invariant and would find pitch in -150 dBFS hum).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["yin_difference", "yin_cmndf", "yin_pick", "yin_frame", "yin_track"]


@njit(cache=True, nogil=True)
def yin_difference(x: np.ndarray, tau_max: int, d: np.ndarray) -> None:
    """Backward difference function of one frame.

    Parameters
    ----------
    x : float32 (window + tau_max,)
        The frame, oldest sample first.
    tau_max : int
        Largest lag, in samples.
    d : float64 (tau_max + 1,)
        Output; ``d[0] = 0``.
    """
    n = x.shape[0]
    for tau in range(tau_max + 1):
        d[tau] = 0.0
    # lags innermost: independent accumulators, so the loop vectorises without reassociating
    # any sum (each d[tau] still adds its terms in order of j)
    for j in range(tau_max, n):
        xj = np.float64(x[j])
        for tau in range(1, tau_max + 1):
            v = xj - np.float64(x[j - tau])
            d[tau] += v * v


@njit(cache=True, nogil=True)
def yin_cmndf(d: np.ndarray, cmndf: np.ndarray) -> None:
    """Cumulative mean normalised difference of ``d`` (both float64, same length)."""
    cmndf[0] = 1.0
    run = 0.0
    for tau in range(1, d.shape[0]):
        run += d[tau]
        if run > 0.0:
            cmndf[tau] = d[tau] * tau / run
        else:
            cmndf[tau] = 1.0


@njit(cache=True, nogil=True)
def yin_pick(cmndf: np.ndarray, tau_min: int, tau_max: int, threshold: float) -> tuple[float, float, bool]:
    """Choose the lag from a ``cmndf`` curve.

    Returns
    -------
    lag : float
        Parabolically refined lag in samples (also for unvoiced frames).
    periodicity : float
        ``1 - cmndf`` at the integer lag, clipped to [0, 1].
    voiced : bool
        Whether a trough fell below ``threshold``.
    """
    tau = -1
    for t in range(tau_min, tau_max + 1):
        if cmndf[t] < threshold:
            tau = t
            while tau + 1 <= tau_max and cmndf[tau + 1] < cmndf[tau]:
                tau += 1
            break
    voiced = tau >= 0
    if not voiced:
        tau = tau_min
        for t in range(tau_min + 1, tau_max + 1):
            if cmndf[t] < cmndf[tau]:
                tau = t
    lag = np.float64(tau)
    if tau > 1 and tau < cmndf.shape[0] - 1:
        a = cmndf[tau - 1]
        b = cmndf[tau]
        c = cmndf[tau + 1]
        den = a - 2.0 * b + c
        if den > 0.0:
            shift = 0.5 * (a - c) / den
            if shift > 1.0:
                shift = 1.0
            elif shift < -1.0:
                shift = -1.0
            lag += shift
    per = 1.0 - cmndf[tau]
    if per < 0.0:
        per = 0.0
    elif per > 1.0:
        per = 1.0
    return lag, per, voiced


@njit(cache=True, nogil=True)
def yin_frame(x: np.ndarray, tau_min: int, tau_max: int, threshold: float, silence_ms: float,
              sample_rate: float, d: np.ndarray, cmndf: np.ndarray) -> tuple[float, float]:
    """F0 of one frame.

    Parameters
    ----------
    x : float32 (window + tau_max,)
        The most recent samples, oldest first.
    tau_min, tau_max : int
        Lag range in samples (``sample_rate / fmax``, ``sample_rate / fmin``).
    threshold : float
        CMNDF trough threshold for voicing.
    silence_ms : float
        Mean-square floor of the reference segment below which the frame is silent.
    sample_rate : float
        Hz.
    d, cmndf : float64 (tau_max + 1,)
        Scratch, overwritten.

    Returns
    -------
    f0_hz : float
        0.0 when unvoiced.
    periodicity : float
        In [0, 1].
    """
    n = x.shape[0]
    ms = 0.0
    for j in range(tau_max, n):
        ms += np.float64(x[j]) * np.float64(x[j])
    ms /= max(1, n - tau_max)
    if not ms >= silence_ms:  # also catches NaN
        return 0.0, 0.0
    yin_difference(x, tau_max, d)
    yin_cmndf(d, cmndf)
    lag, per, voiced = yin_pick(cmndf, tau_min, tau_max, threshold)
    if not voiced or lag <= 0.0:
        return 0.0, per
    return sample_rate / lag, per


@njit(cache=True, nogil=True)
def yin_track(xpad: np.ndarray, hop: int, frame_len: int, tau_min: int, tau_max: int, threshold: float,
              silence_ms: float, sample_rate: float, d: np.ndarray, cmndf: np.ndarray,
              f0_hz: np.ndarray, periodicity: np.ndarray) -> None:
    """Offline track: frame ``i`` is ``xpad[(i + 1) * hop : (i + 1) * hop + frame_len]``.

    ``xpad`` is the signal with ``frame_len - hop`` zeros in front (the streaming history at
    start-up), so frame ``i`` ends at the end of hop ``i``, exactly as the streaming stage sees it.
    """
    for i in range(f0_hz.shape[0]):
        e = (i + 1) * hop + frame_len - hop
        f, p = yin_frame(xpad[e - frame_len:e], tau_min, tau_max, threshold, silence_ms, sample_rate, d, cmndf)
        f0_hz[i] = f
        periodicity[i] = p
