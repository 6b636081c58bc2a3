"""Single-producer / single-consumer float32 ring buffer kernels.

The ring is three arrays: ``buf`` (float32, power-of-two length), and ``idx`` (int64, 2):
``idx[0]`` is the total number of samples ever written (owned by the producer), ``idx[1]`` the
total ever read (owned by the consumer). Each side only writes its own counter, and publishes
it after the samples are copied, so one producer thread and one consumer thread can use the
ring without a lock. Counters are monotonic: no wrap-around ambiguity between full and empty.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .intrinsics import fence

__all__ = ["ring_write", "ring_read", "ring_read_available", "ring_write_available", "ring_discard"]


@njit(cache=True, nogil=True)
def ring_read_available(idx: np.ndarray) -> int:
    return idx[0] - idx[1]


@njit(cache=True, nogil=True)
def ring_write_available(buf: np.ndarray, idx: np.ndarray) -> int:
    return buf.shape[0] - (idx[0] - idx[1])


@njit(cache=True, nogil=True)
def ring_write(buf: np.ndarray, idx: np.ndarray, x: np.ndarray) -> int:
    """Copy as much of ``x`` as fits; return the number of samples written (producer side)."""
    size = buf.shape[0]
    mask = size - 1
    w = idx[0]
    free = size - (w - idx[1])
    n = min(free, x.shape[0])
    for i in range(n):
        buf[(w + i) & mask] = x[i]
    fence()  # samples before the counter that publishes them
    idx[0] = w + n
    return n


@njit(cache=True, nogil=True)
def ring_read(buf: np.ndarray, idx: np.ndarray, out: np.ndarray) -> int:
    """Fill ``out`` from the ring as far as samples are available; return the count (consumer side)."""
    mask = buf.shape[0] - 1
    r = idx[1]
    n = min(idx[0] - r, out.shape[0])
    fence()  # the producer's counter before its samples
    for i in range(n):
        out[i] = buf[(r + i) & mask]
    fence()  # finish reading before the slots are handed back
    idx[1] = r + n
    return n


@njit(cache=True, nogil=True)
def ring_discard(idx: np.ndarray, n: int) -> int:
    """Drop up to ``n`` of the oldest samples (consumer side); return how many were dropped."""
    k = min(idx[0] - idx[1], n)
    idx[1] = idx[1] + k
    return k
