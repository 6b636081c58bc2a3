"""The ``rtvc`` command line: ``devices``, ``voices``, ``run``, ``convert`` (+ extensions).

Subcommands live in one table, :data:`SUBCOMMANDS` (name -> (add_arguments, handler)); the
control and training packages add theirs through ``rtvc.control.commands.SUBCOMMANDS`` and
``rtvc.train.commands.SUBCOMMANDS`` when those modules exist. The shared engine options are
added by :func:`add_engine_arguments`, the device/file options of ``run`` by
:func:`add_run_arguments`; :func:`build_engine` and :func:`build_runner` turn parsed options
into objects (``serve`` reuses them).

Every :class:`~rtvc.errors.RtvcError` becomes ``rtvc: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from .errors import ConfigError, DeviceError, RtvcError
from .params import Params
from .resampling import SUPPORTED_RATES
from .types import NEURAL_DEVICES, Audio

__all__ = ["main", "SUBCOMMANDS", "add_engine_arguments", "add_run_arguments", "build_engine", "build_runner",
           "build_params", "convert_array", "sample_path", "DEMO_OUTPUT"]

DEMO_OUTPUT = "rtvc-demo-out.wav"
STATUS_EVERY_S = 3.0

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


DEFAULT_VOICE = "joe"
"""The voice ``rtvc run`` starts with: the shipped neural voice with the best measured balance
of speaker similarity and word error rate (``bench/quality.py``; see the README)."""


def sample_path() -> Path:
    """The bundled speech sample (espeak-ng, en-us, 16 kHz mono)."""
    return Path(__file__).parent / "data" / "sample.wav"


# ---------------------------------------------------------------------- shared options
def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Voice and engine options shared by ``run``, ``convert`` (and ``serve``)."""
    g = p.add_argument_group("voice and engine")
    g.add_argument("--voice", default=DEFAULT_VOICE,
                   help=f"voice name (see `rtvc voices`); default {DEFAULT_VOICE}")
    g.add_argument("--pitch", type=float, default=None, metavar="SEMITONES",
                   help="pitch shift in semitones, -12..12 (default: the voice's preset)")
    g.add_argument("--formant", type=float, default=None, metavar="RATIO",
                   help="formant (spectral envelope) ratio, 0.7..1.4 (default: the voice's preset)")
    g.add_argument("--block-ms", type=float, default=10.0, metavar="MS", help="host block in ms, 2.5..100 (default 10)")
    g.add_argument("--gate-db", type=float, default=None, metavar="DBFS", help="noise gate threshold in dBFS, -120..0")
    g.add_argument("--gate-margin-db", type=float, default=None, metavar="DB",
                   help="the gate also stays shut below the tracked noise floor plus this margin, 0..40 "
                        "(default 16; 0 = fixed threshold only)")
    g.add_argument("--gate-confirm-ms", type=float, default=None, metavar="MS",
                   help="a closed gate opens only for a sound that lasts this long without dying away like a "
                        "click (key clicks, taps stay out), 0..50 (default 20; 0 = every peak opens it)")
    g.add_argument("--input-gain-db", type=float, default=None, metavar="DB", help="input gain in dB, -60..24")
    g.add_argument("--output-gain-db", type=float, default=None, metavar="DB", help="output gain in dB, -60..24")
    g.add_argument("--mix", type=float, default=None, help="wet/dry mix, 0..1 (1 = converted only)")
    g.add_argument("--bypass", action="store_true", help="pass the input through unconverted (same latency)")
    g.add_argument("--neural-device", choices=NEURAL_DEVICES, default="cpu",
                   help="where neural voices run: cpu (default; one onnxruntime thread), cuda (onnxruntime-gpu's "
                        "CUDA provider, the gpu extra; falls back to CPU with a logged reason) or auto")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Device and file options of ``run``."""
    g = p.add_argument_group("devices and files")
    g.add_argument("--input", default=None, metavar="DEV", help="input device: index or name substring")
    g.add_argument("--output", default=None, metavar="DEV", help="output device: index or name substring")
    g.add_argument("--monitor", default=None, metavar="DEV", help="also play the output on this device")
    g.add_argument("--monitor-gain-db", type=float, default=None, metavar="DB", help="monitor gain in dB, -60..12")
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
    g.add_argument("--device-latency", default=None, metavar="low|high|MS",
                   help="PortAudio buffer size hint: low, high, or milliseconds (default: the profile's)")
    g.add_argument("--callback", choices=("native", "python"), default="native",
                   help="audio callback: native (default; compiled, never waits for the Python interpreter) "
                        "or python (sounddevice's Python callback, the fallback)")
    g.add_argument("--backend", choices=("portaudio", "pulse"), default="portaudio",
                   help="audio host: portaudio (default; ALSA, CoreAudio, WASAPI, PulseAudio through ALSA's pulse "
                        "plugin) or pulse (rtvc's own PulseAudio/PipeWire client, Linux: smaller, steadier "
                        "buffers; --input/--output are then source/sink names, see `rtvc devices --backend pulse`)")
    g.add_argument("--worker", choices=("auto", "process", "thread"), default="auto",
                   help="where the engine runs: process (its own interpreter, fed by shared-memory rings: nothing "
                        "else in rtvc can stall it), thread, or auto (default: process with a sound device, "
                        "thread for files only)")
    g.add_argument("--rt-priority", type=int, default=10, metavar="N",
                   help="worker process: SCHED_FIFO priority to ask for (1..99; default 10; 0: do not raise it); "
                        "where not permitted it tries nice -10")
    g.add_argument("--device-block-ms", type=float, default=None, metavar="MS",
                   help="frames per device callback in ms (default: --block-ms); smaller shortens the device "
                        "buffers (PortAudio's ALSA backend keeps two periods per direction)")
    g.add_argument("--profile", choices=("live", "gaming"), default="live",
                   help="buffering: live (default; smallest delay) or gaming (wider buffers that widen further "
                        "instead of stuttering when the machine is busy)")
    g.add_argument("--duplex", action="store_true",
                   help="one full-duplex stream when input and output are the same device (default: two streams; "
                        "through ALSA's pulse plugin a duplex stream dies at its first xrun)")
    g.add_argument("--speaker-memory", choices=("auto", "on", "off"), default="auto",
                   help="remember the speaker across sessions: the last 8 s of speech heard are saved (owner-only "
                        f"WAV, {speaker_memory_path()}) when rtvc stops, and the next session's neural voice starts "
                        "knowing the speaker instead of learning them over the first seconds; auto (default): on "
                        "when capturing from a device, off for --input-file")
    g.add_argument("--forget-speaker", action="store_true", help="delete the remembered speaker before starting")
    g.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    g.add_argument("--json", action="store_true", help="print a final JSON summary (telemetry + counters)")
    g.add_argument("--quiet", action="store_true", help="no periodic status line")


def build_params(args: argparse.Namespace, *, registry: Any) -> Params:
    """The starting snapshot: the voice's preset, then every option given explicitly."""
    info = registry.get(args.voice)
    changes: dict[str, Any] = dict(info.defaults)
    explicit = {"pitch_st": args.pitch, "formant_ratio": args.formant, "gate_threshold_db": args.gate_db,
                "gate_floor_margin_db": getattr(args, "gate_margin_db", None),
                "gate_confirm_ms": getattr(args, "gate_confirm_ms", None),
                "input_gain_db": args.input_gain_db, "output_gain_db": args.output_gain_db, "mix": args.mix,
                "monitor_gain_db": getattr(args, "monitor_gain_db", None)}
    changes.update({k: v for k, v in explicit.items() if v is not None})
    if args.bypass:
        changes["bypass"] = True
    if getattr(args, "monitor", None) is not None:
        changes["monitor"] = True
    return Params().replace(voice=info.name, **changes)


