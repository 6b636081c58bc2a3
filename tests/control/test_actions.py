"""The action layer shared by the websocket, the HTTP buttons and the hotkeys."""

from __future__ import annotations

import numpy as np
import pytest

from rtvc.control import protocol as P
from rtvc.control.actions import ACTIONS, Controller
from rtvc.control.devices import SelfTest
from rtvc.control.presets import PresetStore
from rtvc.engine import Engine, EngineConfig
from rtvc.errors import ControlError
from rtvc.params import Params
from tests.control.helpers import DelayRegistry, make_engine


@pytest.fixture()
def ctl(tmp_path):
    eng = make_engine()
    c = Controller(eng, presets=PresetStore(tmp_path))
    events = []
    c.add_listener(events.append)
    c.events = events
    return c


def tick(c):
    """One audio block: the engine applies queued requests at block boundaries."""
    c.engine.process(np.zeros(480, np.float32))


def test_state_is_json_ready_and_complete(ctl):
    st = ctl.state()
    assert st["params"] == Params().as_dict() and st["voice"] == "neutral"
    assert st["protocol_version"] == P.PROTOCOL_VERSION and st["live"] is False
    assert st["algorithmic_latency_ms"] == pytest.approx(ctl.engine.algorithmic_latency_ms)
    assert P.dumps(st)


def test_toggles_pitch_steps_and_voice_cycling(ctl):
    names = ctl.engine.registry.names()
    ctl.action("bypass_toggle")
    assert ctl.engine.params.bypass is True
    ctl.action("bypass_toggle")
    assert ctl.engine.params.bypass is False
    ctl.action("mute_toggle")
    assert ctl.engine.params.mute is True
    ctl.action("voice_next")
    assert ctl.engine.params.voice == names[1] and ctl.engine.params.pitch_st == -4.0  # deeper's preset
    ctl.action("pitch_up")
    assert ctl.engine.params.pitch_st == -3.0
    tick(ctl)
    for _ in range(20):  # clamped at the top of the range
        ctl.action("pitch_up")
    tick(ctl)
    assert ctl.engine.params.pitch_st == 12.0
    ctl.action("pitch_down")
    assert ctl.engine.params.pitch_st == 11.0
    ctl.action("voice_prev")
    ctl.action("voice_prev")
    assert ctl.engine.params.voice == names[-1]  # wraps around
    ctl.action("voice_next")
    assert ctl.engine.params.voice == names[0]
    with pytest.raises(ControlError, match=r"unknown action 'explode'; expected one of"):
        ctl.action("explode")
    assert set(ACTIONS) == {"bypass_toggle", "mute_toggle", "monitor_toggle", "denoise_toggle", "voice_next",
                            "voice_prev", "pitch_up", "pitch_down", "speaker_forget", "quit"}
    ctl.action("denoise_toggle")  # the action a hotkey or /api/denoise/toggle runs
    assert ctl.engine.params.denoise is True
    ctl.action("denoise_toggle")
    assert ctl.engine.params.denoise is False


def test_forget_speaker_deletes_the_memory_and_tells_every_client(tmp_path):
    """The hand-over (RPC ``forget_speaker``, hotkey/HTTP ``speaker_forget``): the speaker memory
    file goes, the state says so, and every listener hears a ``speaker`` change even when there
    was no file to delete (the voice's learnt state changed all the same)."""
    mem = tmp_path / "speaker.wav"
    eng = Engine(EngineConfig(device_rate=48_000, speaker_memory=str(mem)), registry=DelayRegistry(),
                 params=Params(voice="neutral"))
    c = Controller(eng, presets=PresetStore(tmp_path / "presets"))
    events = []
    c.add_listener(events.append)
    assert c.state()["speaker"] == {"memory": str(mem), "remembered": False, "recalled_s": 0.0}
    eng.process((0.3 * np.sin(2 * np.pi * 200.0 * np.arange(96_000) / 48_000)).astype(np.float32))  # 2 s of tone
    assert eng.save_speaker() and c.state()["speaker"]["remembered"] is True
    st = c.execute(P.decode('{"jsonrpc":"2.0","id":1,"method":"forget_speaker"}')[0][0].command, source="api")
    assert not mem.exists() and st["speaker"] == {"memory": str(mem), "remembered": False, "recalled_s": 0.0}
    assert [(e["changed"], e["source"]) for e in events] == [(["speaker"], "api")]
    assert eng.heard().size == 0  # until the audio path applies it, nothing is learnt from the old speaker
    tick(c)  # 10 ms (the gate's hold tail): the history starts again from there
    assert eng.heard().size <= 160 and not eng.save_speaker()
    c.action("speaker_forget", source="hotkey")  # no file left: still announced
    assert [(e["changed"], e["source"]) for e in events][-1] == (["speaker"], "hotkey")
    items, _ = P.decode('{"jsonrpc":"2.0","id":2,"method":"forget_speaker","params":{"all":true}}')
    assert isinstance(items[0], P.Failure) and items[0].code == P.INVALID_PARAMS
    assert "unknown parameter(s) ['all']; expected none" in items[0].response


