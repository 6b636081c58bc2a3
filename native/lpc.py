"""Linear prediction kernels: autocorrelation, Levinson-Durbin, envelope warp, lattice synthesis,
and a seeded white-noise source.

Conventions: the predictor polynomial is ``A(z) = 1 + a[1] z^-1 + ... + a[p] z^-p``; reflection
coefficients ``k[1..p]`` are those of the Levinson recursion
``a_j <- a_j + k_i a_{i-j}`` (``k[0]`` is unused and 0). The all-pole synthesis filter ``1/A(z)``
is run as a lattice, which stays stable while ``|k| < 1`` even when ``k`` changes every block.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["windowed_autocorr", "warp_lpc", "levinson", "lattice_allpole", "noise_fill"]


@njit(cache=True, nogil=True)
def windowed_autocorr(x: np.ndarray, win: np.ndarray, r: np.ndarray) -> None:
    """``r[k] = sum_n (x w)[n] (x w)[n + k]`` for ``k < r.shape[0]``.

    Parameters
    ----------
    x : float32 (n,)
    win : float64 (n,)
    r : float64 (n_lags,)
        Output.
    """
    n = x.shape[0]
    for k in range(r.shape[0]):
        acc = 0.0
        for i in range(n - k):
            acc += (np.float64(x[i]) * win[i]) * (np.float64(x[i + k]) * win[i + k])
        r[k] = acc


@njit(cache=True, nogil=True)
def warp_lpc(a: np.ndarray, err: float, ratio: float, rw: np.ndarray) -> None:
    """Autocorrelation of the LPC envelope with its frequency axis stretched by ``ratio``.

    The envelope ``P(w) = err / |A(e^{jw})|^2`` is evaluated at ``w / ratio`` (held at its
    value at Nyquist beyond it), on ``n_bins = 512`` frequencies ``w_j = pi j / 511``, and
    transformed back with the trapezoid rule:
    ``rw[k] = sum_j c_j P(min(w_j / ratio, pi)) cos(w_j k) / 511`` (``c_0 = c_511 = 1/2``,
    else 1). Being the transform of a positive spectrum, ``rw`` is a valid autocorrelation (the
    Levinson recursion on it gives a stable filter); at ``ratio = 1`` it reproduces the input
    autocorrelation at lags ``0..order`` (the autocorrelation-matching property of LPC), up to
    the frequency sampling. ``ratio > 1`` moves the envelope's peaks up.

    Parameters
    ----------
    a : float64 (order + 1,)
        Predictor polynomial, ``a[0] = 1``.
    err : float
        Prediction error energy.
    ratio : float
        > 0.
    rw : float64 (n_lags,)
        Output.
    """
    n_bins = 512
    p = a.shape[0] - 1
    for k in range(rw.shape[0]):
        rw[k] = 0.0
    if not err > 0.0:
        return
    for j in range(n_bins):
        w = math.pi * j / (n_bins - 1)
        wa = w / ratio
        if wa > math.pi:
            wa = math.pi
        # A(e^{j wa}) with the rotation e^{-j wa i} by recurrence (one sin/cos per bin)
        cr = math.cos(wa)
        ci = -math.sin(wa)
        zr = 1.0
        zi = 0.0
        re = 0.0
        im = 0.0
        for i in range(p + 1):
            re += a[i] * zr
            im += a[i] * zi
            zr, zi = zr * cr - zi * ci, zr * ci + zi * cr
        pw = err / max(re * re + im * im, 1e-30)
        c = (0.5 if (j == 0 or j == n_bins - 1) else 1.0) * pw / (n_bins - 1)
        # cos(w k) by the Chebyshev recurrence cos((k+1)w) = 2 cos(w) cos(kw) - cos((k-1)w)
        c1 = math.cos(w)
        ckm1 = c1  # cos(-w)
        ck = 1.0
        for k in range(rw.shape[0]):
            rw[k] += c * ck
            ck, ckm1 = 2.0 * c1 * ck - ckm1, ck


@njit(cache=True, nogil=True)
def levinson(r: np.ndarray, a: np.ndarray, k: np.ndarray, tmp: np.ndarray) -> float:
    """Levinson-Durbin: predictor ``a`` and reflections ``k`` from autocorrelation ``r``.

    Parameters
    ----------
    r : float64 (order + 1,)
    a : float64 (order + 1,)
        Output, ``a[0] = 1``.
    k : float64 (order + 1,)
        Output reflection coefficients, ``k[0] = 0``; clipped to ``[-0.999, 0.999]``.
    tmp : float64 (order + 1,)
        Scratch.

    Returns
    -------
    float
        Prediction error energy (0.0 for a silent frame, whose ``a``/``k`` are the identity).
    """
    p = a.shape[0] - 1
    for i in range(p + 1):
        a[i] = 0.0
        k[i] = 0.0
    a[0] = 1.0
    err = r[0]
    if not err > 0.0:
        return 0.0
    for i in range(1, p + 1):
        acc = r[i]
        for j in range(1, i):
            acc += a[j] * r[i - j]
        ki = -acc / err
        if ki > 0.999:
            ki = 0.999
        elif ki < -0.999:
            ki = -0.999
        k[i] = ki
        for j in range(i + 1):
            tmp[j] = a[j]
        for j in range(1, i):
            a[j] = tmp[j] + ki * tmp[i - j]
        a[i] = ki
        err *= 1.0 - ki * ki
    return err


@njit(cache=True, nogil=True)
def lattice_allpole(e: np.ndarray, gain_from: float, gain_to: float, k: np.ndarray, b: np.ndarray,
                    out: np.ndarray) -> None:
    """All-pole lattice ``1/A(z)`` of the excitation ``e`` times a gain ramped linearly.

    Parameters
    ----------
    e : float32 or float64 (n,)
        Excitation.
    gain_from, gain_to : float
        The gain moves linearly from ``gain_from`` (first sample) towards ``gain_to`` (reached
        after the last sample).
    k : float64 (order + 1,)
        Reflection coefficients (``k[0]`` unused).
    b : float64 (order,)
        Backward-path state, carried across calls.
    out : float32 (n,)
    """
    p = k.shape[0] - 1
    n = e.shape[0]
    for t in range(n):
        g = gain_from + (gain_to - gain_from) * (t + 1) / n
        f = g * np.float64(e[t])
        for i in range(p, 0, -1):
            f = f - k[i] * b[i - 1]
            if i < p:
                b[i] = b[i - 1] + k[i] * f
        # b[p] is never read (the lattice's last backward output), so it is not stored
        b[0] = f
        out[t] = f


@njit(cache=True, nogil=True)
def noise_fill(st: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with white noise of unit variance (uniform in [-sqrt 3, sqrt 3]).

    ``st`` is uint64 ``(1,)``, the state of a xorshift64* generator (never 0).
    """
    s = st[0]
    scale = math.sqrt(3.0) * 2.0 / 18446744073709551616.0
    for i in range(out.shape[0]):
        s ^= s >> np.uint64(12)
        s ^= s << np.uint64(25)
        s ^= s >> np.uint64(27)
        v = s * np.uint64(2685821657736338717)
        out[i] = np.float64(v) * scale - math.sqrt(3.0)
    st[0] = s
