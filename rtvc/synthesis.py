"""Streaming resynthesis from a (converted) cepstral envelope, with a fixed 5 ms delay.

Two excitation methods, chosen per voice by measurement (see the manifest's ``synthesis``):

- ``"pulse-noise"``: a pulse train at the output F0 plus Gaussian noise, each flattened by its
  own cepstral envelope, mixed per bin by the voicing (voiced below ``VOICED_CUTOFF_HZ``), then
  shaped by the target envelope (source-filter vocoder).
- ``"source"``: the source's own STFT frame, flattened by the source envelope, its pitch moved
  by peak-locked bin shifting of the flat spectrum (ratio ``f0_hz / src_f0_hz`` on voiced
  frames, Laroche-Dolson phase rotation), then re-shaped by the target envelope.

Options (per voice, the manifest's ``synthesis_options``; absent keys keep the defaults, which
are the behaviour voices were first shipped with):

- ``phase``: ``"zero"`` (the envelope is applied as a real gain) or ``"minimum"`` (its minimum
  phase from the causal cepstrum: pulses become causal vocal-tract responses).
- ``voicing``: ``"fixed"`` (voiced weight = periodicity below ``VOICED_CUTOFF_HZ``) or
  ``"adaptive"`` (weight and cutoff from the periodicity, :func:`adaptive_voicing`).
- ``postfilter``: cepstral emphasis ``beta`` >= 1 of ``c2..`` with the power kept (1 = off);
  applied to the target envelope only (the converter's output is over-smoothed).
- ``f0_continuity``: 0 (off) or a CMNDF threshold above the tracker's own (0.15), up to 0.9:
  the synthesis' F0 keeps a voiced track going through frames the tracker calls unvoiced while
  the frame has a trough below it near the previous F0
  (:func:`rtvc._native.f0.yin_continue`); the converter's input features are not changed.
  Applied by the neural voice stage, which owns the tracker.
- ``f0_continuity_tolerance``: the relative lag window of that search (0.01..0.5, default 0.12).

Both run through one causal STFT (long asymmetric analysis window, short synthesis window) so
the delay is ``syn_len - hop`` samples whatever the method: :attr:`Synthesizer.latency`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._native.cepstrum import cepstrum_matrices, cepstrum_to_logenv, minimum_phase_matrix
from ._native.fft import rfft_tables
from ._native.spectral import asymmetric_windows
from ._native.synth import (adaptive_voicing, pulse_noise_hop, shape_overlap_add, shift_flat_spectrum,
                            target_envelope)
from .errors import ConfigError
from .features import MAG_FLOOR, FeatureConfig
from .params import number, shown

__all__ = ["Synthesizer", "METHODS", "VOICED_CUTOFF_HZ", "DEFAULT_OPTIONS", "check_options"]

METHODS = ("pulse-noise", "source")
VOICED_CUTOFF_HZ = 4500.0
VOICED_WIDTH_HZ = 2000.0
MAX_GAIN_LOG = 12.0  # +-104 dB: a broken envelope cannot blow the output up
DEFAULT_OPTIONS: dict[str, Any] = {"phase": "zero", "voicing": "fixed", "postfilter": 1.0, "f0_continuity": 0.0,
                                   "f0_continuity_tolerance": 0.12}
# adaptive voicing: periodicity -> voiced weight 0..1, cutoff between these (Hz)
ADAPT_LO, ADAPT_HI = 0.35, 0.8
ADAPT_MIN_CUTOFF_HZ, ADAPT_MAX_CUTOFF_HZ = 1500.0, 6000.0


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Synthesis options with defaults filled in; :class:`ConfigError` names a bad key or value."""
    opts = dict(DEFAULT_OPTIONS)
    for k, v in (options or {}).items():
        if k not in DEFAULT_OPTIONS:
            raise ConfigError(f"synthesis option {k!r}; expected one of {sorted(DEFAULT_OPTIONS)}")
        opts[k] = v
    if opts["phase"] not in ("zero", "minimum"):
        raise ConfigError(f"synthesis phase {opts['phase']!r}; expected 'zero' or 'minimum'")
    if opts["voicing"] not in ("fixed", "adaptive"):
        raise ConfigError(f"synthesis voicing {opts['voicing']!r}; expected 'fixed' or 'adaptive'")
    for key, ok, expected in (
            ("postfilter", lambda v: 1.0 <= v <= 2.0, "a number in [1, 2]"),
            ("f0_continuity", lambda v: v == 0.0 or 0.15 < v <= 0.9, "0 (off) or a CMNDF threshold in (0.15, 0.9]"),
            ("f0_continuity_tolerance", lambda v: 0.01 <= v <= 0.5, "a number in [0.01, 0.5]")):
        v = opts[key]
        try:  # any JSON number form; a 400-digit integer is refused, not an OverflowError
            x = number(v, what=f"synthesis {key}")
        except ConfigError:
            x = math.nan  # refused below, with this option's own range
        if not ok(x):
            raise ConfigError(f"synthesis {key} {shown(v)}; expected {expected}")
        opts[key] = x
    return opts