def test_listeners_hear_every_real_change_once(ctl):
    ctl.set_params({"mix": 0.5}, source="test")
    ctl.set_params({"mix": 0.5})  # no change, no event
    ctl.action("mute_toggle", source="hotkey")
    assert [(e["changed"], e["source"]) for e in ctl.events] == [(["mix"], "test"), (["mute"], "hotkey")]
    assert ctl.events[-1]["state"]["mute"] is True

    def broken(_):
        raise RuntimeError("listener bug")
    ctl.add_listener(broken)
    ctl.set_params({"mix": 0.25})  # a broken listener does not break the change
    assert ctl.engine.params.mix == 0.25
    ctl.remove_listener(broken)


def test_execute_maps_errors_to_json_rpc_codes(ctl):
    with pytest.raises(P.RpcError) as e:
        ctl.execute(P.SetVoice("ghost"))
    assert e.value.code == P.INVALID_PARAMS and "unknown voice 'ghost'" in e.value.message
    with pytest.raises(P.RpcError) as e:
        ctl.execute(P.ListDevices())
    assert e.value.code == P.NOT_AVAILABLE
    with pytest.raises(P.RpcError) as e:
        ctl.execute(P.LoadPreset("none"))
    assert e.value.code == P.INVALID_PARAMS and "no preset named 'none'" in e.value.message
    with pytest.raises(P.RpcError) as e:
        ctl.execute(P.Subscribe(10))
    assert e.value.code == P.METHOD_NOT_FOUND
    assert ctl.engine.params == Params()


def test_voice_load_failure_keeps_the_previous_voice(tmp_path):
    from rtvc.errors import ModelError
    from tests.control.helpers import DelayRegistry

    class Broken(DelayRegistry):
        def make_stage(self, info, **kw):
            if info.name == "robot":
                raise ModelError("robot.onnx: sha256 mismatch")
            return super().make_stage(info, **kw)
    from rtvc.engine import Engine, EngineConfig

    c = Controller(Engine(EngineConfig(), registry=Broken(), params=Params()), presets=PresetStore(tmp_path))
    with pytest.raises(P.RpcError) as e:
        c.execute(P.SetVoice("robot"))
    assert e.value.code == P.VOICE_LOAD_FAILED and "sha256 mismatch" in e.value.message
    assert "previous voice keeps playing" in e.value.message
    assert c.engine.params.voice == "neutral"


def test_next_voice_steps_past_a_damaged_voice(tmp_path, caplog):
    """Issue 28: "next voice" stuck at a damaged voice (the current voice did not change, so every
    press tried the same one). Now a press skips it, in both directions, and says so in the log."""
    from rtvc.errors import ModelError

    class Damaged(DelayRegistry):
        def make_stage(self, info, **kw):
            if info.name in ("higher", "whisper"):
                raise ModelError(f"{info.name}.onnx: sha256 mismatch")
            return super().make_stage(info, **kw)

    c = Controller(Engine(EngineConfig(), registry=Damaged(), params=Params(voice="deeper")),
                   presets=PresetStore(tmp_path))
    names = c.engine.registry.names()
    assert names[:3] == ["neutral", "deeper", "higher"] and names[-1] == "whisper"
    seen = [c.action("voice_next")["voice"] for _ in range(len(names))]
    assert seen == ["male-to-female", "female-to-male", "robot", "neutral", "deeper", "male-to-female",
                    "female-to-male"]
    assert "voice higher skipped: higher.onnx: sha256 mismatch" in caplog.text
    c.set_voice("neutral")
    assert c.action("voice_prev")["voice"] == "robot"  # whisper, the last, is skipped going back too


