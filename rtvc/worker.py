"""The audio worker: fixed blocks from the input ring through the engine into the output ring(s).

:class:`BlockWorker` is the per-block work (drop the oldest input past the backlog, resample at
the device edge, run the engine, trim the output ring to its margin, count callback xruns). It
runs in one of two homes, chosen by :class:`~rtvc.audio.LiveRunner` (``worker=``):

``thread``
    A thread of the runner's own process (files, tests, ``--worker thread``).
``process``
    Its own interpreter (:class:`WorkerProcess`, the default for live devices). The rings and
    the callback counters live in one shared-memory block (:class:`SharedBlock`) that both
    processes map: the PortAudio callbacks (in the runner's process, compiled, GIL-free) and the
    worker (in the child) meet only there, through the same fenced single-producer /
    single-consumer rings. Nothing the runner's process does -- a garbage collection, the control
    server, a model load, a Python thread spinning -- holds an interpreter lock the worker needs.
    Parameter snapshots, resets and speaker hand-overs go to the child through a pipe (the engine forwards them, see
    :meth:`rtvc.engine.Engine.attach_remote`); counters, gauges and compute times come back as
    snapshots every 50 ms and are mirrored into the runner's engine, so telemetry reads the same
    in both homes. The child raises its scheduling priority (``SCHED_FIFO`` where permitted,
    else a lower nice value) so a busy machine does not preempt it, and says which it got.

Threads and processes, process home::

    runner process                                   worker process
    --------------                                   --------------
    PortAudio callbacks: device <-> rings  <-shm->   worker thread: in ring -> engine -> out ring
    control server, hotkeys, run loop                control thread: parameter snapshots (pipe),
    mirror thread: snapshots -> engine telemetry      voice loads, snapshots back every 50 ms
"""

from __future__ import annotations

import gc
import logging
import math
import mmap
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._native.pa_callback import CNT, N_COUNTERS
from ._native.ring import ring_discard, ring_read, ring_read_available, ring_write
from ._native.splice import find_cut, splice
from .errors import ConfigError, DeviceError, RtvcError
from .resampling import StreamResampler

__all__ = ["BlockWorker", "SharedBlock", "WorkerProcess", "WorkerExited", "EngineProxy", "Rings", "WORKERS",
           "callback_counts",
           "WORKER_STATS", "new_wake_fd", "wake"]

WORKERS = ("auto", "process", "thread")
"""Where the block worker runs: ``process`` (its own interpreter), ``thread`` (the runner's
process) or ``auto`` (``process`` when a device stream is open, else ``thread``)."""

# callback counters (indices into the ``cb`` array): written only by the callbacks / file clock
(IN_STATUS, OUT_STATUS, IN_OVERFLOW, OUT_UNDERFLOW, MON_UNDERFLOW, MON_STATUS,
 IN_CALLS, OUT_CALLS, MON_CALLS, OUT_MISSING) = range(10)
N_CB = 10
"""``*_UNDERFLOW`` count callbacks that found the ring short, ``OUT_MISSING`` the frames the
output callbacks lacked (what the output margin widens by)."""
WORKER_STATS = ("input_status_flags", "output_status_flags", "input_overflows", "output_underflows",
                "monitor_underflows", "output_overflows", "worker_blocks", "trimmed_samples", "callbacks",
                "missing_samples", "cuts", "forced_cuts", "startup_underflows")
"""The runner statistics the block worker keeps (the rest are the runner's own)."""
_STARTUP_SLOTS = np.array([OUT_STATUS, OUT_UNDERFLOW, MON_UNDERFLOW, MON_STATUS, OUT_MISSING])
"""Callback counters that the output streams run up before the first block is written: there is
nothing to play yet, so none of them is an xrun; the ring underflows among them are counted in
``startup_underflows``, PortAudio's status flags and the missing frames of that time are dropped."""
REPORT_EVERY_S = 0.05
WAKE_TIMEOUT_S = 0.005
"""Longest wait on the wake descriptor (counters are collected and the stop flag read at least this often)."""
WIDEN_GRACE_S = 2.0
"""Underflows this soon after the first block do not widen the output margin."""
EPISODE_GAP_S, RECUR_S = 0.25, 60.0
"""Output underflows closer together than ``EPISODE_GAP_S`` are one episode (one shortfall) for
the margin; an episode within ``RECUR_S`` of the previous one is recurring jitter."""
TRIM_WINDOW_S, RECHECK_S = 0.5, 0.1
"""Output trimming measures the ring's lowest level over ``TRIM_WINDOW_S``; after an underflow,
over ``RECHECK_S`` once the worker has caught up (see ``BlockWorker._trim``)."""
CUT_FADE_S, CUT_MIN_CORR, CUT_QUIET, CUT_FORCE_S = 0.001, 0.9, 1e-3, 1.0
"""Output trimming (see ``BlockWorker._trim``): cross-fade length, the correlation a cut needs,
the RMS under which a block is quiet, how long a due cut waits for a good place."""
START_TIMEOUT_S = 60.0
"""Longest wait for a worker process to import, load its voice and warm up."""
_CTL_STOP, _CTL_LOOPS, _CTL_N = 0, 1, 8
_ROLES = ("input", "output", "monitor")
_log = logging.getLogger("rtvc.worker")


