"""Channel kernels of the Python audio callbacks: a device block (frames, channels) to and from mono.

The compiled callbacks (``pa_callback``, ``pulse_callback``) do the same inline; these serve
sounddevice's Python callbacks (``LiveRunner(callback="python")``), which must not allocate either.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["to_mono", "fan_out"]


@njit(cache=True, nogil=True)
def to_mono(indata: np.ndarray, channel: int, out: np.ndarray) -> None:
    """Select ``channel`` (>= 0) or mix all channels (-1) of ``indata`` (frames, ch) into ``out``."""
    n, nch = indata.shape
    if channel >= 0:
        for i in range(n):
            out[i] = indata[i, channel]
    else:
        s = np.float32(1.0 / nch)
        for i in range(n):
            acc = np.float32(0.0)
            for c in range(nch):
                acc += indata[i, c]
            out[i] = acc * s


@njit(cache=True, nogil=True)
def fan_out(mono: np.ndarray, gain: float, outdata: np.ndarray) -> None:
    """Copy ``mono`` (frames,) times ``gain`` into every channel of ``outdata`` (frames, ch)."""
    n, nch = outdata.shape
    g = np.float32(gain)
    for i in range(n):
        v = mono[i] * g
        for c in range(nch):
            outdata[i, c] = v
