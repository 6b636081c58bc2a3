import numpy as np

from rtvc._native.linalg import matvec


def test_matvec_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 33)).astype(np.float32)
    x = rng.standard_normal(33).astype(np.float32)
    out = np.zeros(7, np.float32)
    matvec(a, x, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ x.astype(np.float64), rtol=1e-5, atol=1e-6)
