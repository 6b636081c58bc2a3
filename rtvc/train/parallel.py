"""Parallel training data: other speakers saying the target's sentences, aligned to it.

Disguising the target's own speech (:class:`~rtvc.train.dataset.Augmenter`) teaches the
converter to undo warps, tilts and pitch changes, but not what makes a real other speaker
different (formant patterns, voice quality, accent). Here other speakers say the same sentences
as the target (synthetic corpora with the same seed share their text, see
:mod:`rtvc.train.corpus`); each source utterance is aligned to the target's utterance by dynamic
time warping of speaker-normalised MFCC, and the target's envelope is resampled onto the
*source's* timeline. The result is a :class:`~rtvc.train.dataset.FrameSet` whose inputs
(``logmag``, ``f0_hz``, ``periodicity``) are the source's own, unwarped frames, as the live
converter sees them, and whose ``cepstrum`` is the target's envelope at the aligned frame:
exactly what the converter should output at that moment. Its level (``c0``) is moved, per
utterance, to the source's level, as the self-disguised data's is (the output level follows
the input).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..features import Analysis, FeatureConfig, FeatureExtractor
from .dataset import FrameSet, frames_cache_key, read_cached_frames, write_cached_frames

__all__ = ["align_path", "aligned_target_index", "parallel_frames", "match_by_text"]

PARALLEL_VERSION = 1
"""Part of the cache key: bump it when the alignment changes its output."""
REALIGN_CEPSTRA = 25
"""Envelope cepstra ``c0..c24`` compared when aligning on converted envelopes (``c0`` is dropped
by the normalisation; higher coefficients carry fine detail that a regression blurs)."""


def _normalised(mfcc: np.ndarray) -> np.ndarray:
    """MFCC c1.. without the level (c0), each coefficient to zero mean and unit variance over
    the utterance: the alignment compares what is said, not who says it or how loud. (On
    MBROLA us1 vs us3, identical phone timing: mean error 2.0 frames, 94 % within 5 frames;
    mean removal alone 3.3 frames, 85 %.)"""
    m = mfcc[:, 1:].astype(np.float64)
    m = m - m.mean(axis=0, keepdims=True)
    return m / (m.std(axis=0, keepdims=True) + 1e-6)


def align_path(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Dynamic time warping of two feature sequences ``(n, d)`` and ``(m, d)``: the optimal
    monotone path as ``(k, 2)`` index pairs ``(i_src, j_tgt)`` from ``(0, 0)`` to
    ``(n - 1, m - 1)`` (Euclidean frame distance, steps (1,1), (1,0), (0,1))."""
    import librosa

    if src.ndim != 2 or tgt.ndim != 2 or src.shape[1] != tgt.shape[1] or len(src) == 0 or len(tgt) == 0:
        raise ConfigError(f"alignment of feature sequences {src.shape} and {tgt.shape}; "
                          "expected two non-empty (frames, dims) arrays of the same width")
    _, wp = librosa.sequence.dtw(X=src.T, Y=tgt.T, metric="euclidean", backtrack=True)
    return np.ascontiguousarray(wp[::-1], dtype=np.int64)


def aligned_target_index(path: np.ndarray, n_src: int) -> np.ndarray:
    """For every source frame, the target frame the path matches it to (the mean of the
    target frames it is matched to, rounded: a source frame held over several target frames
    takes their middle). Shape ``(n_src,)``, non-decreasing."""
    sums = np.bincount(path[:, 0], weights=path[:, 1], minlength=n_src)
    counts = np.bincount(path[:, 0], minlength=n_src)
    if np.any(counts == 0):
        raise ConfigError("alignment path misses a source frame; expected a path through every frame")
    return np.rint(sums / counts).astype(np.int64)


def match_by_text(target: Sequence, source: Sequence) -> list[tuple[int, int]]:
    """Pairs ``(i_target, i_source)`` of utterances (anything with a ``.text``) that say the
    same non-empty text, in target order."""
    by_text: dict[str, int] = {}
    for i, u in enumerate(source):
        t = " ".join(u.text.split()).lower()
        if t:
            by_text.setdefault(t, i)
    out = []
    for i, u in enumerate(target):
        j = by_text.get(" ".join(u.text.split()).lower())
        if j is not None:
            out.append((i, j))
    return out


def parallel_frames(pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, config: FeatureConfig | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    convert: Callable[[np.ndarray], np.ndarray] | None = None) -> FrameSet:
    """A :class:`FrameSet` of source frames with the aligned target envelope, from
    ``(source, target)`` pairs of 16 kHz utterances saying the same words (see the module
    docstring). With ``cache_dir`` the result is kept in ``cache_dir/parallel-KEY.npz``.

    ``convert`` (a converter trained on a first alignment: input features ``(n, F)`` ->
    envelope cepstra ``(n, E)``) aligns on the *converted* source against the target's own
    envelope instead of MFCC against MFCC: both are then the target's voice, so the frame
    distance measures what is said only (the classic refinement of parallel voice conversion).
    Nothing is cached then (the result depends on the converter)."""
    config = config or FeatureConfig()
    if not pairs:
        raise ConfigError("no parallel utterance pairs; expected at least one (source, target) pair")
    cache: Path | None = None
    if cache_dir is not None and convert is None:
        key = frames_cache_key([x for pair in pairs for x in pair], config, salt={"parallel": PARALLEL_VERSION})
        cache = Path(cache_dir) / f"parallel-{key}.npz"
        fs = read_cached_frames(cache)
        if fs is not None:
            return fs
    fx = FeatureExtractor(config)
    targets: dict[int, Analysis] = {}  # a target said to several sources is analysed once
    n_mfcc = config.n_mfcc
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for src, tgt in pairs:
        a = fx.analyze(src, keep_logmag=True)
        if id(tgt) not in targets:
            targets[id(tgt)] = fx.analyze(tgt)
        b = targets[id(tgt)]
        if len(a.f0_hz) < 2 or len(b.f0_hz) < 2:
            continue
        if convert is None:
            path = align_path(_normalised(a.inputs[:, :n_mfcc]), _normalised(b.inputs[:, :n_mfcc]))
        else:
            k = min(REALIGN_CEPSTRA, b.cepstrum.shape[1])
            path = align_path(_normalised(convert(a.inputs)[:, :k]), _normalised(b.cepstrum[:, :k]))
        j = aligned_target_index(path, len(a.f0_hz))
        cep = b.cepstrum[j].copy()
        both = (a.f0_hz > 0) & (b.f0_hz[j] > 0)
        sel = both if both.sum() >= 10 else np.ones_like(both)
        cep[:, 0] += float(np.mean(a.cepstrum[sel, 0]) - np.mean(cep[sel, 0]))  # output level follows the input
        assert a.logmag is not None
        parts.append((a.logmag.astype(np.float16), cep, a.f0_hz, a.periodicity))
    if not parts:
        raise ConfigError("every parallel pair was too short to align; expected utterances of at least 2 frames")
    fs = FrameSet(*(np.concatenate([p[k] for p in parts]) for k in range(4)))
    if cache is not None:
        write_cached_frames(cache, fs)
    return fs
