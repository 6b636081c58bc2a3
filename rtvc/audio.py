"""Live audio I/O: device lookup and the :class:`LiveRunner` (the only module importing sounddevice).

Threads and who owns what::

    PortAudio callback(s)          worker thread                      file clock / writer threads
    ---------------------          -------------                      ---------------------------
    device -> input ring  (write)  input ring (read) -> engine         file -> input ring
    output ring (read) -> device   -> output ring / monitor ring       output ring -> file / null
                                                                        supervisor: stream health

The callbacks only copy samples between the device buffers and preallocated float32 rings
(``rtvc._native.ring``) and bump preallocated counters: no allocation, no locks, no logging,
no model calls. By default (``callback="native"``) the callback is the compiled
``rtvc._native.pa_callback`` registered with PortAudio directly, so it never takes the GIL: a
garbage collection, the control server or a model load cannot delay it. ``callback="python"``
uses sounddevice's Python callback (the fallback).

Never creep: the worker reads fixed blocks of ``block`` samples; when more than
``max_backlog_blocks`` blocks wait it drops the oldest (``engine.counters['dropped_blocks']``).
A device output ring is trimmed to its margin (the lowest level over ~0.5 s above
``out_margin_blocks`` is left out of the next writes), so the delay through the runner
returns to its target after any disturbance. ``engine.gauges['buffer_age_ms']`` is the audio
held in the rings after each block.

Faults: a supervisor thread closes the streams when one stops or stalls (device unplugged,
audio server gone) and reopens them with backoff until the device is back; the output file is
written while running and a write error (disk full) is reported, not fatal.

A file can stand in for either device (``input_file`` is played in real time, paced by a
clock at the block rate; ``output_file`` / ``null_output`` consume the output at the same
rate), so headless runs and tests go through exactly the same worker and engine path.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from numba import njit

from ._native.pa_callback import make_control_block, pa_callback
from ._native.ring import (
    ring_discard,
    ring_read,
    ring_read_available,
    ring_write,
    ring_write_available,
)
from .errors import AudioFileError, ConfigError, DeviceError, RtvcError
from .resampling import SUPPORTED_RATES
from .types import Audio
from .worker import IN_CALLS as _IN_CALLS
from .worker import IN_OVERFLOW as _IN_OVERFLOW
from .worker import IN_STATUS as _IN_STATUS
from .worker import MON_CALLS as _MON_CALLS
from .worker import MON_STATUS as _MON_STATUS
from .worker import MON_UNDERFLOW as _MON_UNDERFLOW
from .worker import OUT_CALLS as _OUT_CALLS
from .worker import OUT_MISSING as _OUT_MISSING
from .worker import OUT_STATUS as _OUT_STATUS
from .worker import OUT_UNDERFLOW as _OUT_UNDERFLOW
from .worker import (
    N_CB,
    WORKER_STATS,
    WORKERS,
    BlockWorker,
    Rings,
    SharedBlock,
    WorkerExited,
    WorkerProcess,
    callback_counts,
    new_wake_fd,
    wake,
    poll_interval_s,
)

__all__ = ["list_devices", "resolve_device", "check_settings", "default_rate", "has_devices", "device_name",
           "LiveRunner", "BLOCK_MS_RANGE", "CALLBACKS", "BACKENDS", "PROFILES"]

BLOCK_MS_RANGE = (2.5, 100.0)
_KIND_KEY = {"input": "max_input_channels", "output": "max_output_channels"}
CALLBACKS = ("native", "python")
"""``native``: the compiled GIL-free PortAudio callback; ``python``: sounddevice's Python callback."""
BACKENDS = ("portaudio", "pulse")
"""``portaudio``: PortAudio (ALSA, and PulseAudio through ALSA's ``pulse`` plugin; CoreAudio,
WASAPI); ``pulse``: rtvc's own libpulse client (:mod:`rtvc.pulse`; PulseAudio or PipeWire-pulse)."""
PROFILES: dict[str, dict[str, Any]] = {
    "live": {"max_backlog_blocks": 2, "out_margin_blocks": 1.0, "margin_max_blocks": 2.0, "margin_max_ms": 20.0,
             "margin_step_blocks": 0.5, "margin_relax_s": 30.0, "device_latency": "low"},
    "gaming": {"max_backlog_blocks": 6, "out_margin_blocks": 2.0, "margin_max_blocks": 8.0, "margin_max_ms": 0.0,
               "margin_step_blocks": 1.0, "margin_relax_s": None, "device_latency": "high"},
}
"""Buffering profiles: ``live`` keeps the buffers small; ``gaming`` starts wider and widens
the output margin after each underflow (up to ``margin_max_blocks``) and keeps it. ``live``
starts at one block (on the measured VM every live run that started at half a block settled at
one, each time after an underflow, sometimes minutes in), widens after an underflow (half a
block for a one-off, what the device lacked for recurring jitter; up to the larger of two
blocks and ``margin_max_ms``, 20 ms) and narrows again by half a block after each 30 s without
one, down to where it started: the smallest delay the machine sustains, found while running.
The samples taken out when it narrows are cut where it is not heard (``BlockWorker._trim``); see
``BlockWorker._widen``."""
_log = logging.getLogger("rtvc.audio")
START_TIMEOUT_S = 5.0
"""A device stream that has not called back this long after opening counts as dead."""


def _sounddevice() -> Any:
    """Import sounddevice; a missing or broken PortAudio is a DeviceError, not a traceback."""
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio missing
        raise DeviceError(f"PortAudio cannot be loaded ({e}); install libportaudio2") from e
    except Exception as e:  # sounddevice initialises PortAudio at import: PortAudioError
        raise DeviceError(f"PortAudio failed to initialise ({type(e).__name__}: {e})") from e
    return sd


