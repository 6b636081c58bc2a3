"""The block worker: fixed blocks from the input ring through the engine into the output ring(s).

:class:`BlockWorker` is the per-block job: drop the oldest input past the backlog, resample at
the device edge, run the engine, trim the output ring to its margin (widened after underflows,
narrowed after calm), and count what the callbacks counted (xruns). It runs in a thread of the
runner's process or in the worker process (:mod:`rtvc.audio.process`); the runner chooses.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from .._native.splice import find_cut, splice
from ..resampling import StreamResampler
from ..telemetry import STARTUP_SLOTS, WORKER_STATS, CallbackDeltas, TelemetryPart
from .rings import Ring, Rings

__all__ = ["BlockWorker", "WIDEN_GRACE_S", "RECUR_S"]

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
    wake_fd
        An eventfd the input side signals (:func:`~rtvc.audio.rings.new_wake_fd`): :meth:`run`
        sleeps on it instead of polling the ring.
    clock
        Monotonic seconds (``time.monotonic``; tests pass their own to move time).

    What it counts is its own: :attr:`stats` (:data:`~rtvc.telemetry.WORKER_STATS`), the xruns
    and dropped blocks, the buffer ages and the output margin, handed out by :meth:`telemetry`.
    """

    def __init__(self, engine: Any, rings: Rings, *, rate: int, block: int, max_backlog_blocks: int,
                 out_margin_blocks: float, margin_max_blocks: float, device_out: bool, monitor: bool,
                 margin_step_blocks: float = 1.0, margin_relax_s: float | None = None,
                 base_margin_blocks: float | None = None, wake_fd: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
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
        self._last_underflow = clock()
        self.device_out = bool(device_out)
        self.monitor = bool(monitor)
        self.wake_fd = wake_fd
        self.stats = {k: 0 for k in WORKER_STATS}
        self.dropped_blocks = 0  # input blocks dropped (stale) and output blocks not written (ring over its cap)
        self.xruns = 0  # callback xruns: host status flags, input ring full, output ring empty
        self.buffer_age_ms: float | None = None  # audio held in the rings after the last block
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
        self._cb_seen = rings.totals()
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

    @property
    def target_buffer_age_ms(self) -> float:
        """Buffer age steered to: the block just written, the output margin, one block of
        callback jitter and one block of input arriving while the worker computes."""
        return (3.0 + self.margin_blocks) * self.block * 1000.0 / self.rate

    def telemetry(self) -> TelemetryPart:
        """This worker's share of the engine telemetry (:func:`rtvc.telemetry.merge`)."""
        return TelemetryPart({"dropped_blocks": self.dropped_blocks, "xruns": self.xruns},
                             {"buffer_age_ms": self.buffer_age_ms,
                              "buffer_age_max_ms": None if self.buffer_age_ms is None
                              else 1000.0 * self.age_max / self.rate,
                              "target_buffer_age_ms": self.target_buffer_age_ms})

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
        level = ring.read_available()
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
        and counted in :attr:`dropped_blocks`. A device output ring is kept near its margin by
        leaving samples out; :attr:`buffer_age_ms` is the audio held in both rings after the block.
        """
        if self.stall_s > 0.0:
            stall, self.stall_s = self.stall_s, 0.0
            time.sleep(stall)
        b = self.block
        eng = self.engine
        r_in, r_out, r_mon = self.rings.input, self.rings.output, self.rings.monitor
        avail = r_in.read_available()
        if avail < b:
            return False
        if self._widen_from is None:
            self._widen_from = self.clock() + WIDEN_GRACE_S
        if self._startup:
            self._absorb_startup()
            self._startup = False
        grown = max(0.0, self.margin_blocks - self.base_margin_blocks)
        if avail > (self.max_backlog_blocks + 1 + grown) * b:
            n_drop = ((avail - b) // b) * b
            r_in.discard(n_drop)
            self.dropped_blocks += n_drop // b
        behind = r_in.read_available() >= 2 * b
        self._catching_up, self._behind = behind or self._behind, behind
        x, y = self._x, self._y
        r_in.readinto(x)
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
        queued = r_out.read_available()
        if queued > out_cap:
            self.dropped_blocks += 1
        elif r_out.write(out) < out.shape[0]:
            self.stats["output_overflows"] += 1
        if self.monitor:
            p = eng.live_params  # the snapshot this block was processed with
            mon = self._ymon[:out.shape[0]]
            g = 10.0 ** (p.monitor_gain_db / 20.0) if p.monitor else 0.0
            np.multiply(out, np.float32(g), out=mon)
            mon = self._trim("mon", r_mon, mon)
            if r_mon.read_available() <= out_cap:
                r_mon.write(mon)
        age = r_in.read_available() + r_out.read_available()
        self.age_max = max(self.age_max, age)
        self.buffer_age_ms = 1000.0 * age / self.rate
        self.stats["worker_blocks"] += 1
        return True

    def _absorb_startup(self) -> None:
        """Before the first block: the output callbacks' underflows so far found a ring that had
        nothing to play yet (the device started before the input delivered a block). Count them
        in ``stats['startup_underflows']`` and leave them out of the xruns."""
        cb = self.rings.totals()
        d = CallbackDeltas(cb - self._cb_seen)
        self.stats["startup_underflows"] += d.output_underflows + d.monitor_underflows
        rows, cols = np.ix_(*STARTUP_SLOTS)
        self._cb_seen[rows, cols] = cb[rows, cols]

    def collect(self) -> None:
        """Turn what the callbacks counted since the last call into :attr:`stats` and :attr:`xruns`."""
        if self._startup:  # no block written yet
            self._absorb_startup()
        cb = self.rings.totals()
        d = CallbackDeltas(cb - self._cb_seen)
        if not d.any():
            self._relax()
            return
        self._cb_seen[:] = cb
        s = self.stats
        s["input_status_flags"] += d.input_status
        s["output_status_flags"] += d.output_status + d.monitor_status
        s["input_overflows"] += d.input_overflows
        s["output_underflows"] += d.output_underflows
        s["monitor_underflows"] += d.monitor_underflows
        s["callbacks"] += d.callbacks
        s["missing_samples"] += d.output_missing
        self.xruns += d.input_status + d.output_status + d.monitor_status + d.input_overflows + d.output_underflows
        for key, ring_short, device_short in (("out", d.output_underflows, d.output_status),
                                              ("mon", d.monitor_underflows, d.monitor_status)):
            if ring_short or device_short:  # measure the ring afresh, over a short window once caught up
                self._recheck[key] = True
                self._win[key][:3] = [1 << 62, 0, 0]  # and cut nothing still due: the ring just ran short
        if d.output_underflows:
            now = self.clock()
            self._last_underflow = now
            self._period_min = 1 << 62
            if self._widen_from is not None and now >= self._widen_from:
                self._widen(d.output_missing, now)
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
        now = self.clock()
        if now - self._last_underflow >= self.margin_relax_s:
            step_frames = self.margin_step_blocks * self.block
            n_steps = 1 if not self.device_out else int(self._period_min // step_frames) - 1
            if n_steps > 0:
                self.margin_blocks = max(self.base_margin_blocks,
                                         self.margin_blocks - n_steps * self.margin_step_blocks)
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
