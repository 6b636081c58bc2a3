"""A session: what the ``rtvc`` commands run, from parsed options to objects and back to lines.

:func:`build_engine` and :func:`build_runner` turn parsed options into an
:class:`~rtvc.engine.Engine` and a :class:`~rtvc.audio.LiveRunner`; :func:`run_live` is the live
loop of ``rtvc run`` and ``rtvc serve`` (with the file demo when there is no sound card,
:func:`run_demo`), :func:`run_convert` the offline ``rtvc convert`` through the same streaming
engine (:func:`convert_file`), and the speaker-memory helpers say where the remembered speaker
lives and forget it. :mod:`rtvc.cli` only parses and dispatches here.

Nothing heavy is imported at module level (the parser is built without numba, onnxruntime or
sounddevice): each function imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .control import commands as control_commands
from .errors import ConfigError, DeviceError, RtvcError
from .options import DEFAULT_VOICE, explicit_params
from .params import Params
from .types import Audio

__all__ = ["build_engine", "build_runner", "build_params", "convert_file", "run_convert", "run_live", "run_demo",
           "voice_table", "sample_path", "speaker_memory_path", "forget_speaker", "status_line", "final_line",
           "check_block_ms", "DEMO_OUTPUT", "STATUS_EVERY_S"]

DEMO_OUTPUT = "rtvc-demo-out.wav"
STATUS_EVERY_S = 3.0
QUIT_GRACE_S = 0.2  # after `quit`: time for its answer to leave before the control server closes

def sample_path() -> Path:
    """The bundled speech sample (espeak-ng, en-us, 16 kHz mono)."""
    return Path(__file__).parent / "data" / "sample.wav"


def build_params(args: argparse.Namespace, *, registry: Any) -> Params:
    """The starting snapshot: the voice's preset, then every option given explicitly."""
    info = registry.get(args.voice)
    changes: dict[str, Any] = dict(info.defaults)
    changes.update(explicit_params(args))
    if args.bypass:
        changes["bypass"] = True
    if getattr(args, "denoise", False):
        changes["denoise"] = True
    if getattr(args, "monitor", None) is not None:
        changes["monitor"] = True
    return Params().replace(voice=info.name, **changes)


def check_block_ms(block_ms: float) -> None:
    from .audio.config import BLOCK_MS_RANGE

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
    from .resampling import SUPPORTED_RATES

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
        from .audio.devices import default_rate, resolve_device

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
    from .speaker import delete_speaker_memory

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

    check_block_ms(args.block_ms)
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



# ---------------------------------------------------------------------- voices
def voice_table(device_rate: int = 48_000) -> list[dict[str, Any]]:
    """Every voice with its kind, description and the engine's latency at ``device_rate``."""
    from .engine import Engine, EngineConfig
    from .voices import VoiceRegistry

    registry = VoiceRegistry()
    base = Engine(EngineConfig(device_rate=device_rate), registry=registry, params=Params())
    rows = []
    for info in registry.list():
        row: dict[str, Any] = {"name": info.name, "kind": info.kind, "description": info.description,
                               "defaults": dict(info.defaults), "default": info.name == DEFAULT_VOICE}
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


# ---------------------------------------------------------------------- convert
def convert_file(engine: Any, reader: Any, writer: Any, *, block: int, keep_latency: bool = False) -> float:
    """Stream a file through ``engine`` in blocks of ``block`` samples, writing as it goes:
    memory does not depend on the file's length. Without ``keep_latency`` the first
    ``round(latency_samples)`` output samples are dropped and the tail is flushed with zeros, so
    the output is aligned with the input and exactly as long. Returns the compute time in s."""
    lat = 0 if keep_latency else int(round(engine.latency_samples()))
    y = np.empty(block, np.float32)
    skip = lat
    compute_s = 0.0

    def step(x: Audio) -> None:
        nonlocal skip, compute_s
        t0 = time.perf_counter()
        engine.process_into(x, y[:x.shape[0]])
        compute_s += time.perf_counter() - t0
        k = min(skip, x.shape[0])
        skip -= k
        if k < x.shape[0]:
            writer.write(y[k:x.shape[0]])

    for x in reader.blocks(block):
        step(x)
    zeros = np.zeros(block, np.float32)
    for s0 in range(0, lat, block):  # the tail still inside the engine
        step(zeros[:min(block, lat - s0)])
    return compute_s


