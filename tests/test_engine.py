"""The streaming engine: exact latency, block-size invariance, bad numbers, control path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from rtvc.engine import Engine, EngineConfig
from rtvc.errors import ConfigError, ModelError
from rtvc.params import Params
from rtvc.voices import DSP_PRESETS, DelayStage, VoiceRegistry

OPEN_GATE = dict(gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0)


class DelayRegistry(VoiceRegistry):
    """Every voice is a pure delay: isolates the engine's own mechanics from the voice stages."""

    def __init__(self, latency=160):
        super().__init__(model_dirs=[])
        self.latency = latency

    def make_stage(self, info, **kw):
        return DelayStage(self.latency)


class NanStage(DelayStage):
    def step(self, x, state):
        y, state = super().step(x, state)
        y[3] = np.nan
        return y, state


class FailingStage(DelayStage):
    """Raises on the 10th hop after each (re)start of its state, or on every hop with ``always``
    (as onnxruntime does after losing its GPU)."""

    def __init__(self, latency, always=False):
        super().__init__(latency)
        self.always = always

    def init_state(self):
        return {"inner": super().init_state(), "n": 0}

    def step(self, x, state):
        state["n"] += 1
        if self.always or state["n"] == 10:
            raise RuntimeError("CUDA failure 999: unknown error")
        y, state["inner"] = super().step(x, state["inner"])
        return y, state


class FailingRegistry(DelayRegistry):
    def make_stage(self, info, **kw):
        if info.name in ("robot", "whisper"):
            return FailingStage(self.latency, always=info.name == "whisper")
        return DelayStage(self.latency)


class NanRegistry(DelayRegistry):
    def make_stage(self, info, **kw):
        return NanStage(self.latency) if info.name == "robot" else DelayStage(self.latency)


def run_blocks(engine, x, sizes, rng=None):
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000)) if sizes == "random" else sizes
        out.append(engine.process(x[i:i + n]))
        i += n
    return np.concatenate(out)


