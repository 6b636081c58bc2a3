"""The OBS overlay in headless Chromium, driven over the Chrome DevTools Protocol.

The browser loads ``/overlay?token=...`` from a running server, the page connects to the
websocket, shows the active voice; a real mouse click (``Input.dispatchMouseEvent``) on a voice
button switches the engine's voice, checked with ``get_state`` from a separate client.
A screenshot is written to /tmp/overlay.png.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.control.helpers import TOKEN, Running, recv_json, rpc

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=620,400", "--hide-scrollbars"]


class Cdp:
    """Minimal CDP client: one browser websocket, flattened target sessions."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method, params=None, session=None):
        mid = next(self.ids)
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 15))
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    async def eval(self, expr, session):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return r["result"].get("value")

    async def wait_for(self, expr, session, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = await self.eval(expr, session)
            if v:
                return v
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expr}")


@pytest.fixture()
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("chromium did not write DevToolsActivePort")
    port, path = port_file.read_text().splitlines()[:2]
    yield f"ws://127.0.0.1:{port}{path}"
    os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helper processes (our own session)
    proc.wait(10)


@pytest.fixture()
def srv(tmp_path):
    r = Running(tmp_path)
    yield r
    r.close()


def test_overlay_shows_voice_and_a_click_switches_it(browser, srv):
    async def go():
        async with connect(browser, max_size=None) as bws:
            cdp = Cdp(bws)
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            sess = (await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
                "sessionId"]
            await cdp.send("Page.enable", session=sess)
            await cdp.send("Runtime.enable", session=sess)
            await cdp.send("Page.navigate", {"url": f"{srv.http}/overlay?token={TOKEN}"}, session=sess)
            # connected, showing the active voice, voice buttons listed, telemetry flowing
            await cdp.wait_for("document.getElementById('status').textContent === 'live'", sess)
            assert await cdp.wait_for("document.getElementById('voice').textContent", sess) == "neutral"
            await cdp.wait_for("document.querySelectorAll('#voices button').length === 7", sess)
            await cdp.wait_for("document.getElementById('val-in').textContent !== '-inf dB'", sess)
            assert await cdp.eval("document.querySelector('#voices button.current').dataset.voice", sess) == "neutral"
            # the input meter marks where the gate opens, as the engine reports it (the rule: test_engine.py)
            got = float(await cdp.wait_for("document.getElementById('gate-in').dataset.db", sess))
            t = srv.engine.telemetry()
            assert -60.5 < t["gate_open_dbfs"] <= -26.0 and abs(got - t["gate_open_dbfs"]) < 3.0, (got, t)
            # a real mouse click on the 'deeper' button
            box = await cdp.eval("(() => { const r = document.querySelector('[data-voice=\"deeper\"].voice-btn')"
                                 ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()",
                                 sess)
            for kind in ("mousePressed", "mouseReleased"):
                await cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                            "clickCount": 1}, sess)
            await cdp.wait_for("document.getElementById('voice').textContent === 'deeper'", sess)
            async with connect(srv.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                await recv_json(ws)
                st = (await rpc(ws, "get_state"))["result"]
                assert st["voice"] == "deeper"
                # a change from another client shows up in the page (state_changed broadcast)
                await rpc(ws, "set_params", {"bypass": True}, 2)
            await cdp.wait_for("document.getElementById('badge-bypass').classList.contains('active')", sess)
            # the bypass button toggles it back
            box = await cdp.eval("(() => { const r = document.getElementById('btn-bypass').getBoundingClientRect();"
                                 " return [r.x + r.width / 2, r.y + r.height / 2]; })()", sess)
            for kind in ("mousePressed", "mouseReleased"):
                await cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                            "clickCount": 1}, sess)
            await cdp.wait_for("!document.getElementById('badge-bypass').classList.contains('active')", sess)
            assert srv.engine.params.bypass is False
            # 'New speaker' hands the voice over (forget_speaker); the page shows what the voice learnt from
            assert (await cdp.wait_for("document.getElementById('speaker').textContent", sess)).endswith(" s")
            asked = srv.engine._forget_asked
            box = await cdp.eval("(() => { const r = document.getElementById('btn-forget').getBoundingClientRect();"
                                 " return [r.x + r.width / 2, r.y + r.height / 2]; })()", sess)
            for kind in ("mousePressed", "mouseReleased"):
                await cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                            "clickCount": 1}, sess)
            for _ in range(50):
                if srv.engine._forget_asked == asked + 1:
                    break
                await asyncio.sleep(0.1)
            assert srv.engine._forget_asked == asked + 1
            assert await cdp.eval("document.getElementById('error').textContent", sess) == ""
            await asyncio.sleep(0.3)  # let the meters move once more for the screenshot
            shot = await cdp.send("Page.captureScreenshot", {"format": "png"}, sess)
            Path("/tmp/overlay.png").write_bytes(base64.b64decode(shot["data"]))
            # the page loaded nothing from outside the server
            urls = await cdp.eval("performance.getEntriesByType('resource').map(e => e.name)", sess)
            assert all(u.startswith(srv.http) or u.startswith(srv.url.rstrip('/')) for u in urls), urls
    asyncio.run(asyncio.wait_for(go(), 60))
    assert srv.engine.params.voice == "deeper"


def test_overlay_without_token_cannot_connect(browser, srv):
    async def go():
        async with connect(browser, max_size=None) as bws:
            cdp = Cdp(bws)
            target = await cdp.send("Target.createTarget", {"url": f"{srv.http}/overlay"})
            sess = (await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
                "sessionId"]
            await cdp.send("Runtime.enable", session=sess)
            await asyncio.sleep(1.0)
            body = await cdp.eval("document.body.innerText", sess)
            assert "token" in body and "Voice" not in body  # the 401 JSON, not the page
    asyncio.run(asyncio.wait_for(go(), 30))