def _check_block_ms(block_ms: float) -> None:
    from .audio import BLOCK_MS_RANGE

    if not (math.isfinite(block_ms) and BLOCK_MS_RANGE[0] <= block_ms <= BLOCK_MS_RANGE[1]):
        raise ConfigError(f"--block-ms {block_ms:g} is out of range; expected {BLOCK_MS_RANGE[0]}..{BLOCK_MS_RANGE[1]} ms")


def _file_rate(path: str) -> int:
    import soundfile as sf

    from .errors import AudioFileError

    try:
        return int(sf.info(path).samplerate)
    except Exception as e:
        raise AudioFileError(f"audio file {path!r} cannot be read ({e}); expected a sound file (WAV, FLAC, OGG)") from e


def _device_rate(args: argparse.Namespace) -> int:
    """--rate, else the input file's rate, else the input device's default rate (if supported), else 48000."""
    rate = getattr(args, "rate", None)
    if rate is not None:
        if rate not in SUPPORTED_RATES:
            raise ConfigError(f"--rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
        return int(rate)
    if getattr(args, "input_file", None):
        r = _file_rate(args.input_file)
        return r if r in SUPPORTED_RATES and r >= 16000 else 48_000
    if getattr(args, "backend", "portaudio") == "pulse":
        return 48_000  # the server converts; 48 kHz is the engine's native rate
    if hasattr(args, "input"):
        from .audio import default_rate, resolve_device

        return default_rate(resolve_device(args.input, "input"))
    return 48_000


def speaker_memory_path() -> Path:
    """Where ``rtvc run`` remembers the speaker (``EngineConfig.speaker_memory``)."""
    from .paths import data_dir

    return data_dir() / "speaker.wav"


def _speaker_memory(args: argparse.Namespace) -> str | None:
    """The speaker memory file for parsed ``run`` options, or None (off, and for other commands)."""
    mode = getattr(args, "speaker_memory", None)
    if mode is None or mode == "off" or (mode == "auto" and getattr(args, "input_file", None) is not None):
        return None
    return str(speaker_memory_path())


def forget_speaker(out: TextIO) -> None:
    """Delete the remembered speaker (``run --forget-speaker``)."""
    from .engine import delete_speaker_memory

    path = speaker_memory_path()
    if delete_speaker_memory(path):
        print(f"rtvc: forgot the remembered speaker ({path})", file=out)
    elif not path.exists():
        print(f"rtvc: no remembered speaker to forget ({path})", file=out)
    else:
        print(f"rtvc: warning: cannot delete the remembered speaker ({path}); the voice will start from it",
              file=out)


def _memory_saved_s(path: Path, *, since: float) -> float:
    """Seconds of speech in the speaker memory if it was written after ``since`` (the engine
    that heard the audio saves it every ``speaker_save_every_s`` while running and at stop), else
    0 (also when nothing was saved, or a hand-over deleted it and too little was heard since)."""
    import soundfile as sf

    try:
        if path.stat().st_mtime < since:
            return 0.0
        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate)
    except (OSError, RuntimeError):
        return 0.0


