"""The panel's HTTP side: the pages and their token page, /api/param/NAME, previews, the
monitor toggle without a monitor device (issue 30), the panel URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from rtvc.control.routes import PARAM_NAMES, param_value, query_value
from rtvc.errors import ConfigError
from rtvc.params import Params
from tests.control.helpers import TOKEN, FakeRunner, Running


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    r = Running(tmp_path_factory.mktemp("panel"), models=True)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _neutral(srv):
    yield
    srv.engine.request(Params(voice="neutral"))
    srv.controller.options["keep_offsets"] = False


def http(srv, method, path, *, token=TOKEN, origin=None):
    url = srv.http + path
    if token is not None:
        url += ("&" if "?" in url else "?") + "token=" + token
    req = urllib.request.Request(url, method=method, headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.mark.parametrize("path", ["/", "/panel"])
def test_the_panel_is_served_self_contained(srv, path):
    st, body, hdr = http(srv, "GET", path)
    page = body.decode()
    assert st == 200 and hdr["Content-Type"].startswith("text/html") and 'id="sliders"' in page
    csp = hdr["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    for ref in ("http://", "https://", "//cdn", "@import", "src=\""):  # nothing loaded from elsewhere
        assert ref not in page.replace("http://127.0.0.1:PORT", ""), ref


@pytest.mark.parametrize("path", ["/", "/panel", "/overlay"])
@pytest.mark.parametrize("token", [None, "wrong-token-123"])
def test_pages_without_the_token_explain_how_to_get_the_url(srv, path, token):
    st, body, hdr = http(srv, "GET", path, token=token)
    page = body.decode()
    assert st == 401 and hdr["Content-Type"].startswith("text/html")
    assert "rtvc serve" in page and "control_token" in page and "?token=" in page
    assert TOKEN not in page and not page.lstrip().startswith("{")
    assert ("No token was given" if token is None else "The token given is wrong") in page


def test_a_page_from_another_site_is_refused(srv):
    assert http(srv, "GET", "/", origin="http://evil.example")[0] == 403


def test_param_actions_set_step_and_toggle_every_parameter(srv):
    st, body, _ = http(srv, "POST", "/api/param/pitch_st?value=%2B%3D1")
    assert st == 200 and json.loads(body)["state"]["params"]["pitch_st"] == 1.0
    assert http(srv, "POST", "/api/param/pitch_st?value=+=1.5")[0] == 200  # a literal '+' stays a plus
    assert http(srv, "GET", "/api/param/pitch_st?value=-=0.5")[0] == 200  # GET for button apps
    assert srv.engine.params.pitch_st == 2.0
    values = {"formant_ratio": "1.2", "mix": "0.5", "input_gain_db": "-3", "output_gain_db": "+=2",
              "monitor_gain_db": "-12", "gate_threshold_db": "-50", "gate_attack_ms": "5", "gate_hold_ms": "100",
              "gate_release_ms": "200", "gate_floor_margin_db": "10", "gate_confirm_ms": "0", "bypass": "toggle",
              "mute": "true", "denoise": "toggle", "denoise_limit_db": "-=20"}
    for name, v in values.items():
        st, body, _ = http(srv, "POST", f"/api/param/{name}?value={urllib.request.quote(v, safe='')}")
        assert st == 200, (name, body)
    p = srv.engine.params
    assert (p.formant_ratio, p.mix, p.input_gain_db, p.output_gain_db, p.monitor_gain_db) == (1.2, 0.5, -3.0, 2.0,
                                                                                               -12.0)
    assert (p.gate_threshold_db, p.gate_attack_ms, p.gate_hold_ms, p.gate_release_ms) == (-50.0, 5.0, 100.0, 200.0)
    assert (p.gate_floor_margin_db, p.gate_confirm_ms, p.bypass, p.mute) == (10.0, 0.0, True, True)
    assert (p.denoise, p.denoise_limit_db) == (True, 80.0)
    assert http(srv, "POST", "/api/param/voice?value=robot")[0] == 200 and srv.engine.params.voice == "robot"
    # every parameter but monitor (no device here: see below) has a route
    assert set(values) | {"pitch_st", "voice", "monitor", "keep_offsets"} == set(PARAM_NAMES)


@pytest.mark.parametrize("path,match", [
    ("/api/param/pitch_st?value=13", r"'pitch_st' value '13' is out of range; expected a number in \[-12, 12\] "
                                     r"semitones, or a step \+=N / -=N"),
    ("/api/param/pitch_st?value=high", r"'pitch_st' value 'high': expected a number"),
    ("/api/param/pitch_st", r"'pitch_st': no value; expected \?value=V"),
    ("/api/param/bypass?value=2", r"'bypass' value '2': expected true, false or toggle"),
    ("/api/param/loudness?value=1", r"unknown parameter 'loudness'; expected one of \[.*'pitch_st'"),
    ("/api/param/voice?value=nobody", r"nobody"),
])
def test_bad_param_values_are_refused_naming_the_value(srv, path, match):
    import re

    before = srv.engine.params
    st, body, _ = http(srv, "POST", path)
    doc = json.loads(body)
    assert st == 400 and doc["ok"] is False and re.search(match, doc["error"]), doc
    assert srv.engine.params == before


def test_monitor_toggle_without_a_monitor_device_is_not_a_success(srv):
    """Issue 30: it answered 200 and said "monitor on" with nowhere to hear it."""
    for path in ("/api/monitor/toggle", "/api/param/monitor?value=true"):
        st, body, _ = http(srv, "POST", path)
        doc = json.loads(body)
        assert st == 409 and doc["ok"] is False and "no monitor device" in doc["error"] and doc["code"] == -32001
        assert srv.engine.params.monitor is False


def test_keep_offsets_over_http(srv):
    """Issue 30: voice-next dropped a user's +1 back to the voice's preset."""
    http(srv, "POST", "/api/pitch/up")
    st, body, _ = http(srv, "POST", "/api/param/keep_offsets?value=true")
    assert st == 200 and json.loads(body)["state"]["options"] == {"keep_offsets": True}
    http(srv, "POST", "/api/voice-next")
    assert srv.engine.params.voice == "deeper" and srv.engine.params.pitch_st == -3.0  # -4 + the user's +1


def test_preview_clips_need_the_token(srv):
    st, body, hdr = http(srv, "GET", "/preview/joe.wav")
    assert st == 200 and hdr["Content-Type"] == "audio/wav" and body[:4] == b"RIFF"
    assert int(hdr["Content-Length"]) == len(body) == (srv.controller.preview("joe")).stat().st_size
    assert http(srv, "GET", "/preview/joe.wav", token=None)[0] == 401
    st, body, _ = http(srv, "GET", "/preview/robot.wav")
    assert st == 404 and "no preview clip" in json.loads(body)["error"]
    assert http(srv, "GET", "/preview/..%2F..%2Fetc%2Fpasswd.wav")[0] == 404  # names, never paths


def test_query_value_and_param_value_are_pure():
    assert query_value("token=x&value=+=1", "value") == "+=1"
    assert query_value("value=%2B%3D1", "value") == "+=1"
    assert query_value("value", "value") == "" and query_value("a=1", "value") is None
    cur = {**Params().as_dict(), "keep_offsets": False}
    assert param_value("pitch_st", " -= 2 ", cur) == -2.0
    assert param_value("mix", "-=5", cur) == 0.0  # clamped
    assert param_value("keep_offsets", "toggle", cur) is True
    with pytest.raises(ConfigError, match=r"'mix' value 'inf': expected a number in \[0, 1\]"):
        param_value("mix", "inf", cur)


def test_the_panel_url_is_printed_and_opened(tmp_path, monkeypatch, capsys):
    """``rtvc serve`` prints the panel's URL; ``--open`` hands it to the web browser."""
    import argparse
    import webbrowser

    from rtvc.control import commands

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    args = argparse.Namespace(control=True, host="127.0.0.1", port=0, allow_remote=False, origin=None,
                              token=TOKEN, preset=None, hotkeys=None, virtual_mic=False, open=True)
    from tests.control.helpers import make_engine

    h = commands.start_for_run(args, make_engine(), FakeRunner())
    try:
        err = capsys.readouterr().err
        url = f"http://127.0.0.1:{h.server.port}/?token={TOKEN}"
        assert f"rtvc: control panel: {url}" in err and opened == [url]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
    finally:
        h.stop()


