"""Loss terms of the converter training (delta, global variance, cepstral emphasis) and their flags."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtvc.errors import ConfigError  # noqa: E402
from rtvc.train import commands  # noqa: E402
from rtvc.train.__main__ import main as train_main  # noqa: E402
from rtvc.train.train import LOSS_OPTIONS, TrainConfig, cepstral_weights, envelope_loss  # noqa: E402


def _envelopes(seed: int = 0, batch: int = 3, frames: int = 40, n_cep: int = 8) -> torch.Tensor:
    """Normalised envelopes that move over time, ``(batch, frames, n_cep)`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float32)[None, :, None]
    k = torch.arange(n_cep, dtype=torch.float32)[None, None, :]
    phase = 2 * np.pi * torch.rand(batch, 1, n_cep, generator=g)
    return torch.sin(0.3 * t * (1 + 0.2 * k) + phase) + 0.1 * torch.randn(batch, frames, n_cep, generator=g)


ALL = TrainConfig(delta_weight=1.0, gv_weight=1.0, cep_emphasis=0.5)


def test_every_term_is_zero_when_the_prediction_equals_the_target():
    y = _envelopes()
    loss, parts = envelope_loss(y.clone(), y, config=ALL)
    assert loss.item() == 0.0
    assert parts == {"frame": 0.0, "delta": 0.0, "gv": 0.0}


def test_variance_term_is_positive_for_a_flattened_prediction_and_grows_with_the_flattening():
    y = _envelopes()
    mean = y.mean(dim=1, keepdim=True)
    gv = [envelope_loss(mean + s * (y - mean), y, config=ALL)[1]["gv"] for s in (1.0, 0.7, 0.3, 0.0)]
    assert gv[0] < 1e-6 < gv[1] < gv[2] < gv[3]
    # a constant offset keeps the per-sequence variance: the frame term sees it, the variance term does not
    _, parts = envelope_loss(y + 0.5, y, config=ALL)
    assert parts["gv"] < 1e-6 and parts["delta"] < 1e-6 and parts["frame"] > 0.1


def test_delta_term_sees_lost_frame_to_frame_movement():
    y = _envelopes()
    smooth = torch.nn.functional.avg_pool1d(y.transpose(1, 2), 5, stride=1, padding=2,
                                            count_include_pad=False).transpose(1, 2)
    _, parts = envelope_loss(smooth, y, config=ALL)
    assert parts["delta"] > 0.01


def test_terms_are_added_with_their_weights_and_skipped_at_zero():
    y = _envelopes()
    pred = 0.5 * _envelopes(seed=1)
    plain = TrainConfig(delta_weight=0.0, gv_weight=0.0, cep_emphasis=0.0)  # the original loss
    base, p0 = envelope_loss(pred, y, config=plain)
    assert set(p0) == {"frame"}
    assert base.item() == pytest.approx(torch.nn.functional.smooth_l1_loss(pred, y, beta=0.5).item(), rel=1e-6)
    both, p1 = envelope_loss(pred, y, config=TrainConfig(delta_weight=0.5, gv_weight=2.0))
    assert both.item() == pytest.approx(p1["frame"] + 0.5 * p1["delta"] + 2.0 * p1["gv"], rel=1e-6)
    assert p1["frame"] == pytest.approx(p0["frame"], rel=1e-6)


def test_cepstral_weights_have_mean_one_and_rise_with_the_emphasis():
    assert torch.allclose(cepstral_weights(16, 0.0), torch.ones(16))
    w = cepstral_weights(64, 0.5)
    assert w.shape == (64,) and w.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert torch.all(w.diff() > 0) and w[-1] / w[0] == pytest.approx(8.0, rel=1e-5)
    # an error in the high coefficients costs more than the same error in the low ones
    y = torch.zeros(1, 10, 64)
    low, high = y.clone(), y.clone()
    low[..., 1] = 1.0
    high[..., 60] = 1.0
    cfg = TrainConfig(cep_emphasis=0.5)
    assert envelope_loss(high, y, config=cfg)[0] > 2 * envelope_loss(low, y, config=cfg)[0]


def test_the_loss_trains_through_the_variance_term():
    y = _envelopes()
    pred = (0.2 * y).clone().requires_grad_(True)
    loss, _ = envelope_loss(pred, y, config=TrainConfig(gv_weight=1.0))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("field,value", [("gv_weight", -1.0), ("delta_weight", float("nan")),
                                         ("cep_emphasis", float("inf"))])
def test_train_config_refuses_bad_loss_options(field, value):
    with pytest.raises(ConfigError, match=f"{field} {value!r}; expected a finite number >= 0"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("sub", ["voice", "train"])
def test_voice_flags_reach_train_config(sub, monkeypatch, tmp_path):
    seen = {}

    def fake_build_voice(sources, out_dir, name, *, train, **kw):
        seen["train"] = train
        return tmp_path / f"{name}.onnx"

    monkeypatch.setattr("rtvc.train.build.build_voice", fake_build_voice)
    monkeypatch.setattr("rtvc.train.corpus.build_corpus", lambda *a, **k: [])
    argv = [sub, "--corpus", "x", "--name", "v", "--gender", "male", "--steps", "7", "--threads", "1",
            "--delta-weight", "0.25", "--gv-weight", "0.5", "--cep-emphasis", "0.3", "--out", str(tmp_path), "--quiet"]
    if sub == "voice":
        argv += ["--batch", "5", "--lookahead", "1"]
    assert train_main(argv) == 0
    tc = seen["train"]
    assert (tc.steps, tc.threads, tc.delta_weight, tc.gv_weight, tc.cep_emphasis) == (7, 1, 0.25, 0.5, 0.3)
    assert tc.batch == (5 if sub == "voice" else 16) and tc.device == "cpu"
    assert tc.lookahead == (1 if sub == "voice" else 0)


def test_voice_defaults_are_the_train_config_defaults(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("rtvc.train.build.build_voice",
                        lambda *a, train, **k: seen.setdefault("train", train) and tmp_path / "v.onnx")
    monkeypatch.setattr("rtvc.train.corpus.build_corpus", lambda *a, **k: [])
    assert train_main(["voice", "--corpus", "x", "--name", "v", "--gender", "male", "--quiet"]) == 0
    assert seen["train"].loss_options() == TrainConfig().loss_options()


def test_voice_refuses_a_bad_loss_option_before_building_the_corpus(monkeypatch, capsys):
    def no_corpus(*a, **k):
        raise AssertionError("corpus built although an option is bad")

    monkeypatch.setattr("rtvc.train.corpus.build_corpus", no_corpus)
    assert train_main(["voice", "--corpus", "x", "--name", "v", "--gender", "male", "--gv-weight", "-2"]) == 2
    assert "gv_weight -2.0; expected a finite number >= 0" in capsys.readouterr().err


def test_clone_flags_reach_train_config_and_the_recorded_command(monkeypatch, tmp_path):
    seen = {}

    def fake_build_voice(audio, out, name, *, train, command, **kw):
        seen.update(train=train, command=command)
        return tmp_path / f"{name}.onnx"

    folder = tmp_path / "me"
    folder.mkdir()
    rng = np.random.default_rng(0)
    monkeypatch.setattr("rtvc.train.clone.build_voice", fake_build_voice)
    monkeypatch.setattr("rtvc.train.clone.check_clone_folder",
                        lambda *a, **k: type("S", (), {"files": [folder / "a.wav"], "skipped": [], "active_s": 360.0,
                                                       "audio": [rng.standard_normal(16000).astype(np.float32)]})())
    argv = ["clone", str(folder), "--name", "me", "--steps", "5", "--gv-weight", "0.5", "--cep-emphasis", "0.3",
            "--out", str(tmp_path), "--quiet", "--no-frames-cache"]
    assert train_main(argv) == 0
    tc = seen["train"]
    assert (tc.steps, tc.delta_weight, tc.gv_weight, tc.cep_emphasis) == (5, TrainConfig().delta_weight, 0.5, 0.3)
    assert seen["command"].endswith("--steps 5 --gv-weight 0.5 --cep-emphasis 0.3")
    assert tc.device == "cpu"
    import torch

    if not torch.cuda.is_available():  # asked for a GPU that is not there: refused before any audio is read
        assert train_main(argv + ["--device", "cuda"]) == 2


def test_clone_refuses_unknown_loss_options(tmp_path):
    from rtvc.train.clone import clone_voice

    with pytest.raises(ConfigError, match=r"loss options \['beta'\]; expected some of"):
        clone_voice(tmp_path, "me", loss_options={"beta": 1.0})


def test_loss_flags_cover_every_loss_option():
    import argparse

    p = argparse.ArgumentParser()
    commands._add_loss_arguments(p)
    args = p.parse_args([])
    assert set(commands._loss_options(args)) == set(LOSS_OPTIONS)
    assert json.dumps(commands._loss_options(args))  # recorded in the manifest as plain numbers


def test_a_voice_trained_with_the_loss_terms_records_them_and_keeps_the_runtime_contract(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from rtvc.voices import VoiceRegistry
    from tests.train.test_build import _speech_like, clone_tiny

    m, out = clone_tiny(tmp_path, monkeypatch, "gv", "--gv-weight", "0.75", "--delta-weight", "0.5", "--fm-weight", "0.5")
    assert m["training"]["loss"] == {"delta_weight": 0.5, "gv_weight": 0.75, "cep_emphasis": 0.0, "adv_weight": 0.0,
                                     "fm_weight": 0.5}
    # a low voice; the critic's weights as every loss option
    assert m["training"]["command"].endswith("--steps 2 --n-cep 64 --delta-weight 0.5 --gv-weight 0.75 --fm-weight 0.5")
    # the loss changes weights only: same tensors and state shape, and the runtime converts with it
    assert m["tensors"]["state_shape"] == [2, 1, 128] and m["features"]["n_output"] == m["features"]["config"]["n_cep"]
    reg = VoiceRegistry([out])
    stage = reg.make_stage(reg.get("gv"))
    y, _ = stage.step(_speech_like(1)[:80], stage.init_state())
    assert y.shape == (80,) and np.all(np.isfinite(y))


def test_train_config_refuses_bad_sizes_and_devices():
    import torch

    from rtvc.errors import ConfigError
    from rtvc.train.train import TrainConfig

    with pytest.raises(ConfigError, match=r"batch 0; expected an integer >= 1"):
        TrainConfig(batch=0)
    with pytest.raises(ConfigError, match=r"frames 1; expected an integer >= 2"):
        TrainConfig(frames=1)
    with pytest.raises(ConfigError, match=r"training device 'tpu'; expected one of \('cpu', 'cuda'\)"):
        TrainConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"training device 'cuda': this torch sees no CUDA GPU"):
            TrainConfig(device="cuda")


def test_training_on_cuda_gives_a_cpu_model_close_to_cpu_training():
    import torch

    from rtvc.train.dataset import analyse_files
    from rtvc.train.train import TrainConfig, train_converter

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    ph = 2 * np.pi * np.cumsum(120 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / 16000
    x = (0.1 * sum(np.sin(k * ph) / k for k in range(1, 25)) + 0.002 * rng.standard_normal(len(t))).astype(np.float32)
    frames = analyse_files([x])
    cfg = dict(steps=5, batch=2, frames=40, hidden=16, threads=1)
    m_cpu, _ = train_converter(frames, config=TrainConfig(**cfg), progress=False)
    m_gpu, info = train_converter(frames, config=TrainConfig(**cfg, device="cuda"), progress=False)
    assert all(p.device.type == "cpu" for p in m_gpu.parameters())
    for a, b in zip(m_cpu.parameters(), m_gpu.parameters()):  # same seed, same batches: same weights
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-2)


def test_lookahead_is_refused_out_of_range_and_shifts_the_converted_timeline():
    import torch

    from rtvc.errors import ConfigError
    from rtvc.train.build import _converter_fn
    from rtvc.train.model import Converter
    from rtvc.train.train import TrainConfig

    with pytest.raises(ConfigError, match=r"lookahead 3; expected an integer 0\.\.2 frames"):
        TrainConfig(lookahead=3)
    with pytest.raises(ConfigError, match=r"lookahead 2 frames; expected fewer than the 2 frames"):
        TrainConfig(lookahead=2, frames=2)
    torch.manual_seed(0)
    model = Converter(23, 8, hidden=8, layers=1).eval()
    x = np.random.default_rng(0).standard_normal((30, 23)).astype(np.float32)
    y0, y2 = _converter_fn(model)(x), _converter_fn(model, 2)(x)
    np.testing.assert_array_equal(y2[:-2], y0[2:])  # output t + 2 is frame t's envelope
    np.testing.assert_array_equal(y2[-2:], np.repeat(y0[-1:], 2, axis=0))
