"""The live runner: an engine on devices and/or files, composed of the audio package's pieces.

Threads and who owns what::

    audio callbacks (streams)         block worker (thread or process)   file clock / writer threads
    -------------------------         --------------------------------   ---------------------------
    device -> input ring  (write)     input ring (read) -> engine        file -> input ring
    output ring (read) -> device      -> output ring / monitor ring      output ring -> file / null
                                                                         supervisor: stream health

:class:`LiveRunner` only composes: it resolves a :class:`~rtvc.audio.devices.DeviceSet`, allocates
the rings and starts the block worker where :class:`~rtvc.audio.config.RunnerConfig` says
(:class:`~rtvc.audio.home.WorkerHome`: a thread, or a worker process), the :class:`~rtvc.audio.files.FileClock`
and :class:`~rtvc.audio.files.FileWriter` for the sides a file replaces, the
:class:`~rtvc.audio.streams.StreamSet` and the :class:`~rtvc.audio.supervisor.Supervisor`, and
stops them in reverse. Its telemetry is what those pieces count, merged
(:func:`rtvc.telemetry.merge`) into the engine's.

Never creep: the worker reads fixed blocks; when more than ``max_backlog_blocks`` blocks wait it
drops the oldest (``dropped_blocks``). A device output ring is trimmed to its margin, so the
delay through the runner returns to its target after any disturbance. ``buffer_age_ms`` is the
audio held in the rings after each block.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from typing import Any, Callable

from ..errors import ConfigError, DeviceError, RtvcError
from ..resampling import SUPPORTED_RATES
from ..telemetry import TelemetryPart
from .config import RunnerConfig
from .devices import DeviceSet
from .files import FileClock, FileSide
from .home import WorkerHome
from .rings import Rings
from .streams import StreamOptions, StreamSet
from .supervisor import FaultLog, Supervisor

__all__ = ["LiveRunner"]


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
    config
        A :class:`~rtvc.audio.config.RunnerConfig`; or its fields as keyword arguments.
    clock
        Monotonic seconds for the thread-home block worker's margin timing (tests move time with
        their own).
    """

    def __init__(self, engine: Any, *, input: int | str | None = None, output: int | str | None = None,
                 monitor: int | str | None = None, rate: int | None = None, config: RunnerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError(f"give a RunnerConfig or its options, not both ({sorted(options)})")
        self.config = cfg = config or RunnerConfig(**options)
        self.engine = engine
        self.clock = clock
        self.rate = int(rate or engine.config.device_rate)
        self.worker_home: str | None = None
        """Where the block worker runs now: ``"process"`` or ``"thread"`` (``None`` before start)."""
        self.devices_set = DeviceSet.resolve({"input": input, "output": output, "monitor": monitor},
                                             backend=cfg.backend, channel=cfg.channel,
                                             input_file=cfg.input_file is not None, output_file=cfg.file_output)
        self.devices_set.check(self.rate)
        self.faults_log = FaultLog()
        self.files = FileSide(cfg.input_file, cfg.output_file, clocked=cfg.input_file is not None or cfg.file_output,
                              rate=self.rate, block=self.block, loop=cfg.loop, realtime=cfg.realtime,
                              fault=self.faults_log.add)
        self.supervisor = Supervisor(stall_timeout_s=cfg.stall_timeout_s, faults=self.faults_log)
        self.home = WorkerHome(engine, cfg, faults=self.faults_log, on_failure=self._failed, clock=clock)
        self.streams: StreamSet | None = None
        self._tuning = _InterpreterTuning(freeze_gc=cfg.freeze_gc, switch_interval_ms=cfg.switch_interval_ms)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.finished = threading.Event()
        """Set when a non-looping input file has been played and its tail flushed, or the worker failed."""
        self.error: Exception | None = None
        """What stopped the worker, if it failed (the run loop reports it)."""
        self.file_error: str | None = None
        """Set by :meth:`stop` when the output file could not be written completely (disk full)."""
        self.running = False
        self._lock = threading.Lock()  # serialises start/stop/set_devices/reconnects (never taken by audio threads)
        engine.add_source(self.telemetry_part)

    # ------------------------------------------------------------------ configuration
    @property
    def devices(self) -> dict[str, Any]:
        """Current input / output / monitor device names (or file / null) and the rate in Hz."""
        names = self.devices_set.names(input_file=self.config.input_file, output_file=self.config.output_file)
        return {**names, "rate": self.rate}

    @property
    def block(self) -> int:
        """Host block in samples at the device rate (what the worker processes at a time)."""
        return max(1, int(round(self.rate * self.config.block_ms / 1000.0)))

    @property
    def device_block(self) -> int:
        """Frames per device callback (0: the host chooses); the rings decouple it from :attr:`block`."""
        if self.config.device_block_ms is None:
            return self.block
        return max(0, int(round(self.rate * self.config.device_block_ms / 1000.0)))

    @property
    def margin_blocks(self) -> float:
        """The output margin now (blocks): the block worker's, or the worker process's last report."""
        return self.home.margin_blocks

    @property
    def buffering_bound_ms(self) -> float:
        """Most audio the runner itself holds in steady state, in ms: the input backlog before
        the oldest blocks are dropped (``max_backlog_blocks + 1``) plus the output ring at its
        widest (one block being written + the largest output margin + one block of jitter).
        Device buffers and the algorithmic latency come on top."""
        cfg = self.config
        return (cfg.max_backlog_blocks + 3 + cfg.margin_max_blocks) * self.block * 1000.0 / self.rate

    @property
    def target_buffer_age_ms(self) -> float:
        """Buffer age the runner steers to: the block just written, the output margin, one block
        of callback jitter and one block of input arriving while the worker computes. After an
        overload burst the age returns below this (the oldest input is dropped)."""
        return (3.0 + self.margin_blocks) * self.block * 1000.0 / self.rate

    @property
    def stream_state(self) -> str:
        """``"running"``, ``"reconnecting"`` (a device is gone; retrying with backoff) or ``"stopped"``."""
        return self.supervisor.state

    @property
    def faults(self) -> Any:
        """The latest fault reports: ``{"t_s", "kind", "message"}`` (device lost / back, file errors)."""
        return self.faults_log.items

    @property
    def stream_latency_s(self) -> dict[str, float]:
        return dict(self.streams.latency_s) if self.streams is not None else {"input": 0.0, "output": 0.0}

    # ------------------------------------------------------------------ telemetry
    @property
    def stats(self) -> dict[str, int]:
        """Runner statistics: the block workers' (:data:`~rtvc.telemetry.WORKER_STATS`) and the
        supervisor's (restarts, losses, reconnects); a copy."""
        return {**self.home.stats(), **self.supervisor.stats}

    def telemetry_part(self) -> TelemetryPart:
        """This runner's share of the engine telemetry (merged by the engine, see :func:`rtvc.telemetry.merge`)."""
        gauges = {**self.home.gauges(target_buffer_age_ms=self.target_buffer_age_ms),
                  "stream_state": self.supervisor.state, "last_fault": self.faults_log.last}
        if self.home.priority is not None:
            gauges["worker_priority"] = self.home.priority
        return TelemetryPart(self.home.counts(), gauges)

    # ------------------------------------------------------------------ allocation
    def allocate(self) -> Rings:
        """Make the rings (and, in the thread home, the block worker) for a start. ``start``
        calls it; a test may call it alone and drive the thread-home worker with :meth:`step`."""
        cfg, d = self.config, self.devices_set
        self.worker_home = WorkerHome.choose(cfg.worker, any_device=d.any_device)
        rings = self.home.allocate(self.worker_home, rate=self.rate, block=self.block, device_out=d.output is not None,
                                   monitor=d.monitor is not None)
        self.streams = StreamSet(d, rings, rate=self.rate, wake_fd=self.home.wake_fd,
                                 options=StreamOptions(callback=cfg.callback, latency=cfg.device_latency,
                                                       device_block=self.device_block, block=self.block,
                                                       duplex=cfg.duplex, rt_priority=cfg.rt_priority))
        return rings

    def _failed(self, e: Exception) -> None:
        """The worker stopped (any thread): the run loop reports ``error`` and ends."""
        self.error = e
        self.finished.set()

    # ------------------------------------------------------------------ driving the thread home by hand
    def step(self) -> bool:
        """Process one block if one is waiting (thread home; see :meth:`BlockWorker.step`)."""
        if self.home.block_worker is None:
            raise ConfigError("step() drives the thread-home worker; this runner's worker runs in its own process")
        return self.home.block_worker.step()

    def collect(self) -> None:
        """Count what the callbacks counted since the last call (thread home; :meth:`BlockWorker.collect`)."""
        if self.home.block_worker is not None:
            self.home.block_worker.collect()

    def devices_text(self) -> str:
        try:
            d = self.devices
        except RtvcError:
            d = self.devices_set.as_dict()
        return self.devices_set.text(d)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveRunner":
        """Allocate, warm up, open the streams and start the worker, supervisor, file clock and
        file writer threads. An output file is created here (and written while running)."""
        cfg = self.config
        with self._lock:
            if self.running:
                return self
            self.allocate()
            if self.worker_home == "process":
                try:
                    self.home.start_process()  # imports, loads the voice and warms up there
                except BaseException:
                    self.home.release()
                    raise
            elif self.engine.counters["blocks"] == 0:
                # compile every kernel and code path once in a throwaway engine, so the first real
                # block is on time and this engine's stream starts at sample 0
                self.engine.warm_up()
            self.files.open(self.rate)
            self._stop.clear()
            self.finished.clear()
            self.error = None
            self._threads = []
            if self.home.block_worker is not None:
                self._threads.append(threading.Thread(target=self.home.run_thread, args=(self._stop,),
                                                      name="rtvc-worker", daemon=True))
            flush = FileClock.flush_blocks(self.engine.latency_samples(), self.block, cfg.max_backlog_blocks)
            self._threads += self.files.threads(self.home.rings, stop=self._stop, finished=self.finished,
                                                wake_fd=self.home.wake_fd, drain_output=self.devices_set.output is None,
                                                flush_blocks=flush)
            for t in self._threads:
                t.start()
            try:
                assert self.streams is not None
                self.streams.open()
            except BaseException:
                self._stop.set()
                for t in self._threads:
                    t.join()
                self._threads = []
                self.home.stop()
                raise
            self._tuning.apply()
            self._threads.append(self._supervise())
            self.running = True
            return self

    def _supervise(self) -> threading.Thread:
        d, engine, streams = self.devices_set, self.engine, self.streams
        home_thread = not self.home.in_process
        assert streams is not None

        def tick(now: float) -> None:
            if home_thread:  # the thread home: this engine hears the speaker (the worker saves its own)
                engine.save_speaker_if_due(now)

        return self.supervisor.start(
            self.streams, self.home.rings, roles={"input": d.input is not None, "output": d.output is not None,
                                             "monitor": d.monitor is not None},
            stop=self._stop, lock=self._lock,
            reopen=lambda: streams.reopen(block=self.block, worker_elsewhere=self.home.in_process),
            worker_dead=lambda: self.home.dead() and self.error is None, respawn=self.home.respawn, tick=tick,
            describe=self.devices_text)

    def _halt(self) -> bool:
        """Close the streams and join the threads; return whether anything was running."""
        if not self.running:
            return False
        self.running = False
        try:
            if self.streams is not None:
                self.streams.close()
        finally:
            self._stop.set()
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join(timeout=5.0)
            self._threads = []
        self.supervisor.state = "stopped"
        self.home.stop()  # a worker process saves its engine's speaker memory as it ends
        self.engine.save_speaker()  # the thread home's engine; the process home's heard nothing itself (a no-op)
        self.home.close_wake()
        self._tuning.restore()
        return True

    def stop(self) -> None:
        """Stop streams and threads (idempotent); finish the output file if there is one.

        Never raises for a file problem: :attr:`file_error` (also logged, and in
        :attr:`faults`) says what could not be written; everything written before is kept.
        """
        with self._lock:
            if not self._halt():
                return
            err = self.files.close()
            if err is not None:
                self.file_error = err
                self.faults_log.add("output_file", err, logging.ERROR)

    def inject_stall(self, ms: float) -> None:
        """Fault injection for benchmarks and tests: the worker's next block first waits ``ms``
        (an overload burst, as a slow model or a busy machine would cause), wherever it runs."""
        self.home.inject_stall(ms)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the worker process (``None`` when the worker is a thread or stopped)."""
        return self.home.pid

    def restart_dead_streams(self) -> bool:
        """Whether the supervisor reopened the streams since the last call (the run loop prints
        a warning). Dead or stalled streams are detected and reopened by the supervisor thread,
        with backoff, while the runner runs; see :attr:`stream_state` and :attr:`faults`."""
        return self.supervisor.restarted()

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
        new_rate = int(rate) if rate is not None else self.rate
        if new_rate not in SUPPORTED_RATES:
            raise DeviceError(f"device rate {new_rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
        if new_rate != self.rate and self.files.writer is not None:
            raise DeviceError(f"the device rate cannot change from {self.rate} to {new_rate} Hz while writing "
                              f"{str(self.config.output_file)!r}; stop first")
        new = self.devices_set.changed(input=input, output=output, monitor=monitor)
        new.check(new_rate)
        old = (self.devices_set, self.rate)
        with self._lock:
            was_running = self._halt()
        self.devices_set = new
        self._set_rate(new_rate)
        if was_running:
            try:
                self.start()
            except RtvcError:
                # the new devices passed the check but would not open: go back to the old ones
                self.devices_set = old[0]
                self._set_rate(old[1])
                self.start()
                raise
        return self.devices

    def _set_rate(self, rate: int) -> None:
        self.rate = rate
        self.files.set_rate(rate, self.block)

    def __enter__(self) -> "LiveRunner":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        """Telemetry + counters + runner stats + devices + faults (JSON-ready)."""
        w, cfg = self.files.writer, self.config
        out = {**self.engine.telemetry(), "runner": self.stats, "devices": self.devices,
               "block_ms": cfg.block_ms, "block": self.block, "max_backlog_blocks": cfg.max_backlog_blocks,
               "callback": cfg.callback, "backend": cfg.backend, "profile": cfg.profile,
               "stream_state": self.stream_state,
               "worker": self.worker_home, "worker_pid": self.home.pid,
               "buffering_bound_ms": self.buffering_bound_ms, "target_buffer_age_ms": self.target_buffer_age_ms,
               "out_margin_blocks": self.margin_blocks,
               "stream_latency_ms": {k: 1000.0 * v for k, v in self.stream_latency_s.items()},
               "faults": list(self.faults), "file_error": self.file_error}
        if w is not None:
            out["output_file_written_s"] = w.written_samples / w.rate
        return out


def _option(name: str) -> property:
    return property(lambda self: getattr(self.config, name), doc=f"``config.{name}`` (:class:`RunnerConfig`)")


for _name in ("block_ms", "channel", "loop", "input_file", "output_file", "null_output", "callback", "backend",
              "profile", "max_backlog_blocks", "out_margin_blocks", "device_latency", "duplex", "realtime",
              "stall_timeout_s", "device_block_ms", "worker", "rt_priority"):
    setattr(LiveRunner, _name, _option(_name))


class _InterpreterTuning:
    """While a runner runs: the garbage collector's view frozen (``gc.freeze`` after one collection,
    so a full collection walks only newer objects) and a shorter thread switch interval; restored
    at stop."""

    def __init__(self, *, freeze_gc: bool, switch_interval_ms: float | None) -> None:
        self.freeze_gc = freeze_gc
        self.switch_interval_ms = switch_interval_ms
        self._saved: float | None = None

    def apply(self) -> None:
        if self.freeze_gc:
            gc.collect()
            gc.freeze()
        if self.switch_interval_ms is not None and self._saved is None:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved, self.switch_interval_ms / 1000.0))

    def restore(self) -> None:
        if self._saved is not None:
            sys.setswitchinterval(self._saved)
            self._saved = None
