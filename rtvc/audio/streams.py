"""Device streams: the compiled GIL-free callbacks (PortAudio, or rtvc's libpulse client) and
sounddevice's Python callbacks (the fallback), opened and closed as one :class:`StreamSet`.

The callbacks only copy samples between the device buffers and the rings
(:class:`~rtvc.audio.rings.Rings`) and bump the rings' counters: no allocation, no locks, no
logging, no model calls. By default (``callback="native"``) the callback is the compiled
``rtvc._native.pa_callback`` registered with PortAudio directly (:class:`NativeStream`), so it
never takes the GIL: a garbage collection, the control server or a model load cannot delay it.
``callback="python"`` uses sounddevice's Python callback (:class:`PythonCallbacks`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .._native.channels import fan_out, to_mono
from .._native.pa_callback import make_control_block, pa_callback
from ..errors import DeviceError
from ..telemetry import Counter
from .devices import DeviceSet, load_sounddevice
from .rings import Ring, Rings, wake

__all__ = ["NativeStream", "PythonCallbacks", "StreamSet", "StreamOptions", "inheritable_priority", "CALLBACKS"]

CALLBACKS = ("native", "python")
"""``native``: the compiled GIL-free PortAudio callback; ``python``: sounddevice's Python callback."""
_log = logging.getLogger("rtvc.audio")


class NativeStream:
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
def inheritable_priority(rt_priority: int | None) -> Iterator[None]:
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