# ---------------------------------------------------------------------- device lookup
def list_devices(backend: str = "portaudio") -> list[dict[str, Any]]:
    """All audio devices PortAudio sees (``backend="pulse"``: the PulseAudio server's sources and
    sinks, in the same shape; see :func:`pulse_device_table`).

    Returns
    -------
    list of dict
        One per device: ``index``, ``name``, ``hostapi`` (name), ``max_input_channels``,
        ``max_output_channels``, ``default_samplerate`` (Hz), ``default_input`` and
        ``default_output`` (bool: this is the system default for that direction).

    Raises
    ------
    DeviceError
        PortAudio cannot be loaded or initialised (pulse: no server reachable).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"audio backend {backend!r} is not known; expected one of {BACKENDS}")
    if backend == "pulse":
        from .pulse import list_pulse_devices

        return pulse_device_table(list_pulse_devices())
    sd = _sounddevice()
    try:
        devs = sd.query_devices()
        apis = sd.query_hostapis()
        d_in, d_out = sd.default.device
    except sd.PortAudioError as e:
        raise DeviceError(f"PortAudio failed to list devices: {e}") from e
    out = []
    for i, d in enumerate(devs):
        out.append({
            "index": i,
            "name": str(d["name"]),
            "hostapi": str(apis[d["hostapi"]]["name"]) if 0 <= d["hostapi"] < len(apis) else "?",
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
            "default_input": i == d_in,
            "default_output": i == d_out,
        })
    return out


def pulse_device_table(listing: dict[str, Any]) -> list[dict[str, Any]]:
    """A PulseAudio listing (:func:`rtvc.pulse.list_pulse_devices`) as :func:`list_devices` rows:
    sources first (input channels), then sinks (output channels); ``index`` is the server's
    index, which sources and sinks number separately, so ``kind`` says which one a row is."""
    rows = []
    for key, kind, ch_key in (("sources", "source", "max_input_channels"), ("sinks", "sink", "max_output_channels")):
        dflt = listing.get("default_source" if kind == "source" else "default_sink")
        for d in listing[key]:
            rows.append({"index": d["index"], "name": d["name"], "hostapi": "PulseAudio", "kind": kind,
                         "description": d["description"], "max_input_channels": 0, "max_output_channels": 0,
                         ch_key: d["channels"], "default_samplerate": float(d["rate"]),
                         "default_input": kind == "source" and d["name"] == dflt,
                         "default_output": kind == "sink" and d["name"] == dflt})
    return rows


def has_devices() -> bool:
    """True when PortAudio works and sees at least one input and one output device."""
    try:
        devs = list_devices()
    except DeviceError:
        return False
    return any(d["max_input_channels"] > 0 for d in devs) and any(d["max_output_channels"] > 0 for d in devs)


def _describe(d: dict[str, Any]) -> str:
    return f"[{d['index']}] {d['name']} ({d['hostapi']}, {d['max_input_channels']} in, {d['max_output_channels']} out)"


def resolve_device(spec: int | str | None, kind: str = "input") -> int:
    """Turn a device spec into a PortAudio device index.

    Parameters
    ----------
    spec
        ``None`` (the system default), an index (int or digit string), or a case-insensitive
        substring of the device name. A name that matches one device exactly wins over
        substring matches; among several substring matches, those without channels in the
        wanted direction are ignored.
    kind
        ``"input"`` or ``"output"``.

    Raises
    ------
    DeviceError
        No such device (the message lists the candidates), an ambiguous name (it lists the
        matches), or a device without channels in the wanted direction.
    """
    if kind not in _KIND_KEY:
        raise ConfigError(f"device kind {kind!r} is not known; expected 'input' or 'output'")
    key = _KIND_KEY[kind]
    devs = list_devices()
    capable = [d for d in devs if d[key] > 0]
    cands = "; ".join(_describe(d) for d in capable) or "none"
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "default"):
        defaults = [d for d in devs if d[f"default_{kind}"]]
        if not defaults:
            if len(capable) == 1:
                return int(capable[0]["index"])
            raise DeviceError(f"there is no default {kind} device; pick one of: {cands}")
        d = defaults[0]
    elif isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.strip().isdigit()):
        i = int(spec)
        if not (0 <= i < len(devs)):
            raise DeviceError(f"{kind} device index {i} does not exist; expected one of: {cands}")
        d = devs[i]
    elif isinstance(spec, str) and spec.strip():
        s = spec.strip().lower()
        exact = [d for d in devs if d["name"].lower() == s]
        matches = exact or [d for d in devs if s in d["name"].lower()]
        if not matches:
            raise DeviceError(f"no {kind} device matches {spec!r}; candidates: {cands}")
        if len(matches) > 1:
            usable = [d for d in matches if d[key] > 0]
            if len(usable) > 1:
                raise DeviceError(f"{kind} device {spec!r} is ambiguous; it matches: "
                                  + "; ".join(_describe(d) for d in usable) + " (give an index or a longer name)")
            matches = usable or matches[:1]
        d = matches[0]
    else:
        raise DeviceError(f"{kind} device {spec!r} is not valid; expected an index or a name substring")
    if d[key] <= 0:
        raise DeviceError(f"device {_describe(d)} has no {kind} channels; {kind} devices: {cands}")
    return int(d["index"])


def device_name(index: int) -> str:
    """Name of device ``index`` (for status lines and :attr:`LiveRunner.devices`)."""
    for d in list_devices():
        if d["index"] == index:
            return str(d["name"])
    raise DeviceError(f"device index {index} does not exist")


def default_rate(index: int | None) -> int:
    """The device's default rate if the engine supports it, else 48000 Hz."""
    if index is None:
        return 48_000
    for d in list_devices():
        if d["index"] == index:
            r = int(round(d["default_samplerate"]))
            return r if r in SUPPORTED_RATES else 48_000
    return 48_000


def _check_one(sd: Any, kind: str, index: int, channels: int, rate: int) -> str | None:
    fn = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        fn(device=index, channels=channels, dtype="float32", samplerate=rate)
    except Exception as e:  # PortAudioError or ValueError, depending on the failure
        return str(e)
    return None


def check_settings(*, input: int | None = None, output: int | None = None, monitor: int | None = None,
                   rate: int, input_channels: int = 1, output_channels: int = 1) -> None:
    """Check device / channel / rate combinations before any stream opens.

    Parameters
    ----------
    input, output, monitor
        Device indices (``None``: that direction is not used).
    rate
        Device sample rate in Hz (must be one of ``SUPPORTED_RATES``).
    input_channels, output_channels
        Channels opened on the input and on the output (and monitor) devices.

    Raises
    ------
    DeviceError
        A combination the device refuses; the message says what would work (the device's
        default rate, the supported rates it accepts, its channel count).
    """
    if rate not in SUPPORTED_RATES:
        raise DeviceError(f"device rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
    sd = _sounddevice()
    devs = {d["index"]: d for d in list_devices()}
    for kind, index, ch in (("input", input, input_channels), ("output", output, output_channels),
                            ("output", monitor, output_channels)):
        if index is None:
            continue
        if index not in devs:
            raise DeviceError(f"{kind} device index {index} does not exist; run `rtvc devices`")
        d = devs[index]
        err = _check_one(sd, kind, index, ch, rate)
        if err is None:
            continue
        max_ch = d[_KIND_KEY[kind]]
        if ch > max_ch:
            raise DeviceError(f"{kind} device {_describe(d)} cannot open {ch} channels; it has {max_ch}")
        ok = [r for r in SUPPORTED_RATES if _check_one(sd, kind, index, ch, r) is None]
        raise DeviceError(f"{kind} device {_describe(d)} refuses {rate} Hz with {ch} channel(s) ({err}); "
                          f"its default rate is {d['default_samplerate']:g} Hz and it accepts "
                          f"{ok or 'none'} of the supported rates {SUPPORTED_RATES}")


# ---------------------------------------------------------------------- callback helpers
@njit(cache=True, nogil=True)
def _to_mono(indata: np.ndarray, channel: int, out: np.ndarray) -> None:
    """Select ``channel`` (>= 0) or mix all channels (-1) of ``indata`` (frames, ch) into ``out``."""
    n, nch = indata.shape
    if channel >= 0:
        for i in range(n):
            out[i] = indata[i, channel]
    else:
        s = np.float32(1.0 / nch)
        for i in range(n):
            acc = np.float32(0.0)
            for c in range(nch):
                acc += indata[i, c]
            out[i] = acc * s


@njit(cache=True, nogil=True)
def _fan_out(mono: np.ndarray, gain: float, outdata: np.ndarray) -> None:
    """Copy ``mono`` (frames,) times ``gain`` into every channel of ``outdata`` (frames, ch)."""
    n, nch = outdata.shape
    g = np.float32(gain)
    for i in range(n):
        v = mono[i] * g
        for c in range(nch):
            outdata[i, c] = v


class _NativeStream:
    """One PortAudio stream whose callback is the GIL-free cfunc ``pa_callback``.

    Opened through the PortAudio library sounddevice loaded (its cffi ``_ffi`` / ``_lib``).
    ``ctl`` is the control block (``make_control_block``); it and every array it points to are
    referenced from ``keep`` for the stream's life. The interface is the subset of
    ``sounddevice.Stream`` the runner uses: ``start``, ``stop``, ``abort``, ``close``, ``active``,
    ``latency`` (s).
    """

    def __init__(self, sd: Any, *, kind: str, device: int, channels: int, rate: int, block: int,
                 latency: float, ctl: np.ndarray, keep: tuple[Any, ...], realtime: bool = False) -> None:
        ffi, lib = sd._ffi, sd._lib
        self._sd, self._ffi, self._lib, self.kind = sd, ffi, lib, kind
        self._keep = (ctl, keep)
        par = ffi.new("PaStreamParameters*")
        par.device = int(device)
        par.channelCount = int(channels)
        par.sampleFormat = lib.paFloat32
        par.suggestedLatency = float(latency)
        par.hostApiSpecificStreamInfo = ffi.NULL
        self._par = par
        self._cb = ffi.cast("PaStreamCallback*", pa_callback.address)
        pp = ffi.new("PaStream**")
        err = lib.Pa_OpenStream(pp, par if kind == "input" else ffi.NULL, par if kind != "input" else ffi.NULL,
                                float(rate), int(block), 0, self._cb, ffi.cast("void*", ctl.ctypes.data))
        self._check(err, "Pa_OpenStream")
        self._s = pp[0]
        self.realtime = realtime and self._enable_alsa_realtime(device)
        info = lib.Pa_GetStreamInfo(self._s)
        self.latency = float(info.inputLatency if kind == "input" else info.outputLatency) if info != ffi.NULL else 0.0
        self.closed = False

    def _enable_alsa_realtime(self, device: int) -> bool:
        """ALSA host API: ask PortAudio to run this stream's callback thread with ``SCHED_FIFO``
        (``PaAlsa_EnableRealtimeScheduling``; PortAudio falls back to normal scheduling where it
        is not permitted). Safe because the callback never takes the GIL; other host APIs
        (CoreAudio, WASAPI) already run their callbacks at a raised priority."""
        try:
            api = self._sd.query_hostapis(self._sd.query_devices(device)["hostapi"])["name"]
            if api != "ALSA":
                return False
            import ctypes

            fn = ctypes.CDLL(self._sd._libname).PaAlsa_EnableRealtimeScheduling
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
            fn(int(self._ffi.cast("uintptr_t", self._s)), 1)
            return True
        except (OSError, AttributeError, KeyError, ValueError) as e:
            _log.info("realtime scheduling of the PortAudio callback not enabled: %s", e)
            return False

    def _check(self, err: int, what: str) -> None:
        if err < 0:
            msg = self._ffi.string(self._lib.Pa_GetErrorText(err)).decode("utf-8", "replace")
            raise self._sd.PortAudioError(f"{what} failed: {msg} [PaErrorCode {err}]")

    def start(self) -> None:
        self._check(self._lib.Pa_StartStream(self._s), "Pa_StartStream")

    @property
    def active(self) -> bool:
        return (not self.closed) and self._lib.Pa_IsStreamActive(self._s) == 1

    def stop(self) -> None:
        if not self.closed:
            self._lib.Pa_StopStream(self._s)

    def abort(self) -> None:
        if not self.closed:
            self._lib.Pa_AbortStream(self._s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._lib.Pa_CloseStream(self._s)


def _thread_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:  # not Linux
        return set()


@contextlib.contextmanager
def _inheritable_priority(rt_priority: int | None) -> Iterator[None]:
    """Run the body with the calling thread at ``SCHED_FIFO rt_priority`` (where permitted), so
    threads started inside inherit it, and give it to every thread the body started that is
    still running at the end and runs below it (a library may start its threads from a thread
    of its own, or pick a priority of its own: PortAudio's ALSA callback thread takes FIFO 1);
    restore this thread's scheduling after."""
    if rt_priority is None or not hasattr(os, "sched_setscheduler"):
        yield
        return
    before_tids = _thread_ids()
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, before[0], before[1])
        for tid in _thread_ids() - before_tids:
            try:
                pol = os.sched_getscheduler(tid)
                if pol == os.SCHED_OTHER or (pol == os.SCHED_FIFO and os.sched_getparam(tid).sched_priority < rt_priority):
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(rt_priority))
            except OSError:
                pass  # the thread has ended meanwhile


