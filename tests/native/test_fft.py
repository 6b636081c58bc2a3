"""Real FFT kernels against numpy.fft (float64 reference).

Tolerance: float32 output of a float64 computation, so the error is float32 rounding of the
largest bin (relative 2**-24 ~ 6e-8) plus float64 accumulation: ``4e-7 * max|ref|``.
"""

import numpy as np
import pytest

from rtvc._native.fft import complex_fft, irfft, rfft, rfft_tables

SIZES = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def _fwd(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    perm, tw = rfft_tables(n)
    out = np.zeros(n // 2 + 1, np.complex64)
    rfft(x, perm, tw, np.zeros(n // 2, np.complex128), out)
    return out


def _inv(s: np.ndarray, n: int) -> np.ndarray:
    perm, tw = rfft_tables(n)
    out = np.zeros(n, np.float32)
    irfft(s, perm, tw, np.zeros(n // 2, np.complex128), out)
    return out


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(got, ref, rtol=0, atol=4e-7 * max(1e-30, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("n", SIZES)
def test_rfft_matches_numpy_on_random_frames(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    _close(_fwd(x), np.fft.rfft(x.astype(np.float64)))


@pytest.mark.parametrize("n", SIZES)
def test_irfft_matches_numpy_on_random_spectra(n):
    rng = np.random.default_rng(n + 1)
    s = (rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)).astype(np.complex64)
    # numpy ignores the imaginary parts of the DC and Nyquist bins; so must the kernel
    _close(_inv(s, n), np.fft.irfft(s.astype(np.complex128), n=n))


def _edge_frames(n):
    t = np.arange(n)
    yield np.zeros(n)
    for k in (0, 1, n // 2, n - 1):
        yield np.eye(n)[k]  # impulses (at the ends too)
    yield np.ones(n)  # all in DC
    yield (-1.0) ** t  # all in Nyquist
    yield np.cos(2 * np.pi * 3 * t / n)  # exactly on a bin
    yield np.sin(2 * np.pi * 3.37 * t / n)  # between bins
    yield 1e-30 * np.random.default_rng(7).standard_normal(n)  # tiny: no flush to zero in float64
    yield 3e30 * np.random.default_rng(8).standard_normal(n)  # huge: no overflow


@pytest.mark.parametrize("n", (4, 8, 512))
def test_rfft_and_irfft_edge_inputs(n):
    for x in _edge_frames(n):
        x = x.astype(np.float32)
        ref = np.fft.rfft(x.astype(np.float64))
        got = _fwd(x)
        _close(got, ref)
        assert got[0].imag == 0.0 and got[-1].imag == 0.0  # exactly real, as numpy's
        _close(_inv(ref.astype(np.complex64), n), np.fft.irfft(ref, n=n))


def test_round_trip_is_identity():
    x = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    np.testing.assert_allclose(_inv(_fwd(x), 512), x, atol=1e-6)


def test_non_finite_input_propagates():
    x = np.zeros(512, np.float32)
    x[10] = np.nan
    assert np.isnan(_fwd(x)).any()
    s = np.zeros(257, np.complex64)
    s[5] = np.inf
    assert not np.all(np.isfinite(_inv(s, 512)))


def test_complex_fft_matches_numpy_fft():
    for m in (2, 4, 8, 16, 64, 256):
        perm, tw = rfft_tables(2 * m)
        z = np.random.default_rng(m).standard_normal((m, 2)) @ np.array([1.0, 1j])
        work = np.zeros(m, np.complex128)
        work[perm] = z
        complex_fft(work, tw)
        np.testing.assert_allclose(work, np.fft.fft(z), atol=1e-12 * m)


@pytest.mark.parametrize("n", (0, 2, 3, 500, 513, 4.0))
def test_tables_refuse_lengths_that_are_not_powers_of_two(n):
    with pytest.raises(ValueError, match="expected a power of two >= 4"):
        rfft_tables(n)
