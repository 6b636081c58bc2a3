"""``rtvc shortcut``: start rtvc from the desktop's application menu, without typing a command.

The shortcut runs ``rtvc serve --open --keep-window`` with the Python that installed it: rtvc
starts on the default devices with its control server, opens the control panel in the browser,
and shows its log in a window (closing the window stops rtvc; after an error the window stays
until Enter, so the reason can be read). A second start while rtvc runs opens the running one's
panel instead (:func:`open_running_panel`).

Where it goes, per system (:func:`shortcut_path`):

- Linux and other freedesktop systems: ``$XDG_DATA_HOME/applications/rtvc.desktop`` (default
  ``~/.local/share/applications``), a Desktop Entry with ``Terminal=true``;
- macOS: ``~/Applications/rtvc.command``, a shell script Finder opens in Terminal;
- Windows: ``rtvc.lnk`` in the user's Start-menu programs folder, made by PowerShell's
  ``WScript.Shell`` (the only system part here that CI cannot run).

A file of that name that rtvc did not write is never overwritten (each kind carries a marker);
``--remove`` deletes only rtvc's own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

__all__ = ["shortcut_path", "shortcut_text", "install_shortcut", "remove_shortcut", "launch_argv",
           "open_running_panel", "open_browser", "MARKER"]

MARKER = "X-rtvc-shortcut=1"
"""The line (a comment in the scripts) that says rtvc wrote the file."""
NAME = "rtvc voice changer"
COMMENT = "Real-time voice changer: starts rtvc and opens its control panel"


def _system(system: str | None) -> str:
    s = system or sys.platform
    return "windows" if s.startswith("win") else "macos" if s == "darwin" else "linux"


def launch_argv(python: str | None = None) -> list[str]:
    """What the shortcut runs: this Python's ``rtvc serve --open --keep-window``."""
    return [python or sys.executable, "-m", "rtvc", "serve", "--open", "--keep-window"]


def shortcut_path(system: str | None = None) -> Path:
    """Where :func:`install_shortcut` writes for ``system`` (``sys.platform`` by default)."""
    kind = _system(system)
    if kind == "windows":
        base = os.environ.get("APPDATA")
        if not base:
            raise ConfigError("APPDATA is not set; expected the Windows user profile's roaming folder")
        return Path(base) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "rtvc.lnk"
    if kind == "macos":
        return Path.home() / "Applications" / "rtvc.command"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "applications" / "rtvc.desktop"


def _desktop_quote(arg: str) -> str:
    """One argument of a Desktop Entry ``Exec`` key (the spec's quoting: double quotes around an
    argument with reserved characters, backslash before ``"`` `` ` `` ``$`` ``\\``; ``%`` doubled)."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    inner = "".join("\\" + c if c in "\"`$\\" else c for c in arg)
    # the whole value is then a string of the key file format, which unescapes one level of backslashes
    return '"' + inner.replace("\\", "\\\\") + '"'


def _sh_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _ps_quote(arg: str) -> str:
    return "'" + arg.replace("'", "''") + "'"


def shortcut_text(system: str | None = None, *, python: str | None = None) -> str:
    """The shortcut's content: the Desktop Entry (Linux), the shell script (macOS) or the
    PowerShell script that makes the ``.lnk`` (Windows)."""
    argv = launch_argv(python)
    kind = _system(system)
    if kind == "linux":
        return "\n".join(["[Desktop Entry]", "Type=Application", f"Name={NAME}", f"Comment={COMMENT}",
                          "Exec=" + " ".join(_desktop_quote(a) for a in argv), "Terminal=true",
                          "Icon=audio-input-microphone", "Categories=AudioVideo;Audio;",
                          "Keywords=voice;changer;microphone;", MARKER, ""])
    if kind == "macos":
        return "\n".join(["#!/bin/sh", f"# {MARKER}: written by `rtvc shortcut`; `rtvc shortcut --remove` deletes it",
                          "exec " + " ".join(_sh_quote(a) for a in argv), ""])
    path = shortcut_path("win32")
    return "; ".join([
        "$ErrorActionPreference = 'Stop'",
        f"$s = (New-Object -ComObject WScript.Shell).CreateShortcut({_ps_quote(str(path))})",
        f"$s.TargetPath = {_ps_quote(argv[0])}",
        f"$s.Arguments = {_ps_quote(subprocess.list2cmdline(argv[1:]))}",
        f"$s.Description = {_ps_quote(COMMENT + ' (' + MARKER + ')')}",
        "$s.Save()"])


def _ours(path: Path) -> bool:
    """Whether ``path`` is a shortcut rtvc wrote: the marker is in it (UTF-8 in the text files,
    UTF-16 in a ``.lnk``, which stores its description that way)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return MARKER.encode() in data or MARKER.encode("utf-16-le") in data


