"""Files as devices: the file clock (a file played in real time, the output consumed at the same
rate) and the output file writer.

A file can stand in for either device: :class:`FileClock` plays ``input_file`` into the input
ring paced at the block rate (or in lockstep with the worker, as fast as possible) and, where no
device reads the output ring, takes the output at the same rate into a :class:`FileWriter` or
discards it (``null_output``). Headless runs and tests go through exactly the same worker and
engine path as live devices. It counts like a device callback (calls, a full input ring, an
empty output ring) in the rings' counters.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AudioFileError
from ..telemetry import Counter
from ..types import Audio
from .rings import Rings, wake

__all__ = ["FileClock", "FileWriter", "FileSide"]


class FileWriter:
    """Streams the output into a WAV file while running (the file-clock thread ``put``s blocks,
    the writer thread ``flush``es them), so a crash or a full disk keeps everything written
    before it. The WAV header is brought up to date after every flush.

    A write error (disk full) is recorded in ``error``; the blocks not yet written stay queued
    (up to ``max_pending_s``) and are retried, so nothing is dropped silently: ``lost_samples``
    counts what could not be kept.
    """

    def __init__(self, path: Path, rate: int, *, max_pending_s: float = 120.0) -> None:
        import soundfile as sf

        ext = path.suffix.lstrip(".").upper()
        fmt = ext if ext in sf.available_formats() else "WAV"
        if not path.parent.is_dir():
            raise AudioFileError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
        try:
            self._f = sf.SoundFile(str(path), "w", samplerate=int(rate), channels=1, subtype="PCM_16", format=fmt)
        except Exception as e:
            raise AudioFileError(f"cannot create output file {str(path)!r}: {e}") from e
        self.path, self.rate = path, int(rate)
        self._pending: deque[np.ndarray] = deque()
        self._max_pending = int(max_pending_s * rate)
        self.pending_samples = 0
        self.accepted_samples = 0
        self.written_samples = 0
        self.lost_samples = 0
        self.error: str | None = None
        self.closed = False

    def put(self, block: np.ndarray) -> None:
        """Queue a copy of ``block`` (file-clock thread)."""
        self._pending.append(np.clip(block, -1.0, 1.0))
        self.accepted_samples += block.shape[0]
        self.pending_samples += block.shape[0]
        while self.pending_samples > self._max_pending and self._pending:
            old = self._pending.popleft()
            self.pending_samples -= old.shape[0]
            self.lost_samples += old.shape[0]

    def flush(self) -> bool:
        """Write what is queued (writer thread); return False on a write error (kept queued)."""
        while self._pending and not self.closed:
            blk = self._pending[0]
            try:
                self._f.write(blk)
                self._f.flush()  # sf_write_sync: the header now covers everything written
            except Exception as e:  # ENOSPC arrives as LibsndfileError or OSError
                self.error = (f"writing {str(self.path)!r} failed after {self.written_samples / self.rate:.2f} s "
                              f"of audio: {e} (disk full?); {self.pending_samples / self.rate:.2f} s waiting "
                              f"in memory, retried")
                return False
            self._pending.popleft()
            self.pending_samples -= blk.shape[0]
            self.written_samples += blk.shape[0]
        if self.error is not None and not self._pending:
            self.error = None
        return True

    def close(self) -> str | None:
        """Final flush and close; return an error message if audio could not be written."""
        ok = self.flush()
        self.closed = True
        try:
            self._f.close()
        except Exception as e:
            ok = False
            self.error = f"closing {str(self.path)!r} failed: {e}"
        if ok and not self.lost_samples:
            return None
        return (f"output file {str(self.path)!r} is incomplete: {self.written_samples / self.rate:.2f} s of "
                f"{self.accepted_samples / self.rate:.2f} s written ({self.error or 'queue overflow'}); "
                f"the {self.written_samples / self.rate:.2f} s written are a valid file")


class FileClock:
    """Stands in for the device clock of every side a file (or null) replaces.

    Parameters
    ----------
    path
        The input file (read whole, resampled to ``rate``), or None: no input side.
    rate, block
        Device rate (Hz) and block (samples).
    loop
        Start the file again at its end; otherwise, after the file and ``flush_blocks`` more
        blocks of silence (the tail still inside the engine), ``finished`` is set.
    realtime
        Pace at the block rate; ``False``: in lockstep with the worker (file to file only).

    The position in the file survives a restart (:meth:`run` again) and a change of rate
    (:meth:`set_rate`), so ``set_devices`` does not start the file over.
    """

    def __init__(self, path: Path | None, *, rate: int, block: int, loop: bool, realtime: bool) -> None:
        self.path = path
        self.loop = loop
        self.realtime = realtime
        self.rate = int(rate)
        self.block = int(block)
        self.x: Audio | None = None
        self.pos = 0  # input-file position (samples at ``rate``)
        self.done_at = -1  # the tick at which the file ended (-1: not yet)
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        from ..wavio import read_audio

        self.x, _ = read_audio(self.path, resample_to=self.rate, allow_nonfinite=True)

    def set_rate(self, rate: int, block: int) -> None:
        """The device rate changed: read the file again at ``rate`` and keep the place in it."""
        old = self.rate
        self.rate, self.block = int(rate), int(block)
        if self.path is not None and rate != old:
            self._load()
            self.pos = int(self.pos * rate / old)

    def run(self, rings: Rings, *, stop: threading.Event, finished: threading.Event, wake_fd: int | None,
            drain_output: bool, writer: FileWriter | None, flush_blocks: int) -> None:
        """The clock's thread: until ``stop``, one block in (the file, then silence) and, with
        ``drain_output``, one block out (into ``writer`` if there is one) per period."""
        b = self.block
        period = b / self.rate
        src = np.zeros(b, np.float32)
        snk = np.zeros(b, np.float32)
        x = self.x
        r_in, r_out = rings.input, rings.output
        c_in, c_out = rings.counts["input"], rings.counts["output"]
        t_next = time.perf_counter()
        ticks = 0
        if self.done_at >= 0:
            self.done_at = 0  # restarted (set_devices) while flushing the tail
        while not stop.is_set():
            if x is not None:
                if self.done_at < 0:
                    k = min(b, x.shape[0] - self.pos)
                    src[:k] = x[self.pos:self.pos + k]
                    src[k:] = 0.0
                    self.pos += k
                    if self.pos >= x.shape[0]:
                        if self.loop:
                            self.pos = 0
                        else:
                            self.done_at = ticks
                else:
                    src[:] = 0.0
                    if ticks - self.done_at >= flush_blocks:
                        finished.set()
                c_in[Counter.CALLBACKS] += 1
                if r_in.write(src) < b:
                    c_in[Counter.IN_RING_FULL_EVENTS] += 1
                wake(wake_fd)
            if drain_output:
                if not self.realtime:  # lockstep with the worker: deterministic, as fast as possible
                    while r_out.read_available() < b and not stop.is_set():
                        time.sleep(0.0002)
                    if stop.is_set():
                        break
                c_out[Counter.CALLBACKS] += 1
                got = r_out.readinto(snk)
                if got < b:
                    snk[got:] = 0.0
                    c_out[Counter.OUT_RING_EMPTY_EVENTS] += 1
                    c_out[Counter.OUT_RING_EMPTY] += b - got
                if writer is not None and not finished.is_set():
                    writer.put(snk)  # copies; file side only: not a device callback
            ticks += 1
            if not self.realtime:
                continue
            t_next += period
            delay = t_next - time.perf_counter()
            if delay > 0:
                stop.wait(delay)
            elif delay < -10 * period:  # we were suspended: do not try to catch up a burst
                t_next = time.perf_counter()

    @staticmethod
    def flush_blocks(latency_samples: float, block: int, max_backlog_blocks: int) -> int:
        """Blocks of silence after the file's end that bring its tail out of the engine and the rings."""
        return int(math.ceil((latency_samples + 4 * block) / block)) + max_backlog_blocks + 2


