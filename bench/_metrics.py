"""Objective quality metrics of converted speech (used by ``bench/quality.py`` and training).

- :func:`speaker_similarity`: cosine of ``resemblyzer`` speaker embeddings (d-vectors).
- :func:`transcribe` / :func:`wer`: pocketsphinx (en-US model shipped in its wheel) and word
  error rate.
- :func:`dnsmos`: DNSMOS (SIG, BAK, OVRL) and DNSMOS P.808 via ``speechmos`` (ONNX models in
  its wheel).
- :func:`f0_correlation`: Pearson correlation of log-F0 of converted vs source, on frames
  voiced in both.

Audio arguments are float32 mono ``(n_samples,)`` arrays with a sample rate, or WAV paths.
Models are loaded once, lazily, on first use (resemblyzer imports torch: only here, never in
the runtime).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from rtvc.errors import AudioFileError, ConfigError

__all__ = [
    "METRIC_RATE",
    "load_audio",
    "speaker_embedding",
    "speaker_similarity",
    "cosine",
    "transcribe",
    "normalise_text",
    "wer",
    "word_edits",
    "dnsmos",
    "track_f0",
    "f0_correlation",
]

METRIC_RATE = 16_000
"""Every metric runs at 16 kHz (inputs are resampled with soxr)."""

AudioLike = Union[str, os.PathLike, np.ndarray, tuple]


def load_audio(a: AudioLike, sr: int | None = None) -> np.ndarray:
    """``a`` as float32 mono at 16 kHz.

    Parameters
    ----------
    a : path, array ``(n_samples,)`` or tuple ``(array, sr)``
        A WAV path, an array at ``sr`` (16 kHz when ``sr`` is None), or an (array, rate) pair.
    sr : int, optional
        Rate of an array argument, in Hz.

    Returns
    -------
    ndarray, shape (n_samples,), float32
    """
    if isinstance(a, tuple):
        a, sr = a
    if isinstance(a, (str, os.PathLike)):
        import soundfile as sf

        p = Path(a)
        try:
            x, sr = sf.read(str(p), dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioFileError(f"audio file {p} cannot be read: {e}; expected a WAV/FLAC file") from e
        x = x.mean(axis=1)
    else:
        x = np.asarray(a, np.float32)
        if x.ndim != 1:
            raise ConfigError(f"audio has shape {x.shape}; expected mono (n_samples,)")
    sr = METRIC_RATE if sr is None else int(sr)
    if not (4000 <= sr <= 384_000):
        raise ConfigError(f"sample rate {sr} Hz is out of range; expected 4000..384000")
    if sr != METRIC_RATE:
        import soxr

        x = soxr.resample(x, sr, METRIC_RATE, quality="HQ")
    x = np.nan_to_num(np.asarray(x, np.float32))
    return x


# --------------------------------------------------------------------------- speaker similarity
@lru_cache(maxsize=1)
def _encoder() -> Any:
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as e:
        raise ConfigError("speaker similarity needs resemblyzer; expected it installed "
                          "(pip install --no-deps resemblyzer webrtcvad-wheels)") from e
    return VoiceEncoder("cpu", verbose=False)


def speaker_embedding(a: AudioLike, sr: int | None = None) -> np.ndarray:
    """L2-normalised resemblyzer embedding ``(256,)`` of one utterance.

    Long silences are trimmed with resemblyzer's own VAD-based preprocessing first.
    """
    from resemblyzer import preprocess_wav

    x = load_audio(a, sr)
    w = preprocess_wav(x, source_sr=METRIC_RATE)
    if w.size < METRIC_RATE // 4:  # almost all silence: embed the raw signal rather than nothing
        w = x
    if w.size < 1600:
        raise AudioFileError(f"utterance has {w.size} samples at 16 kHz; expected at least 1600 (0.1 s)")
    e = _encoder().embed_utterance(w.astype(np.float32))
    return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    u = np.asarray(u, np.float64).ravel()
    v = np.asarray(v, np.float64).ravel()
    if u.shape != v.shape:
        raise ConfigError(f"vectors have shapes {u.shape} and {v.shape}; expected equal shapes")
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0.0 or nv == 0.0:
        raise ConfigError("a zero vector has no direction; expected non-zero embeddings")
    return float(u @ v / (nu * nv))


def speaker_similarity(wav_a: AudioLike, wav_b_or_list: AudioLike | Sequence[AudioLike], *,
                       sr: int | None = None) -> float:
    """Cosine of resemblyzer speaker embeddings.

    Parameters
    ----------
    wav_a : path, array or (array, sr)
        The utterance to judge (arrays are at ``sr``, default 16 kHz).
    wav_b_or_list : path, array, (array, sr), or a list of them
        The reference. A list gives a speaker embedding: the normalised mean of the utterance
        embeddings (resemblyzer's ``embed_speaker``).
    sr : int, optional
        Rate of array arguments (default 16 kHz).

    Returns
    -------
    float
        In [-1, 1]; same-speaker utterances score about 0.85-0.95, different speakers lower.
    """
    ea = speaker_embedding(wav_a, sr)
    refs = list(wav_b_or_list) if isinstance(wav_b_or_list, list) else [wav_b_or_list]
    if not refs:
        raise ConfigError("reference list is empty; expected at least one utterance")
    eb = np.mean([speaker_embedding(r, sr) for r in refs], axis=0)
    return cosine(ea, eb)


# --------------------------------------------------------------------------- intelligibility
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _number_words(n % 100))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise_text(text: str) -> list[str]:
    """Lower-case words without punctuation; digits spelled out (``"press 1"`` -> press one).

    ``*`` and ``#`` become "star" and "pound" (telephony prompts), other symbols are dropped.
    """
    t = text.lower().replace("*", " star ").replace("#", " pound ").replace("&", " and ")
    t = re.sub(r"\d+", lambda m: " " + _number_words(int(m.group())) + " ", t)
    t = re.sub(r"[^a-z' ]+", " ", t).replace("'", "")
    return t.split()


def word_edits(hyp: Sequence[str], ref: Sequence[str]) -> int:
    """Levenshtein distance in words (substitutions + deletions + insertions)."""
    prev = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return int(prev[-1])


def wer(hyp_text: str, ref_text: str) -> float:
    """Word error rate of ``hyp_text`` against ``ref_text`` after :func:`normalise_text`.

    Returns
    -------
    float
        ``edits / n_ref_words``; 0 is perfect, it can exceed 1 with many insertions.
    """
    ref = normalise_text(ref_text)
    if not ref:
        raise ConfigError(f"reference text {ref_text!r} has no words; expected at least one")
    return word_edits(normalise_text(hyp_text), ref) / len(ref)


@lru_cache(maxsize=1)
def _decoder() -> Any:
    try:
        from pocketsphinx import Decoder
    except ImportError as e:
        raise ConfigError("transcription needs pocketsphinx; expected it installed (pip install pocketsphinx)") from e
    # pruning limits halve the decode time at the same WER on our corpora (measured: asterisk + MBROLA)
    return Decoder(samprate=METRIC_RATE, loglevel="FATAL", maxhmmpf=3000, maxwpf=5)


def transcribe(x: AudioLike, sr: int | None = None) -> str:
    """Words recognised by pocketsphinx (en-US acoustic model + generic language model,
    ``maxhmmpf=3000, maxwpf=5``).

    Parameters
    ----------
    x : array ``(n_samples,)``, path or (array, sr)
    sr : int, optional
        Rate of an array, in Hz (default 16 kHz).

    Returns
    -------
    str
        Lower-case words separated by spaces ('' when nothing was recognised).
    """
    y = load_audio(x, sr)
    pcm = (np.clip(y, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    h = dec.hyp()
    return "" if h is None else " ".join(w for w in h.hypstr.split() if not w.startswith("<"))


# --------------------------------------------------------------------------- naturalness
def dnsmos(x: AudioLike, sr: int | None = None) -> dict[str, float]:
    """DNSMOS scores (1..5) via speechmos: ``ovrl``, ``sig``, ``bak`` and ``p808``.

    Parameters
    ----------
    x : array ``(n_samples,)``, path or (array, sr)
        At least 0.5 s; DNSMOS rates 9 s windows (shorter clips are repeated by speechmos).
    sr : int, optional
        Rate of an array, in Hz (default 16 kHz).
    """
    try:
        from speechmos import dnsmos as _d
    except ImportError as e:
        raise ConfigError("naturalness needs speechmos; expected it installed (pip install speechmos)") from e
    y = load_audio(x, sr)
    if y.size < METRIC_RATE // 2:
        raise AudioFileError(f"clip has {y.size} samples at 16 kHz; DNSMOS expects at least 8000 (0.5 s)")
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        y = y / peak
    r = _d.run(y.astype(np.float32), sr=METRIC_RATE)
    return {"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
            "p808": float(r["p808_mos"])}


# --------------------------------------------------------------------------- F0 tracking
F0_HOP = 80  # 5 ms at 16 kHz
F0_MIN_HZ = 50.0
F0_MAX_HZ = 600.0


def track_f0(x: AudioLike, sr: int | None = None, *, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz and voicing per 5 ms frame (80 samples at 16 kHz).

    Parameters
    ----------
    x : array ``(n_samples,)``, path or (array, sr)
    sr : int, optional
        Rate of an array, in Hz (default 16 kHz).
    method : {"auto", "rtvc", "pyin"}
        ``rtvc``: the project's causal YIN (:func:`rtvc.f0.track_f0`, frame ``i`` ends at
        sample ``80 (i + 1)``); ``pyin``: librosa pYIN, centred frames; ``auto``: rtvc if
        importable, else pyin. Both contours of a comparison use the same tracker, so its
        delay cancels.

    Returns
    -------
    f0_hz : ndarray, shape (n_frames,)
        NaN where unvoiced.
    voiced : ndarray of bool, shape (n_frames,)
    """
    if method not in ("auto", "rtvc", "pyin"):
        raise ConfigError(f"F0 method {method!r} is unknown; expected 'auto', 'rtvc' or 'pyin'")
    y = load_audio(x, sr)
    if method in ("auto", "rtvc"):
        try:
            from rtvc.f0 import track_f0 as _rtvc_track
        except ImportError:
            if method == "rtvc":
                raise ConfigError("F0 method 'rtvc' needs rtvc.f0.track_f0, which is not importable; "
                                  "expected 'auto' or 'pyin'") from None
        else:
            f0, _ = _rtvc_track(y, sample_rate=METRIC_RATE, hop=F0_HOP, fmin_hz=max(F0_MIN_HZ, 60.0),
                                fmax_hz=F0_MAX_HZ)
            f0 = np.asarray(f0, np.float64)
            voiced = np.isfinite(f0) & (f0 > 0)
            return np.where(voiced, f0, np.nan), voiced
    import librosa

    f0, voiced, _ = librosa.pyin(y, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=METRIC_RATE, frame_length=1024,
                                 hop_length=F0_HOP, center=True)
    voiced = np.asarray(voiced, bool) & np.isfinite(f0)
    return np.where(voiced, f0, np.nan), voiced


def f0_correlation(converted: AudioLike, source: AudioLike, sr: int | None = None, pitch_st: float = 0.0, *,
                   min_frames: int = 20, method: str = "auto") -> float:
    """Pearson correlation of log2-F0 of ``converted`` and of ``source`` shifted by ``pitch_st``.

    Only frames voiced in both count. The shift does not change a correlation (it adds a
    constant in the log domain) but is applied so the two contours can be compared by eye.

    Parameters
    ----------
    converted, source : array ``(n_samples,)``, path or (array, sr)
        Time-aligned (the engine's latency already removed).
    sr : int, optional
        Rate of array arguments (default 16 kHz).
    pitch_st : float
        Pitch shift the conversion applied, in semitones.
    min_frames : int
        Fewer common voiced frames than this gives NaN.
    method : {"auto", "rtvc", "pyin"}
        F0 tracker, see :func:`track_f0`.

    Returns
    -------
    float
        In [-1, 1], NaN when there is too little common voicing or no F0 variation.
    """
    fc, vc = track_f0(converted, sr, method=method)
    fs, vs = track_f0(source, sr, method=method)
    n = min(fc.size, fs.size)
    both = vc[:n] & vs[:n]
    if int(both.sum()) < min_frames:
        return float("nan")
    a = np.log2(fc[:n][both])
    b = np.log2(fs[:n][both]) + pitch_st / 12.0
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
