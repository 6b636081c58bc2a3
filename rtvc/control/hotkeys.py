"""Global hotkeys: key combinations mapped to the same actions the websocket and HTTP use.

Configured in ``config_dir()/hotkeys.toml`` (missing file = :data:`DEFAULT_HOTKEYS`)::

    [hotkeys]
    bypass_toggle = "<ctrl>+<alt>+b"
    mute_toggle   = "<ctrl>+<alt>+m"
    voice_next    = "<ctrl>+<alt>+<right>"
    voice_prev    = "<ctrl>+<alt>+<left>"
    pitch_up      = "<ctrl>+<alt>+<up>"
    pitch_down    = "<ctrl>+<alt>+<down>"
    # monitor_toggle = "<ctrl>+<alt>+h"
    # denoise_toggle = "<ctrl>+<alt>+d"   (noise suppression)
    # speaker_forget = "<ctrl>+<alt>+n"   (not bound by default either)

A combination is modifiers (``<ctrl>``, ``<alt>``, ``<shift>``, ``<cmd>``) and exactly one key:
a single character or a named key in angle brackets (``<f1>``..``<f20>``, ``<up>``, ``<space>``,
``<media_play_pause>``...), joined by ``+`` (pynput's notation). Set an action to ``""`` to
disable it. Listening needs the optional ``hotkeys`` extra (``pynput``) and a desktop session
(X11 ``DISPLAY``; on Wayland only XWayland windows are seen; macOS asks for the accessibility
permission). The parsing and the key-event-to-action mapping (:class:`HotkeyDispatcher`) need
neither, so they are tested without a desktop.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from ..params import shown
from ..paths import config_dir
from .actions import ACTIONS

__all__ = ["DEFAULT_HOTKEYS", "MODIFIERS", "NAMED_KEYS", "hotkeys_path", "parse_combo", "parse_hotkeys",
           "load_hotkeys", "HotkeyDispatcher", "desktop_problem", "start_hotkeys", "HotkeyListener"]

DEFAULT_HOTKEYS: dict[str, str] = {
    "bypass_toggle": "<ctrl>+<alt>+b",
    "mute_toggle": "<ctrl>+<alt>+m",
    "voice_next": "<ctrl>+<alt>+<right>",
    "voice_prev": "<ctrl>+<alt>+<left>",
    "pitch_up": "<ctrl>+<alt>+<up>",
    "pitch_down": "<ctrl>+<alt>+<down>",
}

MODIFIERS = ("ctrl", "alt", "shift", "cmd")
_MOD_ALIASES = {"ctrl_l": "ctrl", "ctrl_r": "ctrl", "alt_l": "alt", "alt_r": "alt", "alt_gr": "alt",
                "shift_l": "shift", "shift_r": "shift", "cmd_l": "cmd", "cmd_r": "cmd", "super": "cmd",
                "control": "ctrl", "win": "cmd"}
NAMED_KEYS = frozenset(
    [f"f{i}" for i in range(1, 21)]
    + ["up", "down", "left", "right", "space", "enter", "esc", "tab", "home", "end", "page_up", "page_down",
       "insert", "delete", "backspace", "pause", "print_screen", "scroll_lock", "num_lock", "caps_lock", "menu",
       "media_play_pause", "media_next", "media_previous", "media_volume_up", "media_volume_down",
       "media_volume_mute"])

Combo = tuple[frozenset[str], str]  # (modifiers, key)


def hotkeys_path() -> Path:
    return config_dir() / "hotkeys.toml"


def parse_combo(text: str) -> Combo:
    """``"<ctrl>+<alt>+b"`` -> ``(frozenset({"ctrl", "alt"}), "b")``; raises ConfigError."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"hotkey {text!r}: expected modifiers and one key such as '<ctrl>+<alt>+b'")
    mods: set[str] = set()
    key: str | None = None
    for raw in text.strip().lower().split("+"):
        tok = raw.strip()
        if len(tok) > 2 and tok.startswith("<") and tok.endswith(">"):
            name = _MOD_ALIASES.get(tok[1:-1], tok[1:-1])
            if name in MODIFIERS:
                mods.add(name)
                continue
            if name not in NAMED_KEYS:
                raise ConfigError(f"hotkey {text!r}: unknown key <{name}>; expected a modifier {list(MODIFIERS)}, "
                                  "a character, or one of " + ", ".join(f"<{k}>" for k in sorted(NAMED_KEYS)))
        elif len(tok) == 1 and tok.isprintable() and not tok.isspace():
            name = tok
        else:
            raise ConfigError(f"hotkey {text!r}: part {raw!r} is neither a single character nor a <named> key")
        if key is not None:
            raise ConfigError(f"hotkey {text!r}: two keys ({key!r}, {name!r}); expected modifiers and one key")
        key = name
    if key is None:
        raise ConfigError(f"hotkey {text!r}: only modifiers; expected one key too, e.g. '<ctrl>+<alt>+b'")
    if not mods and key not in NAMED_KEYS - {"space", "enter", "tab", "backspace", "esc"}:
        raise ConfigError(f"hotkey {text!r}: a plain character without a modifier would fire while typing; "
                          "add <ctrl>, <alt> or <cmd>, or use a function/media key")
    return frozenset(mods), key


def format_combo(combo: Combo) -> str:
    mods, key = combo
    parts = [f"<{m}>" for m in MODIFIERS if m in mods]
    parts.append(key if len(key) == 1 else f"<{key}>")
    return "+".join(parts)


