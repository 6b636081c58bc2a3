"""Running-mean shift of feature coefficients (the neural voices' speaker normalisation).

The arithmetic is float32 throughout, operation for operation as the NumPy code of
``rtvc.converter.TimbreMapper`` did it (subtract, scale by a float32 weight, add), so the
result is bit-identical; one call replaces six NumPy calls per hop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mean_shift"]


@njit(cache=True, nogil=True)
def mean_shift(feats: np.ndarray, first: int, voiced: bool, target: np.ndarray, st: np.ndarray, ema_frames: float,
               ramp_frames: float) -> None:
    """Shift ``c = feats[first:first + n]`` in place from the running source mean towards ``target``.

    On a voiced frame the count ``k`` grows by one and the mean moves by ``(c - mean) / min(k, ema_frames)``
    (a plain mean, then an exponential moving average); then, once ``k > 0``,
    ``c += (target - mean) * min(1, k / ramp_frames)``.

    Parameters
    ----------
    feats : (n_features,) float32
    first : int
        Index of the first shifted coefficient.
    voiced : bool
    target : (n,) float32
        The target's mean.
    st : (2 * n + 1,) float32
        ``[source mean (n), k, scratch (n)]``, updated.
    ema_frames, ramp_frames : float
    """
    n = target.shape[0]
    if voiced:
        k = np.float64(st[n]) + 1.0
        st[n] = k
        w = np.float32(1.0 / (k if k <= ema_frames else ema_frames))
        for i in range(n):
            d = (feats[first + i] - st[i]) * w
            st[n + 1 + i] = d
            st[i] = st[i] + d
    k = np.float64(st[n])
    if k > 0.0:
        r = np.float32(min(1.0, k / ramp_frames))
        for i in range(n):
            d = (target[i] - st[i]) * r
            st[n + 1 + i] = d
            feats[first + i] = feats[first + i] + d
