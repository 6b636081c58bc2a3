"""Synthesis kernels: pulse + noise excitation in the time domain, and spectral shaping of an
excitation frame by a target log envelope.

State arrays are caller-allocated:
- ``st``: float64 ``[phase_cycles, pending_pulse]``.
- ``rng``: uint64 ``(1,)`` xorshift64* state (never 0); the noise is deterministic per seed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cepstrum import cepstrum_to_logenv, postfilter_logenv, spectrum_envelope, warp_bins
from .fft import irfft, rfft
from .spectral import ola_step, push_window

__all__ = ["pulse_noise_step", "mix_excitation", "reshape_spectrum", "apply_envelope", "adaptive_voicing",
           "shift_flat_spectrum", "target_envelope", "shape_overlap_add", "pulse_noise_hop"]


@njit(cache=True, nogil=True)
def _uniform(rng: np.ndarray) -> float:
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    r = x * np.uint64(2685821657736338717)
    return ((r >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740994.0)  # (0, 1)


@njit(cache=True, nogil=True)
def pulse_noise_step(f0_hz: float, sample_rate: float, st: np.ndarray, rng: np.ndarray,
                     pulses: np.ndarray, noise: np.ndarray) -> None:
    """One hop of a unit pulse train at ``f0_hz`` and of unit-variance Gaussian noise.

    A pulse falls where the phase wraps; its fractional position is kept by splitting it
    linearly between that sample and the next (the next may be in the next hop: ``pending``).
    ``f0_hz <= 0`` (unvoiced) emits no new pulses and freezes the phase.

    Parameters
    ----------
    pulses, noise : (hop,) float32
        Outputs, overwritten.
    """
    phase = st[0]
    pending = st[1]
    inc = f0_hz / sample_rate if f0_hz > 0.0 else 0.0
    for i in range(pulses.shape[0]):
        v = pending
        pending = 0.0
        if inc > 0.0:
            phase += inc
            if phase >= 1.0:
                phase -= 1.0
                d = phase / inc  # the wrap happened ``d`` samples before this one (0 <= d < 1)
                if d > 1.0:
                    d = 1.0
                v += 1.0 - d
                pending = d
        pulses[i] = v
        # Box-Muller, one value per call keeps the stream independent of the hop size
        u1 = _uniform(rng)
        u2 = _uniform(rng)
        noise[i] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    st[0] = phase
    st[1] = pending


@njit(cache=True, nogil=True)
def mix_excitation(p_spec: np.ndarray, n_spec: np.ndarray, p_logenv: np.ndarray, n_logenv: np.ndarray,
                   voicing: float, cutoff_bin: float, width_bins: float, out: np.ndarray) -> None:
    """Flatten pulse and noise spectra by their own log envelopes and mix them per bin.

    The voiced weight is ``voicing`` below ``cutoff_bin`` and falls to 0 over ``width_bins``
    above it (speech is noisier at high frequencies); powers add up to 1 in every bin.

    Parameters
    ----------
    p_spec, n_spec : (n_bins,) complex
        Spectra of the windowed pulse and noise frames.
    p_logenv, n_logenv : (n_bins,) float32
        Their natural-log cepstral envelopes.
    out : (n_bins,) complex
        Flat excitation spectrum (smoothed log magnitude ~ 0), overwritten.
    """
    for k in range(out.shape[0]):
        t = (k - cutoff_bin) / width_bins
        hf = 1.0 if t <= 0.0 else (0.0 if t >= 1.0 else 0.5 + 0.5 * np.cos(np.pi * t))
        v = voicing * hf
        a = np.sqrt(v) * np.exp(-p_logenv[k])
        b = np.sqrt(1.0 - v) * np.exp(-n_logenv[k])
        out[k] = p_spec[k] * a + n_spec[k] * b


@njit(cache=True, nogil=True)
def reshape_spectrum(spec: np.ndarray, logenv_from: np.ndarray, logenv_to: np.ndarray,
                     max_gain_log: float, out: np.ndarray) -> None:
    """``out = spec * exp(clip(logenv_to - logenv_from, -max_gain_log, max_gain_log))``.

    With ``logenv_from = 0`` this applies the envelope ``logenv_to`` to a flat excitation.
    """
    for k in range(out.shape[0]):
        g = logenv_to[k] - logenv_from[k]
        if g > max_gain_log:
            g = max_gain_log
        elif g < -max_gain_log:
            g = -max_gain_log
        out[k] = spec[k] * np.exp(g)


@njit(cache=True, nogil=True)
def apply_envelope(spec: np.ndarray, logenv: np.ndarray, phase: np.ndarray, max_gain_log: float,
                   out: np.ndarray) -> None:
    """``out = spec * exp(clip(logenv, -max_gain_log, max_gain_log) + 1j * phase)``.

    With ``phase`` the minimum phase of the envelope (see
    :func:`rtvc._native.cepstrum.minimum_phase_matrix`) each excitation pulse becomes a causal,
    front-loaded vocal-tract response instead of the symmetric zero-phase one (less buzzy).

    Parameters
    ----------
    spec : (n_bins,) complex
    logenv, phase : (n_bins,) float32
    out : (n_bins,) complex, overwritten
    """
    for k in range(out.shape[0]):
        g = logenv[k]
        if g > max_gain_log:
            g = max_gain_log
        elif g < -max_gain_log:
            g = -max_gain_log
        a = np.exp(g)
        out[k] = spec[k] * (a * np.cos(phase[k]) + 1j * (a * np.sin(phase[k])))


@njit(cache=True, nogil=True)
def adaptive_voicing(periodicity: float, lo: float, hi: float, min_cutoff_hz: float, max_cutoff_hz: float,
                     out: np.ndarray) -> None:
    """Voicing strength and voiced-band cutoff from the periodicity (a one-band aperiodicity).

    ``v = clip((periodicity - lo) / (hi - lo), 0, 1)``; strongly periodic frames get a fully
    harmonic low band (no hoarse noise under the harmonics) and harmonics up to high
    frequencies, weakly periodic ones a low cutoff (breathy):
    ``cutoff_hz = min_cutoff_hz + v * (max_cutoff_hz - min_cutoff_hz)``.

    Parameters
    ----------
    out : (2,) float64
        ``[v, cutoff_hz]``, overwritten.
    """
    v = (periodicity - lo) / (hi - lo)
    v = 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
    out[0] = v
    out[1] = min_cutoff_hz + v * (max_cutoff_hz - min_cutoff_hz)


@njit(cache=True, nogil=True)
def shift_flat_spectrum(spec: np.ndarray, logenv: np.ndarray, ratio: float, hop: int, n_fft: int,
                        theta: np.ndarray, mag: np.ndarray, peaks: np.ndarray, out: np.ndarray) -> None:
    """Pitch-shift the flattened spectrum ``spec / exp(logenv)`` by ``ratio`` with peak-locked
    bin shifting (Laroche & Dolson, 1999).

    Peaks are local maxima of the flat magnitude (over +-2 bins); each peak's region of
    influence (bins up to the midpoint to the next peak) moves as a block by the integer shift
    ``d = round((ratio - 1) * p)`` of its peak ``p`` (at fractional position ``pf``, parabolic
    fit), so the main-lobe shape is kept, and is rotated by ``theta[p]``, which grows by
    ``2 pi hop (ratio - 1) pf / n_fft`` per frame: the moved component advances its phase as a
    component at exactly ``ratio`` times its frequency would (harmonics stay harmonic). Overlapping
    regions add; bins nothing lands on stay zero. ``ratio == 1`` gives ``spec / exp(logenv)``.

    Parameters
    ----------
    spec : (n_bins,) complex
    logenv : (n_bins,) float32
    theta : (n_bins,) float64, state (phase rotation per bin)
    mag : (n_bins,) float32, work
    peaks : (n_bins,) int64, work
    out : (n_bins,) complex, overwritten
    """
    nb = spec.shape[0]
    two_pi = 2.0 * np.pi
    for j in range(nb):
        mag[j] = abs(spec[j]) * np.exp(-logenv[j])
        out[j] = 0.0
    n_pk = 0
    for j in range(nb):
        m = mag[j]
        is_pk = True
        for o in range(-2, 3):
            q = j + o
            if o != 0 and 0 <= q < nb and (mag[q] > m or (mag[q] == m and q < j)):
                is_pk = False
                break
        if is_pk:
            peaks[n_pk] = j
            n_pk += 1
    if n_pk == 0:
        return
    for q in range(n_pk):
        p = peaks[q]
        lo = 0 if q == 0 else (peaks[q - 1] + p) // 2 + 1
        hi = nb if q == n_pk - 1 else (p + peaks[q + 1]) // 2 + 1
        # the true peak position (parabolic fit on log magnitude) sets the phase advance, so the
        # moved component lands exactly at ratio * its frequency; the block moves by whole bins
        pf = float(p)
        if 0 < p < nb - 1 and mag[p - 1] > 0.0 and mag[p] > 0.0 and mag[p + 1] > 0.0:
            a0 = np.log(mag[p - 1])
            a1 = np.log(mag[p])
            a2 = np.log(mag[p + 1])
            den = a0 - 2.0 * a1 + a2
            if den < 0.0:
                pf = p + 0.5 * (a0 - a2) / den
        d = int(np.floor((ratio - 1.0) * pf + 0.5))
        th = theta[p] + two_pi * hop * (ratio - 1.0) * pf / n_fft
        th -= two_pi * np.floor(th / two_pi)
        c = np.cos(th)
        s = np.sin(th)
        for j in range(lo, hi):
            theta[j] = th  # the region inherits its peak's rotation: a peak moving inside it stays coherent
            k = j + d
            if 0 <= k < nb:
                a = mag[j] / max(abs(spec[j]), 1e-30)
                re = spec[j].real * a
                im = spec[j].imag * a
                out[k] += (re * c - im * s) + 1j * (re * s + im * c)


@njit(cache=True, nogil=True)
def _target(cep: np.ndarray, inv: np.ndarray, sin_m: np.ndarray, beta: float, ratio: float, min_phase: bool,
            env: np.ndarray, env_pf: np.ndarray, env_warp: np.ndarray, phase: np.ndarray,
            phase_warp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The target log envelope and phase (see :func:`target_envelope`); returns the arrays that
    hold them (``env``, ``env_pf`` or ``env_warp``; ``phase`` or ``phase_warp``)."""
    cepstrum_to_logenv(cep, inv, env)
    tgt = env
    if beta != 1.0:
        postfilter_logenv(env, cep, beta, inv, env_pf)
        tgt = env_pf
    ph = phase
    if min_phase:
        # the phase is linear in the cepstrum, so the postfiltered one follows without a product
        cepstrum_to_logenv(cep, sin_m, phase)
        if beta != 1.0:
            b1 = (beta - 1.0) * cep[1]
            for k in range(phase.shape[0]):
                phase[k] = phase[k] * beta - b1 * sin_m[k, 1]
    if ratio != 1.0:
        warp_bins(tgt, ratio, env_warp)
        tgt = env_warp
        if min_phase:
            warp_bins(phase, ratio, phase_warp)
            ph = phase_warp
    return tgt, ph