def parse_hotkeys(doc: Mapping[str, Any] | str) -> dict[Combo, str]:
    """Bindings from a TOML document (text or parsed): ``{combo: action}``.

    Actions missing from the file keep their default; ``""`` disables one.
    """
    if isinstance(doc, str):
        try:
            doc = tomllib.loads(doc)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"hotkeys file is not valid TOML: {e}") from None
        except RecursionError:  # arrays nested thousands deep
            raise ConfigError("hotkeys file is nested too deeply; expected a [hotkeys] table of action = "
                              "\"combo\"") from None
    table = doc.get("hotkeys", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[hotkeys] is {type(table).__name__}; expected a table of action = \"combo\"")
    unknown = sorted(set(table) - set(ACTIONS))
    if unknown:
        raise ConfigError(f"unknown hotkey action(s) {unknown}; expected some of {sorted(ACTIONS)}")
    merged = {**DEFAULT_HOTKEYS, **table}
    out: dict[Combo, str] = {}
    for action, text in merged.items():
        if text == "":
            continue
        if not isinstance(text, str):
            raise ConfigError(f"hotkey for {action!r} is {shown(text)}; expected a string such as '<ctrl>+<alt>+b'")
        combo = parse_combo(text)
        if combo in out:
            raise ConfigError(f"hotkey {text!r} is bound twice ({out[combo]!r} and {action!r}); expected one action")
        out[combo] = action
    return out


def load_hotkeys(path: Path | str | None = None) -> dict[Combo, str]:
    """Bindings from ``path`` (default :func:`hotkeys_path`); the defaults when it does not exist."""
    p = Path(path) if path is not None else hotkeys_path()
    if not p.is_file():
        if path is not None:
            raise ConfigError(f"hotkeys file {p} does not exist; expected a TOML file with a [hotkeys] table")
        return parse_hotkeys({})
    try:
        return parse_hotkeys(p.read_text(encoding="utf-8"))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"hotkeys file {p} cannot be read: {e}; expected UTF-8 TOML text") from None


class HotkeyDispatcher:
    """Turns key press/release events (key names) into actions on a controller.

    ``press``/``release`` take normalised key names (``"ctrl"``, ``"alt_l"``, ``"b"``, ``"f5"``,
    ``"up"``). A binding fires once when its key goes down while exactly its modifiers are held;
    auto-repeat (press without release) does not fire again.
    """

    def __init__(self, bindings: Mapping[Combo, str], run: Callable[[str], Any]) -> None:
        self.bindings = dict(bindings)
        self._run = run
        self._mods: set[str] = set()
        self._down: set[str] = set()
        self.fired: list[str] = []

    def press(self, name: str) -> str | None:
        name = name.lower()
        mod = _MOD_ALIASES.get(name, name)
        if mod in MODIFIERS:
            self._mods.add(mod)
            return None
        if name in self._down:
            return None
        self._down.add(name)
        action = self.bindings.get((frozenset(self._mods), name))
        if action is not None:
            self.fired.append(action)
            self._run(action)
        return action

    def release(self, name: str) -> None:
        name = name.lower()
        mod = _MOD_ALIASES.get(name, name)
        if mod in MODIFIERS:
            self._mods.discard(mod)
        self._down.discard(name)


def desktop_problem(env: Mapping[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why global hotkeys cannot work here, or None."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform.startswith("linux") and not env.get("DISPLAY"):
        if env.get("WAYLAND_DISPLAY"):
            return ("global hotkeys need an X11 DISPLAY; this Wayland session has none (start Xwayland, or use "
                    "the compositor's own shortcuts with `curl -X POST http://127.0.0.1:PORT/api/...`)")
        return ("global hotkeys need a desktop session: no DISPLAY or WAYLAND_DISPLAY is set (headless or SSH); "
                "use the websocket or HTTP endpoints instead")
    return None


class HotkeyListener:
    """A running pynput listener feeding a :class:`HotkeyDispatcher`; actions run on a worker thread."""

    def __init__(self, controller: Any, bindings: Mapping[Combo, str], keyboard: Any) -> None:
        self._jobs: queue.Queue[str | None] = queue.Queue(maxsize=16)
        self.dispatcher = HotkeyDispatcher(bindings, self._submit)
        self._controller = controller
        self._keyboard = keyboard
        self._worker = threading.Thread(target=self._work, name="rtvc-hotkeys", daemon=True)
        self._worker.start()
        self._listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        self._listener.start()

    def _name(self, key: Any) -> str | None:
        if key is None:
            return None
        ch = getattr(key, "char", None)
        if ch:
            return ch.lower()
        name = getattr(key, "name", None)
        return name.lower() if name else None

    def _on_press(self, key: Any) -> None:
        if (n := self._name(key)) is not None:
            self.dispatcher.press(n)

    def _on_release(self, key: Any) -> None:
        if (n := self._name(key)) is not None:
            self.dispatcher.release(n)

    def _submit(self, action: str) -> None:
        try:
            self._jobs.put_nowait(action)
        except queue.Full:  # key mashing while a voice loads: drop, never block the keyboard hook
            pass

    def _work(self) -> None:
        while (action := self._jobs.get()) is not None:
            try:
                self._controller.action(action, source="hotkey")
            except Exception as e:  # report and keep listening
                print(f"rtvc: hotkey {action}: {e}", file=sys.stderr)

    def stop(self) -> None:
        self._listener.stop()
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass


def start_hotkeys(controller: Any, path: Path | str | None = None) -> HotkeyListener:
    """Start listening; raises ConfigError when the extra or a desktop session is missing."""
    bindings = load_hotkeys(path)
    problem = desktop_problem()
    if problem is not None:
        raise ConfigError(problem)
    try:
        from pynput import keyboard  # optional extra
    except ImportError as e:
        raise ConfigError(f"global hotkeys need the 'hotkeys' extra ({e}); install it with "
                          "`pip install 'rtvc[hotkeys]'` (pynput>=1.7)") from None
    return HotkeyListener(controller, bindings, keyboard)
