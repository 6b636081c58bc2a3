"""Causal F0 tracking (YIN class): a streaming stage and its offline twin.

``CausalF0`` is stepped once per hop; its frame is the most recent ``window + tau_max``
samples, ending at the end of the current hop, so it never looks ahead. Before the first
``window + tau_max`` samples have arrived the missing history is zeros. ``track_f0`` runs the
very same kernel over a whole signal and returns exactly what the stage would have returned
after each hop (tested bit for bit).

The frame is ``window + ceil(sample_rate / fmin_hz)`` samples long: with the defaults
(16 kHz, 60 Hz, window 320) that is 587 samples (36.7 ms), and the estimate describes, on
average, the signal about ``(window + lag) / 2`` samples before the end of the hop.

Cost per step: one YIN difference function (``window * tau_max`` float64 terms, 85 440 with the
defaults), the same for voiced, unvoiced and noise frames; frames below ``silence_db`` skip it.
``bench/f0_speed.py`` measures it against the first, unvectorised kernel in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._native.f0 import yin_step, yin_track
from .errors import ConfigError
from .types import HOP, MODEL_RATE

__all__ = ["CausalF0", "F0State", "track_f0"]


@dataclass
class F0State:
    """Buffers of one ``CausalF0`` stream (allocated once, reused every step)."""

    frame: np.ndarray  # float64 (window + tau_max,), oldest first (float32 values, held in float64: the
    #                    difference kernel then skips a conversion per term; results are identical)
    d: np.ndarray  # float64 (tau_max + 1,)
    cmndf: np.ndarray  # float64 (tau_max + 1,)


class CausalF0:
    """Streaming YIN pitch tracker.

    Parameters
    ----------
    sample_rate : int
        Hz.
    hop : int
        Samples per step.
    fmin_hz, fmax_hz : float
        Search range; ``0 < fmin_hz < fmax_hz <= sample_rate / 4``.
    window : int
        Integration window (the reference segment) in samples; at least ``hop``.
    threshold : float
        CMNDF trough threshold in (0, 1): below it a frame is voiced.
    silence_db : float
        Frames whose reference segment is below this mean-square level (dBFS) are unvoiced.

    Examples
    --------
    >>> f = CausalF0()
    >>> st = f.init_state()
    >>> (f0_hz, periodicity), st = f.step(np.zeros(80, np.float32), st)
    """

    def __init__(self, *, sample_rate: int = MODEL_RATE, hop: int = HOP, fmin_hz: float = 60.0,
                 fmax_hz: float = 600.0, window: int = 320, threshold: float = 0.15,
                 silence_db: float = -90.0) -> None:
        if not isinstance(sample_rate, int) or sample_rate < 4000:
            raise ConfigError(f"sample_rate={sample_rate!r}: expected an integer >= 4000 Hz")
        if not isinstance(hop, int) or hop < 1:
            raise ConfigError(f"hop={hop!r}: expected a positive integer number of samples")
        if not (math.isfinite(fmin_hz) and math.isfinite(fmax_hz) and 0 < fmin_hz < fmax_hz <= sample_rate / 4):
            raise ConfigError(f"fmin_hz={fmin_hz!r}, fmax_hz={fmax_hz!r}: expected 0 < fmin_hz < fmax_hz <= "
                              f"{sample_rate / 4} (sample_rate / 4)")
        if not isinstance(window, int) or window < hop:
            raise ConfigError(f"window={window!r}: expected an integer >= hop ({hop})")
        if not (0.0 < threshold < 1.0):
            raise ConfigError(f"threshold={threshold!r}: expected a value in (0, 1)")
        if not (-200.0 <= silence_db <= 0.0):
            raise ConfigError(f"silence_db={silence_db!r}: expected a value in [-200, 0] dBFS")
        self.sample_rate = sample_rate
        self.hop = hop
        self.fmin_hz = float(fmin_hz)
        self.fmax_hz = float(fmax_hz)
        self.window = window
        self.threshold = float(threshold)
        self.silence_ms = 10.0 ** (silence_db / 10.0)
        self.tau_min = max(2, int(math.floor(sample_rate / fmax_hz)))
        self.tau_max = int(math.ceil(sample_rate / fmin_hz))
        self.frame_len = window + self.tau_max
        self._rate_f = float(sample_rate)

    def init_state(self) -> F0State:
        return F0State(np.zeros(self.frame_len, np.float64), np.zeros(self.tau_max + 1, np.float64),
                       np.zeros(self.tau_max + 1, np.float64))

    def step(self, x: np.ndarray, state: F0State) -> tuple[tuple[float, float], F0State]:
        """Consume one hop ``x`` (float32 (hop,)); return ``((f0_hz, periodicity), state)``.

        ``f0_hz`` is 0.0 for unvoiced frames; ``periodicity`` is in [0, 1].
        """
        if x.shape != (self.hop,):
            raise ConfigError(f"CausalF0.step got shape {x.shape}; expected ({self.hop},)")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            # one compiled kernel signature; the offline path rounds to float32 too
            x = np.ascontiguousarray(x, dtype=np.float32)
        f, p = yin_step(state.frame, x, self.tau_min, self.tau_max, self.threshold, self.silence_ms,
                        self._rate_f, state.d, state.cmndf)
        return (f, p), state

    def track(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offline: see :func:`track_f0` (same settings as this tracker)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ConfigError(f"track_f0 got audio of shape {x.shape}; expected (n_samples,)")
        n_frames = -(-x.shape[0] // self.hop)
        pad_front = self.frame_len - self.hop
        xpad = np.zeros(pad_front + n_frames * self.hop, np.float64)  # float32 values, as in the stream
        xpad[pad_front:pad_front + x.shape[0]] = x
        f0_hz = np.zeros(n_frames, np.float64)
        per = np.zeros(n_frames, np.float64)
        st = self.init_state()
        yin_track(xpad, self.hop, self.frame_len, self.tau_min, self.tau_max, self.threshold, self.silence_ms,
                  float(self.sample_rate), st.d, st.cmndf, f0_hz, per)
        return f0_hz, per


def track_f0(x: np.ndarray, *, sample_rate: int = MODEL_RATE, hop: int = HOP, fmin_hz: float = 60.0,
             fmax_hz: float = 600.0, window: int = 320, threshold: float = 0.15,
             silence_db: float = -90.0) -> tuple[np.ndarray, np.ndarray]:
    """Offline causal F0 of a whole signal.

    Parameters
    ----------
    x : float32 (n_samples,)
        Audio. A last partial hop is zero-padded (as if the stream had been fed zeros).
    sample_rate, hop, fmin_hz, fmax_hz, window, threshold, silence_db
        As for :class:`CausalF0`.

    Returns
    -------
    f0_hz : float64 (n_frames,)
        ``n_frames = ceil(n_samples / hop)``; frame ``i`` is ``CausalF0``'s output after hop
        ``i`` (0.0 when unvoiced).
    periodicity : float64 (n_frames,)
        In [0, 1].
    """
    return CausalF0(sample_rate=sample_rate, hop=hop, fmin_hz=fmin_hz, fmax_hz=fmax_hz, window=window,
                    threshold=threshold, silence_db=silence_db).track(x)
