"""The neural waveform head: identity at start, learns, streams like it runs offline, exports to
ONNX with its state, runs inside a voice, and is refused when damaged."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rtvc.converter import NeuralVoice  # noqa: E402
from rtvc.engine import Engine, EngineConfig  # noqa: E402
from rtvc.errors import ConfigError, ModelError  # noqa: E402
from rtvc.params import Params  # noqa: E402
from rtvc.paths import shipped_models_dir  # noqa: E402
from rtvc.voices import VoiceRegistry  # noqa: E402
from rtvc.train.head import WaveHead, export_head, train_head, write_head_voice  # noqa: E402


def _speechlike(n: int, seed: int) -> np.ndarray:
    """A 120-200 Hz glide through a resonance, with breath noise: seeded."""
    rng = np.random.default_rng(seed)
    f0 = 120 + 80 * (0.5 + 0.5 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 0.7))
    ph = np.cumsum(f0 / 16000)
    x = np.sign(np.sin(2 * np.pi * ph)) * 0.05 + 0.01 * rng.standard_normal(n)
    y = np.zeros(n)
    for i in range(2, n):  # one resonance near 700 Hz
        y[i] = x[i] + 1.8 * np.cos(2 * np.pi * 700 / 16000) * 0.95 * y[i - 1] - 0.95 ** 2 * y[i - 2]
    return (0.1 * y / np.abs(y).max()).astype(np.float32)


def _random_head(seed: int = 0) -> WaveHead:
    torch.manual_seed(seed)
    m = WaveHead(channels=8, dilations=(1, 2, 4, 8))
    with torch.no_grad():  # the trained head is not the identity: make this one act too
        m.out.weight.normal_(0, 0.3)
        m.out.bias.fill_(0.01)
    return m.eval()


def test_untrained_head_is_the_identity_and_training_beats_it():
    x = _speechlike(16000, 1)
    with torch.no_grad():
        y, _ = WaveHead()(torch.from_numpy(x)[None], WaveHead().init_state(1))
    np.testing.assert_array_equal(y[0].numpy(), x)
    # a task a causal filter can learn: undo a first-order tilt
    tilted = x.copy()
    tilted[1:] -= 0.9 * x[:-1]
    _, info = train_head([tilted], [x], steps=120, channels=8, batch=4, segment=4000, lr=3e-3, threads=1,
                         progress=False)
    assert info["final_loss"] < 0.9 * info["identity_loss"], info  # mean of the last 100 steps


def test_bad_training_data_is_refused():
    with pytest.raises(ConfigError, match="as many"):
        train_head([np.zeros(20000, np.float32)], [], steps=1, progress=False)
    with pytest.raises(ConfigError, match="at least"):
        train_head([np.zeros(100, np.float32)], [np.zeros(100, np.float32)], steps=1, progress=False)


def test_streaming_equals_offline_and_onnx_keeps_the_state(tmp_path):
    m = _random_head()
    x = torch.from_numpy(_speechlike(2000, 2))[None]
    with torch.no_grad():
        full, _ = m(x, m.init_state(1))
        parts, h = [], m.init_state(1)
        for a, b in ((0, 80), (80, 81), (81, 118), (118, 1000), (1000, 2000)):  # any chunking
            y, h = m(x[:, a:b], h)
            parts.append(y)
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), full.numpy(), atol=1e-6)
    assert float((full - x).abs().max()) > 1e-3  # the head does act on the signal
    sess = ort.InferenceSession(str(export_head(m, tmp_path / "h.onnx")), providers=["CPUExecutionProvider"])
    h_t, h_o = m.init_state(1), np.zeros(tuple(m.init_state(1).shape), np.float32)
    for a, b in ((0, 80), (80, 160), (160, 197), (197, 1000)):  # 4 consecutive chunks, dynamic length
        with torch.no_grad():
            y_t, h_t = m(x[:, a:b], h_t)
        y_o, h_o = sess.run(["audio_out", "head_state_out"], {"audio_in": x[:, a:b].numpy(), "head_state_in": h_o})
        np.testing.assert_allclose(y_o, y_t.numpy(), atol=1e-5)
        np.testing.assert_allclose(h_o, h_t.numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def head_voice(tmp_path_factory):
    d = tmp_path_factory.mktemp("voices")
    m = _random_head(3)
    onnx = write_head_voice(shipped_models_dir() / "joe.onnx", m, d, "joeh", training={"data": "test", "licence": "-"})
    return m, onnx



def test_a_head_written_over_a_voice_that_has_one_replaces_it(head_voice, tmp_path):
    _, onnx = head_voice
    for suffix in (".onnx", ".json", ".head.onnx", ".preview.wav"):
        shutil.copy(onnx.parent / f"joeh{suffix}", tmp_path / f"joeh{suffix}")
    before = json.loads((tmp_path / "joeh.json").read_text())
    p = write_head_voice(tmp_path / "joeh.onnx", _random_head(9), tmp_path, "joeh",  # in place
                         training={"data": "test", "licence": "-"})
    after = json.loads(p.with_suffix(".json").read_text())
    assert after["description"] == before["description"]  # not "...; with a neural waveform head" twice
    assert after["head"]["sha256"] != before["head"]["sha256"] and after["onnx_sha256"] == before["onnx_sha256"]
    NeuralVoice.load(p)

def test_voice_runs_the_head_on_its_synthesis_hop_by_hop(head_voice):
    m, onnx = head_voice
    man = json.loads(onnx.with_suffix(".json").read_text())
    assert man["head"]["onnx"] == "joeh.head.onnx" and man["head"]["tensors"]["state_shape"] == [1, 8, 30]
    v, base = NeuralVoice.load(onnx), NeuralVoice.load(shipped_models_dir() / "joe.onnx")
    assert v.latency == base.latency  # a causal head adds no delay
    x = _speechlike(8000, 4)
    sv, sb = v.init_state(), base.init_state()
    y = np.concatenate([v.step(x[i:i + 80], sv)[0].copy() for i in range(0, 8000, 80)])
    yb = np.concatenate([base.step(x[i:i + 80], sb)[0].copy() for i in range(0, 8000, 80)])
    with torch.no_grad():
        ref = m(torch.from_numpy(yb)[None], m.init_state(1))[0][0].numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert np.abs(y - yb).max() > 1e-3



def test_a_non_finite_head_state_is_restarted_and_the_hop_passes_unchanged(head_voice):
    _, onnx = head_voice
    v = NeuralVoice.load(onnx)
    st = v.init_state()
    x = _speechlike(1600, 7)
    for i in range(0, 800, 80):
        v.step(x[i:i + 80], st)
    hs = st.head
    hs.h[hs.h_in][0, 0, -1] = np.nan  # a bad number in the state the next hop reads
    y = v.step(x[800:880], st)[0]
    assert hs.resets == 1 and np.array_equal(y, hs.x[0]) and np.all(np.isfinite(y))
    for i in range(880, 1600, 80):  # and it runs on from a clean state
        y = v.step(x[i:i + 80], st)[0]
        assert np.all(np.isfinite(y))
    assert hs.resets == 1 and np.all(np.isfinite(hs.h[hs.h_in]))

def test_engine_output_with_a_head_does_not_depend_on_the_block_size(head_voice):
    _, onnx = head_voice
    x = _speechlike(9600, 5)
    outs = []
    for block in (160, 37, 441):
        eng = Engine(EngineConfig(device_rate=16000), registry=VoiceRegistry([onnx.parent]),
                     params=Params(voice="joeh"))
        outs.append(np.concatenate([eng.process(x[i:i + block]) for i in range(0, x.size, block)]))
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-6)
    np.testing.assert_allclose(outs[2], outs[0], atol=1e-6)
    assert np.abs(outs[0][4000:]).max() > 1e-3


def _copy_voice(onnx, d, name):
    for suffix in (".onnx", ".head.onnx", ".preview.wav"):
        shutil.copy(onnx.parent / f"{onnx.stem}{suffix}", d / f"{name}{suffix}")
    m = json.loads(onnx.with_suffix(".json").read_text())
    m["name"] = name
    m["head"]["onnx"] = f"{name}.head.onnx"
    return m


def test_a_damaged_or_mismatched_head_is_refused_and_the_voice_playing_keeps_playing(head_voice, tmp_path):
    _, onnx = head_voice
    d = tmp_path / "v"
    d.mkdir()
    ok = _copy_voice(onnx, d, "good")
    (d / "good.json").write_text(json.dumps(ok))
    bad = _copy_voice(onnx, d, "damaged")
    (d / "damaged.json").write_text(json.dumps(bad))
    with open(d / "damaged.head.onnx", "ab") as f:
        f.write(b"\0")
    gone = _copy_voice(onnx, d, "headless")
    (d / "headless.json").write_text(json.dumps(gone))
    (d / "headless.head.onnx").unlink()
    shape = _copy_voice(onnx, d, "shape")
    shape["head"]["tensors"]["state_shape"] = [1, 8, 31]
    (d / "shape.json").write_text(json.dumps(shape))
    names = _copy_voice(onnx, d, "names")
    names["head"]["tensors"]["audio_in"] = "x"
    (d / "names.json").write_text(json.dumps(names))
    path = _copy_voice(onnx, d, "path")
    path["head"]["onnx"] = "../elsewhere.onnx"
    (d / "path.json").write_text(json.dumps(path))
    eng = Engine(EngineConfig(device_rate=16000), registry=VoiceRegistry([d]), params=Params(voice="good"))
    x = _speechlike(3200, 6)
    assert np.abs(eng.process(x[:1600])).max() > 1e-4
    for name, match in (("damaged", "sha256"), ("headless", "missing"), ("shape", r"state shape.*\[1, 8, 31\]"),
                        ("names", "tensors in="), ("path", "a .onnx file name beside the manifest")):
        with pytest.raises(ModelError, match=match):
            eng.update(voice=name)
        assert eng.params.voice == "good"
    y = eng.process(x[1600:])
    assert np.all(np.isfinite(y)) and np.abs(y).max() > 1e-4


def test_train_head_command_reports_a_missing_voice(tmp_path, capsys):
    from rtvc.cli import main

    rc = main(["train-head", "--voice", str(tmp_path / "nope.onnx"), "--corpus", "asterisk", "--name", "x",
               "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    c = capsys.readouterr()
    assert c.out == "" and c.err.startswith("rtvc: error: train-head: ") and "nope.json is missing" in c.err
    assert not list(tmp_path.iterdir())  # nothing written
