"""Small dense kernels shared by the analysis and synthesis code."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["matvec"]


@njit(cache=True, nogil=True)
def matvec(a: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ x`` for ``a`` ``(n_out, n_in)``, ``x`` ``(n_in,)``, accumulated in row order."""
    for i in range(a.shape[0]):
        acc = 0.0
        for j in range(a.shape[1]):
            acc += a[i, j] * x[j]
        out[i] = acc
