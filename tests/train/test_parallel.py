"""Parallel training data (rtvc.train.parallel) and its use by the Augmenter and `rtvc train voice`."""

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtvc.errors import ConfigError  # noqa: E402
from rtvc.features import FeatureConfig, analyze  # noqa: E402
from rtvc.train.__main__ import main as train_main  # noqa: E402
from rtvc.train.dataset import AugmentConfig, Augmenter, FrameSet  # noqa: E402
from rtvc.train.parallel import align_path, aligned_target_index, match_by_text, parallel_frames  # noqa: E402


def _dtw_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Cost of the best monotone path, by the textbook recursion (one cell at a time)."""
    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c = float(np.linalg.norm(a[i - 1] - b[j - 1]))
            d[i, j] = c + min(d[i - 1, j - 1], d[i - 1, j], d[i, j - 1])
    return float(d[n, m])


def test_alignment_recovers_a_known_time_warp():
    rng = np.random.default_rng(0)
    tgt = rng.standard_normal((60, 5))
    # the source says it slower in the middle (frames repeated) and faster at the end (skipped)
    src_of = np.concatenate([np.arange(20), np.repeat(np.arange(20, 30), 2), np.arange(30, 60, 2)])
    src = tgt[src_of]
    path = align_path(src, tgt)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (len(src) - 1, len(tgt) - 1)
    assert np.all(np.diff(path, axis=0) >= 0) and np.all(np.abs(np.diff(path, axis=0)).sum(axis=1) >= 1)
    np.testing.assert_array_equal(aligned_target_index(path, len(src)), src_of)


def test_alignment_path_cost_is_the_reference_minimum():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((17, 3)), rng.standard_normal((23, 3))
    path = align_path(a, b)
    cost = sum(float(np.linalg.norm(a[i] - b[j])) for i, j in path)
    assert cost == pytest.approx(_dtw_reference(a, b), rel=1e-9)


def test_a_source_frame_held_over_target_frames_takes_their_middle():
    path = np.array([[0, 0], [1, 1], [1, 2], [1, 3], [2, 4]])
    np.testing.assert_array_equal(aligned_target_index(path, 3), [0, 2, 4])
    with pytest.raises(ConfigError, match="misses a source frame"):
        aligned_target_index(np.array([[0, 0], [2, 1]]), 3)


def test_alignment_refuses_mismatched_features():
    with pytest.raises(ConfigError, match=r"\(4, 3\) and \(5, 2\)"):
        align_path(np.zeros((4, 3)), np.zeros((5, 2)))


def test_utterances_are_matched_by_their_text():
    u = lambda t: SimpleNamespace(text=t)  # noqa: E731
    target = [u("The cat sat."), u(""), u("A dog  ran."), u("Nobody else says this.")]
    source = [u("a dog ran."), u("the cat sat."), u("")]
    assert match_by_text(target, source) == [(0, 1), (2, 0)]


def _speech_like(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 1.3 * t))
    ph = 2 * np.pi * np.cumsum(f) / 16000
    x = sum(np.sin(k * ph) / k * (1 + 0.5 * np.sin(2 * np.pi * (0.7 + 0.2 * k) * t)) for k in range(1, 30))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.1 * t) ** 2
    return (0.2 * env * x / np.max(np.abs(x)) + 1e-3 * rng.standard_normal(n)).astype(np.float32)


def test_same_audio_gives_its_own_frames_and_the_output_level_follows_the_source(tmp_path):
    x = _speech_like(1.5, 140.0, 0)
    own = analyze(x, keep_logmag=True)
    fs = parallel_frames([(x, 0.5 * x)], cache_dir=tmp_path)  # the target says it 6 dB quieter
    assert len(fs) == len(own.f0_hz)
    np.testing.assert_array_equal(fs.logmag, own.logmag.astype(np.float16))
    np.testing.assert_array_equal(fs.f0_hz, own.f0_hz)
    # same envelope shape; c0 moved back to the source's level (log 2 quieter target, exactly undone)
    np.testing.assert_allclose(fs.cepstrum[:, 1:], own.cepstrum[:, 1:], atol=2e-3)
    assert float(np.mean(fs.cepstrum[:, 0] - own.cepstrum[:, 0])) == pytest.approx(0.0, abs=1e-3)
    # cached: read back equal, without analysing again
    again = parallel_frames([(x, 0.5 * x)], cache_dir=tmp_path)
    np.testing.assert_array_equal(again.cepstrum, fs.cepstrum)
    assert len(list(tmp_path.glob("parallel-*.npz"))) == 1


def test_realignment_on_converted_envelopes_uses_the_converter_and_caches_nothing(tmp_path):
    x, y = _speech_like(1.5, 140.0, 0), _speech_like(1.5, 180.0, 1)
    own_x, own_y = analyze(x), analyze(y)
    calls = []

    def convert(feats: np.ndarray) -> np.ndarray:
        calls.append(feats.shape)
        np.testing.assert_array_equal(feats, own_x.inputs)
        return own_y.cepstrum  # a perfect converter of a time-aligned pair: the target itself

    fs = parallel_frames([(x, y)], convert=convert, cache_dir=tmp_path)
    assert calls == [own_x.inputs.shape]
    # converted == target frame by frame, so the path is the diagonal: the target's own envelope
    np.testing.assert_allclose(fs.cepstrum[:, 1:], own_y.cepstrum[:, 1:], atol=1e-6)
    assert not list(tmp_path.glob("*.npz"))


def test_parallel_frames_refuse_no_pairs():
    with pytest.raises(ConfigError, match="no parallel utterance pairs"):
        parallel_frames([])


def _constant_frames(n: int, cep_value: float, f0: float) -> FrameSet:
    c = FeatureConfig()
    nb = c.n_fft // 2 + 1
    return FrameSet(np.full((n, nb), -3.0, np.float16), np.full((n, c.n_cep), cep_value, np.float32),
                    np.full(n, f0, np.float32), np.ones(n, np.float32))


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_augmenter_draws_the_asked_share_of_rows_from_the_parallel_frames(share):
    own, par = _constant_frames(300, 1.0, 100.0), _constant_frames(200, 2.0, 200.0)
    aug = Augmenter(own, aug=AugmentConfig(parallel_share=share, clean_prob=1.0), seed=3, parallel=par)
    rows = []
    for _ in range(20):
        _, y = aug.batch(16, 50)
        rows.append(y[:, :, 1])  # c1: 1 for the target's own frames, 2 for parallel ones (c0 gets the level)
    y = torch.cat(rows)
    assert bool(torch.all((y == 1.0) | (y == 2.0)))
    assert bool(torch.all(y == y[:, :1]))  # a row never straddles the two sets
    got = float((y[:, 0] == 2.0).float().mean())
    assert got == pytest.approx(share, abs=0.06)


def test_parallel_share_is_checked():
    with pytest.raises(ConfigError, match="parallel_share 1.5; expected 0..1"):
        AugmentConfig(parallel_share=1.5)


def test_voice_command_refuses_a_parallel_corpus_with_none_of_the_sentences(monkeypatch, tmp_path, capsys):
    utt = lambda name, text: SimpleNamespace(path=tmp_path / name, text=text, licence="L")  # noqa: E731
    corpora = {"tgt": [utt("a.wav", "one two"), utt("b.wav", "three four")], "other": [utt("c.wav", "five six")]}
    monkeypatch.setattr("rtvc.train.corpus.build_corpus", lambda name, **k: corpora[name])
    built = []
    monkeypatch.setattr("rtvc.train.build.build_voice", lambda *a, **k: built.append(k))
    assert train_main(["voice", "--corpus", "tgt", "--name", "v", "--gender", "male", "--holdout", "0",
                       "--parallel", "other", "--out", str(tmp_path), "--quiet"]) == 2
    out = capsys.readouterr().err
    assert "parallel corpus 'other' says none of the 2 training sentences of 'tgt'" in out
    assert not built


def test_voice_command_pairs_the_parallel_sentences_and_records_them(monkeypatch, tmp_path):
    utt = lambda name, text: SimpleNamespace(path=tmp_path / name, text=text, licence="L")  # noqa: E731
    corpora = {"tgt": [utt("a.wav", "one two"), utt("b.wav", "three four"), utt("h.wav", "held out")],
               "p1": [utt("c.wav", "three four"), utt("d.wav", "held out")], "p2": [utt("e.wav", "one two")]}
    monkeypatch.setattr("rtvc.train.corpus.build_corpus", lambda name, **k: corpora[name])
    monkeypatch.setattr("rtvc.train.dataset.load_audio_16k", lambda p: np.full(10, ord(p.name[0]), np.float32))
    seen = {}
    monkeypatch.setattr("rtvc.train.build.build_voice", lambda *a, **k: seen.update(k) or tmp_path / "v.onnx")
    assert train_main(["voice", "--corpus", "tgt", "--name", "v", "--gender", "male", "--holdout", "0.34",
                       "--parallel", "p1,p2", "--parallel-share", "0.25", "--parallel-realign", "--out", str(tmp_path),
                       "--quiet"]) == 0
    # (source, target) pairs; the held-out sentence ('held out', every 3rd) is not paired
    got = [(chr(int(s[0])), chr(int(t[0]))) for s, t in seen["parallel"]]
    assert got == [("c", "b"), ("e", "a")]
    assert seen["extra"]["parallel"] == {"corpora": ["p1", "p2"], "pairs": 2}
    assert seen["aug"].parallel_share == 0.25 and seen["realign"] is True


def test_a_voice_trained_with_realigned_parallel_data_records_it_and_loads(tmp_path):
    import json

    from rtvc.converter import NeuralVoice
    from rtvc.train.build import build_voice
    from rtvc.train.train import TrainConfig

    tgt = [_speech_like(2.0, 120.0, k) for k in range(3)]
    src = [_speech_like(2.2, 200.0, 10 + k) for k in range(3)]
    path = build_voice(tgt, tmp_path, "par", description="d", gender="male", data="synthetic", licence="none",
                       train=TrainConfig(steps=3, hidden=16, batch=2, frames=40, threads=1), progress=False,
                       parallel=list(zip(src, tgt)), realign=True)
    m = json.loads(path.with_suffix(".json").read_text())
    pf = m["training"]["parallel_frames"]
    assert pf["pairs"] == 3 and pf["realigned"] is True and pf["first_train_s"] >= 0.0 and pf["share"] == 0.5
    voice = NeuralVoice.load(path)
    y, _ = voice.step(np.zeros(80, np.float32), voice.init_state())
    assert y.shape == (80,) and np.all(np.isfinite(y))
