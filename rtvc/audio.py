"""Live audio I/O: device lookup and the :class:`LiveRunner` (the only module importing sounddevice).

Threads and who owns what::

    PortAudio callback(s)          worker thread                      file clock thread
    ---------------------          -------------                      -----------------
    device -> input ring  (write)  input ring (read) -> engine         file -> input ring
    output ring (read) -> device   -> output ring / monitor ring       output ring -> file / null

The callbacks only copy samples between the device buffers and preallocated float32 rings
(``rtvc._native.ring``) and bump preallocated counters: no allocation of audio buffers, no
locks, no logging, no model calls. The worker reads fixed blocks of ``block`` samples; when
more than ``max_backlog_blocks`` blocks are waiting it drops the oldest ones (and counts them
in ``engine.counters['dropped_blocks']``), so latency never creeps up. The output ring starts
with one block of silence.

A file can stand in for either device (``input_file`` is played in real time, paced by a
clock at the block rate; ``output_file`` / ``null_output`` consume the output at the same
rate), so headless runs and tests go through exactly the same worker and engine path.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from ._native.ring import ring_discard, ring_read, ring_read_available, ring_write, ring_write_available
from .errors import ConfigError, DeviceError, RtvcError
from .resampling import SUPPORTED_RATES, StreamResampler
from .types import Audio

__all__ = ["list_devices", "resolve_device", "check_settings", "default_rate", "has_devices", "device_name",
           "LiveRunner", "BLOCK_MS_RANGE"]

BLOCK_MS_RANGE = (2.5, 100.0)
_KIND_KEY = {"input": "max_input_channels", "output": "max_output_channels"}
# callback counters (indices into LiveRunner._cb): written only by the callbacks / file clock
_IN_STATUS, _OUT_STATUS, _IN_OVERFLOW, _OUT_UNDERFLOW, _MON_UNDERFLOW, _MON_STATUS = range(6)


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
def list_devices() -> list[dict[str, Any]]:
    """All audio devices PortAudio sees.

    Returns
    -------
    list of dict
        One per device: ``index``, ``name``, ``hostapi`` (name), ``max_input_channels``,
        ``max_output_channels``, ``default_samplerate`` (Hz), ``default_input`` and
        ``default_output`` (bool: this is the system default for that direction).

    Raises
    ------
    DeviceError
        PortAudio cannot be loaded or initialised.
    """
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


def _pow2(n: int) -> int:
    return 1 << int(math.ceil(math.log2(max(2, n))))


class _Ring:
    """A float32 SPSC ring (``buf``, ``idx``); the docstring of each user names its threads."""

    def __init__(self, n: int) -> None:
        self.buf = np.zeros(_pow2(n), np.float32)
        self.idx = np.zeros(2, np.int64)


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
        Collect the output into this WAV (written at :meth:`stop`) or discard it.
    max_backlog_blocks
        Input blocks allowed to wait before the oldest are dropped.
    device_latency
        PortAudio latency hint (``"low"``, ``"high"`` or seconds).
    duplex
        Open one full-duplex stream when input and output are the same device. Off by
        default: through ALSA's ``pulse`` plugin a full-duplex PortAudio stream stops for good
        after its first xrun (PortAudio's ALSA poll fails), while two streams recover.
    realtime
        File to file only: ``False`` runs the file clock in lockstep with the worker instead of
        pacing it (as fast as possible, no xruns, deterministic output).
    """

    def __init__(self, engine: Any, *, input: int | str | None = None, output: int | str | None = None,
                 monitor: int | str | None = None, rate: int | None = None, block_ms: float = 10.0,
                 channel: int | None = None, input_file: str | Path | None = None, loop: bool = False,
                 output_file: str | Path | None = None, null_output: bool = False, max_backlog_blocks: int = 2,
                 device_latency: str | float = "low", duplex: bool = False, realtime: bool = True) -> None:
        if not (BLOCK_MS_RANGE[0] <= block_ms <= BLOCK_MS_RANGE[1]):
            raise ConfigError(f"block size {block_ms} ms is out of range; expected {BLOCK_MS_RANGE[0]}..{BLOCK_MS_RANGE[1]} ms")
        if channel is not None and channel < 0:
            raise ConfigError(f"input channel {channel} is out of range; expected 0 or more (or none for a mixdown)")
        if output_file is not None and null_output:
            raise ConfigError("--output-file and --null-output exclude each other; give one")
        if max_backlog_blocks < 1:
            raise ConfigError(f"max_backlog_blocks {max_backlog_blocks} is out of range; expected >= 1")
        self.engine = engine
        self.block_ms = float(block_ms)
        self.channel = channel
        self.loop = bool(loop)
        self.input_file = Path(input_file) if input_file is not None else None
        self.output_file = Path(output_file) if output_file is not None else None
        self.null_output = bool(null_output)
        self.max_backlog_blocks = int(max_backlog_blocks)
        self.device_latency = device_latency
        self.duplex = bool(duplex)
        self.realtime = bool(realtime)
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
        self.running = False
        self.stream_latency_s = {"input": 0.0, "output": 0.0}
        self.stats = {"input_status_flags": 0, "output_status_flags": 0, "input_overflows": 0,
                      "output_underflows": 0, "monitor_underflows": 0, "output_overflows": 0,
                      "worker_blocks": 0, "stream_restarts": 0}
        self._cb = np.zeros(6, np.int64)
        self._cb_seen = np.zeros(6, np.int64)
        self._sink: list[np.ndarray] = []  # output-file blocks; kept across set_devices
        self._file_pos = 0  # input-file position (samples at ``rate``); kept across set_devices
        self._file_done_at = -1
        self._lock = threading.Lock()  # serialises start/stop/set_devices (never taken by audio threads)

    # ------------------------------------------------------------------ configuration
    def _load_input_file(self) -> None:
        if self.input_file is None:
            return
        from .wavio import read_audio

        x, _ = read_audio(self.input_file, resample_to=self.rate, allow_nonfinite=True)
        self._file_x = x

    def _resolve(self) -> None:
        dev: dict[str, int | None] = {"input": None, "output": None, "monitor": None}
        if self.input_file is None:
            dev["input"] = resolve_device(self._spec["input"], "input")
        if self.output_file is None and not self.null_output:
            dev["output"] = resolve_device(self._spec["output"], "output")
        if self._spec["monitor"] is not None:
            dev["monitor"] = resolve_device(self._spec["monitor"], "output")
        self._dev = dev

    def _in_channels(self, index: int | None) -> int:
        if index is None:
            return 1
        d = {d["index"]: d for d in list_devices()}[index]
        if self.channel is not None:
            if self.channel >= d["max_input_channels"]:
                raise DeviceError(f"input channel {self.channel} does not exist on {_describe(d)}; "
                                  f"expected 0..{d['max_input_channels'] - 1}")
            return self.channel + 1
        return min(2, d["max_input_channels"])

    def _check_args(self, dev: dict[str, int | None], rate: int) -> dict[str, Any] | None:
        if dev["input"] is None and dev["output"] is None and dev["monitor"] is None:
            if rate not in SUPPORTED_RATES:
                raise DeviceError(f"rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
            return None
        return {"input": dev["input"], "output": dev["output"], "monitor": dev["monitor"], "rate": rate,
                "input_channels": self._in_channels(dev["input"]), "output_channels": 1}

    @property
    def devices(self) -> dict[str, Any]:
        """Current input / output / monitor device names (or file / null) and the rate in Hz."""
        def name(kind: str) -> str | None:
            i = self._dev.get(kind)
            return device_name(i) if i is not None else None

        inp = name("input") if self._dev.get("input") is not None else f"file:{self.input_file}"
        if self._dev.get("output") is not None:
            out = name("output")
        else:
            out = f"file:{self.output_file}" if self.output_file is not None else "null"
        return {"input": inp, "output": out, "monitor": name("monitor"), "rate": self.rate}

    @property
    def buffering_bound_ms(self) -> float:
        """Most audio the runner itself can hold, in ms: the input backlog before the oldest
        blocks are dropped (``max_backlog_blocks + 1``) plus the output ring's cap
        (``max_backlog_blocks + 2``). Device buffers and the algorithmic latency come on top."""
        return (2 * self.max_backlog_blocks + 3) * self.block * 1000.0 / self.rate

    @property
    def block(self) -> int:
        """Host block in samples at the device rate."""
        return max(1, int(round(self.rate * self.block_ms / 1000.0)))

    # ------------------------------------------------------------------ allocation
    def _allocate(self) -> None:
        b = self.block
        eng_rate = self.engine.config.device_rate
        self._in = _Ring(16 * b + 8192)
        self._out = _Ring(16 * b + 8192)
        self._mon = _Ring(16 * b + 8192)
        self._cb_mono = np.zeros(max(8192, 4 * b), np.float32)  # callback scratch (device blocks may vary)
        self._cb_mono2 = np.zeros(max(8192, 4 * b), np.float32)
        self._cb_mono3 = np.zeros(max(8192, 4 * b), np.float32)
        self._x = np.zeros(b, np.float32)
        self._edge = eng_rate != self.rate
        if self._edge:
            self._rs_in = StreamResampler(self.rate, eng_rate, max_chunk=b)
            n_eng = b * eng_rate // self.rate + 8
            self._rs_out = StreamResampler(eng_rate, self.rate, max_chunk=n_eng)
            self._y = np.zeros(n_eng, np.float32)
        else:
            self._y = np.zeros(b, np.float32)
        self._ymon = np.zeros(self._y.shape[0] * 2 + 16, np.float32)
        # one block of silence in each output ring, so the first callback does not run dry
        ring_write(self._out.buf, self._out.idx, np.zeros(b, np.float32))
        ring_write(self._mon.buf, self._mon.idx, np.zeros(b, np.float32))
        self._cb[:] = 0
        self._cb_seen[:] = 0
        # warm up every kernel signature the audio threads use, before any stream starts
        _to_mono(np.zeros((4, 2), np.float32), -1, self._cb_mono[:4])
        _fan_out(self._cb_mono[:4], 1.0, np.zeros((4, 2), np.float32))
        ring_read_available(self._in.idx)
        ring_write_available(self._in.buf, self._in.idx)
        ring_discard(self._in.idx, 0)

    # ------------------------------------------------------------------ callbacks (PortAudio threads)
    def _input_cb(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self._cb[_IN_STATUS] += 1
        mono = self._cb_mono[:frames]
        _to_mono(indata, self._ch_sel, mono)
        if ring_write(self._in.buf, self._in.idx, mono) < frames:
            self._cb[_IN_OVERFLOW] += 1

    def _output_cb(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self._cb[_OUT_STATUS] += 1
        mono = self._cb_mono2[:frames]
        got = ring_read(self._out.buf, self._out.idx, mono)
        if got < frames:
            mono[got:] = 0.0
            self._cb[_OUT_UNDERFLOW] += 1
        _fan_out(mono, 1.0, outdata)

    def _duplex_cb(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._input_cb(indata, frames, time_info, status)
        self._output_cb(outdata, frames, time_info, None)

    def _monitor_cb(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
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
                if ring_write(self._in.buf, self._in.idx, src) < b:
                    self._cb[_IN_OVERFLOW] += 1
            if self._dev["output"] is None:
                if not self.realtime:  # lockstep with the worker: deterministic, as fast as possible
                    while ring_read_available(self._out.idx) < b and not self._stop.is_set():
                        time.sleep(0.0002)
                    if self._stop.is_set():
                        break
                got = ring_read(self._out.buf, self._out.idx, snk)
                if got < b:
                    snk[got:] = 0.0
                    self._cb[_OUT_UNDERFLOW] += 1
                if self.output_file is not None and not self.finished.is_set():
                    self._sink.append(snk.copy())  # file side only: not a PortAudio callback
            ticks += 1
            if not self.realtime:
                continue
            t_next += period
            delay = t_next - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -10 * period:  # we were suspended: do not try to catch up a burst
                t_next = time.perf_counter()

    # ------------------------------------------------------------------ worker thread
    def _worker(self) -> None:
        sleep_s = max(0.0005, self.block / self.rate / 4.0) if self.realtime else 0.0002
        try:
            while not self._stop.is_set():
                self._collect()
                if not self.step():
                    time.sleep(sleep_s)
        except Exception as e:  # the streams would play silence forever: stop and say why
            self.error = e
            self.finished.set()
        self._collect()

    def step(self) -> bool:
        """Process one block if one is waiting (worker side); return whether one was processed.

        When more than ``max_backlog_blocks`` blocks wait, all but the newest are dropped first
        and counted in ``engine.counters['dropped_blocks']``.
        """
        b = self.block
        eng = self.engine
        counters = eng.counters
        avail = ring_read_available(self._in.idx)
        if avail < b:
            return False
        if avail > (self.max_backlog_blocks + 1) * b:
            n_drop = ((avail - b) // b) * b
            ring_discard(self._in.idx, n_drop)
            counters["dropped_blocks"] += n_drop // b
        x, y = self._x, self._y
        ring_read(self._in.buf, self._in.idx, x)
        if self._edge:
            m = self._rs_in.process(x)
            yy = y[:m.shape[0]]
            eng.process_into(m, yy)
            out = self._rs_out.process(yy)
        else:
            eng.process_into(x, y)
            out = y
        # the output side is bounded too (clock drift between two devices)
        out_cap = (self.max_backlog_blocks + 2) * b
        queued = ring_read_available(self._out.idx)
        if queued > out_cap:
            k = ring_discard(self._out.idx, queued - b)
            counters["dropped_blocks"] += max(1, k // b)
        if ring_write(self._out.buf, self._out.idx, out) < out.shape[0]:
            self.stats["output_overflows"] += 1
        if self._dev["monitor"] is not None:
            p = eng.params
            mon = self._ymon[:out.shape[0]]
            g = 10.0 ** (p.monitor_gain_db / 20.0) if p.monitor else 0.0
            np.multiply(out, np.float32(g), out=mon)
            queued = ring_read_available(self._mon.idx)
            if queued > out_cap:
                ring_discard(self._mon.idx, queued - b)
            ring_write(self._mon.buf, self._mon.idx, mon)
        self.stats["worker_blocks"] += 1
        return True

    def _collect(self) -> None:
        """Move callback counters into ``stats`` and ``engine.counters['xruns']`` (worker side)."""
        cb = self._cb.copy()
        d = cb - self._cb_seen
        if not d.any():
            return
        self._cb_seen[:] = cb
        s = self.stats
        s["input_status_flags"] += int(d[_IN_STATUS])
        s["output_status_flags"] += int(d[_OUT_STATUS] + d[_MON_STATUS])
        s["input_overflows"] += int(d[_IN_OVERFLOW])
        s["output_underflows"] += int(d[_OUT_UNDERFLOW])
        s["monitor_underflows"] += int(d[_MON_UNDERFLOW])
        self.engine.counters["xruns"] += int(d[_IN_STATUS] + d[_OUT_STATUS] + d[_MON_STATUS] + d[_IN_OVERFLOW]
                                             + d[_OUT_UNDERFLOW])

    # ------------------------------------------------------------------ streams
    def _open_streams(self) -> None:
        sd = _sounddevice()
        b, rate = self.block, self.rate
        di, do, dm = self._dev["input"], self._dev["output"], self._dev["monitor"]
        n_in = self._in_channels(di)
        self._ch_sel = -1 if self.channel is None else int(self.channel)
        _to_mono(np.zeros((4, n_in), np.float32), self._ch_sel, self._cb_mono[:4])
        common = dict(samplerate=rate, blocksize=b, dtype="float32", latency=self.device_latency)
        streams = []
        try:
            if self.duplex and di is not None and do is not None and di == do:
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
            if dm is not None:
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

    def _close_streams(self) -> None:
        for s in self._streams:
            try:
                s.stop()
            finally:
                s.close()
        self._streams = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveRunner":
        """Allocate, warm up, open the streams and start the worker (and the file clock)."""
        with self._lock:
            if self.running:
                return self
            self._allocate()
            if self.engine.counters["blocks"] == 0:
                # first use: load every kernel and code path once, so the first real block is on time
                # (silence in a stream that has not started yet: only shifts where it starts)
                w = np.zeros(self._x.shape[0], np.float32)
                self.engine.process_into(w, w.copy())
            self._stop.clear()
            self.finished.clear()
            self.error = None
            self._threads = [threading.Thread(target=self._worker, name="rtvc-worker", daemon=True)]
            if self.input_file is not None or self._dev["output"] is None:
                self._threads.append(threading.Thread(target=self._file_clock, name="rtvc-file-clock", daemon=True))
            for t in self._threads:
                t.start()
            try:
                self._open_streams()
            except BaseException:
                self._stop.set()
                for t in self._threads:
                    t.join()
                self._threads = []
                raise
            self.running = True
            return self

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
                t.join(timeout=5.0)
            self._threads = []
        self._collect()
        return True

    def stop(self) -> None:
        """Stop streams and threads (idempotent); write the output file if there is one."""
        with self._lock:
            if not self._halt():
                return
            if self.output_file is not None:
                from .wavio import write_audio

                y = np.concatenate(self._sink) if self._sink else np.zeros(0, np.float32)
                write_audio(self.output_file, y, self.rate)

    def restart_dead_streams(self) -> bool:
        """Reopen the streams if PortAudio stopped one on its own (a host API error after an
        xrun); return whether it did. Call it from a control thread now and then (``rtvc run``
        does, every 50 ms). Counted in ``stats['stream_restarts']``."""
        if not self.running or all(bool(getattr(st, "active", True)) for st in self._streams):
            return False
        with self._lock:
            if not self._halt():
                return False
        self.start()
        self.stats["stream_restarts"] += 1
        return True

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
        """Telemetry + counters + runner stats + devices (JSON-ready)."""
        return {**self.engine.telemetry(), "runner": dict(self.stats), "devices": self.devices,
                "block_ms": self.block_ms, "block": self.block, "max_backlog_blocks": self.max_backlog_blocks,
                "buffering_bound_ms": self.buffering_bound_ms,
                "stream_latency_ms": {k: 1000.0 * v for k, v in self.stream_latency_s.items()}}
