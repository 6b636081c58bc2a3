"""Noise gate gain computer (per sample): peak follower, threshold, hold, linear attack/release.

``st`` is float64 ``[env, gain, hold_left]``. The gain curve is written to ``g``; applying it
is the caller's job, so the engine can apply it with look-ahead (delayed) and onsets are not
clipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gate_gains"]


@njit(cache=True, nogil=True)
def gate_gains(x: np.ndarray, thr_lin: float, env_decay: float, attack_step: float,
               release_step: float, hold_samples: int, st: np.ndarray, g: np.ndarray) -> None:
    env = st[0]
    gain = st[1]
    hold = st[2]
    for i in range(x.shape[0]):
        a = abs(x[i])
        env = a if a > env else env * env_decay
        if env >= thr_lin:
            hold = hold_samples
            target = 1.0
        elif hold > 0:
            hold -= 1
            target = 1.0
        else:
            target = 0.0
        if gain < target:
            gain = min(target, gain + attack_step)
        elif gain > target:
            gain = max(target, gain - release_step)
        g[i] = gain
    st[0] = env
    st[1] = gain
    st[2] = hold