def test_presets_and_devices_over_http(tmp_path, monkeypatch):
    """Button apps can load a preset and switch devices, like the panel."""
    from rtvc import audio

    monkeypatch.setattr(audio, "list_devices", lambda backend="portaudio": [dict(r) for r in FakeRunner.ROWS])
    srv = Running(tmp_path, runner=FakeRunner())
    try:
        srv.controller.save_preset("deep", {"voice": "deeper", "pitch_st": -6.0})
        st, body, _ = http(srv, "POST", "/api/preset/deep")
        assert st == 200 and json.loads(body)["state"]["params"]["pitch_st"] == -6.0
        st, body, _ = http(srv, "POST", "/api/preset/nope")
        assert st == 400 and "no preset named 'nope'" in json.loads(body)["error"]
        assert http(srv, "POST", "/api/preset/..%2Fx")[0] == 400
        st, body, _ = http(srv, "POST", "/api/devices?input=USB&monitor=2&rate=44100")
        assert st == 200 and json.loads(body)["state"]["devices"] == {
            "input": "USB Headset", "output": "Speakers", "monitor": "Speakers", "rate": 44100}
        assert srv.controller.runner.calls[-1] == {"input": "USB", "output": None, "monitor": 2, "rate": 44100}
        st, body, _ = http(srv, "POST", "/api/devices?output=Broken")  # fails to open: the old one stays
        doc = json.loads(body)
        assert st == 409 and doc["code"] == -32003 and "Broken Interface" in doc["error"]
        assert srv.controller.runner.devices["output"] == "Speakers"
        st, body, _ = http(srv, "POST", "/api/devices")
        assert st == 400 and "set_devices: empty call" in json.loads(body)["error"]
        assert http(srv, "POST", "/api/monitor/toggle")[0] == 200  # a monitor device is open now
        assert srv.engine.params.monitor is True
    finally:
        srv.close()


