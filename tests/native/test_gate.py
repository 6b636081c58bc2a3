"""Noise gate gain computer against a pure-Python reference of the same definition."""

import numpy as np

from rtvc._native.gate import HOP_DROP, gate_gains, noise_floor_step

HOP = 80


def reference_gate(x, thr, decay, attack_step, release_step, hold_samples, confirm_hops=0, click_drop=0.01,
                   grace=0):
    """The gate by its definition, over the whole signal at once.

    With ``confirm_hops``, peaks open a closed gate (hold run out when the hop begins) only in a
    hop that ends ``confirm_hops`` consecutive hops of an onset: hops with a peak at or above
    ``thr``, none of whose power is under ``click_drop`` times the onset's loudest hop or
    ``HOP_DROP`` times the hop before (such a hop begins the onset anew), except in a hop that
    begins less than ``grace`` samples after the last hop that began with the gate in hold."""
    env = gain = 0.0
    hold = 0
    g = np.zeros(len(x))
    onset, top, last = 0, 0.0, 0.0
    armed = True
    last_open = None  # the start of the last hop that began in hold
    for i, v in enumerate(x):
        if confirm_hops and i % HOP == 0:
            h = np.asarray(x[i:i + HOP], np.float64)
            pk, p = float(np.max(np.abs(h))), float(np.mean(h * h))
            if hold > 0 or not pk >= thr:
                onset = 0
            elif onset == 0 or p < click_drop * top or p < HOP_DROP * last:
                onset, top = 1, p
            else:
                onset, top = onset + 1, max(top, p)
            last = p
            if hold > 0:
                last_open = i
            in_grace = last_open is not None and i - last_open < grace + HOP
            armed = hold > 0 or in_grace or onset >= confirm_hops
        env = max(abs(v), env * decay)
        if env >= thr and armed:
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
    out = _gate_hops(x, *args, confirm_hops=0)  # hop by hop: state carries over exactly
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert out[:700].max() == 0.0  # closed on noise below threshold
    assert out[800 + 40] == 1.0  # fully open 32 samples after the onset
    assert out[2400 + 700] == 1.0  # hold keeps it open 800 samples after the burst ends
    assert out[-1] == 0.0  # released afterwards


def _gate_hops(x, *args, confirm_hops=4, click_drop=0.01, grace=0):
    st = np.zeros(7, np.float64)
    out = np.zeros(len(x), np.float32)
    for s in range(0, len(x), HOP):
        gate_gains(x[s:s + HOP], *args, confirm_hops, click_drop, grace, st, out[s:s + HOP])
    return out


def _click(rng, n=400, tau=60.0):
    return rng.standard_normal(n) * np.exp(-np.arange(n) / tau)


def test_clicks_do_not_open_the_gate_and_a_voice_does():
    """Key-click-like bursts (decaying 11.6 dB per hop), two of them 15 ms apart, a burst
    followed by a sustained sound 10 dB lower (a plosive into its vowel), a voice that swells
    slowly out of a click's tail, and a voice after silence, against the reference."""
    rng = np.random.default_rng(5)
    x = np.zeros(16000)
    for t0 in (1000, 3037, 3277, 5000):  # clicks at any phase of the hop grid; a pair 240 samples apart
        x[t0:t0 + 400] += 0.3 * _click(rng)
    tone = lambda n, a: a * np.sin(2 * np.pi * 150 * np.arange(n) / 16000)  # noqa: E731
    x[7003:7083] += 0.3 * rng.standard_normal(80)  # a burst, then a sustained sound 10 dB lower
    x[7083:8000] += tone(917, 0.12)
    x[11000:11400] += 0.3 * _click(rng)  # a voice swelling out of a click's tail (+3 dB per hop)
    x[11320:13000] += tone(1680, 1.0) * np.minimum(1.0, 0.003 * 10 ** (np.arange(1680) / 80 * 3 / 20))
    x[15000:16000] += tone(1000, 0.1)
    x = x.astype(np.float32)
    args = (0.001, 0.99, 1 / 32, 1 / 1600, 800)
    out = _gate_hops(x, *args)
    np.testing.assert_allclose(out, reference_gate(x, *args, confirm_hops=4), atol=1e-6)
    assert out[:7000].max() == 0.0  # no click opened it, nor the pair
    assert out[7003 + 6 * HOP] == 1.0  # open four hops into the sustained sound
    assert out[11000:11320].max() == 0.0 and out[12500] == 1.0  # the click did not, the swelling voice did
    assert 0.0 < out[15000 + 2 * HOP] < out[15000] < 1.0  # still releasing while the onset is confirmed
    assert out[15000 + 5 * HOP] == 1.0
    plain = _gate_hops(x, *args, confirm_hops=0)  # without the test every click opens it
    np.testing.assert_allclose(plain, reference_gate(x, *args), atol=1e-6)
    assert plain[1000 + 40] == 1.0 and plain[5000 + 40] == 1.0


def test_click_test_on_random_signals_matches_reference():
    """Random bursts, tones and silences of random lengths and levels around the threshold."""
    rng = np.random.default_rng(11)
    parts = []
    for _ in range(60):
        n = int(rng.integers(20, 700))
        kind = rng.integers(0, 3)
        a = 10 ** rng.uniform(-4, -0.5)
        parts.append(np.zeros(n) if kind == 0 else a * _click(rng, n, rng.uniform(10, 200)) if kind == 1
                     else a * np.sin(np.arange(n) * rng.uniform(0.02, 0.5)))
    x = np.concatenate(parts).astype(np.float32)
    x = x[:len(x) // HOP * HOP]
    for hops, drop, grace in ((1, 0.01, 0), (3, 0.01, 0), (4, 0.1, 0), (4, 0.01, 800), (4, 0.01, 3000)):
        args = (0.002, 0.995, 1 / 32, 1 / 800, 400)
        np.testing.assert_allclose(_gate_hops(x, *args, confirm_hops=hops, click_drop=drop, grace=grace),
                                   reference_gate(x, *args, confirm_hops=hops, click_drop=drop, grace=grace), atol=1e-6)


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


def test_a_pause_between_phrases_does_not_hold_the_next_onset_back():
    """After the gate has been open, an onset within ``grace`` samples of the end of its hold opens
    it at once (the next phrase's first sound); after that the click test is back."""
    rng = np.random.default_rng(13)
    tone = 0.1 * np.sin(2 * np.pi * 150 * np.arange(1600) / 16000)
    x = np.zeros(20000)
    x[1000:2600] = tone  # a phrase; hold 800 runs out at about 3400
    x[5000:5400] += 0.3 * _click(rng)  # 1600 samples later: within a grace of 4000
    x[12000:12400] += 0.3 * _click(rng)  # long after (the gate closed again by 9000 or so)
    x = x.astype(np.float32)
    args = (0.001, 0.99, 1 / 32, 1 / 1600, 800)
    out = _gate_hops(x, *args, grace=4000)
    np.testing.assert_allclose(out, reference_gate(x, *args, confirm_hops=4, grace=4000), atol=1e-6)
    assert out[5000 + 40] == 1.0  # within the grace the onset opens at once, like a word would
    assert out[11000:].max() == 0.0  # after it, a click does not
    assert _gate_hops(x, *args)[5000:5400].max() < 0.5  # without grace: held back (only the release of the phrase)