class Synthesizer:
    """``y = synth.step(cep_target, state, f0_hz=..., voicing=..., src_spec=..., src_cep=...)``.

    Parameters
    ----------
    method : {"pulse-noise", "source"}
    config : FeatureConfig
        Same analysis constants as the features (window pair, cepstrum order).
    seed : int
        Noise seed (the output is deterministic).
    options : dict, optional
        ``phase``, ``voicing``, ``postfilter`` (see the module docstring); defaults
        :data:`DEFAULT_OPTIONS`.
    """

    def __init__(self, method: str = "pulse-noise", *, config: FeatureConfig | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None) -> None:
        if method not in METHODS:
            raise ConfigError(f"synthesis method {method!r}; expected one of {METHODS}")
        self.method = method
        self.options = check_options(options)
        self.min_phase = self.options["phase"] == "minimum"
        self.adaptive = self.options["voicing"] == "adaptive"
        self.postfilter = self.options["postfilter"]
        self.config = c = config or FeatureConfig()
        self.seed = int(seed)
        self.w_a, self.w_s = asymmetric_windows(c.n_fft, c.syn_len, c.hop)
        self.cep_fwd, self.cep_inv = cepstrum_matrices(c.n_fft, c.n_cep)
        self.cep_phase = minimum_phase_matrix(c.n_fft, c.n_cep)
        self.n_bins = c.n_fft // 2 + 1
        self.latency = c.syn_len - c.hop
        self.cutoff_bin = VOICED_CUTOFF_HZ * c.n_fft / c.sample_rate
        self.width_bins = VOICED_WIDTH_HZ * c.n_fft / c.sample_rate
        self.fft_perm, self.fft_tw = rfft_tables(c.n_fft)
        self.pulse_noise = method == "pulse-noise"

    def init_state(self) -> dict[str, Any]:
        c, nb = self.config, self.n_bins
        z = lambda n, t=np.float32: np.zeros(n, t)  # noqa: E731
        st: dict[str, Any] = {
            "pbuf": z(c.n_fft), "nbuf": z(c.n_fft), "frame": z(c.n_fft),
            "pulses": z(c.hop), "noise": z(c.hop),
            "st": np.zeros(2, np.float64),
            "rng": np.array([0x9E3779B97F4A7C15 ^ (self.seed * 2654435761 + 1)], np.uint64),
            "p_spec": z(nb, np.complex64), "n_spec": z(nb, np.complex64), "exc": z(nb, np.complex64),
            "out_spec": z(nb, np.complex64),
            "logmag": z(nb), "cep": z(c.n_cep), "p_env": z(nb), "n_env": z(nb),
            "src_env": z(nb), "tgt_env": z(nb), "tgt_warp": z(nb), "zero_env": z(nb),
            "ola": z(c.syn_len), "out": z(c.hop), "theta": np.zeros(nb, np.float64),
            "mag": z(nb), "peaks": np.zeros(nb, np.int64),
            "phase": z(nb), "phase_warp": z(nb), "env_a": z(nb),
            "voicing": np.zeros(2, np.float64),
            "fft_work": z(c.n_fft // 2, np.complex128), "target": z(nb), "target_phase": z(nb),
        }
        # the kernels' constant arguments, bound once per stream: a hop is one compiled call
        consts = (float(c.sample_rate), self.width_bins, self.postfilter, self.min_phase, MAX_GAIN_LOG, MAG_FLOOR,
                  self.w_a, self.w_s, self.cep_fwd, self.cep_inv, self.cep_phase, self.fft_perm, self.fft_tw)
        st["pulse_noise_args"] = consts + tuple(st[k] for k in (
            "fft_work", "st", "rng", "pulses", "noise", "pbuf", "nbuf", "frame", "p_spec", "n_spec", "logmag", "cep",
            "p_env", "n_env", "exc", "tgt_env", "env_a", "tgt_warp", "phase", "phase_warp", "zero_env", "out_spec",
            "ola", "out"))
        st["target_args"] = (self.cep_inv, self.cep_phase, self.postfilter, self.min_phase, st["tgt_env"],
                             st["env_a"], st["tgt_warp"], st["phase"], st["phase_warp"], st["target"],
                             st["target_phase"])
        st["shape_args"] = (st["target"], st["target_phase"], self.min_phase, MAX_GAIN_LOG, st["zero_env"],
                            self.fft_perm, self.fft_tw, st["fft_work"], self.w_s, st["out_spec"], st["frame"],
                            st["ola"], st["out"])
        return st

    def step(self, cep_target: np.ndarray, state: dict[str, Any], *, f0_hz: float = 0.0, voicing: float = 0.0,
             formant_ratio: float = 1.0, src_spec: np.ndarray | None = None,
             src_cep: np.ndarray | None = None, src_f0_hz: float = 0.0) -> np.ndarray:
        """One hop of output (a view into the state, valid until the next step).

        Parameters
        ----------
        cep_target : (n_cep,) float32
            Target cepstrum of this frame.
        f0_hz, voicing : float
            Output F0 (0 = unvoiced) and voicing strength 0..1 (``pulse-noise``).
        formant_ratio : float
            Extra warp of the target envelope (>1 higher formants).
        src_spec, src_cep, src_f0_hz : (n_bins,) complex, (n_cep,) float32, float
            The source frame, its cepstrum and F0 (``source`` method).
        """
        st = state
        if self.pulse_noise:
            v = voicing if f0_hz > 0.0 else 0.0
            cutoff_bin = self.cutoff_bin
            if self.adaptive:
                vc = st["voicing"]
                adaptive_voicing(v, ADAPT_LO, ADAPT_HI, ADAPT_MIN_CUTOFF_HZ, ADAPT_MAX_CUTOFF_HZ, vc)
                v = vc[0] if f0_hz > 0.0 else 0.0
                cutoff_bin = vc[1] * self.config.n_fft / self.config.sample_rate
            pulse_noise_hop(cep_target, f0_hz, v, cutoff_bin, formant_ratio, *st["pulse_noise_args"])
            return st["out"]
        if src_spec is None or src_cep is None:
            raise ConfigError("synthesis method 'source' needs src_spec and src_cep; got None")
        target_envelope(cep_target, formant_ratio, *st["target_args"])
        cepstrum_to_logenv(src_cep, self.cep_inv, st["src_env"])
        ratio = f0_hz / src_f0_hz if (f0_hz > 0.0 and src_f0_hz > 0.0) else 1.0
        ratio = min(4.0, max(0.25, ratio))
        shift_flat_spectrum(src_spec, st["src_env"], ratio, self.config.hop, self.config.n_fft, st["theta"],
                            st["mag"], st["peaks"], st["exc"])
        shape_overlap_add(st["exc"], *st["shape_args"])
        return st["out"]
