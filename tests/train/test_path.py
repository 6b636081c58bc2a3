"""The whole neural path on a tiny scale: corpus -> training -> ONNX export -> parity -> Engine
conversion -> cloning, plus refusal of damaged models and of unusable clone folders."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rtvc.engine import Engine, EngineConfig  # noqa: E402
from rtvc.errors import AudioFileError, ConfigError, ModelError  # noqa: E402
from rtvc.params import Params  # noqa: E402
from rtvc.voices import VoiceRegistry  # noqa: E402

TINY = dict(steps=4, batch=2, frames=40, hidden=16, threads=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import shutil as sh

    from rtvc.train.corpus import build_corpus

    if sh.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to decode the asterisk prompts")
    try:
        return build_corpus("asterisk", cache_dir=tmp_path_factory.mktemp("corpora"), max_utterances=8,
                            progress=False)
    except Exception as e:  # the Debian package is missing on this machine
        pytest.skip(f"asterisk corpus unavailable: {e}")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    from rtvc.train.dataset import analyse_files, log_f0_stats
    from rtvc.train.export import write_voice
    from rtvc.train.train import TrainConfig, train_converter

    frames = analyse_files([u.path for u in corpus])
    model, info = train_converter(frames, config=TrainConfig(**TINY), progress=False)
    d = tmp_path_factory.mktemp("voices")
    mean, std = log_f0_stats(frames.f0_hz)
    onnx = write_voice(model, d, "tinyvoice", description="tiny test voice", gender="female", f0_log2_mean=mean,
                       f0_log2_std=std, synthesis="pulse-noise",
                       training={"data": "asterisk (8 prompts)", "licence": corpus[0].licence})
    return model, onnx, frames


def test_training_learns_something(corpus):
    from rtvc.train.dataset import Augmenter, analyse_files
    from rtvc.train.train import TrainConfig, train_converter

    frames = analyse_files([u.path for u in corpus[:4]])
    model, _ = train_converter(frames, config=TrainConfig(steps=80, batch=4, frames=40, hidden=16, lr=5e-3, threads=1),
                               progress=False)
    aug = Augmenter(frames, seed=123)
    x, y = aug.batch(8, 40)
    with torch.no_grad():
        pred, _ = model.forward_normalised(x, model.init_state(8))
    target = (y - model.out_mean) / model.out_std
    # predicting the mean scores ~1 (unit variance); the trained model does clearly better
    assert float(((pred - target) ** 2).mean()) < 0.9
    assert float((target ** 2).mean()) > 0.9


def test_onnx_parity_over_consecutive_chunks(trained):
    model, onnx, frames = trained
    from rtvc.train.dataset import Augmenter

    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    x, _ = Augmenter(frames, seed=5).batch(1, 30)
    h_t = model.init_state(1)
    h_o = np.zeros(tuple(h_t.shape), np.float32)
    for chunk in (x[:, :10], x[:, 10:11], x[:, 11:30]):  # T = 10, 1 and 19: dynamic time axis
        with torch.no_grad():
            y_t, h_t = model(chunk, h_t)
        y_o, h_o = sess.run(["envelope", "state_out"], {"features": chunk.numpy(), "state_in": h_o})
        np.testing.assert_allclose(y_o, y_t.numpy(), atol=1e-4)
        np.testing.assert_allclose(h_o, h_t.numpy(), atol=1e-4)


def test_manifest_names_data_licence_and_shapes(trained):
    _, onnx, _ = trained
    m = json.loads(onnx.with_suffix(".json").read_text())
    assert m["tensors"]["state_shape"] == [2, 1, 16]
    assert m["features"]["n_input"] == 23 and len(m["features"]["input_names"]) == 23
    assert "CC-BY-SA" in m["training"]["licence"] and m["model_rate"] == 16000


def _engine_with(onnx_dir, voice):
    return Engine(EngineConfig(device_rate=48000), registry=VoiceRegistry([onnx_dir]), params=Params(voice=voice))


def test_engine_converts_with_the_neural_voice_and_keeps_it_when_a_bad_one_is_asked(trained, tmp_path):
    _, onnx, _ = trained
    d = tmp_path / "voices"
    d.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(onnx.with_suffix(suffix), d / f"tinyvoice{suffix}")
    # a damaged voice beside it: bytes changed after export (sha256 mismatch)
    shutil.copy(onnx, d / "bad.onnx")
    m = json.loads(onnx.with_suffix(".json").read_text())
    m["name"] = "bad"
    (d / "bad.json").write_text(json.dumps(m))
    with open(d / "bad.onnx", "ab") as f:
        f.write(b"\0")
    eng = _engine_with(d, "tinyvoice")
    assert abs(eng.algorithmic_latency_ms - 1000 * eng.latency_samples() / 48000) < 1e-9
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 48000
    x = (0.2 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(48000)).astype(np.float32)
    y1 = eng.process(x[:24000])
    assert np.all(np.isfinite(y1)) and np.abs(y1[12000:]).max() > 1e-4
    with pytest.raises(ModelError, match="sha256"):
        eng.update(voice="bad")
    assert eng.params.voice == "tinyvoice"
    y2 = eng.process(x[24000:])
    assert np.all(np.isfinite(y2)) and np.abs(y2).max() > 1e-4
    assert eng.telemetry()["voice"] == "tinyvoice"


def test_clone_writes_a_listed_voice(corpus, tmp_path, monkeypatch):
    from rtvc.train.clone import clone_voice

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    folder = tmp_path / "me"
    folder.mkdir()
    import soundfile as sf
    import soxr

    for i, u in enumerate(corpus[:5]):
        x, sr = sf.read(str(u.path), dtype="float32")
        if i % 2:  # other rates and stereo are accepted
            y = soxr.resample(x, sr, 44100)
            sf.write(str(folder / f"take{i}.flac"), np.stack([y, y], 1), 44100)
        else:
            sf.write(str(folder / f"take{i}.wav"), x, sr)
    path = clone_voice(folder, "myclone", min_minutes=0.05, steps=3, hidden=16, progress=False)
    assert path.exists() and path.with_suffix(".preview.wav").exists()
    names = VoiceRegistry().names()
    assert "myclone" in names
    eng = Engine(EngineConfig(device_rate=16000), params=Params(voice="myclone"))
    y = eng.process(np.zeros(1600, np.float32))
    assert y.shape == (1600,) and np.all(np.isfinite(y))


def test_clone_refuses_unusable_folders_before_training(tmp_path, monkeypatch):
    from rtvc.train import clone as clone_mod

    called = []
    monkeypatch.setattr(clone_mod, "build_voice", lambda *a, **k: called.append(1))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    with pytest.raises(AudioFileError, match="no usable audio .* no wav/flac/ogg/mp3 files"):
        clone_mod.clone_voice(empty, "x")
    import soundfile as sf

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioFileError, match="a.wav cannot be decoded"):
        clone_mod.clone_voice(broken, "x")
    silent = tmp_path / "silent"
    silent.mkdir()
    sf.write(str(silent / "s.wav"), np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioFileError, match="every file is silent"):
        clone_mod.clone_voice(silent, "x")
    clipped = tmp_path / "clipped"
    clipped.mkdir()
    sf.write(str(clipped / "c.wav"), np.sign(np.sin(np.arange(16000) * 0.05)).astype(np.float32), 16000)
    with pytest.raises(AudioFileError, match=r"c.wav is clipped: .*% of samples at full scale"):
        clone_mod.clone_voice(clipped, "x")
    short = tmp_path / "short"
    short.mkdir()
    sf.write(str(short / "v.wav"), (0.3 * np.sin(np.arange(32000) * 0.06)).astype(np.float32), 16000)
    with pytest.raises(AudioFileError, match="0.03 minutes of active speech; expected at least 5 minutes"):
        clone_mod.clone_voice(short, "x")
    with pytest.raises(ConfigError, match="voice name 'bad name!'"):
        clone_mod.clone_voice(short, "bad name!")
    assert called == []


def test_clone_command_reports_errors(tmp_path):
    from rtvc.train.__main__ import main

    (tmp_path / "x.txt").write_text("")
    assert main(["clone", str(tmp_path), "--name", "v"]) == 2


def test_clone_names_that_clash_are_refused_before_training(tmp_path, monkeypatch, capsys):
    """A built-in name would hide the clone; an existing clone is replaced only with --force."""
    from rtvc.cli import main
    from rtvc.train import clone as clone_mod

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    called = []
    monkeypatch.setattr(clone_mod, "build_voice", lambda *a, **k: called.append(1))
    folder = tmp_path / "me"
    folder.mkdir()
    for name in ("joe", "aria", "robot", "neutral"):
        with pytest.raises(ConfigError, match=f"voice name '{name}' is a built-in voice"):
            clone_mod.clone_voice(folder, name)
    out = tmp_path / "voices"
    out.mkdir()
    (out / "mine.onnx").write_bytes(b"an earlier clone")
    with pytest.raises(ConfigError, match=r"voice name 'mine' is taken: .*mine.onnx exists; .*--force"):
        clone_mod.clone_voice(folder, "mine", out_dir=out)
    # with force the name passes; the empty folder is what stops it now
    with pytest.raises(AudioFileError, match="no usable audio"):
        clone_mod.clone_voice(folder, "mine", out_dir=out, force=True)
    assert (out / "mine.onnx").read_bytes() == b"an earlier clone" and called == []
    assert main(["clone", str(folder), "--name", "joe"]) == 2
    c = capsys.readouterr()
    assert c.out == "" and c.err.startswith("rtvc: error: clone: voice name 'joe' is a built-in voice")