def run_convert(args: argparse.Namespace) -> int:
    from .wavio import AudioReader, AudioWriter, same_file

    check_block_ms(args.block_ms)
    if same_file(args.input_path, args.output_path):
        raise ConfigError(f"output {args.output_path!r} is the input file {args.input_path!r}; converting would "
                          "overwrite it; expected another output path")
    with AudioReader(args.input_path, channel=args.channel) as reader:
        rate = reader.rate
        engine = build_engine(args, device_rate=rate, remember=False)
        block = max(1, int(round(rate * args.block_ms / 1000.0)))
        # load every compiled kernel on a throwaway engine first, so `rtf` measures steady compute
        build_engine(args, device_rate=rate, remember=False).process(np.zeros(4 * block, np.float32))
        with AudioWriter(args.output_path, rate, subtype="FLOAT" if args.float else "PCM_16") as writer:
            compute_s = convert_file(engine, reader, writer, block=block, keep_latency=args.keep_latency)
            out = writer.commit()
        n = reader.samples_read
        problems = reader.warnings()
    c = engine.counters
    result = {
        "input": str(args.input_path), "output": str(out), "voice": engine.params.voice,
        "params": engine.params.as_dict(), "input_rate": rate, "samples": int(n),
        "duration_s": n / rate, "block_ms": args.block_ms, "block": block,
        "algorithmic_latency_ms": engine.algorithmic_latency_ms, "latency_samples": engine.latency_samples(),
        "latency_removed": not args.keep_latency, "compute_s": compute_s, "rtf": compute_s / (n / rate),
        "blocks": int(c["blocks"]), "nonfinite_samples": int(reader.nonfinite), "clipped_samples": int(reader.clipped),
        "stage_resets": int(c["stage_resets"]), "stage_errors": int(c["stage_errors"]),
        "warnings": problems, **engine.run_levels(),
    }
    for w in problems:
        print(f"rtvc: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.input_path} -> {out}: voice {result['voice']}, {rate} Hz, {result['duration_s']:.2f} s, "
              f"latency {result['algorithmic_latency_ms']:.2f} ms ({'removed' if not args.keep_latency else 'kept'}), "
              f"RTF {result['rtf']:.3f}, output peak {result['output_peak_dbfs']:.1f} dBFS "
              f"RMS {result['output_rms_dbfs']:.1f} dBFS")
    return 0


# ---------------------------------------------------------------------- run / serve
def status_line(t: dict[str, Any]) -> str:
    floor = t.get("noise_floor_dbfs")
    return (f"in {t['input_level_dbfs']:6.1f} dBFS  out {t['output_level_dbfs']:6.1f} dBFS  "
            + (f"noise floor {floor:.0f} dBFS  " if floor is not None and floor > -120 else "")
            + f"compute p50 {t['compute_ms_p50']:.2f} ms p99 {t['compute_ms_p99']:.2f} ms  "
            f"xruns {t['xruns']}  dropped {t['dropped_blocks']}"
            + (f"  buffer age {t['buffer_age_ms']:.0f} ms" if t.get("buffer_age_ms") is not None else "")
            + (f"  [{t['stream_state']}]" if t.get("stream_state") not in (None, "running", "stopped") else ""))


def final_line(t: dict[str, Any], *, file_to_file: bool) -> str:
    """The end-of-run summary: levels over the whole run (a last-block level would make a good
    output that ends in silence look silent). A file-to-file run has no device, so no xruns; a
    dropped block there means the engine fell behind the real-time file clock."""
    line = (f"input peak {t['input_peak_dbfs']:.1f} dBFS RMS {t['input_rms_dbfs']:.1f} dBFS, "
            f"output peak {t['output_peak_dbfs']:.1f} dBFS RMS {t['output_rms_dbfs']:.1f} dBFS, "
            f"compute p50 {t['compute_ms_p50']:.2f} ms p99 {t['compute_ms_p99']:.2f} ms, blocks {t['blocks']}")
    if file_to_file:
        if t["dropped_blocks"]:
            line += (f", dropped {t['dropped_blocks']} blocks (the engine fell behind the real-time file clock; "
                     "--fast never drops)")
    else:
        line += f", xruns {t['xruns']}, dropped {t['dropped_blocks']}"
    return line + f", nonfinite {t['nonfinite_samples']}"


def run_demo(args: argparse.Namespace, reason: str, out: TextIO) -> int:
    """No sound card: convert the bundled sample through the same streaming engine."""
    from .wavio import AudioReader, AudioWriter

    with AudioReader(sample_path()) as reader:
        rate = reader.rate
        engine = build_engine(args, device_rate=rate, remember=False)  # the sample's speaker is not the user
        block = max(1, int(round(rate * args.block_ms / 1000.0)))
        with AudioWriter(args.output_file or DEMO_OUTPUT, rate) as writer:
            compute_s = convert_file(engine, reader, writer, block=block)
            dest = writer.commit()
        n = reader.samples_read
    print(f"rtvc: no sound card found ({reason}).", file=out)
    print(f"rtvc: demo: converted the bundled sample {sample_path()} with voice {engine.params.voice!r} "
          f"through the streaming engine -> {dest.resolve()}", file=out)
    print(f"rtvc: demo: {final_line(engine.telemetry(), file_to_file=True)}", file=out)
    if args.json:
        print(json.dumps({**engine.telemetry(), "demo": True, "reason": reason, "output": str(dest),
                          "rtf": compute_s / (n / rate)}))
    return 0