def build_engine(args: argparse.Namespace, *, device_rate: int | None = None, remember: bool = True) -> Any:
    """An :class:`~rtvc.engine.Engine` for parsed options (voice preset + explicit overrides);
    ``remember=False`` leaves the speaker memory out whatever the options say."""
    from .engine import Engine, EngineConfig
    from .voices import VoiceRegistry

    _check_block_ms(args.block_ms)
    rate = int(device_rate) if device_rate is not None else _device_rate(args)
    block = int(round(rate * args.block_ms / 1000.0))
    registry = VoiceRegistry()
    params = build_params(args, registry=registry)
    return Engine(EngineConfig(device_rate=rate, max_block=max(8192, block),
                               neural_device=getattr(args, "neural_device", "cpu"),
                               speaker_memory=_speaker_memory(args) if remember else None),
                  registry=registry, params=params)


def build_runner(args: argparse.Namespace, engine: Any) -> Any:
    """A (not yet started) :class:`~rtvc.audio.LiveRunner` for parsed ``run`` options."""
    from .audio import LiveRunner

    return LiveRunner(engine, input=args.input, output=args.output, monitor=args.monitor,
                      rate=engine.config.device_rate, block_ms=args.block_ms, channel=args.channel,
                      input_file=args.input_file, loop=args.loop, output_file=args.output_file,
                      null_output=args.null_output, realtime=not getattr(args, "fast", False),
                      duplex=getattr(args, "duplex", False),
                      callback=getattr(args, "callback", "native"), profile=getattr(args, "profile", "live"),
                      device_block_ms=_device_block_ms(getattr(args, "device_block_ms", None), args.block_ms),
                      device_latency=_device_latency(getattr(args, "device_latency", None)),
                      worker=getattr(args, "worker", "auto"), rt_priority=_rt_priority(getattr(args, "rt_priority", 10)),
                      backend=getattr(args, "backend", "portaudio"))


