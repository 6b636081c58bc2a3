"""Where neural voices run (``EngineConfig.neural_device`` / ``--neural-device``): onnxruntime's CPU
provider, or its CUDA provider with the ``gpu`` extra.

On a machine without CUDA the fallback is checked (CPU, a logged reason, output identical to a
plain CPU engine). Where onnxruntime offers ``CUDAExecutionProvider`` (onnxruntime-gpu on a CUDA
machine) every shipped voice is run on both providers: the model over consecutive chunks
(outputs and recurrent states), and the whole engine on the bundled speech sample.
"""

import logging

import numpy as np
import pytest

from rtvc.cli import sample_path
from rtvc.engine import Engine, EngineConfig
from rtvc.errors import ConfigError
from rtvc.params import Params
from rtvc.voices import VoiceRegistry

ort = pytest.importorskip("onnxruntime")
HAVE_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="onnxruntime offers no CUDAExecutionProvider here "
                                                      "(needs the gpu extra on a CUDA machine)")
SHIPPED = [v.name for v in VoiceRegistry().list() if v.kind == "neural"]


def _sample(rate):
    from rtvc.wavio import read_audio

    x, _ = read_audio(sample_path(), resample_to=rate)
    return np.ascontiguousarray(x[: 3 * rate], np.float32)


def _convert(neural_device, voice, x, rate=48000, block_ms=10.0):
    eng = Engine(EngineConfig(device_rate=rate, neural_device=neural_device),
                 params=Params(voice=voice, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    block = int(rate * block_ms / 1000)
    y = np.zeros(len(x) // block * block, np.float32)
    for s in range(0, len(y), block):
        eng.process_into(x[s:s + block], y[s:s + block])
    return y, eng


def test_engine_config_refuses_an_unknown_neural_device():
    with pytest.raises(ConfigError, match=r"neural device 'tpu'; expected one of \('cpu', 'cuda', 'auto'\)"):
        EngineConfig(neural_device="tpu")


def test_cli_passes_the_neural_device_to_the_engine():
    import argparse

    from rtvc.options import add_engine_arguments
    from rtvc.session import build_engine

    p = argparse.ArgumentParser()
    add_engine_arguments(p)
    args = p.parse_args(["--voice", "robot", "--neural-device", "auto"])
    assert build_engine(args, device_rate=48000).config.neural_device == "auto"
    with pytest.raises(SystemExit):
        p.parse_args(["--neural-device", "gpu"])


@pytest.mark.skipif(HAVE_CUDA, reason="this machine has CUDA: the fallback cannot be seen here")
@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_cuda_asked_without_it_runs_on_cpu_with_a_logged_reason(device, caplog, monkeypatch):
    monkeypatch.setattr("rtvc.converter._cuda_fallback_told", False)
    x = _sample(48000)
    y_cpu, _ = _convert("cpu", SHIPPED[0], x)
    with caplog.at_level(logging.INFO, logger="rtvc.converter"):
        y, eng = _convert(device, SHIPPED[0], x)
    assert eng.active_stage.session.get_providers() == ["CPUExecutionProvider"]
    msgs = [r for r in caplog.records if "CUDA asked" in r.getMessage()]
    assert msgs and "gpu extra" in msgs[0].getMessage() and "running on CPU" in msgs[0].getMessage()
    # asked explicitly: a warning; 'auto' only informs
    assert msgs[0].levelno == (logging.WARNING if device == "cuda" else logging.INFO)
    np.testing.assert_array_equal(y, y_cpu)
    assert float(np.abs(y).max()) > 0.01  # the voice really played


def _features(voice_name, n_frames=200):
    """The model's real input frames for the bundled sample (before speaker normalisation)."""
    from rtvc.converter import NeuralVoice

    v = NeuralVoice.load(VoiceRegistry().get(voice_name).path)
    x = _sample(16000)
    a = v.fx.analyze(x)
    feats = np.ascontiguousarray(a.inputs[:n_frames], np.float32)
    assert feats.shape == (n_frames, v.n_input)
    return v, feats


@needs_cuda
@pytest.mark.parametrize("voice", SHIPPED)
def test_cuda_and_cpu_providers_agree_over_consecutive_chunks(voice):
    v, feats = _features(voice)
    path = str(v.path)
    cpu = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    gpu = ort.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert gpu.get_providers()[0] == "CUDAExecutionProvider"
    names = v.names
    h_c = h_g = np.zeros(v.state_shape, np.float32)
    worst_env = worst_h = 0.0
    # T = 10, 1, 19, then one frame at a time as the engine runs it: the state carries across
    chunks = [(0, 10), (10, 11), (11, 30)] + [(t, t + 1) for t in range(30, 200)]
    for a, b in chunks:
        e_c, h_c = cpu.run(names[2:], {names[0]: feats[None, a:b], names[1]: h_c})
        e_g, h_g = gpu.run(names[2:], {names[0]: feats[None, a:b], names[1]: h_g})
        assert np.all(np.isfinite(e_g)) and np.all(np.isfinite(h_g))
        worst_env = max(worst_env, float(np.abs(e_g - e_c).max() / (np.abs(e_c).max() + 1e-9)))
        worst_h = max(worst_h, float(np.abs(h_g - h_c).max()))
    print(f"{voice}: CUDA vs CPU over 173 chunks: envelope max rel diff {worst_env:.2e}, state max abs diff {worst_h:.2e}")
    # float32 on both; cuDNN's GRU sums in another order (and may use TF32): differences stay
    # at rounding level and do not grow through the recurrence
    assert worst_env < 2e-3
    assert worst_h < 2e-3


@needs_cuda
@pytest.mark.parametrize("voice", SHIPPED)
def test_the_engine_on_cuda_sounds_like_the_engine_on_cpu(voice):
    x = _sample(48000)
    y_cpu, _ = _convert("cpu", voice, x)
    y_gpu, eng = _convert("cuda", voice, x)
    assert eng.active_stage.session.get_providers()[0] == "CUDAExecutionProvider"
    snr = 10 * np.log10(float((y_cpu ** 2).sum()) / max(float(((y_gpu - y_cpu) ** 2).sum()), 1e-30))
    print(f"{voice}: engine output CUDA vs CPU, SNR {snr:.1f} dB")
    assert float(np.abs(y_cpu).max()) > 0.01
    assert snr > 40.0


def test_telemetry_names_the_provider_of_the_active_voice():
    eng = Engine(EngineConfig(device_rate=48000), params=Params(voice="robot"))
    assert eng.telemetry()["voice_provider"] is None  # a DSP voice
    eng.update(voice=SHIPPED[0])
    eng.process(np.zeros(4800, np.float32))  # the switch happens at a block boundary
    assert eng.telemetry()["voice_provider"] == "CPUExecutionProvider"  # the default device
