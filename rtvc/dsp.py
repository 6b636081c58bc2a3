"""DSP voices: pitch shift, formant shift, robot and whisper, with one fixed latency.

Algorithm
---------
``"shift"`` and ``"robot"`` are a streaming TD-PSOLA driven by the causal YIN tracker
(:mod:`rtvc.f0`). PSOLA was chosen over a phase vocoder because it moves pitch and formants
independently without an FFT frame: its delay is set by the grain length (under one pitch
period here), not by a 20-40 ms analysis window, which the 15 ms stage budget does not allow.

- Analysis: the input is kept in a history buffer; YIN (window ending at the current hop) gives
  the period ``T0``. Voiced analysis centres are pitch-synchronous: the next one is the previous
  one plus a whole number of periods, the one nearest to the time-aligned position ``s - L``
  (``L`` = latency; one period earlier when that one is not received yet), refined by normalised
  cross-correlation with the previous grain (+-10 % of ``T0``, at most 8 samples). At a voicing
  onset the centre snaps to the largest ``|x|`` in the period ending at ``s - L``, so grains sit
  on glottal pulses.
- Synthesis: marks every ``T0 / beta`` output samples (shift, ``beta = 2 ** (pitch_st / 12)``) or
  every ``16000 / (110 beta)`` (robot). Each mark takes a Hann grain of half-length
  ``ga = min(T0, (L - 13) / (1 + 1 / rf))`` around its analysis centre, resampled by the formant
  ratio ``rf`` (Catmull-Rom), so the envelope moves by ``rf`` while the mark spacing sets the
  pitch. Overlap-add is normalised by the window sum where it exceeds 1, and a slow loudness
  match (40 ms power averages, at most +-12 dB) keeps the output as loud as the input: the
  energy normalisation of the overlap-add, which otherwise depends on ``beta`` and ``T0``.
- Unvoiced input (YIN says so): grains of half-length ``gu = floor((L - 4) / 2.4)`` output
  samples (65 at ``L = 160``) every ``gu`` samples, analysis centre exactly ``s - L``, no pitch
  change (the formant ratio still applies).
- Ratios glide in the log domain (time constant 10 ms, updated per grain). The neutral path
  (shift mode, ``pitch_st == 0``, ``formant_ratio == 1``) is the input delayed by exactly ``L``
  samples, cross-faded linearly over 15 ms (240 samples) in and out; the PSOLA keeps running
  underneath, and while ``pitch_st == 0`` its marks are nudged (at most 2 % per period) until
  each sits exactly ``L`` after its analysis centre, so both sides of the cross-fade are
  time-aligned.

``"whisper"`` is LPC resynthesis: every hop an order-16 predictor is fitted to a 20 ms Hann
window centred on the delayed block (autocorrelation method, 40 Hz lag window, Levinson-Durbin);
for ``rf != 1`` its envelope ``err / |A(w)|^2`` is resampled at ``w / rf``, transformed back to
an autocorrelation and refitted (a positive spectrum, so the refit is stable). Seeded white
noise with the frame's residual power (gain-matched, ramped over the hop) drives the lattice
synthesis filter. The noise generator is seeded in ``init_state``: a stream restarts
identically.

Latency arithmetic (model rate 16 kHz, hop 80)
----------------------------------------------
A grain is placed in the first block in which it starts: its synthesis mark ``s`` satisfies
``s - gs < t_end``, where ``t_end`` is the end of the input received so far. Its analysis
centre is ``a = s - L``, refined by up to 8 samples, and it reads input up to ``a + ga + 2``
(two samples for the interpolator), so it is causal when ``ga + gs + 4 + 8 <= L``. With
``gs = ga / rf`` and ``ga <= (L - 13) / (1 + 1 / rf)`` that holds for every ``rf``; unvoiced
grains (no refinement) need ``gu * (1 + 1.4) + 4 <= L``. The default is

    L = 160 samples = 10.0 ms  (the engine adds ~7 ms: 16.9 ms in total at 48 kHz),

with which a 120 Hz voice gets voiced grains of +-73 samples (4.6 ms) at ``rf = 1``. A
``latency`` down to 128 (8 ms, 14.9 ms in total) may be passed to the constructor; grains
shrink with it. Whisper centres its 320-sample window on the delayed block; the window ends
``h / 2 + L - 160 = 40`` samples before ``t_end``: causal. Every mode and parameter value of an
instance reports the same ``L``, so voice switches stay time-aligned.

Known limits: at ``rf > 1`` a grain's content above ``8 kHz / rf`` aliases (speech has little
energy there); pitch down with short grains leaves gaps between them (plain PSOLA), which the
loudness match compensates in level but not in timbre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

from ._native.f0 import yin_frame
from ._native.lpc import lattice_allpole, levinson, noise_fill, warp_lpc, windowed_autocorr
from ._native.psola import (F_BETA, F_LAST_SPACING, F_PREV_VOICED, F_RF, F_S_NEXT, LOG_COLS, N_FST,
                            XCORR_RADIUS, crossfade_dry, match_power, ola_emit, psola_marks, push_finite)
from .errors import ConfigError
from .f0 import CausalF0
from .params import Params
from .types import HOP, MODEL_RATE, Audio

__all__ = ["DspVoice", "DspState", "MODES", "LATENCY", "LATENCY_RANGE", "ROBOT_F0_HZ"]

MODES = ("shift", "robot", "whisper")
LATENCY = 160
"""Default stage latency in samples at 16 kHz (see the module docstring for the arithmetic)."""
LATENCY_RANGE = (128, 240)  # accepted ``latency`` values; below 128 grains get too short for low voices
ROBOT_F0_HZ = 110.0
TAU_GLIDE = 160.0  # ratio glide time constant, samples (10 ms)
ALIGN_GAIN = 0.25  # mark-alignment nudge per grain when the pitch ratio is 1 (see psola_marks)
W_FLOOR = 1.0  # overlap-add normalisation floor (lower floors measured worse on speech)
NEUTRAL_FADE = 240  # neutral <-> processed cross-fade, samples (15 ms)
AGC_TAU_S = 0.040  # loudness match: time constant of the power averages
AGC_MAX = 4.0  # at most +-12 dB of loudness correction
N_HIST = 2048  # input history beyond the hop, samples
N_ACC = 320  # overlap-add accumulator beyond the hop, samples (grains end < t_end + 2 * 134)
LPC_ORDER = 16
LPC_WINDOW = 320
LPC_LAG_BW_HZ = 40.0
NOISE_SEED = 0x9E3779B97F4A7C15


@dataclass
class DspState:
    """Everything one ``DspVoice`` stream owns (allocated in ``init_state``)."""

    t_end: int  # absolute input samples received
    nonfinite: int  # input samples replaced by 0 because they were not finite
    hist: np.ndarray  # float32 (N_HIST + hop,), input history, newest last
    y_acc: np.ndarray  # float64 (hop + N_ACC,), starts at the block being produced
    w_acc: np.ndarray  # float64 (hop + N_ACC,)
    wet: np.ndarray  # float64 (hop,)
    out: np.ndarray  # float32 (hop,), the returned block
    fst: np.ndarray  # float64 (N_FST,), PSOLA scheduler state
    log: np.ndarray  # float64 (n_log, LOG_COLS), grain log (diagnostics, tests)
    dry_w: np.ndarray  # float64 (1,), neutral cross-fade weight
    agc: np.ndarray  # float64 (3,), loudness match state [p_in, p_out, gain]
    d: np.ndarray  # float64 (tau_max + 1,), YIN scratch
    cmndf: np.ndarray  # float64 (tau_max + 1,)
    f0_hz: float  # last F0 estimate (0 = unvoiced), for telemetry and tests
    # whisper
    lpc_win: np.ndarray  # float64 (LPC_WINDOW,)
    r: np.ndarray  # float64 (order + 1,)
    rw: np.ndarray  # float64 (order + 1,)
    a: np.ndarray  # float64 (order + 1,), predictor polynomial
    k: np.ndarray  # float64 (order + 1,), reflection coefficients
    tmp: np.ndarray  # float64 (order + 1,), Levinson scratch
    b: np.ndarray  # float64 (order,), lattice state
    noise: np.ndarray  # float64 (hop,)
    rng: np.ndarray  # uint64 (1,)
    gain: float


class DspVoice:
    """A DSP voice stage (no model): pitch/formant shift, robot or whisper.

    Parameters
    ----------
    mode : {"shift", "robot", "whisper"}
    model_rate : int
        Must be 16000 (the grain and latency arithmetic is in samples at 16 kHz).
    hop : int
        Samples per step, in [16, 320] (the engine uses 80).
    latency : int
        Stage latency in samples, in ``LATENCY_RANGE`` (default ``LATENCY``). Shorter means
        shorter grains (measured: 128 instead of 160 raises the near-neutral mel-spectral
        distortion on speech from 2.2 to 2.9 dB).
    log_grains : int
        Keep the first ``log_grains`` PSOLA grains in ``state.log`` (diagnostics; default 0).

    Attributes
    ----------
    latency : int
        The same for every mode and parameter value of this instance: ``LATENCY`` = 160 samples
        (10 ms) unless the constructor was given another value in ``LATENCY_RANGE``.
    """

    def __init__(self, *, mode: str, model_rate: int = MODEL_RATE, hop: int = HOP, latency: int = LATENCY,
                 log_grains: int = 0) -> None:
        if mode not in MODES:
            raise ConfigError(f"DSP voice mode {mode!r} is unknown; expected one of {list(MODES)}")
        if model_rate != MODEL_RATE:
            raise ConfigError(f"DSP voice model_rate={model_rate!r} Hz is not supported; expected {MODEL_RATE}")
        if not isinstance(hop, int) or not (16 <= hop <= 320):
            # the pitch estimate is refreshed once per hop: at most every 20 ms
            raise ConfigError(f"DSP voice hop={hop!r}: expected an integer in [16, 320] samples")
        lo, hi = LATENCY_RANGE
        if not isinstance(latency, int) or isinstance(latency, bool) or not (lo <= latency <= hi):
            raise ConfigError(f"DSP voice latency={latency!r}: expected an integer in [{lo}, {hi}] samples")
        self.mode = mode
        self.model_rate = model_rate
        self.hop = hop
        self.latency = latency
        # unvoiced grains need g * (1 + 1.4) + 4 <= latency (see the module docstring)
        self.g_unvoiced = float(math.floor((latency - 4) / 2.4))
        self.gcap = float(latency - 5 - XCORR_RADIUS)
        self.n_hist = N_HIST + hop
        self._agc_alpha = 1.0 - math.exp(-hop / (AGC_TAU_S * model_rate))
        self.log_grains = int(log_grains)
        self._f0 = CausalF0(sample_rate=model_rate, hop=hop)
        self._lpc_win = np.hanning(LPC_WINDOW + 2)[1:-1].astype(np.float64)
        lag_bw = 2.0 * math.pi * LPC_LAG_BW_HZ / model_rate
        self._lag_win = np.exp(-0.5 * (lag_bw * np.arange(LPC_ORDER + 1)) ** 2)
        self._lag_win[0] = 1.0 + 1e-6  # white-noise correction
        self._win_energy = float(np.dot(self._lpc_win, self._lpc_win))
        self.set_params(Params())

    # ------------------------------------------------------------------ parameters
    def set_params(self, params: Params) -> None:
        """Swap the parameter snapshot (state is untouched; the change glides)."""
        if not isinstance(params, Params):
            raise ConfigError(f"DspVoice.set_params takes a Params snapshot, got {type(params).__name__}")
        self.params = params
        self._beta = 2.0 ** (params.pitch_st / 12.0)
        self._rf = float(params.formant_ratio)
        self._neutral = self.mode == "shift" and params.pitch_st == 0.0 and params.formant_ratio == 1.0
        self._fixed_period = self.model_rate / ROBOT_F0_HZ if self.mode == "robot" else 0.0
        # with no pitch change, lock the PSOLA marks onto the neutral path's timing
        self._align = ALIGN_GAIN if (self.mode == "shift" and params.pitch_st == 0.0) else 0.0

    # ------------------------------------------------------------------ stream
    def init_state(self) -> DspState:
        f0 = self._f0
        fst = np.zeros(N_FST, np.float64)
        fst[F_S_NEXT] = 0.0
        fst[F_BETA] = self._beta
        fst[F_RF] = self._rf
        fst[F_PREV_VOICED] = 0.0
        fst[F_LAST_SPACING] = 0.0
        return DspState(
            t_end=0,
            nonfinite=0,
            hist=np.zeros(self.n_hist, np.float32),
            y_acc=np.zeros(self.hop + N_ACC, np.float64),
            w_acc=np.zeros(self.hop + N_ACC, np.float64),
            wet=np.zeros(self.hop, np.float64),
            out=np.zeros(self.hop, np.float32),
            fst=fst,
            log=np.zeros((self.log_grains, LOG_COLS), np.float64),
            dry_w=np.array([1.0 if self._neutral else 0.0]),
            agc=np.array([0.0, 0.0, 1.0]),
            d=np.zeros(f0.tau_max + 1, np.float64),
            cmndf=np.zeros(f0.tau_max + 1, np.float64),
            f0_hz=0.0,
            lpc_win=self._lpc_win,
            r=np.zeros(LPC_ORDER + 1, np.float64),
            rw=np.zeros(LPC_ORDER + 1, np.float64),
            a=np.zeros(LPC_ORDER + 1, np.float64),
            k=np.zeros(LPC_ORDER + 1, np.float64),
            tmp=np.zeros(LPC_ORDER + 1, np.float64),
            b=np.zeros(LPC_ORDER, np.float64),
            noise=np.zeros(self.hop, np.float64),
            rng=np.array([NOISE_SEED], np.uint64),
            gain=0.0,
        )

    def step(self, x: Audio, state: DspState) -> tuple[Audio, DspState]:
        """Consume ``hop`` samples at 16 kHz; return ``hop`` samples (a view owned by ``state``)."""
        h = self.hop
        if x.shape != (h,):
            raise ConfigError(f"DspVoice.step got shape {x.shape}; expected ({h},)")
        hist = state.hist
        state.nonfinite += push_finite(hist, x)  # bad numbers never enter the state
        state.t_end += h
        if self.mode == "whisper":
            self._whisper(state)
            return state.out, state
        f0 = self._f0
        f0_hz, _ = yin_frame(hist[self.n_hist - f0.frame_len:], f0.tau_min, f0.tau_max, f0.threshold, f0.silence_ms,
                             float(self.model_rate), state.d, state.cmndf)
        state.f0_hz = f0_hz
        lag = self.model_rate / f0_hz if f0_hz > 0.0 else 0.0
        psola_marks(hist, state.t_end, h, state.y_acc, state.w_acc, lag, self._beta, self._rf, self._fixed_period,
                    self.latency, self.gcap, self.g_unvoiced, TAU_GLIDE, self._align, state.fst, state.log)
        ola_emit(state.y_acc, state.w_acc, W_FLOOR, state.wet)
        nh = self.n_hist
        dry = hist[nh - h - self.latency:nh - self.latency]
        match_power(dry, state.wet, state.agc, self._agc_alpha, AGC_MAX)
        crossfade_dry(dry, state.wet, state.dry_w, 1.0 if self._neutral else 0.0, 1.0 / NEUTRAL_FADE, state.out)
        return state.out, state

    def _whisper(self, state: DspState) -> None:
        h = self.hop
        # the window is centred on the delayed block: input [t_end - h - L, t_end - L)
        end = min(self.n_hist, self.n_hist - h // 2 - self.latency + LPC_WINDOW // 2)
        seg = state.hist[end - LPC_WINDOW:end]
        windowed_autocorr(seg, state.lpc_win, state.r)
        state.r *= self._lag_win
        err = levinson(state.r, state.a, state.k, state.tmp)
        power = err
        if self._rf != 1.0 and err > 0.0:
            warp_lpc(state.a, err, self._rf, state.rw)
            state.rw[0] *= 1.0 + 1e-9
            err_w = levinson(state.rw, state.a, state.k, state.tmp)
            # keep the frame's power: the warped envelope's own power is rw[0]
            power = err_w * state.r[0] / state.rw[0] if state.rw[0] > 0.0 else 0.0
        gain = math.sqrt(max(power, 0.0) / self._win_energy)
        noise_fill(state.rng, state.noise)
        lattice_allpole(state.noise, state.gain, gain, state.k, state.b, state.out)
        state.gain = gain

    def process(self, x: Audio) -> Audio:
        """Offline convenience: run a fresh stream over ``x`` (zero-padded to whole hops)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ConfigError(f"DspVoice.process got shape {x.shape}; expected (n_samples,)")
        n = x.shape[0]
        nh = -(-n // self.hop)
        xp = np.zeros(nh * self.hop, np.float32)
        xp[:n] = x
        y = np.empty_like(xp)
        st = self.init_state()
        for i in range(nh):
            blk, st = self.step(xp[i * self.hop:(i + 1) * self.hop], st)
            y[i * self.hop:(i + 1) * self.hop] = blk
        return y[:n]
