"""rtvc.audio without a sound card: device lookup on a fake device list, settings checks on a
fake PortAudio, the callbacks and the worker step on their rings, and the file-driven runner.

References: the mono mixdown is checked against ``ndarray.mean``; the file-driven runner's
output against the same engine run offline (``Engine.process`` on the whole signal). Time in
the block worker's margin logic moves with an injected clock (:class:`FakeClock`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import rtvc.audio as audio
from rtvc.audio import LiveRunner, check_settings, devices, resolve_device
from rtvc.audio.files import FileWriter
from rtvc.audio.rings import Rings
from rtvc.audio.streams import PythonCallbacks, inheritable_priority
from rtvc.audio.worker import WIDEN_GRACE_S
from rtvc.engine import Engine, EngineConfig
from rtvc.errors import AudioFileError, ConfigError, DeviceError
from rtvc.params import Params
from rtvc.telemetry import Counter
from tests.test_cli import FAKE_DEVICES, fake_devices  # noqa: F401  (fixture)


class FakePortAudio:
    """Accepts only ``rates`` and at most the listed channel counts."""

    PortAudioError = RuntimeError

    def __init__(self, rates: tuple[int, ...] = (44100, 48000)) -> None:
        self.rates = rates

    def _check(self, kind: str, device: int, channels: int, samplerate: float, **_: Any) -> None:
        d = FAKE_DEVICES[device]
        if channels > d[f"max_{kind}_channels"]:
            raise RuntimeError("Invalid number of channels [PaErrorCode -9998]")
        if samplerate not in self.rates:
            raise RuntimeError("Invalid sample rate [PaErrorCode -9997]")

    def check_input_settings(self, device: int, channels: int, dtype: str, samplerate: float) -> None:
        self._check("input", device, channels, samplerate)

    def check_output_settings(self, device: int, channels: int, dtype: str, samplerate: float) -> None:
        self._check("output", device, channels, samplerate)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def fake_pa(monkeypatch: pytest.MonkeyPatch, fake_devices: list) -> FakePortAudio:
    pa = FakePortAudio()
    monkeypatch.setattr(devices, "load_sounddevice", lambda: pa)
    return pa


# ---------------------------------------------------------------------- device lookup
def test_resolve_by_index_name_and_default(fake_devices: list) -> None:
    assert resolve_device(None, "input") == 0 and resolve_device("default", "output") == 0
    assert resolve_device(2, "input") == 2 and resolve_device("3", "output") == 3
    assert resolve_device("usb headset mic", "input") == 2
    assert resolve_device("USB HEADSET", "input") == 2  # two matches, one of them can capture
    assert resolve_device("usb headset", "output") == 3
    assert resolve_device("hdmi", "output") == 1


def test_resolve_errors(fake_devices: list) -> None:
    with pytest.raises(DeviceError, match=r"no input device matches 'webcam'; candidates: \[0\] .*\[2\] USB Headset Mic"):
        resolve_device("webcam", "input")
    with pytest.raises(DeviceError, match=r"output device 'hda intel' is ambiguous; it matches: \[0\].*; \[1\]"):
        resolve_device("hda intel", "output")
    with pytest.raises(DeviceError, match=r"\[1\] HDA Intel PCH: HDMI 0 .* has no input channels"):
        resolve_device("HDMI", "input")
    with pytest.raises(DeviceError, match=r"input device index 7 does not exist"):
        resolve_device(7, "input")
    with pytest.raises(ConfigError, match=r"device kind 'both' is not known"):
        resolve_device(0, "both")


def test_exact_name_wins_over_substring(fake_devices: list) -> None:
    fake_devices.append({**fake_devices[2], "index": 4, "name": "USB Headset Mic (2)"})
    assert resolve_device("usb headset mic", "input") == 2
    with pytest.raises(DeviceError, match=r"ambiguous"):
        resolve_device("headset mic", "input")


def test_no_default_device(fake_devices: list) -> None:
    for d in fake_devices:
        d["default_input"] = d["default_output"] = False
    with pytest.raises(DeviceError, match=r"there is no default output device; pick one of: \[0\]"):
        resolve_device(None, "output")
    fake_devices[:] = [d for d in fake_devices if d["index"] != 0]
    assert resolve_device(None, "input") == 2  # the only capture device


def test_check_settings_says_what_works(fake_pa: FakePortAudio) -> None:
    check_settings(input=0, output=0, rate=48000, input_channels=2)
    with pytest.raises(DeviceError, match=r"refuses 16000 Hz .* default rate is 44100 Hz and it accepts "
                                          r"\[44100, 48000\] of the supported rates"):
        check_settings(input=0, output=3, rate=16000)
    with pytest.raises(DeviceError, match=r"USB Headset Mic .* cannot open 2 channels; it has 1"):
        check_settings(input=2, rate=48000, input_channels=2)
    with pytest.raises(DeviceError, match=r"device rate 12345 Hz is not supported; expected one of"):
        check_settings(input=0, rate=12345)


# ---------------------------------------------------------------------- callbacks and worker
def _file_runner(tmp_path: Path, *, rate: int = 16000, seconds: float = 0.5, **kw: Any) -> LiveRunner:
    p = tmp_path / "in.wav"
    t = np.arange(int(rate * seconds)) / rate
    sf.write(p, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate, subtype="FLOAT")
    eng = Engine(EngineConfig(device_rate=rate), params=kw.pop("params", Params()))
    return LiveRunner(eng, input_file=p, null_output=True, **kw)


def test_input_callback_mixes_down_or_selects() -> None:
    data = np.random.default_rng(0).standard_normal((37, 3)).astype(np.float32)
    for ch, ref in ((-1, data.mean(axis=1)), (2, data[:, 2])):
        rings = Rings.local(1024)
        PythonCallbacks(rings, channel=ch).input(data, 37, None, None)
        got = np.zeros(37, np.float32)
        assert rings.input.readinto(got) == 37
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_callbacks_count_status_and_underflow(tmp_path: Path) -> None:
    r = _file_runner(tmp_path)
    rings = r.allocate()
    cbs = PythonCallbacks(rings, channel=-1)
    b = r.block
    out = np.full((2 * b, 2), 9.0, np.float32)
    cbs.output(out, 2 * b, None, None)  # one block of pre-fill, then dry
    assert np.all(out == 0.0)
    cbs.input(np.zeros((b, 1), np.float32), b, None, "input overflow")
    r.collect()
    # dry before the first block is written: the device started first (not an xrun)
    assert r.stats["startup_underflows"] == 1 and r.stats["output_underflows"] == 0
    assert r.stats["input_status_flags"] == 1 and r.engine.counters["xruns"] == 1
    assert r.step()  # the first block; a dry callback after it is a glitch
    out = np.zeros((rings.output.read_available() + b, 2), np.float32)
    cbs.output(out, out.shape[0], None, None)
    r.collect()
    assert r.stats["output_underflows"] == 1 and r.stats["startup_underflows"] == 1
    assert r.engine.counters["xruns"] == 2
    y = np.arange(b, dtype=np.float32)
    rings.output.write(y)
    out = np.zeros((b, 2), np.float32)
    cbs.output(out, b, None, None)
    np.testing.assert_array_equal(out, np.stack([y, y], axis=1))
    r.collect()
    assert r.engine.counters["xruns"] == 2


def test_worker_drops_the_oldest_blocks(tmp_path: Path) -> None:
    r = _file_runner(tmp_path, params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0), max_backlog_blocks=2)
    rings = r.allocate()
    b = r.block
    assert not r.step()  # nothing waiting
    for k in range(6):
        rings.input.write(np.full(b, 0.01 * (k + 1), np.float32))
    assert r.step()
    assert r.engine.counters["dropped_blocks"] == 5 and rings.input.read_available() == 0
    # the newest block was kept: the block the worker read last (private: no seam shows the input it took)
    np.testing.assert_array_equal(r.home.block_worker._x, np.full(b, 0.06, np.float32))
    for k in range(3):  # within the bound: nothing dropped
        rings.input.write(np.full(b, 0.1, np.float32))
    assert r.step() and r.step() and r.step() and not r.step()
    assert r.engine.counters["dropped_blocks"] == 5
    assert r.stats["worker_blocks"] == 4


# ---------------------------------------------------------------------- file-driven runner
@pytest.mark.parametrize("rate,block_ms", [(16000, 10.0), (48000, 5.0), (44100, 20.0)])
def test_file_runner_equals_offline_engine(tmp_path: Path, rate: int, block_ms: float) -> None:
    src = tmp_path / "speech.wav"
    t = np.arange(int(0.8 * rate)) / rate
    x = (0.2 * sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 15))).astype(np.float32)
    sf.write(src, x, rate, subtype="FLOAT")
    params = Params(voice="higher", pitch_st=4.0, formant_ratio=1.12)
    eng = Engine(EngineConfig(device_rate=rate), params=params)
    out = tmp_path / "out.wav"
    with LiveRunner(eng, input_file=src, output_file=out, block_ms=block_ms, realtime=False) as r:
        assert r.finished.wait(60.0)
        assert r.running
    assert not r.running
    r.stop()  # idempotent
    y, sr = sf.read(out, dtype="float32")
    assert sr == rate
    # reference: a fresh engine, offline, on x (the runner warms up a throwaway engine, so this
    # engine's stream starts at sample 0); the runner's output file starts with its one block of
    # output pre-fill
    b = r.block
    ref_eng = Engine(EngineConfig(device_rate=rate), params=params)
    ref = ref_eng.process(np.concatenate([x, np.zeros(rate, np.float32)]))
    n = min(y.shape[0] - b, x.shape[0])
    assert n > x.shape[0] - b
    np.testing.assert_allclose(y[b:b + n], np.clip(ref[:n], -1, 1), atol=1.0 / 32768 + 1e-6)
    assert np.max(np.abs(y)) > 0.05
    assert eng.counters["dropped_blocks"] == 0 and eng.counters["xruns"] == 0


def test_runner_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"block size 1 ms is out of range; expected 2\.5\.\.100"):
        _file_runner(tmp_path, block_ms=1)
    with pytest.raises(ConfigError, match=r"input channel -1 is out of range"):
        _file_runner(tmp_path, channel=-1)
    eng = Engine(EngineConfig(device_rate=16000))
    with pytest.raises(ConfigError, match=r"exclude each other"):
        LiveRunner(eng, input_file=tmp_path / "in.wav", output_file=tmp_path / "o.wav", null_output=True)
    with pytest.raises(ConfigError, match=r"realtime=False"):
        LiveRunner(eng, input_file=tmp_path / "in.wav", realtime=False)


def test_set_devices_keeps_running_on_a_bad_combination(tmp_path: Path, fake_pa: FakePortAudio) -> None:
    r = _file_runner(tmp_path, rate=16000, loop=True)
    before = r.devices
    assert before == {"input": f"file:{tmp_path / 'in.wav'}", "output": "null", "monitor": None, "rate": 16000}
    with r:
        with pytest.raises(DeviceError, match=r"no output device matches 'nope'"):
            r.set_devices(monitor="nope")
        with pytest.raises(DeviceError, match=r"refuses 16000 Hz"):
            r.set_devices(monitor="usb headset")  # FakePortAudio accepts 44100 / 48000 only
        assert r.running and r.devices == before
        with pytest.raises(DeviceError, match=r"device rate 1000 Hz is not supported"):
            r.set_devices(rate=1000)
        assert r.running and r.devices == before
        # a valid change of rate: same engine, resampled at the device edge
        assert r.set_devices(rate=48000)["rate"] == 48000
        assert r.running and r.engine.config.device_rate == 16000
        n0 = r.stats["worker_blocks"]
        import time

        t_end = time.monotonic() + 20.0
        while r.stats["worker_blocks"] < n0 + 5 and time.monotonic() < t_end:
            time.sleep(0.01)
        assert r.stats["worker_blocks"] >= n0 + 5
    assert not r.running


def test_worker_failure_is_reported_not_silent(tmp_path: Path) -> None:
    r = _file_runner(tmp_path, realtime=False)
    r.engine.process(np.zeros(160, np.float32))  # the engine is warm: start() will not call it
    calls = []

    def broken(x: np.ndarray, y: np.ndarray) -> None:
        calls.append(x.shape[0])
        raise FloatingPointError("stage exploded")

    r.engine.process_into = broken
    r.start()
    try:
        assert r.finished.wait(30.0)
    finally:
        r.stop()
    assert calls and isinstance(r.error, FloatingPointError) and "stage exploded" in str(r.error)


def test_dead_stream_is_reopened_by_the_supervisor(tmp_path: Path) -> None:
    class DeadStream:
        active = False
        closed = False
        kind = "output"

        def stop(self) -> None:
            raise RuntimeError("the device is gone")  # a dead stream may refuse to stop

        def close(self) -> None:
            self.closed = True

    import time

    r = _file_runner(tmp_path, loop=True)
    with r:
        assert not r.restart_dead_streams()  # nothing wrong
        dead = DeadStream()
        r.streams.streams.append(dead)  # as if PortAudio had stopped a stream after a host API error
        t_end = time.monotonic() + 20.0
        while r.stats["stream_restarts"] < 1 and time.monotonic() < t_end:
            time.sleep(0.02)
        assert r.stats["stream_restarts"] == 1 and r.stats["device_losses"] == 1
        assert dead.closed and r.running and dead not in r.streams.streams
        assert r.restart_dead_streams() and not r.restart_dead_streams()  # reported once
        assert [f["kind"] for f in r.faults] == ["device_lost", "device_back"]
        assert "output stream stopped" in r.faults[0]["message"]
        assert r.summary()["stream_state"] == "running" and r.engine.telemetry()["stream_state"] == "running"
        assert r.engine.telemetry()["last_fault"].startswith("device_back")
    assert not r.running and r.stream_state == "stopped"


# ---------------------------------------------------------------------- never creep, profiles, counters
def test_new_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"callback 'c' is not known; expected one of \('native', 'python'\)"):
        _file_runner(tmp_path, callback="c")
    with pytest.raises(ConfigError, match=r"profile 'quiet' is not known; expected one of \('live', 'gaming'\)"):
        _file_runner(tmp_path, profile="quiet")
    with pytest.raises(ConfigError, match=r"audio backend 'jack' is not known; expected one of \('portaudio', 'pulse'\)"):
        _file_runner(tmp_path, backend="jack")
    with pytest.raises(ConfigError, match=r"pulse backend runs native callbacks only"):
        _file_runner(tmp_path, backend="pulse", callback="python")
    with pytest.raises(ConfigError, match=r"out_margin_blocks 20 is out of range; expected 0\.\.16"):
        _file_runner(tmp_path, out_margin_blocks=20)
    with pytest.raises(ConfigError, match=r"stall_timeout_s 0 is out of range"):
        _file_runner(tmp_path, stall_timeout_s=0)
    with pytest.raises(ConfigError, match=r"switch_interval_ms 0 is out of range"):
        _file_runner(tmp_path, switch_interval_ms=0)
    g = _file_runner(tmp_path, profile="gaming")
    assert g.max_backlog_blocks == 6 and g.out_margin_blocks == 2.0 and g.device_latency == "high"


def test_output_ring_is_trimmed_to_its_margin(tmp_path: Path) -> None:
    """A device output ring that holds too much (as after a burst of input) comes back to the
    margin: the level seen before each write, minimised over a window, ends at the margin."""
    r = _file_runner(tmp_path, params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0), out_margin_blocks=0.5)
    rings = r.allocate()
    r.home.block_worker.device_out = True  # as if a device consumed the output ring
    b = r.block
    rings.output.write(np.zeros(3 * b, np.float32))  # 4 blocks queued in all (the cap)
    sink = np.zeros(b, np.float32)
    levels = []
    for _ in range(4 * r.home.block_worker.win_blocks):
        rings.input.write(np.full(b, 0.1, np.float32))
        assert r.step()
        levels.append(rings.output.read_available())
        rings.output.readinto(sink)  # the device takes one block per block
    # reference: after trimming, the level right after a write is one block + the margin
    assert levels[-1] == b + b // 2, levels[-5:]
    assert r.stats["trimmed_samples"] == 4 * b - b // 2  # the pre-write level went from 4 blocks to the margin
    assert r.engine.gauges["buffer_age_ms"] == pytest.approx(1000.0 * (b + b // 2) / r.rate)
    assert r.engine.gauges["buffer_age_ms"] <= r.target_buffer_age_ms
    assert r.engine.counters["dropped_blocks"] == 0


def test_native_counters_become_stats_and_gaming_widens(tmp_path: Path) -> None:
    clock = FakeClock()
    r = _file_runner(tmp_path, profile="gaming", clock=clock)
    rings = r.allocate()
    out, inp = rings.counts["output"], rings.counts["input"]
    b = r.block
    t0 = r.target_buffer_age_ms
    # before the pipeline has produced anything an underflow is the device starting first, with
    # nothing to play yet: counted apart, not an xrun, and the margin stays
    out[Counter.OUT_RING_EMPTY_EVENTS] = 1
    out[Counter.OUT_RING_EMPTY] = b
    out[Counter.PA_OUTPUT_UNDERFLOW] = 1
    r.collect()
    assert r.stats["startup_underflows"] == 1 and r.stats["output_underflows"] == 0
    assert r.engine.counters["xruns"] == 0 and r.margin_blocks == 2.0
    # the first block: from now on (two seconds later for the margin) underflows are glitches
    rings.input.write(np.zeros(b, np.float32))
    assert r.step()
    r.collect()
    assert r.stats["startup_underflows"] == 1 and r.engine.counters["xruns"] == 0
    clock.advance(WIDEN_GRACE_S)  # the grace period is over
    out[Counter.OUT_RING_EMPTY_EVENTS] = 3
    out[Counter.OUT_RING_EMPTY] = b + b // 3
    out[Counter.PA_OUTPUT_UNDERFLOW] = 2
    inp[Counter.IN_RING_FULL_EVENTS] = 3
    inp[Counter.CALLBACKS] = 10
    r.collect()
    s = r.stats
    assert (s["output_underflows"], s["output_status_flags"], s["input_overflows"], s["callbacks"]) == (2, 1, 3, 10)
    assert s["missing_samples"] == b // 3
    assert r.engine.counters["xruns"] == 6
    # the underflow (a third of a block missing) widened the output margin by one step (gaming: a
    # block), and the target with it
    assert r.margin_blocks == 3.0 and r.target_buffer_age_ms == pytest.approx(t0 + r.block_ms)
    r.collect()  # nothing new: nothing counted twice
    assert r.engine.counters["xruns"] == 6
    assert _file_runner(tmp_path).config.margin_max_blocks == 2.0  # live: 20 ms at 10 ms blocks ...
    assert _file_runner(tmp_path).margin_blocks == 1.0  # live starts at one block
    clock = FakeClock()
    live = _file_runner(tmp_path, block_ms=5.0, out_margin_blocks=0.5, clock=clock)  # the steps from half a block
    rings = live.allocate()
    out = rings.counts["output"]
    assert live.config.margin_max_blocks == 4.0  # ... and at 5 ms blocks
    b = live.block
    rings.input.write(np.zeros(b, np.float32))
    assert live.step()  # the first block ...
    clock.advance(WIDEN_GRACE_S)  # ... written 2 s ago
    out[Counter.OUT_RING_EMPTY_EVENTS] = 4
    out[Counter.OUT_RING_EMPTY] = 3 * b
    live.collect()
    assert live.margin_blocks == 1.0  # a first, isolated shortfall (a hiccup): one step
    clock.advance(1.0)  # a second episode, within 60 s of the first: recurring jitter
    out[Counter.OUT_RING_EMPTY_EVENTS] = 5
    out[Counter.OUT_RING_EMPTY] += b + b // 5
    live.collect()
    # the live profile widens by what was missing, in half blocks (rounded): 1.2 blocks -> +1.0 ...
    assert live.margin_blocks == 2.0
    out[Counter.OUT_RING_EMPTY_EVENTS] = 6
    out[Counter.OUT_RING_EMPTY] += b // 2
    live.collect()  # ... the same episode (under 0.25 s later): 1.7 blocks in all -> +1.5 ...
    assert live.margin_blocks == 2.5
    clock.advance(1.0)  # a new episode
    out[Counter.OUT_RING_EMPTY_EVENTS] = 7
    out[Counter.OUT_RING_EMPTY] += 60 * b
    live.collect()
    assert live.margin_blocks == 3.0  # ... an outage longer than the widest margin: one step
    clock.advance(1.0)
    out[Counter.OUT_RING_EMPTY_EVENTS] = 8
    out[Counter.OUT_RING_EMPTY] += 3 * b
    live.collect()
    assert live.margin_blocks == 4.0  # 3.0 + 3 blocks, capped at 20 ms
    # ... and narrows by half a block after each 30 s without one, down to where it started
    clock.advance(31.0)
    live.collect()
    assert live.margin_blocks == 3.5 and live.target_buffer_age_ms == pytest.approx(6.5 * live.block_ms)
    live.collect()
    assert live.margin_blocks == 3.5  # the next step waits another 30 s
    for _ in range(8):
        clock.advance(31.0)
        live.collect()
    assert live.margin_blocks == 0.5


def test_margin_narrows_only_when_the_ring_kept_a_step_of_headroom(tmp_path: Path) -> None:
    clock = FakeClock()
    r = _file_runner(tmp_path, params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0), out_margin_blocks=0.5,
                     clock=clock)
    rings = r.allocate()
    core, b = r.home.block_worker, r.block
    core.device_out = True  # as if a device consumed the output ring
    rings.input.write(np.zeros(b, np.float32))
    assert r.step()  # the first block ...
    clock.advance(WIDEN_GRACE_S)  # ... written 2 s ago
    rings.counts["output"][Counter.OUT_RING_EMPTY_EVENTS] = 1
    rings.counts["output"][Counter.OUT_RING_EMPTY] = b
    r.collect()
    assert r.margin_blocks == 1.0
    # the ring came down to a quarter block before a write during the 30 s: keep the margin
    rings.output.readinto(np.zeros(rings.output.read_available(), np.float32))
    rings.output.write(np.zeros(b // 4, np.float32))
    rings.input.write(np.zeros(b, np.float32))
    assert r.step()
    clock.advance(31.0)
    r.collect()
    assert r.margin_blocks == 1.0
    # the next 30 s the lowest level was a block and a half (the device took the rest): narrow
    # (by two half-block steps, leaving one step of headroom; it stops at its base, half a block)
    rings.output.readinto(np.zeros(rings.output.read_available(), np.float32))
    rings.output.write(np.zeros(b + b // 2, np.float32))
    rings.input.write(np.zeros(b, np.float32))
    assert r.step()
    clock.advance(31.0)
    r.collect()
    assert r.margin_blocks == 0.5


def test_margin_widened_by_a_burst_comes_back_in_one_calm_period(tmp_path: Path) -> None:
    clock = FakeClock()
    r = _file_runner(tmp_path, params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0), out_margin_blocks=0.5,
                     clock=clock)
    rings = r.allocate()
    core, b = r.home.block_worker, r.block
    core.device_out = True
    core.margin_blocks = 4.0  # where a burst left it
    # 30 s of calm: the ring's lowest level before a write was 3.25 blocks, so 0.75 block was used
    rings.output.readinto(np.zeros(rings.output.read_available(), np.float32))
    rings.output.write(np.zeros(3 * b + b // 4, np.float32))
    rings.input.write(np.zeros(b, np.float32))
    assert r.step()
    clock.advance(31.0)
    r.collect()
    # 5 of the 6 unused half-block steps go at once: the deepest dip (0.75 block) keeps at least
    # a step (0.5 block) of headroom; it was one step per 30 s
    assert r.margin_blocks == 1.5 and r.target_buffer_age_ms == pytest.approx(4.5 * r.block_ms)


def test_file_writer_accounts_for_every_sample(tmp_path: Path) -> None:
    w = FileWriter(tmp_path / "o.wav", 16000, max_pending_s=0.01)  # 160 samples may wait
    w.put(np.full(100, 0.5, np.float32))
    assert w.flush() and w.written_samples == 100
    w.put(np.full(100, 0.25, np.float32))
    w.put(np.full(100, 2.0, np.float32))  # over the pending cap: the oldest waiting block is lost, counted
    assert w.lost_samples == 100 and w.pending_samples == 100
    err = w.close()
    assert err is not None and "incomplete" in err and "0.01 s of 0.02 s written" in err
    y, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    np.testing.assert_allclose(y, np.r_[np.full(100, 0.5), np.full(100, 1.0)], atol=1 / 32768)  # clipped
    with pytest.raises(AudioFileError, match=r"folder .* does not exist"):
        FileWriter(tmp_path / "nope" / "o.wav", 16000)


def test_cli_run_flags_reach_the_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rtvc.cli import main

    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000, subtype="FLOAT")
    assert main(["run", "--input-file", str(wav), "--null-output", "--callback", "python", "--profile", "gaming",
                 "--device-block-ms", "5", "--duration", "0.3", "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["callback"], s["profile"], s["max_backlog_blocks"]) == ("python", "gaming", 6)
    assert s["stream_state"] == "stopped" and s["faults"] == [] and s["file_error"] is None
    assert main(["run", "--input-file", str(wav), "--null-output", "--device-block-ms", "20", "--duration", "0.3"]) == 2
    assert "--device-block-ms 20 is out of range; expected 1..10" in capsys.readouterr().err


def test_threads_started_while_opening_streams_run_above_the_worker() -> None:
    """Audio-library threads (libpulse's mainloop; PortAudio's callback thread, which sets FIFO 1
    itself) end at the asked priority, one above the worker's; unrelated threads are left alone."""
    import os
    import threading

    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, before[0], before[1])
    except (OSError, AttributeError):
        pytest.skip("SCHED_FIFO is not permitted here")
    stop = threading.Event()
    tids: dict[str, int] = {}

    def run(name: str, own_priority: int | None) -> None:
        if own_priority is not None:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(own_priority))
        tids[name] = threading.get_native_id()
        stop.wait(5)

    outside = threading.Thread(target=run, args=("outside", None))
    outside.start()
    with inheritable_priority(11):
        assert os.sched_getparam(0).sched_priority == 11  # inherited by threads started now
        started = [threading.Thread(target=run, args=(n, p)) for n, p in (("plain", None), ("own_fifo_1", 1),
                                                                          ("own_fifo_20", 20))]
        for t in started:
            t.start()
        while len(tids) < 4:
            time.sleep(0.01)
    try:
        assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before  # this thread restored
        prio = {n: (os.sched_getscheduler(t), os.sched_getparam(t).sched_priority) for n, t in tids.items()}
        assert prio["plain"] == (os.SCHED_FIFO, 11) and prio["own_fifo_1"] == (os.SCHED_FIFO, 11)
        assert prio["own_fifo_20"] == (os.SCHED_FIFO, 20)  # above already: kept
        assert prio["outside"] == (os.SCHED_OTHER, 0)
    finally:
        stop.set()
        for t in [outside, *started]:
            t.join()


