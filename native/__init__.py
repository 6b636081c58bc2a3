"""rtvc's hot kernels, compiled with Numba (installed as ``rtvc._native``).

Every kernel is a plain ``@njit(cache=True, nogil=True)`` function over caller-allocated
arrays: no I/O, no Python objects, no allocation in the per-block path. Public wrappers in
``rtvc`` validate arguments once, at construction. Each kernel has an independent reference
(NumPy/SciPy/librosa) in ``tests/native``.
"""
