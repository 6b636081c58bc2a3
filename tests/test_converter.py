"""NeuralVoice: loading checks (ModelError for every kind of damage), stage contract, latency."""

import json
import math
import shutil

import numpy as np
import pytest

from rtvc.converter import F0Mapper, NeuralVoice, select_providers
from rtvc.errors import ModelError
from rtvc.manifest import sha256_file
from rtvc.params import Params

pytest.importorskip("torch")


def _speech_like(seconds=2.0, f0=120.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / 16000
    am = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    x = am * sum(np.sin(k * ph) / k for k in range(1, 25)) * 0.15 + 0.002 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory):
    from rtvc.train.build import build_voice
    from rtvc.train.train import TrainConfig

    d = tmp_path_factory.mktemp("voices")
    build_voice([_speech_like(seed=1), _speech_like(f0=200.0, seed=2)], d, "tiny", description="test voice",
                gender="other", data="synthetic harmonics", licence="none (generated in the test)",
                train=TrainConfig(steps=3, batch=2, frames=40, hidden=16, threads=1), progress=False)
    return d / "tiny.onnx"


def _copy(tiny_voice, tmp_path, name="bad"):
    onnx = tmp_path / f"{name}.onnx"
    shutil.copy(tiny_voice, onnx)
    m = json.loads(tiny_voice.with_suffix(".json").read_text())
    m["name"] = name
    return onnx, m


def _write(onnx, m):
    onnx.with_suffix(".json").write_text(json.dumps(m))


