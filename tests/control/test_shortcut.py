"""``rtvc shortcut``: the desktop shortcut that starts rtvc without a terminal (rtvc/control/shortcut.py).

Linux for real: the Desktop Entry passes ``desktop-file-validate``, its ``Exec`` (unquoted here by
the spec's rules, independently of the writer) is exactly the launch command, and that command,
run against a private PulseAudio server, starts rtvc and opens the panel; a second start opens
the running one's panel. macOS: the ``.command`` script runs the launch command (sh here).
Windows: only what can run here (the PowerShell text's quoting, a missing PowerShell).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rtvc.control import shortcut as S
from rtvc.errors import ConfigError
from tests.control.helpers import free_port
from tests.pulse import pulse_server  # noqa: F401

ODD_PYTHON = '/opt/my "py" $HOME\\bin/py%thon 3'  # a space, quotes, a dollar, a backslash, a percent


def _exec_argv(value: str) -> list[str]:
    """A Desktop Entry ``Exec`` value split as the specification says: the string escapes first
    (``\\\\`` -> ``\\``), then double-quoted arguments with ``\\"`` `` \\` `` ``\\$`` ``\\\\``, then
    ``%%`` -> ``%``."""
    value = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(m[1], "\\" + m[1]),
                   value)
    out, cur, i, quoted, any_ = [], "", 0, False, False
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\" and i + 1 < len(value) and value[i + 1] in "\"`$\\":
                cur += value[i + 1]
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur += c
        elif c == '"':
            quoted, any_ = True, True
        elif c == " ":
            if cur or any_:
                out.append(cur)
            cur, any_ = "", False
        else:
            cur += c
        i += 1
    if cur or any_:
        out.append(cur)
    return [a.replace("%%", "%") for a in out]


def _entry(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


@pytest.fixture()
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_linux_entry_is_valid_runs_the_launch_command_and_never_clobbers(xdg):
    path = S.install_shortcut("linux", python=ODD_PYTHON)
    assert path == xdg / "share" / "applications" / "rtvc.desktop" and path.stat().st_mode & 0o777 == 0o755
    entry = _entry(path.read_text())
    assert _exec_argv(entry["Exec"]) == [ODD_PYTHON, "-m", "rtvc", "serve", "--open", "--keep-window"]
    assert entry["Terminal"] == "true" and entry["Type"] == "Application" and entry["Name"] == "rtvc voice changer"
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils)")
    r = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
    # again: rtvc's own file is refreshed (a new Python), a foreign one is never touched
    S.install_shortcut("linux", python="/usr/bin/python3")
    assert _exec_argv(_entry(path.read_text())["Exec"])[0] == "/usr/bin/python3"
    assert S.remove_shortcut("linux") == path and not path.exists()
    assert S.remove_shortcut("linux") is None
    path.write_text("[Desktop Entry]\nName=someone else's\n")
    with pytest.raises(ConfigError, match=r"rtvc\.desktop exists and rtvc did not write it"):
        S.install_shortcut("linux")
    with pytest.raises(ConfigError, match="was not written by rtvc"):
        S.remove_shortcut("linux")
    assert path.read_text() == "[Desktop Entry]\nName=someone else's\n"


def test_macos_command_script_runs_the_launch_command(xdg):
    record = xdg / "argv.txt"
    fake = xdg / "bin dir" / "it's python"  # a space and a single quote in the interpreter's path
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{record}'\n")
    fake.chmod(0o755)
    path = S.install_shortcut("darwin", python=str(fake))
    assert path == xdg / "home" / "Applications" / "rtvc.command" and os.access(path, os.X_OK)
    subprocess.run(["sh", str(path)], check=True, timeout=30)
    assert record.read_text().splitlines() == ["-m", "rtvc", "serve", "--open", "--keep-window"]


def test_windows_shortcut_text_quotes_paths_and_a_missing_powershell_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    text = S.shortcut_text("win32", python="C:\\Program Files\\Bob's Python\\python.exe")
    assert "$s.TargetPath = 'C:\\Program Files\\Bob''s Python\\python.exe'" in text
    assert "$s.Arguments = '-m rtvc serve --open --keep-window'" in text
    assert str(tmp_path / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "rtvc.lnk") in text
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="PowerShell"):
        S.install_shortcut("win32")
    # a .lnk keeps its description in UTF-16: rtvc's own is recognised there (refreshed, removed)
    lnk = S.shortcut_path("win32")
    lnk.parent.mkdir(parents=True, exist_ok=True)  # install_shortcut made it before PowerShell failed
    lnk.write_bytes(b"L\x00\x00\x00" + (S.COMMENT + " (" + S.MARKER + ")").encode("utf-16-le"))
    assert S.remove_shortcut("win32") == lnk and not lnk.exists()
    lnk.write_bytes(b"L\x00\x00\x00" + "someone else's".encode("utf-16-le"))
    with pytest.raises(ConfigError, match="was not written by rtvc"):
        S.remove_shortcut("win32")
    monkeypatch.delenv("APPDATA")
    with pytest.raises(ConfigError, match="APPDATA is not set"):
        S.shortcut_path("win32")


def test_cli_shortcut_print_and_install(xdg):
    from rtvc.cli import main

    assert main(["shortcut", "--print"]) == 0
    assert not (xdg / "share" / "applications" / "rtvc.desktop").exists()  # --print writes nothing
    if sys.platform.startswith("linux"):
        assert main(["shortcut"]) == 0 and (xdg / "share" / "applications" / "rtvc.desktop").exists()
        assert main(["shortcut", "--remove"]) == 0 and not (xdg / "share" / "applications" / "rtvc.desktop").exists()


def _browser(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in for the web browser (``$BROWSER``) that writes down each address it is given."""
    log = tmp_path / "opened.txt"
    b = tmp_path / "browser.sh"
    b.write_text(f"#!/bin/sh\necho \"$1\" >> '{log}'\n")
    b.chmod(0o755)
    return b, log