def voiced(rate, seconds=1.0, f0=140.0, seed=0):
    """A seeded vowel-like test signal: harmonics with a formant-ish tilt and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / rate
    x = sum(np.sin(k * ph) / k * (1.5 if 4 <= k <= 6 else 1.0) for k in range(1, 30) if k * f0 < rate / 2 - 500)
    x = 0.2 * x / np.max(np.abs(x)) + 0.003 * rng.standard_normal(len(t))
    return x.astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_click_comes_out_exactly_latency_samples_later(rate):
    eng = Engine(EngineConfig(device_rate=rate), params=Params(voice="neutral", **OPEN_GATE))
    lat = eng.latency_samples()
    for n0 in (rate // 3, rate // 3 + 1, rate // 3 + 2):  # every phase of the decimator
        eng = Engine(EngineConfig(device_rate=rate), params=Params(voice="neutral", **OPEN_GATE))
        x = np.zeros(rate, np.float32)
        x[n0] = 0.5  # below the output limiter's knee: the path is linear
        y = eng.process(x)
        peak = int(np.argmax(np.abs(y)))
        if float(lat).is_integer():
            assert peak - n0 == lat
        else:  # 44.1 kHz with a latency that is not a whole number of device samples
            assert abs(peak - n0 - lat) <= 0.5 + 1e-9
    if rate == 16000:  # no resampling: the click itself comes back, unchanged
        assert y[peak] == pytest.approx(0.5)
        assert np.sum(np.abs(y)) == pytest.approx(0.5)


@pytest.mark.parametrize("voice", [v.name for v in DSP_PRESETS])
def test_every_dsp_voice_within_latency_budget(voice):
    eng = Engine(EngineConfig(device_rate=48000), params=Params(voice=voice))
    assert eng.algorithmic_latency_ms <= 25.0


@pytest.mark.parametrize("rate,voice", [(44100, "higher"), (48000, "male-to-female"), (48000, "whisper"),
                                        (16000, "robot"), (48000, "joe"), (44100, "aria"), (16000, "kumo")])
def test_output_independent_of_host_block_size(rate, voice):
    x = voiced(rate, 1.2)
    rng = np.random.default_rng(7)
    ref = None
    for sizes in (1, 64, 65, 441, 8193, "random", len(x)):
        eng = Engine(EngineConfig(device_rate=rate), params=Params(voice=voice, **OPEN_GATE))
        eng.update(voice=voice)
        y = run_blocks(eng, x, sizes, rng)
        assert y.shape == x.shape
        if ref is None:
            ref = y
            assert np.max(np.abs(ref)) > 0.01, "the voice produced silence: the comparison would be empty"
        else:
            np.testing.assert_array_equal(y, ref, err_msg=f"block size {sizes}")


def test_nonfinite_input_is_replaced_and_counted():
    eng = Engine(EngineConfig(device_rate=48000), registry=DelayRegistry(), params=Params(**OPEN_GATE))
    x = voiced(48000, 0.5)
    x[1000:1010] = np.nan
    x[2000] = np.inf
    x[3000] = -np.inf
    y = eng.process(x)
    assert np.all(np.isfinite(y))
    assert eng.counters["nonfinite_samples"] == 12
    assert eng.telemetry()["nonfinite_samples"] == 12


def test_stage_that_returns_nan_is_reset_and_output_stays_finite():
    eng = Engine(EngineConfig(device_rate=16000), registry=NanRegistry(), params=Params(**OPEN_GATE))
    eng.update(voice="robot")
    y = eng.process(voiced(16000, 0.3))
    assert np.all(np.isfinite(y))
    assert eng.counters["stage_resets"] > 0


def test_a_stage_that_raises_is_silenced_for_that_hop_counted_and_started_again(caplog):
    import logging

    eng = Engine(EngineConfig(device_rate=16000), registry=FailingRegistry(), params=Params(**OPEN_GATE))
    eng.update(voice="robot")
    x = voiced(16000, 0.5)  # 100 hops: every 10th fails (the restarted state fails again 10 hops later)
    with caplog.at_level(logging.ERROR, logger="rtvc.engine"):
        y = eng.process(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert eng.counters["stage_errors"] == 10 and eng.telemetry()["stage_errors"] == 10
    hops = y.reshape(-1, 80)
    assert np.count_nonzero(np.abs(hops).max(axis=1) > 0.01) > 70  # the other hops played
    logged = [r for r in caplog.records if "failed in the audio path" in r.getMessage()]
    assert "CUDA failure 999" in logged[0].getMessage() and "voice robot" in logged[0].getMessage()
    assert len(logged) == 4  # failures 1, 2, 4, 8: the log cannot flood
    # a voice that fails on every hop: silence, counted, and the engine keeps running
    eng.update(voice="whisper")
    y = eng.process(voiced(16000, 0.5))
    assert y.shape == (8000,) and eng.counters["stage_errors"] > 90
    assert np.abs(y[-4000:]).max() == 0.0
    eng.update(voice="neutral")  # a working voice plays again at once
    assert np.abs(eng.process(voiced(16000, 0.5))[-4000:]).max() > 0.01


def test_bad_voice_request_keeps_previous_voice_playing():
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(), params=Params(voice="deeper", **OPEN_GATE))
    with pytest.raises(ConfigError, match=r"unknown voice 'nope'; expected one of \[.*'deeper'"):
        eng.update(voice="nope")
    assert eng.params.voice == "deeper"
    eng.process(voiced(16000, 0.1))
    assert eng.telemetry()["voice"] == "deeper"


def test_out_of_range_parameter_names_value_and_range():
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry())
    with pytest.raises(ConfigError, match=r"'pitch_st' = 13 is out of range; expected \[-12.0, 12.0\] semitones"):
        eng.update(pitch_st=13)
    with pytest.raises(ConfigError, match=r"'mix' = 'loud': expected a number"):
        eng.update(mix="loud")
    with pytest.raises(ConfigError, match=r"unknown parameter 'pitch'"):
        eng.update(pitch=1.0)
    assert eng.params == Params()


def test_command_queue_is_bounded_and_coalesces_to_the_newest_snapshot():
    eng = Engine(EngineConfig(device_rate=16000, queue_size=4), registry=DelayRegistry())
    eng.update(voice="deeper")  # a voice load waiting in the queue must survive coalescing
    for i in range(10):
        eng.update(output_gain_db=-float(i))
    assert eng.control.queued <= 4
    assert eng.counters["commands_coalesced"] > 0
    eng.process(np.zeros(160, np.float32))
    t = eng.telemetry()
    assert t["voice"] == "deeper"
    assert eng.live_params.output_gain_db == -9.0


def test_voice_switch_is_crossfaded_without_a_jump():
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(), params=Params(**OPEN_GATE))
    x = voiced(16000, 1.0)
    y1 = eng.process(x[:8000])
    eng.update(voice="deeper")
    y2 = eng.process(x[8000:])
    y = np.concatenate([y1, y2])
    assert np.max(np.abs(np.diff(y))) < 2 * np.max(np.abs(np.diff(x))) + 1e-6
    assert eng.telemetry()["voice"] == "deeper"


def test_mute_bypass_and_mix():
    x = voiced(16000, 0.5)
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(), params=Params(mute=True, **OPEN_GATE))
    assert np.max(np.abs(eng.process(x)[400:])) == 0.0
    # bypass: the dry path with the same latency as the voice
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(), params=Params(bypass=True, **OPEN_GATE))
    y = eng.process(x)
    lat = int(eng.latency_samples())
    np.testing.assert_allclose(y[lat:], x[:-lat], atol=1e-6)


def test_gate_silences_noise_and_does_not_clip_onsets():
    """Without the click test the gate looks ahead by its attack time and a word's onset comes
    through intact; with it (the default, 20 ms) the gate looks ahead by the voice's latency
    (10 ms here) and holds back at most the confirm time less that, and the word from the
    confirm time on is the same."""
    rate = 16000
    rng = np.random.default_rng(5)
    noise = (0.0005 * rng.standard_normal(rate)).astype(np.float32)  # about -66 dBFS
    x = noise.copy()
    onset = 8000
    x[onset:] += voiced(rate, 0.5)
    eng = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(),
                 params=Params(gate_threshold_db=-40.0, gate_confirm_ms=0.0))
    y = eng.process(x)
    lat = int(eng.latency_samples())
    assert np.max(np.abs(y[lat + 2000:lat + onset - 200])) == 0.0  # noise alone is gated to silence
    seg = slice(onset + lat, onset + lat + 400)  # the first 25 ms of the word come through intact
    np.testing.assert_allclose(y[seg], x[onset:onset + 400], atol=2e-3)
    eng = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params(gate_threshold_db=-40.0))
    yc = eng.process(x)
    assert np.max(np.abs(yc[lat + 2000:onset + lat])) == 0.0
    first = onset + lat + int(np.argmax(yc[onset + lat:] != 0.0))
    assert first - (onset + lat) <= 20 * rate // 1000 - DelayRegistry().latency  # at most 10 ms held back
    confirmed = onset + lat + 20 * rate // 1000
    np.testing.assert_array_equal(yc[confirmed:], y[confirmed:])


def _pink(n, rng):
    f = np.fft.rfft(rng.standard_normal(n))
    f /= np.sqrt(np.maximum(np.arange(f.size), 1))
    x = np.fft.irfft(f, n)
    return x / np.sqrt(np.mean(x ** 2))


def test_gate_follows_the_noise_floor_and_keeps_the_voice():
    """Steady noise far above the fixed threshold (-60 dBFS) is shut out once the floor has been
    tracked (3 s), whatever its colour; a voice over it comes through; margin 0 turns it off."""
    rate = 16000
    rng = np.random.default_rng(7)
    n = 5 * rate
    for noise in (rng.standard_normal(n), _pink(n, rng)):
        x = (0.01 * noise).astype(np.float32)  # -40 dBFS RMS
        speech = np.zeros(n, np.float32)
        speech[int(3.5 * rate):int(4.2 * rate)] = voiced(rate, 0.7)  # RMS 17 dB above the noise
        eng = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params())
        y = np.concatenate([eng.process(b) for b in np.split(x + speech, n // 160)])
        lat = int(eng.latency_samples())
        tel = eng.telemetry()
        floor_db = tel["noise_floor_dbfs"]
        assert -46.0 < floor_db < -40.0  # a minimum: a little below the noise's RMS
        assert tel["gate_open_dbfs"] == pytest.approx(min(floor_db + 16.0, -26.0))  # 16 dB above it, at most -26
        assert np.max(np.abs(y[lat + int(3.1 * rate):lat + int(3.5 * rate) - 200])) == 0.0  # noise alone: shut
        # the voice: through, with its noise (from 25 ms in: the click test holds its first 20 ms back)
        seg = slice(lat + int(3.5 * rate) + 400, lat + int(4.2 * rate) - 100)
        src = (x + speech)[int(3.5 * rate) + 400:int(4.2 * rate) - 100]
        np.testing.assert_allclose(y[seg], src, atol=1e-5)
        off = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(),
                     params=Params(gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
        y0 = off.process(x)
        assert np.sqrt(np.mean(y0[-rate:] ** 2)) > 0.009  # without it the noise passes (it is above -60 dBFS)
        assert off.telemetry()["gate_open_dbfs"] == pytest.approx(-60.0)


def test_noise_floor_gate_does_not_depend_on_the_block_size():
    rate = 48000
    rng = np.random.default_rng(8)
    x = (0.01 * rng.standard_normal(4 * rate)).astype(np.float32)
    x[int(3.4 * rate):int(3.8 * rate)] += voiced(rate, 0.4)
    y, _ = _same_at_every_block_size(x, rate)
    assert np.max(np.abs(y[int(3.2 * rate):int(3.39 * rate)])) == 0.0  # the noise is shut out at 48 kHz too


def _same_at_every_block_size(x, rate):
    """The default engine's output for ``x`` at host blocks of 48, 441 and 1024 samples, checked
    to be identical; returns it and the latency in samples."""
    outs = []
    for block in (48, 441, 1024):
        eng = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params())
        outs.append(np.concatenate([eng.process(x[i:i + block]) for i in range(0, len(x), block)]))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    return outs[0], int(eng.latency_samples())


def _key_clicks(rate, seconds, per_second=5.0, seed=9):
    """Keyboard-like clicks: short noise bursts decaying with a 3.75 ms time constant."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(rate * seconds))
    n = int(0.025 * rate)
    for t0 in rng.integers(0, len(x) - n, int(per_second * seconds)):
        x[t0:t0 + n] += 0.3 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.00375 * rate))
    return x.astype(np.float32)


