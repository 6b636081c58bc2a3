"""Hotkeys without a desktop: TOML parsing, key events -> actions -> engine state."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from rtvc.control import hotkeys as H
from rtvc.control.actions import Controller
from rtvc.control.presets import PresetStore
from rtvc.errors import ConfigError
from tests.control.helpers import make_engine


@pytest.fixture()
def ctl(tmp_path):
    return Controller(make_engine(), presets=PresetStore(tmp_path))


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    b = H.load_hotkeys()
    assert H.hotkeys_path() == tmp_path / "config" / "hotkeys.toml"
    assert {H.format_combo(c): a for c, a in b.items()} == {v: k for k, v in H.DEFAULT_HOTKEYS.items()}


def test_toml_file_overrides_and_disables(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    H.hotkeys_path().parent.mkdir(parents=True)
    H.hotkeys_path().write_text('[hotkeys]\nbypass_toggle = "<F9>"\nmute_toggle = ""\n'
                                'monitor_toggle = "<ctrl>+<shift>+h"\n')
    b = H.load_hotkeys()
    assert b[(frozenset(), "f9")] == "bypass_toggle"
    assert "mute_toggle" not in b.values()
    assert b[(frozenset({"ctrl", "shift"}), "h")] == "monitor_toggle"
    assert b[(frozenset({"ctrl", "alt"}), "right")] == "voice_next"  # default kept


@pytest.mark.parametrize("text,match", [
    ('[hotkeys]\nfly = "<f1>"', r"unknown hotkey action\(s\) \['fly'\]"),
    ('[hotkeys]\nbypass_toggle = "<ctrl>+<hyper>+b"', r"unknown key <hyper>"),
    ('[hotkeys]\nbypass_toggle = "<ctrl>+a+b"', r"two keys \('a', 'b'\)"),
    ('[hotkeys]\nbypass_toggle = "<ctrl>+<alt>"', r"only modifiers"),
    ('[hotkeys]\nbypass_toggle = "b"', r"plain character without a modifier"),
    ('[hotkeys]\nbypass_toggle = 5', r"hotkey for 'bypass_toggle' is 5"),
    ('[hotkeys]\nbypass_toggle = "<ctrl>+<alt>+m"', r"'<ctrl>\+<alt>\+m' is bound twice"),
    ('[hotkeys\n', r"not valid TOML"),
    ('hotkeys = 3', r"\[hotkeys\] is int"),
    ('[hotkeys]\nbypass_toggle = 1' + "0" * 400, r"hotkey for 'bypass_toggle' is <an integer of 401 digits>"),
    ("a = " + "[" * 100_000 + "]" * 100_000, r"nested too deeply"),
])
def test_bad_hotkey_files(text, match):
    with pytest.raises(ConfigError, match=match):
        H.parse_hotkeys(text)


def test_a_hotkeys_file_that_is_not_utf8_is_an_error(tmp_path):
    (tmp_path / "keys.toml").write_bytes(b'[hotkeys]\nbypass_toggle = "\xff"\n')
    with pytest.raises(ConfigError, match=r"hotkeys file .*keys.toml cannot be read: 'utf-8' codec"):
        H.load_hotkeys(tmp_path / "keys.toml")


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"hotkeys file .*nope.toml does not exist"):
        H.load_hotkeys(tmp_path / "nope.toml")


def test_key_events_drive_the_engine_through_the_action_layer(ctl):
    d = H.HotkeyDispatcher(H.parse_hotkeys({}), lambda a: ctl.action(a, source="hotkey"))
    assert d.press("b") is None  # no modifiers: typing, nothing happens
    d.release("b")
    d.press("ctrl_l")
    d.press("alt_l")
    assert d.press("b") == "bypass_toggle"
    assert ctl.engine.params.bypass is True
    assert d.press("b") is None  # auto-repeat does not toggle back
    d.release("b")
    d.press("m")
    d.release("m")
    d.press("right")
    d.release("right")
    d.press("up")
    d.release("up")
    assert ctl.engine.params.mute is True and ctl.engine.params.voice == "deeper"
    assert ctl.engine.params.pitch_st == -3.0  # deeper's -4 then one step up
    d.press("shift")  # an extra modifier: not the binding
    d.press("b")
    assert ctl.engine.params.bypass is True
    assert d.fired == ["bypass_toggle", "mute_toggle", "voice_next", "pitch_up"]


def test_listener_glue_with_pynput_style_key_objects(ctl):
    """pynput hands Key (``.name``) and KeyCode (``.char``) objects; actions run on a worker."""
    created = []

    class Listener:
        def __init__(self, on_press, on_release):
            self.on_press, self.on_release = on_press, on_release
            created.append(self)

        def start(self):
            pass

        def stop(self):
            pass
    lst = H.HotkeyListener(ctl, H.parse_hotkeys({}), SimpleNamespace(Listener=Listener))
    ev = created[0]
    for k in (SimpleNamespace(name="ctrl_r", char=None), SimpleNamespace(name="alt_gr", char=None),
              SimpleNamespace(char="M")):
        ev.on_press(k)
    ev.on_press(None)
    t_end = time.monotonic() + 20.0  # the action runs on a worker thread: wait for it, generously
    while not ctl.engine.params.mute and time.monotonic() < t_end:
        time.sleep(0.02)
    lst.stop()
    assert ctl.engine.params.mute is True


def test_clear_messages_without_desktop_or_extra(tmp_path, monkeypatch, ctl):
    assert "no DISPLAY or WAYLAND_DISPLAY" in H.desktop_problem({}, "linux")
    assert "Wayland session" in H.desktop_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert H.desktop_problem({"DISPLAY": ":0"}, "linux") is None
    assert H.desktop_problem({}, "win32") is None
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        with pytest.raises(ConfigError, match="need a desktop session"):
            H.start_hotkeys(ctl)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setitem(sys.modules, "pynput", None)  # the extra is not installed
    with pytest.raises(ConfigError, match=r"'hotkeys' extra.*pip install 'rtvc\[hotkeys\]'.*pynput>=1.7"):
        H.start_hotkeys(ctl)