def _wait_for_lines(path: Path, n: int, timeout: float, proc: subprocess.Popen) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return path.read_text().splitlines()
        if proc.poll() is not None and proc.returncode != 0:
            break
        time.sleep(0.2)
    out = proc.communicate(timeout=10)[1] if proc.poll() is not None else "(still running)"
    raise AssertionError(f"the browser was not opened {n} time(s) within {timeout} s: {out}")


@pytest.mark.live
def test_the_shortcut_starts_rtvc_and_a_second_start_opens_its_panel(pulse_server, tmp_path):  # noqa: F811
    """The Desktop Entry's own command against a real sound server (its default devices): rtvc
    starts, opens the panel in the browser and serves it; started again while it runs, it opens
    that panel and exits at once; ``/api/quit`` (the panel's Quit) stops the first, cleanly."""
    browser, opened = _browser(tmp_path)
    env = {**pulse_server.child_env(sink="rtvc_test_out", source="rtvc_test_in.monitor"),
           "XDG_DATA_HOME": str(tmp_path / "share"), "BROWSER": str(browser), "RTVC_HOME": str(tmp_path / "rtvc")}
    path = S.install_shortcut("linux")
    port = free_port()
    argv = _exec_argv(_entry(path.read_text())["Exec"]) + ["--port", str(port)]
    repo = str(Path(__file__).resolve().parents[2])
    first = subprocess.Popen(argv, env=env, cwd=repo, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        url = _wait_for_lines(opened, 1, 90, first)[0]
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=[\w%-]+", url), url
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and 'id="sliders"' in r.read().decode()
        second = subprocess.run(argv, env=env, cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0, second.stderr
        assert f"already running on 127.0.0.1:{port}; opened its control panel" in second.stdout
        assert _wait_for_lines(opened, 2, 10, first)[1] == url
        assert first.poll() is None  # the first goes on
        # the panel's Quit rtvc (its /api equivalent): answered, then rtvc stops as on Ctrl-C
        token = url.split("token=", 1)[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/quit?token={token}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["ok"] is True
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.send_signal(2)
            out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "rtvc: control panel: " + url in err and "rtvc: stopped (quit)" in out, out


def test_keep_window_holds_an_error_until_enter_only_in_a_terminal(tmp_path):
    """``--keep-window`` (the shortcut's): after an error the window stays until Enter; without a
    terminal on stdin (a script) it exits at once, with the same code."""
    env = {**os.environ, "RTVC_HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "rtvc", "serve", "--keep-window", "--block-ms", "999"]  # a bad value: error
    repo = str(Path(__file__).resolve().parents[2])
    r = subprocess.run(argv, env=env, cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "rtvc: error: " in r.stderr and "press Enter" not in r.stderr
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, env=env, cwd=repo, stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err, fd = "", p.stderr.fileno()
        end = time.monotonic() + 60
        while "press Enter" not in err and time.monotonic() < end:
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break  # it exited without waiting
                err += chunk.decode()
        assert "press Enter to close this window" in err, err
        time.sleep(0.5)
        assert p.poll() is None  # waiting
        os.write(master, b"\n")
        assert p.wait(30) == 2
        p.stderr.close()
    finally:
        os.close(master)
        os.close(slave)