def _rt_priority(n: int) -> int | None:
    if not (0 <= n <= 99):
        raise ConfigError(f"--rt-priority {n} is out of range; expected 0 (do not raise) or 1..99")
    return n or None


def _device_block_ms(ms: float | None, block_ms: float) -> float | None:
    if ms is None:
        return None
    if not (math.isfinite(ms) and 1.0 <= ms <= block_ms):
        raise ConfigError(f"--device-block-ms {ms:g} is out of range; expected 1..{block_ms:g} (the --block-ms)")
    return float(ms)


def _device_latency(spec: str | None) -> str | float | None:
    if spec is None or spec in ("low", "high"):
        return spec
    try:
        ms = float(spec)
    except ValueError:
        ms = float("nan")
    if not (math.isfinite(ms) and 1.0 <= ms <= 1000.0):
        raise ConfigError(f"--device-latency {spec!r} is not valid; expected low, high or 1..1000 ms")
    return ms / 1000.0


def convert_array(engine: Any, x: Audio, *, block: int, keep_latency: bool = False) -> tuple[Audio, float]:
    """Stream ``x`` through ``engine`` in blocks of ``block`` samples (the live code path).

    Parameters
    ----------
    x : ndarray, float32, shape (n_samples,)
    block
        Block size in samples at the engine's device rate.
    keep_latency
        Keep the raw stream (delayed by the algorithmic latency, same length as ``x``);
        otherwise drop ``round(latency_samples)`` leading samples and flush the tail with zeros
        so that the output is aligned with ``x`` and as long.

    Returns
    -------
    y : ndarray, float32, shape (n_samples,)
    compute_s : float
        Wall time spent in ``engine.process_into``.
    """
    n = x.shape[0]
    lat = 0 if keep_latency else int(round(engine.latency_samples()))
    total = n + lat
    xin = np.zeros(total, np.float32)
    xin[:n] = x
    y = np.empty(total, np.float32)
    t = 0.0
    for s in range(0, total, block):
        t0 = time.perf_counter()
        engine.process_into(xin[s:s + block], y[s:s + block])
        t += time.perf_counter() - t0
    return y[lat:lat + n], t


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
    from .audio import list_devices

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


def voice_table(device_rate: int = 48_000) -> list[dict[str, Any]]:
    """Every voice with its kind, description and the engine's latency at ``device_rate``."""
    from .engine import Engine, EngineConfig
    from .voices import VoiceRegistry

    registry = VoiceRegistry()
    base = Engine(EngineConfig(device_rate=device_rate), registry=registry, params=Params())
    rows = []
    for info in registry.list():
        row: dict[str, Any] = {"name": info.name, "kind": info.kind, "description": info.description,
                               "defaults": dict(info.defaults)}
        try:
            # the same number as Engine(..., params=Params(voice=name)).algorithmic_latency_ms
            stage = registry.make_stage(info, model_rate=base.config.model_rate, hop=base.hop)
            row["latency_ms"] = base.latency_ms_for(stage.latency)
        except RtvcError as e:
            row["latency_ms"] = None
            row["error"] = str(e)
        rows.append(row)
    for prob in registry.problems:
        print(f"rtvc: warning: {prob}", file=sys.stderr)
    return rows


def _cmd_voices(args: argparse.Namespace) -> int:
    rows = voice_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        lat = f"{r['latency_ms']:6.1f} ms" if r["latency_ms"] is not None else "  broken "
        print(f"{r['name']:<18} {r['kind']:<7} {lat}  {r['description']}" + (f"  [{r['error']}]" if "error" in r else ""))
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


