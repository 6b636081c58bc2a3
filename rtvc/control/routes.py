"""The pure parts of the HTTP routes: parameter values from a URL, and the pages a browser sees
without the token. No I/O; the server (:mod:`rtvc.control.server`) calls these.

``POST /api/param/NAME?value=V`` sets any live parameter (or the ``keep_offsets`` option) from a
button: ``V`` is the value (``-3``, ``true``, ``deeper``), ``+=STEP`` / ``-=STEP`` for a relative
step from the current value (clamped to the range), or ``toggle`` for a switch. The value is read
from the raw query without form decoding, so a literal ``+`` stays a plus (``value=+=1`` and
``value=%2B%3D1`` are the same step).
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping
from urllib.parse import quote, unquote

from ..errors import ConfigError
from ..params import PARAM_SPECS, shown, validate_value

__all__ = ["OPTIONS", "PARAM_NAMES", "query_value", "param_value", "device_query", "token_page", "server_address",
           "page_address"]

OPTIONS: dict[str, str] = {"keep_offsets": "a voice switch keeps your pitch/formant offsets (true/false/toggle)"}
"""Controller options settable through ``/api/param/NAME`` beside the parameters."""

PARAM_NAMES: tuple[str, ...] = tuple(PARAM_SPECS) + tuple(OPTIONS)


def server_address(host: str, port: int) -> str:
    """``http://HOST:PORT`` of a control server (an IPv6 host in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def page_address(host: str, port: int, token: str, page: str = "/") -> str:
    """The address of one of the server's pages with the token percent-encoded (a token may hold
    ``#&+%``)."""
    return f"{server_address(host, port)}{page}?token={quote(token, safe='')}"


_TRUE = ("true", "1", "on", "yes")
_FALSE = ("false", "0", "off", "no")


def query_value(query: str, key: str) -> str | None:
    """The first ``key=...`` value of a raw query string, percent-decoded but not form-decoded
    (``+`` stays ``+``); ``None`` when absent."""
    for part in query.split("&"):
        k, sep, v = part.partition("=")
        if unquote(k) == key:
            return unquote(v) if sep else ""
    return None


def device_query(query: str) -> dict[str, Any]:
    """``set_devices`` parameters from ``/api/devices?input=..&output=..&monitor=..&rate=..``: a
    value of digits is a device index (or the rate), anything else a name substring."""
    out: dict[str, Any] = {}
    for key in ("input", "output", "monitor", "rate"):
        v = query_value(query, key)
        if v is not None and v != "":
            out[key] = int(v) if v.isdigit() and len(v) < 12 else v
    return out


def _expected(name: str) -> str:
    if name in OPTIONS or PARAM_SPECS[name].kind is bool:
        return "true, false or toggle"
    spec = PARAM_SPECS[name]
    if spec.kind is str:
        return "a voice name from list_voices"
    unit = f" {spec.unit}" if spec.unit else ""
    return f"a number in [{spec.lo:g}, {spec.hi:g}]{unit}, or a step +=N / -=N"


def param_value(name: str, text: str | None, current: Mapping[str, Any]) -> Any:
    """The value ``text`` sets parameter ``name`` to, given the ``current`` values.

    Parameters
    ----------
    name : str
        A name of :data:`PARAM_NAMES`.
    text : str or None
        What the URL gave (``None``: no ``value``).
    current : mapping
        Current parameters and options (``+=``/``-=`` and ``toggle`` start from them).

    Raises
    ------
    ConfigError
        Unknown name, missing or malformed value, or an absolute value out of range; the message
        names the parameter, the value and what was expected.
    """
    if name not in PARAM_NAMES:
        raise ConfigError(f"unknown parameter {shown(name)}; expected one of {list(PARAM_NAMES)}")
    if text is None:
        raise ConfigError(f"parameter {name!r}: no value; expected ?value=V with V {_expected(name)}")
    t = text.strip()
    bad = ConfigError(f"parameter {name!r} value {shown(text)}: expected {_expected(name)}")
    if name in OPTIONS or PARAM_SPECS[name].kind is bool:
        low = t.lower()
        if low == "toggle":
            return not bool(current.get(name))
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise bad
    spec = PARAM_SPECS[name]
    if spec.kind is str:
        return validate_value(name, t)
    step = t[:2] if t[:2] in ("+=", "-=") else ""
    try:
        v = float(t[len(step):].strip())
    except ValueError:
        raise bad from None
    if not math.isfinite(v):
        raise bad
    if step:
        v = float(current[name]) + (v if step == "+=" else -v)
        return min(float(spec.hi), max(float(spec.lo), v))  # type: ignore[arg-type]
    try:
        return validate_value(name, v)
    except ConfigError:
        raise ConfigError(f"parameter {name!r} value {shown(text)} is out of range; expected "
                          f"{_expected(name)}") from None


def token_page(path: str, *, port: int, reason: str) -> str:
    """The small page a browser gets on ``/``, ``/panel`` or ``/overlay`` without the right token:
    how to get the address with the token (never the token itself)."""
    page = html.escape(path)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rtvc: token needed</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}
code{{background:#eee;padding:1px 4px;border-radius:4px}}</style></head>
<body><h1>rtvc: this page needs the control token</h1>
<p>{html.escape(reason)}. Open the address that rtvc printed when it started, which carries the token:</p>
<pre><code>rtvc: control panel: http://127.0.0.1:{port}/?token=...</code></pre>
<p>Start rtvc with <code>rtvc serve</code> or <code>rtvc run --control</code> (add <code>--open</code> to open
the panel in your browser). The token is stored in <code>control_token</code> in rtvc's config folder
(<code>~/.config/rtvc</code> on Linux, <code>%APPDATA%\\rtvc</code> on Windows), or given with
<code>--token</code> / <code>RTVC_TOKEN</code>; add it as <code>{page}?token=TOKEN</code>.</p>
</body></html>
"""
