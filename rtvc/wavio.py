"""Audio file reading and writing for ``rtvc convert``, the file-driven live mode and the demo.

Files come back as float32 mono ``(n_samples,)`` at their own rate; the engine resamples.
Every problem a user can cause (missing, corrupt, empty, unsupported rate, non-finite samples)
is an :class:`~rtvc.errors.AudioFileError` whose message names the file and what was expected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .errors import AudioFileError
from .resampling import SUPPORTED_RATES
from .types import MODEL_RATE, Audio

__all__ = ["read_audio", "write_audio", "AudioReader", "AudioWriter", "same_file", "FILE_RATES", "INPUT_CLIP"]

FILE_RATES: tuple[int, ...] = tuple(r for r in SUPPORTED_RATES if r >= MODEL_RATE)
"""Rates a file may have to be converted as is (a file below the model rate lacks the band
the voices need; ask for ``resample_to=`` to convert it anyway)."""

_SUBTYPES = {"PCM_16": "PCM_16", "PCM_24": "PCM_24", "FLOAT": "FLOAT"}

INPUT_CLIP = 4.0
"""The engine clips its input at this magnitude (12 dB above full scale); a file whose samples go
beyond it is mostly clipped, and :class:`AudioReader` says so."""


def _existing_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"audio file {str(p)!r} does not exist")
    if p.is_dir():
        raise AudioFileError(f"audio file {str(p)!r} is a directory; expected a sound file (WAV, FLAC, OGG)")
    return p


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same existing file (by inode, not by spelling: ``a.wav``,
    ``./../dir/a.wav`` and a hard link are all the same file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


class AudioReader:
    """An audio file read block by block as float32 mono: memory does not grow with its length.

    Checked when opened (missing, unreadable, empty, no such channel, a rate outside ``rates``,
    default :data:`FILE_RATES`; None accepts any rate); :func:`read_audio` reads through it. While reading it counts what
    :attr:`warnings` reports at the end: non-finite samples, samples beyond :data:`INPUT_CLIP`,
    and a header that promised more samples than the file holds.

    Use as a context manager; :meth:`blocks` yields ``(n,)`` float32 arrays (the last may be
    shorter), reusing one buffer: copy a block to keep it.
    """

    def __init__(self, path: str | os.PathLike[str], *, channel: int | None = None,
                 rates: tuple[int, ...] | None = FILE_RATES) -> None:
        self.path = p = _existing_file(path)
        try:
            self._f = sf.SoundFile(str(p))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioFileError(f"audio file {str(p)!r} cannot be read ({e}); expected a sound file "
                                 "libsndfile understands (WAV, FLAC, OGG)") from e
        f = self._f
        self.rate = int(f.samplerate)
        self.frames = int(f.frames)  # libsndfile counts what is there
        self.declared_frames = _wav_declared_frames(p)  # what a WAV header promises (None: not a WAV)
        self.channels = n_ch = int(f.channels)
        try:
            if self.frames <= 0:
                raise AudioFileError(f"audio file {str(p)!r} holds 0 samples; expected some audio")
            if channel is not None and not (0 <= channel < n_ch):
                raise AudioFileError(f"channel {channel} does not exist in {str(p)!r}; expected 0..{n_ch - 1}")
            if rates is not None and self.rate not in rates:
                raise AudioFileError(f"audio file {str(p)!r} has sample rate {self.rate} Hz; expected one of "
                                     f"{rates} (resample it first, e.g. `sox in.wav -r 16000 out.wav`)")
        except AudioFileError:
            f.close()
            raise
        self.channel = channel
        self.samples_read = 0
        self.nonfinite = 0
        self.clipped = 0
        self.peak = 0.0

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def blocks(self, n: int) -> "Iterator[Audio]":
        """Yield the file as mono blocks of ``n`` samples (the last one shorter)."""
        buf = np.empty((n, self.channels), np.float32)
        mono = np.empty(n, np.float32)
        while True:
            try:
                k = self._f.read(n, dtype="float32", always_2d=True, out=buf).shape[0]
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioFileError(f"audio file {str(self.path)!r} cannot be read after sample "
                                     f"{self.samples_read} ({e})") from e
            if k == 0:
                return
            if self.channel is not None:
                mono[:k] = buf[:k, self.channel]
            elif self.channels == 1:
                mono[:k] = buf[:k, 0]
            else:
                np.mean(buf[:k], axis=1, dtype=np.float32, out=mono[:k])
            x = mono[:k]
            finite = np.isfinite(x)
            bad = k - int(np.count_nonzero(finite))
            if bad:
                self.nonfinite += bad
                mag = np.abs(np.where(finite, x, 0.0))
            else:
                mag = np.abs(x)
            self.clipped += int(np.count_nonzero(mag > INPUT_CLIP))
            self.peak = max(self.peak, float(mag.max()))
            self.samples_read += k
            yield x

    def warnings(self) -> list[str]:
        """What a user should know about the file after reading it (empty when all was well)."""
        out = []
        name = str(self.path)
        promised = max(self.frames, self.declared_frames or 0)
        if self.samples_read < promised:
            out.append(f"{name}: the header promises {promised} samples but the file holds {self.samples_read} "
                       f"({self.samples_read / self.rate:.2f} of {promised / self.rate:.2f} s): converted what "
                       "is there; the file looks truncated")
        if self.nonfinite:
            out.append(f"{name}: {self.nonfinite} non-finite samples (NaN/inf) were replaced by silence")
        if self.clipped:
            out.append(f"{name}: {self.clipped} samples are beyond {INPUT_CLIP:g}x full scale (peak {self.peak:.3g}) "
                       f"and were clipped there; expected audio within +-1.0 (a float file at the wrong scale?)")
        return out


class AudioWriter:
    """A mono audio file written block by block, atomically: the blocks go to a temporary file
    in the destination folder, which :meth:`commit` renames over ``path``; on any error (or
    leaving the ``with`` block without committing) the temporary file is removed and an
    existing ``path`` is untouched. Problems (missing or read-only folder, full disk) are
    :class:`~rtvc.errors.AudioFileError` naming the file."""

    def __init__(self, path: str | os.PathLike[str], rate: int, *, subtype: str = "PCM_16",
                 mode: int | None = None) -> None:
        self.path = p = Path(path)
        if subtype not in _SUBTYPES:
            raise AudioFileError(f"subtype {subtype!r} is not supported; expected one of {sorted(_SUBTYPES)}")
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise AudioFileError(f"sample rate {rate!r} for {str(p)!r} is invalid; expected a positive integer in Hz")
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.is_dir():
            raise AudioFileError(f"cannot write {str(p)!r}: folder {str(folder)!r} does not exist")
        if p.is_dir():
            raise AudioFileError(f"cannot write {str(p)!r}: it is a folder; expected a file name")
        self.rate = int(rate)
        self.subtype = subtype
        self.mode = mode
        self.written = 0
        ext = p.suffix.lstrip(".").upper()
        file_format = ext if ext in sf.available_formats() else "WAV"
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=str(folder))
            os.close(fd)
        except OSError as e:
            raise AudioFileError(f"cannot write audio file {str(p)!r}: cannot create a file in {str(folder)!r} "
                                 f"({e.strerror or e})") from e
        self._f: sf.SoundFile | None = None
        try:
            self._f = sf.SoundFile(self._tmp, "w", samplerate=self.rate, channels=1, subtype=_SUBTYPES[subtype],
                                   format=file_format)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            self._discard()
            raise AudioFileError(f"cannot write audio file {str(p)!r}: {_why(e, self._tmp)}") from e

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._f is None:  # committed or discarded already
            return
        if exc_type is None:
            self.commit()
        else:
            self._discard()

    def write(self, x: Audio) -> None:
        """Append mono float32 samples (clipped to +-1.0 for PCM subtypes)."""
        if self._f is None:
            raise AudioFileError(f"{str(self.path)!r} is already finished; expected writes before commit()")
        if self.subtype != "FLOAT":
            x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        try:
            self._f.write(x)  # libsndfile writes through: a full disk fails here, at the block that did not fit
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError, AssertionError) as e:
            self._discard()
            raise AudioFileError(f"cannot write audio file {str(self.path)!r} after {self.written} samples: "
                                 f"{_why(e, self._tmp)}") from e
        self.written += int(x.shape[0])

    def commit(self) -> Path:
        """Finish the file and move it over ``path``."""
        if self._f is None:
            raise AudioFileError(f"{str(self.path)!r} is already finished or was discarded")
        try:
            self._f.close()
            self._f = None
            mode = self.mode
            if mode is None:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask  # mkstemp makes 0600; a normal file follows the umask
            os.chmod(self._tmp, mode)
            os.replace(self._tmp, self.path)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            self._discard()
            raise AudioFileError(f"cannot write audio file {str(self.path)!r}: {_why(e, self._tmp)}") from e
        return self.path

    def _discard(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away; its own error was reported
                pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass


def _wav_declared_frames(path: Path) -> int | None:
    """Sample frames a RIFF/WAVE header's ``data`` chunk declares (libsndfile quietly trusts the
    file's size instead); None for other formats, streamed WAVs (size 0 or 0xFFFFFFFF) or a
    header that cannot be parsed."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack("<H", head[pos + 20:pos + 22])[0]
        elif cid == b"data":
            if block_align <= 0 or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _why(e: BaseException, where: str) -> str:
    """An I/O error in words: libsndfile says only "System error." where errno would say the
    disk is full, so the free space of the folder is checked to say it."""
    import shutil

    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e) or type(e).__name__
    try:
        free = shutil.disk_usage(os.path.dirname(where) or ".").free
    except OSError:
        free = None
    if free is not None and free < (1 << 20):
        return f"no space left on the device ({free} bytes free; libsndfile: {text})"
    return f"{text} (the disk may be full or the folder not writable)" if "system error" in text.lower() else text


