"""Cloning benchmark: clone the Asterisk prompts' speaker, judge the clone on what it never heard.

The issue's demonstration of ``rtvc clone``, rerunnable: the Asterisk prompts (Allison Smith,
real speech, 551 prompts) are split as the trainer splits a corpus (every 10th prompt held
out); the other 90 % go into a folder that :func:`rtvc.train.clone.clone_voice` (what ``rtvc
clone`` runs) turns into a voice, timed; then, with the *held-out* prompts as the target
(the mean speaker embedding of the first 8 of them), through the streaming engine at 10 ms
blocks as in ``bench/quality.py``:

- the other held-out prompts unconverted (the speaker against herself: the ceiling) and
  converted by the clone (her own unseen sentences);
- speakers the clone never heard (``bench/quality.py``'s sources without the cloned corpus),
  unconverted and converted: similarity to the target, WER, DNSMOS, F0 correlation.

    python bench/clone.py [--minutes 10] [--steps N] [--n-cep N] [--warm] [--json] [--quick]
                          [--corpus asterisk] [--max-utterances N]

``--corpus`` clones another corpus's speaker the same way (e.g. ``piper-joe``, a male voice;
``--max-utterances`` as for the corpus builder, default: all of asterisk, 200 of a synthetic one).

``--minutes`` limits the active speech the clone trains on (default 10: the issue's time target
is 30 min for 10 minutes of audio on a 2-core machine; 0: all of the 90 %); ``--quick`` clones 5 minutes for 100
steps and scores 1 utterance per source (a wiring check, minutes). Writes ``clone.json`` into
``--out`` (default ``bench/out``); ``--json`` prints it on stdout. The clone is written into a
temporary folder, not the user voices folder.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(_ROOT))

from bench._metrics import load_audio  # noqa: E402
from bench.quality import (DEFAULT_SOURCES, Source, _log, _machine, _versions,  # noqa: E402
                           run_benchmark, select_sources, write_result)

__all__ = ["split_prompts", "heldout_sources", "unseen_specs", "run_clone_benchmark", "format_report", "main"]

CORPUS = "asterisk"
HOLDOUT = 0.1  # the trainer's --holdout default: every 10th prompt
N_REFERENCE = 8  # held-out prompts whose mean embedding is the target


def unseen_specs(corpus: str) -> list[tuple[str, str, str]]:
    """``bench/quality.py``'s source corpora without the cloned one."""
    return [s for s in DEFAULT_SOURCES if s[0] != corpus]


def split_prompts(utts: Sequence[Any], *, share: float = HOLDOUT,
                  n_reference: int = N_REFERENCE) -> tuple[list[Any], list[Any], list[Any]]:
    """(training, reference, test) utterances: the trainer's holdout split, then the held-out
    prompts of 1.5-8 s split into the first ``n_reference`` (the target) and the rest, of which
    those with at least 5 words are test sentences (short prompts are too short to judge)."""
    from rtvc.train.commands import holdout_split

    train, held = holdout_split(list(utts), share)
    usable = [u for u in held if 1.5 <= u.duration_s <= 8.0]
    ref = usable[:n_reference]
    test = [u for u in usable[n_reference:] if len(u.text.split()) >= 5]
    return train, ref, test


def heldout_sources(test: Sequence[Any], n: int, *, corpus: str = CORPUS, primers: bool = False) -> list[Source]:
    """The first ``n`` test prompts as :class:`bench.quality.Source` (with ``primers``, the
    prompt after the last one is every source's primer, never scored)."""
    sex, kind = next(((s, k) for c, s, k in DEFAULT_SOURCES if c == corpus), ("?", "?"))
    primer = load_audio(test[n].path) if primers and len(test) > n else None
    return [Source(f"{corpus}-heldout/{u.path.stem}", u.speaker, sex, kind, u.text, load_audio(u.path), str(u.path),
                   primer=primer) for u in test[:n]]


def run_clone_benchmark(train: Sequence[Any], ref: Sequence[Any], own: Sequence[Source], unseen: Sequence[Source], *,
                        workdir: Path, corpus: str = CORPUS, name: str = "clone-bench", minutes: float | None = 10.0,
                        steps: int | None = None, n_cep: int | None = None, min_minutes: float = 5.0,
                        metrics: Sequence[str] = ("sim", "wer", "dnsmos", "f0"),
                        progress: bool = True) -> dict[str, Any]:
    """Clone ``train`` (utterances with ``.path``) in ``workdir`` and score the clone.

    ``corpus`` names the cloned speaker's corpus (for the report); ``ref``: utterances whose mean
    embedding is the target; ``own``: the cloned speaker's held-out sentences; ``unseen``: other
    speakers. A ``workdir`` used before gets a fresh folder of links (the clone is overwritten).
    Returns ``{"clone": {...}, "own": summary, "unseen": summary, "per_utterance": [...]}``
    (summaries as :func:`bench.quality.run_benchmark`'s).
    """
    from rtvc.features import FeatureConfig
    from rtvc.train.clone import clone_voice
    from rtvc.voices import VoiceRegistry

    rec = workdir / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    for old in rec.iterdir():  # a reused workdir: only this run's files go into the clone
        if old.is_symlink():
            old.unlink()
    for u in train:  # links: the folder a user would point `rtvc clone` at
        (rec / Path(u.path).name).symlink_to(Path(u.path).resolve())
    voices = workdir / "voices"
    t0 = time.perf_counter()
    onnx = clone_voice(rec, name, minutes_limit=minutes, steps=steps, min_minutes=min_minutes, out_dir=voices,
                       progress=progress, feature_config=FeatureConfig(n_cep=n_cep) if n_cep else None)
    wall = time.perf_counter() - t0
    manifest = json.loads(onnx.with_suffix(".json").read_text())
    tr = manifest["training"]
    reg = VoiceRegistry([voices])
    target = ",".join(str(u.path) for u in ref)
    res_own = run_benchmark(voices=[name], sources=list(own), targets={name: target}, metrics=metrics,
                            registry=reg, progress=progress) if own else None
    res_unseen = run_benchmark(voices=[name], sources=list(unseen), targets={name: target}, metrics=metrics,
                               registry=reg, progress=progress) if unseen else None
    return {
        "clone": {"name": name, "corpus": corpus, "wall_s": round(wall, 1), "analysis_s": tr.get("analysis_s"),
                  "train_s": tr.get("train_s"), "steps": tr.get("steps"), "n_cep": tr.get("n_cep"),
                  "active_minutes": tr.get("active_minutes"), "files_in_folder": len(train),
                  "command": tr.get("command"), "synthesis_options": manifest.get("synthesis_options")},
        "reference": [str(u.path) for u in ref],
        "own": res_own["voices"][name] if res_own else None,
        "unseen": res_unseen["voices"][name] if res_unseen else None,
        "per_utterance": (res_own["per_utterance"] if res_own else []) + (res_unseen["per_utterance"] if res_unseen else []),
    }


