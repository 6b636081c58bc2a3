"""Route rtvc into other programs as a microphone (PulseAudio / PipeWire-Pulse, via ``pactl``).

``rtvc route`` loads two modules into the running sound server:

- a null sink ``rtvc_out`` ("rtvc Output"): rtvc plays into it;
- a remapped source ``rtvc_mic`` ("rtvc Virtual Microphone") on ``rtvc_out.monitor``, which
  Discord, Zoom, OBS or a browser lists as a microphone (a plain ``.monitor`` source is hidden
  by many apps).

``rtvc route --remove`` unloads them by module index (idempotent). ``rtvc run --virtual-mic``
does both around a session. ``selftest`` plays a chirp through the sound server, through the
streaming engine and back, and measures the loopback delay by cross-correlation (see
:func:`selftest`). Windows (VB-CABLE) and macOS (BlackHole) need a virtual-cable driver instead:
see the README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from .errors import DeviceError

__all__ = ["SINK_NAME", "SOURCE_NAME", "Route", "pactl", "list_modules", "route_status", "create_virtual_mic",
           "remove_virtual_mic", "selftest", "SELFTEST_SINK"]

SINK_NAME = "rtvc_out"
SOURCE_NAME = "rtvc_mic"
SELFTEST_SINK = "rtvc_selftest"
_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Route:
    """The loaded modules (indices) of the virtual microphone."""

    sink: str
    source: str
    sink_module: int | None
    source_module: int | None
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise DeviceError(f"{binary!r} was not found on PATH; expected PulseAudio's client tools (Debian/Ubuntu: "
                          "`apt install pulseaudio-utils`; PipeWire systems: `pipewire-pulse` provides the server, "
                          "pulseaudio-utils the tools)")
    return path


def pactl(*args: str, timeout_s: float = _TIMEOUT_S) -> str:
    """Run ``pactl ARGS`` and return stdout; DeviceError with pactl's message on failure."""
    exe = _need("pactl")
    try:
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"`pactl {' '.join(args)}` did not answer within {timeout_s:g} s; expected a running "
                          "PulseAudio/PipeWire-Pulse server") from None
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip()
        if "Connection" in msg or "connect" in msg.lower():
            raise DeviceError(f"no PulseAudio/PipeWire-Pulse server is running or reachable (pactl: {msg}); "
                              "start one (`pulseaudio --start`, or `systemctl --user start pipewire-pulse`)")
        raise DeviceError(f"`pactl {' '.join(args)}` failed: {msg}")
    return r.stdout


