"""Frame features for the neural voices: streaming (per hop) and offline, bit-identical.

Every hop of ``hop`` samples at 16 kHz gives one frame. The analysis window (``n_fft`` samples,
the asymmetric window of :mod:`rtvc._native.spectral`) ends at the last sample of the hop: no
look-ahead. One STFT serves the features, the envelope and the synthesis.

Per frame:

- **input features** ``(N_INPUT,)`` float32, what the converter sees (speaker-independent-ish
  content plus prosody): ``mfcc`` (``N_MFCC`` coefficients, DCT-II of the log-mel power in dB,
  ``N_MELS`` Slaney mel bands), ``log_f0`` (octaves re 150 Hz, 0 when unvoiced), ``voiced``
  (0/1) and ``periodicity`` (0..1, from :mod:`rtvc.f0`).
- **target features** ``(N_CEP,)`` float32: the low-quefrency real cepstrum of the natural-log
  magnitude spectrum (the spectral envelope, level included in ``c0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._native.analysis import feature_frame, feature_step
from ._native.cepstrum import cepstrum_matrices
from ._native.fft import rfft_tables
from ._native.spectral import asymmetric_windows, causal_frames
from .errors import ConfigError
from .types import HOP, MODEL_RATE, N_CEP, Audio

__all__ = ["FeatureConfig", "FeatureExtractor", "Analysis", "analyze", "mel_filterbank", "dct_matrix",
           "input_feature_names", "N_FFT", "SYN_LEN", "N_MELS", "N_MFCC", "N_CEP", "N_INPUT"]

N_FFT = 512
"""Analysis window, samples at 16 kHz (32 ms)."""
SYN_LEN = 160
"""Synthesis window, samples (the OLA delay is ``SYN_LEN - HOP`` = 80 samples = 5 ms)."""
N_MELS = 40
N_MFCC = 20
N_INPUT = N_MFCC + 3
F0_REF_HZ = 150.0
MAG_FLOOR = 1e-5  # natural-log floor of the magnitude (-100 dB re full scale)
POWER_AMIN = 1e-10  # floor of the mel power before dB


def input_feature_names() -> list[str]:
    return [f"mfcc{i}" for i in range(N_MFCC)] + ["log_f0", "voiced", "periodicity"]


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above)."""
    f = np.asarray(f, np.float64)
    f_sp = 200.0 / 3.0
    logstep = np.log(6.4) / 27.0
    return np.where(f < 1000.0, f / f_sp, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / logstep)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp = 200.0 / 3.0
    logstep = np.log(6.4) / 27.0
    return np.where(m < 15.0, m * f_sp, 1000.0 * np.exp(logstep * (m - 15.0)))


