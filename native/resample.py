"""Streaming rational resampling with a zero-phase Kaiser-windowed sinc.

Output sample ``j`` sits exactly at input time ``t_j = j * down / up`` (no group delay): it is
emitted as soon as the input reaches ``floor(t_j) + taps_half``. The delay that look-ahead
costs is accounted for by the engine's output buffer, so a click at input sample ``n`` lands
at output time ``n * up / down`` exactly. Because every output sample is a fixed function of
absolute input positions, the output does not depend on how the input was split into calls.

State (caller-allocated):
- ``hist``: float32, input history; ``hist[0]`` is absolute input sample ``n_in - hist_len``.
- ``st``: int64 ``[n_in, n_out, hist_len]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["make_table", "resample_step", "count_outputs"]


def make_table(up: int, down: int, taps_half: int, *, rolloff: float = 0.92, beta: float = 8.6) -> np.ndarray:
    """Polyphase table ``(up, 2 * taps_half)`` of the windowed sinc, row = output phase.

    ``taps_half`` is counted in input samples. Row ``p`` holds ``h(k - p/up)`` for
    ``k = -taps_half + 1 .. taps_half``.
    """
    cutoff = 0.5 * min(1.0, up / down) * rolloff  # cycles per input sample
    k = np.arange(-taps_half + 1, taps_half + 1, dtype=np.float64)
    frac = np.arange(up, dtype=np.float64)[:, None] / up
    t = k[None, :] - frac
    win = np.zeros_like(t)
    inside = np.abs(t) < taps_half
    win[inside] = np.i0(beta * np.sqrt(1.0 - (t[inside] / taps_half) ** 2)) / np.i0(beta)
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * win
    return h.astype(np.float32)


@njit(cache=True, nogil=True)
def resample_step(x: np.ndarray, table: np.ndarray, up: int, down: int, hist: np.ndarray,
                  st: np.ndarray, out: np.ndarray) -> int:
    """Consume all of ``x``; write the outputs now computable into ``out``; return their count.

    ``hist`` must hold ``2 * taps_half + len(x)`` samples at least and ``out`` at least
    ``len(x) * up // down + 2`` samples (the wrapper guarantees both).
    """
    taps = table.shape[1]
    th = taps // 2
    n_in = st[0]
    n_out = st[1]
    hl = st[2]
    for i in range(x.shape[0]):
        hist[hl + i] = x[i]
    hl += x.shape[0]
    n_in += x.shape[0]
    first = n_in - hl  # absolute index of hist[0]
    count = 0
    while True:
        num = n_out * down
        base = num // up
        if base + th > n_in - 1:
            break
        phase = num - base * up
        off = base - th + 1 - first
        acc = np.float32(0.0)
        for k in range(taps):
            acc += hist[off + k] * table[phase, k]
        out[count] = acc
        count += 1
        n_out += 1
    # keep only what the next output needs
    keep_from = (n_out * down) // up - th + 1
    drop = keep_from - first
    if drop > 0:
        for i in range(hl - drop):
            hist[i] = hist[i + drop]
        hl -= drop
    st[0] = n_in
    st[1] = n_out
    st[2] = hl
    return count


def count_outputs(n_in: np.ndarray, up: int, down: int, taps_half: int) -> np.ndarray:
    """How many outputs exist once ``n_in`` inputs have arrived (vectorised, for planning)."""
    last = np.asarray(n_in, dtype=np.int64) - 1 - taps_half  # last usable base index
    m = ((last + 1) * up - 1) // down + 1
    return np.where(last >= 0, m, 0)
