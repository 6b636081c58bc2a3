"""The streaming engine: device-rate blocks of any size in, the same number of samples out.

Data path (one direction)::

    x (device rate) -> sanitize (non-finite -> 0, counted) -> resample to the model rate
      -> fixed hops of HOP samples: input gain -> voice stage (+ dry delay line) -> mix
         -> look-ahead noise gate (threshold raised above the tracked noise floor)
         -> output gain / mute (ramped)
      -> resample to the device rate -> output FIFO (pre-filled) -> y

Every hop is a pure function of absolute input positions, so the output does not depend on
the host block size, and ``rtvc convert`` (offline) runs exactly this code.

Latency: the output FIFO starts with ``prefill`` zeros, the smallest count for which it never
runs dry at any block size (block size 1 is the worst case: it is computed by counting). The
algorithmic latency is ``prefill + stage_latency * device_rate / model_rate`` device samples:
a click at input sample ``n`` through a neutral voice peaks at output ``n + latency``.

Threads: ``process`` runs on one worker thread. Control requests (``request``/``update``) may
come from any thread: they are validated and voice models are loaded in the caller's thread,
then handed over through a bounded queue and applied at the next block boundary. A voice
that adapts to the speaker (a neural voice's F0, timbre and warp statistics) learns the speaker
from the engine's speaker history (:class:`~rtvc.speaker.SpeakerHistory`: the last ``HISTORY_S``
the noise gate let through) when it loads (``stage.prime``), so switching voices mid-session is
not a cold start. With ``EngineConfig.speaker_memory`` the history outlives the session (see
:mod:`rtvc.speaker`). :meth:`Engine.forget_speaker` is the hand-over: someone else takes the
microphone, the history and the memory file are dropped and the active voice starts learning
afresh (crossfaded).

When the audio runs in a worker process (:mod:`rtvc.worker`), this engine still validates
requests and loads voices, and a :class:`~rtvc.worker.EngineProxy` attached with :meth:`attach`
carries the accepted commands to the worker's engine and its statistics back.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ._native.gate import gate_gains, noise_floor_step
from ._native.mix import all_finite, apply_gain_ramp, hop_mix, sanitize, soft_limit
from ._native.ring import ring_read, ring_write
from .errors import ConfigError, ControlError
from .params import Params
from .resampling import SUPPORTED_RATES, StreamResampler
from .speaker import SPEAKER_SAVE_EVERY_S, SpeakerHistory
from .telemetry import EngineSnapshot, TelemetryPart, merge
from .types import HOP, MODEL_RATE, NEURAL_DEVICES, Audio
from .voices import VoiceInfo, VoiceRegistry

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineConfig", "HopConstants", "derive", "gains"]

CROSSFADE_HOPS = 4  # 20 ms voice-switch crossfade
TIMING_WINDOW = 2048  # per-block compute times kept for p50/p99
WARMUP_BLOCKS = 3  # left out of the compute statistics
LIMIT_KNEE = 0.95  # output soft limiter: identity below, tanh knee to 1.0 above
# noise floor under the gate (``gate_floor_margin_db``): the smallest input RMS (smoothed over 40 ms)
# of the last 12 x 0.25 s (a held note longer than that counts as noise), reported after 0.5 s; the
# gate's peak detector then needs the floor + margin to open. The raised threshold never exceeds
# -26 dBFS, so a wrong floor (continuous music) cannot shut out a voice
FLOOR_SMOOTH_S = 0.040
FLOOR_SUBWINDOW_S = 0.25
FLOOR_SUBWINDOWS = 12
FLOOR_MIN_SUBWINDOWS = 2
FLOOR_THRESHOLD_CAP = 10.0 ** (-26.0 / 20.0)
FLOOR_STATE_START = (-1.0, np.inf, 0.0, 0.0, 0.0)  # noise_floor_step's state before the first hop
# clicks (``gate_confirm_ms``): an onset that falls this far under its own peak within the confirm
# time is a click (a key, a tap), not a voice; the gate stays shut (see native/gate.py: gate_gains)
CLICK_DROP = 10.0 ** (-20.0 / 10.0)  # hop power
# ... except within this long after the gate's hold ran out: the pauses between a speaker's phrases
# (a word's onset there is not held back; key clicks in such a pause pass as they did before the test)
CLICK_GRACE_S = 1.0


@dataclass(frozen=True)
class EngineConfig:
    device_rate: int = 48_000
    model_rate: int = MODEL_RATE
    hop: int = HOP
    max_block: int = 8192  # process() splits longer inputs into chunks of this size
    queue_size: int = 64
    neural_device: str = "cpu"  # where neural voices run: 'cpu', 'cuda' or 'auto' (converter.select_providers)
    # a WAV of the speech the last session heard (``Engine.save_speaker``); the history starts from it
    speaker_memory: str | None = None
    speaker_save_every_s: float = SPEAKER_SAVE_EVERY_S

    def __post_init__(self) -> None:
        if self.neural_device not in NEURAL_DEVICES:
            raise ConfigError(f"neural device {self.neural_device!r}; expected one of {NEURAL_DEVICES}")
        if self.device_rate not in SUPPORTED_RATES:
            raise ConfigError(f"device rate {self.device_rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
        if self.model_rate != MODEL_RATE:
            raise ConfigError(f"model rate {self.model_rate} Hz is not supported; expected {MODEL_RATE}")
        if not (16 <= self.hop <= 1024):
            raise ConfigError(f"hop {self.hop} samples is out of range; expected 16..1024")
        if not (1 <= self.max_block <= 1 << 16):
            raise ConfigError(f"max_block {self.max_block} is out of range; expected 1..65536")
        if self.speaker_memory is not None and not (isinstance(self.speaker_memory, str) and self.speaker_memory):
            raise ConfigError(f"speaker_memory {self.speaker_memory!r}; expected a file path or None")
        if not (isinstance(self.speaker_save_every_s, (int, float)) and self.speaker_save_every_s > 0):
            raise ConfigError(f"speaker_save_every_s {self.speaker_save_every_s!r}; expected seconds > 0")


def _db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _lin_to_db(x: float) -> float:
    return float(20.0 * math.log10(max(x, 1e-10)))


@dataclass(frozen=True)
class HopConstants:
    """What a hop needs from a parameter snapshot, computed once per snapshot (:func:`derive`)."""

    params: Params
    gains: tuple[float, float, float, float]  # target linear gains: input, wet mix, output, (unused)
    threshold: float  # gate threshold, linear
    attack_step: float  # gate gain step per sample while opening
    release_step: float  # ... while closing
    hold: int  # samples the gate stays open after the level falls
    attack: int  # attack in samples
    floor_margin: float  # linear factor over the noise floor (0: off)
    confirm_hops: int  # hops an onset must last to count as a voice (0: no click test)


def gains(p: Params) -> tuple[float, float, float, float]:
    """Linear input gain, wet mix, output gain (0 when muted), and a zero, for snapshot ``p``."""
    out = 0.0 if p.mute else _db_to_lin(p.output_gain_db)
    wet = 0.0 if p.bypass else p.mix
    return _db_to_lin(p.input_gain_db), wet, out, 0.0


def derive(p: Params, *, model_rate: int, hop: int) -> HopConstants:
    """The per-hop constants of snapshot ``p`` at ``model_rate`` Hz with ``hop``-sample hops."""
    sr = model_rate
    attack_n = max(1.0, p.gate_attack_ms * sr / 1000.0)
    margin = _db_to_lin(p.gate_floor_margin_db) if p.gate_floor_margin_db > 0.0 else 0.0
    return HopConstants(p, gains(p), _db_to_lin(p.gate_threshold_db), 1.0 / attack_n,
                        1.0 / max(1.0, p.gate_release_ms * sr / 1000.0), int(p.gate_hold_ms * sr / 1000.0),
                        int(attack_n), margin, int(math.ceil(p.gate_confirm_ms * sr / 1000.0 / hop - 1e-9)))


class _Active:
    """A loaded voice: its description, stage and stage state."""

    __slots__ = ("info", "stage", "state")

    def __init__(self, info: VoiceInfo, stage: Any) -> None:
        self.info = info
        self.stage = stage
        self.state = stage.init_state()


class Engine:
    """Streaming voice engine. See the module docstring for the data path and latency."""

    def __init__(self, config: EngineConfig | None = None, *, registry: VoiceRegistry | None = None,
                 params: Params | None = None) -> None:
        self.config = cfg = config or EngineConfig()
        self.registry = registry or VoiceRegistry()
        self.hop = cfg.hop
        self._rs_in = StreamResampler(cfg.device_rate, cfg.model_rate, max_chunk=cfg.max_block)
        self._rs_out = StreamResampler(cfg.model_rate, cfg.device_rate, max_chunk=cfg.hop)
        self.prefill = self._compute_prefill()
        # output FIFO (device rate)
        per_hop_out = cfg.hop * self._rs_out.up // self._rs_out.down + 2
        cap = 1 << int(math.ceil(math.log2(self.prefill + cfg.max_block + 4 * per_hop_out + 64)))
        self._fifo = np.zeros(cap, np.float32)
        self._fifo_idx = np.zeros(2, np.int64)
        self._xin = np.zeros(cfg.max_block, np.float32)
        self._acc = np.zeros(cfg.hop, np.float32)
        self._acc_n = 0
        self._dry = np.zeros(1 << 14, np.float32)  # dry delay line (model rate), >1 s
        self._dry_w = 0
        self._gbuf = np.zeros(1 << 14, np.float32)  # gate gain delay line
        self._g = np.zeros(cfg.hop, np.float32)
        self._gate_st = np.zeros(7, np.float64)  # gate_gains' state (see native/gate.py)
        self._floor_st = np.array(FLOOR_STATE_START)  # noise floor tracker (see native/gate.py)
        self._floor_mins = np.zeros(FLOOR_SUBWINDOWS, np.float64)
        self._floor_hops = max(1, int(round(FLOOR_SUBWINDOW_S * cfg.model_rate / cfg.hop)))
        self._floor_smooth = 1.0 - math.exp(-cfg.hop / (FLOOR_SMOOTH_S * cfg.model_rate))
        self._noise_floor = 0.0
        self._gate_open = 0.0  # the threshold the gate used in the last hop (linear; 0 before the first)
        self._hop_buf = np.zeros(cfg.hop, np.float32)
        self.speaker = SpeakerHistory(model_rate=cfg.model_rate, hop=cfg.hop, memory=cfg.speaker_memory,
                                      save_every_s=cfg.speaker_save_every_s)
        self._wet = np.zeros(cfg.hop, np.float32)
        self._y = np.zeros(cfg.hop, np.float32)
        self._ramp = (np.arange(1, cfg.hop + 1, dtype=np.float32) / cfg.hop)
        self._env_decay = math.exp(-1.0 / (0.010 * cfg.model_rate))  # gate level detector: 10 ms decay
        self._click_grace = int(CLICK_GRACE_S * cfg.model_rate)
        self._times_ns = np.zeros(TIMING_WINDOW, np.int64)
        self._times_n = 0
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=cfg.queue_size)
        self._lock = threading.Lock()  # serialises request() callers, never taken by process()
        self.remote: Any = None
        """The :class:`~rtvc.worker.EngineProxy` while the audio runs in a worker process (:meth:`attach`)."""
        self._counters = {"blocks": 0, "hops": 0, "samples_in": 0, "nonfinite_samples": 0, "stage_resets": 0,
                          "stage_errors": 0,
                          "dropped_blocks": 0, "xruns": 0, "commands_applied": 0,
                          "commands_coalesced": 0, "limited_samples": 0}
        self._sources: list[Callable[[], TelemetryPart]] = []  # what runs around this engine (add_source)
        self._level_in = 0.0
        self._level_out = 0.0
        # over the whole run: input peak, input sum of squares, output peak, output sum of squares, samples
        self._run_levels = np.zeros(5, np.float64)
        # parameters: ``params`` is the last accepted request, ``_live`` what the audio path uses
        p = params or Params()
        info = self.registry.get(p.voice)
        self._active = self._load(info, p)
        self._fading: _Active | None = None
        self._fade_pos = 0
        self.params = p
        self._live = p
        self._cur = gains(p)  # current (ramped) linear gains
        self._hop_consts = derive(p, model_rate=cfg.model_rate, hop=cfg.hop)

    # ------------------------------------------------------------------ latency
    def _compute_prefill(self) -> int:
        """Smallest FIFO pre-fill that never runs dry, found by counting at block size 1."""
        cfg = self.config
        period = cfg.device_rate * 2 + 10 * cfg.hop * 8  # > several full patterns of every ratio
        n = np.arange(1, period + 1, dtype=np.int64)
        m = self._rs_in.outputs_after(n)
        hops = (m // cfg.hop) * cfg.hop
        u = self._rs_out.outputs_after(hops)
        return int(max(0, np.max(n - u)))

    def latency_samples(self, stage_latency: int | None = None) -> float:
        """Algorithmic latency in device samples (fractional when the rates are not multiples)."""
        d = self._active.stage.latency if stage_latency is None else stage_latency
        return self.prefill + d * self.config.device_rate / self.config.model_rate

    @property
    def active_stage(self) -> Any:
        """The stage of the voice playing now (a :class:`~rtvc.dsp.DspVoice` or a
        :class:`~rtvc.converter.NeuralVoice`; for reading only)."""
        return self._active.stage

    @property
    def voice_provider(self) -> str | None:
        """The onnxruntime provider the active neural voice runs on; None for a DSP voice."""
        session = getattr(self._active.stage, "session", None)
        return str(session.get_providers()[0]) if session is not None else None

    @property
    def algorithmic_latency_ms(self) -> float:
        return 1000.0 * self.latency_samples() / self.config.device_rate

    def latency_ms_for(self, stage_latency: int) -> float:
        return 1000.0 * self.latency_samples(stage_latency) / self.config.device_rate

    # ------------------------------------------------------------------ control (any thread)
    def _load(self, info: VoiceInfo, params: Params, *, prime_it: bool = True) -> _Active:
        """Load a voice; a stage that learns the speaker (``prime``, neural voices) first hears
        what this engine heard (the last ``HISTORY_S``), so a switch mid-session is not a cold start."""
        stage = self.registry.make_stage(info, model_rate=self.config.model_rate, hop=self.hop,
                                         device=self.config.neural_device)
        stage.set_params(params)
        act = _Active(info, stage)
        prime = getattr(stage, "prime", None)
        if prime is not None and prime_it:
            heard = self.heard()
            if heard.size:
                t0 = time.perf_counter()
                voiced = prime(heard, act.state)
                log.info("voice %s: learnt the speaker from the last %.1f s of input (%d voiced frames) in %.0f ms",
                         info.name, heard.size / self.config.model_rate, voiced, 1e3 * (time.perf_counter() - t0))
        return act

    def heard(self) -> np.ndarray:
        """The last ``HISTORY_S`` of input the noise gate let through (model rate, after the
        input gain, oldest first; see :meth:`rtvc.speaker.SpeakerHistory.heard`). Any thread; allocates."""
        return self.speaker.heard()

    @property
    def speaker_recalled_s(self) -> float:
        """Seconds of speech the history started with (the speaker memory; 0 after a forget)."""
        return self.speaker.recalled_s

    def save_speaker(self) -> bool:
        """Write the speech heard to ``config.speaker_memory`` (:meth:`rtvc.speaker.SpeakerHistory.save`)."""
        return self.speaker.save()

    def save_speaker_if_due(self, now: float) -> bool:
        """:meth:`save_speaker` every ``config.speaker_save_every_s`` of the monotonic clock ``now``
        when new speech was heard (:meth:`rtvc.speaker.SpeakerHistory.save_if_due`)."""
        return self.speaker.save_if_due(now)

    def forget_speaker(self) -> bool:
        """Forget the speaker (someone else takes the microphone): the input history is dropped,
        the speaker memory file is deleted, and the active voice, if it learns the speaker, is
        replaced at the next block boundary by a fresh copy that starts learning again (crossfaded
        like a voice switch; loaded here, in the caller's thread). The next save needs
        ``SPEAKER_MEMORY_MIN_S`` of new speech. Returns whether a memory file was deleted."""
        with self._lock:
            if self.remote is not None:  # the worker process runs the audio: it forgets there
                deleted = self.speaker.delete_memory()  # first: the worker deletes a save it makes meanwhile
                self.remote.forget_speaker()
                self.speaker.clear()
                return deleted
            info = self.registry.get(self.params.voice)
            fresh: _Active | None = self._load(info, self.params, prime_it=False)  # may raise: nothing forgotten
            if getattr(fresh.stage, "prime", None) is None:
                fresh = None  # a voice that does not learn the speaker plays on
            seq = self.speaker.begin_forget()  # a save under way finishes first; later ones see the forget pending
            try:
                self._queue.put_nowait(("forget", (seq, fresh)))
            except queue.Full:
                self._coalesce(self.params, None)  # merges what waits into at most three commands
                self._queue.put_nowait(("forget", (seq, fresh)))
            return self.speaker.delete_memory()

    @property
    def speaker_s(self) -> float:
        """Seconds of speech a voice selected now would learn the speaker from (at most ``HISTORY_S``)."""
        return self.speaker.seconds

    def request(self, params: Params) -> Params:
        """Ask for a new parameter snapshot; applied at the next block boundary.

        A voice change loads the voice here, in the caller's thread; if loading fails the
        error is raised and the previous voice keeps playing.
        """
        if not isinstance(params, Params):
            raise ControlError(f"request() takes a Params snapshot, got {type(params).__name__}")
        with self._lock:
            loaded = None
            if params.voice != self.params.voice:
                info = self.registry.get(params.voice)
                loaded = self._load(info, params)
            if self.remote is not None:
                self.remote.request(params)
                if loaded is not None:
                    self._active = loaded  # latency and telemetry name the voice the worker plays
                self.params = self._live = params
                return params
            try:
                self._queue.put_nowait(("params", (params, loaded)))
            except queue.Full:
                self._coalesce(params, loaded)
            self.params = params
            return params

    def _coalesce(self, params: Params, loaded: "_Active | None") -> None:
        """The queue is full (nobody is draining it, e.g. the stream is stopped): parameters
        are snapshots, so only the newest matters. Merge what is pending into one command,
        keeping a pending voice load for the voice the newest snapshot asks for."""
        pending: list[tuple[str, Any]] = []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if loaded is None:
            for kind, arg in reversed(pending):
                if kind == "params" and arg[1] is not None:
                    if arg[1].info.name == params.voice:
                        loaded = arg[1]
                    break
        if any(kind == "reset" for kind, _ in pending):
            self._queue.put_nowait(("reset", None))
        forgets = [arg for kind, arg in pending if kind == "forget"]
        if forgets:  # the newest forget (its fresh voice); a voice loaded after it already starts cold
            self._queue.put_nowait(("forget", forgets[-1]))
        self._queue.put_nowait(("params", (params, loaded)))
        self._counters["commands_coalesced"] += len(pending)

    def update(self, **changes: Any) -> Params:
        """Partial update (validated). Selecting a voice also loads its preset pitch/formant
        unless those are given in the same update."""
        base = self.params
        if "voice" in changes and changes["voice"] != base.voice:
            info = self.registry.get(changes["voice"])
            for k, v in info.defaults.items():
                changes.setdefault(k, v)
        return self.request(base.replace(**changes))

    def reset(self) -> None:
        """Clear all audio state (not parameters) at the next block boundary."""
        if self.remote is not None:
            self.remote.reset()
            return
        try:
            self._queue.put_nowait(("reset", None))
        except queue.Full:
            raise ControlError("engine command queue is full; reset not queued") from None

    def _drain(self) -> None:
        if self._queue.empty():  # the usual case, without raising queue.Empty
            return
        while True:
            try:
                kind, arg = self._queue.get_nowait()
            except queue.Empty:
                return
            self._counters["commands_applied"] += 1
            if kind == "params":
                p, loaded = arg
                if loaded is not None:
                    self._crossfade_to(loaded)
                self._active.stage.set_params(p)
                if self._fading is not None:
                    self._fading.stage.set_params(p)
                self._live = p
            elif kind == "reset":
                self._reset_state()
            elif kind == "forget":
                seq, fresh = arg
                if fresh is not None:
                    fresh.stage.set_params(self._live)
                    self._crossfade_to(fresh)
                self.speaker.finish_forget(seq)

    def _crossfade_to(self, act: _Active) -> None:
        """Make ``act`` the active voice; the one it replaces fades out over ``CROSSFADE_HOPS``."""
        self._fading = self._active
        self._fade_pos = 0
        self._active = act

    def _reset_state(self) -> None:
        self._active.state = self._active.stage.init_state()
        self._fading = None
        self._dry[:] = 0.0
        self._gbuf[:] = 0.0
        self._gate_st[:] = 0.0
        self._floor_st[:] = FLOOR_STATE_START
        self._noise_floor = 0.0
        self.speaker.clear()

    # ------------------------------------------------------------------ audio (worker thread)
    def warm_up(self) -> None:
        """Run every code path once (JIT compilation, ONNX first run) in a throwaway engine
        with the same config, registry and parameters, so this engine's first real block is on
        time. This engine's stream position, state, counters and statistics are untouched."""
        probe = Engine(replace(self.config, speaker_memory=None), registry=self.registry, params=self._live)
        x = np.zeros(4 * self.hop * self.config.device_rate // self.config.model_rate, np.float32)
        probe.process_into(x, np.zeros_like(x))

    def process(self, x: Audio) -> Audio:
        """Process one device-rate block of any length; return as many output samples.

        Allocation-free for blocks up to ``config.max_block`` except for the returned array.
        """
        x = np.asarray(x)
        if x.ndim != 1:
            raise ConfigError(f"audio block has shape {x.shape}; expected mono (n_samples,)")
        y = np.empty(x.shape[0], np.float32)
        mb = self.config.max_block
        for s in range(0, x.shape[0], mb):
            self.process_into(x[s:s + mb], y[s:s + mb])
        return y

    def process_into(self, x: Audio, y: Audio) -> None:
        """Like :meth:`process`, writing into the caller's ``y`` (same length as ``x``)."""
        t0 = time.perf_counter_ns()
        n = x.shape[0]
        if n > self.config.max_block:
            raise ConfigError(f"block of {n} samples exceeds max_block={self.config.max_block}")
        self._drain()
        xin = self._xin[:n]
        xin[:] = x
        bad = sanitize(xin, 4.0)  # non-finite -> 0, then clipped: a broken driver cannot blow up the state
        if bad:
            self._counters["nonfinite_samples"] += bad
        m = self._rs_in.process(xin)
        i = 0
        while i < m.shape[0]:
            k = min(self.hop - self._acc_n, m.shape[0] - i)
            self._acc[self._acc_n:self._acc_n + k] = m[i:i + k]
            self._acc_n += k
            i += k
            if self._acc_n == self.hop:
                self._acc_n = 0
                h = self._hop(self._acc)
                ring_write(self._fifo, self._fifo_idx, self._rs_out.process(h))
        need = n
        # the pre-fill is "virtual": the first ``prefill`` output samples are zeros
        pre = max(0, self.prefill - self._counters["samples_in"])
        k0 = min(pre, need)
        y[:k0] = 0.0
        got = ring_read(self._fifo, self._fifo_idx, y[k0:need])
        if got < need - k0:  # cannot happen by construction; keep the stream alive if it does
            y[k0 + got:] = 0.0
            self._counters["xruns"] += 1
        self._counters["samples_in"] += n
        self._counters["blocks"] += 1
        if self._counters["blocks"] > WARMUP_BLOCKS:  # JIT/ONNX first-call costs are not steady state
            self._times_ns[self._times_n % TIMING_WINDOW] = time.perf_counter_ns() - t0
            self._times_n += 1

    def _hop(self, h: Audio) -> Audio:
        p = self._live
        hc = self._hop_consts
        if hc.params is not p:  # a new snapshot (parameters are immutable: identity is enough)
            hc = self._hop_consts = derive(p, model_rate=self.config.model_rate, hop=self.hop)
        thr_lin, margin, confirm = hc.threshold, hc.floor_margin, hc.confirm_hops
        g_in0, wet0, out0, _ = self._cur
        g_in1, wet1, out1, _ = hc.gains
        x = self._hop_buf
        peak_in = apply_gain_ramp(h, g_in0, g_in1, x)
        self._level_in = max(peak_in, self._level_in * 0.5)
        run = self._run_levels
        run[0] = max(run[0], peak_in)
        run[1] += float(np.dot(x, x))
        floor = self._noise_floor = noise_floor_step(x, self._floor_smooth, self._floor_hops, FLOOR_MIN_SUBWINDOWS,
                                                     self._floor_st, self._floor_mins)
        if margin > 0.0:  # steady noise above the fixed threshold stays shut out
            thr_lin = max(thr_lin, min(floor * margin, FLOOR_THRESHOLD_CAP))
        self._gate_open = thr_lin
        # voice stage (+ crossfade from the previous voice after a switch)
        act = self._active
        wet = self._step_stage(act, x)
        if self._fading is not None:
            old = self._step_stage(self._fading, x)
            a = (self._fade_pos + self._ramp) / CROSSFADE_HOPS
            self._wet[:] = old + (wet - old) * a
            wet = self._wet
            self._fade_pos += 1
            if self._fade_pos >= CROSSFADE_HOPS:
                self._fading = None
        d = act.stage.latency
        gate_gains(x, thr_lin, self._env_decay, hc.attack_step, hc.release_step, hc.hold, confirm, CLICK_DROP,
                   self._click_grace, self._gate_st, self._g)
        if self._gate_st[1] > 0.0:  # the gate lets this hop through: speech for the history, not a pause
            self.speaker.add(x)
        # the gate opens ``look`` samples before the onset arrives: its attack time, or with the click
        # test (which holds an onset back until it is confirmed) as early as the voice's latency allows
        look = d if confirm else min(d, hc.attack)
        peak_out = hop_mix(x, wet, self._g, self._dry, self._gbuf, self._dry_w, d, look,
                           wet0, wet1, out0, out1, self._y)
        if peak_out > LIMIT_KNEE:  # pitch-shifted grains can peak above full scale
            self._counters["limited_samples"] += soft_limit(self._y, LIMIT_KNEE)
            peak_out = min(peak_out, 1.0)
        self._dry_w = (self._dry_w + self.hop) & (self._dry.shape[0] - 1)
        self._cur = hc.gains
        self._level_out = max(peak_out, self._level_out * 0.5)
        run[2] = max(run[2], peak_out)
        run[3] += float(np.dot(self._y, self._y))
        run[4] += self.hop
        self._counters["hops"] += 1
        return self._y

    def _step_stage(self, act: _Active, x: Audio) -> Audio:
        try:
            y, act.state = act.stage.step(x, act.state)
        except Exception as e:  # noqa: BLE001 - e.g. onnxruntime failing at run time (a lost GPU)
            # the stream goes on: this hop is silent, the voice starts again from a fresh state
            self._counters["stage_errors"] += 1
            n = self._counters["stage_errors"]
            if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th... failure: a log that cannot flood
                log.error("voice %s failed in the audio path (%s: %s); hop silenced, state reset "
                          "(stage_errors %d)", act.info.name, type(e).__name__, e, n)
            try:
                act.state = act.stage.init_state()
            except Exception:  # noqa: BLE001 - keep the old state; the next hop tries again
                pass
            return np.zeros(self.hop, np.float32)
        if not all_finite(y):
            # bad numbers never enter state: reset this voice and output silence for the hop
            self._counters["stage_resets"] += 1
            act.state = act.stage.init_state()
            return np.zeros(self.hop, np.float32)
        return y

    # ------------------------------------------------------------------ remote worker
    def attach(self, proxy: Any) -> None:
        """Run the audio in another process (see :mod:`rtvc.audio.process`): from now on accepted
        parameter snapshots, resets and :meth:`forget_speaker` go to ``proxy`` (an
        :class:`~rtvc.audio.process.EngineProxy`) instead of this engine's queue; a voice change is
        still loaded (and refused) here first. The worker engine's statistics are the proxy's
        (:meth:`~rtvc.audio.process.EngineProxy.telemetry`, merged into :attr:`counters` and
        :meth:`telemetry`). ``None`` detaches: what the worker counted stays counted here."""
        with self._lock:
            old = self.remote
            if proxy is None and old is not None:
                for k, v in old.telemetry().counters.items():
                    self._counters[k] = self._counters.get(k, 0) + int(v)
            self.remote = proxy

    def snapshot(self, since: int) -> tuple[EngineSnapshot, int]:
        """Counters, levels, the speaker's seconds and the compute times recorded after the
        ``since``-th (at most a window), for the runner's process; and the new ``since``."""
        n = self._times_n
        k = min(n - since, TIMING_WINDOW)
        times = tuple(int(self._times_ns[i % TIMING_WINDOW]) for i in range(n - k, n))
        return EngineSnapshot(counters=dict(self._counters), times_ns=times,
                              levels=(self._level_in, self._level_out, self._noise_floor, self._gate_open),
                              run_levels=tuple(self._run_levels.tolist()), speaker_s=self.speaker_s), n

    def load_snapshot(self, snap: EngineSnapshot) -> None:
        """Take a worker engine's levels and compute times as this engine's (the proxy's mirror
        thread: this engine runs no audio meanwhile). Its counters stay the proxy's."""
        for t in snap.times_ns:
            self._times_ns[self._times_n % TIMING_WINDOW] = t
            self._times_n += 1
        self._level_in, self._level_out, self._noise_floor, self._gate_open = snap.levels
        self._run_levels[:] = snap.run_levels

    def add_source(self, source: Callable[[], TelemetryPart]) -> None:
        """Merge ``source()`` (a runner's share) into :attr:`counters`, :attr:`gauges` and
        :meth:`telemetry` from now on."""
        self._sources.append(source)

    def remove_source(self, source: Callable[[], TelemetryPart]) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def _merged(self) -> TelemetryPart:
        parts = [src() for src in list(self._sources)]
        if self.remote is not None:
            parts.insert(0, self.remote.telemetry())
        return merge(TelemetryPart(self._counters, {"buffer_age_ms": None}), *parts)

    @property
    def counters(self) -> dict[str, int]:
        """This engine's counters with those of what runs around it (the worker process's engine,
        the block worker's xruns and dropped blocks), merged (a copy)."""
        return dict(self._merged().counters)

    @property
    def gauges(self) -> dict[str, Any]:
        """Values the audio path around this engine keeps current (buffer ages, stream state, the
        last fault, ...; None where there is no live stream), merged (a copy)."""
        return dict(self._merged().gauges)

    @property
    def live_params(self) -> Params:
        """The snapshot the audio path uses now (applied at the last block boundary)."""
        return self._live

    # ------------------------------------------------------------------ telemetry (any thread)
    def run_levels(self) -> dict[str, float]:
        """Peak and RMS of the input (after the input gain) and of the output over everything
        processed so far, in dBFS (-200 before any audio): what a file run's summary reports."""
        peak_in, sq_in, peak_out, sq_out, n = self._run_levels.tolist()
        n = max(n, 1.0)
        return {"input_peak_dbfs": _lin_to_db(peak_in), "input_rms_dbfs": _lin_to_db(math.sqrt(sq_in / n)),
                "output_peak_dbfs": _lin_to_db(peak_out), "output_rms_dbfs": _lin_to_db(math.sqrt(sq_out / n))}

    def telemetry(self) -> dict[str, Any]:
        """A snapshot of levels, latency, compute statistics and counters (JSON-ready)."""
        n = min(self._times_n, TIMING_WINDOW)
        t = np.sort(self._times_ns[:n]) / 1e6 if n else np.zeros(1)
        cfg = self.config
        merged = self._merged()
        counters = merged.counters
        block_ms_mean = 1000.0 * counters["samples_in"] / max(1, counters["blocks"]) / cfg.device_rate
        p50 = float(np.percentile(t, 50))
        return {
            "voice": self._live.voice,
            "bypass": self._live.bypass,
            "mute": self._live.mute,
            "input_level_dbfs": _lin_to_db(self._level_in),
            "output_level_dbfs": _lin_to_db(self._level_out),
            "noise_floor_dbfs": _lin_to_db(self._noise_floor),
            "gate_open_dbfs": _lin_to_db(self._gate_open),
            **self.run_levels(),
            "algorithmic_latency_ms": self.algorithmic_latency_ms,
            "compute_ms_p50": p50,
            "compute_ms_p99": float(np.percentile(t, 99)),
            "compute_ms_max": float(t[-1]),
            "rtf": p50 / block_ms_mean if block_ms_mean > 0 else 0.0,
            "voice_provider": self.voice_provider,
            "speaker_s": self.speaker_s,
            **{k: int(v) for k, v in counters.items()},
            **merged.gauges,
        }


def voice_latency_ms(info: VoiceInfo, config: EngineConfig | None = None) -> float:
    """Algorithmic latency of the engine with ``info`` active (loads the voice)."""
    eng = Engine(config, params=Params(voice=info.name))
    return eng.algorithmic_latency_ms

