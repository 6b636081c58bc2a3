"""The HTTP side of the control port: the token and ``Origin`` checks, the pages, the voices'
preview clips and the ``/api`` buttons (the routes are listed in :mod:`rtvc.control.server`).

:class:`HttpFront` answers websockets' ``process_request`` hook: a response for a plain HTTP
request, ``None`` to let an authenticated websocket handshake through. It works on the
connection and request objects websockets passes in (``conn.respond``, ``request.headers``),
so this module imports no ``websockets`` itself (only the server does). The ``/api`` actions
run on the thread pool that serialises the controller's changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, RtvcError
from . import protocol as P
from .actions import Controller, rpc_error
from .auth import default_origins, origin_allowed, token_from_request, tokens_equal
from .routes import device_query, query_value, token_page

__all__ = ["HttpFront", "overlay_html", "panel_html"]

_HTTP_ACTIONS = {
    "/api/bypass/toggle": "bypass_toggle",
    "/api/mute/toggle": "mute_toggle",
    "/api/monitor/toggle": "monitor_toggle",
    "/api/denoise/toggle": "denoise_toggle",
    "/api/pitch/up": "pitch_up",
    "/api/pitch/down": "pitch_down",
    "/api/voice-next": "voice_next",
    "/api/voice-prev": "voice_prev",
    "/api/quit": "quit",
    "/api/speaker/forget": "speaker_forget",
}


def overlay_html() -> str:
    """The overlay page shipped as package data (``rtvc/control/overlay.html``)."""
    return resources.files("rtvc.control").joinpath("overlay.html").read_text(encoding="utf-8")


def panel_html() -> str:
    """The control panel shipped as package data (``rtvc/control/panel.html``)."""
    return resources.files("rtvc.control").joinpath("panel.html").read_text(encoding="utf-8")


# the pages load nothing from elsewhere: inline script and style, the websocket and clips of this server
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: ; "
        "img-src data:; media-src 'self'; base-uri 'none'; form-action 'none'")
_PAGES = {"/": panel_html, "/panel": panel_html, "/overlay": overlay_html}
# a bad value is the caller's (400); a refusal that leaves everything as it was (no monitor device, a
# voice whose model is damaged, a device that will not open) is the session's state (409); 500 only
# for a fault of rtvc's own
_HTTP_STATUS = {P.INVALID_PARAMS: 400, P.NOT_AVAILABLE: 409, P.VOICE_LOAD_FAILED: 409, P.DEVICE_ERROR: 409}
_HTTP_NAMED = ["/api/devices", "/api/param/NAME", "/api/preset/NAME", "/api/state", "/api/voice/NAME"]


class HttpFront:
    """The HTTP routes of one control server.

    Parameters
    ----------
    controller : Controller
    token : str
        The shared secret every page and ``/api`` action must present.
    pool : concurrent.futures.Executor
        Where the ``/api`` actions and clip reads run (the server's, which serialises changes).
    origins : list of str or None
        Allowed browser ``Origin`` values; default :func:`auth.default_origins` of :attr:`port`.

    :attr:`port` is the bound port (the server sets it once it listens); :attr:`stats` counts
    the requests refused for a wrong token or origin.
    """

    def __init__(self, controller: Controller, *, token: str, pool: concurrent.futures.Executor,
                 origins: list[str] | None = None) -> None:
        self.controller = controller
        self.token = token
        self.port = 0
        self._pool = pool
        self._origins = origins
        self.stats = {"rejected_auth": 0, "rejected_origin": 0}

    @property
    def origins(self) -> list[str]:
        return self._origins if self._origins is not None else default_origins(self.port)

    def _respond(self, conn: Any, status: int, body: str, content_type: str = "application/json",
                 extra: dict[str, str] | None = None) -> Any:
        resp = conn.respond(status, body)
        del resp.headers["Content-Type"]
        resp.headers["Content-Type"] = content_type + "; charset=utf-8"
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        for k, v in (extra or {}).items():
            resp.headers[k] = v
        return resp

    def _json(self, conn: Any, status: int, obj: Any) -> Any:
        return self._respond(conn, status, P.dumps(obj) + "\n")

    async def process_request(self, conn: Any, request: Any) -> Any:
        """websockets' ``process_request`` hook: a response, or ``None`` for a websocket handshake."""
        url = urlsplit(request.path)
        path = url.path
        method = request.method
        headers = request.headers
        if path == "/healthz":
            return self._json(conn, 200, {"status": "ok", "protocol_version": P.PROTOCOL_VERSION})
        if path == "/schema.json":
            return self._json(conn, 200, P.build_schema())
        origin = headers.get("Origin")
        if not origin_allowed(origin, self.origins):
            self.stats["rejected_origin"] += 1
            return self._json(conn, 403, {"error": f"origin {origin!r} is not allowed; expected one of "
                                                   f"{self.origins} (or no Origin header)"})
        token = token_from_request(headers.get("Authorization"), url.query)
        if not tokens_equal(token, self.token):
            self.stats["rejected_auth"] += 1
            is_ws = headers.get("Upgrade", "").lower() == "websocket"
            if path in _PAGES and method == "GET" and not is_ws:
                reason = "No token was given" if token is None else "The token given is wrong"
                return self._respond(conn, 401, token_page(path, port=self.port, reason=reason), "text/html",
                                     {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
            return self._json(conn, 401, {"error": "missing or wrong token; send 'Authorization: Bearer TOKEN' "
                                                   "or ?token=TOKEN"})
        if headers.get("Upgrade", "").lower() == "websocket":
            return None  # authenticated websocket handshake: accept
        if path in _PAGES:
            if method != "GET":
                return self._json(conn, 405, {"error": f"{method} {path}; expected GET"})
            extra = {"Content-Security-Policy": _CSP + ("" if path == "/overlay" else "; frame-ancestors 'none'")}
            return self._respond(conn, 200, _PAGES[path](), "text/html", extra)
        if path.startswith("/preview/") and path.endswith(".wav"):
            return await self._preview(conn, method, unquote(path[len("/preview/"):-len(".wav")]))
        if path == "/api/state" and method == "GET":
            return self._json(conn, 200, self.controller.state())
        if path.startswith("/api/"):
            if method not in ("POST", "GET"):
                return self._json(conn, 405, {"error": f"{method} {path}; expected POST"})
            loop = asyncio.get_running_loop()
            if path.startswith("/api/voice/"):
                name = unquote(path[len("/api/voice/"):])
                fn = lambda: self.controller.execute(P.SetVoice(name), source="http")  # noqa: E731
            elif path.startswith("/api/param/"):
                pname, value = unquote(path[len("/api/param/"):]), query_value(url.query, "value")
                fn = lambda: self._http_call(f"/api/param/{pname}",  # noqa: E731
                                             lambda: self.controller.set_param_text(pname, value, source="http"))
            elif path.startswith("/api/preset/"):
                preset = unquote(path[len("/api/preset/"):])
                fn = lambda: self.controller.execute(P.LoadPreset.from_params({"name": preset}),  # noqa: E731
                                                     source="http")
            elif path == "/api/devices":
                spec = device_query(url.query)
                fn = lambda: self.controller.execute(P.SetDevices.from_params(spec), source="http")  # noqa: E731
            elif path in _HTTP_ACTIONS:
                act = _HTTP_ACTIONS[path]
                fn = lambda: self._http_call(act, lambda: self.controller.action(act, source="http"))  # noqa: E731
            else:
                return self._json(conn, 404, {"error": f"no route {path!r}; expected one of "
                                                       f"{sorted(_HTTP_ACTIONS) + _HTTP_NAMED}"})
            try:
                st = await loop.run_in_executor(self._pool, fn)
            except P.RpcError as e:
                return self._json(conn, _HTTP_STATUS.get(e.code, 500), {"ok": False, "error": e.message, "code": e.code})
            return self._json(conn, 200, {"ok": True, "state": st})
        return self._json(conn, 404, {"error": f"no route {method} {path!r}"})

    async def _preview(self, conn: Any, method: str, name: str) -> Any:
        """A neural voice's preview clip (``audio/wav``), read off the event loop."""
        if method != "GET":
            return self._json(conn, 405, {"error": f"{method} /preview/{name}.wav; expected GET"})
        try:
            clip = self.controller.preview(name)
            data = await asyncio.get_running_loop().run_in_executor(self._pool, clip.read_bytes)
        except (ConfigError, OSError) as e:
            return self._json(conn, 404, {"error": f"preview of voice {name!r}: {e}"})
        resp = conn.respond(200, "")
        for k in ("Content-Type", "Content-Length"):
            del resp.headers[k]
        resp.headers["Content-Type"] = "audio/wav"
        resp.headers["Content-Length"] = str(len(data))
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return dataclasses.replace(resp, body=data)

    def _http_call(self, name: str, fn: Any) -> dict[str, Any]:
        try:
            return fn()
        except P.RpcError:
            raise
        except RtvcError as e:  # the same codes as the websocket's (a device that will not open: 409)
            raise rpc_error(name, e) from None
        except Exception as e:
            raise P.RpcError(P.INTERNAL_ERROR, f"{name}: {type(e).__name__}: {e}") from None
