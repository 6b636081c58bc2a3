"""Audio file reading and writing for ``rtvc convert``, the file-driven live mode and the demo.

Files come back as float32 mono ``(n_samples,)`` at their own rate; the engine resamples.
Every problem a user can cause (missing, corrupt, empty, unsupported rate, non-finite samples)
is an :class:`~rtvc.errors.AudioFileError` whose message names the file and what was expected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioFileError
from .resampling import SUPPORTED_RATES
from .types import MODEL_RATE, Audio

__all__ = ["read_audio", "write_audio", "FILE_RATES", "count_nonfinite"]

FILE_RATES: tuple[int, ...] = tuple(r for r in SUPPORTED_RATES if r >= MODEL_RATE)
"""Rates a file may have to be converted as is (a file below the model rate lacks the band
the voices need; ask for ``resample_to=`` to convert it anyway)."""

_SUBTYPES = {"PCM_16": "PCM_16", "PCM_24": "PCM_24", "FLOAT": "FLOAT"}


def count_nonfinite(x: Audio) -> int:
    """Number of NaN / inf samples in ``x``."""
    return int(x.size - np.count_nonzero(np.isfinite(x)))


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
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"audio file {str(p)!r} does not exist")
    if p.is_dir():
        raise AudioFileError(f"audio file {str(p)!r} is a directory; expected a sound file (WAV, FLAC, OGG)")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioFileError(f"audio file {str(p)!r} cannot be read ({e}); expected a sound file "
                             "libsndfile understands (WAV, FLAC, OGG)") from e
    n, n_ch = data.shape
    if n == 0:
        raise AudioFileError(f"audio file {str(p)!r} holds 0 samples; expected some audio")
    if channel is None:
        x = data[:, 0].copy() if n_ch == 1 else data.mean(axis=1, dtype=np.float32)
    else:
        if not (0 <= channel < n_ch):
            raise AudioFileError(f"channel {channel} does not exist in {str(p)!r}; expected 0..{n_ch - 1}")
        x = data[:, channel].copy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = count_nonfinite(x)
    if bad and not allow_nonfinite:
        raise AudioFileError(f"audio file {str(p)!r} contains {bad} non-finite samples (NaN or inf) out of {n}; "
                             "expected finite audio")
    rate = int(rate)
    if resample_to is not None:
        if resample_to not in SUPPORTED_RATES:
            raise AudioFileError(f"resample_to={resample_to} Hz is not supported; expected one of {SUPPORTED_RATES}")
        if resample_to != rate:
            import soxr

            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if bad else x
            x = np.ascontiguousarray(soxr.resample(x, rate, resample_to, quality="HQ"), dtype=np.float32)
            rate = resample_to
    elif rate not in FILE_RATES:
        raise AudioFileError(f"audio file {str(p)!r} has sample rate {rate} Hz; expected one of {FILE_RATES} "
                             "(resample it first, e.g. `sox in.wav -r 16000 out.wav`)")
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
    if subtype not in _SUBTYPES:
        raise AudioFileError(f"subtype {subtype!r} is not supported; expected one of {sorted(_SUBTYPES)}")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioFileError(f"sample rate {rate!r} for {str(p)!r} is invalid; expected a positive integer in Hz")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise AudioFileError(f"cannot write {str(p)!r}: folder {str(folder)!r} does not exist")
    if subtype != "FLOAT":
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    fmt = sf.available_formats()
    ext = p.suffix.lstrip(".").upper()
    file_format = ext if ext in fmt else "WAV"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=str(folder))
    os.close(fd)
    try:
        sf.write(tmp, x, int(rate), subtype=_SUBTYPES[subtype], format=file_format)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp makes 0600; a normal file would follow the umask
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (sf.LibsndfileError, RuntimeError, OSError, ValueError)):
            raise AudioFileError(f"cannot write audio file {str(p)!r}: {e}") from e
        raise
    return p