def test_key_clicks_do_not_open_the_gate_a_voice_after_them_does():
    """The default gate with its click test: 2 s of key clicks (peaks near -10 dBFS, 50 dB over
    the threshold) come out as digital silence at any host block size; a voice right after them
    opens the gate within the confirm time (20 ms) and comes through whole after that; with the
    test off every click passes."""
    rate = 48000
    x = np.concatenate([_key_clicks(rate, 2.0), voiced(rate, 0.5)])
    y, lat = _same_at_every_block_size(x, rate)
    # the clicks are shut out (the gate opens for the voice as early as its look-ahead, 10 ms, allows)
    assert np.max(np.abs(y[:lat + 2 * rate - rate // 100])) == 0.0
    plain = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params(gate_confirm_ms=0.0))
    y0 = plain.process(x)
    assert np.sqrt(np.mean(y0[lat:lat + 2 * rate] ** 2)) > 0.1 * np.sqrt(np.mean(x[:2 * rate] ** 2))  # clicks pass
    seg = slice(lat + 2 * rate + int(0.020 * rate), len(x))  # the voice, 20 ms after it begins: whole
    np.testing.assert_array_equal(y[seg], y0[seg])
    assert np.max(np.abs(y0[seg])) > 0.1


def test_the_next_phrase_after_a_pause_is_not_held_back():
    """A pause between phrases (0.6 s: the gate closes) does not make the click test hold the
    next phrase's onset back: the output equals the test-off output sample for sample."""
    rate = 16000
    x = np.concatenate([np.zeros(rate // 2), voiced(rate, 0.4), np.zeros(int(0.6 * rate)), voiced(rate, 0.4, seed=1)])
    x = x.astype(np.float32)
    y = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params()).process(x)
    y0 = Engine(EngineConfig(device_rate=rate), registry=DelayRegistry(), params=Params(gate_confirm_ms=0.0)).process(x)
    second = int(1.5 * rate)
    assert np.max(np.abs(y0[second - 2000:second])) == 0.0  # the gate had closed in the pause
    np.testing.assert_array_equal(y[second - 2000:], y0[second - 2000:])


def test_telemetry_is_json_ready():
    import json

    eng = Engine(EngineConfig(device_rate=48000), registry=DelayRegistry())
    eng.process(voiced(48000, 0.2))
    t = eng.telemetry()
    json.dumps(t)
    for k in ("input_level_dbfs", "output_level_dbfs", "algorithmic_latency_ms", "compute_ms_p50", "compute_ms_p99",
              "rtf", "xruns", "dropped_blocks", "voice", "bypass", "mute"):
        assert k in t
    assert t["input_level_dbfs"] > -30


def test_bad_config_values():
    with pytest.raises(ConfigError, match=r"device rate 12345 Hz is not supported"):
        EngineConfig(device_rate=12345)
    with pytest.raises(ConfigError, match=r"expected mono"):
        Engine(EngineConfig(device_rate=16000), registry=DelayRegistry()).process(np.zeros((10, 2), np.float32))


def test_output_never_exceeds_full_scale():
    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(),
                 params=Params(output_gain_db=12.0, **OPEN_GATE))
    y = eng.process(voiced(16000, 0.5) * 4)
    assert np.max(np.abs(y)) <= 1.0
    assert eng.counters["limited_samples"] > 0


def test_a_lookahead_voice_is_one_hop_later_and_independent_of_host_block_size(tmp_path):
    """A copy of a shipped voice whose manifest says ``lookahead_frames`` 1: the engine reports
    5 ms more latency, and its output still does not depend on the host block size."""
    import json
    import shutil

    src = VoiceRegistry().get("joe").path
    for suffix in (".onnx", ".preview.wav"):
        shutil.copy(src.with_name("joe" + suffix), tmp_path / ("ahead" + suffix))
    m = json.loads(src.with_suffix(".json").read_text())
    m["name"], m["lookahead_frames"] = "ahead", 1
    (tmp_path / "ahead.json").write_text(json.dumps(m))
    reg = VoiceRegistry([tmp_path])
    plain = Engine(EngineConfig(device_rate=48000), params=Params(voice="joe"))
    x = voiced(48000, 1.2)
    rng = np.random.default_rng(3)
    ref = None
    for sizes in (1, 441, "random", len(x)):
        eng = Engine(EngineConfig(device_rate=48000), registry=reg, params=Params(voice="ahead", **OPEN_GATE))
        assert eng.algorithmic_latency_ms == pytest.approx(plain.algorithmic_latency_ms + 5.0)
        y = run_blocks(eng, x, sizes, rng)
        if ref is None:
            ref = y
            assert np.max(np.abs(ref)) > 0.01
        else:
            np.testing.assert_array_equal(y, ref, err_msg=f"block size {sizes}")


def test_heard_is_the_last_input_in_order_even_while_the_audio_thread_writes():
    """``heard()`` copies the input history from another thread: every copy is one contiguous,
    in-order stretch of the input (a sample ramp), ending at most a few hops before the newest,
    however the copy and the audio thread's writes interleave; a reset empties it, and silence
    (the gate shut) is not kept."""
    import threading

    from rtvc.speaker import HISTORY_S

    eng = Engine(EngineConfig(device_rate=16000), registry=DelayRegistry(), params=Params(**OPEN_GATE))
    assert eng.heard().size == 0
    rows = int(round(HISTORY_S * 16000 / 80))
    step = 2.0 ** -22
    x = np.arange(30 * 16000, dtype=np.float32) * np.float32(step)  # exact in float32, below 0.12; unchanged at 0 dB
    eng.process(x[:16000])  # 1 s: less than the history
    np.testing.assert_array_equal(eng.heard(), x[:16000])
    eng.process(x[16000:12 * 16000])  # wrapped around: the last rows - 1 hops (one is left as a margin)
    np.testing.assert_array_equal(eng.heard(), x[12 * 16000 - (rows - 1) * 80:12 * 16000])
    done = threading.Event()

    def audio():
        for i in range(12 * 16000, x.size, 160):
            eng.process(x[i:i + 160])
        done.set()

    th = threading.Thread(target=audio)
    th.start()
    copies = 0
    while not done.is_set():
        h = eng.heard()
        # a torn copy drops the hops written meanwhile (many here: this audio thread is not paced)
        assert h.size > 0 and h.size % 80 == 0
        np.testing.assert_array_equal(np.diff(h), np.float32(step))
        copies += 1
    th.join()
    assert copies > 10

    # the worst interleaving, made deterministic: the audio thread writes 10 hops (overwriting the
    # 10 oldest rows) after heard() read the count and before its copy is taken
    class Racing(np.ndarray):
        def copy(self, *args, **kw):
            eng.process(x[:800])
            return np.ndarray.copy(self, *args, **kw)

    eng.reset()
    eng.process(x[:12 * 16000])
    eng.speaker.rows = eng.speaker.rows.view(Racing)
    h = eng.heard()
    np.testing.assert_array_equal(h, x[12 * 16000 - (rows - 11) * 80:12 * 16000])
    eng.speaker.rows = eng.speaker.rows.view(np.ndarray)
    eng.reset()
    eng.process(np.zeros(160, np.float32))  # the reset forgot the input; silence is not kept
    assert eng.heard().size == 0
    eng.process(np.full(160, 0.01, np.float32))
    np.testing.assert_array_equal(eng.heard(), np.float32(0.01))
    assert eng.heard().size == 160


@pytest.mark.parametrize("voice", ["kumo", "aria"])
def test_a_voice_selected_mid_session_knows_the_speaker_as_if_it_had_played_all_along(voice):
    """Switching to a neural voice mid-session is not a cold start: the new voice learns the
    speaker from what the engine heard (``prime``), so its F0 and timbre statistics, warp and
    filterbank equal those of an engine that played that voice from the start; after a reset
    the voice starts cold again."""
    x = np.concatenate([voiced(48000, 1.5, f0=210.0, seed=4), np.zeros(4800, np.float32)])
    all_along = Engine(EngineConfig(device_rate=48000), params=Params(voice=voice, **OPEN_GATE))
    switched = Engine(EngineConfig(device_rate=48000), params=Params(voice="neutral", **OPEN_GATE))
    for eng in (all_along, switched):
        eng.process(x)
    switched.update(voice=voice)
    for eng in (all_along, switched):
        eng.process(np.zeros(480, np.float32))  # applies the switch (silence: the statistics rest)
    a, b = all_along.active.state, switched.active.state
    assert switched.active.info.name == voice
    assert a.analysis.f0[1] > 100  # voiced frames: the statistics are not empty
    for key in ("f0", "timbre", "warp"):
        np.testing.assert_array_equal(getattr(b.analysis, key), getattr(a.analysis, key), err_msg=key)
    np.testing.assert_array_equal(b.analysis.fx["fb"], a.analysis.fx["fb"])
    assert a.analysis.warp[0] != switched.active.stage.warp.unit  # the warp moved off 1: the filterbank copy is tested
    switched.reset()
    switched.update(voice="neutral")
    switched.process(np.zeros(480, np.float32))
    switched.update(voice=voice)
    switched.process(np.zeros(480, np.float32))
    assert switched.active.state.analysis.f0[1] == 0.0  # the reset forgot the speaker


def test_the_history_holds_the_speech_not_the_pause_after_it():
    """The input history (what a newly selected voice learns the speaker from) holds the hops
    the gate let through: a voice selected after 10 s of silence still learns the speaker from
    the speech before it (with the whole input kept, it heard 8 s of silence and started cold)."""
    speech = voiced(16000, 1.5, f0=210.0, seed=4)
    eng = Engine(EngineConfig(device_rate=16000), params=Params(voice="neutral", gate_threshold_db=-50.0))
    eng.process(np.concatenate([speech, np.zeros(10 * 16000, np.float32)]))
    h = eng.heard()
    # the speech from the hop where the gate's onset test let it through (a few tens of ms in),
    # then the gate's hold and release (zeros), not the 10 s pause
    o = next(o for o in range(0, 1600, 80) if np.array_equal(h[:800], speech[o:o + 800]))
    np.testing.assert_array_equal(h[:speech.size - o], speech[o:])
    tail = h[speech.size - o:]
    assert 0 < tail.size <= int(0.35 * 16000) and not np.any(tail)
    eng.update(voice="kumo")
    eng.process(np.zeros(160, np.float32))
    st = eng.active.state
    assert st.analysis.f0[1] > 100
    assert abs(2.0 ** st.analysis.f0[0] - 210.0) < 10.0


def _memory_engine(path, voice="kumo", rate=48000):
    return Engine(EngineConfig(device_rate=rate, speaker_memory=str(path)), params=Params(voice=voice))


def test_the_speaker_memory_carries_the_speaker_into_the_next_session(tmp_path):
    """``save_speaker`` writes the speech heard (16 kHz PCM, owner-only); the next engine with
    the same memory starts its voice knowing the speaker (F0 mean, voiced frames, timbre, warp),
    where an engine without it starts cold."""
    path = tmp_path / "state" / "speaker.wav"
    first = _memory_engine(path, voice="neutral")
    assert first.heard().size == 0  # no file yet: a first session
    first.process(np.concatenate([voiced(48000, 2.0, f0=210.0, seed=4), np.zeros(48000, np.float32)]))
    assert first.save_speaker()
    assert (path.stat().st_mode & 0o777) == 0o600
    x, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and 2.0 <= x.size / 16000 <= 2.3 and sf.info(path).subtype == "PCM_16"

    second = _memory_engine(path)
    cold = Engine(EngineConfig(device_rate=48000), params=Params(voice="kumo"))
    st = second.active.state
    assert cold.active.state.analysis.f0[1] == 0.0
    assert st.analysis.f0[1] > 200 and abs(2.0 ** st.analysis.f0[0] - 210.0) < 10.0
    assert st.analysis.timbre[st.analysis.timbre.size // 2] > 200  # the timbre mapper's voiced frames
    assert st.analysis.warp[0] != second.active.stage.warp.unit
    # the recalled speech is in the history: a voice selected later learns from it too
    assert x.size % second.hop == 0
    np.testing.assert_array_equal(second.heard(), x)
    # and it is exactly what priming a fresh voice with the file gives
    ref = cold.active.stage.init_state()
    cold.active.stage.prime(x, ref)
    for key in ("f0", "timbre", "warp"):
        np.testing.assert_array_equal(getattr(st.analysis, key), getattr(ref.analysis, key), err_msg=key)


def test_the_speaker_memory_is_kept_when_the_session_heard_too_little(tmp_path):
    """Less than ``SPEAKER_MEMORY_MIN_S`` of speech heard in a session (or since a reset) leaves
    the file as it was: a session the user did not speak in does not erase the speaker."""
    path = tmp_path / "speaker.wav"
    a = _memory_engine(path, voice="neutral", rate=16000)
    a.process(voiced(16000, 2.0, f0=120.0, seed=1))
    assert a.save_speaker()
    before = path.read_bytes()
    b = _memory_engine(path, voice="neutral", rate=16000)
    assert b.heard().size > 0  # recalled, not heard: not saved back
    b.process(voiced(16000, 0.5, f0=220.0, seed=2))
    assert not b.save_speaker()
    b.process(voiced(16000, 1.0, f0=220.0, seed=2))
    b.reset()
    b.process(np.zeros(1600, np.float32))
    assert not b.save_speaker()
    assert path.read_bytes() == before
    assert not Engine(EngineConfig(device_rate=16000), params=Params(voice="neutral")).save_speaker()  # no memory


@pytest.mark.parametrize("damage", ["corrupt", "rate", "empty"])
def test_a_damaged_speaker_memory_is_named_and_left_out(tmp_path, caplog, damage):
    """A memory file that cannot be used is named in the log with what was expected; the engine
    starts cold and runs; the next save replaces the file."""
    path = tmp_path / "speaker.wav"
    if damage == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    elif damage == "rate":
        sf.write(path, voiced(48000, 2.0, f0=210.0), 48000, subtype="PCM_16")
    else:
        sf.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    with caplog.at_level("WARNING", logger="rtvc.engine"):
        eng = _memory_engine(path)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in msg and "starting without it" in msg
    if damage == "rate":
        assert "48000 Hz; expected 16000 Hz" in msg
    assert eng.active.state.analysis.f0[1] == 0.0 and eng.heard().size == 0
    y = eng.process(voiced(48000, 1.5, f0=210.0))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) > 0.01
    assert eng.save_speaker()
    assert sf.info(path).samplerate == 16000


def test_speaker_memory_config_is_checked():
    with pytest.raises(ConfigError, match="speaker_memory 3; expected a file path or None"):
        EngineConfig(speaker_memory=3)
    with pytest.raises(ConfigError, match="speaker_memory ''"):
        EngineConfig(speaker_memory="")
    with pytest.raises(ConfigError, match="speaker_save_every_s 0; expected seconds > 0"):
        EngineConfig(speaker_save_every_s=0)


def test_forgetting_the_speaker_hands_the_voice_to_the_next_one(tmp_path):
    """``forget_speaker`` (someone else takes the microphone): the voice's F0 statistics follow
    the new speaker alone (without it they keep a mix of both), the memory file is deleted, and
    the next save holds only the new speaker's speech."""
    path = tmp_path / "speaker.wav"
    a, b = voiced(48000, 2.0, f0=210.0, seed=4), voiced(48000, 1.5, f0=120.0, seed=5)
    kept = _memory_engine(path)
    handed = _memory_engine(path)
    for eng in (kept, handed):
        eng.process(a)
    assert handed.save_speaker() and path.exists()
    assert handed.forget_speaker() is True and not path.exists()
    assert handed.heard().size == 0 and handed.speaker_s == 0.0  # nothing of the first speaker is offered
    for eng in (kept, handed):
        y = eng.process(b)
        assert np.all(np.isfinite(y)) and np.max(np.abs(y[4800:])) > 0.05
    f0_kept, f0_new = (2.0 ** e.active.state.analysis.f0[0] for e in (kept, handed))
    assert abs(f0_new - 120.0) < 8.0 and f0_kept - 120.0 > 20.0, (f0_new, f0_kept)
    assert handed.save_speaker()  # the new speaker only
    x, _ = sf.read(path, dtype="float32")
    assert 1.0 * 16000 <= x.size <= b.size // 3 and handed.speaker_s == pytest.approx(x.size / 16000)
    assert handed.forget_speaker() and not handed.forget_speaker()  # the second time: no file left to delete


class _Learner(DelayStage):
    """A stage that 'learns the speaker': its output level creeps from -0.5 (fresh) to +0.5."""

    def init_state(self):
        return {"v": -0.5, "out": np.zeros(self.hop, np.float32)}

    def step(self, x, state):
        state["v"] = min(0.5, state["v"] + 0.001)
        state["out"][:] = state["v"]
        return state["out"], state

    def prime(self, x, state):
        state["v"] = 0.5
        return 0


class _LearnerRegistry(VoiceRegistry):
    def __init__(self):
        super().__init__(model_dirs=[])

    def make_stage(self, info, *, model_rate=16000, hop=80, device="cpu"):
        return _Learner(0, hop=hop)


def test_the_forget_swap_is_crossfaded_without_a_click():
    """The settled voice (+0.5) hands over to a fresh one (-0.5): a hard swap would jump by 1.0;
    the crossfade ramps over ``CROSSFADE_HOPS`` (1/320 per sample at 16 kHz)."""
    eng = Engine(EngineConfig(device_rate=16000), registry=_LearnerRegistry(), params=Params(**OPEN_GATE))
    y0 = eng.process(np.full(6 * 16000, 0.1, np.float32))  # 1200 hops: the voice settled at +0.5
    assert y0[-1] == pytest.approx(0.5)
    eng.forget_speaker()
    y = np.concatenate([y0[-800:], eng.process(np.full(1600, 0.1, np.float32))])
    assert np.max(np.abs(np.diff(y))) < 0.006
    assert y[-1] < -0.3  # the fresh voice plays, learning again


def test_a_voice_chosen_while_a_forget_waits_starts_cold_and_a_failed_forget_forgets_nothing(monkeypatch):
    """Between ``forget_speaker`` and the block that applies it, a newly selected voice must not
    learn the old speaker; a forget whose fresh voice cannot load changes nothing."""
    eng = Engine(EngineConfig(device_rate=16000), params=Params(voice="kumo"))
    eng.process(voiced(16000, 1.5, f0=210.0, seed=4))
    before = eng.heard()
    real = eng.registry.make_stage

    def broken(*a, **k):
        raise ModelError("kumo.onnx: damaged")

    monkeypatch.setattr(eng.registry, "make_stage", broken)
    with pytest.raises(ModelError, match="damaged"):
        eng.forget_speaker()
    np.testing.assert_array_equal(eng.heard(), before)
    monkeypatch.setattr(eng.registry, "make_stage", real)
    eng.forget_speaker()
    eng.update(voice="aria")  # loaded now, before any block applied the forget
    eng.process(np.zeros(160, np.float32))
    assert eng.active.info.name == "aria" and eng.active.state.analysis.f0[1] == 0.0


def test_a_forget_survives_a_full_command_queue():
    """With nobody draining the queue (a stopped stream), a forget still lands: the pending
    commands are merged and the forget is kept in order."""
    eng = Engine(EngineConfig(device_rate=16000, queue_size=4), params=Params(voice="kumo"))
    eng.process(voiced(16000, 1.5, f0=210.0, seed=4))
    for g in range(6):
        eng.update(output_gain_db=float(-g))
    eng.forget_speaker()
    eng.update(pitch_st=2.0)
    eng.process(np.zeros(160, np.float32))
    assert eng.live_params.pitch_st == 2.0 and eng.live_params.output_gain_db == -5.0
    assert eng.active.state.analysis.f0[1] == 0.0 and eng.speaker_s <= 0.01


def test_the_speaker_memory_is_saved_while_running_when_there_is_new_speech(tmp_path):
    """``save_speaker_if_due`` (the supervisor or the worker's control thread calls it): every
    ``speaker_save_every_s`` (30 s by default) with new speech since the last save, never without."""
    every = EngineConfig().speaker_save_every_s
    assert every == 30.0
    path = tmp_path / "speaker.wav"
    eng = _memory_engine(path, voice="neutral", rate=16000)
    assert not eng.save_speaker_if_due(100.0)  # the first call starts the clock
    eng.process(voiced(16000, 1.5, f0=210.0, seed=4))
    assert not eng.save_speaker_if_due(100.0 + every - 1.0) and not path.exists()
    assert eng.save_speaker_if_due(100.0 + every) and path.exists()
    eng.process(np.zeros(16000, np.float32))  # a pause: no new speech (after the gate's tail)
    eng.save_speaker_if_due(100.0 + 2 * every)
    mtime = path.stat().st_mtime_ns
    eng.process(np.zeros(16000, np.float32))
    assert not eng.save_speaker_if_due(100.0 + 3 * every) and path.stat().st_mtime_ns == mtime
    eng.process(voiced(16000, 0.5, f0=210.0, seed=6))
    assert eng.save_speaker_if_due(100.0 + 3.5 * every)  # new speech, the last save 1.5 periods ago
    eng.process(voiced(16000, 0.5, f0=210.0, seed=7))
    assert not eng.save_speaker_if_due(100.0 + 4 * every)  # too soon
    assert eng.save_speaker_if_due(100.0 + 4.5 * every)
    assert not Engine(EngineConfig(device_rate=16000), params=Params(voice="neutral")).save_speaker_if_due(1e9)
