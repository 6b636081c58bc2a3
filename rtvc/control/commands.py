"""Command-line parts of live control, merged into ``rtvc`` by :mod:`rtvc.cli`.

- :data:`SUBCOMMANDS`: ``route``, ``selftest``, ``presets``, ``shortcut`` (:mod:`.shortcut`).
- The control options of ``run``/``serve`` (``--control``, ``--host``, ``--port``, ...) are
  defined with the others in :mod:`rtvc.options`.
- :func:`prepare_run` (optional, before the runner opens its streams) and
  :func:`start_for_run` (after): start what those options ask for; the returned handle's
  ``stop()`` undoes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Callable

from ..errors import ConfigError, RtvcError
from .shortcut import add_arguments as _add_shortcut, command as _cmd_shortcut, open_browser, open_running_panel

__all__ = ["SUBCOMMANDS", "prepare_run", "start_for_run", "RunHandle", "open_running_panel"]

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


def _own_sink_inputs() -> list[int]:
    from ..route import pactl

    ids, cur = [], None
    for line in pactl("list", "sink-inputs").splitlines():
        line = line.strip()
        if line.startswith("Sink Input #"):
            cur = int(line.split("#", 1)[1])
        elif line.startswith("application.process.id") and cur is not None:
            if line.split("=", 1)[1].strip().strip('"') == str(os.getpid()):
                ids.append(cur)
    return ids


class RunHandle:
    """What :func:`start_for_run` started; ``stop()`` undoes it (idempotent)."""

    def __init__(self) -> None:
        self.controller: Any = None
        self.server: Any = None
        self.hotkeys: Any = None
        self.route: Any = None
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for what, fn in (("hotkeys", getattr(self.hotkeys, "stop", None)),
                         ("control server", getattr(self.server, "stop", None)),
                         ("clone jobs", getattr(self.controller, "close", None))):
            if fn is not None:
                try:
                    fn()
                except Exception as e:  # stop the rest anyway
                    print(f"rtvc: warning: stopping the {what}: {e}", file=sys.stderr)
        if self.route is not None and self.route.created:
            from ..route import remove_virtual_mic

            try:
                remove_virtual_mic(sink=self.route.sink, source=self.route.source)
                print("rtvc: removed the virtual microphone", file=sys.stderr)
            except RtvcError as e:
                print(f"rtvc: warning: {e}", file=sys.stderr)


_PREPARED: dict[str, Any] = {}


def prepare_run(args: argparse.Namespace) -> None:
    """Before the runner opens its streams: create the virtual mic and point new PulseAudio
    playback streams at it (``PULSE_SINK``), so the output lands there from the first sample.
    A control bind address that is not allowed is refused here, before any stream opens."""
    if getattr(args, "open", False) and not getattr(args, "control", False):
        raise ConfigError("--open opens the control panel, which needs the control server; expected --control with "
                          "it (or use `rtvc serve --open`)")
    if getattr(args, "control", False):
        from .auth import check_bind_host

        check_bind_host(args.host, allow_remote=args.allow_remote)
    if getattr(args, "virtual_mic", False):
        from ..route import create_virtual_mic

        r = create_virtual_mic()
        os.environ["PULSE_SINK"] = r.sink
        _PREPARED["route"] = r


def start_for_run(args: argparse.Namespace, engine: Any, runner: Any) -> RunHandle:
    """Start the control server / virtual mic / preset / hotkeys that ``args`` ask for."""
    from .actions import Controller

    h = RunHandle()
    h.controller = ctl = Controller(engine, runner=runner)
    ctl.quit_requested = threading.Event()  # the `quit` method, /api/quit and the hotkey: the run loop watches it
    try:
        if getattr(args, "virtual_mic", False):
            from ..route import SOURCE_NAME, create_virtual_mic

            h.route = _PREPARED.pop("route", None)
            if h.route is None:
                h.route = create_virtual_mic()
                os.environ["PULSE_SINK"] = h.route.sink
                monitor = (getattr(runner, "devices", {}) or {}).get("monitor")
                if monitor:
                    print("rtvc: warning: --virtual-mic with --monitor: move rtvc's output stream to "
                          f"{h.route.sink!r} yourself (pavucontrol); the monitor stream is also ours", file=sys.stderr)
                else:
                    from ..route import pactl

                    for idx in _own_sink_inputs():
                        pactl("move-sink-input", str(idx), h.route.sink)
            print(f"rtvc: virtual microphone {SOURCE_NAME!r} (\"rtvc Virtual Microphone\") is ready: pick it as the "
                  "microphone in Discord/Zoom/OBS", file=sys.stderr)
        if getattr(args, "preset", None):
            ctl.load_preset(args.preset, source="cli")
        if getattr(args, "control", False):
            from .auth import load_or_create_token
            from .server import ControlServer

            token, where = load_or_create_token(args.token)
            srv = ControlServer(ctl, token=token, host=args.host, port=args.port, allow_remote=args.allow_remote,
                                origins=args.origin)
            if srv.warning:
                print(f"rtvc: {srv.warning}", file=sys.stderr)
            h.server = srv.start_background()
            print(f"rtvc: control server {srv.url} (token from {where}: {token})", file=sys.stderr)
            print(f"rtvc: control panel: {srv.panel_url}", file=sys.stderr)
            print(f"rtvc: OBS overlay: {srv.overlay_url}", file=sys.stderr)
            if getattr(args, "open", False):
                open_browser(srv.panel_url)
        if getattr(args, "hotkeys", None) is not None:
            from .hotkeys import start_hotkeys

            try:
                h.hotkeys = start_hotkeys(ctl, args.hotkeys or None)
                print("rtvc: global hotkeys on", file=sys.stderr)
            except ConfigError as e:  # the session goes on without hotkeys
                print(f"rtvc: warning: hotkeys disabled: {e}", file=sys.stderr)
    except BaseException:
        h.stop()
        raise
    return h


# ---------------------------------------------------------------------------- route / selftest
def _add_route(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remove", action="store_true", help="remove the virtual microphone (idempotent)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _cmd_route(args: argparse.Namespace) -> int:
    """create (or --remove) the rtvc virtual microphone (PulseAudio/PipeWire-Pulse)"""
    from ..route import SINK_NAME, SOURCE_NAME, create_virtual_mic, remove_virtual_mic

    if args.remove:
        gone = remove_virtual_mic()
        if args.json:
            print(json.dumps({"removed_modules": gone, "sink": SINK_NAME, "source": SOURCE_NAME}))
        elif gone:
            print(f"rtvc: removed the virtual microphone (modules {', '.join(map(str, gone))})")
        else:
            print("rtvc: nothing to remove: no rtvc virtual microphone is loaded")
        return 0
    r = create_virtual_mic()
    if args.json:
        print(json.dumps(r.as_dict()))
    else:
        state = "created" if r.created else "already present"
        print(f"rtvc: virtual microphone {state}: play into sink {r.sink!r}; apps record from {r.source!r} "
              f"(\"rtvc Virtual Microphone\"); modules {r.sink_module}, {r.source_module}. "
              "Remove with `rtvc route --remove`.")
    return 0


def _add_selftest(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", default=None, help="voice to test (default: bypass, the neutral path)")
    p.add_argument("--rate", type=int, default=48_000, help="sample rate (default 48000)")
    p.add_argument("--latency-msec", type=int, default=10, metavar="MS",
                   help="stream buffer asked of the sound server, 1..500 ms (default 10; raise it on a busy machine)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _cmd_selftest(args: argparse.Namespace) -> int:
    """play a chirp through the sound server -> rtvc -> sound server and measure the loopback delay"""
    from ..route import selftest

    factory = None
    if args.voice is not None:
        def factory(rate: int) -> Any:
            from ..engine import Engine, EngineConfig
            from ..params import Params
            from ..voices import VoiceRegistry

            reg = VoiceRegistry()
            info = reg.get(args.voice)
            return Engine(EngineConfig(device_rate=rate), registry=reg,
                          params=Params().replace(voice=info.name, **info.defaults))
    if not 1 <= args.latency_msec <= 500:
        raise ConfigError(f"--latency-msec {args.latency_msec} is out of range; expected 1..500 ms")
    from ..resampling import SUPPORTED_RATES

    if args.rate not in SUPPORTED_RATES:
        raise ConfigError(f"--rate {args.rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
    res = selftest(factory, rate=args.rate, latency_msec=args.latency_msec)
    if args.json:
        print(json.dumps(res))
    elif res["arrived"]:
        print(f"rtvc: selftest OK: the chirp came back after {res['delay_ms']:.1f} ms (loopback through the sound "
              f"server; engine algorithmic latency {res['algorithmic_latency_ms']:.1f} ms), "
              f"correlation {res['correlation']:.3f}")
    else:
        print(f"rtvc: selftest FAILED: the chirp did not come back (correlation {res['correlation']:.3f}, output "
              f"peak {res['output_level_dbfs']:.1f} dBFS)")
    return 0 if res["arrived"] else 1


# ---------------------------------------------------------------------------- presets
def _add_presets(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="presets_action", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="list saved presets")
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="print one preset as JSON")
    show.add_argument("name")
    save = sub.add_parser("save", help="save NAME with parameters given as name=value")
    save.add_argument("name")
    save.add_argument("values", nargs="+", metavar="PARAM=VALUE",
                      help="e.g. voice=deeper pitch_st=-3 formant_ratio=0.9 bypass=false")
    rm = sub.add_parser("delete", help="delete a preset")
    rm.add_argument("name")


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _cmd_presets(args: argparse.Namespace) -> int:
    """list, show, save or delete parameter presets"""
    from ..options import canonical_param
    from ..params import validate_value
    from .presets import PresetStore

    store = PresetStore()
    if args.presets_action == "list":
        items = store.list()
        if args.json:
            print(json.dumps(items, indent=2))
        elif not items:
            print(f"no presets in {store.directory}")
        for it in ([] if args.json else items):
            body = ", ".join(f"{k}={v}" for k, v in (it["params"] or {}).items()) or it.get("error", "")
            print(f"{it['name']:<20} {body}")
        return 0
    if args.presets_action == "show":
        print(json.dumps(store.load(args.name), indent=2))
        return 0
    if args.presets_action == "save":
        params = {}
        for item in args.values:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise ConfigError(f"preset value {item!r}: expected PARAM=VALUE, e.g. pitch_st=-3")
            name, value = canonical_param(k), _parse_value(v)
            try:  # checked here so that the error names what the user typed
                validate_value(name, value)
            except ConfigError as e:
                raise ConfigError(f"preset value {item!r}: {e}") from None
            params[name] = value
        path = store.save(args.name, params)
        print(f"saved preset {args.name!r} -> {path}")
        return 0
    store.delete(args.name)
    print(f"deleted preset {args.name!r}")
    return 0


SUBCOMMANDS: dict[str, tuple[AddArguments, Handler]] = {
    "route": (_add_route, _cmd_route),
    "selftest": (_add_selftest, _cmd_selftest),
    "presets": (_add_presets, _cmd_presets),
    "shortcut": (_add_shortcut, _cmd_shortcut),
}

