"""Who may talk to the control server: token, Origin allow-list and bind address.

Every websocket connection and every HTTP action carries the token, as an
``Authorization: Bearer TOKEN`` header or a ``token`` query parameter (browsers cannot set
headers on a websocket). Tokens are compared in constant time. Browsers always send an
``Origin`` header; checking it against an allow-list stops a web page the user happens to
visit from driving the voice changer with a token it learnt elsewhere (cross-site websocket
hijacking). Clients that send no ``Origin`` are not browsers and are allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import parse_qs

from ..errors import ConfigError
from ..paths import config_dir

__all__ = ["TOKEN_FILE", "load_or_create_token", "validate_token", "token_file_warning", "tokens_equal",
           "token_from_request", "default_origins", "origin_allowed", "is_loopback", "check_bind_host"]

TOKEN_FILE = "control_token"
log = logging.getLogger("rtvc.control")
_MIN_TOKEN = 8
_MAX_TOKEN = 256


def validate_token(token: object) -> str:
    """Return ``token`` if usable: 8-256 printable ASCII characters without spaces."""
    if not isinstance(token, str) or not (_MIN_TOKEN <= len(token) <= _MAX_TOKEN) \
            or not all(33 <= ord(c) < 127 for c in token):
        shown = token if not isinstance(token, str) else f"<{len(token)} characters>"
        raise ConfigError(f"control token {shown!r} is invalid; expected {_MIN_TOKEN}-{_MAX_TOKEN} printable "
                          "ASCII characters without spaces")
    return token


def load_or_create_token(explicit: str | None = None, *, env: Mapping[str, str] | None = None,
                         directory: Path | None = None) -> tuple[str, str]:
    """The token to use and where it came from (``"--token"``, ``"RTVC_TOKEN"`` or the file path).

    Order: ``explicit`` (``--token``), the ``RTVC_TOKEN`` environment variable, else the token
    stored in ``config_dir()/control_token``, generated (``secrets.token_urlsafe``) and stored
    with mode 0600 on first use. A stored file that other users may read is used all the same,
    with a warning (logger ``rtvc.control``) saying how to fix it.
    """
    env = os.environ if env is None else env
    if explicit:
        return validate_token(explicit), "--token"
    if env.get("RTVC_TOKEN"):
        return validate_token(env["RTVC_TOKEN"]), "RTVC_TOKEN"
    d = directory or config_dir()
    path = d / TOKEN_FILE
    if path.is_file():
        warning = token_file_warning(path)
        if warning:
            log.warning("%s", warning)
        tok = path.read_text(encoding="ascii", errors="replace").strip()
        try:
            return validate_token(tok), str(path)
        except ConfigError as e:
            raise ConfigError(f"token file {path}: {e}; delete the file to generate a new token") from None
    d.mkdir(parents=True, exist_ok=True)
    tok = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(tok + "\n")
    return tok, str(path)


def token_file_warning(path: Path) -> str | None:
    """A warning when users other than the owner may read or change the token file (POSIX modes)."""
    if os.name != "posix":  # Windows keeps %APPDATA% private through ACLs, not mode bits
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    return (f"the control token file {path} has mode {mode:04o}: other users of this machine can read "
            f"the token and control rtvc; make it private with: chmod 600 {path}")


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison (``hmac.compare_digest``); ``None`` never matches."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def token_from_request(authorization: str | None, query: str) -> str | None:
    """The token a request presents: the Bearer header first, else the ``token`` query value."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    vals = parse_qs(query, keep_blank_values=True).get("token")
    return vals[0] if vals else None


def default_origins(port: int) -> list[str]:
    """Origins of the overlay served by this server itself, plus ``null`` (OBS, file pages)."""
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}", "null"]


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """No ``Origin`` (a non-browser client) is allowed; otherwise it must be listed exactly."""
    if origin is None:
        return True
    return origin.strip().lower() in {a.lower() for a in allowed}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, *, allow_remote: bool) -> str | None:
    """Refuse a non-loopback bind address unless ``allow_remote``; return a warning if allowed."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ConfigError(f"control host {host!r} is not a loopback address; expected 127.0.0.1 or ::1, "
                          "or pass --allow-remote to expose the voice changer to other machines")
    return (f"WARNING: the control server listens on {host!r}: anyone who can reach this address and "
            "knows the token can control the voice changer. The connection is not encrypted.")
