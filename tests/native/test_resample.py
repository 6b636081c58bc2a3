"""Streaming resampler against a direct (naive) evaluation of the same windowed-sinc formula,
plus signal-level checks: pass-band gain, stop-band rejection, split invariance."""

import math

import numpy as np
import pytest

from rtvc.errors import ConfigError
from rtvc.resampling import StreamResampler


def naive_resample(x, in_rate, out_rate, taps_half, n_out, rolloff=0.92, beta=8.6):
    """y[j] = sum_k x[k] h(t_j - k), t_j = j * in/out, evaluated directly in float64."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    cutoff = 0.5 * min(1.0, up / down) * rolloff
    y = np.zeros(n_out)
    for j in range(n_out):
        t = j * down / up
        k = np.arange(math.floor(t) - taps_half + 1, math.floor(t) + taps_half + 1)
        d = t - k
        w = np.where(np.abs(d) < taps_half, np.i0(beta * np.sqrt(np.clip(1 - (d / taps_half) ** 2, 0, None))) / np.i0(beta), 0)
        h = 2 * cutoff * np.sinc(2 * cutoff * d) * w
        xk = np.where((k >= 0) & (k < len(x)), x[np.clip(k, 0, len(x) - 1)], 0.0)
        y[j] = np.sum(xk * h)
    return y


@pytest.mark.parametrize("rates", [(48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100), (22050, 16000)])
def test_matches_naive_reference(rates):
    in_rate, out_rate = rates
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).astype(np.float32) * 0.5
    rs = StreamResampler(in_rate, out_rate, max_chunk=4096)
    y = rs.process(x).copy()
    ref = naive_resample(x.astype(np.float64), in_rate, out_rate, rs.taps_half, len(y))
    # float32 accumulation over <= 90 taps: agreement to ~1e-5 of the signal scale
    np.testing.assert_allclose(y, ref, atol=2e-5)
    # the number of outputs is exactly what the planning function says
    assert len(y) == int(rs.outputs_after(np.array([len(x)]))[0])


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (16000, 44100)])
def test_output_independent_of_chunking(rates):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(20000).astype(np.float32)
    whole = StreamResampler(*rates, max_chunk=20000).process(x).copy()
    for sizes in ([1], [64], [65], [441], [8193], None):
        rs = StreamResampler(*rates, max_chunk=8193)
        parts = []
        i = 0
        while i < len(x):
            n = int(rng.integers(1, 3000)) if sizes is None else sizes[0]
            parts.append(rs.process(x[i:i + n]).copy())
            i += n
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_passband_gain_and_stopband_rejection():
    sr_in, sr_out = 48000, 16000
    t = np.arange(48000) / sr_in
    rs = StreamResampler(sr_in, sr_out, max_chunk=48000)
    tone = rs.process(np.sin(2 * np.pi * 1000 * t).astype(np.float32)).copy()[200:-200]
    gain_db = 20 * np.log10(np.sqrt(2) * np.std(tone))
    assert abs(gain_db) < 0.1  # 1 kHz passes within 0.1 dB
    rs = StreamResampler(sr_in, sr_out, max_chunk=48000)
    alias = rs.process(np.sin(2 * np.pi * 12000 * t).astype(np.float32)).copy()[200:-200]
    assert 20 * np.log10(np.sqrt(2) * np.std(alias) + 1e-12) < -60  # 12 kHz would alias to 4 kHz


def test_unsupported_rate_is_refused_with_the_accepted_list():
    with pytest.raises(ConfigError, match=r"sample rate 11025 Hz is not supported; expected one of"):
        StreamResampler(11025, 16000)


def test_chunk_over_limit_is_refused():
    rs = StreamResampler(48000, 16000, max_chunk=10)
    with pytest.raises(ConfigError, match="exceeds max_chunk=10"):
        rs.process(np.zeros(11, np.float32))
