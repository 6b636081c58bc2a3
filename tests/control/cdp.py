"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for the page tests.

Screenshots: ``RTVC_SCREENSHOTS=1 pytest tests/control/test_panel.py tests/control/test_overlay.py``
rewrites the ones in ``bench/out/``.

``browser`` (a pytest fixture) starts Debian's ``chromium`` with a fresh profile and yields the
browser's DevTools websocket address; :class:`Cdp` speaks to it and keeps every event it
receives (``Network.requestWillBeSent`` and friends), so a test can check where the page went.
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
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=620,400", "--hide-scrollbars",
         "--autoplay-policy=no-user-gesture-required",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]  # a microphone that beeps
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out"
"""Where the published screenshots live (``bench/out/``, shown in the README)."""


def shots(tmp_path: Path) -> Path:
    """Where a test writes its screenshots: ``bench/out/`` with ``RTVC_SCREENSHOTS=1`` (to refresh
    the published ones), else the test's temporary folder (a plain run leaves the tree clean)."""
    return SHOTS if os.environ.get("RTVC_SCREENSHOTS") == "1" else tmp_path


class Cdp:
    """Minimal CDP client: one browser websocket, flattened target sessions, events kept."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> Any:
        mid = next(self.ids)
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            if "method" in m:
                self.events.append(m)

    async def page(self, url: str, *, width: int = 1280, height: int = 800, mobile: bool = False) -> str:
        """A new tab of ``width`` x ``height`` CSS pixels with network events on, at ``url``; its session."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        sess = (await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
            "sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            await self.send(f"{domain}.enable", session=sess)
        await self.resize(sess, width, height, mobile=mobile)
        await self.send("Page.navigate", {"url": url}, sess)
        return sess

    async def resize(self, sess: str, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                               "deviceScaleFactor": 1, "mobile": mobile}, sess)

    async def eval(self, expr: str, session: str) -> Any:
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                            session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expr: str, session: str, timeout: float = 20.0) -> Any:
        """Poll ``expr`` until it is truthy (a deadline, not a sleep: busy machines are slow)."""
        end = time.monotonic() + timeout
        while True:
            try:
                v = await self.eval(expr, session)
            except RuntimeError as e:  # the page is still loading (its elements are not there yet)
                v, last = None, e
            else:
                last = None
            if v:
                return v
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {expr}" + (f" ({last})" if last else ""))
            await asyncio.sleep(0.1)

    async def click(self, selector: str, session: str, timeout: float = 10.0) -> None:
        """A real mouse click (pressed + released) in the middle of the element, once the element is
        what the page shows at that point and has stayed in the same place over three looks 0.1 s
        apart (a page still filling itself in from the engine's state moves its buttons: a click
        measured before such a move lands beside the button, as it would for a person). The press is
        then checked to have reached the element; where it did not, the error names what it hit."""
        sel = json.dumps(selector)
        end = time.monotonic() + timeout
        last, steady = None, 0
        while True:
            box = await self.eval(f"(() => {{ const e = document.querySelector({sel}); "
                                  "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                                  "const x = r.x + r.width / 2, y = r.y + r.height / 2; "
                                  "const at = document.elementFromPoint(x, y); "
                                  "return [x, y, !!at && (at === e || e.contains(at)), "
                                  "at ? at.tagName + '#' + at.id : 'nothing', [r.x, r.y, r.width, r.height]]; })()",
                                  session)
            steady = steady + 1 if box[2] and box[4] == last else 0
            last = box[4]
            if steady >= 2:
                break
            if time.monotonic() > end:
                raise AssertionError(f"{selector} is covered by {box[3]} at ({box[0]:.0f}, {box[1]:.0f})" if not box[2]
                                     else f"{selector} kept moving (last at {box[4]})")
            await asyncio.sleep(0.1)
        await self.eval(f"(() => {{ window.__cdpPressed = null; document.addEventListener('mousedown', (ev) => {{ "
                        f"window.__cdpPressed = document.querySelector({sel}).contains(ev.target) ? '' : "
                        "ev.target.tagName + '#' + ev.target.id + '.' + ev.target.className; }, "
                        "{capture: true, once: true}); return 1; })()", session)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                         "clickCount": 1}, session)
        missed = await self.eval("window.__cdpPressed", session)
        if missed is None:
            raise AssertionError(f"the click at ({box[0]:.0f}, {box[1]:.0f}) meant for {selector} reached no element")
        if missed:
            raise AssertionError(f"the click at ({box[0]:.0f}, {box[1]:.0f}) meant for {selector} landed on {missed}: "
                                 "the page moved it between the look and the click")

    async def press(self, key: str, session: str, *, shift: bool = False) -> None:
        """One key press (a name of :data:`KEYS`) as the keyboard sends it to the focused element."""
        code, vk, text = KEYS[key]
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                "modifiers": 8 if shift else 0}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown" if text else "rawKeyDown", **base,
                                                   **({"text": text, "unmodifiedText": text} if text else {})},
                        session)
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base}, session)

    async def type(self, text: str, session: str) -> None:
        await self.send("Input.insertText", {"text": text}, session)

    async def screenshot(self, path: Path, session: str) -> Path:
        shot = await self.send("Page.captureScreenshot", {"format": "png"}, session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def request_urls(self) -> list[str]:
        """Every URL the pages asked for (HTTP requests and websockets)."""
        out = [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
        out += [e["params"]["url"] for e in self.events if e["method"] == "Network.webSocketCreated"]
        return out


KEYS = {"ArrowRight": ("ArrowRight", 39, ""), "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowUp": ("ArrowUp", 38, ""),
        "ArrowDown": ("ArrowDown", 40, ""), "Tab": ("Tab", 9, ""), "Enter": ("Enter", 13, "\r"),
        " ": ("Space", 32, " ")}
"""key -> (code, Windows virtual key code, text it types)."""


@pytest.fixture()
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 60
    while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
        if time.monotonic() > end or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("chromium did not write DevToolsActivePort")
        time.sleep(0.1)
    port, path = port_file.read_text().splitlines()[:2]
    yield f"ws://127.0.0.1:{port}{path}"
    os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helper processes (our own session)
    proc.wait(10)