def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float = 0.0,
                   fmax_hz: float | None = None, warp: float = 1.0) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, shape ``(n_mels, n_fft // 2 + 1)``, float32
    (the definition of ``librosa.filters.mel`` with its defaults, rebuilt without librosa).

    ``warp`` (> 0) is a frequency warp of the input (vocal-tract-length normalisation): each
    band reads the spectrum at ``warp`` times its own frequencies (the triangles are evaluated at
    ``f / warp``, their weights divided by ``warp``), so a speaker whose formants lie ``warp``
    times higher gives the mel energies an unwarped speaker would."""
    if not (np.isfinite(warp) and warp > 0.0):
        raise ConfigError(f"warp={warp!r}: expected a positive frequency ratio")
    fmax_hz = sample_rate / 2.0 if fmax_hz is None else fmax_hz
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1) / warp
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin_hz), _hz_to_mel(fmax_hz), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (mel_hz[2:] - mel_hz[:-2]) / warp)[:, None]
    return w.astype(np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """First ``n_out`` rows of the orthonormal DCT-II matrix ``(n_out, n_in)``, float32."""
    n = np.arange(n_in, dtype=np.float64)
    k = np.arange(n_out, dtype=np.float64)[:, None]
    d = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * n_in))
    d[0] *= np.sqrt(0.5)
    return d.astype(np.float32)


@dataclass(frozen=True)
class FeatureConfig:
    """Analysis constants, fixed per voice (written into the manifest)."""

    sample_rate: int = MODEL_RATE
    hop: int = HOP
    n_fft: int = N_FFT
    syn_len: int = SYN_LEN
    n_mels: int = N_MELS
    n_mfcc: int = N_MFCC
    n_cep: int = N_CEP

    def __post_init__(self) -> None:
        if self.sample_rate != MODEL_RATE:
            raise ConfigError(f"feature sample rate {self.sample_rate} Hz; expected {MODEL_RATE}")
        if self.hop != HOP:
            raise ConfigError(f"feature hop {self.hop} samples; expected {HOP}")
        if not 2 <= self.n_cep <= self.n_fft // 2:
            raise ConfigError(f"n_cep {self.n_cep}; expected 2..{self.n_fft // 2} cepstral coefficients")

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in ("sample_rate", "hop", "n_fft", "syn_len", "n_mels", "n_mfcc", "n_cep")}


@dataclass
class Analysis:
    """Offline analysis of a signal, one row per hop.

    Attributes
    ----------
    inputs : (n_frames, N_INPUT) float32
    cepstrum : (n_frames, n_cep) float32
    f0_hz, periodicity : (n_frames,) float32
    logmag : (n_frames, n_fft // 2 + 1) float32 or None
        Natural-log magnitude spectra (kept only when asked; training augments them).
    """

    inputs: np.ndarray
    cepstrum: np.ndarray
    f0_hz: np.ndarray
    periodicity: np.ndarray
    logmag: np.ndarray | None = None


class FeatureExtractor:
    """Streaming analysis: ``feats, state = fx.step(x_hop, state)``.

    ``feats`` is the ``(N_INPUT,)`` input-feature vector of the frame ending with this hop (a
    view into the state, valid until the next step). The state also carries what synthesis
    needs from the same frame: ``state["spec"]`` (complex rfft of the windowed frame),
    ``state["logmag"]``, ``state["cep"]`` (target-style cepstrum of the input),
    ``state["f0_hz"]`` and ``state["periodicity"]``; ``state["fb"]`` is the mel filterbank the
    stream uses (the extractor's own, or a copy of it the stream's owner may warp in place).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        from .f0 import CausalF0

        self.config = c = config or FeatureConfig()
        self.w_a, self.w_s = asymmetric_windows(c.n_fft, c.syn_len, c.hop)
        self.fb = mel_filterbank(sample_rate=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels)
        self.dct = dct_matrix(c.n_mfcc, c.n_mels)
        self.cep_fwd, self.cep_inv = cepstrum_matrices(c.n_fft, c.n_cep)
        self.f0 = CausalF0(sample_rate=c.sample_rate, hop=c.hop, fmin_hz=60, fmax_hz=600)
        self.fft_perm, self.fft_tw = rfft_tables(c.n_fft)
        self.n_bins = c.n_fft // 2 + 1
        self.n_input = c.n_mfcc + 3

    def init_state(self, *, own_filterbank: bool = False) -> dict[str, Any]:
        """A stream's buffers. With ``own_filterbank`` the stream gets its own copy of the mel
        filterbank (``state["fb"]``), which its owner may overwrite in place (a warped one)."""
        c = self.config
        fb = self.fb.copy() if own_filterbank else self.fb
        st: dict[str, Any] = {
            "buf": np.zeros(c.n_fft, np.float32),
            "frame": np.zeros(c.n_fft, np.float32),
            "spec": np.zeros(self.n_bins, np.complex64),
            "power": np.zeros(self.n_bins, np.float32),
            "logmag": np.zeros(self.n_bins, np.float32),
            "mel": np.zeros(c.n_mels, np.float32),
            "cep": np.zeros(c.n_cep, np.float32),
            "feats": np.zeros(self.n_input, np.float32),
            "fft_work": np.zeros(c.n_fft // 2, np.complex128),
            "f0": self.f0.init_state(),
            "f0_hz": 0.0,
            "periodicity": 0.0,
            "fb": fb,
        }
        # the frame kernel's arguments after (frame, f0_hz, periodicity), bound once: a hop is one call
        st["frame_args"] = (F0_REF_HZ, fb, self.dct, POWER_AMIN, self.cep_fwd, MAG_FLOOR, self.fft_perm,
                            self.fft_tw, st["fft_work"], st["spec"], st["power"], st["mel"], st["logmag"], st["cep"],
                            st["feats"])
        f0, t = st["f0"], self.f0
        st["step_args"] = (f0.frame, t.tau_min, t.tau_max, t.threshold, t.silence_ms, float(t.sample_rate), f0.d,
                           f0.cmndf, st["buf"], self.w_a, st["frame"]) + st["frame_args"]
        return st

    def _frame(self, frame: np.ndarray, f0_hz: float, per: float, st: dict[str, Any]) -> None:
        """Features of one windowed frame (the kernel ``step`` runs too: identical output)."""
        feature_frame(frame, f0_hz, per, *st["frame_args"])
        st["f0_hz"] = f0_hz
        st["periodicity"] = per

    def step(self, x: Audio, state: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        if x.shape != (self.config.hop,):
            raise ConfigError(f"FeatureExtractor.step got shape {x.shape}; expected ({self.config.hop},)")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)  # one compiled kernel signature
        # F0 and periodicity come back rounded through float32, exactly as ``analyze`` stores them
        state["f0_hz"], state["periodicity"] = feature_step(x, *state["step_args"])
        return state["feats"], state

    def analyze(self, x: Audio, *, keep_logmag: bool = False) -> Analysis:
        """Offline analysis of ``x`` (float32 mono at 16 kHz); equals streaming ``step`` frame
        by frame. Trailing samples that do not fill a hop are ignored."""
        from .f0 import track_f0

        c = self.config
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0] // c.hop
        frames = np.zeros((n, c.n_fft), np.float32)
        causal_frames(x, self.w_a, c.hop, frames)
        f0_hz, per = track_f0(x[: n * c.hop], sample_rate=c.sample_rate, hop=c.hop)
        st = self.init_state()
        out = Analysis(np.zeros((n, self.n_input), np.float32), np.zeros((n, c.n_cep), np.float32),
                       np.asarray(f0_hz[:n], np.float32), np.asarray(per[:n], np.float32),
                       np.zeros((n, self.n_bins), np.float32) if keep_logmag else None)
        for t in range(n):
            self._frame(frames[t], float(out.f0_hz[t]), float(out.periodicity[t]), st)
            out.inputs[t] = st["feats"]
            out.cepstrum[t] = st["cep"]
            if out.logmag is not None:
                out.logmag[t] = st["logmag"]
        return out


def analyze(x: Audio, *, keep_logmag: bool = False, config: FeatureConfig | None = None) -> Analysis:
    """Offline analysis with a fresh :class:`FeatureExtractor` (see there)."""
    return FeatureExtractor(config).analyze(x, keep_logmag=keep_logmag)
