"""Streaming resynthesis from a (converted) cepstral envelope, with a fixed 5 ms delay.

Two excitation methods, chosen per voice by measurement (see the manifest's ``synthesis``):

- ``"pulse-noise"``: a pulse train at the output F0 plus Gaussian noise, each flattened by its
  own cepstral envelope, mixed per bin by the voicing (voiced below ``VOICED_CUTOFF_HZ``), then
  shaped by the target envelope (source-filter vocoder).
- ``"source"``: the source's own STFT frame, flattened by the source envelope, its pitch moved
  by peak-locked bin shifting of the flat spectrum (ratio ``f0_hz / src_f0_hz`` on voiced
  frames, Laroche-Dolson phase rotation), then re-shaped by the target envelope.

Both run through one causal STFT (long asymmetric analysis window, short synthesis window) so
the delay is ``syn_len - hop`` samples whatever the method: :attr:`Synthesizer.latency`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._native.cepstrum import cepstrum_matrices, cepstrum_to_logenv, spectrum_envelope, warp_bins
from ._native.spectral import asymmetric_windows, ola_step, push_window
from ._native.synth import mix_excitation, pulse_noise_step, reshape_spectrum, shift_flat_spectrum
from .errors import ConfigError
from .features import MAG_FLOOR, FeatureConfig

__all__ = ["Synthesizer", "METHODS", "VOICED_CUTOFF_HZ"]

METHODS = ("pulse-noise", "source")
VOICED_CUTOFF_HZ = 4500.0
VOICED_WIDTH_HZ = 2000.0
MAX_GAIN_LOG = 12.0  # +-104 dB: a broken envelope cannot blow the output up


class Synthesizer:
    """``y = synth.step(cep_target, state, f0_hz=..., voicing=..., src_spec=..., src_cep=...)``.

    Parameters
    ----------
    method : {"pulse-noise", "source"}
    config : FeatureConfig
        Same analysis constants as the features (window pair, cepstrum order).
    seed : int
        Noise seed (the output is deterministic).
    """

    def __init__(self, method: str = "pulse-noise", *, config: FeatureConfig | None = None, seed: int = 0) -> None:
        if method not in METHODS:
            raise ConfigError(f"synthesis method {method!r}; expected one of {METHODS}")
        self.method = method
        self.config = c = config or FeatureConfig()
        self.seed = int(seed)
        self.w_a, self.w_s = asymmetric_windows(c.n_fft, c.syn_len, c.hop)
        self.cep_fwd, self.cep_inv = cepstrum_matrices(c.n_fft, c.n_cep)
        self.n_bins = c.n_fft // 2 + 1
        self.latency = c.syn_len - c.hop
        self.cutoff_bin = VOICED_CUTOFF_HZ * c.n_fft / c.sample_rate
        self.width_bins = VOICED_WIDTH_HZ * c.n_fft / c.sample_rate

    def init_state(self) -> dict[str, Any]:
        c, nb = self.config, self.n_bins
        z = lambda n, t=np.float32: np.zeros(n, t)  # noqa: E731
        return {
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
        }

    def _envelope(self, spec: np.ndarray, st: dict[str, Any], out: np.ndarray) -> None:
        spectrum_envelope(spec, MAG_FLOOR, self.cep_fwd, self.cep_inv, st["logmag"], st["cep"], out)

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
        tgt = st["tgt_env"]
        cepstrum_to_logenv(cep_target, self.cep_inv, tgt)
        if formant_ratio != 1.0:
            warp_bins(tgt, formant_ratio, st["tgt_warp"])
            tgt = st["tgt_warp"]
        if self.method == "pulse-noise":
            pulse_noise_step(f0_hz, float(self.config.sample_rate), st["st"], st["rng"], st["pulses"], st["noise"])
            push_window(st["pbuf"], st["pulses"], self.w_a, st["frame"])
            st["p_spec"][:] = np.fft.rfft(st["frame"])
            push_window(st["nbuf"], st["noise"], self.w_a, st["frame"])
            st["n_spec"][:] = np.fft.rfft(st["frame"])
            self._envelope(st["p_spec"], st, st["p_env"])
            self._envelope(st["n_spec"], st, st["n_env"])
            v = voicing if f0_hz > 0.0 else 0.0
            mix_excitation(st["p_spec"], st["n_spec"], st["p_env"], st["n_env"], v, self.cutoff_bin,
                           self.width_bins, st["exc"])
            reshape_spectrum(st["exc"], st["zero_env"], tgt, MAX_GAIN_LOG, st["out_spec"])
        else:
            if src_spec is None or src_cep is None:
                raise ConfigError("synthesis method 'source' needs src_spec and src_cep; got None")
            cepstrum_to_logenv(src_cep, self.cep_inv, st["src_env"])
            ratio = f0_hz / src_f0_hz if (f0_hz > 0.0 and src_f0_hz > 0.0) else 1.0
            ratio = min(4.0, max(0.25, ratio))
            shift_flat_spectrum(src_spec, st["src_env"], ratio, self.config.hop, self.config.n_fft, st["theta"],
                                st["mag"], st["peaks"], st["exc"])
            reshape_spectrum(st["exc"], st["zero_env"], tgt, MAX_GAIN_LOG, st["out_spec"])
        frame = np.fft.irfft(st["out_spec"], n=self.config.n_fft)
        ola_step(frame, self.w_s, st["ola"], st["out"])
        return st["out"]