def install_shortcut(system: str | None = None, *, python: str | None = None) -> Path:
    """Write (or refresh) the shortcut; returns its path. A file of that name that rtvc did not
    write is left alone: ConfigError naming it."""
    kind = _system(system)
    path = shortcut_path(system)
    if path.exists() and not _ours(path):
        raise ConfigError(f"{path} exists and rtvc did not write it (no {MARKER!r} in it); expected no file "
                          "there: move it away, then run `rtvc shortcut` again")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = shortcut_text(system, python=python)
    if kind == "windows":
        try:
            r = subprocess.run(["powershell", "-NoProfile", "-NonInteractive", "-Command", text],
                               capture_output=True, text=True)
        except OSError as e:
            raise ConfigError(f"cannot run PowerShell to make {path} ({e}); expected powershell on PATH") from None
        if r.returncode != 0:
            raise ConfigError(f"PowerShell could not make {path}: {r.stderr.strip() or r.stdout.strip()}")
        return path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)  # Finder runs a .command only when executable; some desktops want it of .desktop files
    os.replace(tmp, path)
    return path


def remove_shortcut(system: str | None = None) -> Path | None:
    """Delete rtvc's shortcut; the path it deleted, or None when there was none. A file rtvc did
    not write is left alone: ConfigError naming it."""
    path = shortcut_path(system)
    if not path.exists():
        return None
    if not _ours(path):
        raise ConfigError(f"{path} was not written by rtvc (no {MARKER!r} in it); expected rtvc's shortcut: "
                          "left as it is")
    path.unlink()
    return path


def open_running_panel(host: str, port: int, token: str | None, *, timeout: float = 1.0) -> str | None:
    """When an rtvc control server already answers on ``host:port``, open its control panel in
    the browser and return the address; None when nothing (or something that is not rtvc)
    answers there. What a second click on the shortcut does."""
    import urllib.request

    from .auth import load_or_create_token
    from .routes import page_address, server_address

    if port == 0:
        return None
    try:
        with urllib.request.urlopen(f"{server_address(host, port)}/healthz", timeout=timeout) as r:
            doc = json.loads(r.read(4096))
    except (OSError, ValueError):
        return None
    if not (isinstance(doc, dict) and doc.get("status") == "ok" and "protocol_version" in doc):
        return None
    url = page_address(host, port, load_or_create_token(token)[0])
    open_browser(url)
    return url


def open_browser(url: str) -> None:
    """Open ``url`` in the default web browser; say so on stderr when none starts."""
    import webbrowser

    if not webbrowser.open(url):
        print("rtvc: warning: no web browser could be started; open the control panel address rtvc prints yourself",
              file=sys.stderr)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remove", action="store_true", help="delete rtvc's shortcut (never a file rtvc did not write)")
    p.add_argument("--print", action="store_true", help="print what would be written, write nothing")


def command(args: argparse.Namespace) -> int:
    """add rtvc to the desktop's application menu (starts rtvc and opens its control panel)"""
    if args.print:
        print(f"# {shortcut_path()}\n{shortcut_text()}")
        return 0
    if args.remove:
        gone = remove_shortcut()
        print(f"rtvc: removed the shortcut {gone}" if gone else f"rtvc: no shortcut to remove ({shortcut_path()})")
        return 0
    path = install_shortcut()
    print(f"rtvc: shortcut {path}: '{NAME}' in the application menu starts rtvc and opens its control panel "
          "(closing its window stops rtvc)")
    return 0