def list_modules() -> list[tuple[int, str, str]]:
    """``(index, name, arguments)`` of every loaded module."""
    out = []
    for line in pactl("list", "short", "modules").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            out.append((int(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
    return out


def _find(modules: list[tuple[int, str, str]], module: str, key: str, value: str) -> int | None:
    for idx, name, args in modules:
        if name == module and f"{key}={value}" in args.split():
            return idx
    return None


def route_status(*, sink: str = SINK_NAME, source: str = SOURCE_NAME) -> Route:
    mods = list_modules()
    return Route(sink, source, _find(mods, "module-null-sink", "sink_name", sink),
                 _find(mods, "module-remap-source", "source_name", source))


def create_virtual_mic(*, sink: str = SINK_NAME, source: str = SOURCE_NAME) -> Route:
    """Load the null sink and the remapped source (reuses them if loaded already)."""
    st = route_status(sink=sink, source=source)
    created = False
    sink_mod = st.sink_module
    if sink_mod is None:
        sink_mod = int(pactl("load-module", "module-null-sink", f"sink_name={sink}",
                             "sink_properties=device.description=\"rtvc\\ Output\"").strip())
        created = True
    src_mod = st.source_module
    if src_mod is None:
        try:
            src_mod = int(pactl("load-module", "module-remap-source", f"master={sink}.monitor", f"source_name={source}",
                                "source_properties=device.description=\"rtvc\\ Virtual\\ Microphone\"").strip())
        except DeviceError:
            if created:  # leave nothing half-made behind
                pactl("unload-module", str(sink_mod))
            raise
        created = True
    return Route(sink, source, sink_mod, src_mod, created)


def remove_virtual_mic(*, sink: str = SINK_NAME, source: str = SOURCE_NAME) -> list[int]:
    """Unload the remapped source, then the null sink; returns the unloaded module indices."""
    st = route_status(sink=sink, source=source)
    done = []
    for idx in (st.source_module, st.sink_module):
        if idx is not None:
            pactl("unload-module", str(idx))
            done.append(idx)
    return done


# ---------------------------------------------------------------------------- selftest
def _chirp(rate: int, *, f0_hz: float = 300.0, f1_hz: float = 3000.0, dur_s: float = 0.2,
           amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * dur_s)) / rate
    phase = 2 * np.pi * (f0_hz * t + 0.5 * (f1_hz - f0_hz) / dur_s * t * t)
    return (amp * np.hanning(t.size) * np.sin(phase)).astype(np.float32)


def _xcorr_delay(ref: np.ndarray, sig: np.ndarray) -> tuple[int, float]:
    """Lag (samples, >= 0) where ``sig`` best matches ``ref``, and the normalised peak."""
    n = ref.size + sig.size
    nfft = 1 << int(np.ceil(np.log2(n)))
    c = np.fft.irfft(np.fft.rfft(sig, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)[:sig.size]
    lag = int(np.argmax(np.abs(c)))
    norm = float(np.sqrt(np.sum(ref.astype(np.float64) ** 2) * np.sum(sig.astype(np.float64) ** 2))) or 1.0
    return lag, float(np.abs(c[lag]) / norm)


def selftest(engine_factory: Callable[[int], Any] | None = None, *, rate: int = 48_000, block: int = 480,
             latency_msec: int = 10, keep_sink: bool = False) -> dict[str, Any]:
    """Play a chirp through the sound server -> rtvc -> sound server and measure the delay.

    A stereo null sink ``rtvc_selftest`` carries both ends in one clock domain: ``pacat``
    plays the chirp on its left channel; a ``parec`` capture of ``rtvc_selftest.monitor``
    feeds the left channel through the streaming engine (rtvc's input), and a second ``pacat``
    plays the engine's output on the right channel (rtvc's output). The same capture thus
    holds input (left) and output (right); their cross-correlation gives the loopback delay:
    capture buffering + the engine's algorithmic latency + playback buffering.

    Parameters
    ----------
    engine_factory : callable(rate) -> Engine, optional
        Default: an engine with bypass on (the neutral path, same latency as every voice).

    Returns
    -------
    dict
        ``arrived`` (bool), ``delay_ms``, ``correlation``, ``algorithmic_latency_ms``,
        ``output_level_dbfs``, ``rate``, ``block``.
    """
    for b in ("pactl", "pacat"):
        _need(b)
    if engine_factory is None:
        def engine_factory(r: int) -> Any:
            from .engine import Engine, EngineConfig
            from .params import Params

            return Engine(EngineConfig(device_rate=r), params=Params(bypass=True))
    engine = engine_factory(rate)
    engine.process(np.zeros(block, np.float32))  # warm up (Numba) before the clock runs
    mods = list_modules()
    own = _find(mods, "module-null-sink", "sink_name", SELFTEST_SINK)
    mod = own if own is not None else int(pactl(
        "load-module", "module-null-sink", f"sink_name={SELFTEST_SINK}", "channels=2", f"rate={rate}",
        "sink_properties=device.description=\"rtvc\\ selftest\"").strip())
    fmt = ["--format=float32le", f"--rate={rate}", "--channels=2", f"--latency-msec={latency_msec}", "--raw"]
    pacat = _need("pacat")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cap = subprocess.Popen([pacat, "--record", f"--device={SELFTEST_SINK}.monitor", *fmt],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(cap)
        out = subprocess.Popen([pacat, "--playback", f"--device={SELFTEST_SINK}", *fmt],
                               stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(out)
        pre, post = int(0.4 * rate), int(0.8 * rate)
        chirp = _chirp(rate)
        total = pre + chirp.size + post
        got: list[np.ndarray] = []
        err: list[BaseException] = []

        def bridge() -> None:
            nbytes = block * 2 * 4
            frame = np.zeros((block, 2), np.float32)
            n = 0
            try:
                assert cap.stdout is not None and out.stdin is not None
                while n < total + rate:  # one extra second for the round trip
                    buf = cap.stdout.read(nbytes)
                    if not buf or len(buf) < nbytes:
                        break
                    x = np.frombuffer(buf, np.float32).reshape(block, 2)
                    got.append(x.copy())
                    frame[:, 1] = engine.process(np.ascontiguousarray(x[:, 0]))
                    out.stdin.write(frame.tobytes())
                    out.stdin.flush()
                    n += block
            except BaseException as e:  # reported below
                err.append(e)

        th = threading.Thread(target=bridge, daemon=True)
        th.start()
        time.sleep(0.3)  # let the capture and output streams start
        play = subprocess.Popen([pacat, "--playback", f"--device={SELFTEST_SINK}", *fmt],
                                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(play)
        sig = np.zeros((total, 2), np.float32)
        sig[pre:pre + chirp.size, 0] = chirp
        assert play.stdin is not None
        play.stdin.write(sig.tobytes())
        play.stdin.close()
        th.join(total / rate + 8.0)
        if err:
            raise DeviceError(f"selftest bridge failed: {err[0]}")
        if not got:
            raise DeviceError(f"selftest captured nothing from {SELFTEST_SINK}.monitor; expected a working "
                              "PulseAudio/PipeWire-Pulse server")
    finally:
        for p in procs:
            if p.stdin is not None and not p.stdin.closed:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        if own is None and not keep_sink:
            pactl("unload-module", str(mod))
    rec = np.concatenate(got)
    left, right = rec[:, 0], rec[:, 1]
    in_lag, in_corr = _xcorr_delay(chirp, left)
    out_lag, out_corr = _xcorr_delay(chirp, right)
    peak = float(np.max(np.abs(right))) if right.size else 0.0
    arrived = in_corr > 0.5 and out_corr > 0.5 and out_lag > in_lag
    return {
        "arrived": bool(arrived),
        "delay_ms": 1000.0 * (out_lag - in_lag) / rate if arrived else None,
        "correlation": out_corr,
        "input_correlation": in_corr,
        "algorithmic_latency_ms": float(engine.algorithmic_latency_ms),
        "output_level_dbfs": float(20 * np.log10(max(peak, 1e-10))),
        "rate": rate,
        "block": block,
        "latency_msec_requested": latency_msec,
        "server": os.environ.get("PULSE_SERVER") or "default",
    }