class WorkerExited(RuntimeError):
    """The worker process ended without being asked to (killed, crashed): the runner restarts it."""


def _pow2(n: int) -> int:
    return 1 << int(math.ceil(math.log2(max(2, n))))


class Ring:
    """A float32 SPSC ring (``buf``, ``idx``); the docstring of each user names its threads."""

    def __init__(self, buf: np.ndarray, idx: np.ndarray) -> None:
        self.buf = buf
        self.idx = idx


class Rings:
    """Everything the callbacks and the worker share: the input, output and monitor rings, the
    Python-callback / file-clock counters ``cb`` (int64, ``N_CB``), the native callback counters
    ``ncnt[role]`` (int64, ``N_COUNTERS``) and a small control array ``ctl`` (stop flag, loop
    count). Plain process memory (:meth:`local`) or a shared-memory block (:class:`SharedBlock`)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.input = Ring(arrays["in_buf"], arrays["in_idx"])
        self.output = Ring(arrays["out_buf"], arrays["out_idx"])
        self.monitor = Ring(arrays["mon_buf"], arrays["mon_idx"])
        self.cb = arrays["cb"]
        self.ncnt = {k: arrays[f"ncnt_{k}"] for k in _ROLES}
        self.ctl = arrays["ctl"]

    @staticmethod
    def layout(ring_samples: int) -> list[tuple[str, Any, int]]:
        """``(name, dtype, length)`` of every shared array, in order."""
        n = _pow2(ring_samples)
        return ([("in_buf", np.float32, n), ("in_idx", np.int64, 2), ("out_buf", np.float32, n), ("out_idx", np.int64, 2),
                 ("mon_buf", np.float32, n), ("mon_idx", np.int64, 2), ("cb", np.int64, N_CB)]
                + [(f"ncnt_{k}", np.int64, N_COUNTERS) for k in _ROLES] + [("ctl", np.int64, _CTL_N)])

    @classmethod
    def local(cls, ring_samples: int) -> "Rings":
        return cls({name: np.zeros(n, dt) for name, dt, n in cls.layout(ring_samples)})


class SharedBlock:
    """The :class:`Rings` in one shared-memory mapping (a file in ``/dev/shm`` where it exists).

    Every array starts on its own 64-byte cache line, so the two ends of a ring do not share
    one. The creator owns the file: :meth:`close` unlinks it.
    """

    ALIGN = 64

    def __init__(self, path: Path, ring_samples: int, *, create: bool) -> None:
        self.path = Path(path)
        self.ring_samples = int(ring_samples)
        self.owner = create
        spans, off = [], 0
        for name, dt, n in Rings.layout(ring_samples):
            spans.append((name, dt, n, off))
            off += -(-(n * np.dtype(dt).itemsize) // self.ALIGN) * self.ALIGN
        self.size = off
        mode = "w+b" if create else "r+b"
        with open(self.path, mode) as f:
            if create:
                f.truncate(self.size)
            self._mm = mmap.mmap(f.fileno(), self.size)
        arrays = {name: np.frombuffer(self._mm, dtype=dt, count=n, offset=o) for name, dt, n, o in spans}
        if create:
            for a in arrays.values():
                a[:] = 0
        self.rings = Rings(arrays)

    @classmethod
    def create(cls, ring_samples: int) -> "SharedBlock":
        d = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        fd, name = tempfile.mkstemp(prefix="rtvc-rings-", dir=d)
        os.close(fd)
        return cls(Path(name), ring_samples, create=True)

    def close(self) -> None:
        """Unmap (where no array view is left) and, for the creator, remove the file."""
        self.rings = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass  # a view is still alive (e.g. a stream not yet collected); the mapping goes with it
        if self.owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:  # Windows: a mapping that is still open keeps its file
                _log.info("could not remove the ring file %s yet: %s", self.path, e)


def new_wake_fd() -> int | None:
    """A non-blocking eventfd through which input callbacks wake the worker (None where the
    platform has none: the worker then polls the ring)."""
    if not hasattr(os, "eventfd"):
        return None
    try:
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError as e:
        _log.info("no eventfd (%s): the worker polls its input ring", e)
        return None


def wake(fd: int | None) -> None:
    """Signal the worker (Python callbacks and the file clock; the native callback does it in C)."""
    if fd is not None:
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass  # closed while stopping: nobody waits any more


def callback_counts(rings: Rings) -> np.ndarray:
    """Python-callback counters plus the native ones, in the ``cb`` layout (a copy)."""
    c = rings.cb.copy()
    ni, no, nm = rings.ncnt["input"], rings.ncnt["output"], rings.ncnt["monitor"]
    c[IN_STATUS] += ni[CNT["pa_input_underflow"]] + ni[CNT["pa_input_overflow"]]
    c[IN_OVERFLOW] += ni[CNT["in_ring_full_events"]]
    c[IN_CALLS] += ni[CNT["callbacks"]]
    c[OUT_STATUS] += no[CNT["pa_output_underflow"]] + no[CNT["pa_output_overflow"]]
    c[OUT_UNDERFLOW] += no[CNT["out_ring_empty_events"]]
    c[OUT_MISSING] += no[CNT["out_ring_empty"]]
    c[OUT_CALLS] += no[CNT["callbacks"]]
    c[MON_STATUS] += nm[CNT["pa_output_underflow"]] + nm[CNT["pa_output_overflow"]]
    c[MON_UNDERFLOW] += nm[CNT["out_ring_empty_events"]]
    c[MON_CALLS] += nm[CNT["callbacks"]]
    return c


class BlockWorker:
    """One block at a time: input ring -> (device-edge resampling) -> engine -> output ring(s).

    Parameters
    ----------
    engine
        The :class:`~rtvc.engine.Engine` (its ``config.device_rate`` may differ from ``rate``:
        the worker resamples at the device edge).
    rings
        The shared rings and counters; the worker is the consumer of ``input`` and the
        producer of ``output`` and ``monitor``.
    rate, block
        Device rate (Hz) and worker block (samples at ``rate``).
    max_backlog_blocks
        Input blocks allowed to wait before all but the newest are dropped, beyond the margin's
        growth (a device that stalled for as long as the margin covers delivers that much in
        one burst: it is needed, not late).
    out_margin_blocks, margin_max_blocks, margin_step_blocks, margin_relax_s
        Output margin (blocks) kept queued beyond what the device takes. After an output
        underflow it widens, up to ``margin_max_blocks``: by one ``margin_step_blocks`` for an
        isolated hiccup or an outage, by the frames the device lacked for recurring jitter (see
        :meth:`_widen`); after each ``margin_relax_s`` without one it narrows by a step if the
        ring kept a step of headroom, down to ``base_margin_blocks`` (default:
        ``out_margin_blocks``; ``margin_relax_s=None``: it never narrows).
        Underflows in the first ``WIDEN_GRACE_S`` after the first block (the device started
        before the pipeline had output) do not widen it.
    device_out, monitor
        Whether a device consumes the output ring (then it is trimmed to its margin) and
        whether a monitor ring is fed.
    stats
        The statistics dict to count into (:data:`WORKER_STATS` keys); a new one by default.
    wake_fd
        An eventfd the input side signals (:func:`new_wake_fd`): :meth:`run` sleeps on it
        instead of polling the ring.
    """

    def __init__(self, engine: Any, rings: Rings, *, rate: int, block: int, max_backlog_blocks: int,
                 out_margin_blocks: float, margin_max_blocks: float, device_out: bool, monitor: bool,
                 margin_step_blocks: float = 1.0, margin_relax_s: float | None = None,
                 base_margin_blocks: float | None = None, stats: dict[str, int] | None = None,
                 wake_fd: int | None = None) -> None:
        self.engine = engine
        self.rings = rings
        self.rate = int(rate)
        self.block = b = int(block)
        self.max_backlog_blocks = int(max_backlog_blocks)
        self.margin_blocks = float(out_margin_blocks)
        self.margin_max_blocks = float(margin_max_blocks)
        self.margin_step_blocks = float(margin_step_blocks)
        self.margin_relax_s = margin_relax_s
        self.base_margin_blocks = float(out_margin_blocks if base_margin_blocks is None else base_margin_blocks)
        self._last_underflow = time.monotonic()
        self.device_out = bool(device_out)
        self.monitor = bool(monitor)
        self.wake_fd = wake_fd
        self.stats = stats if stats is not None else {k: 0 for k in WORKER_STATS}
        for k in WORKER_STATS:
            self.stats.setdefault(k, 0)
        eng_rate = engine.config.device_rate
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
        self._cb_seen = callback_counts(rings)
        # a fresh start (the output ring holds at most the runner's one block of silence), not a
        # worker restarted on running streams: underflows before the first block are counted apart
        self._startup = int(rings.output.idx[0]) <= b
        self.age_max = 0
        self._widen_from: float | None = None  # monotonic time from which underflows widen the margin
        self._period_min = 1 << 62  # lowest pre-write output level since the last underflow / narrowing
        # underflow episodes: last underflow, start, margin before, frames missing, follows another
        self._ep_last, self._ep_start, self._ep_base, self._ep_missing, self._ep_recurs = -1e9, -1e9, 0.0, 0, False
        # output trimming: the lowest pre-write output level over a window of ~0.5 s (~0.1 s after an underflow)
        self.win_blocks = max(4, int(round(TRIM_WINDOW_S * self.rate / b)))
        self.recheck_blocks = min(self.win_blocks, max(4, int(round(RECHECK_S * self.rate / b))))
        self._recheck = {"out": False, "mon": False}  # a short window is open after an underflow
        self._behind = False  # the last block had another waiting behind it
        self._catching_up = False  # the block being processed is one of a backlog, or its last
        self._win = {"out": [1 << 62, 0, 0, 0], "mon": [1 << 62, 0, 0, 0]}  # [min level, blocks, pending, waited]
        self._fade = max(4, min(int(round(CUT_FADE_S * self.rate)), b // 4))
        self._force_blocks = max(1, int(round(CUT_FORCE_S * self.rate / b)))
        n_cut = 2 * max(b, self._y.shape[0]) + 16
        self._cut_buf = {"out": np.zeros(n_cut, np.float32), "mon": np.zeros(n_cut, np.float32)}
        self.stall_s = 0.0
        """Fault injection (benchmarks, tests): the next step first sleeps this long, as an
        overloaded machine or a slow model would make it."""
        self.publish_target()

    @property
    def target_buffer_age_ms(self) -> float:
        """Buffer age steered to: the block just written, the output margin, one block of
        callback jitter and one block of input arriving while the worker computes."""
        return (3.0 + self.margin_blocks) * self.block * 1000.0 / self.rate

    def publish_target(self) -> None:
        self.engine.gauges["target_buffer_age_ms"] = self.target_buffer_age_ms

    def _trim(self, key: str, ring: Ring, y: np.ndarray) -> np.ndarray:
        """The block to write into ``ring`` (producer side): ``y``, or ``y`` with samples cut
        out so that the ring's lowest level over the last window comes down to the output
        margin (latency never creeps).

        Less than half a block of excess is left alone. The cut is made where it is not heard
        (see ``native/splice.py``): a length between half and twice what is due where the block
        repeats itself (correlation >= ``CUT_MIN_CORR``: whole periods of a voiced sound), or
        anywhere in a quiet block (below ``CUT_QUIET`` RMS), cross-faded over ``CUT_FADE_S``;
        when neither comes for ``CUT_FORCE_S`` the cut is made anyway (``stats['forced_cuts']``).

        After an underflow (of the ring, or one the device reports) the silence that filled the gap
        delays everything behind it by as much; the worker's late blocks then raise the ring that
        far above its margin. So the window is
        restarted short (``recheck_blocks``, ~0.1 s) and opens only once the worker has caught up
        (while it works off a backlog, its last block included, the level is still climbing
        back), so the excess is cut within ~0.1 s instead of 0.5-1 s."""
        w = self._win[key]
        level = ring_read_available(ring.idx)
        recheck = self._recheck[key]
        if recheck and self._catching_up:
            w[0], w[1] = 1 << 62, 0
        else:
            if level < w[0]:
                w[0] = level
            w[1] += 1
        if key == "out" and level < self._period_min:
            self._period_min = level
        if w[1] >= (self.recheck_blocks if recheck else self.win_blocks):
            w[2] = max(0, w[0] - int(self.margin_blocks * self.block))
            w[0], w[1] = 1 << 62, 0
            self._recheck[key] = False
        due = w[2]
        fade = self._fade
        hi_max = y.shape[0] - fade
        if due < self.block // 2 or hi_max < 1:  # under half a block of excess is not worth a cut
            w[3] = 0
            return y
        lo = max(1, min(due, hi_max) // 2)
        hi = max(lo, min(2 * due, hi_max))
        s, r = find_cut(y, lo, hi, min(due, hi), fade)
        if r < CUT_MIN_CORR and float(np.dot(y, y)) >= CUT_QUIET ** 2 * y.shape[0]:  # not quiet either
            if w[3] < self._force_blocks:
                w[3] += 1
                return y
            s = min(due, hi_max)
            self.stats["forced_cuts"] += 1
        w[2] = max(0, due - s)
        w[3] = 0
        self.stats["trimmed_samples"] += s
        self.stats["cuts"] += 1
        out = self._cut_buf[key]
        m = splice(y, s, fade, out)
        return out[:m]

    def step(self) -> bool:
        """Process one block if one is waiting; return whether one was processed.

        When more than ``max_backlog_blocks`` blocks wait, all but the newest are dropped first
        and counted in ``engine.counters['dropped_blocks']``. A device output ring is kept near
        its margin by leaving samples out; ``engine.gauges['buffer_age_ms']`` is the audio held
        in both rings after the block.
        """
        if self.stall_s > 0.0:
            stall, self.stall_s = self.stall_s, 0.0
            time.sleep(stall)
        b = self.block
        eng = self.engine
        counters = eng.counters
        r_in, r_out, r_mon = self.rings.input, self.rings.output, self.rings.monitor
        avail = ring_read_available(r_in.idx)
        if avail < b:
            return False
        if self._widen_from is None:
            self._widen_from = time.monotonic() + WIDEN_GRACE_S
        if self._startup:
            self._absorb_startup()
            self._startup = False
        grown = max(0.0, self.margin_blocks - self.base_margin_blocks)
        if avail > (self.max_backlog_blocks + 1 + grown) * b:
            n_drop = ((avail - b) // b) * b
            ring_discard(r_in.idx, n_drop)
            counters["dropped_blocks"] += n_drop // b
        behind = ring_read_available(r_in.idx) >= 2 * b
        self._catching_up, self._behind = behind or self._behind, behind
        x, y = self._x, self._y
        ring_read(r_in.buf, r_in.idx, x)
        if self._edge:
            m = self._rs_in.process(x)
            yy = y[:m.shape[0]]
            eng.process_into(m, yy)
            out = self._rs_out.process(yy)
        else:
            eng.process_into(x, y)
            out = y
        if self.device_out:
            out = self._trim("out", r_out, out)
        # the output side is bounded too (clock drift between two devices, a stream that is gone)
        out_cap = (self.max_backlog_blocks + 2 + int(self.margin_blocks)) * b
        queued = ring_read_available(r_out.idx)
        if queued > out_cap:
            counters["dropped_blocks"] += 1
        elif ring_write(r_out.buf, r_out.idx, out) < out.shape[0]:
            self.stats["output_overflows"] += 1
        if self.monitor:
            p = eng.params
            mon = self._ymon[:out.shape[0]]
            g = 10.0 ** (p.monitor_gain_db / 20.0) if p.monitor else 0.0
            np.multiply(out, np.float32(g), out=mon)
            mon = self._trim("mon", r_mon, mon)
            if ring_read_available(r_mon.idx) <= out_cap:
                ring_write(r_mon.buf, r_mon.idx, mon)
        age = ring_read_available(r_in.idx) + ring_read_available(r_out.idx)
        self.age_max = max(self.age_max, age)
        g = eng.gauges
        g["buffer_age_ms"] = 1000.0 * age / self.rate
        g["buffer_age_max_ms"] = 1000.0 * self.age_max / self.rate
        self.stats["worker_blocks"] += 1
        return True

    def _absorb_startup(self) -> None:
        """Before the first block: the output callbacks' underflows so far found a ring that had
        nothing to play yet (the device started before the input delivered a block). Count them
        in ``stats['startup_underflows']`` and leave them out of the xruns."""
        cb = callback_counts(self.rings)
        d = cb - self._cb_seen
        self.stats["startup_underflows"] += int(d[OUT_UNDERFLOW] + d[MON_UNDERFLOW])
        self._cb_seen[_STARTUP_SLOTS] = cb[_STARTUP_SLOTS]

    def collect(self) -> None:
        """Move callback counters into ``stats`` and ``engine.counters['xruns']``."""
        if self._startup:  # no block written yet
            self._absorb_startup()
        cb = callback_counts(self.rings)
        d = cb - self._cb_seen
        if not d.any():
            self._relax()
            return
        self._cb_seen[:] = cb
        s = self.stats
        s["input_status_flags"] += int(d[IN_STATUS])
        s["output_status_flags"] += int(d[OUT_STATUS] + d[MON_STATUS])
        s["input_overflows"] += int(d[IN_OVERFLOW])
        s["output_underflows"] += int(d[OUT_UNDERFLOW])
        s["monitor_underflows"] += int(d[MON_UNDERFLOW])
        s["callbacks"] += int(d[IN_CALLS] + d[OUT_CALLS] + d[MON_CALLS])
        s["missing_samples"] += int(d[OUT_MISSING])
        xr = int(d[IN_STATUS] + d[OUT_STATUS] + d[MON_STATUS] + d[IN_OVERFLOW] + d[OUT_UNDERFLOW])
        self.engine.counters["xruns"] += xr
        for key, ring_short, device_short in (("out", OUT_UNDERFLOW, OUT_STATUS), ("mon", MON_UNDERFLOW, MON_STATUS)):
            if d[ring_short] or d[device_short]:  # measure the ring afresh, over a short window once caught up
                self._recheck[key] = True
                self._win[key][:3] = [1 << 62, 0, 0]  # and cut nothing still due: the ring just ran short
        if d[OUT_UNDERFLOW]:
            now = time.monotonic()
            self._last_underflow = now
            self._period_min = 1 << 62
            if self._widen_from is not None and now >= self._widen_from:
                self._widen(int(d[OUT_MISSING]), now)
        else:
            self._relax()

    def _widen(self, missing: int, now: float) -> None:
        """Widen the output margin to cover the frames the device lacked rather than stutter again.

        Underflows less than ``EPISODE_GAP_S`` apart are one episode. An episode that follows
        another within ``RECUR_S`` (the machine's jitter, recurring) makes the margin what it
        was before the episode plus the episode's shortfall, in whole steps (rounded, at least
        one); a first, isolated episode (a one-off hiccup) and a shortfall longer than the widest
        margin (an outage, not jitter) widen it by one step."""
        if now - self._ep_last > EPISODE_GAP_S:
            self._ep_recurs = now - self._ep_start <= RECUR_S
            self._ep_start = now
            self._ep_base, self._ep_missing = self.margin_blocks, 0
        self._ep_last = now
        self._ep_missing += missing
        step = self.margin_step_blocks
        n_steps = 1
        if self._ep_recurs and self._ep_missing <= self.margin_max_blocks * self.block:
            n_steps = max(1, int(self._ep_missing / (step * self.block) + 0.5))
        new = min(self.margin_max_blocks, self._ep_base + n_steps * step)
        if new > self.margin_blocks:
            self.margin_blocks = new
            self.publish_target()

    def _relax(self) -> None:
        """After ``margin_relax_s`` without an underflow, narrow the margin by every whole step the
        output ring did not use meanwhile but one: with ``L`` the lowest pre-write level of the
        period, by ``floor(L / step) - 1`` steps, so the ring keeps at least a step of headroom
        above the deepest dip it made. A ring that came within two steps of empty keeps its
        margin. Without a device reading the ring there is no level to go by: one step per
        period. So a margin widened by a burst is back within one period of calm, not one
        period per step."""
        if self.margin_relax_s is None or self.margin_blocks <= self.base_margin_blocks:
            return
        now = time.monotonic()
        if now - self._last_underflow >= self.margin_relax_s:
            step_frames = self.margin_step_blocks * self.block
            n_steps = 1 if not self.device_out else int(self._period_min // step_frames) - 1
            if n_steps > 0:
                self.margin_blocks = max(self.base_margin_blocks,
                                         self.margin_blocks - n_steps * self.margin_step_blocks)
                self.publish_target()
            self._last_underflow = now  # the next step waits another full period
            self._period_min = 1 << 62

    def run(self, stop: Callable[[], bool], *, sleep_s: float, loops: np.ndarray | None = None) -> None:
        """Collect and step until ``stop()``. When no block is waiting: wait on the wake
        descriptor (at most ``WAKE_TIMEOUT_S``), or without one sleep ``sleep_s``."""
        poller = None
        if self.wake_fd is not None:
            import select

            poller = select.poll()
            poller.register(self.wake_fd, select.POLLIN)
        timeout_ms = int(WAKE_TIMEOUT_S * 1000)
        while not stop():
            self.collect()
            if not self.step():
                if poller is None:
                    time.sleep(sleep_s)
                elif poller.poll(timeout_ms):
                    try:
                        os.eventfd_read(self.wake_fd)  # type: ignore[arg-type]
                    except OSError:
                        pass  # another read took it (none here) or it was closed while stopping
            if loops is not None:
                loops[0] += 1
        self.collect()


def poll_interval_s(block: int, rate: int) -> float:
    """How long the worker sleeps when no block waits and it has no wake descriptor (not on
    Linux): an eighth of a block, 0.2..1 ms."""
    return min(0.001, max(0.0002, block / rate / 8.0))


# ---------------------------------------------------------------------------- worker process
def raise_priority(rt_priority: int | None) -> str:
    """Raise the calling thread's scheduling priority (threads started later inherit it).

    ``SCHED_FIFO`` at ``rt_priority`` where permitted (root, CAP_SYS_NICE or an rtprio limit),
    else nice -10, else nothing; returns which, for telemetry."""
    if rt_priority is None:
        return "normal (not requested)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(rt_priority)))  # type: ignore[attr-defined]
        return f"SCHED_FIFO {int(rt_priority)}"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)  # type: ignore[attr-defined]
        return "nice -10"
    except (AttributeError, OSError):
        return "normal (no permission to raise it)"


def _child_main(spec: dict[str, Any], cmd: Any, rep: Any) -> None:
    """Entry point of the worker process (spawned: a fresh interpreter)."""
    from .engine import Engine
    from .params import Params

    send_lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with send_lock:
            try:
                rep.send(msg)
            except (OSError, EOFError, ValueError):
                pass  # the runner's process is gone; the stop check ends this one

    try:
        priority = raise_priority(spec["rt_priority"])
        shm = SharedBlock(spec["shm_path"], spec["ring_samples"], create=False)
        engine = Engine(spec["config"], registry=spec["registry"], params=spec["params"])
        engine.warm_up()
        worker = BlockWorker(engine, shm.rings, rate=spec["rate"], block=spec["block"],
                             max_backlog_blocks=spec["max_backlog_blocks"], out_margin_blocks=spec["margin_blocks"],
                             margin_max_blocks=spec["margin_max_blocks"], margin_step_blocks=spec["margin_step_blocks"],
                             margin_relax_s=spec["margin_relax_s"], base_margin_blocks=spec["margin_base_blocks"],
                             device_out=spec["device_out"], monitor=spec["monitor"], wake_fd=spec.get("wake_fd"))
    except BaseException as e:  # noqa: BLE001 - reported to the runner, which raises it
        send(("failed", type(e).__name__, str(e)))
        return
    ctl = shm.rings.ctl
    stop = threading.Event()
    parent = spec["parent_pid"]

    def should_stop() -> bool:
        return stop.is_set() or ctl[_CTL_STOP] != 0

    def snapshot(since: int) -> tuple[dict[str, Any], int]:
        snap, n = engine.snapshot(since)
        snap["stats"] = dict(worker.stats)
        snap["margin_blocks"] = worker.margin_blocks
        return snap, n

    def control() -> None:
        """Parameter snapshots in, telemetry snapshots out; ends the worker if the runner dies."""
        sent = 0
        next_report = time.monotonic()
        while not should_stop():
            try:
                ready = cmd.poll(REPORT_EVERY_S / 2)
                msg = cmd.recv() if ready else None
            except (EOFError, OSError):
                stop.set()
                break
            if msg is not None:
                try:
                    if msg[0] == "params":
                        engine.request(Params(**msg[1]))
                    elif msg[0] == "reset":
                        engine.reset()
                    elif msg[0] == "forget":
                        engine.forget_speaker()
                    elif msg[0] == "stall":
                        worker.stall_s = float(msg[1]) / 1000.0
                    elif msg[0] == "stop":
                        stop.set()
                except RtvcError as e:  # e.g. the model file changed between the two loads
                    send(("fault", "voice", f"the worker process could not apply {msg[0]}: {e}"))
            now = time.monotonic()
            engine.save_speaker_if_due(now)  # logs, never raises
            if now >= next_report:
                snap, sent = snapshot(sent)
                send(("report", snap))
                next_report = now + REPORT_EVERY_S
            if os.getppid() != parent:
                stop.set()

    gc.collect()
    gc.freeze()  # import-time objects leave the collector's view: a collection walks only new ones
    sys.setswitchinterval(0.0005)
    t = threading.Thread(target=control, name="rtvc-worker-control", daemon=True)
    t.start()
    send(("ready", {"pid": os.getpid(), "priority": priority}))
    try:
        worker.run(should_stop, sleep_s=poll_interval_s(worker.block, worker.rate), loops=ctl[_CTL_LOOPS:])
    except BaseException as e:  # noqa: BLE001 - the runner reports it and stops
        send(("error", type(e).__name__, str(e)))
    stop.set()
    t.join(timeout=2.0)
    engine.save_speaker()  # logs, never raises
    send(("report", snapshot(0)[0] | {"final": True}))
    send(("exit",))


_CHILD_CMD = "import sys; from rtvc.worker import child_entry; child_entry(sys.argv[1])"


def child_entry(address: str) -> None:
    """``python -c`` entry of the worker process: connect back (commands, then reports), take the
    spec, run. The authentication key comes in the environment, not on the command line."""
    from multiprocessing.connection import Client

    key = bytes.fromhex(os.environ.pop("RTVC_WORKER_KEY"))
    cmd = Client(address, authkey=key)
    rep = Client(address, authkey=key)
    spec = cmd.recv()
    _child_main(spec, cmd, rep)


class _Child:
    """The subset of ``multiprocessing.Process`` the runner uses, over a ``subprocess.Popen``."""

    def __init__(self, popen: Any) -> None:
        self._p = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self._p.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self._p.poll()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._p.wait(timeout)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: still running, as Process.join
            pass

    def kill(self) -> None:
        self._p.kill()


class EngineProxy:
    """The runner process's hand on the engine that runs in the worker process.

    Attached to the runner's engine (:meth:`rtvc.engine.Engine.attach`) while the worker runs: the
    engine validates a request and loads a new voice in the caller's thread as always, then hands
    the accepted snapshot, a reset or a speaker hand-over to this proxy, which sends it to the
    worker's engine; the worker's statistics come back through :meth:`receive`."""

    MIRRORED_GAUGES = ("buffer_age_ms", "buffer_age_max_ms", "target_buffer_age_ms", "speaker_s")

    def __init__(self, engine: Any, send: Callable[[tuple[Any, ...]], None]) -> None:
        self.engine = engine
        self.send = send
        self.base = dict(engine.counters)  # what the engine had counted itself: the worker's counts add to it

    def request(self, params: Any) -> None:
        self.send(("params", params.as_dict()))

    def reset(self) -> None:
        self.send(("reset",))

    def forget_speaker(self) -> None:
        self.send(("forget",))

    def receive(self, snap: dict[str, Any]) -> None:
        """A worker engine's snapshot becomes the runner's engine's statistics (mirror thread)."""
        self.engine.load_snapshot(snap, self.base, self.MIRRORED_GAUGES)