def test_loads_and_runs_with_fixed_latency(tiny_voice):
    v = NeuralVoice.load(tiny_voice, model_rate=16000, hop=80)
    assert v.latency == 80
    v.set_params(Params(pitch_st=3.0, formant_ratio=1.1))
    st = v.init_state()
    x = _speech_like(1.0, seed=3)
    out = []
    for i in range(len(x) // 80):
        y, st = v.step(x[i * 80:(i + 1) * 80], st)
        assert y.shape == (80,) and y.dtype == np.float32
        out.append(y.copy())
    y = np.concatenate(out)
    assert np.all(np.isfinite(y)) and np.abs(y).max() > 0


def test_streaming_is_deterministic_per_state(tiny_voice):
    v = NeuralVoice.load(tiny_voice)
    x = _speech_like(0.5, seed=4)

    def run():
        st = v.init_state()
        return np.concatenate([v.step(x[i * 80:(i + 1) * 80], st)[0].copy() for i in range(len(x) // 80)])

    np.testing.assert_array_equal(run(), run())


def test_sha256_mismatch_is_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    m["onnx_sha256"] = "0" * 64
    _write(onnx, m)
    with pytest.raises(ModelError, match="sha256 .* expected 0000"):
        NeuralVoice.load(onnx)


def test_garbage_bytes_are_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    onnx.write_bytes(np.random.default_rng(0).bytes(4000))
    m["onnx_sha256"] = sha256_file(onnx)  # the manifest matches: onnxruntime itself must refuse
    _write(onnx, m)
    with pytest.raises(ModelError, match="cannot be loaded by onnxruntime"):
        NeuralVoice.load(onnx)


def test_wrong_tensor_names_are_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    m["tensors"]["state_in"] = "h0"
    _write(onnx, m)
    with pytest.raises(ModelError, match=r"tensors in=.*expected in=\['features', 'h0'\]"):
        NeuralVoice.load(onnx)


def test_wrong_state_shape_is_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    m["tensors"]["state_shape"] = [3, 1, 16]
    _write(onnx, m)
    with pytest.raises(ModelError, match=r"state shape .* expected \[3, 1, 16\]"):
        NeuralVoice.load(onnx)


def test_wrong_rate_is_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    m["model_rate"] = 22050
    _write(onnx, m)
    with pytest.raises(ModelError, match="model_rate 22050 Hz; expected 16000 Hz"):
        NeuralVoice.load(onnx)


def test_missing_files_are_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    with pytest.raises(ModelError, match="manifest .* is missing"):
        NeuralVoice.load(onnx)
    _write(onnx, m)
    onnx.unlink()
    with pytest.raises(ModelError, match="bad.onnx is missing"):
        NeuralVoice.load(onnx)


def test_manifest_missing_key_is_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    del m["training"]
    _write(onnx, m)
    with pytest.raises(ModelError, match="missing key 'training'"):
        NeuralVoice.load(onnx)


def test_synthesis_options_are_read_from_the_manifest_and_checked(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    assert m["synthesis_options"]["voicing"] == "adaptive"  # what build_voice writes by default
    assert m["synthesis_options"]["f0_continuity"] == 0.3
    del m["synthesis_options"]  # a manifest from before the options: the original synthesis
    _write(onnx, m)
    assert NeuralVoice.load(onnx).synth.options == {"phase": "zero", "voicing": "fixed", "postfilter": 1.0,
                                                    "f0_continuity": 0.0, "f0_continuity_tolerance": 0.12}
    m["synthesis_options"] = {"voicing": "adaptive"}
    _write(onnx, m)
    v = NeuralVoice.load(onnx)
    assert v.synth.adaptive and v.synth.options["phase"] == "zero"
    m["synthesis_options"] = {"voicing": "sometimes"}
    _write(onnx, m)
    with pytest.raises(ModelError, match="synthesis voicing 'sometimes'"):
        NeuralVoice.load(onnx)
    m["synthesis_options"] = "adaptive"
    _write(onnx, m)
    with pytest.raises(ModelError, match="synthesis_options = 'adaptive'; expected an object"):
        NeuralVoice.load(onnx)


def test_envelope_width_other_than_the_manifest_is_refused(tiny_voice, tmp_path):
    onnx, m = _copy(tiny_voice, tmp_path)
    n = m["features"]["n_output"]
    m["features"]["n_output"] = n + 1
    _write(onnx, m)
    with pytest.raises(ModelError, match=rf"bad.json: features.n_output = {n + 1}; expected {n} "
                                         r"\(features.config.n_cep"):
        NeuralVoice.load(onnx)  # the manifest contradicts itself
    m["features"]["config"]["n_cep"] = n + 1
    for k in ("output_mean", "output_std"):
        m["features"][k].append(0.0)
    _write(onnx, m)
    with pytest.raises(ModelError, match=rf"envelope shape \(1, 1, {n}\) for one frame; expected \(1, 1, {n + 1}\)"):
        NeuralVoice.load(onnx)  # consistent, but not what the model gives


def test_non_finite_state_is_reset(tiny_voice):
    v = NeuralVoice.load(tiny_voice)
    st = v.init_state()
    st.h[st.h_in].update_inplace(np.full(v.state_shape, np.nan, np.float32))
    assert np.all(np.isnan(v.recurrent_state(st)))
    y, st = v.step(np.zeros(80, np.float32), st)
    assert st.resets == 1 and np.all(np.isfinite(y)) and np.all(np.isfinite(v.recurrent_state(st)))


def test_f0_mapper_moves_the_source_mean_onto_the_target():
    m = F0Mapper(np.log2(220.0))
    st = m.init_state()
    out = [m.map(110.0, 0.0, st) for _ in range(50)]
    np.testing.assert_allclose(out[-1], 220.0, rtol=1e-6)
    np.testing.assert_allclose(m.map(110.0, 12.0, st), 440.0, rtol=1e-6)
    assert m.map(0.0, 0.0, st) == 0.0


def test_provider_selection_falls_back_to_cpu():
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    assert select_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(ModelError, match="device 'tpu'"):
        select_providers("tpu")


def _timbre_reference(target, feats, voiced):
    """Plain-Python reference of TimbreMapper: float64, one coefficient at a time."""
    from rtvc.converter import TIMBRE_EMA_FRAMES, TIMBRE_RAMP_FRAMES

    n = len(target)
    mean, k, out = [0.0] * n, 0, []
    for f, v in zip(feats, voiced):
        f = [float(a) for a in f]
        if v:
            k += 1
            a = 1.0 / (k if k <= TIMBRE_EMA_FRAMES else TIMBRE_EMA_FRAMES)
            mean = [m + (f[1 + i] - m) * a for i, m in enumerate(mean)]
        w = min(1.0, k / TIMBRE_RAMP_FRAMES)
        if k > 0:
            f = [f[0]] + [f[1 + i] + w * (target[i] - mean[i]) for i in range(n)] + f[1 + n:]
        out.append(f)
    return np.array(out)


def test_timbre_mapper_equals_its_reference_and_moves_the_mean_onto_the_target():
    from rtvc.converter import TimbreMapper

    rng = np.random.default_rng(0)
    n_frames, n = 700, 19
    target = rng.normal(0, 10, n).astype(np.float32)
    offset = rng.normal(0, 10, n).astype(np.float32)  # the source's own average timbre
    feats = rng.normal(0, 1, (n_frames, n + 4)).astype(np.float32)
    feats[:, 1:1 + n] += offset
    voiced = rng.random(n_frames) < 0.6
    voiced[:5] = False  # nothing to go by yet: unchanged
    m = TimbreMapper(target)
    st = m.init_state()
    got = feats.copy()
    for t in range(n_frames):
        m.map(got[t], bool(voiced[t]), st)
    ref = _timbre_reference(target, feats, voiced)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-3)
    np.testing.assert_array_equal(got[:5], feats[:5])
    np.testing.assert_array_equal(got[:, 0], feats[:, 0])  # the level is left alone
    np.testing.assert_array_equal(got[:, 1 + n:], feats[:, 1 + n:])  # F0 and voicing too
    # after a few seconds the mapped voiced frames average to the target's mean
    late = got[400:][voiced[400:], 1:1 + n].mean(axis=0)
    np.testing.assert_allclose(late, target, atol=0.25)
    # unvoiced frames do not move the source mean
    before = st.copy()
    m.map(np.full(n + 4, 1e3, np.float32), False, st)
    np.testing.assert_array_equal(st[:n + 1], before[:n + 1])


def test_voice_takes_its_timbre_from_the_preview_clip(tiny_voice, tmp_path, caplog):
    from rtvc.converter import target_timbre_mean
    from rtvc.wavio import read_audio

    v = NeuralVoice.load(tiny_voice)
    x, _ = read_audio(tiny_voice.with_name("tiny.preview.wav"), resample_to=16000)
    np.testing.assert_array_equal(v.timbre.target, target_timbre_mean(x, v.fx, v.config.n_mfcc))
    # no clip: the voice loads and plays, without normalisation (logged)
    onnx, m = _copy(tiny_voice, tmp_path, "noclip")
    _write(onnx, m)
    caplog.set_level("INFO", logger="rtvc.converter")
    v2 = NeuralVoice.load(onnx)
    assert v2.timbre is None and "speaker normalisation off" in caplog.text
    y, _ = v2.step(np.zeros(80, np.float32), v2.init_state())
    assert np.all(np.isfinite(y))
    # a damaged clip: the same, and the log names the file
    onnx.with_name("noclip.preview.wav").write_bytes(b"RIFF\x00\x00garbage")
    caplog.clear()
    assert NeuralVoice.load(onnx).timbre is None and "noclip.preview.wav" in caplog.text


@pytest.mark.parametrize("k", [1, 2])
def test_lookahead_pairs_each_envelope_with_the_source_frame_k_hops_older(tiny_voice, tmp_path, k):
    """A converter with lookahead k outputs frame t - k's envelope after hearing frame t: the
    synthesis must get that frame's F0, voicing and spectrum, and the latency grows by k hops."""
    onnx, m = _copy(tiny_voice, tmp_path, name=f"ahead{k}")
    m["lookahead_frames"] = k
    _write(onnx, m)
    shutil.copy(tiny_voice.with_name("tiny.preview.wav"), onnx.with_name(f"ahead{k}.preview.wav"))  # same normalisation
    plain, ahead = NeuralVoice.load(tiny_voice), NeuralVoice.load(onnx)
    plain.warp = ahead.warp = None  # the warp follows the (delayed) F0 map: tested on its own
    assert ahead.latency == plain.latency + k * 80
    x = _speech_like(1.0, seed=6)
    calls = {}
    for name, v in (("plain", plain), ("ahead", ahead)):
        rec = calls[name] = []
        step = v.synth.step

        def spy(cep, st, *, step=step, rec=rec, **kw):
            rec.append((cep.copy(), kw["f0_hz"], kw["voicing"], kw["src_spec"].copy(), kw["src_f0_hz"]))
            return step(cep, st, **kw)

        v.synth.step = spy
        st = v.init_state()
        for i in range(len(x) // 80):
            v.step(x[i * 80:(i + 1) * 80], st)
    p, a = calls["plain"], calls["ahead"]
    assert sum(r[4] > 0 for r in p) > 50  # the sample is voiced
    for t in range(k, len(p)):
        np.testing.assert_array_equal(a[t][0], p[t][0])  # the model runs on the same frames
        assert a[t][4] == p[t - k][4] and a[t][2] == p[t - k][2]  # source F0 and voicing k hops old
        np.testing.assert_array_equal(a[t][3], p[t - k][3])  # and its spectrum
    assert all(r[4] == 0.0 for r in a[:k])  # before that: silence


def test_f0_continuity_changes_the_synthesis_voicing_only(tiny_voice, tmp_path):
    """With ``f0_continuity`` the model gets the same input and gives the same envelopes; the
    synthesis gets the tracker's F0 run through the continuity rule (checked against its NumPy
    reference, fed by an independent tracker), which voices frames the plain voice leaves unvoiced."""
    from rtvc.f0 import CausalF0
    from tests.native.test_f0 import ref_continue

    paths = {}
    for name, fc in (("plain", 0.0), ("cont", 0.4)):
        onnx, m = _copy(tiny_voice, tmp_path, name=name)
        m["synthesis_options"] = {**m["synthesis_options"], "f0_continuity": fc}
        _write(onnx, m)
        shutil.copy(tiny_voice.with_name("tiny.preview.wav"), onnx.with_name(f"{name}.preview.wav"))  # same normalisation
        paths[name] = onnx
    plain, cont = NeuralVoice.load(paths["plain"]), NeuralVoice.load(paths["cont"])
    plain.warp = cont.warp = None  # the warp follows the F0 map's mean, which the extra voiced frames move
    rng = np.random.default_rng(8)
    x = _speech_like(2.0, seed=8)
    x += (np.linspace(0.0, 0.2, x.size) * rng.standard_normal(x.size)).astype(np.float32)  # voicing fades in noise
    calls = {}
    for name, v in (("plain", plain), ("cont", cont)):
        rec = calls[name] = []
        step = v.synth.step

        def spy(cep, st, *, step=step, rec=rec, **kw):
            rec.append((cep.copy(), kw["src_f0_hz"], kw["voicing"]))
            return step(cep, st, **kw)

        v.synth.step = spy
        st = v.init_state()
        for i in range(len(x) // 80):
            v.step(x[i * 80:(i + 1) * 80], st)
    tracker = CausalF0()
    ts = tracker.init_state()
    prev, added = 0.0, 0
    for t, (p, c) in enumerate(zip(calls["plain"], calls["cont"])):
        np.testing.assert_array_equal(c[0], p[0])  # same envelope: the model's input is unchanged
        f0, per = tracker.step(x[t * 80:(t + 1) * 80], ts)[0]
        assert p[1] == pytest.approx(f0, rel=1e-6)  # the plain voice synthesises the tracker's F0
        want = ref_continue(ts.cmndf, tracker.tau_min, tracker.tau_max, p[1], p[2], prev, 0.4, 0.12)
        assert c[1:] == pytest.approx(want, rel=1e-6), t
        prev = c[1]
        added += c[1] > 0.0 and p[1] == 0.0
    assert added >= 5


def test_a_bad_lookahead_in_the_manifest_is_refused(tiny_voice, tmp_path):
    for bad in (3, -1, "1", True, 1.0):
        onnx, m = _copy(tiny_voice, tmp_path)
        m["lookahead_frames"] = bad
        _write(onnx, m)
        with pytest.raises(ModelError, match=r"lookahead_frames = .*; expected an integer in \[0, 2\]"):
            NeuralVoice.load(onnx)


class _LostGpuSession:
    """Stands for a CUDA session whose GPU went away: every run raises. (Its buffers are bound on
    the CPU: this onnxruntime has no CUDA; the tests mark the state as the CUDA path's.)"""

    def __init__(self, real):
        self.real = real

    def get_providers(self):
        return self.real.get_providers()

    def io_binding(self):
        return self.real.io_binding()

    def run_with_iobinding(self, binding):
        raise RuntimeError("CUDA failure 700: an illegal memory access was encountered")


def test_a_cuda_voice_whose_gpu_fails_moves_to_the_cpu_once(tiny_voice, caplog):
    import logging

    from rtvc.engine import Engine, EngineConfig
    from rtvc.voices import VoiceRegistry

    v = NeuralVoice.load(tiny_voice)
    st = v.init_state()  # bound on the CPU (there is no GPU here) ...
    st.gpu = True  # ... and run as the CUDA path runs
    v.session = _LostGpuSession(v.session)
    with caplog.at_level(logging.ERROR, logger="rtvc.converter"), pytest.raises(RuntimeError, match="CUDA failure 700"):
        v.step(_speech_like(0.005, seed=7), st)
    assert not isinstance(v.session, _LostGpuSession) and v.cpu_fallback_tried
    assert v.session.get_providers() == ["CPUExecutionProvider"]
    assert any("moving the voice to the CPU" in r.getMessage() for r in caplog.records)
    st = v.init_state()  # what the engine asks for after a failed hop
    x = _speech_like(0.5, seed=8)
    y = np.concatenate([v.step(x[i:i + 80], st)[0].copy() for i in range(0, len(x), 80)])
    assert np.all(np.isfinite(y)) and np.abs(y).max() > 0.001

    # through the engine: one hop of silence, one stage error, then the voice plays on the CPU
    class Reg(VoiceRegistry):
        def make_stage(self, info, **kw):
            stage = super().make_stage(info, **kw)
            real_init = stage.init_state

            def init_state():
                s = real_init()
                s.gpu = isinstance(stage.session, _LostGpuSession)
                return s

            stage.session = _LostGpuSession(stage.session)
            stage.init_state = init_state
            return stage

    eng = Engine(EngineConfig(device_rate=16000), registry=Reg([tiny_voice.parent]),
                 params=Params(voice="tiny", gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    y = eng.process(_speech_like(0.5, seed=9))
    assert eng.counters["stage_errors"] == 1 and np.abs(y[-4000:]).max() > 0.001
    assert eng.telemetry()["voice_provider"] == "CPUExecutionProvider"


def test_the_cpu_fallback_refuses_a_model_file_changed_since_loading(tiny_voice, tmp_path, caplog):
    import logging

    onnx, m = _copy(tiny_voice, tmp_path)
    _write(onnx, m)
    v = NeuralVoice.load(onnx)
    st = v.init_state()
    st.gpu = True
    v.session = lost = _LostGpuSession(v.session)
    with open(onnx, "ab") as f:
        f.write(b"garbage")
    with caplog.at_level(logging.ERROR, logger="rtvc.converter"), pytest.raises(RuntimeError):
        v.step(np.zeros(80, np.float32), st)
    assert v.session is lost and v.cpu_fallback_tried  # not replaced by the changed file
    assert any("cannot load it on the CPU either" in r.getMessage() and "sha256" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(RuntimeError):  # tried once: the next failure does not read the file again
        v.step(np.zeros(80, np.float32), st)
    assert sum("moving the voice to the CPU" in r.getMessage() for r in caplog.records) == 1


def test_warp_normaliser_follows_the_source_f0_mean_on_its_grid():
    from rtvc.converter import WARP_GAMMA, WARP_GRID, WARP_MIN_FRAMES, WarpNormaliser
    from rtvc.features import FeatureConfig, FeatureExtractor, mel_filterbank

    c = FeatureConfig()
    w = WarpNormaliser(c, math.log2(100.0))
    np.testing.assert_array_equal(w.bank[w.unit], FeatureExtractor(c).fb)  # warp 1: the plain filterbank
    np.testing.assert_array_equal(w.bank[3], mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40,
                                                            warp=float(WARP_GRID[3])))
    st = w.init_state()
    fb = w.bank[w.unit].copy()
    # a 200 Hz speaker against a 100 Hz target: 2 ** 0.3 = 1.231 -> the grid's 1.225, once trusted
    w.update(np.array([math.log2(200.0), WARP_MIN_FRAMES - 1]), fb, st)
    assert st[0] == w.unit and np.array_equal(fb, w.bank[w.unit])
    w.update(np.array([math.log2(200.0), WARP_MIN_FRAMES]), fb, st)
    assert WARP_GRID[st[0]] == pytest.approx(round(2 ** WARP_GAMMA / 0.025) * 0.025)
    np.testing.assert_array_equal(fb, w.bank[st[0]])
    for f0, want in ((100.0, 1.0), (20.0, WARP_GRID[0]), (2000.0, WARP_GRID[-1])):  # the grid clips
        assert WARP_GRID[w.warp_of(np.array([math.log2(f0), 500.0]))] == pytest.approx(want)


def test_a_stream_warps_its_own_filterbank_and_its_features_follow(tiny_voice):
    """Two streams of one voice, a high and a low speaker: each gets the warp of its own F0 mean
    in its own filterbank (the voice's is untouched), and the features it computes are those of
    the warped filterbank."""
    from rtvc.converter import WARP_GRID
    from rtvc.features import POWER_AMIN, mel_filterbank

    v = NeuralVoice.load(tiny_voice)
    target_hz = 2.0 ** float(v.manifest["f0"]["log2_mean"])
    plain_fb = v.fx.fb.copy()
    warps = {}
    for name, f0 in (("high", target_hz * 2.0), ("low", target_hz / 1.6)):
        st = v.init_state()
        x = _speech_like(1.0, f0=f0, seed=9)
        for i in range(len(x) // 80):
            v.step(x[i * 80:(i + 1) * 80], st)
        warps[name] = float(WARP_GRID[st.analysis.warp[0]])
        fb = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40, warp=warps[name])
        np.testing.assert_array_equal(st.analysis.fx["fb"], fb)
        # the last frame's c0 (the level, which the timbre shift leaves alone) from its power spectrum
        fs = st.analysis.fx
        mel_db = 10.0 * np.log10(np.maximum(fb.astype(np.float64) @ fs["power"], POWER_AMIN))
        assert fs["feats"][0] == pytest.approx(float(v.fx.dct[0] @ mel_db), rel=1e-4)
    np.testing.assert_array_equal(v.fx.fb, plain_fb)
    assert warps["high"] > 1.05 and warps["low"] < 0.95, warps


@pytest.mark.parametrize("k", [0, 1])
def test_prime_learns_the_speaker_exactly_as_playing_would(tiny_voice, tmp_path, k):
    """``prime`` runs the analysis alone over heard audio: the speaker statistics it leaves in a
    fresh state (F0 and timbre means and counts, warp, filterbank) equal those of a stream that
    played the same audio through ``step``, lookahead included; the state's analysis buffers and
    recurrent state stay fresh; a trailing part hop is ignored and silence teaches nothing."""
    onnx, m = _copy(tiny_voice, tmp_path, name=f"prime{k}")
    m["lookahead_frames"] = k
    _write(onnx, m)
    shutil.copy(tiny_voice.with_name("tiny.preview.wav"), onnx.with_name(f"prime{k}.preview.wav"))
    v = NeuralVoice.load(onnx)
    # private: whether this voice continues the source's voicing has no public seam in NeuralVoice
    assert v.timbre is not None and v.warp is not None and v._continue_args is not None
    target_hz = 2.0 ** float(v.manifest["f0"]["log2_mean"])
    x = _speech_like(1.5, f0=target_hz * 1.9, seed=11)
    played = v.init_state()
    for i in range(len(x) // 80):
        v.step(x[i * 80:(i + 1) * 80], played)
    primed, fresh = v.init_state(), v.init_state()
    assert v.prime(np.concatenate([x, x[:37]]), primed) == int(played.analysis.f0[1]) > 100
    for key in ("f0", "timbre", "warp"):
        np.testing.assert_array_equal(getattr(primed.analysis, key), getattr(played.analysis, key), err_msg=key)
    assert primed.analysis.warp[0] != v.warp.unit
    np.testing.assert_array_equal(primed.analysis.fx["fb"], played.analysis.fx["fb"])
    for key in ("buf", "feats", "power"):  # the stream's own analysis goes on from its own audio
        np.testing.assert_array_equal(primed.analysis.fx[key], fresh.analysis.fx[key], err_msg=key)
    np.testing.assert_array_equal(v.recurrent_state(primed), 0.0)
    np.testing.assert_array_equal(v.fx.fb, fresh.analysis.fx["fb"])  # the voice's own filterbank is untouched
    quiet = v.init_state()
    assert v.prime(np.zeros(16000, np.float32), quiet) == 0
    np.testing.assert_array_equal(quiet.analysis.f0, fresh.analysis.f0)
    np.testing.assert_array_equal(quiet.analysis.timbre, fresh.analysis.timbre)