def read_audio(path: str | os.PathLike[str], *, channel: int | None = None, resample_to: int | None = None,
               allow_nonfinite: bool = False) -> tuple[Audio, int]:
    """Read an audio file as float32 mono.

    Parameters
    ----------
    path
        Any format libsndfile reads (WAV, FLAC, OGG, ...).
    channel
        0-based channel to keep; ``None`` mixes all channels down to mono (mean).
    resample_to
        Resample to this rate (one of ``SUPPORTED_RATES``) with soxr; ``None`` keeps the file's
        rate, which must then be one of :data:`FILE_RATES`.
    allow_nonfinite
        Return NaN / inf samples as they are (the engine replaces and counts them) instead of
        refusing the file.

    Returns
    -------
    x : ndarray, float32, shape (n_samples,)
    rate : int
        Sample rate of ``x`` in Hz.

    Raises
    ------
    AudioFileError
        Missing, unreadable or corrupt file, no samples, a channel that does not exist, an
        unsupported rate, or (unless ``allow_nonfinite``) NaN / inf samples, with their count.
    """
    if resample_to is not None and resample_to not in SUPPORTED_RATES:
        raise AudioFileError(f"resample_to={resample_to} Hz is not supported; expected one of {SUPPORTED_RATES}")
    with AudioReader(path, channel=channel, rates=FILE_RATES if resample_to is None else None) as r:
        parts = [b.copy() for b in r.blocks(1 << 16)]  # blocks() reuses its buffer
        p, rate, n, bad = r.path, r.rate, r.samples_read, r.nonfinite
    if n == 0:
        raise AudioFileError(f"audio file {str(p)!r} holds 0 samples; expected some audio")
    x = np.concatenate(parts)
    if bad and not allow_nonfinite:
        raise AudioFileError(f"audio file {str(p)!r} contains {bad} non-finite samples (NaN or inf) out of {n}; "
                             "expected finite audio")
    if resample_to is not None and resample_to != rate:
        import soxr

        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if bad else x
        x = np.ascontiguousarray(soxr.resample(x, rate, resample_to, quality="HQ"), dtype=np.float32)
        rate = resample_to
    return x, rate


def write_audio(path: str | os.PathLike[str], x: Audio, rate: int, *, subtype: str = "PCM_16",
                mode: int | None = None) -> Path:
    """Write mono float32 audio atomically (a temporary file in the same folder, then rename).

    Parameters
    ----------
    path
        Output file; the format follows the extension (``.wav`` unless libsndfile knows another).
    x : ndarray, float32, shape (n_samples,)
        Samples, full scale +-1.0 (clipped for PCM subtypes).
    rate
        Sample rate in Hz.
    subtype
        ``"PCM_16"`` (default), ``"PCM_24"`` or ``"FLOAT"``.
    mode
        The file's permission bits (``0o600``: its owner only); ``None`` follows the umask.

    Returns
    -------
    Path
        The written file.
    """
    p = Path(path)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise AudioFileError(f"audio to write to {str(p)!r} has shape {x.shape}; expected mono (n_samples,)")
    with AudioWriter(p, rate, subtype=subtype, mode=mode) as w:
        w.write(x)
    return p
