"""Per-hop mixing kernel of the engine: dry delay line, look-ahead gate, wet/dry mix, output gain.

All gains move linearly across the hop from their previous to their new value, so a knob
change never clicks. Delay lines are power-of-two circular buffers indexed from the write
position ``w``; the dry signal and the gate gain are read ``d`` samples behind (``d`` = the
voice stage's latency), the gate ``look`` samples earlier than the audio it multiplies, so
it is already open when a word's onset arrives.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["apply_gain_ramp", "hop_mix", "soft_limit", "sanitize", "all_finite"]


@njit(cache=True, nogil=True)
def apply_gain_ramp(x: np.ndarray, g0: float, g1: float, out: np.ndarray) -> float:
    """``out = x * ramp(g0 -> g1)``; returns the peak of ``|out|``."""
    n = x.shape[0]
    peak = 0.0
    for i in range(n):
        v = x[i] * (g0 + (g1 - g0) * (i + 1) / n)
        out[i] = v
        a = abs(v)
        if a > peak:
            peak = a
    return peak


@njit(cache=True, nogil=True)
def hop_mix(x: np.ndarray, wet: np.ndarray, gate_g: np.ndarray, dry_buf: np.ndarray, g_buf: np.ndarray,
            w: int, d: int, look: int, wet0: float, wet1: float, out0: float, out1: float, y: np.ndarray) -> float:
    """Write ``x`` and ``gate_g`` into the delay lines at ``w``; mix into ``y``; return peak ``|y|``.

    ``y[i] = (dry + (wet[i] - dry) * mix_i) * gate * out_i`` with ``dry = x[i - d]`` and
    ``gate = gate_g[i - d + look]`` (indices relative to the stream).
    """
    mask = dry_buf.shape[0] - 1
    n = x.shape[0]
    for i in range(n):
        dry_buf[(w + i) & mask] = x[i]
        g_buf[(w + i) & mask] = gate_g[i]
    peak = 0.0
    for i in range(n):
        r = (i + 1) / n
        dry = dry_buf[(w - d + i) & mask]
        gate = g_buf[(w - d + look + i) & mask]
        m = wet0 + (wet1 - wet0) * r
        o = out0 + (out1 - out0) * r
        v = (dry + (wet[i] - dry) * m) * gate * o
        y[i] = v
        a = abs(v)
        if a > peak:
            peak = a
    return peak


@njit(cache=True, nogil=True)
def soft_limit(y: np.ndarray, knee: float) -> int:
    """In place: identity up to ``knee``, then a tanh knee that never exceeds 1.0.

    ``|y| <= knee`` is untouched (so the neutral path stays exact for normal levels); above
    it ``sign(y) * (knee + (1 - knee) * tanh((|y| - knee) / (1 - knee)))``. Returns how many
    samples were limited.
    """
    span = 1.0 - knee
    n = 0
    for i in range(y.shape[0]):
        a = abs(y[i])
        if a > knee:
            v = knee + span * np.tanh((a - knee) / span)
            y[i] = v if y[i] > 0 else -v
            n += 1
    return n


@njit(cache=True, nogil=True)
def sanitize(x: np.ndarray, limit: float) -> int:
    """In place: non-finite samples become 0, the rest is clipped to ``[-limit, limit]``;
    returns how many were non-finite (``np.isfinite`` and ``np.clip`` in one pass)."""
    n_bad = 0
    for i in range(x.shape[0]):
        v = x[i]
        if not np.isfinite(v):
            x[i] = 0.0
            n_bad += 1
        elif v > limit:
            x[i] = limit
        elif v < -limit:
            x[i] = -limit
    return n_bad


@njit(cache=True, nogil=True)
def all_finite(x: np.ndarray) -> bool:
    """``np.all(np.isfinite(x))`` for an array of any shape, without temporaries."""
    for v in x.flat:
        if not np.isfinite(v):
            return False
    return True