class WorkerProcess:
    """Runner side of a worker process: spawn, forward commands, mirror its snapshots.

    Parameters
    ----------
    shm
        The :class:`SharedBlock` holding the rings (created by the runner).
    engine
        The runner's engine: its requests are forwarded to the worker's engine and the
        worker's counters, gauges and compute times are mirrored into it.
    spec
        Everything else the worker needs (rate, block, backlog, margins, which rings a device
        reads, ``rt_priority``).
    on_report, on_fault, on_error
        Called from the mirror thread with a snapshot dict, ``(kind, message)``, and an
        exception (the worker failed; :class:`WorkerExited`: the process died).
    """

    def __init__(self, shm: SharedBlock, engine: Any, spec: dict[str, Any], *,
                 on_report: Callable[[dict[str, Any]], None], on_fault: Callable[[str, str], None],
                 on_error: Callable[[Exception], None]) -> None:
        self.shm = shm
        self.engine = engine
        self.spec = spec
        self.on_report, self.on_fault, self.on_error = on_report, on_fault, on_error
        self.info: dict[str, Any] = {}
        self._send_lock = threading.Lock()
        self._stopping = False
        self._proc: Any = None
        self.proxy: EngineProxy | None = None
        self._mirror: threading.Thread | None = None

    def _spawn(self, deadline: float) -> None:
        """Start ``python -c 'child_entry()'`` and accept its two connections (commands, reports).

        A fresh interpreter that imports only rtvc: unlike multiprocessing's spawn it never
        re-imports the caller's ``__main__``, so a script without a ``__main__`` guard works."""
        import subprocess
        from multiprocessing.connection import Listener

        family = "AF_PIPE" if sys.platform == "win32" else "AF_UNIX"
        key = os.urandom(32)
        lst = Listener(family=family, authkey=key)
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parent.parent)  # where `import rtvc` finds this rtvc
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["RTVC_WORKER_KEY"] = key.hex()
        fds = (self.spec["wake_fd"],) if self.spec.get("wake_fd") is not None else ()
        self._proc = _Child(subprocess.Popen([sys.executable, "-c", _CHILD_CMD, str(lst.address)], env=env,
                                             stdin=subprocess.DEVNULL, pass_fds=fds))
        conns: list[Any] = []

        def accept() -> None:
            try:
                for _ in range(2):
                    conns.append(lst.accept())
            except (OSError, EOFError):
                pass

        t = threading.Thread(target=accept, name="rtvc-worker-accept", daemon=True)
        t.start()
        while t.is_alive() and time.monotonic() < deadline and self._proc.is_alive():
            t.join(0.05)
        if len(conns) < 2:
            lst.close()  # ends a pending accept
            for c in conns:
                c.close()
            code = self._proc.exitcode
            self._kill()
            raise DeviceError("the audio worker process did not connect within its start time" if code is None
                              else f"the audio worker process exited with code {code} while starting")
        lst.close()
        self._cmd, self._rep = conns

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Spawn the worker and wait until it has loaded the voice and warmed up."""
        self.shm.rings.ctl[_CTL_STOP] = 0
        deadline = time.monotonic() + timeout_s
        self._spawn(deadline)
        spec = {**self.spec, "shm_path": str(self.shm.path), "ring_samples": self.shm.ring_samples,
                "config": self.engine.config, "registry": self.engine.registry, "params": self.engine.params,
                "parent_pid": os.getpid()}
        self._cmd.send(spec)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._rep.poll(min(left, 0.2)):
                if left <= 0 or not self._proc.is_alive():
                    code = self._proc.exitcode
                    self._kill()
                    raise DeviceError(f"the audio worker process did not start within {timeout_s:g} s" if code is None
                                      else f"the audio worker process exited with code {code} while starting")
                continue
            try:
                msg = self._rep.recv()
            except (EOFError, OSError):
                continue
            if msg[0] == "ready":
                self.info = msg[1]
                break
            if msg[0] == "failed":
                self._kill()
                if msg[1] in ("ModelError", "ConfigError"):
                    raise ConfigError(f"the audio worker process could not load the voice: {msg[2]}")
                raise DeviceError(f"the audio worker process failed to start: {msg[1]}: {msg[2]}")
        self.proxy = EngineProxy(self.engine, self.send)
        self.engine.attach(self.proxy)
        self._mirror = threading.Thread(target=self._mirror_loop, name="rtvc-worker-mirror", daemon=True)
        self._mirror.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def send(self, msg: tuple[Any, ...]) -> None:
        """Forward a command (``("params", dict)``, ``("reset",)``, ``("forget",)``) to the worker."""
        with self._send_lock:
            try:
                self._cmd.send(msg)
            except (OSError, ValueError) as e:
                raise RtvcError(f"the audio worker process is gone ({e}); the command was not applied") from e

    def _mirror_loop(self) -> None:
        while True:
            try:
                msg = self._rep.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "report":
                self.proxy.receive(msg[1])
                self.on_report(msg[1])
            elif kind == "fault":
                self.on_fault(msg[1], msg[2])
            elif kind == "error":
                self.on_error(RuntimeError(f"{msg[1]}: {msg[2]}"))
            elif kind == "exit":
                break
        if not self._stopping:
            self._proc.join(timeout=1.0)
            self.on_error(WorkerExited(f"the audio worker process exited unexpectedly (exit code {self._proc.exitcode})"))

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5.0)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to finish (it sends its final snapshot), wait, and kill it if it hangs."""
        self._stopping = True
        if self._proc is None:
            return
        self.shm.rings.ctl[_CTL_STOP] = 1
        self._proc.join(timeout=timeout_s)
        if self._proc.is_alive():
            _log.warning("the audio worker process did not stop within %.1f s; killing it", timeout_s)
            self._kill()
        if self._mirror is not None:
            self._mirror.join(timeout=2.0)  # the final snapshot is mirrored before detaching
        self.engine.attach(None)
        for c in (self._cmd, self._rep):
            try:
                c.close()
            except OSError:
                pass
