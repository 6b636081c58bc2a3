"""Causal source-speaker normalisation toward a voice's target: F0, vocal-tract length, timbre.

Each mapper holds the target's constants (read from the voice's manifest or preview clip) and
keeps a stream's running source statistics in a small array its owner allocates once with
``init_state()`` (parameters are not state): :class:`F0Mapper` moves the log2-F0 mean,
:class:`WarpNormaliser` warps the converter's mel filterbank by the F0 ratio, and
:class:`TimbreMapper` moves the mean MFCC. :class:`rtvc.converter.NeuralVoice` runs them per hop;
the training data (``rtvc.train.dataset``) imitates them.
"""

from __future__ import annotations

import math

import numpy as np

from ._native.timbre import mean_shift
from .features import FeatureConfig, FeatureExtractor, mel_filterbank
from .types import Audio

__all__ = ["F0Mapper", "TimbreMapper", "WarpNormaliser", "target_timbre_mean", "F0_WARMUP_FRAMES", "F0_EMA_FRAMES",
           "TIMBRE_EMA_FRAMES", "TIMBRE_RAMP_FRAMES", "WARP_GAMMA", "WARP_GRID", "WARP_MIN_FRAMES"]

F0_WARMUP_FRAMES = 200  # plain running mean over the first voiced frames, then an EMA
F0_EMA_FRAMES = 600.0  # ~3 s of voiced speech
TIMBRE_EMA_FRAMES = 300.0  # plain mean over the first voiced frames, then an EMA (~3 s of voiced speech)
TIMBRE_RAMP_FRAMES = 20.0  # the shift fades in over the first voiced frames (its mean is noisy there)

# vocal-tract-length normalisation of the converter's input (WarpNormaliser)
WARP_GAMMA = 0.3  # warp = (source F0 mean / target F0 mean) ** WARP_GAMMA
WARP_GRID = np.round(np.arange(0.8, 1.25 + 1e-9, 0.025), 3)  # the warps a stream can use (clipped to them)
WARP_MIN_FRAMES = 20  # voiced frames of the source before its F0 mean is trusted (100 ms)


class WarpNormaliser:
    """Causal vocal-tract-length normalisation of the converter's input.

    Formant frequencies scale with the vocal tract, and a speaker's average F0 tracks it across
    sexes (higher voices, shorter tracts): the stream's mel filterbank reads the source spectrum
    at ``warp = (source F0 mean / target F0 mean) ** WARP_GAMMA`` times each band's frequency
    (:func:`rtvc.features.mel_filterbank`'s ``warp``), so a speaker with formants that much
    higher gives the converter features nearer the target's own. The source mean is
    :class:`F0Mapper`'s (read before this hop's update); the warp is rounded to ``WARP_GRID``
    and starts at 1 until ``WARP_MIN_FRAMES`` voiced frames are in. The filterbanks of the whole
    grid are built once, at load: a change of warp copies one into the stream's own filterbank
    (no allocation).
    """

    def __init__(self, config: FeatureConfig, target_log2_mean: float, *, gamma: float = WARP_GAMMA) -> None:
        self.target = float(target_log2_mean)
        self.gamma = float(gamma)
        self.bank = np.stack([mel_filterbank(sample_rate=config.sample_rate, n_fft=config.n_fft,
                                             n_mels=config.n_mels, warp=float(a)) for a in WARP_GRID])
        self.unit = int(np.argmin(np.abs(WARP_GRID - 1.0)))

    def init_state(self) -> np.ndarray:
        return np.array([self.unit], np.int64)  # the grid index the stream's filterbank holds

    def warp_of(self, f0_state: np.ndarray) -> int:
        """The grid index for an :class:`F0Mapper` state ``[source mean (log2 Hz), voiced frames]``."""
        if f0_state[1] < WARP_MIN_FRAMES:
            return self.unit
        w = 2.0 ** (self.gamma * (f0_state[0] - self.target))
        i = int(round((w - WARP_GRID[0]) / (WARP_GRID[1] - WARP_GRID[0])))
        return min(max(i, 0), WARP_GRID.shape[0] - 1)

    def update(self, f0_state: np.ndarray, fb: np.ndarray, st: np.ndarray) -> None:
        i = self.warp_of(f0_state)
        if i != st[0]:
            fb[:] = self.bank[i]
            st[0] = i


class F0Mapper:
    """Causal statistical F0 mapping: shift the source log2-F0 mean onto the target's.

    The source mean is the plain mean of the first voiced frames, then an exponential moving
    average; the shift is ``target_mean - source_mean + pitch_st / 12`` octaves.
    """

    def __init__(self, target_log2_mean: float) -> None:
        self.target = float(target_log2_mean)

    @staticmethod
    def init_state() -> np.ndarray:
        return np.zeros(2, np.float64)  # [source mean (log2 Hz), voiced frames seen]

    def map(self, f0_hz: float, pitch_st: float, st: np.ndarray) -> float:
        if f0_hz <= 0.0:
            return 0.0
        lf = math.log2(f0_hz)
        n = st[1] + 1.0
        st[0] += (lf - st[0]) / (n if n <= F0_WARMUP_FRAMES else F0_EMA_FRAMES)
        st[1] = n
        return 2.0 ** (lf - st[0] + self.target + pitch_st / 12.0)


def target_timbre_mean(x: Audio, fx: FeatureExtractor, n_mfcc: int) -> np.ndarray | None:
    """Mean MFCC ``c1..c{n_mfcc-1}`` over the voiced frames of ``x`` (the target's own speech),
    or None when ``x`` has fewer than 50 voiced frames."""
    a = fx.analyze(np.ascontiguousarray(x, np.float32))
    v = a.f0_hz > 0.0
    if int(v.sum()) < 50:
        return None
    return a.inputs[v, 1:n_mfcc].mean(axis=0).astype(np.float32)


class TimbreMapper:
    """Causal speaker normalisation of the converter's input: shift the source's mean MFCC
    (``c1..``, voiced frames) onto the target's.

    The converter is trained on the target's own speech in disguise (pitch, vocal-tract length,
    tilt, noise); a new speaker's average timbre lies outside what it saw, and the converted
    envelope keeps part of it. Moving the input's long-term mean onto the target's (the
    MFCC counterpart of cepstral mean normalisation, and of :class:`F0Mapper`'s mean shift)
    brings the input back in range; the frame-to-frame detail, which carries the words, is
    untouched. The source mean is the plain mean of the first voiced frames, then an
    exponential moving average over ``TIMBRE_EMA_FRAMES``; the shift fades in over the first
    ``TIMBRE_RAMP_FRAMES`` voiced frames. ``c0`` (level) is left alone.
    """

    def __init__(self, target_mean: np.ndarray) -> None:
        self.target = np.asarray(target_mean, np.float32)
        self.n = self.target.shape[0]

    def init_state(self) -> np.ndarray:
        """``[source mean (n), voiced frames seen, scratch (n)]`` in one float32 array."""
        return np.zeros(2 * self.n + 1, np.float32)

    def map(self, feats: np.ndarray, voiced: bool, st: np.ndarray) -> None:
        """Shift ``feats[1:1+n]`` in place (no allocation; one compiled call,
        :func:`rtvc._native.timbre.mean_shift`)."""
        mean_shift(feats, 1, voiced, self.target, st, TIMBRE_EMA_FRAMES, TIMBRE_RAMP_FRAMES)