class PythonCallbacks:
    """sounddevice's Python callbacks over the rings (the fallback of the compiled ones): they
    write the input ring and read the output and monitor rings, and count into the rings'
    counters exactly where the compiled callback would. ``channel``: the input channel to take
    (-1: a mixdown). Each owns a scratch buffer: nothing is allocated per call."""

    def __init__(self, rings: Rings, *, channel: int = -1, wake_fd: int | None = None, frames_max: int = 8192) -> None:
        self.rings = rings
        self.channel = int(channel)
        self.wake_fd = wake_fd
        self._mono = [np.zeros(frames_max, np.float32) for _ in range(3)]
        self._in, self._out, self._mon = (rings.counts[k] for k in ("input", "output", "monitor"))
        # compile every signature these use before a stream starts
        to_mono(np.zeros((4, 2), np.float32), -1, self._mono[0][:4])
        fan_out(self._mono[0][:4], 1.0, np.zeros((4, 2), np.float32))

    def input(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        c = self._in
        c[Counter.CALLBACKS] += 1
        if status:
            c[Counter.PA_INPUT_UNDERFLOW if getattr(status, "input_underflow", False) else Counter.PA_INPUT_OVERFLOW] += 1
        mono = self._mono[0][:frames]
        to_mono(indata, self.channel, mono)
        if self.rings.input.write(mono) < frames:
            c[Counter.IN_RING_FULL_EVENTS] += 1
        wake(self.wake_fd)

    def _play(self, ring: Ring, c: np.ndarray, mono: np.ndarray, outdata: np.ndarray, frames: int, status: Any) -> None:
        c[Counter.CALLBACKS] += 1
        if status:
            c[Counter.PA_OUTPUT_UNDERFLOW if getattr(status, "output_underflow", False) else Counter.PA_OUTPUT_OVERFLOW] += 1
        got = ring.readinto(mono)
        if got < frames:
            mono[got:] = 0.0
            c[Counter.OUT_RING_EMPTY_EVENTS] += 1
            c[Counter.OUT_RING_EMPTY] += frames - got
        fan_out(mono, 1.0, outdata)

    def output(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._play(self.rings.output, self._out, self._mono[1][:frames], outdata, frames, status)

    def monitor(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._play(self.rings.monitor, self._mon, self._mono[2][:frames], outdata, frames, status)

    def duplex(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self.input(indata, frames, time_info, status)
        self.output(outdata, frames, time_info, None)


@dataclass(frozen=True)
class StreamOptions:
    """How a :class:`StreamSet` opens its streams: ``callback`` (``native``/``python``), the
    device ``latency`` hint (``"low"``, ``"high"`` or seconds), frames per callback
    (``device_block``, 0: the host chooses; ``block``: the worker's block), ``duplex`` (one
    full-duplex Python stream when input and output are one device) and ``rt_priority``."""

    callback: str = "native"
    latency: str | float = "low"
    device_block: int = 0
    block: int = 480
    duplex: bool = False
    rt_priority: int | None = None


class StreamSet:
    """The device streams of one :class:`~rtvc.audio.devices.DeviceSet` on one set of rings.

    :meth:`open` opens and starts them (DeviceError when they will not open; nothing stays
    open then), :meth:`close` stops and closes them; :attr:`streams` are the open ones (each has
    ``active`` and ``kind``), :attr:`latency_s` the input and output latencies they report.
    """

    def __init__(self, devices: DeviceSet, rings: Rings, *, rate: int, options: StreamOptions,
                 wake_fd: int | None) -> None:
        self.devices = devices
        self.rings = rings
        self.rate = int(rate)
        self.options = options
        self.wake_fd = wake_fd
        self.streams: list[Any] = []
        self.latency_s = {"input": 0.0, "output": 0.0}
        self.callbacks: PythonCallbacks | None = None

    def _ring(self, kind: str) -> Ring:
        return {"input": self.rings.input, "output": self.rings.output, "monitor": self.rings.monitor}[kind]

    def _latency_s(self, sd: Any, index: int, kind: str) -> float:
        lat = self.options.latency
        if isinstance(lat, (int, float)):
            return float(lat)
        info = sd.query_devices(index)
        return float(info[f"default_{lat}_{kind}_latency"])

    def _open_native(self, sd: Any, kind: str, index: int, channels: int, ch_sel: int) -> NativeStream:
        ring, cnt = self._ring(kind), self.rings.counts[kind]
        ctl = make_control_block(ring.buf, ring.idx, ring.buf, ring.idx, cnt, in_channels=channels,
                                 in_select=ch_sel, out_channels=channels,
                                 wake_fd=self.wake_fd if kind == "input" else None)
        return NativeStream(sd, kind=kind, device=index, channels=channels, rate=self.rate,
                            block=self.options.device_block,
                            latency=self._latency_s(sd, index, "input" if kind == "input" else "output"),
                            ctl=ctl, keep=(ring, cnt), realtime=self.options.rt_priority is not None)

    def _open_pulse(self, kind: str, name: str, channels: int, ch_sel: int) -> Any:
        from .pulse import PulseStream

        ring, cnt = self._ring(kind), self.rings.counts[kind]
        o = self.options
        ctl = make_control_block(ring.buf, ring.idx, ring.buf, ring.idx, cnt, in_channels=channels,
                                 in_select=ch_sel, out_channels=channels,
                                 wake_fd=self.wake_fd if kind == "input" else None, wake_min=o.block)
        lat, block = o.latency, o.device_block or o.block
        latency_s = float(lat) if isinstance(lat, (int, float)) else (None if lat == "low" else 4 * block / self.rate)
        return PulseStream(kind=kind, device=name, channels=channels, rate=self.rate, block=block,
                           ctl=ctl, keep=(ring, cnt), latency_s=latency_s)

    def open(self) -> None:
        """Open and start the streams. With the native callback and ``rt_priority``, the threads
        the audio libraries start meanwhile (libpulse's mainloop behind ALSA's ``pulse`` plugin
        moves every sample to and from the server) inherit ``SCHED_FIFO`` from this thread, raised
        for the duration; PortAudio's callback thread gets it by its own flag. They run one step
        above the worker (``rt_priority + 1``): they only move samples between the rings and the
        server (microseconds per block), so a worker block that takes long (a compute spike on a
        busy machine) must not hold them up, or the server runs dry although the ring has audio
        (an ALSA-level underrun)."""
        o = self.options
        raise_ = o.callback == "native" and o.rt_priority is not None
        with inheritable_priority(min(99, o.rt_priority + 1) if raise_ and o.rt_priority else None):
            self._open_now()

    def _open_now(self) -> None:
        sd = load_sounddevice()
        rate, o, devs = self.rate, self.options, self.devices
        di, do, dm = devs.input, devs.output, devs.monitor
        if not devs.any_device:
            self.streams = []
            return
        n_in = devs.input_channels()
        ch_sel = -1 if devs.channel is None else int(devs.channel)
        common = dict(samplerate=rate, blocksize=o.device_block, dtype="float32", latency=o.latency)
        streams: list[Any] = []
        try:
            if devs.backend == "pulse" or o.callback == "native":
                for kind, dev, ch in (("input", di, n_in), ("output", do, 1), ("monitor", dm, 1)):
                    if dev is None:
                        continue
                    s = (self._open_pulse(kind, str(dev), ch, ch_sel) if devs.backend == "pulse"
                         else self._open_native(sd, kind, dev, ch, ch_sel))
                    streams.append(s)
                    if kind != "monitor":
                        self.latency_s[kind] = s.latency
            else:
                cbs = self.callbacks = PythonCallbacks(self.rings, channel=ch_sel, wake_fd=self.wake_fd,
                                                       frames_max=max(8192, 4 * o.block))
                to_mono(np.zeros((4, n_in), np.float32), ch_sel, np.zeros(4, np.float32))
                if o.duplex and di is not None and do is not None and di == do:
                    s = sd.Stream(device=(di, do), channels=(n_in, 1), callback=cbs.duplex, **common)
                    streams.append(s)
                    self.latency_s = {"input": float(s.latency[0]), "output": float(s.latency[1])}
                else:
                    if di is not None:
                        s = sd.InputStream(device=di, channels=n_in, callback=cbs.input, **common)
                        streams.append(s)
                        self.latency_s["input"] = float(s.latency)
                    if do is not None:
                        s = sd.OutputStream(device=do, channels=1, callback=cbs.output, **common)
                        streams.append(s)
                        self.latency_s["output"] = float(s.latency)
                if dm is not None:
                    streams.append(sd.OutputStream(device=dm, channels=1, callback=cbs.monitor, **common))
            for s in streams:
                s.start()
        except Exception as e:
            for s in streams:
                try:
                    s.close()
                except Exception:
                    pass
            if isinstance(e, (sd.PortAudioError, ValueError)):
                raise DeviceError(f"cannot open the audio stream(s) {devs.as_dict()} at {rate} Hz: {e}") from e
            raise
        self.streams = streams

    def reopen(self, *, block: int, worker_elsewhere: bool) -> None:
        """After :meth:`close` (a device was lost): leave one block of output queued, as at start
        (both ends of the output rings are ours now, unless a worker process produces into
        them: its end is left alone), then :meth:`open` again."""
        for ring in (self.rings.output, self.rings.monitor):
            n = ring.read_available()
            if n > block:
                ring.discard(n - block)
            elif n < block and not worker_elsewhere:
                ring.write(np.zeros(block - n, np.float32))
        self.open()

    def close(self, *, abort: bool = False) -> None:
        for s in self.streams:
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
        self.streams = []

    def dead(self) -> str | None:
        """Why a stream stopped by itself (PortAudio or the server says it is inactive), or None."""
        reason = None
        for s in list(self.streams):
            try:
                alive = bool(getattr(s, "active", True))
            except Exception:  # closed under our feet by stop()/set_devices()
                alive = True
            if not alive:
                reason = f"the {getattr(s, 'kind', 'audio')} stream stopped (host API error or device gone)"
        return reason
