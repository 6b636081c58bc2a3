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
with periodicity 0 (YIN itself is scale-invariant and would find pitch in -150 dBFS hum); so is a
frame whose mean square is not finite (NaN or infinite input). Such a frame's ``cmndf`` is set to
1 everywhere (no trough), so ``cmndf`` always describes the frame just analysed.

``yin_continue`` is a second, more lenient voicing decision on the same ``cmndf`` (for
resynthesis): a frame the threshold calls unvoiced that follows a voiced one stays voiced when
``cmndf`` has a trough below a higher threshold within a tolerance of the previous frame's lag.

Cost: the difference function is the whole bill (``window * tau_max`` = 85 440 terms with the
defaults, against a few hundred operations for everything else), and it is paid in full for every
non-silent frame, voiced or not: finding the threshold crossing, or falling through to the global
minimum on noise, is one pass over ``tau_max`` values. ``yin_difference`` computes every ``d(tau)``
with exactly the same float64 operations in the same order as the plain double loop (so results
are bit for bit those of the straightforward kernel), but arranged so that LLVM vectorises it:
lags run innermost over *ascending* addresses (the accumulator is filled in reversed lag order and
flipped at the end), eight reference samples per pass share one load and store of each accumulator.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .spectral import push_hop

__all__ = ["yin_cmndf", "yin_continue", "yin_difference", "yin_frame", "yin_pick", "yin_step", "yin_track"]


@njit(cache=True, nogil=True)
def yin_difference(x: np.ndarray, tau_max: int, d: np.ndarray) -> None:
    """Backward difference function of one frame.

    ``d[tau] = sum_{j=tau_max}^{n-1} (x[j] - x[j - tau])**2``, each sum in float64 and in order
    of ``j`` (bit for bit the plain double loop; no reassociation, no FMA).

    Parameters
    ----------
    x : float32 or float64 (window + tau_max,)
        The frame, oldest sample first.
    tau_max : int
        Largest lag, in samples; ``1 <= tau_max < x.shape[0]``.
    d : float64 (tau_max + 1,)
        Output; ``d[0] = 0``.
    """
    n = x.shape[0]
    for tau in range(tau_max + 1):
        d[tau] = 0.0
    # acc[u] accumulates d[tau_max - u]: for a fixed j the lagged samples x[j - tau_max + u] then
    # lie at ascending addresses, so the u loop is a plain vectorisable stream (a descending
    # one is not vectorised by Numba's LLVM); the slice is flipped into lag order at the end
    acc = d[1:tau_max + 1]
    j = tau_max
    while j + 8 <= n:
        x0 = np.float64(x[j])
        x1 = np.float64(x[j + 1])
        x2 = np.float64(x[j + 2])
        x3 = np.float64(x[j + 3])
        x4 = np.float64(x[j + 4])
        x5 = np.float64(x[j + 5])
        x6 = np.float64(x[j + 6])
        x7 = np.float64(x[j + 7])
        s = x[j - tau_max:j + 7]
        for u in range(tau_max):
            a = acc[u]
            v = x0 - np.float64(s[u])
            a += v * v
            v = x1 - np.float64(s[u + 1])
            a += v * v
            v = x2 - np.float64(s[u + 2])
            a += v * v
            v = x3 - np.float64(s[u + 3])
            a += v * v
            v = x4 - np.float64(s[u + 4])
            a += v * v
            v = x5 - np.float64(s[u + 5])
            a += v * v
            v = x6 - np.float64(s[u + 6])
            a += v * v
            v = x7 - np.float64(s[u + 7])
            a += v * v
            acc[u] = a
        j += 8
    while j < n:
        xj = np.float64(x[j])
        s = x[j - tau_max:j]
        for u in range(tau_max):
            v = xj - np.float64(s[u])
            acc[u] += v * v
        j += 1
    lo = 0
    hi = tau_max - 1
    while lo < hi:
        t = acc[lo]
        acc[lo] = acc[hi]
        acc[hi] = t
        lo += 1
        hi -= 1


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
    x : float32 or float64 (window + tau_max,)
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
    if not (ms >= silence_ms and ms <= 1.7976931348623157e308):  # also catches NaN and inf
        for t in range(cmndf.shape[0]):
            cmndf[t] = 1.0
        return 0.0, 0.0
    yin_difference(x, tau_max, d)
    yin_cmndf(d, cmndf)
    lag, per, voiced = yin_pick(cmndf, tau_min, tau_max, threshold)
    if not voiced or lag <= 0.0:
        return 0.0, per
    return sample_rate / lag, per