def write_file(writer: FileWriter, *, stop: threading.Event, fault: Callable[..., None]) -> None:
    """The writer thread: flush ``writer`` every 100 ms (retry every 1 s after an error); ``fault``
    is called with ``(kind, message, level)`` when writing fails and when it works again."""
    had_error = False
    while not stop.wait(1.0 if had_error else 0.1):
        ok = writer.flush()
        if not ok and not had_error:
            fault("output_file", writer.error or "write failed", logging.ERROR)
        elif ok and had_error:
            fault("output_file", f"writing {str(writer.path)!r} works again; the queued audio was written",
                  logging.WARNING)
        had_error = not ok


class FileSide:
    """The sides of a runner that files replace: the :class:`FileClock` (an input file, and/or
    the output taken at the block rate) and the :class:`FileWriter` of an output file, with
    their threads.

    Parameters
    ----------
    input_file, output_file
        The files (None: a device, or for the output also null).
    clocked
        Whether a file clock runs at all (an input file, or no output device).
    fault
        Where write errors are reported, ``(kind, message, level)``.
    """

    def __init__(self, input_file: Path | None, output_file: Path | None, *, clocked: bool, rate: int, block: int,
                 loop: bool, realtime: bool, fault: Callable[..., None]) -> None:
        self.output_file = output_file
        self.fault = fault
        self.clock = FileClock(input_file, rate=rate, block=block, loop=loop, realtime=realtime) if clocked else None
        self.writer: FileWriter | None = None

    def set_rate(self, rate: int, block: int) -> None:
        if self.clock is not None:
            self.clock.set_rate(rate, block)

    def open(self, rate: int) -> None:
        """Create the output file (once; it is written while running and kept across restarts)."""
        if self.output_file is not None and self.writer is None:
            self.writer = FileWriter(self.output_file, rate)

    def threads(self, rings: Rings, *, stop: threading.Event, finished: threading.Event, wake_fd: int | None,
                drain_output: bool, flush_blocks: int) -> list[threading.Thread]:
        """The file clock's and the writer's threads for a start (not started)."""
        out = []
        if self.clock is not None:
            out.append(threading.Thread(target=self.clock.run, name="rtvc-file-clock", daemon=True, args=(rings,),
                                        kwargs=dict(stop=stop, finished=finished, wake_fd=wake_fd,
                                                    drain_output=drain_output, writer=self.writer,
                                                    flush_blocks=flush_blocks)))
        if self.writer is not None:
            out.append(threading.Thread(target=write_file, name="rtvc-file-writer", daemon=True, args=(self.writer,),
                                        kwargs=dict(stop=stop, fault=self.fault)))
        return out

    def close(self) -> str | None:
        """Finish the output file; an error message when it could not be written completely."""
        if self.writer is None:
            return None
        err = self.writer.close()
        self.writer = None
        return err
