"""How a live runner runs: one frozen :class:`RunnerConfig`, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .devices import BACKENDS
from .streams import CALLBACKS

__all__ = ["RunnerConfig", "BLOCK_MS_RANGE", "PROFILES", "WORKERS"]

BLOCK_MS_RANGE = (2.5, 100.0)
WORKERS = ("auto", "process", "thread")
"""Where the block worker runs: ``process`` (its own interpreter), ``thread`` (the runner's
process) or ``auto`` (``process`` when a device stream is open, else ``thread``)."""
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

@dataclass(frozen=True)
class RunnerConfig:
    """Everything a :class:`~rtvc.audio.runner.LiveRunner` is told (the devices it starts on
    aside: ``set_devices`` changes those while it runs).

    Parameters
    ----------
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
        (:mod:`rtvc.audio.pulse`), no ALSA plugin in between; device specs are then sink /
        source names (or indices, or substrings), the callbacks always native.
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
        Frames per device callback in ms (default: ``block_ms``).
    switch_interval_ms
        While running, the interpreter's thread switch interval (``sys.setswitchinterval``;
        restored at stop). The worker takes the GIL back after every compiled kernel; with
        Python's default 5 ms, a busy Python thread can make it wait 5 ms each time. ``None``
        leaves it alone.
    worker
        Where the block worker (engine and ring bookkeeping) runs: ``"process"``, its own
        interpreter fed through shared-memory rings (:mod:`rtvc.audio.process`), so nothing in
        this process (a garbage collection, the control server, a busy Python thread) can hold
        a lock it needs; ``"thread"``, a thread of this process; ``"auto"`` (default):
        ``process`` when a device stream is open, ``thread`` for files only.
    rt_priority
        Worker process only: ``SCHED_FIFO`` priority to ask for (else nice -10 is tried);
        ``None`` leaves its priority alone. What it got is in ``summary()['worker_priority']``.
    freeze_gc
        At start, after the warm-up, collect once and move every object that exists then
        (numba's and NumPy's millions of import-time objects) to the garbage collector's
        permanent generation (``gc.freeze``). A full collection then walks only newer objects:
        measured here, a forced ``gc.collect()`` held the GIL for ~400 ms without it (the worker
        cannot run meanwhile) and a few ms with it.

    ``margin_step_blocks``, ``margin_max_blocks`` and ``margin_relax_s`` follow from the profile.
    """

    block_ms: float = 10.0
    channel: int | None = None
    input_file: Path | None = None
    loop: bool = False
    output_file: Path | None = None
    null_output: bool = False
    callback: str = "native"
    profile: str = "live"
    max_backlog_blocks: int | None = None
    out_margin_blocks: float | None = None
    device_latency: str | float | None = None
    duplex: bool = False
    realtime: bool = True
    stall_timeout_s: float = 2.0
    device_block_ms: float | None = None
    switch_interval_ms: float | None = 1.0
    freeze_gc: bool = True
    worker: str = "auto"
    rt_priority: int | None = 10
    backend: str = "portaudio"
    margin_step_blocks: float = field(init=False, default=1.0)
    margin_max_blocks: float = field(init=False, default=1.0)
    margin_relax_s: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not (BLOCK_MS_RANGE[0] <= self.block_ms <= BLOCK_MS_RANGE[1]):
            raise ConfigError(f"block size {self.block_ms} ms is out of range; expected "
                              f"{BLOCK_MS_RANGE[0]}..{BLOCK_MS_RANGE[1]} ms")
        if self.channel is not None and self.channel < 0:
            raise ConfigError(f"input channel {self.channel} is out of range; expected 0 or more (or none for a mixdown)")
        if self.output_file is not None and self.null_output:
            raise ConfigError("--output-file and --null-output exclude each other; give one")
        if self.callback not in CALLBACKS:
            raise ConfigError(f"callback {self.callback!r} is not known; expected one of {CALLBACKS}")
        if self.profile not in PROFILES:
            raise ConfigError(f"profile {self.profile!r} is not known; expected one of {tuple(PROFILES)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"audio backend {self.backend!r} is not known; expected one of {BACKENDS}")
        if self.backend == "pulse" and (self.callback != "native" or self.duplex):
            raise ConfigError("the pulse backend runs native callbacks only (no --callback python, no duplex)")
        if self.worker not in WORKERS:
            raise ConfigError(f"worker {self.worker!r} is not known; expected one of {WORKERS}")
        if self.rt_priority is not None and not (1 <= self.rt_priority <= 99):
            raise ConfigError(f"rt_priority {self.rt_priority} is out of range; expected 1..99 or none")
        prof = PROFILES[self.profile]
        backlog = prof["max_backlog_blocks"] if self.max_backlog_blocks is None else self.max_backlog_blocks
        margin = prof["out_margin_blocks"] if self.out_margin_blocks is None else self.out_margin_blocks
        if backlog < 1:
            raise ConfigError(f"max_backlog_blocks {backlog} is out of range; expected >= 1")
        if not (0.0 <= margin <= 16.0):
            raise ConfigError(f"out_margin_blocks {margin} is out of range; expected 0..16")
        if not (0.05 <= self.stall_timeout_s <= 60.0):
            raise ConfigError(f"stall_timeout_s {self.stall_timeout_s} is out of range; expected 0.05..60 s")
        if self.switch_interval_ms is not None and not (0.05 <= self.switch_interval_ms <= 100.0):
            raise ConfigError(f"switch_interval_ms {self.switch_interval_ms} is out of range; expected 0.05..100 ms")
        if not self.realtime and (self.input_file is None or not (self.output_file is not None or self.null_output)):
            raise ConfigError("realtime=False (--fast) needs an input file and an output file or null output")
        step = float(prof["margin_step_blocks"])
        by_ms = math.ceil(prof["margin_max_ms"] / self.block_ms / step) * step
        fix = object.__setattr__
        fix(self, "block_ms", float(self.block_ms))
        fix(self, "max_backlog_blocks", int(backlog))
        fix(self, "out_margin_blocks", float(margin))
        fix(self, "device_latency", prof["device_latency"] if self.device_latency is None else self.device_latency)
        fix(self, "stall_timeout_s", float(self.stall_timeout_s))
        fix(self, "margin_step_blocks", step)
        fix(self, "margin_max_blocks", max(float(margin), float(prof["margin_max_blocks"]), by_ms))
        fix(self, "margin_relax_s", prof["margin_relax_s"])
        for name in ("input_file", "output_file"):
            v = getattr(self, name)
            if v is not None:
                fix(self, name, Path(v))

    @property
    def file_output(self) -> bool:
        """The output goes to a file or to null, not to a device."""
        return self.output_file is not None or self.null_output