def _f(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def format_report(res: dict[str, Any]) -> str:
    c = res["clone"]
    lines = [f"clone of {c['corpus']}: {c['active_minutes']} min of speech, {c['steps']} steps, "
             f"n_cep {c['n_cep']}: {c['wall_s'] / 60:.1f} min wall (analysis {c['analysis_s']} s, "
             f"training {c['train_s']} s)",
             "target: the mean embedding of held-out prompts never trained on", "",
             "| speech | n | similarity to target | WER | DNSMOS OVRL | P.808 | F0 r |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in (("own", "the speaker's held-out sentences"), ("unseen", "unseen speakers")):
        s = res.get(key)
        if not s or "error" in s:
            lines.append(f"| {label} | failed: {s.get('error') if s else 'no sources'} | | | | | |")
            continue
        lines.append(f"| {label}, unconverted | {s['n_utterances']} | {_f(s['sim_target_unconverted'], 3)} | "
                     f"{_f(s['wer_source'])} | {_f(s['dnsmos_ovrl_source'])} | {_f(s['dnsmos_p808_source'])} | |")
        lines.append(f"| {label}, through the clone | {s['n_utterances']} | {_f(s['sim_target'], 3)} | "
                     f"{_f(s['wer'])} | {_f(s['dnsmos_ovrl'])} | {_f(s['dnsmos_p808'])} | {_f(s['f0_corr'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/clone.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="minutes of active speech to clone (default 10; 0: all of the 90 %%)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: rtvc clone's)")
    ap.add_argument("--n-cep", type=int, default=None, help="cepstral order (default: rtvc clone's)")
    ap.add_argument("--utterances", type=int, default=None, help="utterances per unseen source (default 3, quick 1)")
    ap.add_argument("--heldout", type=int, default=None, help="held-out prompts scored (default 12, quick 2)")
    ap.add_argument("--warm", action="store_true", help="live-like: each utterance after another of its speaker")
    ap.add_argument("--quick", action="store_true", help="5 minutes, 100 steps, 1 utterance per source")
    ap.add_argument("--corpus", default=CORPUS, help=f"whose voice is cloned (default {CORPUS})")
    ap.add_argument("--max-utterances", type=int, default=None, help="utterances of --corpus (default: the builder's)")
    ap.add_argument("--metrics", default="sim,wer,dnsmos,f0")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--out", default=str(_ROOT / "bench" / "out"))
    ap.add_argument("--workdir", default=None, help="where the folder and the clone go (default: a temporary one)")
    a = ap.parse_args(list(argv) if argv is not None else None)

    from rtvc.errors import RtvcError
    from rtvc.train.corpus import build_corpus

    minutes = 5.0 if a.quick else (a.minutes if a.minutes > 0 else None)
    steps = a.steps if a.steps is not None else (100 if a.quick else None)
    per = a.utterances or (1 if a.quick else 3)
    n_own = a.heldout or (2 if a.quick else 12)
    try:
        _log(f"building/loading the {a.corpus} corpus")
        train, ref, test = split_prompts(build_corpus(a.corpus, seed=0, max_utterances=a.max_utterances,
                                                      progress=not a.json))
        own = heldout_sources(test, n_own, corpus=a.corpus, primers=a.warm)
        specs = unseen_specs(a.corpus)
        unseen = select_sources(specs[:2] if a.quick else specs, per, progress=not a.json, primers=a.warm)
        with tempfile.TemporaryDirectory(prefix="rtvc-clone-bench-") as tmp:
            res = run_clone_benchmark(train, ref, own, unseen, workdir=Path(a.workdir or tmp), corpus=a.corpus,
                                      minutes=minutes,
                                      steps=steps, n_cep=a.n_cep, metrics=a.metrics.split(","), progress=True)
    except RtvcError as e:
        _log(f"error: {e}")
        return 2
    res["meta"] = {"machine": _machine(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "quick": a.quick, "warm": a.warm, "minutes": minutes, "block": 160, "device_rate": 16000,
                   "heldout_test": len(own), "unseen_sources": [s.name for s in unseen], "versions": _versions()}
    write_result(res, Path(a.out), "clone", format_report(res), as_json=a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
