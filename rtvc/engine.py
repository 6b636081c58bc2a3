"""The streaming engine: device-rate blocks of any size in, the same number of samples out.

Data path (one direction)::

    x (device rate) -> sanitize (non-finite -> 0, counted) -> resample to the model rate
      -> fixed hops of HOP samples: input gain -> noise suppression (optional, rtvc.denoise)
         -> voice stage (+ dry delay line) -> mix
         -> look-ahead noise gate (threshold raised above the tracked noise floor)
         -> output gain / mute (ramped)
      -> resample to the device rate -> output FIFO (pre-filled) -> y

Every hop is a pure function of absolute input positions, so the output does not depend on
the host block size, and ``rtvc convert`` (offline) runs exactly this code.

Latency: the output FIFO starts with ``prefill`` zeros, the smallest count for which it never
runs dry at any block size (block size 1 is the worst case: it is computed by counting). The
algorithmic latency is ``prefill + (denoise_latency + stage_latency) * device_rate / model_rate``
device samples: a click at input sample ``n`` through a neutral voice peaks at output ``n + latency``
(``denoise_latency`` is 0 while noise suppression is off).

Threads: ``process`` runs on one worker thread. Control requests (``request``/``update``) may
come from any thread (:mod:`rtvc.engine_control`): they are validated and voice models are
loaded in the caller's thread, then handed over through a bounded queue and applied at the next
block boundary. Statistics are an :class:`~rtvc.telemetry.EngineStats`. A voice
that adapts to the speaker (a neural voice's F0, timbre and warp statistics) learns the speaker
from the engine's speaker history (:class:`~rtvc.speaker.SpeakerHistory`: the last ``HISTORY_S``
the noise gate let through) when it loads (``stage.prime``), so switching voices mid-session is
not a cold start. With ``EngineConfig.speaker_memory`` the history outlives the session (see
:mod:`rtvc.speaker`). :meth:`Engine.forget_speaker` is the hand-over: someone else takes the
microphone, the history and the memory file are dropped and the active voice starts learning
afresh (crossfaded).

When the audio runs in a worker process (:mod:`rtvc.audio.process`), this engine still validates
requests and loads voices, and an :class:`~rtvc.audio.process.EngineProxy` attached to its
``control`` and ``stats`` carries the accepted commands to the worker's engine and its
statistics back.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ._native.gate import gate_gains, noise_floor_step
from ._native.mix import all_finite, apply_gain_ramp, hop_mix, sanitize, soft_limit
from ._native.ring import ring_read, ring_write
from .denoise import NoiseSuppression
from .engine_control import Active, EngineControl, Forget, Reset, SetParams, load_voice
from .errors import ConfigError
from .params import Params
from .resampling import SUPPORTED_RATES, StreamResampler
from .speaker import SPEAKER_SAVE_EVERY_S, SpeakerHistory
from .telemetry import EngineSnapshot, EngineStats, TelemetryPart
from .types import HOP, MODEL_RATE, NEURAL_DEVICES, Audio
from .voices import VoiceInfo, VoiceRegistry

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineConfig", "HopConstants", "derive", "gains"]

CROSSFADE_HOPS = 4  # 20 ms voice-switch crossfade
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


def fifo_prefill(rs_in: StreamResampler, rs_out: StreamResampler, cfg: EngineConfig) -> int:
    """Smallest output FIFO pre-fill that never runs dry, found by counting at block size 1."""
    period = cfg.device_rate * 2 + 10 * cfg.hop * 8  # > several full patterns of every ratio
    n = np.arange(1, period + 1, dtype=np.int64)
    m = rs_in.outputs_after(n)
    hops = (m // cfg.hop) * cfg.hop
    u = rs_out.outputs_after(hops)
    return int(max(0, np.max(n - u)))


class Engine:
    """Streaming voice engine. See the module docstring for the data path and latency."""

    def __init__(self, config: EngineConfig | None = None, *, registry: VoiceRegistry | None = None,
                 params: Params | None = None) -> None:
        self.config = cfg = config or EngineConfig()
        self.registry = registry or VoiceRegistry()
        self.hop = cfg.hop
        self._rs_in = StreamResampler(cfg.device_rate, cfg.model_rate, max_chunk=cfg.max_block)
        self._rs_out = StreamResampler(cfg.model_rate, cfg.device_rate, max_chunk=cfg.hop)
        self.prefill = fifo_prefill(self._rs_in, self._rs_out, cfg)
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
        self._hop_buf = np.zeros(cfg.hop, np.float32)
        self.speaker = SpeakerHistory(model_rate=cfg.model_rate, hop=cfg.hop, memory=cfg.speaker_memory,
                                      save_every_s=cfg.speaker_save_every_s)
        self._wet = np.zeros(cfg.hop, np.float32)
        self._y = np.zeros(cfg.hop, np.float32)
        self._ramp = (np.arange(1, cfg.hop + 1, dtype=np.float32) / cfg.hop)
        self._env_decay = math.exp(-1.0 / (0.010 * cfg.model_rate))  # gate level detector: 10 ms decay
        self._click_grace = int(CLICK_GRACE_S * cfg.model_rate)
        self.stats = EngineStats()
        self._counters = self.stats.counters  # this engine writes them (the audio thread)
        # parameters: ``params`` is the last accepted request, ``_live`` what the audio path uses
        p = params or Params()
        self._active = load_voice(self.registry, self.registry.get(p.voice), p, config=cfg, heard=self.speaker.heard)
        self._fading: Active | None = None
        self._fade_pos = 0
        self.control = EngineControl(self.registry, cfg, params=p, speaker=self.speaker, adopt=self._adopt,
                                     counters=self._counters, queue_size=cfg.queue_size)
        self._live = p
        self._ns = NoiseSuppression(cfg.hop, model_rate=cfg.model_rate)
        if p.denoise:
            self.control.need_denoiser(p)
            self._ns.apply(p, self.control.denoiser, immediate=True)
        self._cur = gains(p)  # current (ramped) linear gains
        self._hop_consts = derive(p, model_rate=cfg.model_rate, hop=cfg.hop)

    # ------------------------------------------------------------------ latency
    def latency_samples(self, stage_latency: int | None = None) -> float:
        """Algorithmic latency in device samples (fractional when the rates are not multiples),
        noise suppression's included while it is on."""
        d = self._active.stage.latency if stage_latency is None else stage_latency
        return self.prefill + (self._ns.latency + d) * self.config.device_rate / self.config.model_rate

    @property
    def denoise_latency_ms(self) -> float:
        """What noise suppression adds to the latency now (0 while it is off)."""
        return 1000.0 * self._ns.latency / self.config.model_rate

    @property
    def active(self) -> Active:
        """The voice playing now: its ``info``, ``stage`` and stage ``state`` (for reading only)."""
        return self._active

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
    @property
    def params(self) -> Params:
        """The last accepted parameter snapshot (applied at the next block boundary)."""
        return self.control.params

    @property
    def live_params(self) -> Params:
        """The snapshot the audio path uses now (applied at the last block boundary)."""
        return self._live

    def request(self, params: Params) -> Params:
        """Ask for a new parameter snapshot (:meth:`rtvc.engine_control.EngineControl.request`)."""
        return self.control.request(params)

    def update(self, **changes: Any) -> Params:
        """Partial update (validated); a new voice brings its preset (:meth:`~rtvc.engine_control.EngineControl.update`)."""
        return self.control.update(**changes)

    def reset(self) -> None:
        """Clear all audio state (not parameters) at the next block boundary."""
        self.control.reset()

    def forget_speaker(self) -> bool:
        """Forget the speaker (:meth:`rtvc.engine_control.EngineControl.forget_speaker`); whether a file went."""
        return self.control.forget_speaker()

    def _adopt(self, loaded: Active | None, params: Params) -> None:
        """A proxy runs the audio: this engine names the voice and parameters the worker plays."""
        if loaded is not None:
            self._active = loaded
        self._ns.apply(params, None)  # the latency it reports follows the worker's switch
        self._live = params

    # ------------------------------------------------------------------ the speaker (any thread)
    def heard(self) -> np.ndarray:
        """The speech the gate let through, the last ``HISTORY_S`` (:meth:`rtvc.speaker.SpeakerHistory.heard`)."""
        return self.speaker.heard()

    @property
    def speaker_recalled_s(self) -> float:
        """Seconds of speech the history started with (the speaker memory; 0 after a forget)."""
        return self.speaker.recalled_s

    @property
    def speaker_s(self) -> float:
        """Seconds of speech a voice selected now would learn the speaker from (at most ``HISTORY_S``)."""
        return self.speaker.seconds

    def save_speaker(self) -> bool:
        """Write the speech heard to ``config.speaker_memory`` (:meth:`rtvc.speaker.SpeakerHistory.save`)."""
        return self.speaker.save()

    def save_speaker_if_due(self, now: float) -> bool:
        """:meth:`save_speaker` when due at monotonic ``now`` (:meth:`rtvc.speaker.SpeakerHistory.save_if_due`)."""
        return self.speaker.save_if_due(now)

    # ------------------------------------------------------------------ audio (worker thread)
    def _drain(self) -> None:
        if self.control.empty():  # the usual case
            return
        for cmd in self.control.take():
            self._counters["commands_applied"] += 1
            if isinstance(cmd, SetParams):
                if cmd.loaded is not None:
                    self._crossfade_to(cmd.loaded)
                self._active.stage.set_params(cmd.params)
                if self._fading is not None:
                    self._fading.stage.set_params(cmd.params)
                self._ns.apply(cmd.params, self.control.denoiser)
                self._live = cmd.params
            elif isinstance(cmd, Reset):
                self._reset_state()
            elif isinstance(cmd, Forget):
                if cmd.fresh is not None:
                    cmd.fresh.stage.set_params(self._live)
                    self._crossfade_to(cmd.fresh)
                self.speaker.finish_forget(cmd.seq)

    def _crossfade_to(self, act: Active) -> None:
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
        self.stats.noise_floor = 0.0
        self.speaker.clear()
        self._ns.restart()

    def warm_up(self) -> None:
        """Run every code path once (JIT compilation, ONNX first run) in a throwaway engine
        with the same config, registry and parameters, so this engine's first real block is on
        time. This engine's stream position, state, counters and statistics are untouched."""
        # the probe suppresses no noise: a second DeepFilterNet state would cost ~0.5 s and its memory for
        # nothing (its first frame is ~3 ms; the resampling kernels it shares with the probe's path are
        # what needs compiling)
        probe = Engine(replace(self.config, speaker_memory=None), registry=self.registry,
                       params=replace(self._live, denoise=False))
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
            self.stats.record_time(time.perf_counter_ns() - t0)

    def _hop(self, h: Audio) -> Audio:
        p = self._live
        hc = self._hop_consts
        if hc.params is not p:  # a new snapshot (parameters are immutable: identity is enough)
            hc = self._hop_consts = derive(p, model_rate=self.config.model_rate, hop=self.hop)
        thr_lin, margin, confirm = hc.threshold, hc.floor_margin, hc.confirm_hops
        g_in0, wet0, out0, _ = self._cur
        g_in1, wet1, out1, _ = hc.gains
        st = self.stats
        peak_in = apply_gain_ramp(h, g_in0, g_in1, self._hop_buf)
        x = self._ns.process(self._hop_buf)
        if x is not self._hop_buf:  # cleaned: the meter and the gate see what the voice hears
            peak_in = apply_gain_ramp(x, 1.0, 1.0, x)  # gain 1: the peak only, in place (no allocation)
        st.level_in = max(peak_in, st.level_in * 0.5)
        run = st.run
        run[0] = max(run[0], peak_in)
        run[1] += float(np.dot(x, x))
        floor = st.noise_floor = noise_floor_step(x, self._floor_smooth, self._floor_hops, FLOOR_MIN_SUBWINDOWS,
                                                  self._floor_st, self._floor_mins)
        if margin > 0.0:  # steady noise above the fixed threshold stays shut out
            thr_lin = max(thr_lin, min(floor * margin, FLOOR_THRESHOLD_CAP))
        st.gate_open = thr_lin
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
        st.level_out = max(peak_out, st.level_out * 0.5)
        run[2] = max(run[2], peak_out)
        run[3] += float(np.dot(self._y, self._y))
        run[4] += self.hop
        self._counters["hops"] += 1
        return self._y

    def _step_stage(self, act: Active, x: Audio) -> Audio:
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

    # ------------------------------------------------------------------ telemetry (any thread)
    def snapshot(self, since: int) -> tuple[EngineSnapshot, int]:
        """This engine's statistics for the runner's process (:meth:`rtvc.telemetry.EngineStats.snapshot`)."""
        return self.stats.snapshot(since, speaker_s=self.speaker_s)

    def add_source(self, source: Callable[[], TelemetryPart]) -> None:
        """Merge ``source()`` (a runner's share) into :attr:`counters`, :attr:`gauges` and :meth:`telemetry`."""
        self.stats.sources.append(source)

    @property
    def counters(self) -> dict[str, int]:
        """This engine's counters and those of what runs around it (xruns, dropped blocks), merged (a copy)."""
        return dict(self.stats.merged().counters)

    @property
    def gauges(self) -> dict[str, Any]:
        """What the audio path around it keeps current (buffer ages, stream state, last fault), merged."""
        return dict(self.stats.merged().gauges)

    def run_levels(self) -> dict[str, float]:
        """Input (after its gain) and output peak and RMS over the whole run, dBFS (a file run's summary)."""
        return self.stats.run_levels_db()

    def telemetry(self) -> dict[str, Any]:
        """A snapshot of levels, latency, compute statistics and counters (JSON-ready)."""
        merged = self.stats.merged()
        counters = merged.counters
        block_ms_mean = 1000.0 * counters["samples_in"] / max(1, counters["blocks"]) / self.config.device_rate
        p50, p99, pmax = self.stats.compute_ms()
        return {
            "voice": self._live.voice, "bypass": self._live.bypass, "mute": self._live.mute,
            **self.stats.levels_db(), **self.run_levels(),
            "algorithmic_latency_ms": self.algorithmic_latency_ms,
            "denoise_latency_ms": self.denoise_latency_ms,
            "compute_ms_p50": p50, "compute_ms_p99": p99, "compute_ms_max": pmax,
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