def test_next_voice_with_no_working_voice_keeps_the_current_one(tmp_path):
    from rtvc.errors import ModelError

    class AllDamaged(DelayRegistry):
        def make_stage(self, info, **kw):
            if info.name != "neutral":
                raise ModelError(f"{info.name}.onnx: damaged")
            return super().make_stage(info, **kw)

    c = Controller(Engine(EngineConfig(), registry=AllDamaged(), params=Params()), presets=PresetStore(tmp_path))
    with pytest.raises(ModelError, match=r"deeper.onnx: damaged"):
        c.action("voice_next")
    assert c.engine.params.voice == "neutral"


def test_devices_through_a_file_mode_live_runner(tmp_path):
    """The real LiveRunner (file in, null out): no device is open, so list_devices and device
    names answer NOT_AVAILABLE (as documented) instead of [] or a silently ignored name; a bad
    rate keeps the streams."""
    from rtvc import audio
    from rtvc.cli import sample_path

    eng = make_engine()
    runner = audio.LiveRunner(eng, input_file=str(sample_path()), null_output=True, loop=True, rate=48_000)
    runner.start()
    try:
        c = Controller(eng, runner=runner, presets=PresetStore(tmp_path))
        with pytest.raises(P.RpcError, match=r"list_devices: file mode \(input: file '.*sample.wav', output: null "
                                             r"output\): no audio device is open") as e:
            c.execute(P.ListDevices())
        assert e.value.code == P.NOT_AVAILABLE
        before = dict(runner.devices)
        for cmd, match in ((P.SetDevices(input="USB"), r"input='USB': the input of this session is the file '.*"
                                                         r"sample.wav'; restart rtvc without it"),
                           (P.SetDevices(output=3), r"output=3: the output of this session is the null output"),
                           (P.SetDevices(monitor="Speakers"), r"set_devices: file mode")):
            with pytest.raises(P.RpcError, match=match) as e:
                c.execute(cmd)
            assert e.value.code == P.NOT_AVAILABLE
        with pytest.raises(P.RpcError) as e:
            c.execute(P.SetDevices(rate=12_345))
        assert e.value.code == P.DEVICE_ERROR and "12345" in e.value.message
        assert runner.devices == before and runner.running
        st = c.state()
        assert st["live"] is True and st["devices"] == before
    finally:
        runner.stop()


class _HalfFileRunner:
    """A runner reading a file and playing on a device (what the controller reads of a LiveRunner)."""

    input_file = "talk.wav"
    output_file = None
    null_output = False
    backend = "portaudio"

    def __init__(self):
        self.devices = {"input": "file:talk.wav", "output": "Speakers", "monitor": None, "rate": 48_000}
        self.calls = []

    def set_devices(self, **kw):
        self.calls.append(kw)
        return self.devices


def test_a_device_for_the_side_a_file_replaces_is_refused(tmp_path, monkeypatch):
    from rtvc import audio

    monkeypatch.setattr(audio, "list_devices", lambda backend="portaudio": [{"index": 0, "name": "Speakers"}])
    runner = _HalfFileRunner()
    c = Controller(make_engine(), runner=runner, presets=PresetStore(tmp_path))
    assert c.execute(P.ListDevices()) == [{"index": 0, "name": "Speakers"}]  # a device is open: listing works
    with pytest.raises(P.RpcError, match=r"input='Mic': the input of this session is the file 'talk.wav'") as e:
        c.execute(P.SetDevices(input="Mic", output="Other"))
    assert e.value.code == P.NOT_AVAILABLE and runner.calls == []  # nothing half-done
    c.execute(P.SetDevices(output="Other", monitor=1))
    assert runner.calls == [{"input": None, "output": "Other", "monitor": 1, "rate": None}]


class _MonitorRunner(_HalfFileRunner):
    """A runner whose monitor side can be switched on and off."""

    def __init__(self, monitor=None):
        super().__init__()
        self.devices["monitor"] = monitor
        self.stream_latency_s = {"input": 0.0, "output": 0.012}