def test_pulse_backend_without_a_server_is_a_clear_device_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtvc.audio import pulse

    if not pulse.available():
        pytest.skip("libpulse is not installed")
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path / 'no-such-socket'}")
    eng = Engine(EngineConfig(device_rate=48_000))
    with pytest.raises(DeviceError, match=r"PulseAudio server"):
        LiveRunner(eng, backend="pulse")


def test_pulse_device_table_has_portaudio_rows() -> None:
    listing = {"sinks": [{"name": "spk", "index": 3, "description": "Speakers", "channels": 2, "rate": 44100}],
               "sources": [{"name": "mic", "index": 3, "description": "Mic", "channels": 1, "rate": 48000},
                           {"name": "spk.monitor", "index": 4, "description": "Monitor", "channels": 2, "rate": 44100}],
               "default_sink": "spk", "default_source": "mic"}
    rows = audio.pulse_device_table(listing)
    assert [(r["kind"], r["name"], r["max_input_channels"], r["max_output_channels"]) for r in rows] == [
        ("source", "mic", 1, 0), ("source", "spk.monitor", 2, 0), ("sink", "spk", 0, 2)]
    assert [r["name"] for r in rows if r["default_input"]] == ["mic"]
    assert [r["name"] for r in rows if r["default_output"]] == ["spk"]
    keys = {"index", "name", "hostapi", "max_input_channels", "max_output_channels", "default_samplerate",
            "default_input", "default_output"}
    assert all(keys <= set(r) and r["hostapi"] == "PulseAudio" for r in rows)
    with pytest.raises(ConfigError, match=r"audio backend 'oss' is not known"):
        audio.list_devices("oss")


