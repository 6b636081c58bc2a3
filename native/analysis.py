"""One frame of the neural voices' analysis in one compiled call: real FFT, MFCC, voicing
features, log magnitude and cepstrum (and, streaming, the F0 step and the framing before it).

These chain kernels that are tested on their own (:mod:`.fft`, :mod:`.mel`, :mod:`.cepstrum`,
:mod:`.f0`, :mod:`.spectral`); fused, a hop costs one dispatch instead of seven calls and a
NumPy FFT (``rtvc.features`` documents the features themselves).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cepstrum import log_magnitude, logmag_to_cepstrum
from .f0 import yin_step
from .fft import rfft
from .mel import mfcc_frame
from .spectral import push_window

__all__ = ["feature_frame", "feature_step"]


@njit(cache=True, nogil=True)
def feature_frame(frame: np.ndarray, f0_hz: float, periodicity: float, f0_ref_hz: float, fb: np.ndarray,
                  dct: np.ndarray, power_amin: float, cep_fwd: np.ndarray, mag_floor: float, perm: np.ndarray,
                  tw: np.ndarray, fft_work: np.ndarray, spec: np.ndarray, power: np.ndarray, mel: np.ndarray,
                  logmag: np.ndarray, cep: np.ndarray, feats: np.ndarray) -> None:
    """Features of one windowed frame.

    ``spec = rfft(frame)``; ``feats[:n_mfcc]`` = MFCC of ``spec`` (:func:`~.mel.mfcc_frame`),
    then ``log2(f0_hz / f0_ref_hz)`` (0 when unvoiced), voiced (0/1) and ``periodicity``;
    ``logmag`` = natural-log magnitude floored at ``mag_floor``; ``cep = cep_fwd @ logmag``.

    Parameters
    ----------
    frame : (n_fft,) float32
        Windowed analysis frame.
    f0_hz, periodicity : float
        This frame's F0 (0 = unvoiced) and periodicity.
    fb, dct : (n_mels, n_bins), (n_mfcc, n_mels) float32
    cep_fwd : (n_cep, n_bins) float32
    perm, tw, fft_work : real-FFT tables and scratch of :mod:`.fft` for ``n_fft``
    spec : (n_bins,) complex64; power : (n_bins,) float32; mel : (n_mels,) float32
    logmag : (n_bins,) float32; cep : (n_cep,) float32; feats : (n_mfcc + 3,) float32
        Outputs (``power`` and ``mel`` are scratch), overwritten.
    """
    rfft(frame, perm, tw, fft_work, spec)
    n_mfcc = dct.shape[0]
    mfcc_frame(spec, fb, dct, power_amin, power, mel, feats[:n_mfcc])
    voiced = f0_hz > 0.0
    feats[n_mfcc] = np.log2(f0_hz / f0_ref_hz) if voiced else 0.0
    feats[n_mfcc + 1] = 1.0 if voiced else 0.0
    feats[n_mfcc + 2] = periodicity
    log_magnitude(spec, mag_floor, logmag)
    logmag_to_cepstrum(logmag, cep_fwd, cep)


@njit(cache=True, nogil=True)
def feature_step(x: np.ndarray, f0_frame: np.ndarray, tau_min: int, tau_max: int, threshold: float,
                 silence_ms: float, sample_rate: float, f0_d: np.ndarray, f0_cmndf: np.ndarray, buf: np.ndarray,
                 w_a: np.ndarray, frame: np.ndarray, f0_ref_hz: float, fb: np.ndarray, dct: np.ndarray,
                 power_amin: float, cep_fwd: np.ndarray, mag_floor: float, perm: np.ndarray, tw: np.ndarray,
                 fft_work: np.ndarray, spec: np.ndarray, power: np.ndarray, mel: np.ndarray, logmag: np.ndarray,
                 cep: np.ndarray, feats: np.ndarray) -> tuple[float, float]:
    """Streaming hop: :func:`~.f0.yin_step` on ``x``, push ``x`` into ``buf`` and window it
    with ``w_a`` into ``frame``, then :func:`feature_frame` with the F0 and periodicity rounded
    to float32 (as the offline analysis stores them, so both give identical features).

    Parameters
    ----------
    x : (hop,) float32
    f0_frame, tau_min, tau_max, threshold, silence_ms, sample_rate, f0_d, f0_cmndf
        The F0 tracker's history, settings and scratch (:func:`~.f0.yin_step`).
    buf : (n_fft,) float32
        Analysis history; ``frame`` : (n_fft,) float32, overwritten.
    The rest as for :func:`feature_frame`.

    Returns
    -------
    f0_hz, periodicity : float
        Rounded to float32.
    """
    f, p = yin_step(f0_frame, x, tau_min, tau_max, threshold, silence_ms, sample_rate, f0_d, f0_cmndf)
    f0_hz = np.float64(np.float32(f))
    per = np.float64(np.float32(p))
    push_window(buf, x, w_a, frame)
    feature_frame(frame, f0_hz, per, f0_ref_hz, fb, dct, power_amin, cep_fwd, mag_floor, perm, tw, fft_work, spec,
                  power, mel, logmag, cep, feats)
    return f0_hz, per