def test_monitor_needs_a_monitor_device(tmp_path):
    """Issue 30: /api/monitor/toggle answered success with no monitor device; now it is refused."""
    for runner in (None, _MonitorRunner()):
        c = Controller(make_engine(), runner=runner, presets=PresetStore(tmp_path))
        with pytest.raises(P.RpcError, match=r"monitor = true: no monitor device is open.*set_devices") as e:
            c.action("monitor_toggle")
        assert e.value.code == P.NOT_AVAILABLE and c.engine.params.monitor is False
        # a preset saved with the monitor on loads without it
        c.presets.save("m", {"monitor": True, "pitch_st": 2.0})
        assert c.load_preset("m")["params"]["monitor"] is False and c.engine.params.pitch_st == 2.0
    c = Controller(make_engine(), runner=_MonitorRunner("Headphones"), presets=PresetStore(tmp_path))
    c.action("monitor_toggle")
    assert c.engine.params.monitor is True and c.devices.has_monitor()
    c.action("monitor_toggle")
    assert c.engine.params.monitor is False


def test_keep_offsets_across_voice_switches(ctl):
    """Issue 30: a voice switch reset the user's +1 to the voice's preset; with keep_offsets it stays."""
    ctl.action("pitch_up")
    ctl.action("voice_next")  # default: the voice's preset replaces the user's pitch
    assert ctl.engine.params.voice == "deeper" and ctl.engine.params.pitch_st == -4.0
    ctl.set_voice("neutral")
    ctl.action("pitch_up")
    ctl.set_params({"formant_ratio": 1.1})
    ctl.events.clear()
    st = ctl.execute(P.SetOptions(keep_offsets=True))
    assert st["options"] == {"keep_offsets": True} and ctl.events[-1]["changed"] == ["keep_offsets"]
    ctl.action("voice_next")  # deeper: -4 st, x0.88, plus the user's +1 st, x1.1
    p = ctl.engine.params
    assert p.voice == "deeper" and p.pitch_st == -3.0 and p.formant_ratio == pytest.approx(0.88 * 1.1)
    ctl.action("voice_prev")
    assert ctl.engine.params.pitch_st == 1.0 and ctl.engine.params.formant_ratio == pytest.approx(1.1)
    ctl.set_params({"pitch_st": 11.0})
    ctl.set_voice("male-to-female")  # +5 +11 is clamped to the range
    assert ctl.engine.params.pitch_st == 12.0
    ctl.set_params({"voice": "neutral", "pitch_st": 3.0})  # given explicitly: taken as given
    assert ctl.engine.params.pitch_st == 3.0
    with pytest.raises(P.RpcError, match=r"keep_offsets = 'yes'; expected true or false"):
        P.SetOptions.from_params({"keep_offsets": "yes"})


def test_set_param_text_values_steps_and_toggles(ctl):
    ctl.set_param_text("pitch_st", "+=1.5")
    ctl.set_param_text("pitch_st", "-=0.5")
    assert ctl.engine.params.pitch_st == 1.0
    ctl.set_param_text("pitch_st", "+=100")  # relative steps are clamped, like pitch_up
    assert ctl.engine.params.pitch_st == 12.0
    ctl.set_param_text("voice", "robot")
    ctl.set_param_text("formant_ratio", "0.9")
    ctl.set_param_text("gate_threshold_db", "-=5")
    ctl.set_param_text("mute", "toggle")
    ctl.set_param_text("bypass", "on")
    ctl.set_param_text("keep_offsets", "toggle")
    p = ctl.engine.params
    assert (p.formant_ratio, p.gate_threshold_db, p.mute, p.bypass, p.voice) == (0.9, -65.0, True, True, "robot")
    assert ctl.options["keep_offsets"] is True
    for name, text, match in (("pitch_st", "13", r"'pitch_st' value '13' is out of range; expected a number in "
                                                 r"\[-12, 12\] semitones, or a step \+=N / -=N"),
                              ("pitch_st", "loud", r"'pitch_st' value 'loud': expected a number"),
                              ("pitch_st", "nan", r"'pitch_st' value 'nan': expected a number"),
                              ("pitch_st", None, r"'pitch_st': no value; expected \?value=V"),
                              ("mute", "maybe", r"'mute' value 'maybe': expected true, false or toggle"),
                              ("volume", "1", r"unknown parameter 'volume'; expected one of \[.*'keep_offsets'\]"),
                              ("voice", "nobody", r"nobody")):
        with pytest.raises(Exception, match=match):
            ctl.set_param_text(name, text)