def _after_a_stall(tmp_path: Path, *, report: str | None) -> tuple[LiveRunner, list[int], int]:
    """Steady state at the margin, then a stall: the device takes three blocks while the worker
    is held (two of them missing: silence was played), the input delivered three meanwhile; the
    worker catches up and the steady state resumes. ``report``: who counts the underflow (the
    ring's callback, the device's status, or nobody). Returns the runner, the pre-write output
    levels from the first block after the catch-up on, and the block."""
    r = _file_runner(tmp_path, params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    rings = r.allocate()
    core, b = r.home.block_worker, r.block
    core.device_out = True  # as if a device consumed the output ring
    phase = [0]

    def arrive(n: int) -> None:
        t = (phase[0] + np.arange(n * b)) / r.rate
        phase[0] += n * b
        rings.input.write((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))

    sink = np.zeros(4 * b, np.float32)
    assert rings.output.read_available() == b  # the runner starts the ring at the margin (one block)
    for _ in range(2 * core.win_blocks):
        arrive(1)
        assert r.step()
        rings.output.readinto(sink[:b])
    assert r.stats["trimmed_samples"] == 0 and rings.output.read_available() == b
    rings.output.readinto(sink[:b])  # the stall: one block there, two missing
    if report == "ring":
        rings.counts["output"][Counter.OUT_RING_EMPTY_EVENTS] += 1
        rings.counts["output"][Counter.OUT_RING_EMPTY] += 2 * b
    elif report == "device":
        rings.counts["output"][Counter.PA_OUTPUT_UNDERFLOW] += 1
    r.collect()
    arrive(3)
    for _ in range(3):  # the catch-up: a backlog, no cut
        assert r.step()
    assert r.stats["trimmed_samples"] == 0 and rings.output.read_available() == 3 * b
    levels = []
    for _ in range(3 * core.win_blocks):
        levels.append(rings.output.read_available())
        arrive(1)
        assert r.step()
        rings.output.readinto(sink[:b])
    return r, levels, b


@pytest.mark.parametrize("report", ["ring", "device"])
def test_after_an_underflow_the_delay_it_added_is_cut_within_a_tenth_of_a_second(tmp_path: Path, report: str) -> None:
    """The silence that filled an underflow delays everything behind it; once the worker has
    caught up the ring stands that far (two blocks) above its margin. The window that measures
    the ring restarts short after an underflow, so the excess is cut within ~0.1 s of the
    catch-up (not 0.5-1 s), and it is all cut: the level comes back to the margin exactly."""
    r, levels, b = _after_a_stall(tmp_path, report=report)
    core = r.home.block_worker
    assert levels[0] == 3 * b  # two blocks above the margin
    back = next(i for i, v in enumerate(levels) if v == b)
    assert core.recheck_blocks <= back <= core.recheck_blocks + 4, levels[:30]  # cut as soon as measured
    assert levels[back:] == [b] * (len(levels) - back)  # and nothing more
    assert r.stats["trimmed_samples"] == 2 * b and r.engine.counters["xruns"] == 1
    # reference: the same stall without the underflow counted waits for the full window
    r2, levels2, _ = _after_a_stall(tmp_path, report=None)
    back2 = next(i for i, v in enumerate(levels2) if v == b)
    assert back2 > core.win_blocks - 5 and r2.stats["trimmed_samples"] == 2 * b