def _cmd_convert(args: argparse.Namespace) -> int:
    from .wavio import read_audio, write_audio

    _check_block_ms(args.block_ms)
    x, rate = read_audio(args.input_path, channel=args.channel, allow_nonfinite=True)
    engine = build_engine(args, device_rate=rate)
    block = max(1, int(round(rate * args.block_ms / 1000.0)))
    # load every compiled kernel on a throwaway engine first, so `rtf` measures steady compute
    build_engine(args, device_rate=rate).process(np.zeros(4 * block, np.float32))
    y, compute_s = convert_array(engine, x, block=block, keep_latency=args.keep_latency)
    out = write_audio(args.output_path, y, rate, subtype="FLOAT" if args.float else "PCM_16")
    c = engine.counters
    result = {
        "input": str(args.input_path), "output": str(out), "voice": engine.params.voice,
        "params": engine.params.as_dict(), "input_rate": rate, "samples": int(x.shape[0]),
        "duration_s": x.shape[0] / rate, "block_ms": args.block_ms, "block": block,
        "algorithmic_latency_ms": engine.algorithmic_latency_ms, "latency_samples": engine.latency_samples(),
        "latency_removed": not args.keep_latency, "compute_s": compute_s, "rtf": compute_s / (x.shape[0] / rate),
        "blocks": int(c["blocks"]), "dropped_blocks": int(c["dropped_blocks"]),
        "nonfinite_samples": int(c["nonfinite_samples"]), "stage_resets": int(c["stage_resets"]),
        "stage_errors": int(c["stage_errors"]),
    }
    if result["nonfinite_samples"]:
        print(f"rtvc: warning: {result['nonfinite_samples']} non-finite samples (NaN/inf) in {args.input_path} "
              "were replaced by silence", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.input_path} -> {out}: voice {result['voice']}, {rate} Hz, {result['duration_s']:.2f} s, "
              f"latency {result['algorithmic_latency_ms']:.2f} ms ({'removed' if not args.keep_latency else 'kept'}), "
              f"RTF {result['rtf']:.3f}")
    return 0


# ---------------------------------------------------------------------- run
def _add_run(p: argparse.ArgumentParser) -> None:
    add_engine_arguments(p)
    add_run_arguments(p)


def _status_line(t: dict[str, Any]) -> str:
    floor = t.get("noise_floor_dbfs")
    return (f"in {t['input_level_dbfs']:6.1f} dBFS  out {t['output_level_dbfs']:6.1f} dBFS  "
            + (f"noise floor {floor:.0f} dBFS  " if floor is not None and floor > -120 else "")
            + f"compute p50 {t['compute_ms_p50']:.2f} ms p99 {t['compute_ms_p99']:.2f} ms  "
            f"xruns {t['xruns']}  dropped {t['dropped_blocks']}"
            + (f"  buffer age {t['buffer_age_ms']:.0f} ms" if t.get("buffer_age_ms") is not None else "")
            + (f"  [{t['stream_state']}]" if t.get("stream_state") not in (None, "running", "stopped") else ""))


def _demo(args: argparse.Namespace, reason: str, out: TextIO) -> int:
    """No sound card: convert the bundled sample through the same streaming engine."""
    from .wavio import read_audio, write_audio

    x, rate = read_audio(sample_path())
    engine = build_engine(args, device_rate=rate, remember=False)  # the sample's speaker is not the user
    block = max(1, int(round(rate * args.block_ms / 1000.0)))
    y, compute_s = convert_array(engine, x, block=block)
    dest = write_audio(args.output_file or DEMO_OUTPUT, y, rate)
    print(f"rtvc: no sound card found ({reason}).", file=out)
    print(f"rtvc: demo: converted the bundled sample {sample_path()} with voice {engine.params.voice!r} "
          f"through the streaming engine -> {dest.resolve()}", file=out)
    if args.json:
        print(json.dumps({**engine.telemetry(), "demo": True, "reason": reason, "output": str(dest),
                          "rtf": compute_s / (x.shape[0] / rate)}))
    return 0