def test_open_needs_the_control_server():
    import argparse

    from rtvc.control import commands

    with pytest.raises(ConfigError, match=r"--open opens the control panel, which needs the control server; "
                                          r"expected --control"):
        commands.prepare_run(argparse.Namespace(open=True, control=False, virtual_mic=False))


def test_noise_suppression_availability_and_cost_are_in_the_state(tmp_path, monkeypatch):
    from rtvc import denoise

    r = Running(tmp_path / "a", runner=FakeRunner())
    try:
        d = json.loads(http(r, "GET", "/api/state")[1])["denoise"]
        assert d == {"available": True, "reason": None, "latency_ms": 37.0}
    finally:
        r.close()

    def missing():
        raise ConfigError(f"noise suppression needs DeepFilterNet3: {denoise.INSTALL_HINT}; import failed: test")

    monkeypatch.setattr(denoise, "_runtime", missing)
    r = Running(tmp_path / "b", runner=FakeRunner())
    try:
        d = json.loads(http(r, "GET", "/api/state")[1])["denoise"]
        assert d["available"] is False and d["latency_ms"] is None and "rtvc[denoise]" in d["reason"]
        st, body, _ = http(r, "POST", "/api/param/denoise?value=true")
        assert st == 400 and b"rtvc[denoise]" in body, body  # named, and nothing changed
        assert r.engine.params.denoise is False
    finally:
        r.close()


def test_refusals_over_http_say_409_with_the_websocket_code_and_change_nothing(srv, monkeypatch):
    """A voice whose model is damaged (by name, or reached by voice-next) and an action that hits a
    device that will not open are the session's state, not a fault of rtvc's: 409 with the same
    JSON-RPC code the websocket gives (they answered 500 before), the previous voice playing."""
    from rtvc.errors import DeviceError, ModelError

    make_stage = srv.engine.registry.make_stage

    def broken(info, **kw):
        if info.name == "robot":
            raise ModelError(f"{info.name}.onnx: sha256 mismatch")
        return make_stage(info, **kw)

    monkeypatch.setattr(srv.engine.registry, "make_stage", broken)
    st, body, _ = http(srv, "POST", "/api/voice/robot")
    doc = json.loads(body)
    assert st == 409 and doc["code"] == -32002 and "sha256 mismatch" in doc["error"], doc
    assert "previous voice keeps playing" in doc["error"] and srv.engine.params.voice == "neutral"

    def no_device(name, *, source="api"):
        raise DeviceError("output device 'USB Headset' was unplugged")

    monkeypatch.setattr(srv.controller, "action", no_device)
    st, body, _ = http(srv, "POST", "/api/mute/toggle")
    doc = json.loads(body)
    assert st == 409 and doc["code"] == -32003 and "'USB Headset' was unplugged" in doc["error"], doc
    assert doc["error"].startswith("mute_toggle: ") and srv.engine.params.mute is False
