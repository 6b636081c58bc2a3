"""Telemetry: one counter enumeration for every audio callback, typed snapshots, one merge.

Who counts what (each number has one writer):

- the audio callbacks (compiled or Python) and the file clock count into one int64 array per
  stream role, in the native callback's layout (:data:`Counter`, from ``rtvc._native.pa_callback``);
- the block worker (:class:`~rtvc.audio.worker.BlockWorker`) turns their deltas into its
  :data:`WORKER_STATS`, the ``xruns`` and the ``dropped_blocks``, and keeps the buffer ages;
- the engine counts its own blocks, hops, resets and errors, and keeps levels and compute times;
- the runner counts stream restarts, device losses, reconnects and worker restarts, and keeps
  the stream state and the last fault.

Each of them hands out a snapshot; :func:`merge` is the one place that puts them together into
the JSON-ready telemetry that the status line, the control server and ``summary()`` read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Mapping

import numpy as np

from ._native.pa_callback import CNT, N_COUNTERS

__all__ = ["Counter", "Role", "ROLES", "N_COUNTERS", "WORKER_STATS", "RUNNER_STATS", "CallbackDeltas",
           "TelemetryPart", "EngineSnapshot", "WorkerSnapshot", "EngineStats", "merge", "lin_to_db"]

Counter = IntEnum("Counter", {name.upper(): slot for name, slot in CNT.items()})  # type: ignore[misc]
"""Slots of a stream role's counter array, shared with the compiled callbacks: ``CALLBACKS``,
``FRAMES``, ``IN_RING_FULL`` / ``OUT_RING_EMPTY`` (frames), ``*_EVENTS`` (callbacks that hit it),
``PA_*`` (the host's status flags)."""


class Role(IntEnum):
    """The three streams: capture, playback, monitor (rows of :meth:`rtvc.audio.rings.Rings.totals`)."""

    INPUT = 0
    OUTPUT = 1
    MONITOR = 2


ROLES = ("input", "output", "monitor")

WORKER_STATS = ("input_status_flags", "output_status_flags", "input_overflows", "output_underflows",
                "monitor_underflows", "output_overflows", "worker_blocks", "trimmed_samples", "callbacks",
                "missing_samples", "cuts", "forced_cuts", "startup_underflows")
"""The runner statistics the block worker keeps."""
RUNNER_STATS = ("stream_restarts", "device_losses", "reconnect_attempts", "worker_restarts")
"""The runner statistics the runner keeps itself."""


@dataclass(frozen=True)
class CallbackDeltas:
    """What the callbacks counted between two readings of the counters, ``(3, N_COUNTERS)``
    arrays indexed by :class:`Role` and :data:`Counter`."""

    d: np.ndarray

    def _status(self, role: Role) -> int:
        if role == Role.INPUT:
            return int(self.d[role, Counter.PA_INPUT_UNDERFLOW] + self.d[role, Counter.PA_INPUT_OVERFLOW])
        return int(self.d[role, Counter.PA_OUTPUT_UNDERFLOW] + self.d[role, Counter.PA_OUTPUT_OVERFLOW])

    @property
    def input_status(self) -> int:
        return self._status(Role.INPUT)

    @property
    def output_status(self) -> int:
        return self._status(Role.OUTPUT)

    @property
    def monitor_status(self) -> int:
        return self._status(Role.MONITOR)

    @property
    def input_overflows(self) -> int:
        return int(self.d[Role.INPUT, Counter.IN_RING_FULL_EVENTS])

    @property
    def output_underflows(self) -> int:
        return int(self.d[Role.OUTPUT, Counter.OUT_RING_EMPTY_EVENTS])

    @property
    def monitor_underflows(self) -> int:
        return int(self.d[Role.MONITOR, Counter.OUT_RING_EMPTY_EVENTS])

    @property
    def output_missing(self) -> int:
        """Frames the output callbacks lacked (what the output margin widens by)."""
        return int(self.d[Role.OUTPUT, Counter.OUT_RING_EMPTY])

    @property
    def callbacks(self) -> int:
        return int(self.d[:, Counter.CALLBACKS].sum())

    def any(self) -> bool:
        return bool(self.d.any())


STARTUP_SLOTS = (np.array([Role.OUTPUT, Role.MONITOR]),
                 np.array([Counter.PA_OUTPUT_UNDERFLOW, Counter.PA_OUTPUT_OVERFLOW, Counter.OUT_RING_EMPTY_EVENTS,
                           Counter.OUT_RING_EMPTY]))
"""The counters the output streams run up before the first block is written (rows, columns of
``np.ix_``): there is nothing to play yet, so none of them is an xrun."""


@dataclass(frozen=True)
class TelemetryPart:
    """One writer's share of the telemetry: counters (summed across parts) and gauges (the last
    part that names a gauge wins)."""

    counters: Mapping[str, int] = field(default_factory=dict)
    gauges: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSnapshot:
    """An engine's statistics at one moment, sent from the worker process to the runner's:
    its own counters, the compute times (ns) recorded since the last snapshot, the levels now
    (input, output, noise floor, gate threshold; linear), the whole run's levels (input peak,
    input sum of squares, output peak, output sum of squares, samples) and the seconds of speech
    its voices learn the speaker from."""

    counters: Mapping[str, int]
    times_ns: tuple[int, ...]
    levels: tuple[float, float, float, float]
    run_levels: tuple[float, ...]
    speaker_s: float


@dataclass(frozen=True)
class WorkerSnapshot:
    """A block worker's statistics at one moment: its :data:`WORKER_STATS`, its share of the
    engine telemetry (xruns, dropped blocks, buffer ages) and its output margin (blocks)."""

    stats: Mapping[str, int]
    part: TelemetryPart
    margin_blocks: float


def merge(own: TelemetryPart, *parts: TelemetryPart) -> TelemetryPart:
    """The one merge: counters of all parts added up, gauges of later parts over earlier ones."""
    counters = dict(own.counters)
    gauges = dict(own.gauges)
    for p in parts:
        for k, v in p.counters.items():
            counters[k] = counters.get(k, 0) + int(v)
        gauges.update(p.gauges)
    return TelemetryPart(counters, gauges)


def lin_to_db(x: float) -> float:
    return float(20.0 * math.log10(max(x, 1e-10)))


ENGINE_COUNTERS = ("blocks", "hops", "samples_in", "nonfinite_samples", "stage_resets", "stage_errors",
                   "dropped_blocks", "xruns", "commands_applied", "commands_coalesced", "limited_samples")
TIMING_WINDOW = 2048  # per-block compute times kept for p50/p99


class EngineStats:
    """An engine's statistics: its counters (:data:`ENGINE_COUNTERS`, written by the engine's
    audio thread), the compute time per block (a window of ``TIMING_WINDOW``), the levels now
    (``level_in``, ``level_out``, ``noise_floor``, ``gate_open``; linear) and over the whole run
    (``run``: input peak, input sum of squares, output peak, output sum of squares, samples).

    What runs around the engine adds its share through ``sources`` (callables returning a
    :class:`TelemetryPart`: a runner's xruns, dropped blocks, buffer ages, stream state) and,
    while the audio runs in a worker process, ``remote`` (the proxy of the worker's engine,
    whose levels and compute times :meth:`load` takes as these); :meth:`merged` is their sum.
    """

    def __init__(self) -> None:
        self.counters = {k: 0 for k in ENGINE_COUNTERS}
        self.times_ns = np.zeros(TIMING_WINDOW, np.int64)
        self.times_n = 0
        self.level_in = self.level_out = self.noise_floor = self.gate_open = 0.0
        self.run = np.zeros(5, np.float64)
        self.sources: list[Callable[[], TelemetryPart]] = []
        self.remote: Any = None

    def record_time(self, ns: int) -> None:
        self.times_ns[self.times_n % TIMING_WINDOW] = ns
        self.times_n += 1

    def snapshot(self, since: int, *, speaker_s: float) -> tuple[EngineSnapshot, int]:
        """The counters, levels, ``speaker_s`` and the compute times recorded after the ``since``-th
        (at most a window), for the runner's process; and the new ``since``."""
        n = self.times_n
        k = min(n - since, TIMING_WINDOW)
        times = tuple(int(self.times_ns[i % TIMING_WINDOW]) for i in range(n - k, n))
        return EngineSnapshot(counters=dict(self.counters), times_ns=times,
                              levels=(self.level_in, self.level_out, self.noise_floor, self.gate_open),
                              run_levels=tuple(self.run.tolist()), speaker_s=speaker_s), n

    def load(self, snap: EngineSnapshot) -> None:
        """Take a worker engine's levels and compute times as these (its counters stay its proxy's)."""
        for t in snap.times_ns:
            self.record_time(t)
        self.level_in, self.level_out, self.noise_floor, self.gate_open = snap.levels
        self.run[:] = snap.run_levels

    def detach(self) -> None:
        """The worker process ended: what its engine counted stays counted here."""
        if self.remote is not None:
            for k, v in self.remote.telemetry().counters.items():
                self.counters[k] = self.counters.get(k, 0) + int(v)
        self.remote = None

    def merged(self) -> TelemetryPart:
        parts = [src() for src in list(self.sources)]
        if self.remote is not None:
            parts.insert(0, self.remote.telemetry())
        return merge(TelemetryPart(self.counters, {"buffer_age_ms": None}), *parts)

    def compute_ms(self) -> tuple[float, float, float]:
        """Compute time per block over the window, ms: p50, p99, max (zeros before any)."""
        n = min(self.times_n, TIMING_WINDOW)
        t = np.sort(self.times_ns[:n]) / 1e6 if n else np.zeros(1)
        return float(np.percentile(t, 50)), float(np.percentile(t, 99)), float(t[-1])

    def levels_db(self) -> dict[str, float]:
        return {"input_level_dbfs": lin_to_db(self.level_in), "output_level_dbfs": lin_to_db(self.level_out),
                "noise_floor_dbfs": lin_to_db(self.noise_floor), "gate_open_dbfs": lin_to_db(self.gate_open)}

    def run_levels_db(self) -> dict[str, float]:
        """Peak and RMS of the input and of the output over the whole run, dBFS (-200 before any audio)."""
        peak_in, sq_in, peak_out, sq_out, n = self.run.tolist()
        n = max(n, 1.0)
        return {"input_peak_dbfs": lin_to_db(peak_in), "input_rms_dbfs": lin_to_db(math.sqrt(sq_in / n)),
                "output_peak_dbfs": lin_to_db(peak_out), "output_rms_dbfs": lin_to_db(math.sqrt(sq_out / n))}
