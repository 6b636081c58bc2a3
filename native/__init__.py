"""rtvc's hot kernels, compiled with Numba (installed as ``rtvc._native``).

Every kernel is a plain ``@njit(cache=True, nogil=True)`` function over caller-allocated
arrays: no I/O, no Python objects, no allocation in the per-block path. Public wrappers in
``rtvc`` validate arguments once, at construction. Each kernel has an independent reference
(NumPy/SciPy/librosa) in ``tests/native``.

Numba's on-disk cache is keyed by each file's own source only: a kernel compiled into a caller
in another module (``linalg.matvec`` inside ``cepstrum``, ``fft.rfft`` inside ``analysis``)
would keep its old code there after it changes (a stale cache once ran the envelope kernels at
half speed after ``matvec`` was made faster). So on import the package compares a digest of all
its sources with the one the cache was built from and, when they differ, drops the cached
kernels (:func:`drop_stale_cache`); they are compiled again on first use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["drop_stale_cache"]

_STAMP = "rtvc-kernels.sha256"


def drop_stale_cache(src_dir: Path, cache_dir: Path) -> bool:
    """Delete ``cache_dir/*.nbi|*.nbc`` unless they were built from the ``*.py`` in ``src_dir``
    as they are now (a sha256 over all of them, kept in ``cache_dir``); return whether anything
    was dropped. Never raises on I/O errors (a read-only install keeps Numba's own behaviour)."""
    h = hashlib.sha256()
    for p in sorted(src_dir.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    digest = h.hexdigest()
    stamp = cache_dir / _STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    dropped = False
    try:
        for f in [*cache_dir.glob("*.nbi"), *cache_dir.glob("*.nbc")]:
            f.unlink(missing_ok=True)  # Numba recompiles a kernel whose index or data file is gone
            dropped = True
        cache_dir.mkdir(exist_ok=True)
        tmp = cache_dir / f"{_STAMP}.{os.getpid()}.tmp"
        tmp.write_text(digest)
        os.replace(tmp, stamp)  # atomic: a process starting meanwhile reads the old stamp or the new
    except OSError:
        pass
    return dropped


drop_stale_cache(Path(__file__).resolve().parent, Path(__file__).resolve().parent / "__pycache__")
