"""Where the block worker runs: a thread of the runner's process, or its own process.

:class:`WorkerHome` owns the rings a start uses (in process memory, or in shared memory for a
worker process), the wake-up descriptor, and the worker in either home: a
:class:`~rtvc.audio.worker.BlockWorker` run by a thread, or a
:class:`~rtvc.audio.process.WorkerProcess` (restarted when it dies). What the workers counted --
the :data:`~rtvc.telemetry.WORKER_STATS`, the xruns and dropped blocks, the buffer ages and the
output margin -- it hands out as one view (:meth:`WorkerHome.view`), the ended workers' counts
included.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, RtvcError
from ..telemetry import WORKER_STATS, WorkerSnapshot
from .config import RunnerConfig
from .process import Stall, WorkerExited, WorkerProcess, WorkerSpec
from .rings import Rings, SharedBlock, new_wake_fd, poll_interval_s
from .supervisor import FaultLog
from .worker import BlockWorker

__all__ = ["WorkerHome", "HOMES"]

HOMES = ("process", "thread")


class WorkerHome:
    """The block worker of a runner, in the home :meth:`allocate` chose.

    Parameters
    ----------
    engine
        The runner's engine (run by the thread home; the process home's worker builds its own
        from its config, registry and parameters, and this one forwards to it).
    config
        The runner's configuration (backlog, margins, realtime, priority).
    faults
        Where worker faults are reported.
    on_failure
        Called (from any thread) with the exception that stopped the worker.
    clock
        Monotonic seconds for the thread home's margin timing.
    """

    def __init__(self, engine: Any, config: RunnerConfig, *, faults: FaultLog,
                 on_failure: Callable[[Exception], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.config = config
        self.faults = faults
        self.on_failure = on_failure
        self.clock = clock
        self.kind: str | None = None
        """``"process"`` or ``"thread"`` (None before the first :meth:`allocate`)."""
        self.rings: Rings | None = None
        self.block_worker: BlockWorker | None = None
        """The block worker when it runs in this process (``kind == "thread"``)."""
        self.wake_fd: int | None = None
        self.priority: str | None = None
        """The scheduling priority the worker process got (None in the thread home)."""
        self._shm: SharedBlock | None = None
        self._wp: WorkerProcess | None = None
        self._spec: WorkerSpec | None = None
        self._remote: WorkerSnapshot | None = None  # the worker process's last report
        self._retired_stats = {k: 0 for k in WORKER_STATS}  # what the workers that ended counted
        self._retired_counts = {"dropped_blocks": 0, "xruns": 0}
        self._margin_mirror = config.out_margin_blocks

    # ------------------------------------------------------------------ allocation
    @staticmethod
    def choose(worker: str, *, any_device: bool) -> str:
        """The home for option ``worker`` (``auto``: a process when a device stream is open)."""
        if worker != "auto":
            return worker
        return "process" if any_device else "thread"

    def allocate(self, kind: str, *, rate: int, block: int, device_out: bool, monitor: bool) -> Rings:
        """Make the rings for a start in ``kind`` (and the thread home's block worker)."""
        cfg = self.config
        if kind not in HOMES:
            raise ConfigError(f"worker home {kind!r} is not known; expected one of {HOMES}")
        self.kind = kind
        ring_samples = 16 * block + 8192
        if kind == "process":
            self._shm = SharedBlock.create(ring_samples)
            rings = self._shm.rings
        else:
            rings = Rings.local(ring_samples)
        self.rings = rings
        self.close_wake()
        self.wake_fd = new_wake_fd()  # input callbacks wake the worker through it (Linux)
        # one block of silence in each output ring, so the first callback does not run dry
        rings.output.write(np.zeros(block, np.float32))
        rings.monitor.write(np.zeros(block, np.float32))
        self._retire()
        self._margin_mirror = cfg.out_margin_blocks
        self._spec = WorkerSpec(rate=rate, block=block, max_backlog_blocks=cfg.max_backlog_blocks,
                                margin_blocks=cfg.out_margin_blocks, margin_max_blocks=cfg.margin_max_blocks,
                                margin_base_blocks=cfg.out_margin_blocks, margin_step_blocks=cfg.margin_step_blocks,
                                margin_relax_s=cfg.margin_relax_s, device_out=device_out, monitor=monitor,
                                rt_priority=cfg.rt_priority, wake_fd=self.wake_fd)
        if kind == "thread":
            self.block_worker = BlockWorker(
                self.engine, rings, rate=rate, block=block, max_backlog_blocks=cfg.max_backlog_blocks,
                out_margin_blocks=cfg.out_margin_blocks, margin_max_blocks=cfg.margin_max_blocks,
                margin_step_blocks=cfg.margin_step_blocks, margin_relax_s=cfg.margin_relax_s,
                device_out=device_out, monitor=monitor, wake_fd=self.wake_fd, clock=self.clock)
        return rings

    def start_process(self) -> None:
        """Spawn the worker process on the current rings (start, or a restart after it died);
        on failure the shared memory is released."""
        assert self._shm is not None and self._spec is not None
        spec = replace(self._spec, margin_blocks=self._margin_mirror)
        wp = WorkerProcess(self._shm, self.engine, spec, on_report=self._on_report,
                           on_fault=lambda kind, msg: self.faults.add(kind, msg), on_error=self._on_error)
        wp.start()
        self._wp = wp
        self.priority = wp.info.get("priority")

    def _on_report(self, snap: WorkerSnapshot) -> None:
        """Mirror thread: what the worker process's block worker counted (its engine's numbers
        go to the engine's :class:`~rtvc.audio.process.EngineProxy`)."""
        self._remote = snap
        self._margin_mirror = float(snap.margin_blocks)

    def _on_error(self, e: Exception) -> None:
        if isinstance(e, WorkerExited):
            self.faults.add("worker", f"{e}; restarting it", logging.ERROR)  # the supervisor does
            return
        self.on_failure(e)

    # ------------------------------------------------------------------ running
    def run_thread(self, stop: threading.Event) -> None:
        """The thread home's worker thread, until ``stop``."""
        # without a wake descriptor, poll often (the native callback cannot take the GIL to wake it)
        assert self.block_worker is not None
        w = self.block_worker
        sleep_s = poll_interval_s(w.block, w.rate) if self.config.realtime else 0.0002
        try:
            w.run(stop.is_set, sleep_s=sleep_s)
        except Exception as e:  # the streams would play silence forever: stop and say why
            self.on_failure(e)

    def dead(self) -> bool:
        """The worker process ended without being asked to."""
        return self._wp is not None and not self._wp.alive()

    def respawn(self) -> bool:
        """The worker process died (killed, crashed): start another on the same rings; the
        streams never stopped, so audio resumes where the rings stand. Whether it tried."""
        if self._wp is None or self._wp.alive():
            return False
        self._wp.stop(timeout_s=0.5)
        self._wp = None
        self._retire()
        try:
            self.start_process()
        except RtvcError as e:
            self.on_failure(e)
            self.faults.add("worker", f"the audio worker process could not be restarted: {e}", logging.ERROR)
            return True
        self.faults.add("worker", f"audio worker process restarted (pid {self._wp.pid})")
        return True

    def stop(self) -> None:
        """Count what the thread home's callbacks counted last; stop the worker process (its final
        report is mirrored first) and free the rings' file."""
        if self.block_worker is not None:
            self.block_worker.collect()
        if self._wp is not None:
            self._wp.stop()
            self._wp = None
        self.release()

    def release(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm = None

    def close_wake(self) -> None:
        if self.wake_fd is not None:
            os.close(self.wake_fd)
            self.wake_fd = None

    def inject_stall(self, ms: float) -> None:
        """Fault injection: the worker's next block first waits ``ms``, wherever it runs."""
        if not (0.0 <= ms <= 10_000.0):
            raise ConfigError(f"stall of {ms} ms is out of range; expected 0..10000 ms")
        if self._wp is not None:
            self._wp.send(Stall(float(ms)))
        elif self.block_worker is not None:
            self.block_worker.stall_s = ms / 1000.0

    @property
    def pid(self) -> int | None:
        """Process id of the worker process (``None`` in the thread home or when stopped)."""
        return self._wp.pid if self._wp is not None else None

    @property
    def in_process(self) -> bool:
        """A worker process runs (it hears the speaker; this process's engine does not)."""
        return self._wp is not None

    # ------------------------------------------------------------------ what the workers counted
    @property
    def margin_blocks(self) -> float:
        """The output margin now (blocks): the block worker's, or the worker process's last report."""
        return self.block_worker.margin_blocks if self.block_worker is not None else self._margin_mirror

    def view(self) -> WorkerSnapshot | None:
        """The running (or last) worker's statistics, without the ended ones'."""
        w = self.block_worker
        if w is not None:
            return WorkerSnapshot(w.stats, w.telemetry(), w.margin_blocks)
        return self._remote

    def _retire(self) -> None:
        """The worker ended: what it counted stays counted (a new one starts from zero)."""
        view = self.view()
        if view is not None:
            for k, v in view.stats.items():
                self._retired_stats[k] += int(v)
            for k, v in view.part.counters.items():
                self._retired_counts[k] += int(v)
        self.block_worker = None
        self._remote = None

    def gauges(self, *, target_buffer_age_ms: float) -> dict[str, Any]:
        """The buffer ages the worker keeps (None before its first block) and the target."""
        out: dict[str, Any] = {"buffer_age_ms": None, "buffer_age_max_ms": None,
                               "target_buffer_age_ms": target_buffer_age_ms}
        view = self.view()
        if view is not None:
            out.update(view.part.gauges)
        return out

    def stats(self) -> dict[str, int]:
        """:data:`~rtvc.telemetry.WORKER_STATS` over every worker this home ran."""
        out = dict(self._retired_stats)
        view = self.view()
        if view is not None:
            for k, v in view.stats.items():
                out[k] += int(v)
        return out

    def counts(self) -> dict[str, int]:
        """Xruns and dropped blocks over every worker this home ran."""
        out = dict(self._retired_counts)
        view = self.view()
        if view is not None:
            for k, v in view.part.counters.items():
                out[k] += int(v)
        return out
