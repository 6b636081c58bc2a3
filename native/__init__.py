"""rtvc's hot kernels, compiled with Numba (installed as ``rtvc._native``).

Every kernel is a plain ``@njit(cache=True, nogil=True)`` function over caller-allocated
arrays: no I/O, no Python objects, no allocation in the per-block path. Public wrappers in
``rtvc`` validate arguments once, at construction. Each kernel has an independent reference
(NumPy/SciPy/librosa) in ``tests/native``.

Numba's on-disk cache is keyed by each file's own source only: a kernel compiled into a caller
in another module (``linalg.matvec`` inside ``cepstrum``, ``fft.rfft`` inside ``analysis``) keeps
its old code there after it changes. After editing a kernel that other modules call, delete
``native/__pycache__/*.nb[ic]`` (a stale cache once ran the envelope kernels at half speed
after ``matvec`` was made faster).
"""