@njit(cache=True, nogil=True)
def target_envelope(cep: np.ndarray, ratio: float, inv: np.ndarray, sin_m: np.ndarray, beta: float,
                    min_phase: bool, env: np.ndarray, env_pf: np.ndarray, env_warp: np.ndarray, phase: np.ndarray,
                    phase_warp: np.ndarray, logenv_out: np.ndarray, phase_out: np.ndarray) -> None:
    """Target log envelope (and minimum phase) of a converted cepstrum, as the synthesis applies it.

    ``E = inv @ cep`` (:func:`~.cepstrum.cepstrum_to_logenv`); with ``beta != 1`` the cepstral
    postfilter :func:`~.cepstrum.postfilter_logenv`; with ``min_phase`` the phase
    ``sin_m @ cep`` (:func:`~.cepstrum.minimum_phase_matrix`), scaled like the postfilter
    (``c1`` kept, ``c2..`` times ``beta``); with ``ratio != 1`` both warped by
    :func:`~.cepstrum.warp_bins`.

    Parameters
    ----------
    cep : (n_cep,) float32
    ratio : float
        Formant warp.
    inv, sin_m : (n_bins, n_cep) float32
        Synthesis and minimum-phase matrices.
    beta : float
        Postfilter (1 = off).
    env, env_pf, env_warp, phase, phase_warp : (n_bins,) float32
        Scratch.
    logenv_out, phase_out : (n_bins,) float32
        The envelope and the phase (left alone without ``min_phase``), overwritten.
    """
    tgt, ph = _target(cep, inv, sin_m, beta, ratio, min_phase, env, env_pf, env_warp, phase, phase_warp)
    logenv_out[:] = tgt
    if min_phase:
        phase_out[:] = ph


