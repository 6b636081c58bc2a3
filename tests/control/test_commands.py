"""CLI parts: presets subcommand, run options, and `rtvc serve` end to end (file in, null out)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from websockets.asyncio.client import connect

from rtvc.cli import main, make_parser, sample_path
from tests.control.helpers import free_port, recv_json, rpc

TOKEN = "cli-test-token-42"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    monkeypatch.delenv("RTVC_TOKEN", raising=False)
    return tmp_path


def test_presets_subcommand(home, capsys):
    assert main(["presets", "save", "calm", "voice=deeper", "pitch_st=-2", "bypass=false"]) == 0
    assert "saved preset 'calm'" in capsys.readouterr().out
    assert main(["presets", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "calm", "params": {"voice": "deeper", "pitch_st": -2.0, "bypass": False}}]
    assert main(["presets", "show", "calm"]) == 0
    assert json.loads(capsys.readouterr().out)["pitch_st"] == -2.0
    assert main(["presets", "save", "loud", "output_gain_db=80"]) == 2
    assert "preset value 'output_gain_db=80': parameter 'output_gain_db' = 80.0 is out of range" in \
        capsys.readouterr().err
    # the CLI's short names work in presets too, and an error names what was typed
    assert main(["presets", "save", "short", "pitch=3", "formant=1.1", "gate-db=-50"]) == 0
    capsys.readouterr()
    assert main(["presets", "show", "short"]) == 0
    assert json.loads(capsys.readouterr().out) == {"pitch_st": 3.0, "formant_ratio": 1.1, "gate_threshold_db": -50.0}
    assert main(["presets", "save", "high", "pitch=20"]) == 2
    assert capsys.readouterr().err.startswith("rtvc: error: preset value 'pitch=20': ")
    assert main(["presets", "save", "huge", "pitch_st=1" + "0" * 310]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["presets", "save", "../up", "mix=1"]) == 2
    assert "preset name '../up' is invalid" in capsys.readouterr().err
    assert main(["presets", "save", "x", "novalue"]) == 2
    assert "expected PARAM=VALUE" in capsys.readouterr().err
    assert main(["presets", "delete", "calm"]) == 0
    assert main(["presets", "delete", "calm"]) == 2
    assert "no preset named 'calm'" in capsys.readouterr().err


def test_run_accepts_the_control_options():
    args = make_parser().parse_args(["run", "--control", "--port", "9000", "--token", TOKEN, "--allow-remote",
                                     "--host", "0.0.0.0", "--virtual-mic", "--preset", "p", "--hotkeys",
                                     "--origin", "https://deck.example"])
    assert (args.control, args.port, args.token, args.allow_remote, args.host) == (True, 9000, TOKEN, True, "0.0.0.0")
    assert args.virtual_mic and args.preset == "p" and args.hotkeys == "" and args.origin == ["https://deck.example"]
    args = make_parser().parse_args(["run"])
    assert (args.control, args.port, args.host, args.hotkeys, args.virtual_mic) == (False, 8765, "127.0.0.1", None,
                                                                                     False)


def test_serve_refuses_a_remote_bind_without_allow_remote(home, capsys):
    assert main(["serve", "--input-file", str(sample_path()), "--null-output", "--host", "0.0.0.0", "--port", "0",
                 "--duration", "1"]) == 2
    assert "'0.0.0.0' is not a loopback address" in capsys.readouterr().err


def test_serve_end_to_end(home, capsys):
    assert main(["presets", "save", "start", "voice=higher", "mix=0.75"]) == 0
    port = free_port()
    rc = []
    t = threading.Thread(target=lambda: rc.append(main([
        "serve", "--input-file", str(sample_path()), "--null-output", "--loop", "--port", str(port),
        "--token", TOKEN, "--preset", "start", "--duration", "12", "--quiet"])))
    t.start()

    async def go():
        loop = asyncio.get_running_loop()
        end = loop.time() + 60  # a deadline: the engine warms up slowly on a busy machine
        while True:
            try:
                ws = await connect(f"ws://127.0.0.1:{port}/?token={TOKEN}")
                break
            except OSError:
                if loop.time() > end or not t.is_alive():
                    raise AssertionError(f"rtvc serve did not listen on port {port} (exit: {rc})") from None
                await asyncio.sleep(0.1)
        async with ws:
            hello = await recv_json(ws)
            assert hello["params"]["state"]["voice"] == "higher"  # --preset applied
            assert hello["params"]["state"]["params"]["mix"] == 0.75
            assert hello["params"]["state"]["live"] is True
            r = await rpc(ws, "set_voice", {"name": "robot"})
            assert r["result"]["voice"] == "robot"
            r = await rpc(ws, "list_devices", None, 2)  # file mode: no device is open (documented)
            assert r["error"]["code"] == -32001 and "file mode" in r["error"]["message"]
            await rpc(ws, "subscribe", {"rate_hz": 20}, 3)
            for _ in range(30):
                m = await recv_json(ws)
                if m.get("method") == "telemetry" and m["params"]["voice"] == "robot" and m["params"]["blocks"] > 0:
                    return m["params"]
            raise AssertionError("no telemetry from the running engine")
    tel = asyncio.run(asyncio.wait_for(go(), 90))
    assert tel["input_level_dbfs"] > -100
    t.join(30)
    assert rc == [0]
    err = capsys.readouterr().err
    assert f"ws://127.0.0.1:{port}/" in err and f"token from --token: {TOKEN}" in err
    assert f"/overlay?token={TOKEN}" in err and f"rtvc: control panel: http://127.0.0.1:{port}/?token={TOKEN}" in err


def test_route_without_a_server_fails_clearly(home, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/no-server")
    assert main(["route"]) == 2
    err = capsys.readouterr().err
    assert "rtvc: error:" in err and ("no PulseAudio/PipeWire-Pulse server" in err or "'pactl' was not found" in err)


def test_selftest_options_are_validated(home, capsys):
    assert main(["selftest", "--latency-msec", "0"]) == 2
    assert "--latency-msec 0 is out of range; expected 1..500 ms" in capsys.readouterr().err
    assert main(["selftest", "--rate", "12345"]) == 2
    assert "--rate 12345 Hz is not supported" in capsys.readouterr().err