def test_telemetry_adds_device_buffers_to_the_latency(tmp_path):
    eng = make_engine()
    t = Controller(eng, presets=PresetStore(tmp_path)).telemetry()
    assert t["device_latency_ms"] is None and t["total_latency_ms"] == pytest.approx(t["algorithmic_latency_ms"])
    t = Controller(eng, runner=_MonitorRunner(), presets=PresetStore(tmp_path)).telemetry()
    assert t["device_latency_ms"] == pytest.approx(12.0)
    assert t["total_latency_ms"] == pytest.approx(t["algorithmic_latency_ms"] + 12.0 + (t["queue_ms"] or 0.0))
    runner = _MonitorRunner()
    runner.block_ms = 10.0
    engine_telemetry = eng.telemetry
    eng.telemetry = lambda: {**engine_telemetry(), "buffer_age_ms": 25.0}  # a runner's share: 25 ms in the rings
    t = Controller(eng, runner=runner, presets=PresetStore(tmp_path)).telemetry()
    assert t["queue_ms"] == 15.0 and t["total_latency_ms"] == pytest.approx(t["algorithmic_latency_ms"] + 27.0)


def test_voice_previews_are_listed_for_neural_voices(tmp_path):
    from rtvc.errors import ConfigError

    c = Controller(make_engine(models=True), presets=PresetStore(tmp_path))
    voices = {v["name"]: v for v in c.list_voices()}
    assert voices["joe"]["kind"] == "neural" and voices["joe"]["preview"] is True
    assert voices["robot"]["preview"] is False
    assert c.preview("joe").name == "joe.preview.wav"
    with pytest.raises(ConfigError, match=r"voice 'robot' has no preview clip"):
        c.preview("robot")


def test_selftest_where_a_loopback_exists(tmp_path):
    import threading

    c = Controller(make_engine(), presets=PresetStore(tmp_path), selftest=None)
    c.loopback = SelfTest(None)  # as on a machine without pactl/pacat (this one may have them)
    with pytest.raises(P.RpcError, match=r"selftest: no loopback to measure with: it needs a PulseAudio") as e:
        c.execute(P.SelfTest())
    assert e.value.code == P.NOT_AVAILABLE and c.state()["selftest"] == {"available": False, "last": None}
    release, entered = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(10)
        return {"arrived": True, "delay_ms": 40.0, "correlation": 0.9, "algorithmic_latency_ms": 16.9, "rate": 48000,
                "block": 480}

    c = Controller(make_engine(), presets=PresetStore(tmp_path), selftest=slow)
    events = []
    c.add_listener(events.append)
    t = threading.Thread(target=c.selftest)
    t.start()
    assert entered.wait(10)
    with pytest.raises(P.RpcError, match=r"selftest: one is running already"):
        c.selftest()
    release.set()
    t.join(10)
    last = {"arrived": True, "delay_ms": 40.0, "correlation": 0.9, "algorithmic_latency_ms": 16.9, "rate": 48000}
    assert c.state()["selftest"] == {"available": True, "last": last}
    assert events[-1]["changed"] == ["selftest"]


def test_selftest_failure_is_said_as_it_is(tmp_path):
    from rtvc.errors import DeviceError

    def broken():
        raise DeviceError("selftest captured nothing from rtvc_selftest.monitor; expected a working server")

    c = Controller(make_engine(), presets=PresetStore(tmp_path), selftest=broken)
    with pytest.raises(P.RpcError, match=r"^selftest: selftest captured nothing") as e:
        c.execute(P.SelfTest())
    assert e.value.code == P.NOT_AVAILABLE and c.state()["selftest"]["last"] is None


def test_quit_asks_the_session_loop_and_is_refused_where_none_watches(ctl):
    """``quit`` (method, ``quit`` action for HTTP and hotkeys) sets the event the run loop watches;
    a controller no loop watches refuses it rather than claim to stop."""
    import threading

    with pytest.raises(P.RpcError) as e:
        ctl.execute(P.Quit())
    assert e.value.code == P.NOT_AVAILABLE and "nothing here can stop it" in e.value.message
    ctl.quit_requested = threading.Event()
    assert ctl.execute(P.Quit(), source="test") == {"stopping": True} and ctl.quit_requested.is_set()
    ctl.quit_requested.clear()
    assert ctl.action("quit")["params"] == ctl.state()["params"] and ctl.quit_requested.is_set()
    assert "quit" in ACTIONS and P.COMMANDS["quit"] is P.Quit