class _FileWriter:
    """Streams the output into a WAV file while running (the file-clock thread ``put``s blocks,
    the writer thread ``flush``es them), so a crash or a full disk keeps everything written
    before it. The WAV header is brought up to date after every flush.

    A write error (disk full) is recorded in ``error``; the blocks not yet written stay queued
    (up to ``max_pending_s``) and are retried, so nothing is dropped silently: ``lost_samples``
    counts what could not be kept.
    """

    def __init__(self, path: Path, rate: int, *, max_pending_s: float = 120.0) -> None:
        import soundfile as sf

        ext = path.suffix.lstrip(".").upper()
        fmt = ext if ext in sf.available_formats() else "WAV"
        if not path.parent.is_dir():
            raise AudioFileError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
        try:
            self._f = sf.SoundFile(str(path), "w", samplerate=int(rate), channels=1, subtype="PCM_16", format=fmt)
        except Exception as e:
            raise AudioFileError(f"cannot create output file {str(path)!r}: {e}") from e
        self.path, self.rate = path, int(rate)
        self._pending: deque[np.ndarray] = deque()
        self._max_pending = int(max_pending_s * rate)
        self.pending_samples = 0
        self.accepted_samples = 0
        self.written_samples = 0
        self.lost_samples = 0
        self.error: str | None = None
        self.closed = False

    def put(self, block: np.ndarray) -> None:
        """Queue a copy of ``block`` (file-clock thread)."""
        self._pending.append(np.clip(block, -1.0, 1.0))
        self.accepted_samples += block.shape[0]
        self.pending_samples += block.shape[0]
        while self.pending_samples > self._max_pending and self._pending:
            old = self._pending.popleft()
            self.pending_samples -= old.shape[0]
            self.lost_samples += old.shape[0]

    def flush(self) -> bool:
        """Write what is queued (writer thread); return False on a write error (kept queued)."""
        while self._pending and not self.closed:
            blk = self._pending[0]
            try:
                self._f.write(blk)
                self._f.flush()  # sf_write_sync: the header now covers everything written
            except Exception as e:  # ENOSPC arrives as LibsndfileError or OSError
                self.error = (f"writing {str(self.path)!r} failed after {self.written_samples / self.rate:.2f} s "
                              f"of audio: {e} (disk full?); {self.pending_samples / self.rate:.2f} s waiting "
                              f"in memory, retried")
                return False
            self._pending.popleft()
            self.pending_samples -= blk.shape[0]
            self.written_samples += blk.shape[0]
        if self.error is not None and not self._pending:
            self.error = None
        return True

    def close(self) -> str | None:
        """Final flush and close; return an error message if audio could not be written."""
        ok = self.flush()
        self.closed = True
        try:
            self._f.close()
        except Exception as e:
            ok = False
            self.error = f"closing {str(self.path)!r} failed: {e}"
        if ok and not self.lost_samples:
            return None
        return (f"output file {str(self.path)!r} is incomplete: {self.written_samples / self.rate:.2f} s of "
                f"{self.accepted_samples / self.rate:.2f} s written ({self.error or 'queue overflow'}); "
                f"the {self.written_samples / self.rate:.2f} s written are a valid file")


