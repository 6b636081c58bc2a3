"""The rings the callbacks and the block worker share, in process memory or in shared memory.

A :class:`Ring` is a float32 single-producer / single-consumer ring (``rtvc._native.ring``):
one thread writes, one thread reads, no lock. Its size is a power of two, checked when it is
made. :class:`Rings` is everything the audio path shares: the input, output and monitor rings,
one counter array per stream role (the compiled callbacks' layout, :data:`rtvc.telemetry.Counter`)
and a small control array. :class:`SharedBlock` puts them in one shared-memory mapping, so the
callbacks (in the runner's process) and a worker process meet there. Wake-ups: the input side
signals an eventfd (:func:`wake`; the compiled callback does it in C) on which the worker sleeps.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._native.ring import ring_discard, ring_read, ring_read_available, ring_write, ring_write_available
from ..telemetry import N_COUNTERS, ROLES

__all__ = ["Ring", "Rings", "SharedBlock", "new_wake_fd", "wake", "poll_interval_s", "CTL_STOP", "CTL_LOOPS"]

CTL_STOP, CTL_LOOPS, CTL_N = 0, 1, 8
"""The control array: the worker process's stop flag, its loop count."""
_log = logging.getLogger("rtvc.audio")


def pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (at least 2)."""
    return 1 << int(math.ceil(math.log2(max(2, n))))


class Ring:
    """A float32 SPSC ring over ``buf`` (power-of-two length) and ``idx`` (int64: samples ever
    written, ever read). The producer thread calls :meth:`write`, the consumer :meth:`readinto`
    and :meth:`discard`; either may ask :meth:`read_available` / :meth:`write_available`. Who the
    producer and the consumer are is said where a ring is used (the input ring: a callback or the
    file clock writes, the worker reads; the output and monitor rings the other way round)."""

    __slots__ = ("buf", "idx")

    def __init__(self, buf: np.ndarray, idx: np.ndarray) -> None:
        n = buf.shape[0]
        if buf.dtype != np.float32 or buf.ndim != 1 or n < 2 or n & (n - 1):
            raise ValueError(f"ring buffer of {buf.dtype} {buf.shape}; expected float32 of a power-of-two length")
        if idx.dtype != np.int64 or idx.shape[0] < 2:
            raise ValueError(f"ring index of {idx.dtype} {idx.shape}; expected int64 of length 2")
        self.buf = buf
        self.idx = idx

    def write(self, x: np.ndarray) -> int:
        """Copy as much of ``x`` as fits; the number of samples written (producer)."""
        return int(ring_write(self.buf, self.idx, x))

    def readinto(self, out: np.ndarray) -> int:
        """Fill ``out`` with what is there; the number of samples read (consumer)."""
        return int(ring_read(self.buf, self.idx, out))

    def discard(self, n: int) -> int:
        """Drop the ``n`` oldest samples (consumer)."""
        return int(ring_discard(self.idx, n))

    def read_available(self) -> int:
        return int(ring_read_available(self.idx))

    def write_available(self) -> int:
        return int(ring_write_available(self.buf, self.idx))


class Rings:
    """The input, output and monitor :class:`Ring`, the callback counters ``counts[role]`` (int64,
    ``N_COUNTERS``, written only by that role's callback or the file clock) and the control
    array ``ctl``. Plain process memory (:meth:`local`) or a :class:`SharedBlock`."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.input = Ring(arrays["in_buf"], arrays["in_idx"])
        self.output = Ring(arrays["out_buf"], arrays["out_idx"])
        self.monitor = Ring(arrays["mon_buf"], arrays["mon_idx"])
        self.counts = {k: arrays[f"cnt_{k}"] for k in ROLES}
        self.ctl = arrays["ctl"]

    @staticmethod
    def layout(ring_samples: int) -> list[tuple[str, Any, int]]:
        """``(name, dtype, length)`` of every shared array, in order."""
        n = pow2(ring_samples)
        return ([("in_buf", np.float32, n), ("in_idx", np.int64, 2), ("out_buf", np.float32, n), ("out_idx", np.int64, 2),
                 ("mon_buf", np.float32, n), ("mon_idx", np.int64, 2)]
                + [(f"cnt_{k}", np.int64, N_COUNTERS) for k in ROLES] + [("ctl", np.int64, CTL_N)])

    @classmethod
    def local(cls, ring_samples: int) -> "Rings":
        return cls({name: np.zeros(n, dt) for name, dt, n in cls.layout(ring_samples)})

    def totals(self) -> np.ndarray:
        """Every role's counters, ``(3, N_COUNTERS)`` indexed by :class:`~rtvc.telemetry.Role` (a copy)."""
        return np.stack([self.counts[k] for k in ROLES])


class SharedBlock:
    """The :class:`Rings` in one shared-memory mapping (a file in ``/dev/shm`` where it exists).

    Every array starts on its own 64-byte cache line, so the two ends of a ring do not share
    one. The creator owns the file: :meth:`close` unlinks it.
    """

    ALIGN = 64

    def __init__(self, path: Path, ring_samples: int, *, create: bool) -> None:
        self.path = Path(path)
        self.ring_samples = int(ring_samples)
        self.owner = create
        spans, off = [], 0
        for name, dt, n in Rings.layout(ring_samples):
            spans.append((name, dt, n, off))
            off += -(-(n * np.dtype(dt).itemsize) // self.ALIGN) * self.ALIGN
        self.size = off
        mode = "w+b" if create else "r+b"
        with open(self.path, mode) as f:
            if create:
                f.truncate(self.size)
            self._mm = mmap.mmap(f.fileno(), self.size)
        arrays = {name: np.frombuffer(self._mm, dtype=dt, count=n, offset=o) for name, dt, n, o in spans}
        if create:
            for a in arrays.values():
                a[:] = 0
        self.rings = Rings(arrays)

    @classmethod
    def create(cls, ring_samples: int) -> "SharedBlock":
        d = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        fd, name = tempfile.mkstemp(prefix="rtvc-rings-", dir=d)
        os.close(fd)
        return cls(Path(name), ring_samples, create=True)

    def close(self) -> None:
        """Unmap (where no array view is left) and, for the creator, remove the file."""
        self.rings = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass  # a view is still alive (e.g. a stream not yet collected); the mapping goes with it
        if self.owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:  # Windows: a mapping that is still open keeps its file
                _log.info("could not remove the ring file %s yet: %s", self.path, e)


def new_wake_fd() -> int | None:
    """A non-blocking eventfd through which input callbacks wake the worker (None where the
    platform has none: the worker then polls the ring)."""
    if not hasattr(os, "eventfd"):
        return None
    try:
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError as e:
        _log.info("no eventfd (%s): the worker polls its input ring", e)
        return None


def wake(fd: int | None) -> None:
    """Signal the worker (Python callbacks and the file clock; the native callback does it in C)."""
    if fd is not None:
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass  # closed while stopping: nobody waits any more


def poll_interval_s(block: int, rate: int) -> float:
    """How long the worker sleeps when no block waits and it has no wake descriptor (not on
    Linux): an eighth of a block, 0.2..1 ms."""
    return min(0.001, max(0.0002, block / rate / 8.0))
