"""Framing, windowing and overlap-add for a causal, low-latency STFT.

The analysis frame of hop ``t`` is the ``n_fft`` samples that *end* at the last sample of that
hop (causal, no look-ahead). Synthesis uses an asymmetric window pair (Mauler & Martin): a long
analysis window ``w_a`` (length ``n_fft``) whose last ``syn_len // 2`` samples fall like a short
window, and a synthesis window ``w_s`` that is non-zero only on the last ``syn_len`` samples of
the frame, chosen so that ``w_a * w_s`` is a periodic Hann window of length ``syn_len``, which
sums to a constant at hop ``syn_len // 2`` (or any hop dividing it). The overlap-add output is
then complete ``syn_len - hop`` samples after the frame end: that is the whole delay, set by the
short synthesis window, not by the long analysis window.

The FFT is :mod:`.fft` (callable from kernels): the per-hop analysis and synthesis are each one
compiled call (:mod:`.analysis`, :func:`.synth.pulse_noise_hop`), which a NumPy FFT between
kernels would break up (``np.fft.rfft`` of 512 points costs ~13-15 us from Python, nearly all
call overhead; the kernel FFT a few microseconds).

State arrays are caller-allocated:
- ``buf``: float32 ``(n_fft,)`` analysis history, ``buf[-1]`` is the newest input sample.
- ``ola``: float32 ``(syn_len,)`` overlap-add accumulator aligned with the last ``syn_len``
  samples of the newest frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["asymmetric_windows", "push_hop", "window_frame", "push_window", "ola_step", "causal_frames",
           "overlap_add"]


def asymmetric_windows(n_fft: int, syn_len: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis / synthesis window pair for a low-delay STFT.

    Parameters
    ----------
    n_fft : int
        Analysis window length in samples (even).
    syn_len : int
        Synthesis window length in samples (even, ``<= n_fft``); the OLA delay is
        ``syn_len - hop``.
    hop : int
        Hop in samples; ``syn_len`` must be a multiple of it.

    Returns
    -------
    w_a : np.ndarray, float32, shape (n_fft,)
    w_s : np.ndarray, float32, shape (n_fft,)
        Zero except on the last ``syn_len`` samples; ``sum_j (w_a*w_s)[n + j*hop] == 1``.
    """
    if n_fft % 2 or syn_len % 2 or syn_len > n_fft or syn_len % hop:
        raise ValueError(f"n_fft={n_fft}, syn_len={syn_len}, hop={hop}: need even sizes, "
                         "syn_len <= n_fft and syn_len a multiple of hop")
    m = syn_len // 2
    rise = n_fft - m
    # sqrt-Hann rising over ``rise`` samples, sqrt-Hann falling over ``m`` samples; the offsets
    # of half a sample keep every value strictly positive (no division by zero below).
    n_r = np.arange(rise, dtype=np.float64) + 0.5
    n_f = np.arange(m, dtype=np.float64) + 0.5
    w_a = np.concatenate([np.sqrt(0.5 - 0.5 * np.cos(np.pi * n_r / rise)),
                          np.sqrt(0.5 + 0.5 * np.cos(np.pi * n_f / m))])
    n_h = np.arange(syn_len, dtype=np.float64) + 0.5
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n_h / syn_len)
    hann *= hop / (0.5 * syn_len)  # periodic Hann sums to syn_len/2/hop... scale to sum 1
    w_s = np.zeros(n_fft, np.float64)
    w_s[n_fft - syn_len:] = hann / w_a[n_fft - syn_len:]
    return w_a.astype(np.float32), w_s.astype(np.float32)


@njit(cache=True, nogil=True)
def push_hop(buf: np.ndarray, x: np.ndarray) -> None:
    """Shift ``buf`` left by ``len(x)`` and append ``x`` (newest sample last)."""
    n = buf.shape[0]
    h = x.shape[0]
    for i in range(n - h):
        buf[i] = buf[i + h]
    for i in range(h):
        buf[n - h + i] = x[i]


@njit(cache=True, nogil=True)
def window_frame(buf: np.ndarray, win: np.ndarray, out: np.ndarray) -> None:
    """``out = buf * win`` (all ``(n_fft,)``)."""
    for i in range(buf.shape[0]):
        out[i] = buf[i] * win[i]


@njit(cache=True, nogil=True)
def ola_step(frame: np.ndarray, w_s: np.ndarray, ola: np.ndarray, out: np.ndarray) -> None:
    """Add the synthesis-windowed tail of ``frame`` into ``ola``; emit ``len(out)`` samples.

    Parameters
    ----------
    frame : (n_fft,) float
        Time-domain frame (inverse FFT of the modified spectrum).
    w_s : (n_fft,) float32
        Synthesis window (non-zero on the last ``syn_len`` samples).
    ola : (syn_len,) float32
        Accumulator, shifted by ``hop`` on every call.
    out : (hop,) float32
        The ``hop`` completed samples, which end ``syn_len - hop`` samples before the frame end.
    """
    n = frame.shape[0]
    s = ola.shape[0]
    h = out.shape[0]
    off = n - s
    for i in range(s):
        ola[i] += frame[off + i] * w_s[off + i]
    for i in range(h):
        out[i] = ola[i]
    for i in range(s - h):
        ola[i] = ola[i + h]
    for i in range(s - h, s):
        ola[i] = 0.0


@njit(cache=True, nogil=True)
def causal_frames(x: np.ndarray, win: np.ndarray, hop: int, out: np.ndarray) -> None:
    """Offline causal framing: ``out[t]`` is the windowed ``n_fft`` samples ending at sample
    ``(t + 1) * hop - 1`` of ``x`` (zeros before the start), as streaming ``push_hop`` sees them.

    ``out`` has shape ``(len(x) // hop, n_fft)``.
    """
    n = win.shape[0]
    for t in range(out.shape[0]):
        end = (t + 1) * hop
        for i in range(n):
            j = end - n + i
            out[t, i] = x[j] * win[i] if j >= 0 else 0.0


@njit(cache=True, nogil=True)
def overlap_add(frames: np.ndarray, w_s: np.ndarray, hop: int, out: np.ndarray) -> None:
    """Offline overlap-add of synthesis-windowed frames (frame ``t`` ends at ``(t+1)*hop - 1``);
    ``out`` has length ``n_frames * hop`` and is overwritten. Equals repeated ``ola_step`` with
    its output delayed by ``syn_len - hop``."""
    n = frames.shape[1]
    for i in range(out.shape[0]):
        out[i] = 0.0
    for t in range(frames.shape[0]):
        end = (t + 1) * hop
        for i in range(n):
            j = end - n + i
            if 0 <= j < out.shape[0] and w_s[i] != 0.0:
                out[j] += frames[t, i] * w_s[i]


@njit(cache=True, nogil=True)
def push_window(buf: np.ndarray, x: np.ndarray, win: np.ndarray, frame: np.ndarray) -> None:
    """``push_hop(buf, x)`` then ``window_frame(buf, win, frame)`` in one call."""
    push_hop(buf, x)
    window_frame(buf, win, frame)