@njit(cache=True, nogil=True)
def yin_continue(cmndf: np.ndarray, tau_min: int, tau_max: int, sample_rate: float, f0_hz: float,
                 periodicity: float, prev_f0_hz: float, threshold: float, tolerance: float) -> tuple[float, float]:
    """Voicing with continuity: keep a voiced track going through frames YIN's threshold rejects.

    A frame that :func:`yin_frame` called unvoiced (``f0_hz == 0``) after a voiced one
    (``prev_f0_hz > 0``) is voiced at the deepest ``cmndf`` point among the integer lags within
    ``tolerance`` of the previous lag (``floor(lag / (1 + tolerance))`` to
    ``ceil(lag * (1 + tolerance))``, clipped to ``[tau_min, tau_max]``), if that point is below
    ``threshold``; its periodicity is then ``1 - cmndf`` there. Voiced frames, frames after an
    unvoiced one and frames without such a trough pass unchanged. A digitally silent frame has no
    trough (:func:`yin_frame` sets its ``cmndf`` to 1), so a track never runs on into silence.

    Parameters
    ----------
    cmndf : float64 (tau_max + 1,)
        The frame's curve, as :func:`yin_frame` left it.
    tau_min, tau_max : int
        The tracker's lag range.
    sample_rate : float
        Hz.
    f0_hz, periodicity : float
        :func:`yin_frame`'s result for this frame.
    prev_f0_hz : float
        This function's result for the previous frame (0 = unvoiced).
    threshold : float
        The lenient CMNDF threshold (above the tracker's own).
    tolerance : float
        Relative lag tolerance, > 0.

    Returns
    -------
    f0_hz, periodicity : float
    """
    if f0_hz > 0.0 or not prev_f0_hz > 0.0:
        return f0_hz, periodicity
    lag = sample_rate / prev_f0_hz
    lo = max(tau_min, int(math.floor(lag / (1.0 + tolerance))))
    hi = min(tau_max, int(math.ceil(lag * (1.0 + tolerance))))
    if lo > hi:
        return 0.0, periodicity
    k = lo
    for t in range(lo + 1, hi + 1):
        if cmndf[t] < cmndf[k]:
            k = t
    v = cmndf[k]
    if v < threshold:
        return sample_rate / k, 1.0 - v
    return 0.0, periodicity


@njit(cache=True, nogil=True)
def yin_step(frame: np.ndarray, x: np.ndarray, tau_min: int, tau_max: int, threshold: float, silence_ms: float,
             sample_rate: float, d: np.ndarray, cmndf: np.ndarray) -> tuple[float, float]:
    """Streaming step: shift the hop ``x`` into ``frame`` (in place), then :func:`yin_frame`.

    Parameters
    ----------
    frame : float64 or float32 (window + tau_max,)
        History, oldest first; on return its last ``x.shape[0]`` samples are ``x``. Holding
        float32 samples in a float64 history gives the same result, faster (no conversions).
    x : float32 (hop,)
        The new samples; ``hop <= frame.shape[0]``.
    tau_min, tau_max, threshold, silence_ms, sample_rate, d, cmndf
        As for :func:`yin_frame`.

    Returns
    -------
    f0_hz, periodicity : float
        As for :func:`yin_frame`.
    """
    push_hop(frame, x)
    return yin_frame(frame, tau_min, tau_max, threshold, silence_ms, sample_rate, d, cmndf)


@njit(cache=True, nogil=True)
def yin_track(xpad: np.ndarray, hop: int, frame_len: int, tau_min: int, tau_max: int, threshold: float,
              silence_ms: float, sample_rate: float, d: np.ndarray, cmndf: np.ndarray,
              f0_hz: np.ndarray, periodicity: np.ndarray) -> None:
    """Offline track: frame ``i`` is ``xpad[i * hop : i * hop + frame_len]``.

    ``xpad`` is the signal with ``frame_len - hop`` zeros in front (the streaming history at
    start-up), so frame ``i`` ends at the end of hop ``i``, exactly as the streaming stage sees it.
    """
    for i in range(f0_hz.shape[0]):
        e = (i + 1) * hop + frame_len - hop
        f, p = yin_frame(xpad[e - frame_len:e], tau_min, tau_max, threshold, silence_ms, sample_rate, d, cmndf)
        f0_hz[i] = f
        periodicity[i] = p
