"""Streaming TD-PSOLA kernels: grain overlap-add, pitch-mark alignment and the mark scheduler.

Coordinates: the input history ``hist`` (float32, ``(n_hist,)``) ends at absolute input sample
``t_end`` (exclusive), so absolute input position ``p`` is ``hist[p - (t_end - n_hist)]``. The
overlap-add accumulators ``y_acc`` / ``w_acc`` (float64, ``(n_acc,)``) start at absolute output
position ``t_end - hop`` (the first sample of the block being produced). Output position ``q``
carries the input of position ``q - latency`` for neutral settings.

A grain has an analysis centre ``a`` (integer input position), an analysis half-length ``ga``
(samples), a synthesis centre ``s`` (integer output position) and a formant ratio ``rf``: output
sample ``n`` reads the input at ``a + (n - s) * rf`` (4-point Catmull-Rom interpolation, exact
at integer positions) under a Hann window of half-length ``ga / rf`` in output samples. So
``rf > 1`` compresses the grain in time and stretches its spectral envelope up by ``rf``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["cubic_at", "ola_grain", "ola_emit", "xcorr_align", "peak_index", "psola_marks", "match_power",
           "crossfade_dry", "push_finite", "F_S_NEXT", "F_A_PREV", "F_BETA", "F_RF", "F_PREV_VOICED",
           "F_LAST_SPACING", "F_N_LOG", "N_FST", "LOG_COLS", "XCORR_RADIUS"]

# indices into the scheduler's float64 state vector ``fst``
F_S_NEXT = 0  # absolute output position of the next synthesis mark (fractional)
F_A_PREV = 1  # analysis centre of the previous grain (absolute input position)
F_BETA = 2  # smoothed pitch ratio
F_RF = 3  # smoothed formant ratio
F_PREV_VOICED = 4  # 1.0 when the previous grain was voiced
F_LAST_SPACING = 5  # distance from the previous mark to this one, samples
F_N_LOG = 6  # grains written to ``log`` so far
N_FST = 7
XCORR_RADIUS = 8  # largest pitch-mark refinement shift, samples (keep ``gcap <= latency - 5 - 8``)
LOG_COLS = 7  # s, a, ga, rf, voiced, t_end, spacing


@njit(cache=True, nogil=True)
def cubic_at(x: np.ndarray, pos: float) -> float:
    """Catmull-Rom value of ``x`` at fractional index ``pos`` (zero outside ``x``)."""
    i = int(math.floor(pos))
    f = pos - i
    n = x.shape[0]
    if f == 0.0:
        if 0 <= i < n:
            return np.float64(x[i])
        return 0.0
    xm1 = np.float64(x[i - 1]) if 0 <= i - 1 < n else 0.0
    x0 = np.float64(x[i]) if 0 <= i < n else 0.0
    x1 = np.float64(x[i + 1]) if 0 <= i + 1 < n else 0.0
    x2 = np.float64(x[i + 2]) if 0 <= i + 2 < n else 0.0
    c1 = 0.5 * (x1 - xm1)
    c2 = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2
    c3 = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1)
    return ((c3 * f + c2) * f + c1) * f + x0


@njit(cache=True, nogil=True)
def ola_grain(hist: np.ndarray, a_idx: float, ga: float, s_idx: int, rf: float,
              y_acc: np.ndarray, w_acc: np.ndarray) -> None:
    """Add one Hann-windowed, time-scaled grain into the accumulators.

    Parameters
    ----------
    hist : float32 (n_hist,)
        Input history.
    a_idx : float
        Analysis centre as an index into ``hist``.
    ga : float
        Analysis half-length in input samples (> 0).
    s_idx : int
        Synthesis centre as an index into ``y_acc``.
    rf : float
        Formant ratio (> 0): input samples advanced per output sample.
    y_acc, w_acc : float64 (n_acc,)
        ``y_acc[n] += w * x(a + (n - s) * rf)``, ``w_acc[n] += w`` with
        ``w = 0.5 + 0.5 * cos(pi * (n - s) * rf / ga)`` for ``|n - s| * rf < ga``.
        Samples outside ``[0, n_acc)`` are skipped.
    """
    gs = ga / rf
    lo = int(math.floor(s_idx - gs))
    hi = int(math.ceil(s_idx + gs))
    if lo < 0:
        lo = 0
    if hi > y_acc.shape[0] - 1:
        hi = y_acc.shape[0] - 1
    for n in range(lo, hi + 1):
        u = (n - s_idx) * rf
        if u <= -ga or u >= ga:
            continue
        w = 0.5 + 0.5 * math.cos(math.pi * u / ga)
        y_acc[n] += w * cubic_at(hist, a_idx + u)
        w_acc[n] += w


@njit(cache=True, nogil=True)
def ola_emit(y_acc: np.ndarray, w_acc: np.ndarray, w_floor: float, out: np.ndarray) -> None:
    """Normalise and emit ``out.shape[0]`` samples, then shift the accumulators left.

    ``out[i] = y_acc[i] / max(w_acc[i], w_floor)``. Where grains overlap the sum is a
    window-weighted average of the grains (loudness does not grow with the overlap; at a pitch
    ratio of 1 with aligned grains it is the input itself). Where the window sum falls below
    ``w_floor`` (grains shorter than the mark spacing) each grain keeps the shape
    ``min(w / w_floor, 1)``: a flat top with Hann tapers, so no gap is amplified.
    """
    h = out.shape[0]
    n = y_acc.shape[0]
    for i in range(h):
        w = w_acc[i]
        out[i] = y_acc[i] / (w if w > w_floor else w_floor)
    for i in range(n - h):
        y_acc[i] = y_acc[i + h]
        w_acc[i] = w_acc[i + h]
    for i in range(n - h, n):
        y_acc[i] = 0.0
        w_acc[i] = 0.0


@njit(cache=True, nogil=True)
def xcorr_align(x: np.ndarray, ref: int, cand: int, half: int, o_lo: int, o_hi: int) -> int:
    """Offset ``o`` in ``[o_lo, o_hi]`` maximising the normalised cross-correlation.

    Score: ``sum_j x[ref + j] * x[cand + o + j] / sqrt(sum_j x[cand + o + j] ** 2)`` over
    ``j`` in ``[-half, half]``; ties keep the smallest ``|o|`` (then the smaller ``o``). The
    caller keeps every index inside ``x``. Returns 0 when every candidate is silent.
    """
    best = 0
    best_score = -np.inf
    found = False
    for k in range(0, 2 * max(abs(o_lo), abs(o_hi)) + 1):
        # visit 0, -1, +1, -2, +2, ... so that ties prefer small shifts
        o = (k + 1) // 2 if k % 2 == 1 else -(k // 2)
        if o < o_lo or o > o_hi:
            continue
        num = 0.0
        en = 0.0
        c = cand + o
        for j in range(-half, half + 1):
            v = np.float64(x[c + j])
            num += np.float64(x[ref + j]) * v
            en += v * v
        if en <= 0.0:
            continue
        score = num / math.sqrt(en)
        if not found or score > best_score:
            best_score = score
            best = o
            found = True
    return best


@njit(cache=True, nogil=True)
def peak_index(x: np.ndarray, lo: int, hi: int) -> int:
    """Index of the largest ``|x|`` in ``[lo, hi)`` (the first one on ties)."""
    best = lo
    bv = -1.0
    for i in range(lo, hi):
        v = abs(np.float64(x[i]))
        if v > bv:
            bv = v
            best = i
    return best


@njit(cache=True, nogil=True)
def psola_marks(hist: np.ndarray, t_end: int, hop: int, y_acc: np.ndarray, w_acc: np.ndarray,
                lag: float, beta_tgt: float, rf_tgt: float, fixed_period: float, latency: int,
                gcap: float, g_unvoiced: float, tau_smooth: float, align: float, fst: np.ndarray,
                log: np.ndarray) -> int:
    """Place every synthesis grain that starts before ``t_end`` (one block's worth).

    Per grain: the ratios glide one step; the grain half-lengths follow from the voicing
    (voiced: ``ga = min(lag, gcap / (1 + 1 / rf))``; unvoiced: ``gs = g_unvoiced``); the
    analysis centre is chosen (unvoiced: ``s - latency``; voiced: the previous centre plus the
    whole number of periods nearest to ``s - latency``, stepped back a period while it or its
    refinement window is not received yet, refined by :func:`xcorr_align` against the previous
    grain; at a voicing onset, or after a silent grain, the largest ``|x|`` in the period ending
    at ``s - latency``); the grain is added with :func:`ola_grain`; the next mark is one
    spacing later (voiced: ``lag / beta`` or ``fixed_period / beta``; unvoiced:
    ``g_unvoiced``).

    Parameters
    ----------
    hist : float32 (n_hist,)
        Input history ending at absolute input sample ``t_end`` (exclusive).
    t_end : int
        Absolute input samples received so far (end of the current block).
    hop : int
        Block length; ``y_acc[0]`` is absolute output position ``t_end - hop``.
    y_acc, w_acc : float64 (n_acc,)
        Overlap-add accumulators.
    lag : float
        Current pitch period of the input in samples (``0`` = unvoiced).
    beta_tgt : float
        Target pitch ratio (``2 ** (pitch_st / 12)``).
    rf_tgt : float
        Target formant ratio.
    fixed_period : float
        ``> 0``: voiced marks every ``fixed_period / beta`` samples (robot); ``0``: every
        ``lag / beta`` samples (pitch shift).
    latency : int
        Target delay between an analysis centre and its synthesis mark, samples.
    gcap : float
        Cap on ``ga + ga / rf`` (analysis + synthesis half-lengths); ``<= latency - 5`` keeps the
        target analysis centre causal, ``<= latency - 5 - XCORR_RADIUS`` also its refinement
        window (then the marks can lock exactly onto ``s - latency``).
    g_unvoiced : float
        Synthesis half-length and mark spacing of unvoiced grains (pitch unchanged there).
    tau_smooth : float
        Glide time constant of pitch and formant ratios, output samples.
    align : float
        ``> 0`` (use only when the target pitch ratio is 1): each voiced spacing is nudged by
        ``align * (a + latency - s)``, at most 2 %, so that synthesis marks lock onto their
        analysis centres delayed by exactly ``latency`` and the output converges to the
        delayed input (the neutral path's timing, for click-free cross-fades).
    fst : float64 (N_FST,)
        Scheduler state (see the ``F_*`` indices).
    log : float64 (n_log, LOG_COLS)
        Grains are recorded here while ``fst[F_N_LOG] < n_log`` (pass a ``(0, LOG_COLS)`` array
        to record nothing).

    Returns
    -------
    int
        Number of grains placed.
    """
    n_hist = hist.shape[0]
    h0 = t_end - n_hist  # absolute input position of hist[0]
    o0 = t_end - hop  # absolute output position of y_acc[0]
    voiced = lag > 0.0
    placed = 0
    for _ in range(256):  # bound: the shortest spacing is > 6 samples
        s_place = int(math.floor(fst[F_S_NEXT] + 0.5))
        # glide the ratios towards their targets (log domain), once per grain
        alpha = 1.0 - math.exp(-fst[F_LAST_SPACING] / tau_smooth)
        beta = math.exp(math.log(fst[F_BETA]) + (math.log(beta_tgt) - math.log(fst[F_BETA])) * alpha)
        rf = math.exp(math.log(fst[F_RF]) + (math.log(rf_tgt) - math.log(fst[F_RF])) * alpha)
        if voiced:
            ga = min(lag, gcap / (1.0 + 1.0 / rf))
        else:
            ga = g_unvoiced * rf
        gs = ga / rf
        if s_place - gs >= t_end:
            break
        fst[F_BETA] = beta
        fst[F_RF] = rf
        a_star = s_place - latency
        a_max = t_end - 3 - int(math.ceil(ga))  # last causal centre (interpolation reads 2 past)
        if voiced:
            t0 = lag
            a_prev = fst[F_A_PREV]
            a = -1
            onset = True
            if fst[F_PREV_VOICED] > 0.0:
                m = int(math.floor((a_star - a_prev) / t0 + 0.5))
                if m < 0:
                    m = 0
                c = a_prev + m * t0
                if abs(c - a_star) <= t0:
                    onset = False
                    r = min(XCORR_RADIUS, max(2, int(0.1 * t0)))
                    ci = int(math.floor(c + 0.5))
                    while m > 0 and ci + r > a_max:  # not fully received yet: one period back
                        m -= 1
                        c -= t0
                        ci = int(math.floor(c + 0.5))
                    if m == 0:
                        a = int(a_prev)
                    else:
                        half = int(min(ga, 0.5 * t0))
                        ref_i = int(a_prev) - h0
                        ci_i = ci - h0
                        o_lo = -r
                        o_hi = min(r, a_max - ci)
                        if (ref_i - half >= 0 and ref_i + half < n_hist and ci_i + o_lo - half >= 0
                                and ci_i + o_hi + half < n_hist and o_hi >= o_lo):
                            e_ref = 0.0
                            for j in range(ref_i - half, ref_i + half + 1):
                                e_ref += np.float64(hist[j]) * np.float64(hist[j])
                            if e_ref > 1e-12:
                                a = ci + xcorr_align(hist, ref_i, ci_i, half, o_lo, o_hi)
                            else:  # the previous grain was silent: nothing to lock onto
                                onset = True
                        else:
                            a = ci
            if onset:
                # the last whole period up to the aligned centre: always received, holds a pulse
                lo = int(math.floor(a_star - t0)) + 1
                hi = min(int(a_star), a_max) + 1
                if lo < h0:
                    lo = h0
                if hi > lo:
                    a = peak_index(hist, lo - h0, hi - h0) + h0
                else:
                    a = min(int(a_star), a_max)
            while a > a_max:
                a -= int(math.floor(t0 + 0.5))
        else:
            a = min(int(a_star), a_max)
        ola_grain(hist, np.float64(a - h0), ga, s_place - o0, rf, y_acc, w_acc)
        if voiced:
            spacing = (fixed_period if fixed_period > 0.0 else lag) / beta
            if align > 0.0:
                nudge = align * (a + latency - s_place)
                lim = 0.02 * spacing
                spacing += min(lim, max(-lim, nudge))
        else:
            spacing = g_unvoiced
        k = int(fst[F_N_LOG])
        if k < log.shape[0]:
            log[k, 0] = s_place
            log[k, 1] = a
            log[k, 2] = ga
            log[k, 3] = rf
            log[k, 4] = 1.0 if voiced else 0.0
            log[k, 5] = t_end
            log[k, 6] = spacing
            fst[F_N_LOG] = k + 1
        fst[F_A_PREV] = a
        fst[F_PREV_VOICED] = 1.0 if voiced else 0.0
        fst[F_S_NEXT] = fst[F_S_NEXT] + spacing
        fst[F_LAST_SPACING] = spacing
        placed += 1
    return placed


@njit(cache=True, nogil=True)
def crossfade_dry(dry: np.ndarray, wet: np.ndarray, st: np.ndarray, target: float, step: float,
                  out: np.ndarray) -> None:
    """Per-sample linear cross-fade between ``wet`` (weight 0) and ``dry`` (weight 1).

    ``st`` is float64 ``(1,)``: the current dry weight, moved towards ``target`` by ``step`` per
    sample. At weight exactly 1 the output is ``dry`` bit for bit; at 0 it is ``wet``.
    """
    w = st[0]
    for i in range(out.shape[0]):
        if w < target:
            w = min(target, w + step)
        elif w > target:
            w = max(target, w - step)
        if w >= 1.0:
            out[i] = dry[i]
        elif w <= 0.0:
            out[i] = wet[i]
        else:
            out[i] = wet[i] + (np.float64(dry[i]) - wet[i]) * w
    st[0] = w


@njit(cache=True, nogil=True)
def match_power(ref: np.ndarray, y: np.ndarray, st: np.ndarray, alpha: float, g_max: float) -> None:
    """Scale ``y`` in place so that its smoothed power follows the smoothed power of ``ref``.

    ``st`` is float64 ``(3,)``: ``[power of ref, power of y, gain]``, each power a one-pole
    average of the block mean square with coefficient ``alpha`` per block. The gain
    ``sqrt(p_ref / p_y)``, clipped to ``[1 / g_max, g_max]`` (kept as is while ``p_y`` is ~0),
    is ramped linearly across the block from the previous block's gain.
    """
    n = y.shape[0]
    mr = 0.0
    my = 0.0
    for i in range(n):
        mr += np.float64(ref[i]) * np.float64(ref[i])
        my += np.float64(y[i]) * np.float64(y[i])
    pr = st[0] + alpha * (mr / n - st[0])
    py = st[1] + alpha * (my / n - st[1])
    g0 = st[2]
    g1 = g0
    if py > 1e-10:
        g1 = math.sqrt(pr / py)
        if g1 > g_max:
            g1 = g_max
        elif g1 < 1.0 / g_max:
            g1 = 1.0 / g_max
    for i in range(n):
        y[i] = y[i] * (g0 + (g1 - g0) * (i + 1) / n)
    st[0] = pr
    st[1] = py
    st[2] = g1


@njit(cache=True, nogil=True)
def push_finite(hist: np.ndarray, x: np.ndarray) -> int:
    """Shift ``hist`` left by ``len(x)`` and append ``x``, non-finite samples replaced by 0.

    Returns the number of samples replaced (bad numbers never enter the state).
    """
    n = hist.shape[0]
    h = x.shape[0]
    for i in range(n - h):
        hist[i] = hist[i + h]
    bad = 0
    for i in range(h):
        v = x[i]
        if math.isfinite(v):
            hist[n - h + i] = v
        else:
            hist[n - h + i] = 0.0
            bad += 1
    return bad