# ---------------------------------------------------------------------- the runner
class LiveRunner:
    """Run an :class:`~rtvc.engine.Engine` on live devices and/or files.

    Parameters
    ----------
    engine
        The engine; its ``config.device_rate`` is the rate its blocks are in. When ``rate``
        differs, the runner resamples at the device edge (adds a few ms).
    input, output, monitor
        Device specs (index or name substring; ``None``: the default device; monitor
        ``None``: no monitor stream). Ignored for a side that a file replaces.
    rate
        Device rate in Hz (default: the engine's device rate).
    block_ms
        Host block in ms (2.5..100): the device callback size and the worker block.
    channel
        0-based input channel; ``None`` mixes all input channels down.
    input_file, loop
        Play this file in real time instead of capturing (``loop``: start again at the end).
    output_file, null_output
        Stream the output into this WAV (16-bit, written while running) or discard it.
    callback
        ``"native"`` (default): the PortAudio callback is the compiled ``pa_callback`` and
        never takes the GIL. ``"python"``: sounddevice's Python callback (the fallback).
    backend
        ``"portaudio"`` (default) or ``"pulse"``: rtvc's own PulseAudio client
        (:mod:`rtvc.pulse`), no ALSA plugin in between; device specs are then sink / source
        names (or indices, or substrings), the callbacks always native.
    profile
        ``"live"`` (default): smallest buffers. ``"gaming"``: a larger device latency hint, a
        longer input backlog and an output margin that widens after each underflow (up to
        8 blocks) instead of stuttering again when the machine is busy.
    max_backlog_blocks
        Input blocks allowed to wait before the oldest are dropped (default: the profile's).
    out_margin_blocks
        Output audio (in blocks) kept queued beyond what the device needs right now; more
        is trimmed (default: the profile's). Only for device outputs.
    device_latency
        PortAudio latency hint (``"low"``, ``"high"`` or seconds; default: the profile's).
    duplex
        Open one full-duplex stream when input and output are the same device (Python
        callback only). Off by default: through ALSA's ``pulse`` plugin a full-duplex stream
        stops for good after its first xrun, while two streams recover.
    realtime
        File to file only: ``False`` runs the file clock in lockstep with the worker instead of
        pacing it (as fast as possible, no xruns, deterministic output).
    stall_timeout_s
        A device stream whose callback has not run for this long (or that PortAudio stopped)
        is closed and reopened with backoff (0.25 s doubling to 4 s) until the device is back.
    device_block_ms
        Frames per device callback in ms (default: ``block_ms``); see :attr:`device_block`.
    switch_interval_ms
        While running, the interpreter's thread switch interval (``sys.setswitchinterval``;
        restored at stop). The worker takes the GIL back after every compiled kernel; with
        Python's default 5 ms, a busy Python thread can make it wait 5 ms each time. ``None``
        leaves it alone.
    worker
        Where the block worker (engine and ring bookkeeping) runs: ``"process"``, its own
        interpreter fed through shared-memory rings (:mod:`rtvc.worker`), so nothing in this
        process (a garbage collection, the control server, a busy Python thread) can hold a lock
        it needs; ``"thread"``, a thread of this process; ``"auto"`` (default): ``process`` when a
        device stream is open, ``thread`` for files only.
    rt_priority
        Worker process only: ``SCHED_FIFO`` priority to ask for (else nice -10 is tried);
        ``None`` leaves its priority alone. What it got is in ``summary()['worker_priority']``.
    freeze_gc
        At start, after the warm-up, collect once and move every object that exists then
        (numba's and NumPy's millions of import-time objects) to the garbage collector's
        permanent generation (``gc.freeze``). A full collection then walks only newer objects:
        measured here, a forced ``gc.collect()`` held the GIL for ~400 ms without it (the worker
        cannot run meanwhile) and a few ms with it.
    """

    def __init__(self, engine: Any, *, input: int | str | None = None, output: int | str | None = None,
                 monitor: int | str | None = None, rate: int | None = None, block_ms: float = 10.0,
                 channel: int | None = None, input_file: str | Path | None = None, loop: bool = False,
                 output_file: str | Path | None = None, null_output: bool = False,
                 callback: str = "native", profile: str = "live", max_backlog_blocks: int | None = None,
                 out_margin_blocks: float | None = None, device_latency: str | float | None = None,
                 duplex: bool = False, realtime: bool = True, stall_timeout_s: float = 2.0,
                 device_block_ms: float | None = None, switch_interval_ms: float | None = 1.0,
                 freeze_gc: bool = True, worker: str = "auto", rt_priority: int | None = 10,
                 backend: str = "portaudio") -> None:
        if not (BLOCK_MS_RANGE[0] <= block_ms <= BLOCK_MS_RANGE[1]):
            raise ConfigError(f"block size {block_ms} ms is out of range; expected {BLOCK_MS_RANGE[0]}..{BLOCK_MS_RANGE[1]} ms")
        if channel is not None and channel < 0:
            raise ConfigError(f"input channel {channel} is out of range; expected 0 or more (or none for a mixdown)")
        if output_file is not None and null_output:
            raise ConfigError("--output-file and --null-output exclude each other; give one")
        if callback not in CALLBACKS:
            raise ConfigError(f"callback {callback!r} is not known; expected one of {CALLBACKS}")
        if profile not in PROFILES:
            raise ConfigError(f"profile {profile!r} is not known; expected one of {tuple(PROFILES)}")
        if backend not in BACKENDS:
            raise ConfigError(f"audio backend {backend!r} is not known; expected one of {BACKENDS}")
        if backend == "pulse" and (callback != "native" or duplex):
            raise ConfigError("the pulse backend runs native callbacks only (no --callback python, no duplex)")
        if worker not in WORKERS:
            raise ConfigError(f"worker {worker!r} is not known; expected one of {WORKERS}")
        if rt_priority is not None and not (1 <= rt_priority <= 99):
            raise ConfigError(f"rt_priority {rt_priority} is out of range; expected 1..99 or none")
        prof = PROFILES[profile]
        max_backlog_blocks = prof["max_backlog_blocks"] if max_backlog_blocks is None else max_backlog_blocks
        out_margin_blocks = prof["out_margin_blocks"] if out_margin_blocks is None else out_margin_blocks
        if max_backlog_blocks < 1:
            raise ConfigError(f"max_backlog_blocks {max_backlog_blocks} is out of range; expected >= 1")
        if not (0.0 <= out_margin_blocks <= 16.0):
            raise ConfigError(f"out_margin_blocks {out_margin_blocks} is out of range; expected 0..16")
        if not (0.05 <= stall_timeout_s <= 60.0):
            raise ConfigError(f"stall_timeout_s {stall_timeout_s} is out of range; expected 0.05..60 s")
        self.engine = engine
        self.block_ms = float(block_ms)
        self.channel = channel
        self.loop = bool(loop)
        self.input_file = Path(input_file) if input_file is not None else None
        self.output_file = Path(output_file) if output_file is not None else None
        self.null_output = bool(null_output)
        self.callback = callback
        self.backend = backend
        self._pulse_rows: list[dict[str, Any]] = []  # pulse backend: the server's devices at the last resolve
        self.profile = profile
        self.max_backlog_blocks = int(max_backlog_blocks)
        self.out_margin_blocks = float(out_margin_blocks)
        self._margin_step_blocks = step = float(prof["margin_step_blocks"])
        by_ms = math.ceil(prof["margin_max_ms"] / self.block_ms / step) * step
        self._margin_max_blocks = max(self.out_margin_blocks, float(prof["margin_max_blocks"]), by_ms)
        self._margin_relax_s = prof["margin_relax_s"]
        self.device_latency = prof["device_latency"] if device_latency is None else device_latency
        self.duplex = bool(duplex)
        self.realtime = bool(realtime)
        self.stall_timeout_s = float(stall_timeout_s)
        self.device_block_ms = device_block_ms
        if switch_interval_ms is not None and not (0.05 <= switch_interval_ms <= 100.0):
            raise ConfigError(f"switch_interval_ms {switch_interval_ms} is out of range; expected 0.05..100 ms")
        self.switch_interval_ms = switch_interval_ms
        self.freeze_gc = bool(freeze_gc)
        self.worker = worker
        self.rt_priority = rt_priority
        self.worker_home: str | None = None
        """Where the block worker runs now: ``"process"`` or ``"thread"`` (``None`` before start)."""
        self._rings: Rings | None = None
        self._core: BlockWorker | None = None
        self._shm: SharedBlock | None = None
        self._wake_fd: int | None = None
        self._wp: WorkerProcess | None = None
        self._wp_stats_base: dict[str, int] = {}
        self._margin_mirror = self.out_margin_blocks
        self._saved_switch: float | None = None
        if not realtime and (input_file is None or not (output_file is not None or null_output)):
            raise ConfigError("realtime=False (--fast) needs an input file and an output file or null output")
        self._spec = {"input": input, "output": output, "monitor": monitor}
        self.rate = int(rate or engine.config.device_rate)
        self._file_x: Audio | None = None
        self._load_input_file()
        self._dev: dict[str, int | None] = {}
        self._resolve()
        check = self._check_args(self._dev, self.rate)
        if check is not None:
            check_settings(**check)
        self._streams: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.finished = threading.Event()
        """Set when a non-looping input file has been played and its tail flushed, or the worker failed."""
        self.error: Exception | None = None
        """What stopped the worker, if it failed (the run loop reports it)."""
        self.file_error: str | None = None
        """Set by :meth:`stop` when the output file could not be written completely (disk full)."""
        self.running = False
        self.stream_state = "stopped"
        """``"running"``, ``"reconnecting"`` (a device is gone; retrying with backoff) or ``"stopped"``."""
        self.faults: deque[dict[str, Any]] = deque(maxlen=50)
        """The latest fault reports: ``{"t_s", "kind", "message"}`` (device lost / back, file errors)."""
        self.stream_latency_s = {"input": 0.0, "output": 0.0}
        self.stats = {**{k: 0 for k in WORKER_STATS}, "stream_restarts": 0, "device_losses": 0,
                      "reconnect_attempts": 0, "worker_restarts": 0}
        self._file_pos = 0  # input-file position (samples at ``rate``); kept across set_devices
        self._file_done_at = -1
        self._writer: _FileWriter | None = None
        self._restarts_reported = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # serialises start/stop/set_devices/reconnects (never taken by audio threads)
        self._gauges_init()

    # ------------------------------------------------------------------ configuration
    def _load_input_file(self) -> None:
        if self.input_file is None:
            return
        from .wavio import read_audio

        x, _ = read_audio(self.input_file, resample_to=self.rate, allow_nonfinite=True)
        self._file_x = x

    def _resolve(self) -> None:
        if self.backend == "pulse":
            self._resolve_pulse()
            return
        dev: dict[str, int | None] = {"input": None, "output": None, "monitor": None}
        if self.input_file is None:
            dev["input"] = resolve_device(self._spec["input"], "input")
        if self.output_file is None and not self.null_output:
            dev["output"] = resolve_device(self._spec["output"], "output")
        if self._spec["monitor"] is not None:
            dev["monitor"] = resolve_device(self._spec["monitor"], "output")
        self._dev = dev

    def _resolve_pulse(self) -> None:
        """Pulse backend: ``_dev`` holds sink / source names (``_pulse_rows`` the server's devices)."""
        from .pulse import list_pulse_devices, resolve_pulse_device

        wanted = {"input": self.input_file is None, "output": self.output_file is None and not self.null_output,
                  "monitor": self._spec["monitor"] is not None}
        listing = list_pulse_devices() if any(wanted.values()) else None
        found = {k: resolve_pulse_device(self._spec[k], k, listing)["name"] for k, on in wanted.items() if on}
        self._pulse_rows = pulse_device_table(listing) if listing is not None else []
        self._dev = {k: found.get(k) for k in ("input", "output", "monitor")}  # type: ignore[misc]

    def _in_channels(self, index: int | None) -> int:
        if index is None:
            return 1
        if self.backend == "pulse":  # ``index`` is the source's name
            d = next(r for r in self._pulse_rows if r["kind"] == "source" and r["name"] == index)
        else:
            d = {d["index"]: d for d in list_devices()}[index]
        if self.channel is not None:
            if self.channel >= d["max_input_channels"]:
                raise DeviceError(f"input channel {self.channel} does not exist on {_describe(d)}; "
                                  f"expected 0..{d['max_input_channels'] - 1}")
            # open at least two channels where there are two: a server asked for one channel of a
            # stereo source mixes both down, and channel 0 would then carry channel 1 too
            return max(self.channel + 1, min(2, d["max_input_channels"]))
        return min(2, d["max_input_channels"])

    def _check_args(self, dev: dict[str, int | None], rate: int) -> dict[str, Any] | None:
        if self.backend == "pulse" or (dev["input"] is None and dev["output"] is None and dev["monitor"] is None):
            if rate not in SUPPORTED_RATES:
                raise DeviceError(f"rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
            if dev["input"] is not None:
                self._in_channels(dev["input"])  # a channel the source lacks: refused here
            return None  # the PulseAudio server converts any rate and channel count
        return {"input": dev["input"], "output": dev["output"], "monitor": dev["monitor"], "rate": rate,
                "input_channels": self._in_channels(dev["input"]), "output_channels": 1}

    @property
    def devices(self) -> dict[str, Any]:
        """Current input / output / monitor device names (or file / null) and the rate in Hz."""
        def name(kind: str) -> str | None:
            i = self._dev.get(kind)
            if i is None or self.backend == "pulse":
                return i  # type: ignore[return-value]
            return device_name(i)

        inp = name("input") if self._dev.get("input") is not None else f"file:{self.input_file}"
        if self._dev.get("output") is not None:
            out = name("output")
        else:
            out = f"file:{self.output_file}" if self.output_file is not None else "null"
        return {"input": inp, "output": out, "monitor": name("monitor"), "rate": self.rate}

    @property
    def buffering_bound_ms(self) -> float:
        """Most audio the runner itself holds in steady state, in ms: the input backlog before
        the oldest blocks are dropped (``max_backlog_blocks + 1``) plus the output ring at its
        widest (one block being written + the largest output margin + one block of jitter).
        Device buffers and the algorithmic latency come on top."""
        return (self.max_backlog_blocks + 3 + self._margin_max_blocks) * self.block * 1000.0 / self.rate

    @property
    def target_buffer_age_ms(self) -> float:
        """Buffer age the runner steers to: the block just written, the output margin, one block
        of callback jitter and one block of input arriving while the worker computes. After an
        overload burst the age returns below this (the oldest input is dropped)."""
        return (3.0 + self._margin_blocks) * self.block * 1000.0 / self.rate

    @property
    def _margin_blocks(self) -> float:
        """The output margin now (blocks): the block worker's, or its mirror from the worker process."""
        return self._core.margin_blocks if self._core is not None else self._margin_mirror

    @property
    def _win_blocks(self) -> int:
        assert self._core is not None
        return self._core.win_blocks

    @property
    def block(self) -> int:
        """Host block in samples at the device rate (what the worker processes at a time)."""
        return max(1, int(round(self.rate * self.block_ms / 1000.0)))

    @property
    def device_block(self) -> int:
        """Frames per device callback (0: PortAudio chooses). The rings decouple it from
        :attr:`block`; a smaller device block shortens the device buffers (PortAudio's ALSA
        backend keeps at least two periods per direction)."""
        if self.device_block_ms is None:
            return self.block
        return max(0, int(round(self.rate * self.device_block_ms / 1000.0)))

    def _gauges_init(self) -> None:
        self._margin_mirror = self.out_margin_blocks
        g = self.engine.gauges
        g["buffer_age_ms"] = None
        g["buffer_age_max_ms"] = None
        g["target_buffer_age_ms"] = self.target_buffer_age_ms
        g["stream_state"] = self.stream_state
        g["last_fault"] = None

    def _fault(self, kind: str, message: str, *, level: int = logging.WARNING) -> None:
        """Record a fault: the log, :attr:`faults` and the engine telemetry (``last_fault``)."""
        _log.log(level, "%s", message)
        self.faults.append({"t_s": round(time.monotonic() - self._t0, 3), "kind": kind, "message": message})
        self.engine.gauges["last_fault"] = f"{kind}: {message}"

    def _set_state(self, state: str) -> None:
        self.stream_state = state
        self.engine.gauges["stream_state"] = state

    # ------------------------------------------------------------------ allocation
    def _home(self) -> str:
        if self.worker != "auto":
            return self.worker
        return "process" if any(v is not None for v in self._dev.values()) else "thread"

    def _allocate(self) -> None:
        b = self.block
        self.worker_home = home = self._home()
        ring_samples = 16 * b + 8192
        if home == "process":
            self._shm = SharedBlock.create(ring_samples)
            rings = self._shm.rings
        else:
            rings = Rings.local(ring_samples)
        self._rings = rings
        self._close_wake()
        self._wake_fd = new_wake_fd()  # input callbacks wake the worker through it (Linux)
        self._in, self._out, self._mon = rings.input, rings.output, rings.monitor
        self._cb = rings.cb  # Python-callback / file-clock counters
        self._ncnt = rings.ncnt  # native callback counters, one array per stream role
        self._cb_mono = np.zeros(max(8192, 4 * b), np.float32)  # callback scratch (device blocks may vary)
        self._cb_mono2 = np.zeros(max(8192, 4 * b), np.float32)
        self._cb_mono3 = np.zeros(max(8192, 4 * b), np.float32)
        # one block of silence in each output ring, so the first callback does not run dry
        ring_write(self._out.buf, self._out.idx, np.zeros(b, np.float32))
        ring_write(self._mon.buf, self._mon.idx, np.zeros(b, np.float32))
        self._gauges_init()
        self._core = None
        if home == "thread":
            self._core = BlockWorker(self.engine, rings, rate=self.rate, block=b,
                                     max_backlog_blocks=self.max_backlog_blocks, out_margin_blocks=self.out_margin_blocks,
                                     margin_max_blocks=self._margin_max_blocks, margin_step_blocks=self._margin_step_blocks,
                                     margin_relax_s=self._margin_relax_s, device_out=self._dev["output"] is not None,
                                     monitor=self._dev["monitor"] is not None, stats=self.stats,
                                     wake_fd=self._wake_fd)
        # warm up every kernel signature the audio threads use, before any stream starts
        _to_mono(np.zeros((4, 2), np.float32), -1, self._cb_mono[:4])
        _fan_out(self._cb_mono[:4], 1.0, np.zeros((4, 2), np.float32))
        ring_read_available(self._in.idx)
        ring_write_available(self._in.buf, self._in.idx)
        ring_discard(self._in.idx, 0)

    def _start_worker_process(self) -> None:
        """Spawn the worker process on the current rings (start, or a restart after it died)."""
        assert self._shm is not None
        self._wp_stats_base = {k: self.stats[k] for k in WORKER_STATS}
        spec = {"rate": self.rate, "block": self.block, "max_backlog_blocks": self.max_backlog_blocks,
                "margin_blocks": self._margin_mirror, "margin_max_blocks": self._margin_max_blocks,
                "margin_base_blocks": self.out_margin_blocks, "margin_step_blocks": self._margin_step_blocks,
                "margin_relax_s": self._margin_relax_s,
                "device_out": self._dev["output"] is not None, "monitor": self._dev["monitor"] is not None,
                "rt_priority": self.rt_priority, "wake_fd": self._wake_fd}
        wp = WorkerProcess(self._shm, self.engine, spec, on_report=self._on_report,
                           on_fault=lambda kind, msg: self._fault(kind, msg), on_error=self._on_worker_error)
        wp.start()
        self._wp = wp
        self.engine.gauges["worker_priority"] = wp.info.get("priority")

    def _on_report(self, snap: dict[str, Any]) -> None:
        """Mirror thread: a snapshot from the worker process becomes this runner's statistics (the
        engine's come through its :class:`~rtvc.worker.EngineProxy`)."""
        base = self._wp_stats_base
        for k, v in snap["stats"].items():
            self.stats[k] = base.get(k, 0) + int(v)
        self._margin_mirror = float(snap["margin_blocks"])

    def _on_worker_error(self, e: Exception) -> None:
        if isinstance(e, WorkerExited):
            self._fault("worker", f"{e}; restarting it", level=logging.ERROR)  # the supervisor does
            return
        self.error = e
        self.finished.set()

    # ------------------------------------------------------------------ Python callbacks (fallback)
    def _input_cb(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._cb[_IN_CALLS] += 1
        if status:
            self._cb[_IN_STATUS] += 1
        mono = self._cb_mono[:frames]
        _to_mono(indata, self._ch_sel, mono)
        if ring_write(self._in.buf, self._in.idx, mono) < frames:
            self._cb[_IN_OVERFLOW] += 1
        wake(self._wake_fd)

    def _output_cb(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._cb[_OUT_CALLS] += 1
        if status:
            self._cb[_OUT_STATUS] += 1
        mono = self._cb_mono2[:frames]
        got = ring_read(self._out.buf, self._out.idx, mono)
        if got < frames:
            mono[got:] = 0.0
            self._cb[_OUT_UNDERFLOW] += 1
            self._cb[_OUT_MISSING] += frames - got
        _fan_out(mono, 1.0, outdata)

    def _duplex_cb(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._input_cb(indata, frames, time_info, status)
        self._output_cb(outdata, frames, time_info, None)

    def _monitor_cb(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._cb[_MON_CALLS] += 1
        if status:
            self._cb[_MON_STATUS] += 1
        mono = self._cb_mono3[:frames]
        got = ring_read(self._mon.buf, self._mon.idx, mono)
        if got < frames:
            mono[got:] = 0.0
            self._cb[_MON_UNDERFLOW] += 1
        _fan_out(mono, 1.0, outdata)

    # ------------------------------------------------------------------ file clock thread
    def _file_clock(self) -> None:
        """Stands in for the device clock of every side a file (or null) replaces."""
        b = self.block
        period = b / self.rate
        src = np.zeros(b, np.float32)
        snk = np.zeros(b, np.float32)
        x = self._file_x
        flush_blocks = int(math.ceil((self.engine.latency_samples() + 4 * b) / b)) + self.max_backlog_blocks + 2
        t_next = time.perf_counter()
        ticks = 0
        if self._file_done_at >= 0:
            self._file_done_at = 0  # restarted by set_devices while flushing the tail
        while not self._stop.is_set():
            if x is not None:
                if self._file_done_at < 0:
                    k = min(b, x.shape[0] - self._file_pos)
                    src[:k] = x[self._file_pos:self._file_pos + k]
                    src[k:] = 0.0
                    self._file_pos += k
                    if self._file_pos >= x.shape[0]:
                        if self.loop:
                            self._file_pos = 0
                        else:
                            self._file_done_at = ticks
                else:
                    src[:] = 0.0
                    if ticks - self._file_done_at >= flush_blocks:
                        self.finished.set()
                self._cb[_IN_CALLS] += 1
                if ring_write(self._in.buf, self._in.idx, src) < b:
                    self._cb[_IN_OVERFLOW] += 1
                wake(self._wake_fd)
            if self._dev["output"] is None:
                if not self.realtime:  # lockstep with the worker: deterministic, as fast as possible
                    while ring_read_available(self._out.idx) < b and not self._stop.is_set():
                        time.sleep(0.0002)
                    if self._stop.is_set():
                        break
                self._cb[_OUT_CALLS] += 1
                got = ring_read(self._out.buf, self._out.idx, snk)
                if got < b:
                    snk[got:] = 0.0
                    self._cb[_OUT_UNDERFLOW] += 1
                    self._cb[_OUT_MISSING] += b - got
                if self._writer is not None and not self.finished.is_set():
                    self._writer.put(snk)  # copies; file side only: not a PortAudio callback
            ticks += 1
            if not self.realtime:
                continue
            t_next += period
            delay = t_next - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -10 * period:  # we were suspended: do not try to catch up a burst
                t_next = time.perf_counter()

    def _file_writer(self) -> None:
        """Writer thread: flush the output file every 100 ms (retry every 1 s after an error)."""
        w = self._writer
        assert w is not None
        had_error = False
        while not self._stop.wait(1.0 if had_error else 0.1):
            ok = w.flush()
            if not ok and not had_error:
                self._fault("output_file", w.error or "write failed", level=logging.ERROR)
            elif ok and had_error:
                self._fault("output_file", f"writing {str(w.path)!r} works again; the queued audio was written")
            had_error = not ok

    # ------------------------------------------------------------------ worker thread
    def _worker(self) -> None:
        # without a wake descriptor, poll often (the native callback cannot take the GIL to wake it)
        sleep_s = poll_interval_s(self.block, self.rate) if self.realtime else 0.0002
        assert self._core is not None
        try:
            self._core.run(self._stop.is_set, sleep_s=sleep_s)
        except Exception as e:  # the streams would play silence forever: stop and say why
            self.error = e
            self.finished.set()

    def step(self) -> bool:
        """Process one block if one is waiting (thread home; see :meth:`BlockWorker.step`)."""
        if self._core is None:
            raise ConfigError("step() drives the thread-home worker; this runner's worker runs in its own process")
        return self._core.step()

    def _counts(self) -> np.ndarray:
        """Callback counters, Python and native, in the ``cb`` layout."""
        if self._rings is None:
            return np.zeros(N_CB, np.int64)
        return callback_counts(self._rings)

    def _collect(self) -> None:
        """Move callback counters into ``stats`` and ``engine.counters['xruns']`` (thread home)."""
        if self._core is not None:
            self._core.collect()

    # ------------------------------------------------------------------ streams
    def _latency_s(self, sd: Any, index: int, kind: str) -> float:
        if isinstance(self.device_latency, (int, float)):
            return float(self.device_latency)
        info = sd.query_devices(index)
        return float(info[f"default_{self.device_latency}_{kind}_latency"])

    def _open_native(self, sd: Any, kind: str, index: int, channels: int) -> _NativeStream:
        ring = self._in if kind == "input" else (self._out if kind == "output" else self._mon)
        cnt = self._ncnt[kind]
        ctl = make_control_block(ring.buf, ring.idx, ring.buf, ring.idx, cnt, in_channels=channels,
                                 in_select=self._ch_sel, out_channels=channels,
                                 wake_fd=self._wake_fd if kind == "input" else None)
        return _NativeStream(sd, kind=kind, device=index, channels=channels, rate=self.rate, block=self.device_block,
                             latency=self._latency_s(sd, index, "input" if kind == "input" else "output"),
                             ctl=ctl, keep=(ring, cnt), realtime=self.rt_priority is not None)

    def _open_pulse(self, kind: str, name: str, channels: int) -> Any:
        from .pulse import PulseStream

        ring = self._in if kind == "input" else (self._out if kind == "output" else self._mon)
        cnt = self._ncnt[kind]
        ctl = make_control_block(ring.buf, ring.idx, ring.buf, ring.idx, cnt, in_channels=channels,
                                 in_select=self._ch_sel, out_channels=channels,
                                 wake_fd=self._wake_fd if kind == "input" else None, wake_min=self.block)
        lat, block = self.device_latency, self.device_block or self.block
        latency_s = float(lat) if isinstance(lat, (int, float)) else (None if lat == "low" else 4 * block / self.rate)
        return PulseStream(kind=kind, device=name, channels=channels, rate=self.rate, block=block,
                           ctl=ctl, keep=(ring, cnt), latency_s=latency_s)

    def _open_streams(self) -> None:
        """Open and start the device streams. With the native callback and ``rt_priority``, the
        threads the audio libraries start meanwhile (libpulse's mainloop behind ALSA's ``pulse``
        plugin moves every sample to and from the server) inherit ``SCHED_FIFO`` from this
        thread, raised for the duration; PortAudio's callback thread gets it by its own flag.
        They run one step above the worker (``rt_priority + 1``): they only move samples
        between the rings and the server (microseconds per block), so a worker block that
        takes long (a compute spike on a busy machine) must not hold them up, or the server
        runs dry although the ring has audio (an ALSA-level underrun)."""
        raise_ = self.callback == "native" and self.rt_priority is not None
        with _inheritable_priority(min(99, self.rt_priority + 1) if raise_ and self.rt_priority else None):
            self._open_streams_now()

    def _open_streams_now(self) -> None:
        sd = _sounddevice()
        rate = self.rate
        di, do, dm = self._dev["input"], self._dev["output"], self._dev["monitor"]
        if di is None and do is None and dm is None:
            self._streams = []
            return
        n_in = self._in_channels(di)
        self._ch_sel = -1 if self.channel is None else int(self.channel)
        _to_mono(np.zeros((4, n_in), np.float32), self._ch_sel, self._cb_mono[:4])
        lat = self.device_latency
        common = dict(samplerate=rate, blocksize=self.device_block, dtype="float32", latency=lat)
        streams: list[Any] = []
        try:
            if self.backend == "pulse":
                for kind, name, ch in (("input", di, n_in), ("output", do, 1), ("monitor", dm, 1)):
                    if name is None:
                        continue
                    s = self._open_pulse(kind, str(name), ch)
                    streams.append(s)
                    if kind != "monitor":
                        self.stream_latency_s[kind] = s.latency
            elif self.callback == "native":
                for kind, index, ch in (("input", di, n_in), ("output", do, 1), ("monitor", dm, 1)):
                    if index is None:
                        continue
                    s = self._open_native(sd, kind, index, ch)
                    streams.append(s)
                    if kind != "monitor":
                        self.stream_latency_s[kind] = s.latency
            elif self.duplex and di is not None and do is not None and di == do:
                s = sd.Stream(device=(di, do), channels=(n_in, 1), callback=self._duplex_cb, **common)
                streams.append(s)
                self.stream_latency_s = {"input": float(s.latency[0]), "output": float(s.latency[1])}
            else:
                if di is not None:
                    s = sd.InputStream(device=di, channels=n_in, callback=self._input_cb, **common)
                    streams.append(s)
                    self.stream_latency_s["input"] = float(s.latency)
                if do is not None:
                    s = sd.OutputStream(device=do, channels=1, callback=self._output_cb, **common)
                    streams.append(s)
                    self.stream_latency_s["output"] = float(s.latency)
            if dm is not None and self.callback == "python":
                streams.append(sd.OutputStream(device=dm, channels=1, callback=self._monitor_cb, **common))
            for s in streams:
                s.start()
        except Exception as e:
            for s in streams:
                try:
                    s.close()
                except Exception:
                    pass
            if isinstance(e, (sd.PortAudioError, ValueError)):
                raise DeviceError(f"cannot open the audio stream(s) {self._dev} at {rate} Hz: {e}") from e
            raise
        self._streams = streams

    def _close_streams(self, *, abort: bool = False) -> None:
        for s in self._streams:
            try:
                if abort and hasattr(s, "abort"):
                    s.abort()
                else:
                    s.stop()
            except Exception:
                pass  # a stream whose device is gone may refuse to stop; closing it is what matters
            finally:
                try:
                    s.close()
                except Exception:
                    pass
        self._streams = []

    # ------------------------------------------------------------------ supervisor thread
    def _supervise(self) -> None:
        """Watch the device streams; when one stops or stalls, close them and reopen with backoff.

        A stream is dead when PortAudio says it is inactive, or when its callback count has not
        moved for ``stall_timeout_s`` of this thread's own wall time (a stall of this thread
        itself, e.g. behind the GIL, restarts the measurement rather than counting). A freshly
        opened stream gets ``START_TIMEOUT_S`` for its first callback (PulseAudio takes a
        second or two to start a capture stream)."""
        tick = 0.05
        roles = ((_IN_CALLS, "input"), (_OUT_CALLS, "output"), (_MON_CALLS, "monitor"))
        opened = last = time.monotonic()
        seen = self._counts()
        at_open = seen.copy()
        still_since = {k: last for k, _ in roles}
        backoff, next_try = 0.25, 0.0
        while not self._stop.wait(tick):
            now = time.monotonic()
            starved = now - last > max(0.2, self.stall_timeout_s / 2)
            last = now
            if self._wp is not None and not self._wp.alive() and self.error is None:
                self._respawn_worker()
            if self._wp is None:  # the thread home: this engine hears the speaker (the worker saves its own)
                self.engine.save_speaker_if_due(now)
            if self.stream_state == "running":
                if not self._streams:
                    continue
                c = self._counts()
                reason = None
                for s in list(self._streams):
                    try:
                        alive = bool(getattr(s, "active", True))
                    except Exception:  # closed under our feet by stop()/set_devices()
                        alive = True
                    if not alive:
                        reason = f"the {getattr(s, 'kind', 'audio')} stream stopped (host API error or device gone)"
                for k, name in roles:
                    if self._dev[name] is None or reason is not None:
                        continue
                    if c[k] - at_open[k] < 10:  # not started yet (PulseAudio starts in fits)
                        if now - opened > START_TIMEOUT_S:
                            reason = f"the {name} stream did not start within {START_TIMEOUT_S:g} s"
                        still_since[k] = now
                    elif c[k] != seen[k] or starved:
                        still_since[k] = now
                    elif now - still_since[k] > self.stall_timeout_s:
                        reason = f"the {name} device stopped calling back for {now - still_since[k]:.1f} s"
                seen = c
                if reason is None:
                    continue
                if not self._lock.acquire(timeout=0.5):
                    continue
                try:
                    if self._stop.is_set():
                        return
                    self._close_streams(abort=True)
                    self.stats["device_losses"] += 1
                    self._set_state("reconnecting")
                    self._fault("device_lost", f"{reason}; {self.devices_text()}: reopening with backoff")
                finally:
                    self._lock.release()
                backoff, next_try = 0.25, now + 0.25
            elif self.stream_state == "reconnecting" and now >= next_try:
                if not self._lock.acquire(timeout=0.5):
                    continue
                try:
                    if self._stop.is_set():
                        return
                    self.stats["reconnect_attempts"] += 1
                    try:
                        self._reset_output_rings()
                        self._open_streams()
                    except RtvcError as e:
                        next_try = time.monotonic() + backoff
                        if backoff >= 1.0:
                            _log.info("still waiting for the audio device (%s); next try in %.2f s", e, backoff)
                        backoff = min(4.0, backoff * 2)
                        continue
                    self.stats["stream_restarts"] += 1
                    self._set_state("running")
                    self._fault("device_back", f"audio resumed on {self.devices_text()} after "
                                f"{self.stats['reconnect_attempts']} attempt(s) in total")
                    opened = last = time.monotonic()
                    seen = self._counts()
                    at_open = seen.copy()
                    still_since = {k: last for k in still_since}
                finally:
                    self._lock.release()

    def _respawn_worker(self) -> None:
        """Supervisor: the worker process died (killed, crashed): start another on the same
        rings; the streams never stopped, so audio resumes where the rings stand."""
        if not self._lock.acquire(timeout=0.5):
            return
        try:
            if self._stop.is_set() or self._wp is None or self._wp.alive():
                return
            old = self._wp
            old.stop(timeout_s=0.5)
            self._wp = None
            self.stats["worker_restarts"] += 1
            try:
                self._start_worker_process()
            except RtvcError as e:
                self.error = e
                self.finished.set()
                self._fault("worker", f"the audio worker process could not be restarted: {e}", level=logging.ERROR)
                return
            self._fault("worker", f"audio worker process restarted (pid {self._wp.pid})")
        finally:
            self._lock.release()

    def _reset_output_rings(self) -> None:
        """Streams closed: leave one block of output queued, as at start (we own both ends now)."""
        b = self.block
        for ring in (self._out, self._mon):
            n = ring_read_available(ring.idx)
            if n > b:
                ring_discard(ring.idx, n - b)
            elif n < b and self._wp is None:  # a worker process is the producer: leave its end alone
                ring_write(ring.buf, ring.idx, np.zeros(b - n, np.float32))

    def devices_text(self) -> str:
        try:
            d = self.devices
        except RtvcError:
            d = dict(self._dev)
        return f"{d.get('input')} -> {d.get('output')}" + (f" (+ monitor {d['monitor']})" if d.get("monitor") else "")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveRunner":
        """Allocate, warm up, open the streams and start the worker, supervisor, file clock and
        file writer threads. An output file is created here (and written while running)."""
        with self._lock:
            if self.running:
                return self
            self._allocate()
            if self.worker_home == "process":
                try:
                    self._start_worker_process()  # imports, loads the voice and warms up there
                except BaseException:
                    self._release_shm()
                    raise
            elif self.engine.counters["blocks"] == 0:
                # compile every kernel and code path once in a throwaway engine, so the first real
                # block is on time and this engine's stream starts at sample 0
                self.engine.warm_up()
            if self.output_file is not None and self._writer is None:
                self._writer = _FileWriter(self.output_file, self.rate)
            self._stop.clear()
            self.finished.clear()
            self.error = None
            self._threads = []
            if self._core is not None:
                self._threads.append(threading.Thread(target=self._worker, name="rtvc-worker", daemon=True))
            if self.input_file is not None or self._dev["output"] is None:
                self._threads.append(threading.Thread(target=self._file_clock, name="rtvc-file-clock", daemon=True))
            if self._writer is not None:
                self._threads.append(threading.Thread(target=self._file_writer, name="rtvc-file-writer", daemon=True))
            for t in self._threads:
                t.start()
            try:
                self._open_streams()
            except BaseException:
                self._stop.set()
                for t in self._threads:
                    t.join()
                self._threads = []
                self._stop_worker_process()
                raise
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            if self.switch_interval_ms is not None and self._saved_switch is None:
                self._saved_switch = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved_switch, self.switch_interval_ms / 1000.0))
            sup = threading.Thread(target=self._supervise, name="rtvc-supervisor", daemon=True)
            self._threads.append(sup)
            self._set_state("running")
            sup.start()
            self.running = True
            return self

    def _stop_worker_process(self) -> None:
        """Stop the worker process (its final snapshot is mirrored first) and free the rings' file."""
        if self._wp is not None:
            self._wp.stop()
            self._wp = None
        self._release_shm()

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm = None

    def _close_wake(self) -> None:
        if self._wake_fd is not None:
            os.close(self._wake_fd)
            self._wake_fd = None

    def _halt(self) -> bool:
        """Close the streams and join the threads; return whether anything was running."""
        if not self.running:
            return False
        self.running = False
        try:
            self._close_streams()
        finally:
            self._stop.set()
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join(timeout=5.0)
            self._threads = []
        self._set_state("stopped")
        self._collect()
        self._stop_worker_process()  # a worker process saves its engine's speaker memory as it ends
        self.engine.save_speaker()  # the thread home's engine; the process home's heard nothing itself (a no-op)
        self._close_wake()
        if self._saved_switch is not None:
            sys.setswitchinterval(self._saved_switch)
            self._saved_switch = None
        return True

    def stop(self) -> None:
        """Stop streams and threads (idempotent); finish the output file if there is one.

        Never raises for a file problem: :attr:`file_error` (also logged, and in
        :attr:`faults`) says what could not be written; everything written before is kept.
        """
        with self._lock:
            if not self._halt():
                return
            if self._writer is not None:
                err = self._writer.close()
                self._writer = None
                if err is not None:
                    self.file_error = err
                    self._fault("output_file", err, level=logging.ERROR)

    def inject_stall(self, ms: float) -> None:
        """Fault injection for benchmarks and tests: the worker's next block first waits ``ms``
        (an overload burst, as a slow model or a busy machine would cause), wherever it runs."""
        if not (0.0 <= ms <= 10_000.0):
            raise ConfigError(f"stall of {ms} ms is out of range; expected 0..10000 ms")
        if self._wp is not None:
            self._wp.send(("stall", float(ms)))
        elif self._core is not None:
            self._core.stall_s = ms / 1000.0

    @property
    def worker_pid(self) -> int | None:
        """Process id of the worker process (``None`` when the worker is a thread or stopped)."""
        return self._wp.pid if self._wp is not None else None

    def restart_dead_streams(self) -> bool:
        """Whether the supervisor reopened the streams since the last call (the run loop prints
        a warning). Dead or stalled streams are detected and reopened by the supervisor thread,
        with backoff, while the runner runs; see :attr:`stream_state` and :attr:`faults`."""
        n = self.stats["stream_restarts"]
        changed = n != self._restarts_reported
        self._restarts_reported = n
        return changed

    def set_devices(self, *, input: int | str | None = None, output: int | str | None = None,
                    monitor: int | str | None = None, rate: int | None = None) -> dict[str, Any]:
        """Switch devices (and/or the device rate) while keeping the same engine.

        Only the given arguments change (``monitor=False`` removes the monitor stream). The
        new combination is checked first: if it is invalid a DeviceError is raised and the
        current streams keep running; if it passes the check but will not open, the old
        devices are reopened and the error is raised.

        Returns
        -------
        dict
            :attr:`devices` after the switch.
        """
        spec = dict(self._spec)
        for k, v in (("input", input), ("output", output), ("monitor", monitor)):
            if v is not None:
                spec[k] = v
        if monitor is False:
            spec["monitor"] = None
        new_rate = int(rate) if rate is not None else self.rate
        if new_rate not in SUPPORTED_RATES:
            raise DeviceError(f"device rate {new_rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
        if new_rate != self.rate and self._writer is not None:
            raise DeviceError(f"the device rate cannot change from {self.rate} to {new_rate} Hz while writing "
                              f"{str(self.output_file)!r}; stop first")
        old = (self._spec, self._dev, self.rate)
        self._spec, self.rate = spec, new_rate
        try:
            self._resolve()
            check = self._check_args(self._dev, self.rate)
            if check is not None:
                check_settings(**check)
        except BaseException:
            self._spec, self._dev, self.rate = old
            raise
        with self._lock:
            was_running = self._halt()
        if self.input_file is not None and new_rate != old[2]:
            self._load_input_file()
            self._file_pos = int(self._file_pos * new_rate / old[2])
        if was_running:
            try:
                self.start()
            except RtvcError:
                # the new devices passed the check but would not open: go back to the old ones
                self._spec, self._dev, self.rate = old
                if self.input_file is not None and new_rate != old[2]:
                    self._load_input_file()
                    self._file_pos = int(self._file_pos * old[2] / new_rate)
                self.start()
                raise
        return self.devices

    def __enter__(self) -> "LiveRunner":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        """Telemetry + counters + runner stats + devices + faults (JSON-ready)."""
        w = self._writer
        out = {**self.engine.telemetry(), "runner": dict(self.stats), "devices": self.devices,
               "block_ms": self.block_ms, "block": self.block, "max_backlog_blocks": self.max_backlog_blocks,
               "callback": self.callback, "backend": self.backend, "profile": self.profile, "stream_state": self.stream_state,
               "worker": self.worker_home, "worker_pid": self._wp.pid if self._wp is not None else None,
               "buffering_bound_ms": self.buffering_bound_ms, "target_buffer_age_ms": self.target_buffer_age_ms,
               "out_margin_blocks": self._margin_blocks,
               "stream_latency_ms": {k: 1000.0 * v for k, v in self.stream_latency_s.items()},
               "faults": list(self.faults), "file_error": self.file_error}
        if w is not None:
            out["output_file_written_s"] = w.written_samples / w.rate
        return out
