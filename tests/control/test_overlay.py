"""The OBS overlay in headless Chromium, driven over the Chrome DevTools Protocol.

The browser loads ``/overlay?token=...`` from a running server, the page connects to the
websocket, shows the active voice; a real mouse click (``Input.dispatchMouseEvent``) on a voice
button switches the engine's voice, checked with ``get_state`` from a separate client.
The overlay fits any browser-source size (zoomed to fill it, voices wrapped, nothing clipped),
has a compact view, greys its meters when rtvc stops; screenshots of both views (560x300) go to
``bench/out/`` with ``RTVC_SCREENSHOTS=1``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.control.cdp import Cdp, browser, shots  # noqa: F401 - browser is a fixture
from tests.control.helpers import TOKEN, FakeRunner, Running, recv_json, rpc

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
            # (the state arrives after the socket opens: wait for it, not for any text)
            await cdp.wait_for("document.getElementById('voice').textContent === 'neutral'", sess)
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
            handovers = []  # every forget_speaker is announced as a 'speaker' change
            srv.controller.add_listener(lambda ev: handovers.append(ev) if "speaker" in ev["changed"] else None)
            await cdp.click("#btn-forget", sess)
            await cdp.wait_for("true", sess)
            for _ in range(100):
                if handovers:
                    break
                await asyncio.sleep(0.1)
            assert len(handovers) == 1
            assert await cdp.eval("document.getElementById('error').textContent", sess) == ""
            await asyncio.sleep(0.3)  # let the meters move once more for the screenshot
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
            body = await cdp.wait_for("document.body && document.body.innerText", sess)
            assert "needs the control token" in body and "rtvc serve" in body  # a page that says how, not JSON
    asyncio.run(asyncio.wait_for(go(), 30))


def _overlay_srv(tmp_path, monkeypatch):
    from rtvc import audio

    monkeypatch.setattr(audio, "list_devices", lambda backend="portaudio": [dict(r) for r in FakeRunner.ROWS])
    return Running(tmp_path, models=True, runner=FakeRunner())  # 10 voices: the 7 DSP ones and 3 neural


# the whole panel and every button inside the viewport, and the page shows all of it (nothing cut off)
_INSIDE = ("[document.getElementById('panel'), ...[...document.querySelectorAll('button')].filter(b => "
           "b.offsetParent !== null)].every(b => { "
           "const r = b.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.top >= 0 && "
           "r.right <= innerWidth + 0.5 && r.bottom <= innerHeight + 0.5 && "
           "r.bottom <= document.body.getBoundingClientRect().bottom + 0.5; })")


def test_overlay_fits_any_source_size_and_has_a_compact_view(browser, tmp_path, monkeypatch):  # noqa: F811
    srv = _overlay_srv(tmp_path, monkeypatch)
    try:
        async def go():
            async with connect(browser, max_size=None) as bws:
                cdp = Cdp(bws)
                sess = await cdp.page(f"{srv.http}/overlay?token={TOKEN}", width=400, height=250)
                await cdp.wait_for("document.querySelectorAll('#voices button').length === 10 && "
                                   "document.getElementById('status').textContent === 'live'", sess)
                # a small source: zoomed out until the whole panel fits, every button whole
                await cdp.wait_for(_INSIDE, sess)
                assert float(await cdp.eval("document.body.dataset.scale", sess)) < 1
                # the latency a viewer reads includes the device buffers (8 + 12 ms here)
                total = float(await cdp.wait_for("document.getElementById('latency').dataset.total", sess))
                assert total >= srv.engine.algorithmic_latency_ms + 20.0 - 0.1
                assert "device buffers 20.0 ms" in await cdp.eval("document.getElementById('latency').title", sess)
                # a wide source: the overlay grows with it
                await cdp.resize(sess, 1120, 600)
                await cdp.wait_for("document.getElementById('panel').getBoundingClientRect().width > 900", sess)
                await cdp.wait_for(_INSIDE, sess)
                # the monitor button: on with a monitor device, disabled (with a reason) without
                assert await cdp.eval("document.getElementById('btn-monitor').disabled", sess) is True
                assert "no monitor device" in await cdp.eval("document.getElementById('btn-monitor').title", sess)
                srv.controller.set_devices(monitor="USB Headset", source="cli")
                await cdp.wait_for("!document.getElementById('btn-monitor').disabled", sess)
                await cdp.click("#btn-monitor", sess)
                await cdp.wait_for("document.getElementById('btn-monitor').getAttribute('aria-pressed') === 'true'",
                                   sess)
                assert srv.engine.params.monitor is True
                # noise suppression from the overlay, its cost in the title
                assert "adds 37 ms" in await cdp.eval("document.getElementById('btn-denoise').title", sess)
                await cdp.click("#btn-denoise", sess)
                await cdp.wait_for("document.getElementById('btn-denoise').getAttribute('aria-pressed') === 'true'",
                                   sess)
                assert srv.engine.params.denoise is True
                await cdp.click("#btn-denoise", sess)
                await cdp.wait_for("document.getElementById('btn-denoise').getAttribute('aria-pressed') === 'false'",
                                   sess)
                # the recommended 560x300 source, both views, for the README and bench/out
                await cdp.resize(sess, 560, 300)
                await cdp.wait_for(_INSIDE, sess)
                srv.controller.set_voice("joe", source="cli")
                await cdp.wait_for("document.getElementById('val-out').textContent !== '-inf dB' && "
                                   "document.getElementById('voice').textContent === 'joe'", sess)
                await cdp.screenshot(shots(tmp_path) / "overlay-control-560x300.png", sess)
                compact = await cdp.page(f"{srv.http}/overlay?token={TOKEN}&view=compact", width=560, height=300)
                await cdp.wait_for("document.getElementById('voice').textContent === 'joe' && "
                                   "document.getElementById('val-in').textContent !== '-inf dB'", compact)
                assert await cdp.eval("document.querySelectorAll('#voices button').length === 10 && "
                                      "[...document.querySelectorAll('button')].every(b => b.offsetParent === null)",
                                      compact)  # no buttons shown: name and meters only
                await cdp.wait_for("document.body.dataset.scale > 1", compact)  # it fills the source
                await cdp.wait_for(_INSIDE, compact)
                await cdp.screenshot(shots(tmp_path) / "overlay-compact-560x300.png", compact)
                # rtvc stops: grey, empty meters and "rtvc not running", not frozen levels
                srv.handle.stop()
                for s in (sess, compact):
                    await cdp.wait_for("document.getElementById('status').textContent === 'rtvc not running' && "
                                       "document.body.classList.contains('offline') && "
                                       "document.getElementById('val-in').textContent === '-inf dB' && "
                                       "document.getElementById('meter-in').style.width === '0%'", s)
                urls = cdp.request_urls()
                assert urls and all(u.startswith((srv.http + "/", srv.url)) for u in urls), urls
        asyncio.run(asyncio.wait_for(go(), 120))
    finally:
        srv.close()
