"""The control panel in a real headless Chromium, driven over the DevTools protocol.

One server (delay voices plus the shipped neural voices' manifests and preview clips, and a
made-up runner with four devices, one of them broken) and one browser tab: every control is
changed from the page (keyboard, mouse) and the engine's state is read back through the API;
the state is changed through the API and the page is read; presets are saved and loaded; every
control has an accessible name; no request leaves 127.0.0.1. Screenshots of the panel at
1280x800 and 390x844 go to ``bench/out/`` with ``RTVC_SCREENSHOTS=1`` (see tests/control/cdp.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import urllib.request

import pytest
from websockets.asyncio.client import connect

from rtvc import audio
from tests.control.cdp import Cdp, browser, shots  # noqa: F401 - browser is a fixture
from tests.control.helpers import TOKEN, FakeRunner, Running

NAMES = ["Pitch", "Formant", "Mix", "Input gain", "Output gain", "Monitor gain", "Gate threshold", "Gate margin",
         "Input device", "Output device", "Monitor device", "Device rate", "Refresh devices", "Hear myself",
         "Keep my pitch and formant offsets when switching voices", "Bypass", "Mute", "New speaker", "Preset",
         "Load", "Delete", "Save as", "Save preset", "Voice neutral", "Voice joe", "Play the preview of joe",
         "Voice name", "Gender", "Recordings", "Clone voice", "Cancel", "Run self-test", "Record in the page",
         "Stop recording", "Next prompt", "Noise suppression", "Noise suppression limit"]
SELFTEST = {"arrived": True, "delay_ms": 41.5, "correlation": 0.93, "algorithmic_latency_ms": 16.94, "rate": 48_000,
            "output_level_dbfs": -6.0, "block": 480}
"""What ``rtvc selftest`` answers (its loopback through a sound server is tested in test_route)."""


@pytest.fixture()
def srv(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "list_devices", lambda backend="portaudio": [dict(r) for r in FakeRunner.ROWS])
    r = Running(tmp_path, models=True, runner=FakeRunner(), selftest=lambda: dict(SELFTEST))
    yield r
    r.close()


def api(srv, method, path):
    req = urllib.request.Request(f"{srv.http}{path}{'&' if '?' in path else '?'}token={TOKEN}", method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def state(srv):
    return api(srv, "GET", "/api/state")


async def until(pred, timeout=20.0):
    """Wait for ``pred()`` (a deadline, never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the engine")
        await asyncio.sleep(0.05)


async def set_field(cdp, sess, element_id, value):
    """Type ``value`` into a numeric field from the keyboard: focus, select, type, Tab away."""
    await cdp.eval(f"(() => {{ const e = document.getElementById('{element_id}'); e.focus(); e.select(); }})()", sess)
    await cdp.type(str(value), sess)
    await cdp.press("Tab", sess)


async def choose(cdp, sess, element_id, text):
    """Pick the option whose label starts with ``text``, as a user does (the change event fires)."""
    await cdp.eval(f"(() => {{ const s = document.getElementById('{element_id}'); s.focus(); "
                   f"const o = [...s.options].find(o => o.textContent.startsWith({json.dumps(text)})); "
                   "s.value = o.value; s.dispatchEvent(new Event('change', {bubbles: true})); })()", sess)


def test_panel_drives_the_engine_and_follows_it(browser, srv, tmp_path):  # noqa: F811
    async def go():
        async with connect(browser, max_size=None) as bws:
            cdp = Cdp(bws)
            sess = await cdp.page(f"{srv.http}/?token={TOKEN}")
            el = "document.getElementById"
            await cdp.wait_for(f"{el}('status').textContent === 'live'", sess)
            await cdp.wait_for(f"{el}('voice-name').textContent === 'neutral'", sess)
            await cdp.wait_for("document.querySelectorAll('#voices .voice').length === 10", sess)  # 7 DSP + 3 neural
            await cdp.wait_for(f"{el}('dev-input').options.length === 3", sess)  # devices with input channels
            await cdp.wait_for(f"{el}('val-in').textContent !== '-inf dB'", sess)  # telemetry flows

            # ---- accessible names, from Chromium's own accessibility tree
            tree = (await cdp.send("Accessibility.getFullAXTree", {}, sess))["nodes"]
            controls = [n for n in tree if not n.get("ignored") and n.get("role", {}).get("value") in
                        ("slider", "spinbutton", "combobox", "button", "checkbox", "textbox", "switch")]
            unnamed = [n for n in controls if not (n.get("name") or {}).get("value", "").strip()]
            assert controls and not unnamed, unnamed
            names = {n["name"]["value"] for n in controls}
            assert set(NAMES) <= names, sorted(set(NAMES) - names)
            assert {"Pitch (st) value", "Gate threshold (dBFS) value"} <= names

            # ---- the keyboard: Tab reaches the controls, arrows move a slider, Space presses a button
            await cdp.eval(f"{el}('p-pitch_st').focus()", sess)
            await cdp.press("ArrowRight", sess)
            await cdp.press("ArrowRight", sess)
            await until(lambda: srv.engine.params.pitch_st == 1.0)
            assert state(srv)["params"]["pitch_st"] == 1.0
            await cdp.press("Tab", sess)
            assert await cdp.eval("document.activeElement.id", sess) == "n-pitch_st"
            await cdp.eval(f"{el}('btn-bypass').focus()", sess)
            await cdp.press(" ", sess)
            await until(lambda: srv.engine.params.bypass is True)
            await cdp.wait_for(f"{el}('btn-bypass').getAttribute('aria-pressed') === 'true'", sess)
            await cdp.press("Enter", sess)
            await until(lambda: srv.engine.params.bypass is False)

            # ---- every slider's numeric field, typed
            typed = {"pitch_st": -2.5, "formant_ratio": 0.9, "mix": 0.75, "input_gain_db": -6, "output_gain_db": 3,
                     "monitor_gain_db": -10, "gate_threshold_db": -48, "gate_floor_margin_db": 12,
                     "denoise_limit_db": 30}
            for name, v in typed.items():
                await set_field(cdp, sess, f"n-{name}", v)
                await until(lambda: getattr(srv.engine.params, name) == v)
            p = state(srv)["params"]
            assert {k: p[k] for k in typed} == typed
            await set_field(cdp, sess, "n-pitch_st", 40)  # refused in the page, named
            await cdp.wait_for(f"{el}('sound-error').textContent.includes('Pitch \"40\": expected a number in "
                               "[-12, 12]')", sess)
            assert srv.engine.params.pitch_st == -2.5
            # the gate threshold is drawn on the input meter, with the tracked noise floor
            await cdp.wait_for(f"{el}('mark-thr').dataset.db === '-48.0'", sess)
            await cdp.wait_for(f"{el}('mark-floor').style.display === 'block'", sess)

            # ---- bypass, mute, new speaker with the mouse
            await cdp.click("#btn-mute", sess)
            await until(lambda: srv.engine.params.mute is True)
            await cdp.wait_for(f"{el}('btn-mute').getAttribute('aria-pressed') === 'true'", sess)
            await cdp.click("#btn-mute", sess)
            await until(lambda: srv.engine.params.mute is False)
            handovers = []  # every forget_speaker is announced as a 'speaker' change
            srv.controller.add_listener(lambda ev: handovers.append(ev) if "speaker" in ev["changed"] else None)
            await cdp.click("#btn-forget", sess)
            await until(lambda: len(handovers) == 1)

            # ---- devices: hear-myself is off with a reason until a monitor device is chosen
            assert await cdp.eval(f"{el}('monitor').disabled", sess) is True
            assert "monitor device" in await cdp.eval(f"{el}('monitor-reason').textContent", sess)
            await choose(cdp, sess, "dev-input", "Broken Interface")  # fails: inline error, old device kept
            await cdp.wait_for(f"{el}('dev-error').textContent.includes('Broken Interface')", sess)
            await cdp.wait_for(f"{el}('dev-note').textContent === 'kept the previous devices'", sess)
            assert await cdp.eval(f"{el}('dev-input').selectedOptions[0].dataset.name", sess) == "Built-in Microphone"
            assert state(srv)["devices"]["input"] == "Built-in Microphone"
            await choose(cdp, sess, "dev-input", "USB Headset")
            await choose(cdp, sess, "dev-monitor", "USB Headset")
            await choose(cdp, sess, "dev-rate", "44100")
            await until(lambda: srv.controller.runner.devices == {"input": "USB Headset", "output": "Speakers",
                                                                  "monitor": "USB Headset", "rate": 44100})
            await cdp.wait_for(f"!{el}('monitor').disabled && {el}('dev-error').textContent === ''", sess)
            await cdp.click("#monitor", sess)
            await until(lambda: srv.engine.params.monitor is True)
            await cdp.click("#btn-refresh", sess)
            await cdp.wait_for(f"{el}('dev-note').textContent === '4 devices'", sess)
            # the truthful latency line: the device buffers (8 + 12 ms here) are added
            line = await cdp.wait_for(f"{el}('latency').textContent.includes('device buffers 20.0 ms') && "
                                      f"{el}('latency').textContent", sess)
            eng = srv.engine.algorithmic_latency_ms
            assert line.startswith(f"engine {eng:.1f} ms + device buffers 20.0 ms") and "= about" in line, line
            # the self-test's measured loopback delay is shown beside it
            await cdp.click("#btn-selftest", sess)
            await cdp.wait_for(f"{el}('selftest-note').textContent === 'self-test: the chirp came back after 41.5 ms "
                               "(engine 16.9 ms)'", sess)
            await cdp.wait_for(f"{el}('latency').textContent.endsWith(' \u00b7 self-test 42 ms')", sess)
            assert state(srv)["selftest"] == {"available": True, "last": {k: SELFTEST[k] for k in (
                "arrived", "delay_ms", "correlation", "algorithmic_latency_ms", "rate")}}

            # ---- noise suppression: its cost is named beside it, and the latency line counts it
            assert "adds 37 ms" in await cdp.eval(f"{el}('denoise-note').textContent", sess)
            await cdp.click("#denoise", sess)
            await until(lambda: srv.engine.params.denoise is True)
            await cdp.wait_for(f"{el}('latency').textContent.includes('(noise suppression 37.0 ms) + device buffers')",
                               sess)
            await until(lambda: abs(srv.engine.algorithmic_latency_ms - eng - 37.0) < 1e-6)
            api(srv, "POST", "/api/param/denoise?value=toggle")  # switched elsewhere: the page follows
            await cdp.wait_for(f"!{el}('denoise').checked && !{el}('latency').textContent.includes('noise')", sess)

            # ---- keep offsets, then a voice click (a real mouse click on its card)
            await cdp.click("#keep-offsets", sess)
            await until(lambda: srv.controller.options["keep_offsets"] is True)
            await cdp.click('.pick[data-voice="deeper"]', sess)
            await until(lambda: srv.engine.params.voice == "deeper")
            assert srv.engine.params.pitch_st == -6.5  # deeper's -4 plus the user's -2.5
            await cdp.wait_for("document.querySelector('.voice.current').dataset.voice === 'deeper'", sess)
            assert await cdp.eval("document.querySelector('.voice.current .pick').getAttribute('aria-pressed')",
                                  sess) == "true"
            # a neural voice's preview plays from this server
            assert await cdp.eval("document.querySelectorAll('.voice .play').length", sess) == 3
            await cdp.click('.voice[data-voice="joe"] .play', sess)
            await cdp.wait_for("performance.getEntriesByType('resource').some(e => e.name.includes('/preview/joe.wav'))"
                               " || true", sess)

            # ---- changes made elsewhere show up at once
            api(srv, "POST", "/api/param/keep_offsets?value=false")
            await cdp.wait_for(f"!{el}('keep-offsets').checked", sess)
            api(srv, "POST", "/api/param/pitch_st?value=5")
            await cdp.wait_for(f"{el}('p-pitch_st').dataset.value === '5' && {el}('n-pitch_st').value === '5.0'", sess)
            api(srv, "POST", "/api/voice/robot")
            await cdp.wait_for("document.querySelector('.voice.current').dataset.voice === 'robot' && "
                               f"{el}('voice-name').textContent === 'robot'", sess)
            api(srv, "POST", "/api/param/pitch_st?value=5")  # robot's preset reset it
            await cdp.wait_for(f"{el}('n-pitch_st').value === '5.0'", sess)
            api(srv, "POST", "/api/bypass/toggle")
            await cdp.wait_for(f"{el}('btn-bypass').getAttribute('aria-pressed') === 'true'", sess)
            api(srv, "POST", "/api/param/formant_ratio?value=1.25")
            await cdp.wait_for(f"{el}('n-formant_ratio').value === '1.25'", sess)
            api(srv, "POST", "/api/monitor/toggle")
            await cdp.wait_for(f"!{el}('monitor').checked", sess)
            api(srv, "POST", "/api/bypass/toggle")

            # ---- presets: save as, change, load, delete
            await cdp.eval(f"{el}('preset-name').focus()", sess)
            await cdp.type("robot-5", sess)
            await cdp.press("Enter", sess)
            await cdp.wait_for(f"{el}('preset-list').value === 'robot-5'", sess)
            saved = srv.controller.presets.load("robot-5")
            assert saved["voice"] == "robot" and saved["pitch_st"] == 5.0 and saved["formant_ratio"] == 1.25
            api(srv, "POST", "/api/voice/higher")
            await cdp.wait_for(f"{el}('voice-name').textContent === 'higher'", sess)
            await cdp.click("#btn-preset-load", sess)
            await until(lambda: srv.engine.params.voice == "robot" and srv.engine.params.pitch_st == 5.0)
            await cdp.wait_for(f"{el}('voice-name').textContent === 'robot'", sess)
            await cdp.click("#btn-preset-delete", sess)
            await until(lambda: srv.controller.presets.names() == [])
            await cdp.wait_for(f"{el}('preset-list').options[0].textContent === '(no presets yet)'", sess)
            assert await cdp.eval(f"{el}('preset-error').textContent", sess) == ""

            # ---- screenshots, and nothing overflows on a phone
            api(srv, "POST", "/api/voice/joe")
            await cdp.wait_for(f"{el}('voice-name').textContent === 'joe'", sess)
            await cdp.wait_for(f"{el}('val-out').textContent !== '-inf dB'", sess)
            await cdp.eval("window.scrollTo(0, 0)", sess)
            await cdp.screenshot(shots(tmp_path) / "panel-1280x800.png", sess)
            await cdp.resize(sess, 390, 844, mobile=True)
            await cdp.wait_for("document.documentElement.clientWidth === 390", sess)
            assert await cdp.eval("document.documentElement.scrollWidth", sess) <= 390
            await cdp.eval("window.scrollTo(0, 0)", sess)
            await cdp.screenshot(shots(tmp_path) / "panel-390x844.png", sess)

            # ---- no request left 127.0.0.1 (pages, websocket, previews)
            urls = cdp.request_urls()
            assert any("/preview/joe.wav" in u for u in urls), urls
            assert urls and all(u.startswith((srv.http + "/", srv.url)) for u in urls), urls
            assert await cdp.eval("document.querySelectorAll('link, img, iframe, [src]').length", sess) == 0
    asyncio.run(asyncio.wait_for(go(), 240))


def test_panel_reconnects_after_rtvc_restarts(browser, tmp_path):  # noqa: F811
    """The page says rtvc is not running and greys the meters, then comes back by itself; *Quit
    rtvc* (asked twice) asks the run loop to stop, and the page says rtvc quit."""
    import threading

    from rtvc.control.server import ControlServer

    first = Running(tmp_path)
    port = first.port
    try:
        async def go():
            async with connect(browser, max_size=None) as bws:
                cdp = Cdp(bws)
                sess = await cdp.page(f"{first.http}/panel?token={TOKEN}", width=900, height=700)
                await cdp.wait_for("document.getElementById('status').textContent === 'live'", sess)
                first.handle.stop()
                await cdp.wait_for("document.getElementById('status').textContent === 'offline: rtvc not running' "
                                   "&& document.body.classList.contains('offline')", sess)
                first.server = ControlServer(first.controller, token=TOKEN, port=port)
                first.handle = first.server.start_background()
                first.controller.set_params({"voice": "whisper"}, source="cli")
                await cdp.wait_for("document.getElementById('status').textContent === 'live' && "
                                   "document.getElementById('voice-name').textContent === 'whisper'", sess, 30)
                assert not await cdp.eval("document.body.classList.contains('offline')", sess)
                # Quit rtvc: the first click only asks, the second quits; the page then says so
                first.controller.quit_requested = quit_asked = threading.Event()
                await cdp.click("#btn-quit", sess)
                assert await cdp.eval("document.getElementById('btn-quit').textContent", sess) == "Click again to quit"
                await asyncio.sleep(0.3)
                assert not quit_asked.is_set()
                await cdp.click("#btn-quit", sess)
                assert await asyncio.to_thread(quit_asked.wait, 10)
                first.handle.stop()  # what the run loop does once it sees the event
                await cdp.wait_for("document.getElementById('status').textContent.startsWith('stopped: rtvc quit')", sess)
                assert await cdp.eval("document.getElementById('sound-error').textContent", sess) == ""
        asyncio.run(asyncio.wait_for(go(), 90))
    finally:
        first.close()


def _recordings(folder):
    """Three 12-s takes of a gliding harmonic voice with syllable-like pauses (seeded)."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True)
    rng = np.random.default_rng(30)
    sr = 16_000
    t = np.arange(12 * sr) / sr
    paths = []
    for k in range(3):
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + k) + 10 * np.sin(2 * np.pi * 3.1 * t)
        ph = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(h * ph) / h for h in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t + k)) ** 2
        x = 0.1 * x * (np.sin(2 * np.pi * 4 * t) > -0.6) + 0.002 * rng.standard_normal(t.size)
        paths.append(folder / f"take{k}.wav")
        sf.write(paths[-1], x.astype(np.float32), sr)
    return paths


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="cloning needs the train extra (torch)")
def test_clone_a_voice_from_the_page(browser, tmp_path, monkeypatch):  # noqa: F811
    """Recordings picked in the page are uploaded into the user's data folder, trained by a real
    ``rtvc clone`` in its own process (two steps: a short clone), and the voice shows in the grid."""
    from rtvc.control.clone import CloneJobs
    from rtvc.paths import data_dir, user_voices_dir

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))  # the child process inherits it
    takes = _recordings(tmp_path / "rec")
    clones = CloneJobs(command=[sys.executable, "-m", "rtvc", "clone", "--steps", "2", "--min-minutes", "0.3"])
    srv = Running(tmp_path, clones=clones)
    srv.engine.registry.model_dirs.append(user_voices_dir())  # where rtvc clone writes (the default registry's)
    seen: list[dict] = []
    srv.controller.add_notify_listener(lambda method, job: seen.append(job))
    try:
        async def go():
            async with connect(browser, max_size=None) as bws:
                cdp = Cdp(bws)
                sess = await cdp.page(f"{srv.http}/?token={TOKEN}")
                el = "document.getElementById"
                await cdp.wait_for(f"{el}('status').textContent === 'live'", sess)
                doc = await cdp.send("DOM.getDocument", {}, sess)
                node = await cdp.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"],
                                                            "selector": "#clone-files"}, sess)
                await cdp.send("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(p) for p in takes]},
                               sess)
                await cdp.click("#clone-name", sess)
                await cdp.type("my-clone", sess)
                await cdp.click("#btn-clone", sess)
                await cdp.wait_for(f"{el}('btn-clone-cancel').disabled === false", sess)
                await cdp.wait_for(f"{el}('clone-progress').dataset.state === 'training'", sess, 60)
                # every upload is in the user's data folder, byte for byte
                job = [j for j in seen if j["state"] == "training"][0]
                folder = data_dir() / "clone-uploads" / job["job"]
                assert {p.name: p.read_bytes() for p in folder.iterdir()} == {p.name: p.read_bytes() for p in takes}
                await cdp.wait_for(f"{el}('clone-status').textContent.includes(\"voice 'my-clone' is ready\")",
                                   sess, 300)
                assert any(j["stage"] == "train" and j["eta_s"] is not None for j in seen)  # progress with ETA
                await cdp.wait_for("document.querySelector('.pick[data-voice=\"my-clone\"]') !== null", sess)
                assert await cdp.eval(f"{el}('clone-error').textContent", sess) == ""
                assert await cdp.eval(f"{el}('clone-progress').value", sess) == 1
                await cdp.click('.pick[data-voice="my-clone"]', sess)
                await until(lambda: srv.engine.params.voice == "my-clone")
                assert (user_voices_dir() / "my-clone.onnx").is_file() and not folder.exists()
        asyncio.run(asyncio.wait_for(go(), 400))
    finally:
        srv.close()


# stands in for `rtvc clone FOLDER ...`: each upload must be a mono 16-bit WAV of 2 s or more with sound in it
WAV_CHECK = """
import array, pathlib, sys, wave
for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    with wave.open(str(p)) as w:
        x = array.array("h", w.readframes(w.getnframes()))
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getnframes() < 2 * w.getframerate() or max(x) < 300:
            print(f"rtvc: error: {p.name}: expected a mono 16-bit WAV of 2 s or more with sound in it")
            sys.exit(2)
print("checked")
"""


def test_record_in_the_page(browser, tmp_path):  # noqa: F811
    """A take recorded in the page (Chromium's fake microphone: a beep) with prompts, a level and a
    timer, uploaded as a WAV with the clone."""
    from rtvc.control.clone import CloneJobs

    clones = CloneJobs(root=tmp_path / "uploads", out_dir=tmp_path / "voices",
                       command=[sys.executable, "-c", WAV_CHECK])
    srv = Running(tmp_path, clones=clones)
    seen: list[dict] = []
    srv.controller.add_notify_listener(lambda method, job: seen.append(job))
    try:
        async def go():
            async with connect(browser, max_size=None) as bws:
                cdp = Cdp(bws)
                sess = await cdp.page(f"{srv.http}/?token={TOKEN}")
                el = "document.getElementById"
                await cdp.wait_for(f"{el}('status').textContent === 'live'", sess)
                await cdp.click("#btn-rec", sess)
                # recording, or the page's own error (the microphone refused): either ends the wait
                await cdp.wait_for(f"({el}('btn-rec-stop').disabled === false && {el}('rec-prompt').textContent) "
                                   f"|| {el}('clone-error').textContent", sess)
                error, rec_disabled = await cdp.eval(f"[{el}('clone-error').textContent, {el}('btn-rec').disabled]", sess)
                assert error == "", (error, rec_disabled)
                first = await cdp.eval(f"{el}('rec-prompt').textContent", sess)
                assert first.endswith(".")  # a sentence to read
                await cdp.wait_for(f"Number({el}('bar-mic').getAttribute('aria-valuenow')) > -60", sess)
                await cdp.wait_for(f"Number({el}('rec-time').dataset.seconds) >= 2.5", sess)
                assert "of at least 5:00" in await cdp.eval(f"{el}('rec-time').textContent", sess)
                await cdp.click("#btn-rec-next", sess)
                assert await cdp.eval(f"{el}('rec-prompt').textContent", sess) != first
                await cdp.click("#btn-rec-stop", sess)
                await cdp.wait_for("document.querySelectorAll('#rec-takes li').length === 1", sess)
                await cdp.click("#clone-name", sess)
                await cdp.type("recorded", sess)
                await cdp.click("#btn-clone", sess)
                await cdp.wait_for(f"{el}('clone-status').textContent.includes(\"voice 'recorded' is ready\")", sess,
                                   60)
                assert await cdp.eval(f"{el}('clone-error').textContent", sess) == ""
        asyncio.run(asyncio.wait_for(go(), 120))
    finally:
        srv.close()
    training = [j for j in seen if j["state"] == "training"][0]
    assert list(training["files"]) == ["recording-1.wav"] and training["bytes"] > 44 + 2 * 2 * 8000
