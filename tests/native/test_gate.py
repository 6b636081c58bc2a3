"""Noise gate gain computer against a pure-Python reference of the same definition."""

import numpy as np

from rtvc._native.gate import gate_gains, noise_floor_step


def reference_gate(x, thr, decay, attack_step, release_step, hold_samples):
    env = gain = 0.0
    hold = 0
    g = np.zeros(len(x))
    for i, v in enumerate(x):
        env = max(abs(v), env * decay)
        if env >= thr:
            hold, target = hold_samples, 1.0
        elif hold > 0:
            hold, target = hold - 1, 1.0
        else:
            target = 0.0
        gain = min(target, gain + attack_step) if gain < target else max(target, gain - release_step) if gain > target else gain
        g[i] = gain
    return g


def test_gate_matches_reference_across_hop_splits():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(800) * 0.001, rng.standard_normal(1600) * 0.3,
                        rng.standard_normal(3000) * 0.001]).astype(np.float32)
    args = (0.01, 0.99, 1 / 32, 1 / 1600, 800)
    ref = reference_gate(x, *args)
    st = np.zeros(3, np.float64)
    out = np.zeros(len(x), np.float32)
    for s in range(0, len(x), 80):  # hop by hop: state carries over exactly
        chunk = x[s:s + 80]
        g = np.zeros(len(chunk), np.float32)
        gate_gains(chunk, *args, st, g)
        out[s:s + 80] = g
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert out[:700].max() == 0.0  # closed on noise below threshold
    assert out[800 + 40] == 1.0  # fully open 32 samples after the onset
    assert out[2400 + 700] == 1.0  # hold keeps it open 800 samples after the burst ends
    assert out[-1] == 0.0  # released afterwards


def reference_floor(x, hop, smooth, hops_per_sub, n_sub, min_subs):
    """The noise floor after each hop, by its definition: the mean square of each hop, smoothed
    by one pole, and the smallest smoothed value of the last ``n_sub`` complete sub-windows and
    of the one under way."""
    out, subs, cur, sm = [], [], [], None
    for s in range(0, len(x), hop):
        h = np.asarray(x[s:s + hop], np.float64)
        ms = float(np.mean(h * h))
        if np.isfinite(ms):
            sm = ms if sm is None else sm + smooth * (ms - sm)
            cur.append(sm)
            if len(cur) == hops_per_sub:
                subs = (subs + [min(cur)])[-n_sub:]
                cur = []
        out.append(np.sqrt(min(subs + cur)) if len(subs) >= min_subs else 0.0)
    return np.array(out)


def test_noise_floor_matches_reference():
    rng = np.random.default_rng(3)
    # noise whose level steps up and down, speech-like bursts, digital silence and a NaN hop
    x = np.concatenate([rng.standard_normal(4000) * 0.01, rng.standard_normal(3000) * 0.2,
                        rng.standard_normal(6000) * 0.03, np.zeros(1000), rng.standard_normal(8000) * 0.002]
                       ).astype(np.float32)
    x[9000:9080] = np.nan
    args = (0.2, 10, 5, 2)  # smooth, hops per sub-window, sub-windows, needed before a floor
    ref = reference_floor(x, 80, *args)
    st = np.array([-1.0, np.inf, 0.0, 0.0, 0.0])
    mins = np.zeros(args[2])
    out = np.array([noise_floor_step(x[s:s + 80], args[0], args[1], args[3], st, mins) for s in range(0, len(x), 80)])
    np.testing.assert_allclose(out, ref, rtol=1e-9)
    assert out[18] == 0.0 and out[19] > 0.0  # reported once two sub-windows are complete
    assert 0.006 < out[49] < 0.01  # in steady noise of RMS 0.01: near it, below it (a minimum)
    assert out[87] < 0.011  # a loud burst of 3000 samples does not lift the floor
    assert out[170] < 0.5 * out[160]  # a silence pulls the floor down before its sub-window is complete
    assert 0.001 < out[-1] < 0.002  # the quieter noise is found again
