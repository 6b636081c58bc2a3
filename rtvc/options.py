"""The command-line options of ``run``, ``serve`` and ``convert``, defined once.

The live-parameter flags are made from :data:`rtvc.params.PARAM_SPECS`: every numeric parameter
``name_with_unit`` is the flag ``--name-with-unit`` (``pitch_st`` -> ``--pitch-st``), with the
short forms of :data:`PARAM_ALIASES` kept as aliases. Presets and the control protocol use the
same names, so one vocabulary runs through the CLI, the presets and the websocket. Whatever the
user typed is remembered (:func:`typed_flag`) so that an error names it, not the internal name.

Only the standard library, :mod:`rtvc.params` and :mod:`rtvc.types` are imported here: building
the parser costs nothing (``rtvc --help`` stays fast).
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import ConfigError
from .params import PARAM_SPECS, Params
from .types import NEURAL_DEVICES

__all__ = ["PARAM_ALIASES", "DEFAULT_VOICE", "canonical_param", "add_engine_arguments", "add_run_arguments",
           "add_control_arguments", "add_live_arguments", "explicit_params", "typed_flag", "extra_hint"]

DEFAULT_VOICE = "joe"
"""The voice ``rtvc run`` starts with: the shipped neural voice with the best measured balance
of speaker similarity and words kept (``bench/quality.py``; the README's voices table)."""

PARAM_ALIASES: dict[str, str] = {
    "pitch": "pitch_st",
    "formant": "formant_ratio",
    "gate_db": "gate_threshold_db",
    "gate_margin_db": "gate_floor_margin_db",
}
"""Short names accepted beside the parameter names (CLI flags and ``rtvc presets save``)."""

# live parameters that are not flags of their own: the voice has --voice, bypass and denoise are
# switches, monitor follows --monitor DEV, mute is a live control only
_NOT_FLAGS = ("voice", "bypass", "monitor", "mute", "denoise")
_HELP_EXTRA = {"pitch_st": "(default: the voice's preset)", "formant_ratio": "(default: the voice's preset)"}
_UNIT_WORDS = ("db", "ms", "st")


def canonical_param(name: str) -> str:
    """The parameter name for ``name`` or one of its aliases (``pitch`` -> ``pitch_st``;
    ``-`` may stand for ``_``). Unknown names come back unchanged, for the validator to refuse."""
    key = name.strip().replace("-", "_")
    return PARAM_ALIASES.get(key, key)


class _Typed(argparse.Action):
    """Stores the value and remembers which spelling of the flag the user typed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        typed = dict(getattr(namespace, "_typed_flags", None) or {})
        typed[self.dest] = option_string
        namespace._typed_flags = typed


def typed_flag(args: argparse.Namespace, dest: str) -> str:
    """The flag the user typed for ``dest`` (e.g. ``--pitch``), else its canonical spelling."""
    return (getattr(args, "_typed_flags", None) or {}).get(dest) or "--" + dest.replace("_", "-")


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Voice and live-parameter options shared by ``run``, ``serve`` and ``convert``."""
    g = p.add_argument_group("voice and parameters (names as in presets and the control protocol)")
    g.add_argument("--voice", default=DEFAULT_VOICE, help=f"voice name (see `rtvc voices`); default {DEFAULT_VOICE}")
    defaults = Params()
    aliases = {v: k for k, v in PARAM_ALIASES.items()}
    for name, spec in PARAM_SPECS.items():
        if name in _NOT_FLAGS:
            continue
        flags = ["--" + name.replace("_", "-")]
        if name in aliases:
            flags.append("--" + aliases[name].replace("_", "-"))
        what = spec.doc or " ".join(w for w in name.split("_") if w not in _UNIT_WORDS)
        unit = f" {spec.unit}" if spec.unit else ""
        default = _HELP_EXTRA.get(name, f"(default {getattr(defaults, name):g})")
        g.add_argument(*flags, dest=name, type=float, default=None, action=_Typed, metavar=(spec.unit or "X").upper(),
                       help=f"{what}, {spec.lo:g}..{spec.hi:g}{unit} {default}")
    g.add_argument("--block-ms", type=float, default=10.0, metavar="MS", help="host block in ms, 2.5..100 (default 10)")
    g.add_argument("--bypass", action="store_true", help="pass the input through unconverted (same latency)")
    g.add_argument("--denoise", action="store_true",
                   help="noise suppression (DeepFilterNet3) before the voice: adds about 37 ms of latency and "
                        "about 0.15 of a core; needs the denoise extra (pip install 'rtvc[denoise]')")
    g.add_argument("--neural-device", choices=NEURAL_DEVICES, default="cpu",
                   help="where neural voices run: cpu (default; one onnxruntime thread), cuda (onnxruntime-gpu's "
                        "CUDA provider, the gpu extra; falls back to CPU with a logged reason) or auto")


def explicit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The live parameters given on the command line, each checked on its own so that an error
    names the flag the user typed (``--pitch 20 is out of range ...``)."""
    from .params import validate_value

    out: dict[str, Any] = {}
    for name in PARAM_SPECS:
        if name in _NOT_FLAGS:
            continue
        value = getattr(args, name, None)
        if value is None:
            continue
        try:
            out[name] = validate_value(name, value)
        except ConfigError:
            spec = PARAM_SPECS[name]
            raise ConfigError(f"{typed_flag(args, name)} {value:g} is out of range; expected "
                              f"{spec.lo:g}..{spec.hi:g} {spec.unit}".rstrip()) from None
    return out


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Device and file options of ``run`` and ``serve``."""
    from .paths import data_dir

    g = p.add_argument_group("devices and files")
    g.add_argument("--input", default=None, metavar="DEV", help="input device: index or name substring")
    g.add_argument("--output", default=None, metavar="DEV", help="output device: index or name substring")
    g.add_argument("--monitor", default=None, metavar="DEV", help="also play the output on this device (hear yourself)")
    g.add_argument("--channel", type=int, default=None, metavar="N", help="input channel (0-based); default: mono mixdown")
    g.add_argument("--rate", type=int, default=None, metavar="HZ",
                   help="device rate; default: the device's default rate if supported, else 48000")
    g.add_argument("--input-file", default=None, metavar="PATH", help="play this file in real time instead of capturing")
    g.add_argument("--loop", action="store_true", help="loop --input-file")
    g.add_argument("--output-file", default=None, metavar="PATH", help="write the output to this WAV instead of a device")
    g.add_argument("--null-output", action="store_true", help="discard the output (no device)")
    g.add_argument("--fast", action="store_true",
                   help="with --input-file and --output-file/--null-output: do not pace by the clock, "
                        "run as fast as possible")
    g.add_argument("--speaker-memory", choices=("auto", "on", "off"), default="auto",
                   help="remember the speaker across sessions (owner-only WAV, "
                        f"{data_dir() / 'speaker.wav'}): a neural voice starts knowing the speaker; auto (default): "
                        "on when capturing from a device, off for --input-file")
    g.add_argument("--forget-speaker", action="store_true", help="delete the remembered speaker before starting")
    g.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    g.add_argument("--json", action="store_true", help="print a final JSON summary (telemetry + counters)")
    g.add_argument("--quiet", action="store_true", help="no periodic status line")

    a = p.add_argument_group("audio path tuning (the defaults suit most machines)")
    a.add_argument("--device-latency", default=None, metavar="low|high|MS",
                   help="PortAudio buffer size hint: low, high, or milliseconds (default: the profile's)")
    a.add_argument("--device-block-ms", type=float, default=None, metavar="MS",
                   help="frames per device callback in ms (default: --block-ms)")
    a.add_argument("--profile", choices=("live", "gaming"), default="live",
                   help="buffering: live (default; smallest delay) or gaming (wider buffers that widen further "
                        "instead of stuttering when the machine is busy)")
    a.add_argument("--backend", choices=("portaudio", "pulse"), default="portaudio",
                   help="audio host: portaudio (default) or pulse (rtvc's own PulseAudio/PipeWire client, Linux; "
                        "--input/--output are then source/sink names, see `rtvc devices --backend pulse`)")
    a.add_argument("--callback", choices=("native", "python"), default="native",
                   help="audio callback: native (default; compiled, never waits for the interpreter) or python")
    a.add_argument("--worker", choices=("auto", "process", "thread"), default="auto",
                   help="where the engine runs: process, thread, or auto (default: process with a sound device, "
                        "thread for files only)")
    a.add_argument("--rt-priority", type=int, default=10, metavar="N",
                   help="worker process: SCHED_FIFO priority to ask for (1..99; default 10; 0: do not raise it)")
    a.add_argument("--duplex", action="store_true",
                   help="one full-duplex stream when input and output are the same device (default: two streams)")


def add_control_arguments(p: argparse.ArgumentParser, *, with_control_flag: bool = True) -> None:
    """Live control options: the websocket/HTTP server, virtual mic, preset, hotkeys."""
    from .control.protocol import DEFAULT_PORT as DEFAULT_CONTROL_PORT

    g = p.add_argument_group("live control")
    if with_control_flag:
        g.add_argument("--control", action="store_true", help="start the websocket/HTTP control server")
    g.add_argument("--host", default="127.0.0.1", help="control bind address (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=DEFAULT_CONTROL_PORT,
                   help=f"control port (default {DEFAULT_CONTROL_PORT}; 0 = any free)")
    g.add_argument("--token", default=None,
                   help="control token (default: $RTVC_TOKEN, else generated and stored in the config folder)")
    g.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (anyone on the network who knows the token can control rtvc)")
    g.add_argument("--origin", action="append", default=None, metavar="ORIGIN",
                   help="allowed browser Origin (repeatable); default http://127.0.0.1:PORT, http://localhost:PORT, "
                        "null")
    g.add_argument("--open", action="store_true",
                   help="open the control panel in the default web browser (when rtvc already serves on --port: "
                        "open that one's panel and exit)")
    g.add_argument("--keep-window", action="store_true",
                   help="after an error, wait for Enter before exiting (the desktop shortcut's window stays to show why)")
    g.add_argument("--virtual-mic", action="store_true",
                   help="create the rtvc virtual microphone (PulseAudio/PipeWire) for this session and play into it")
    g.add_argument("--preset", default=None, metavar="NAME", help="load this saved preset at start")
    g.add_argument("--hotkeys", nargs="?", const="", default=None, metavar="PATH",
                   help="enable global hotkeys (config: PATH or <config>/hotkeys.toml; needs the 'hotkeys' extra)")


def add_live_arguments(p: argparse.ArgumentParser, *, serve: bool = False) -> None:
    """The whole option set of ``run`` (``serve=False``: with ``--control``) and ``serve``
    (the control server is always on)."""
    add_engine_arguments(p)
    add_run_arguments(p)
    add_control_arguments(p, with_control_flag=not serve)


def extra_hint(command: str, extra: str, missing: str | None) -> str:
    """One line saying which extra ``rtvc COMMAND`` needs and how to install it."""
    return (f"`rtvc {command}` needs the `{extra}` extra ({missing} is not installed); install it with "
            f"`pip install 'rtvc[{extra}]'` (in a checkout: `pip install -e '.[{extra}]'`)")
