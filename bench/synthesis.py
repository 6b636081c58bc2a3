"""Synthesis-method comparison and held-out quality of a neural voice (a benchmark: it lives in
``bench/`` beside ``_metrics.py``; the package never imports from here).

    python bench/synthesis.py models/aria.onnx --heldout-corpus asterisk \\
        --sources piper-joe,mbrola:us2,kokoro:jm_kumo --n 3 [--cache-dir DIR] [--json OUT]

Per method (``pulse-noise``, ``source``) the voice's stage converts each source utterance
(stepped hop by hop, exactly as the engine does), and the script reports speaker similarity
(resemblyzer cosine to the embedding of the voice's *held-out* target utterances, listed in
its manifest), WER (Whisper tiny.en; pocketsphinx before 2026-12-07) and DNSMOS, beside the
unconverted sources and the vocoder ceiling (held-out target utterances analysed and
resynthesised with their own envelope and F0). Needs the ``train`` and ``bench`` extras.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # `python bench/synthesis.py`: the checkout's root on the path, as the other benches
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _metrics as M  # noqa: E402,N812
from rtvc.converter import NeuralVoice  # noqa: E402
from rtvc.features import FeatureExtractor  # noqa: E402
from rtvc.synthesis import Synthesizer  # noqa: E402
from rtvc.train.corpus import build_corpus  # noqa: E402
from rtvc.train.dataset import load_audio_16k  # noqa: E402

__all__ = ["run_stage", "resynthesize", "main"]


def run_stage(voice: NeuralVoice, x: np.ndarray, *, pitch_st: float = 0.0) -> np.ndarray:
    """Convert ``x`` (16 kHz) with ``voice``; output aligned with the input (latency removed)."""
    from ..params import Params

    voice.set_params(Params(pitch_st=pitch_st))
    st = voice.init_state()
    lat = voice.latency
    xp = np.concatenate([x, np.zeros(lat + 80, np.float32)])
    n = len(xp) // 80
    y = np.concatenate([voice.step(xp[i * 80:(i + 1) * 80], st)[0].copy() for i in range(n)])
    return y[lat:lat + len(x)]


def resynthesize(x: np.ndarray, method: str = "pulse-noise", *, options: dict[str, Any] | None = None) -> np.ndarray:
    """Analysis-resynthesis of ``x`` with its own envelope and F0 (the vocoder ceiling); the
    ``postfilter`` option is left out (it is meant for converted envelopes), and ``f0_continuity``
    does not act here (the neural voice stage applies it, not the synthesiser)."""
    fx = FeatureExtractor()
    syn = Synthesizer(method, options={k: v for k, v in (options or {}).items() if k != "postfilter"})
    fs, ss = fx.init_state(), syn.init_state()
    xp = np.concatenate([x, np.zeros(syn.latency + 80, np.float32)])
    out = []
    for i in range(len(xp) // 80):
        _, fs = fx.step(xp[i * 80:(i + 1) * 80], fs)
        out.append(syn.step(fs["cep"], ss, f0_hz=fs["f0_hz"], voicing=fs["periodicity"], src_spec=fs["spec"],
                            src_cep=fs["cep"], src_f0_hz=fs["f0_hz"]).copy())
    return np.concatenate(out)[syn.latency:syn.latency + len(x)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/synthesis.py")
    ap.add_argument("voice", type=Path)
    ap.add_argument("--heldout-corpus", required=True)
    ap.add_argument("--sources", default="piper-joe,mbrola:us2")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--heldout-max", type=int, default=None, help="max_utterances the voice's corpus was built with")
    ap.add_argument("--methods", default="pulse-noise,source")
    ap.add_argument("--metrics", default="sim,wer,dnsmos")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--exclude", default="", help="utterance file names not to use as sources")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    voice = NeuralVoice.load(args.voice)
    m = voice.manifest
    options = m.get("synthesis_options")
    held_names = set(m["training"].get("heldout", []))
    tgt_utts = [u for u in build_corpus(args.heldout_corpus, cache_dir=args.cache_dir, progress=False,
                                             max_utterances=args.heldout_max)
                if u.path.name in held_names]
    if len(tgt_utts) < 4:
        raise SystemExit(f"only {len(tgt_utts)} held-out target utterances found; expected >= 4")
    ref = [load_audio_16k(u.path) for u in tgt_utts[:8]]
    ref_emb = np.mean([M.speaker_embedding(r) for r in ref], axis=0)
    metrics = set(args.metrics.split(","))
    excl = set(args.exclude.split(",")) if args.exclude else set()

    def score(y: np.ndarray, text: str) -> dict[str, float]:
        out: dict[str, float] = {}
        if "sim" in metrics:
            out["sim"] = M.cosine(M.speaker_embedding(y), ref_emb)
        if "wer" in metrics and text:
            out["wer"] = M.wer(M.transcribe(y), text)
        if "dnsmos" in metrics:
            out["dnsmos"] = M.dnsmos(y)["ovrl"]
        return out

    rows: dict[str, list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    # vocoder ceiling: held-out target utterances resynthesised (not the ones in the reference)
    for u in tgt_utts[8:8 + args.n]:
        x = load_audio_16k(u.path)
        rows.setdefault("target (held-out, unprocessed)", []).append(score(x, u.text))
        rows.setdefault("target resynthesised, pulse-noise (vocoder ceiling)", []).append(
            score(resynthesize(x, "pulse-noise", options=options), u.text))
    methods = args.methods.split(",")
    for spec in args.sources.split(","):
        utts = [u for u in build_corpus(spec, cache_dir=args.cache_dir, progress=False, max_utterances=60)
                if u.path.name not in excl and 1.5 <= u.duration_s <= 8.0]
        for u in utts[-args.n:]:
            x = load_audio_16k(u.path)
            rows.setdefault("source (unconverted)", []).append(score(x, u.text))
            for meth in methods:
                voice.synth = Synthesizer(meth, config=voice.config, options=options)
                y = run_stage(voice, x)
                rows.setdefault(f"converted, {meth}", []).append(score(y, u.text))
            print(f"  {spec} {u.path.name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    summary = {k: {mk: float(np.mean([r[mk] for r in v if mk in r])) for mk in sorted({kk for r in v for kk in r})}
               | {"n": len(v)} for k, v in rows.items()}
    print(f"voice {m['name']} (sources {args.sources}; reference: {len(ref)} held-out target utterances; "
          f"synthesis options {options or 'defaults'})")
    for k, v in summary.items():
        print(f"  {k:<55} " + "  ".join(f"{mk}={vv:.3f}" for mk, vv in v.items() if mk != "n") + f"  n={v['n']}")
    if args.json:
        args.json.write_text(json.dumps({"voice": m["name"], "sources": args.sources, "synthesis_options": options,
                                                "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
