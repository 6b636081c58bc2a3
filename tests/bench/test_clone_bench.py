"""bench/clone.py: the held-out split and the clone-then-judge wiring (a tiny clone of MBROLA us1)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests import have_mbrola, installed

HAVE_MBROLA = have_mbrola("us1", "us2")


def _utt(i: int, words: int, seconds: float) -> SimpleNamespace:
    return SimpleNamespace(path=Path(f"{i:05d}.wav"), text=" ".join(["w"] * words), duration_s=seconds)


def test_split_prompts_holds_out_every_tenth_and_keeps_reference_and_test_apart():
    from bench.clone import split_prompts

    utts = [_utt(i, 3 + i % 5, 1.0 + (i % 9)) for i in range(300)]
    train, ref, test = split_prompts(utts, n_reference=8)
    names = lambda us: {u.path.name for u in us}  # noqa: E731
    assert len(train) == 270 and all(int(u.path.stem) % 10 != 9 for u in train)
    assert not names(train) & names(ref) and not names(train) & names(test) and not names(ref) & names(test)
    held = [u for u in utts if int(u.path.stem) % 10 == 9]
    usable = [u for u in held if 1.5 <= u.duration_s <= 8.0]
    assert ref == usable[:8]  # the first usable held-out prompts, in corpus order
    assert test == [u for u in usable[8:] if len(u.text.split()) >= 5] and test


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_MBROLA and installed("resemblyzer", "torch", "onnxruntime")),
                    reason="mbrola us1/us2, resemblyzer, torch or onnxruntime missing")
def test_clone_benchmark_clones_and_judges_against_the_held_out_reference(tmp_path, monkeypatch):
    from bench._metrics import load_audio
    from bench.clone import format_report, run_clone_benchmark
    from bench.quality import Source
    from rtvc.features import N_CEP
    from rtvc.train.corpus import build_corpus

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    us1 = build_corpus("mbrola:us1", cache_dir=tmp_path / "c", seed=7, max_utterances=12, progress=False)
    us2 = build_corpus("mbrola:us2", cache_dir=tmp_path / "c", seed=8, max_utterances=1, progress=False)
    train, ref, test = us1[:8], us1[8:11], us1[11]
    own = [Source("us1/held", test.speaker, "female", "synthetic", test.text, load_audio(test.path))]
    unseen = [Source("us2/0", us2[0].speaker, "male", "synthetic", us2[0].text, load_audio(us2[0].path))]
    stale = tmp_path / "w" / "recordings" / "from-an-earlier-run.wav"  # a reused workdir
    stale.parent.mkdir(parents=True)
    stale.symlink_to(us2[0].path)
    res = run_clone_benchmark(train, ref, own, unseen, workdir=tmp_path / "w", name="tiny", minutes=None, steps=2,
                              min_minutes=0.01, metrics=("sim",), progress=False, corpus="mbrola:us1")
    c = res["clone"]
    assert c["corpus"] == "mbrola:us1" and c["steps"] == 2 and c["files_in_folder"] == 8 and c["wall_s"] > 0
    assert c["n_cep"] == N_CEP and "rtvc clone" in c["command"]  # us1 is a high (female) voice: the default order
    assert sorted(p.name for p in (tmp_path / "w" / "recordings").iterdir()) == sorted(u.path.name for u in train)
    assert res["reference"] == [str(u.path) for u in ref]
    o, u = res["own"], res["unseen"]
    assert o["target_from"] == "targets" and o["target"] == ",".join(str(r.path) for r in ref)
    # the reference is the cloned speaker: her unconverted held-out sentence is closer to it than another speaker
    assert o["sim_target_unconverted"] > u["sim_target_unconverted"] + 0.05
    for s in (o, u):
        assert s["n_utterances"] == 1 and np.isfinite(s["sim_target"]) and s["wer"] is None
    assert [r["source"] for r in res["per_utterance"]] == ["us1/held", "us2/0"]
    report = format_report(res)
    assert "held-out sentences, through the clone" in report and "unseen speakers, unconverted" in report
    json.dumps(res, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
