"""Seamless sample removal for the output ring: cut a stretch out of a block where the waveform
repeats itself, and cross-fade across the cut.

The worker keeps the output ring at its margin by leaving samples out (latency never creeps).
Cutting an arbitrary number of samples out of a periodic signal (a voiced vowel, a held tone)
makes a phase jump that is heard as a click. Jitter buffers in VoIP (NetEQ's "accelerate",
WSOLA) remove whole periods instead: the cut length ``s`` is chosen where the block best
matches itself shifted by ``s`` (normalised cross-correlation of the first ``fade`` samples
with the ``fade`` samples at ``s``), and the two are cross-faded, so the output continues with
the same phase it would have had.

``find_cut`` picks ``s``; ``splice`` writes the shortened block. ``find_cut_reference`` and
``splice_reference`` are the NumPy formulas they are tested against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["find_cut", "find_cut_reference", "splice", "splice_reference"]


@njit(cache=True, nogil=True)
def find_cut(y: np.ndarray, lo: int, hi: int, target: int, fade: int) -> tuple[int, float]:
    """Cut length ``s`` in ``lo..hi`` where ``y[s:s + fade]`` best matches ``y[:fade]``.

    Returns ``(s, r)``: ``r`` is the normalised cross-correlation at ``s`` (1.0: the block
    repeats exactly; silence counts as a perfect match). Of equal matches the one nearest to
    ``target`` wins. Requires ``0 < lo <= hi <= y.shape[0] - fade``.
    """
    e0 = 0.0
    for i in range(fade):
        e0 += float(y[i]) * float(y[i])
    best_s = lo
    best_r = -2.0
    best_d = 1 << 62
    for s in range(lo, hi + 1):
        c = 0.0
        e1 = 0.0
        for i in range(fade):
            v = float(y[s + i])
            c += float(y[i]) * v
            e1 += v * v
        den = np.sqrt(e0 * e1)
        r = c / den if den > 1e-20 else (1.0 if e0 + e1 <= 1e-20 else 0.0)
        d = abs(s - target)
        if r > best_r + 1e-9 or (r >= best_r - 1e-9 and d < best_d):
            best_r = max(r, best_r)
            best_s = s
            best_d = d
    return best_s, best_r


@njit(cache=True, nogil=True)
def splice(y: np.ndarray, s: int, fade: int, out: np.ndarray) -> int:
    """Write ``y`` with ``s`` samples cut out into ``out``; returns the length ``n - s``.

    The first ``fade`` samples cross-fade (raised cosine) from ``y[i]`` to ``y[s + i]``, so the
    output starts exactly where the stream left off and ends exactly where ``y`` ends.
    ``out`` may not alias ``y``. Requires ``s + fade <= y.shape[0]``.
    """
    n = y.shape[0]
    for i in range(fade):
        w = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / fade)
        out[i] = np.float32((1.0 - w) * y[i] + w * y[s + i])
    for i in range(fade, n - s):
        out[i] = y[s + i]
    return n - s


def find_cut_reference(y: np.ndarray, lo: int, hi: int, target: int, fade: int) -> tuple[int, float]:
    """NumPy reference of :func:`find_cut`."""
    y = np.asarray(y, np.float64)
    a = y[:fade]
    ss = np.arange(lo, hi + 1)
    rs = []
    for s in ss:
        b = y[s:s + fade]
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        rs.append(np.dot(a, b) / den if den > 1e-20 else (1.0 if np.dot(a, a) + np.dot(b, b) <= 1e-20 else 0.0))
    rs = np.asarray(rs)
    near = np.flatnonzero(rs >= rs.max() - 1e-9)
    k = near[np.argmin(np.abs(ss[near] - target))]
    return int(ss[k]), float(rs[k])


def splice_reference(y: np.ndarray, s: int, fade: int) -> np.ndarray:
    """NumPy reference of :func:`splice`."""
    y = np.asarray(y, np.float64)
    w = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    head = (1.0 - w) * y[:fade] + w * y[s:s + fade]
    return np.concatenate([head, y[s + fade:]]).astype(np.float32)