def _no_device_reason(*, need_output: bool) -> str | None:
    """Why live audio cannot run here (None: it can)."""
    from .audio.devices import list_devices

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
    """SIGTERM (``kill``, a service manager, a script) or SIGHUP (the terminal window closed: the
    desktop shortcut's) arrived: stop like Ctrl-C. ``args[0]`` is ``"sigterm"`` or ``"sighup"``."""


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
"""What stops the live loop cleanly besides Ctrl-C (Windows has no SIGHUP)."""


@contextlib.contextmanager
def _sigterm_stops() -> Any:
    """While the live loop runs, the first SIGTERM or SIGHUP raises :class:`_Terminated` in it (the
    streams close, the speaker memory and the output file are finished, the summary is printed);
    later ones are ignored so that clean-up is not cut short. Only the main thread can take
    signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    told = []

    def on_signal(signum: int, frame: Any) -> None:
        if not told:
            told.append(signum)
            raise _Terminated("sighup" if signum == getattr(signal, "SIGHUP", None) else "sigterm")

    # a signal ignored at start stays ignored (``nohup rtvc serve &`` outlives its terminal)
    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
            if handle is not None and handle.controller.quit_requested.is_set():
                time.sleep(QUIT_GRACE_S)  # the answer to `quit` leaves before the control server closes
                return "quit"
            if runner.restart_dead_streams():
                print("rtvc: warning: an audio stream stopped (device gone or host API error); reopened it",
                      file=sys.stderr, flush=True)
            if not args.quiet and now >= next_status:
                print("rtvc: " + status_line(engine.telemetry()), file=out, flush=True)
                next_status = now + STATUS_EVERY_S
            time.sleep(0.05)
    except KeyboardInterrupt:
        return "ctrl-c"
    except _Terminated as e:
        return str(e.args[0])
    finally:
        try:
            if handle is not None:
                handle.stop()
        finally:
            runner.stop()


def _check_devices_without_sound_card(args: argparse.Namespace, reason: str) -> None:
    """No sound card: a device the user named, or a control server, cannot be served by the demo."""
    from .audio.devices import resolve_device

    for kind, spec in (("input", args.input), ("output", args.output), ("output", args.monitor)):
        if spec is not None:
            try:
                resolve_device(spec, kind)
            except DeviceError as e:  # it names the device and what exists; say why nothing does
                raise DeviceError(f"{e} (no sound card found: {reason})") from None
    if getattr(args, "control", False):
        raise DeviceError(f"no sound card found ({reason}), so there is nothing live to control; run the control "
                          "server on a file instead: --input-file talk.wav --loop --null-output")


def run_live(args: argparse.Namespace) -> int:
    """``rtvc run`` (and ``rtvc serve``, which is ``run --control``): the live loop."""
    out = sys.stderr if args.json else sys.stdout
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise ConfigError(f"--duration {args.duration} is out of range; expected a positive number of seconds")
    check_block_ms(args.block_ms)
    if getattr(args, "control", False) and getattr(args, "open", False):
        url = control_commands.open_running_panel(args.host, args.port, args.token)
        if url is not None:  # a second start from the desktop shortcut
            print(f"rtvc: already running on {args.host}:{args.port}; opened its control panel: {url}", file=out)
            return 0
    if getattr(args, "forget_speaker", False):
        forget_speaker(out)
    if args.input_file is None:
        # no sound card: the demo (the bundled sample through the same engine) instead of a traceback
        reason = _no_device_reason(need_output=args.output_file is None and not args.null_output)
        if reason is not None:
            _check_devices_without_sound_card(args, reason)
            return run_demo(args, reason, out)
    control_commands.prepare_run(args)  # e.g. the virtual mic must exist before the output stream opens
    engine = build_engine(args)
    runner = build_runner(args, engine)
    memory = engine.config.speaker_memory
    if engine.speaker_recalled_s > 0.0:
        print(f"rtvc: the voice starts from the remembered speaker ({engine.speaker_recalled_s:.1f} s of speech in "
              f"{memory}; --forget-speaker drops it)", file=out, flush=True)
    started = time.time()
    with _sigterm_stops():
        stopped_by = _live_loop(args, engine, runner, control_commands, out)
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
    file_to_file = args.input_file is not None and (args.output_file is not None or args.null_output)
    print(f"rtvc: stopped ({stopped_by}): {final_line(summary, file_to_file=file_to_file)}"
          + (f", wrote {args.output_file}" if args.output_file and runner.file_error is None else ""),
          file=out, flush=True)
    if args.json:
        print(json.dumps(summary))
    return 1 if runner.error is not None else (2 if runner.file_error is not None else 0)
