"""Noise gate: the gain computer (per sample: peak follower, threshold, hold, linear
attack/release) and the noise-floor tracker that raises its threshold above steady noise.

``gate_gains``'s gain curve is written to ``g``; applying it is the caller's job, so the engine
can apply it with look-ahead (delayed) and onsets are not clipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gate_gains", "noise_floor_step", "HOP_DROP"]

HOP_DROP = 0.1
"""An onset whose power falls under this share of the hop's before (10 dB) has died away: a click."""


@njit(cache=True, nogil=True)
def gate_gains(x: np.ndarray, thr_lin: float, env_decay: float, attack_step: float,
               release_step: float, hold_samples: int, confirm_hops: int, click_drop: float,
               grace_samples: int, st: np.ndarray, g: np.ndarray) -> None:
    """The gate's gain curve for one hop ``x`` (written to ``g``).

    Per sample: a peak follower (``env_decay``), open (target 1) while it is at or above
    ``thr_lin`` and for ``hold_samples`` after, gain ramps of ``attack_step`` and
    ``release_step`` per sample towards the target.

    Clicks: with ``confirm_hops`` > 0, a closed gate (hold run out) opens only for an onset
    that has lasted ``confirm_hops`` hops without dying away: hops whose peak is at or above
    ``thr_lin``, none of whose power fell under ``click_drop`` times the onset's highest hop
    power or under ``HOP_DROP`` times the hop's before it. A key click or a tap dies away so
    (10 dB and more in a hop, 20 dB within a few); the hop where it has is counted as the first
    of a new onset, so what sounds on (a plosive's aspiration and vowel after its burst) opens
    the gate ``confirm_hops`` hops later, and a click's tail, which goes on dying, never does.
    Call it once per hop: the onset test counts whole hops. While the gate is open (in hold),
    and for ``grace_samples`` after its hold ran out (the pauses between a speaker's phrases,
    where the next word's onset must not be held back), every peak opens it, as without the test.

    ``st`` is float64 ``[env, gain, hold_left, onset hops, the onset's highest hop power, the
    last hop's power, grace samples left]``.
    """
    env = st[0]
    gain = st[1]
    hold = st[2]
    armed = True
    if confirm_hops > 0:
        pk = 0.0
        ms = 0.0
        for i in range(x.shape[0]):
            v = abs(x[i])
            pk = max(pk, v)
            ms += v * v
        ms /= max(1, x.shape[0])
        if hold > 0 or not pk >= thr_lin:  # open, or quiet (or not finite): no onset under way
            st[3] = 0.0
        elif st[3] == 0.0 or ms < click_drop * st[4] or ms < HOP_DROP * st[5]:  # an onset begins (again)
            st[3] = 1.0
            st[4] = ms
        else:
            st[3] += 1.0
            st[4] = max(st[4], ms)
        st[5] = ms
        armed = hold > 0 or st[6] > 0.0 or st[3] >= confirm_hops
        st[6] = grace_samples if hold > 0 else max(0.0, st[6] - x.shape[0])
    for i in range(x.shape[0]):
        a = abs(x[i])
        env = a if a > env else env * env_decay
        if env >= thr_lin and armed:
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


@njit(cache=True, nogil=True)
def noise_floor_step(x: np.ndarray, smooth: float, hops_per_sub: int, min_subs: int, st: np.ndarray,
                     mins: np.ndarray) -> float:
    """Noise floor by minimum statistics over one hop ``x``: the hop's mean square, smoothed
    (one pole, weight ``smooth`` for the new hop), and the smallest smoothed value of the last
    ``mins.shape[0]`` complete sub-windows of ``hops_per_sub`` hops and of the one under way.
    Speech has pauses and steady noise has none, so the minimum over a few seconds is the
    noise's level, not the voice's; the smoothing keeps the minimum of a fluctuating noise
    (pink, a fan's rumble) near its mean.

    Parameters
    ----------
    x : float32 (hop,)
        The hop. A hop that is not finite is not counted. Digital silence counts (a floor of
        0: the gate keeps its fixed threshold until the silence has left the window).
    smooth : float
        In (0, 1].
    hops_per_sub, min_subs : int
        Hops per sub-window; complete sub-windows needed before a floor is reported.
    st : float64 (5,)
        ``[smoothed mean square, current sub-window minimum, hops in it, next ring slot,
        complete sub-windows]``, initially ``[-1, inf, 0, 0, 0]`` (-1: nothing smoothed yet).
    mins : float64 (n_sub,)
        Ring of sub-window minima.

    Returns
    -------
    float
        The floor as an RMS level (linear), 0.0 until ``min_subs`` sub-windows are complete.
    """
    n_sub = mins.shape[0]
    ms = 0.0
    for i in range(x.shape[0]):
        ms += np.float64(x[i]) * np.float64(x[i])
    ms /= max(1, x.shape[0])
    if ms >= 0.0 and ms <= 1.7976931348623157e308:  # also refuses NaN
        st[0] = ms if st[0] < 0.0 else st[0] + smooth * (ms - st[0])
        if st[0] < st[1]:
            st[1] = st[0]
        st[2] += 1.0
        if st[2] >= hops_per_sub:
            mins[int(st[3])] = st[1]
            st[3] = (st[3] + 1.0) % n_sub
            if st[4] < n_sub:
                st[4] += 1.0
            st[1] = np.inf
            st[2] = 0.0
    filled = int(st[4])
    if filled < min_subs:
        return 0.0
    f = st[1]  # the sub-window under way counts too: a falling noise is followed at once
    for j in range(filled):
        if mins[j] < f:
            f = mins[j]
    return np.sqrt(f)
