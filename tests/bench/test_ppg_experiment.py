"""bench/experiments/ppg.py on a tiny scale: phone labels per analysis frame from a corpus's phone
boundaries, and a recogniser + converter graph that exports to ONNX with the two recurrent states
stacked in one tensor, matches torch over consecutive chunks and runs in the engine like any
neural voice (the README's claim that the runtime is unchanged)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    import os

    from bench.experiments.ppg import labelled_frames

    old = os.environ.get("RTVC_HOME")
    os.environ["RTVC_HOME"] = str(tmp_path_factory.mktemp("home"))  # the corpora go there
    try:
        return labelled_frames(["espeak:en-us+m1", "espeak:en-us+f2"], seed=3, per_corpus=2)
    finally:
        if old is None:
            del os.environ["RTVC_HOME"]
        else:
            os.environ["RTVC_HOME"] = old


def test_every_frame_gets_a_label_from_the_phone_boundaries(labelled):
    from bench.experiments.ppg import PHONES, frame_labels

    fs, labels, speakers = labelled
    assert labels.shape == (len(fs),) and len(speakers) == len(fs)
    known = labels >= 0
    assert float(known.float().mean()) > 0.95  # espeak's phones map onto the 40 classes
    silence = float((labels == PHONES.index("-")).float().mean())
    assert 0.02 < silence < 0.5
    assert len(set(labels[known].tolist())) >= 20  # two sentences cover many phones
    # the frame -> phone rule: frame t reads the phone at sample (t + 1) * 80 - 160
    phones = [("_", 0.0, 0.1), ("s", 0.1, 0.2), ("ɑː", 0.2, 0.3)]
    lab = frame_labels(60, phones)
    assert lab[:21] == ["-"] * 21 and lab[21:41] == ["s"] * 20 and lab[41:] == ["ɑ"] * 19


def test_ppg_voice_exports_matches_torch_and_converts_in_the_engine(labelled, tmp_path):
    from bench.experiments.ppg import PPGConverter, PhoneNet, train_phone_net, train_ppg_converter
    from rtvc.engine import Engine, EngineConfig
    from rtvc.params import Params
    from rtvc.train.dataset import Augmenter, log_f0_stats
    from rtvc.train.export import write_voice
    from rtvc.train.train import TrainConfig
    from rtvc.voices import VoiceRegistry

    fs, labels, _ = labelled
    phone = train_phone_net(fs, labels, steps=3, threads=1, batch=2, frames=40)
    assert isinstance(phone, PhoneNet) and not phone.training
    # the experiment's recogniser is 2 x 128; a 16-wide one keeps this test fast
    small = PhoneNet(hidden=16).eval()
    small.in_mean.copy_(phone.in_mean)
    small.in_std.copy_(phone.in_std)
    for inputs in ("posteriors", "hidden", "posteriors+mfcc"):
        model, info = train_ppg_converter(fs, small, inputs=inputs, progress=False,
                                          config=TrainConfig(steps=3, batch=2, frames=40, hidden=16, threads=1))
        assert isinstance(model, PPGConverter) and np.isfinite(info["final_loss"])
        assert all(not p.requires_grad for p in model.phone.parameters())  # the recogniser stays frozen
    mean, std = log_f0_stats(fs.f0_hz)
    onnx = write_voice(model, tmp_path, "ppgtiny", description="tiny PPG voice", gender="male", f0_log2_mean=mean,
                       f0_log2_std=std, synthesis="pulse-noise", training={"data": "espeak (4 sentences)",
                                                                            "licence": "GPL-3.0+ output"})
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    x, _ = Augmenter(fs, seed=4).batch(1, 30)
    h_t = model.init_state(1)
    assert tuple(h_t.shape) == (4, 1, 16)  # recogniser's 2 layers, then the converter's 2
    h_o = np.zeros((4, 1, 16), np.float32)
    for chunk in (x[:, :10], x[:, 10:11], x[:, 11:30]):
        with torch.no_grad():
            y_t, h_t = model(chunk, h_t)
        y_o, h_o = sess.run(["envelope", "state_out"], {"features": chunk.numpy(), "state_in": h_o})
        np.testing.assert_allclose(y_o, y_t.numpy(), atol=1e-4)
        np.testing.assert_allclose(h_o, h_t.numpy(), atol=1e-4)
    eng = Engine(EngineConfig(device_rate=48000), registry=VoiceRegistry([tmp_path]), params=Params(voice="ppgtiny"))
    t = np.arange(48000) / 48000
    speechy = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    y = np.concatenate([eng.process(speechy[i:i + 480]) for i in range(0, speechy.size, 480)])
    assert y.shape == speechy.shape and np.all(np.isfinite(y)) and float(np.abs(y[24000:]).max()) > 1e-4
    assert eng.telemetry()["voice"] == "ppgtiny"
