"""native/channels.py against NumPy: the mono mixdown is ``mean(axis=1)``, a selected channel its
column, and the fan-out a broadcast times the gain."""

import numpy as np

from rtvc._native.channels import fan_out, to_mono


def test_to_mono_mixes_down_or_selects() -> None:
    x = np.random.default_rng(0).standard_normal((37, 3)).astype(np.float32)
    out = np.zeros(37, np.float32)
    to_mono(x, -1, out)
    np.testing.assert_allclose(out, x.mean(axis=1), atol=1e-6)
    to_mono(x, 2, out)
    np.testing.assert_array_equal(out, x[:, 2])


def test_fan_out_copies_into_every_channel_with_the_gain() -> None:
    mono = np.arange(5, dtype=np.float32)
    out = np.zeros((5, 2), np.float32)
    fan_out(mono, 0.5, out)
    np.testing.assert_array_equal(out, np.stack([mono, mono], axis=1) * np.float32(0.5))
