"""The ``rtvc`` command line: the parser and the dispatch.

Subcommands ``devices``, ``voices``, ``run``, ``serve``, ``convert``, and the control (``route``,
``selftest``, ``presets``) and training (``clone``, ``train``, ``train-head``) subcommands live in
one table (name -> (add_arguments, handler)): this module's :data:`SUBCOMMANDS`,
``rtvc.control.commands.SUBCOMMANDS`` and ``rtvc.train.commands.SUBCOMMANDS``. The options of
``run``, ``serve`` and ``convert`` are defined once in :mod:`rtvc.options`; what the commands run
(building the engine and runner, the live loop, the demo, convert, the speaker memory) is
:mod:`rtvc.session`. Building the parser imports no numba, onnxruntime, sounddevice or torch:
every handler imports what it needs when it runs.

Every :class:`~rtvc.errors.RtvcError` becomes ``rtvc: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from . import session
from .control import commands as control_commands
from .errors import RtvcError
from .options import DEFAULT_VOICE, add_engine_arguments, add_live_arguments, extra_hint
from .session import sample_path  # noqa: F401  (rtvc.cli.sample_path: the bundled sample, for scripts and tests)
from .train import commands as train_commands

__all__ = ["main", "make_parser", "SUBCOMMANDS"]

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


# ---------------------------------------------------------------------- devices / voices
def _add_devices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--backend", choices=("portaudio", "pulse"), default="portaudio",
                   help="list PortAudio's devices (default) or the PulseAudio server's sinks and sources")


def _device_line(d: dict[str, Any], backend: str) -> str:
    """One device of ``rtvc devices``: ``<`` marks the default input, ``>`` the default output."""
    mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
    if backend == "pulse":
        ch = d["max_input_channels"] or d["max_output_channels"]
        return (f"{mark} {d['kind']:6s} {d['index']:3d} {d['name']} ({d['description']}, {ch} ch, "
                f"{d['default_samplerate']:g} Hz)")
    return (f"{mark} {d['index']:3d} {d['name']} ({d['hostapi']}, {d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:g} Hz)")


def _cmd_devices(args: argparse.Namespace) -> int:
    from .audio.devices import list_devices

    backend = getattr(args, "backend", "portaudio")
    rows = list_devices(backend)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no audio devices found" + (" (rtvc run will fall back to a file demo)" if backend == "portaudio"
                                          else " on the PulseAudio server"))
    for d in rows:
        print(_device_line(d, backend))
    return 0


def _add_voices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")


def _cmd_voices(args: argparse.Namespace) -> int:
    rows = session.voice_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        lat = f"{r['latency_ms']:6.1f} ms" if r["latency_ms"] is not None else "  broken "
        mark = "*" if r["default"] else " "
        print(f"{mark} {r['name']:<18} {r['kind']:<7} {lat}  {r['description']}"
              + (f"  [{r['error']}]" if "error" in r else ""))
    print(f"(* the default voice, used when --voice is not given: {DEFAULT_VOICE})")
    return 0


# ---------------------------------------------------------------------- convert
def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("input_path", metavar="IN", help="input audio file")
    p.add_argument("output_path", metavar="OUT", help="output WAV (written at the input's rate)")
    add_engine_arguments(p)
    p.add_argument("--channel", type=int, default=None, metavar="N", help="input channel (0-based); default: mixdown")
    p.add_argument("--keep-latency", action="store_true", help="keep the algorithmic latency (raw streaming output)")
    p.add_argument("--float", action="store_true", help="write 32-bit float instead of 16-bit PCM")
    p.add_argument("--json", action="store_true", help="print one JSON object with the figures")


# ---------------------------------------------------------------------- run / serve
def _add_run(p: argparse.ArgumentParser) -> None:
    add_live_arguments(p, serve=False)


def _add_serve(p: argparse.ArgumentParser) -> None:
    add_live_arguments(p, serve=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    """run the voice changer with the control server on (websocket, HTTP, overlay)"""
    args.control = True
    return session.run_live(args)  # `rtvc run --control`: one run loop for both commands


# ---------------------------------------------------------------------- the command table
SUBCOMMANDS: dict[str, tuple[AddArguments, Handler]] = {
    "devices": (_add_devices, _cmd_devices),
    "voices": (_add_voices, _cmd_voices),
    "run": (_add_run, session.run_live),
    "serve": (_add_serve, _cmd_serve),
    "convert": (_add_convert, session.run_convert),
}
_HELP = {"devices": "list audio devices", "voices": "list voices with their latency (* marks the default)",
         "run": "live voice changing (devices or files)",
         "serve": "run the voice changer with the control server on (websocket, HTTP, overlay)",
         "convert": "convert a file with the streaming engine"}


def _all_subcommands() -> dict[str, tuple[AddArguments, Handler]]:
    return {**SUBCOMMANDS, **control_commands.SUBCOMMANDS, **train_commands.SUBCOMMANDS}


def make_parser() -> argparse.ArgumentParser:
    """The full parser. Building it imports nothing heavy (no numba, onnxruntime, torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("rtvc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        __version__ = "unknown"
    parser = argparse.ArgumentParser(prog="rtvc", description="Real-time streaming voice changer.")
    parser.add_argument("--version", action="version", version=f"rtvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (add, handler) in _all_subcommands().items():
        doc = _HELP.get(name) or (handler.__doc__ or "").strip().split("\n")[0] or None
        p = sub.add_parser(name, help=doc, description=doc)
        add(p)
        p.set_defaults(_handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rtvc``; returns the exit code (0 ok, 2 user error)."""
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version or an argparse usage error (already printed)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    code = _run(args)
    if code not in (0, 130) and getattr(args, "keep_window", False):
        _hold_window()
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args._handler(args) or 0)
    except RtvcError as e:
        print(f"rtvc: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra that is not installed
        extra = {"torch": "train", "onnx": "train", "pynput": "hotkeys"}.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"rtvc: error: {extra_hint(args.command, extra, e.name)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `run` stops cleanly on Ctrl-C itself; anything else was cut short
        print(f"rtvc: interrupted: `{args.command}` did not finish", file=sys.stderr)
        return 130


def _hold_window() -> None:
    """``--keep-window`` after a failure: the window a desktop shortcut opened stays until Enter,
    so the error above can be read (nothing to wait for without a terminal on stdin)."""
    if not sys.stdin or not sys.stdin.isatty():
        return
    print("rtvc: stopped on an error (above); press Enter to close this window", file=sys.stderr, flush=True)
    try:
        sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
