"""Streaming resampler wrapper: validates once, owns its buffers, never allocates per call."""

from __future__ import annotations

import math

import numpy as np

from ._native.resample import count_outputs, make_table, resample_step
from .errors import ConfigError
from .types import Audio

__all__ = ["StreamResampler", "SUPPORTED_RATES"]

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
TAPS_HALF_AT_LOW_RATE = 16


class StreamResampler:
    """Resample a stream from ``in_rate`` to ``out_rate`` with zero phase (see native.resample).

    ``process(x)`` accepts at most ``max_chunk`` samples and returns a view of the outputs
    that became computable; the view is valid until the next call.
    """

    def __init__(self, in_rate: int, out_rate: int, *, max_chunk: int = 8192) -> None:
        for r in (in_rate, out_rate):
            if r not in SUPPORTED_RATES:
                raise ConfigError(f"sample rate {r} Hz is not supported; expected one of {SUPPORTED_RATES}")
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        self.identity = self.up == self.down
        self.max_chunk = int(max_chunk)
        self.taps_half = 0 if self.identity else math.ceil(TAPS_HALF_AT_LOW_RATE * max(1.0, self.down / self.up))
        self.table = make_table(self.up, self.down, self.taps_half) if not self.identity else np.zeros((1, 2), np.float32)
        self._hist = np.zeros(2 * self.taps_half + self.max_chunk + self.down // self.up + 4, np.float32)
        self._out = np.zeros(self.max_chunk * self.up // self.down + 4, np.float32)
        self._st = np.zeros(3, np.int64)
        self.reset()

    def reset(self) -> None:
        self._hist[:] = 0.0
        self._st[:] = (0, 0, max(self.taps_half - 1, 0))

    def process(self, x: Audio) -> Audio:
        if x.shape[0] > self.max_chunk:
            raise ConfigError(f"resampler chunk of {x.shape[0]} samples exceeds max_chunk={self.max_chunk}")
        if self.identity:
            return x
        n = resample_step(x, self.table, self.up, self.down, self._hist, self._st, self._out)
        return self._out[:n]

    def outputs_after(self, n_in: np.ndarray) -> np.ndarray:
        """Number of outputs produced once ``n_in`` input samples were processed (planning)."""
        if self.identity:
            return np.asarray(n_in, dtype=np.int64)
        return count_outputs(n_in, self.up, self.down, self.taps_half)