@njit(cache=True, nogil=True)
def shape_overlap_add(exc: np.ndarray, logenv: np.ndarray, phase: np.ndarray, min_phase: bool, max_gain_log: float,
                      zero_env: np.ndarray, perm: np.ndarray, tw: np.ndarray, fft_work: np.ndarray, w_s: np.ndarray,
                      out_spec: np.ndarray, frame: np.ndarray, ola: np.ndarray, out: np.ndarray) -> None:
    """Shape a flat excitation spectrum by the target envelope and emit one hop of output:
    :func:`apply_envelope` (``min_phase``) or :func:`reshape_spectrum` from ``zero_env`` (all
    zeros) into ``out_spec``, inverse real FFT into ``frame`` (:func:`~.fft.irfft`), then
    :func:`~.spectral.ola_step` into ``out``."""
    if min_phase:
        apply_envelope(exc, logenv, phase, max_gain_log, out_spec)
    else:
        reshape_spectrum(exc, zero_env, logenv, max_gain_log, out_spec)
    irfft(out_spec, perm, tw, fft_work, frame)
    ola_step(frame, w_s, ola, out)


@njit(cache=True, nogil=True)
def pulse_noise_hop(cep: np.ndarray, f0_hz: float, voicing: float, cutoff_bin: float, ratio: float,
                    sample_rate: float, width_bins: float, beta: float, min_phase: bool, max_gain_log: float,
                    mag_floor: float, w_a: np.ndarray, w_s: np.ndarray, cep_fwd: np.ndarray, cep_inv: np.ndarray,
                    sin_m: np.ndarray, perm: np.ndarray, tw: np.ndarray, fft_work: np.ndarray, st: np.ndarray,
                    rng: np.ndarray, pulses: np.ndarray, noise: np.ndarray, pbuf: np.ndarray, nbuf: np.ndarray,
                    frame: np.ndarray, p_spec: np.ndarray, n_spec: np.ndarray, logmag: np.ndarray,
                    cep_work: np.ndarray, p_env: np.ndarray, n_env: np.ndarray, exc: np.ndarray,
                    env: np.ndarray, env_pf: np.ndarray, env_warp: np.ndarray, phase: np.ndarray,
                    phase_warp: np.ndarray, zero_env: np.ndarray, out_spec: np.ndarray, ola: np.ndarray,
                    out: np.ndarray) -> None:
    """One hop of the pulse + noise source-filter synthesis, in one call.

    In order: the target envelope of ``cep`` (:func:`target_envelope`: postfilter ``beta``,
    warp ``ratio``, minimum phase); one hop of pulses at ``f0_hz`` and of noise
    (:func:`pulse_noise_step`); each pushed into its history (``pbuf``, ``nbuf``), windowed by
    ``w_a`` and transformed (:func:`~.fft.rfft`); their own envelopes
    (:func:`~.cepstrum.spectrum_envelope`); flattened and mixed with voiced weight ``voicing``
    below ``cutoff_bin`` (:func:`mix_excitation`); shaped and overlap-added into ``out``
    (:func:`shape_overlap_add`).

    Parameters
    ----------
    cep : (n_cep,) float32
        Target cepstrum.
    f0_hz, voicing, cutoff_bin, ratio : float
        Output F0 (0 = unvoiced), voiced weight 0..1 (already 0 when unvoiced), voiced-band
        cutoff in bins, formant warp.
    sample_rate, width_bins, beta, min_phase, max_gain_log, mag_floor
        Constants of the synthesizer.
    w_a, w_s : (n_fft,) float32
        Analysis and synthesis windows.
    cep_fwd, cep_inv, sin_m : cepstral matrices (:mod:`.cepstrum`)
    perm, tw, fft_work : real-FFT tables and scratch (:mod:`.fft`)
    st, rng : the pulse train's and the noise's state (see the module docstring)
    pulses, noise : (hop,) float32; pbuf, nbuf, frame : (n_fft,) float32
    p_spec, n_spec, exc, out_spec : (n_bins,) complex64
    logmag, p_env, n_env, env, env_pf, env_warp, phase, phase_warp : (n_bins,) float32
    cep_work : (n_cep,) float32
    zero_env : (n_bins,) float32, all zeros
    ola : (syn_len,) float32
        Overlap-add state.
    out : (hop,) float32
        The hop of output, overwritten.
    """
    tgt, ph = _target(cep, cep_inv, sin_m, beta, ratio, min_phase, env, env_pf, env_warp, phase, phase_warp)
    pulse_noise_step(f0_hz, sample_rate, st, rng, pulses, noise)
    push_window(pbuf, pulses, w_a, frame)
    rfft(frame, perm, tw, fft_work, p_spec)
    push_window(nbuf, noise, w_a, frame)
    rfft(frame, perm, tw, fft_work, n_spec)
    spectrum_envelope(p_spec, mag_floor, cep_fwd, cep_inv, logmag, cep_work, p_env)
    spectrum_envelope(n_spec, mag_floor, cep_fwd, cep_inv, logmag, cep_work, n_env)
    mix_excitation(p_spec, n_spec, p_env, n_env, voicing, cutoff_bin, width_bins, exc)
    shape_overlap_add(exc, tgt, ph, min_phase, max_gain_log, zero_env, perm, tw, fft_work, w_s, out_spec, frame,
                      ola, out)