def _no_device_reason(*, need_output: bool) -> str | None:
    """Why live audio cannot run here (None: it can)."""
    from .audio import list_devices

    try:
        devs = list_devices()
    except DeviceError as e:
        return str(e)
    if not any(d["max_input_channels"] > 0 for d in devs):
        return "PortAudio sees no input device"
    if need_output and not any(d["max_output_channels"] > 0 for d in devs):
        return "PortAudio sees no output device"
    return None


class _Terminated(Exception):
    """SIGTERM arrived (``kill``, a service manager, a script): stop like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_stops() -> Any:
    """While the live loop runs, the first SIGTERM raises :class:`_Terminated` in it (the streams
    close, the output file is finished, the summary is printed); later ones are ignored so that
    clean-up is not cut short. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    told = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if not told:
            told.append(signum)
            raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _live_loop(args: argparse.Namespace, engine: Any, runner: Any, ext: Any, out: TextIO) -> str:
    """Start the streams, print status until the run ends, stop them; returns why it ended."""
    handle = None
    try:
        runner.start()
        if ext is not None and hasattr(ext, "start_for_run"):
            handle = ext.start_for_run(args, engine, runner)
        d = runner.devices
        print(f"rtvc: {d['input']} -> {d['output']}" + (f" (+ monitor {d['monitor']})" if d["monitor"] else "")
              + f" at {runner.rate} Hz, block {args.block_ms:g} ms, voice {engine.params.voice!r}, "
              f"algorithmic latency {engine.algorithmic_latency_ms:.2f} ms", file=out, flush=True)
        t0 = time.monotonic()
        next_status = t0 + STATUS_EVERY_S
        while True:
            now = time.monotonic()
            if args.duration is not None and now - t0 >= args.duration:
                return "duration"
            if runner.finished.is_set():
                return "end of input"
            if runner.restart_dead_streams():
                print("rtvc: warning: an audio stream stopped (device gone or host API error); reopened it",
                      file=sys.stderr, flush=True)
            if not args.quiet and now >= next_status:
                print("rtvc: " + _status_line(engine.telemetry()), file=out, flush=True)
                next_status = now + STATUS_EVERY_S
            time.sleep(0.05)
    except KeyboardInterrupt:
        return "ctrl-c"
    except _Terminated:
        return "sigterm"
    finally:
        try:
            if handle is not None:
                handle.stop()
        finally:
            runner.stop()


def run_live(args: argparse.Namespace) -> int:
    """``rtvc run`` (and ``rtvc serve``, which is ``run --control``): the live loop."""
    out = sys.stderr if args.json else sys.stdout
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise ConfigError(f"--duration {args.duration} is out of range; expected a positive number of seconds")
    _check_block_ms(args.block_ms)
    if getattr(args, "forget_speaker", False):
        forget_speaker(out)
    if args.input_file is None:
        # no sound card: the demo (the bundled sample through the same engine) instead of a traceback
        reason = _no_device_reason(need_output=args.output_file is None and not args.null_output)
        if reason is not None:
            return _demo(args, reason, out)
    ext = _control_module()
    if ext is not None and hasattr(ext, "prepare_run"):
        ext.prepare_run(args)  # e.g. the virtual mic must exist before the output stream opens
    engine = build_engine(args)
    runner = build_runner(args, engine)
    memory = engine.config.speaker_memory
    if engine.speaker_recalled_s > 0.0:
        print(f"rtvc: the voice starts from the remembered speaker ({engine.speaker_recalled_s:.1f} s of speech in "
              f"{memory}; --forget-speaker drops it)", file=out, flush=True)
    started = time.time()
    with _sigterm_stops():
        stopped_by = _live_loop(args, engine, runner, ext, out)
    if runner.file_error is not None:
        print(f"rtvc: error: {runner.file_error}", file=sys.stderr)
    if runner.error is not None:
        stopped_by = "error"
        print(f"rtvc: error: the audio worker stopped: {type(runner.error).__name__}: {runner.error}", file=sys.stderr)
    summary = {**runner.summary(), "stopped_by": stopped_by}
    if memory is not None:
        saved_s = _memory_saved_s(Path(memory), since=started)
        summary["speaker_memory"] = {"path": memory, "recalled_s": engine.speaker_recalled_s, "saved_s": saved_s}
        if saved_s:
            print(f"rtvc: remembered {saved_s:.1f} s of the speaker's speech for the next session ({memory})",
                  file=out, flush=True)
    if args.output_file:
        summary["output"] = str(args.output_file)
    print(f"rtvc: stopped ({stopped_by}): {_status_line(summary)}, blocks {summary['blocks']}, "
          f"nonfinite {summary['nonfinite_samples']}" + (f", wrote {args.output_file}" if args.output_file else ""),
          file=out, flush=True)
    if args.json:
        print(json.dumps(summary))
    return 1 if runner.error is not None else 0


