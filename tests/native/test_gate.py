"""Noise gate gain computer against a pure-Python reference of the same definition."""

import numpy as np

from rtvc._native.gate import gate_gains


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
