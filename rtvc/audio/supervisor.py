"""Supervision: dead or stalled device streams are closed and reopened with backoff, a worker
process that died is restarted, and every fault is reported in one place.

The :class:`Supervisor` runs a thread per start of the runner. It reads only the rings' callback
counters and the streams' own state; what it does about a fault (reopen the streams, restart
the worker, save the speaker memory on time) it is handed as functions, and what it counts
(stream restarts, device losses, reconnect attempts, worker restarts) and the stream state are
its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from ..errors import RtvcError
from ..telemetry import RUNNER_STATS, Counter
from .rings import Rings

__all__ = ["Supervisor", "FaultLog", "START_TIMEOUT_S"]

START_TIMEOUT_S = 5.0
"""A device stream that has not called back this long after opening counts as dead."""
_log = logging.getLogger("rtvc.audio")


class FaultLog:
    """The latest fault reports, ``{"t_s", "kind", "message"}`` (device lost / back, worker, file
    errors), each also logged; :attr:`last` is the newest as ``"kind: message"``."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, keep: int = 50) -> None:
        self.clock = clock
        self.t0 = clock()
        self.items: deque[dict[str, Any]] = deque(maxlen=keep)
        self.last: str | None = None

    def add(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        _log.log(level, "%s", message)
        self.items.append({"t_s": round(self.clock() - self.t0, 3), "kind": kind, "message": message})
        self.last = f"{kind}: {message}"


class Supervisor:
    """Watches the device streams of a runner while it runs; see :meth:`watch`.

    :attr:`state` is ``"running"``, ``"reconnecting"`` (a device is gone; retrying with backoff)
    or ``"stopped"``; :attr:`stats` counts ``stream_restarts``, ``device_losses``,
    ``reconnect_attempts`` and ``worker_restarts``.
    """

    TICK_S = 0.05

    def __init__(self, *, stall_timeout_s: float, faults: FaultLog) -> None:
        self.stall_timeout_s = float(stall_timeout_s)
        self.faults = faults
        self.state = "stopped"
        self.stats = {k: 0 for k in RUNNER_STATS}
        self._restarts_reported = 0

    def restarted(self) -> bool:
        """Whether the streams were reopened since the last call (a run loop warns once)."""
        n = self.stats["stream_restarts"]
        changed = n != self._restarts_reported
        self._restarts_reported = n
        return changed

    def start(self, streams: Any, rings: Rings, **kw: Any) -> threading.Thread:
        """Start :meth:`watch` in its thread (``rtvc-supervisor``); the state is ``running``."""
        t = threading.Thread(target=self.watch, name="rtvc-supervisor", daemon=True, args=(streams, rings), kwargs=kw)
        self.state = "running"
        t.start()
        return t

    def watch(self, streams: Any, rings: Rings, *, roles: dict[str, bool], stop: threading.Event,
              lock: threading.Lock, reopen: Callable[[], None], worker_dead: Callable[[], bool],
              respawn: Callable[[], bool], tick: Callable[[float], None], describe: Callable[[], str]) -> None:
        """The supervisor thread, until ``stop``.

        A stream is dead when it says it is inactive (``streams.dead()``), or when its callback
        count has not moved for ``stall_timeout_s`` of this thread's own wall time (a stall of
        this thread itself, e.g. behind the GIL, restarts the measurement rather than counting).
        A freshly opened stream gets ``START_TIMEOUT_S`` for its first callback (PulseAudio takes
        a second or two to start a capture stream). Then the streams are closed and ``reopen()``
        is tried with backoff (0.25 s doubling to 4 s) under ``lock``. ``roles``: which roles a
        device plays (``input``, ``output``, ``monitor``); ``worker_dead()`` / ``respawn()``: a
        worker process that died is restarted under ``lock`` (``respawn()`` says whether it tried); ``tick(now)`` runs every tick (the speaker
        memory's save clock); ``describe()`` names the devices in the fault messages."""
        names = ("input", "output", "monitor")

        def calls() -> list[int]:
            t = rings.totals()
            return [int(t[i, Counter.CALLBACKS]) for i in range(3)]

        opened = last = time.monotonic()
        seen = calls()
        at_open = list(seen)
        still_since = {k: last for k in range(3)}
        backoff, next_try = 0.25, 0.0
        while not stop.wait(self.TICK_S):
            now = time.monotonic()
            starved = now - last > max(0.2, self.stall_timeout_s / 2)
            last = now
            if worker_dead() and lock.acquire(timeout=0.5):
                try:
                    if not stop.is_set() and respawn():
                        self.stats["worker_restarts"] += 1
                finally:
                    lock.release()
            tick(now)
            if self.state == "running":
                if not streams.streams:
                    continue
                c = calls()
                reason = streams.dead()
                for k, name in enumerate(names):
                    if not roles[name] or reason is not None:
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
                if not lock.acquire(timeout=0.5):
                    continue
                try:
                    if stop.is_set():
                        return
                    streams.close(abort=True)
                    self.stats["device_losses"] += 1
                    self.state = "reconnecting"
                    self.faults.add("device_lost", f"{reason}; {describe()}: reopening with backoff")
                finally:
                    lock.release()
                backoff, next_try = 0.25, now + 0.25
            elif self.state == "reconnecting" and now >= next_try:
                if not lock.acquire(timeout=0.5):
                    continue
                try:
                    if stop.is_set():
                        return
                    self.stats["reconnect_attempts"] += 1
                    try:
                        reopen()
                    except RtvcError as e:
                        next_try = time.monotonic() + backoff
                        if backoff >= 1.0:
                            _log.info("still waiting for the audio device (%s); next try in %.2f s", e, backoff)
                        backoff = min(4.0, backoff * 2)
                        continue
                    self.stats["stream_restarts"] += 1
                    self.state = "running"
                    self.faults.add("device_back", f"audio resumed on {describe()} after "
                                    f"{self.stats['reconnect_attempts']} attempt(s) in total")
                    opened = last = time.monotonic()
                    seen = calls()
                    at_open = list(seen)
                    still_since = {k: last for k in still_since}
                finally:
                    lock.release()