# ---------------------------------------------------------------------- table + extensions
SUBCOMMANDS: dict[str, tuple[AddArguments, Handler]] = {
    "devices": (_add_devices, _cmd_devices),
    "voices": (_add_voices, _cmd_voices),
    "run": (_add_run, run_live),
    "convert": (_add_convert, _cmd_convert),
}
_HELP = {"devices": "list audio devices", "voices": "list voices with their latency",
         "clone": "train a new voice from a folder of your recordings (train extra)",
         "train": "train a shipped voice from an offline corpus (train extra)",
         "train-head": "train the experimental ONNX waveform head after a voice's synthesiser (train extra)",
         "run": "live voice changing (devices or files)", "convert": "convert a file with the streaming engine"}


def _control_module() -> Any:
    try:
        commands = importlib.import_module("rtvc.control.commands")
    except ModuleNotFoundError as e:
        if e.name != "rtvc.control.commands":
            raise
        return None
    return commands


def _train_subcommands() -> dict[str, tuple[AddArguments, Handler]]:
    try:
        commands = importlib.import_module("rtvc.train.commands")
    except ModuleNotFoundError as e:
        if e.name == "rtvc.train.commands":
            return {}
        if e.name and e.name.split(".")[0] == "torch":
            missing = str(e)

            def add(p: argparse.ArgumentParser) -> None:
                p.add_argument("rest", nargs=argparse.REMAINDER)

            def handler(args: argparse.Namespace) -> int:
                print(f"rtvc: error: `clone` needs the `train` extra ({missing}); install it with "
                      "`pip install -e '.[train]'`", file=sys.stderr)
                return 2

            return {"clone": (add, handler)}
        raise
    return dict(getattr(commands, "SUBCOMMANDS", {}))


def _all_subcommands() -> tuple[dict[str, tuple[AddArguments, Handler]], Any]:
    table = dict(SUBCOMMANDS)
    ctl = _control_module()
    if ctl is not None:
        table.update(getattr(ctl, "SUBCOMMANDS", {}))
    table.update(_train_subcommands())
    return table, ctl


def make_parser() -> argparse.ArgumentParser:
    """The full parser (core subcommands + extensions)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("rtvc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        __version__ = "unknown"
    table, ctl = _all_subcommands()
    parser = argparse.ArgumentParser(prog="rtvc", description="Real-time streaming voice changer.")
    parser.add_argument("--version", action="version", version=f"rtvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (add, handler) in table.items():
        doc = _HELP.get(name) or (handler.__doc__ or "").strip().split("\n")[0] or None
        p = sub.add_parser(name, help=doc, description=doc)
        add(p)
        if name == "run" and ctl is not None and hasattr(ctl, "add_run_arguments"):
            ctl.add_run_arguments(p)
        p.set_defaults(_handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rtvc``; returns the exit code (0 ok, 2 user error)."""
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version or an argparse usage error (already printed)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args._handler(args) or 0)
    except RtvcError as e:
        print(f"rtvc: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra that is not installed
        extra = {"torch": "train", "onnx": "train", "pynput": "hotkeys"}.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"rtvc: error: `{args.command}` needs the `{extra}` extra ({e.name} is not installed); "
              f"install it with `pip install -e '.[{extra}]'`", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtvc: interrupted", file=sys.stderr)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
