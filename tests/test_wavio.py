"""rtvc.wavio: reading (mixdown, channel, rates, bad files) and atomic writing.

References: soundfile reads the files back independently; soxr's output length is checked
against the rate ratio.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtvc.errors import AudioFileError
from rtvc.wavio import FILE_RATES, read_audio, write_audio


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_read_mono_float_exact(tmp_path: Path) -> None:
    x = _noise(1000)
    p = tmp_path / "a.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    y, rate = read_audio(p)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == (1000,)
    np.testing.assert_array_equal(y, x)


def test_stereo_is_mixed_down_or_selected(tmp_path: Path) -> None:
    left, right = _noise(800, 1), _noise(800, 2)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    y, rate = read_audio(p)
    assert rate == 48000 and y.shape == (800,)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)
    np.testing.assert_array_equal(read_audio(p, channel=1)[0], right)
    with pytest.raises(AudioFileError, match=r"channel 2 does not exist .* expected 0\.\.1"):
        read_audio(p, channel=2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nope\.wav' does not exist"):
        read_audio(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path: Path) -> None:
    p = tmp_path / "junk.wav"
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioFileError, match=r"junk\.wav' cannot be read"):
        read_audio(p)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioFileError, match=r"holds 0 samples"):
        read_audio(p)


def test_8khz_is_refused_with_the_accepted_rates(tmp_path: Path) -> None:
    p = tmp_path / "tel.wav"
    sf.write(p, _noise(800), 8000)
    with pytest.raises(AudioFileError, match=r"sample rate 8000 Hz; expected one of \(16000, 22050"):
        read_audio(p)
    assert 8000 not in FILE_RATES and 16000 in FILE_RATES and 48000 in FILE_RATES


def test_odd_rate_resampled_on_request(tmp_path: Path) -> None:
    p = tmp_path / "odd.wav"
    t = np.arange(11025) / 11025
    sf.write(p, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 11025, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"11025 Hz"):
        read_audio(p)
    y, rate = read_audio(p, resample_to=16000)
    assert rate == 16000 and abs(y.shape[0] - 16000) <= 2
    # the tone survives: its frequency from the FFT peak of the resampled signal
    spec = np.abs(np.fft.rfft(y[2000:14000] * np.hanning(12000)))
    assert abs(np.argmax(spec) * 16000 / 12000 - 440) < 2.0
    with pytest.raises(AudioFileError, match=r"resample_to=12345 Hz is not supported"):
        read_audio(p, resample_to=12345)


def test_nonfinite_samples_are_counted(tmp_path: Path) -> None:
    x = _noise(500)
    x[[3, 10, 400]] = [np.nan, np.inf, -np.inf]
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"contains 3 non-finite samples \(NaN or inf\) out of 500"):
        read_audio(p)
    y, _ = read_audio(p, allow_nonfinite=True)
    assert int(np.sum(~np.isfinite(y))) == 3


def test_write_pcm16_and_float_round_trip(tmp_path: Path) -> None:
    x = _noise(2000)
    x[0], x[1] = 1.7, -3.0  # out of range: clipped in PCM
    p16 = write_audio(tmp_path / "o16.wav", x, 22050)
    y, rate = sf.read(p16, dtype="float32")
    info = sf.info(p16)
    assert rate == 22050 and info.subtype == "PCM_16" and info.channels == 1
    np.testing.assert_allclose(y[2:], np.clip(x[2:], -1.0, 1.0), atol=1.0 / 32768 + 1e-7)
    assert y[0] == pytest.approx(1.0, abs=1e-4) and y[1] == -1.0
    pf = write_audio(tmp_path / "of.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(pf, dtype="float32")[0], x)


def test_write_is_atomic_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    p = tmp_path / "out.wav"
    write_audio(p, _noise(100), 16000)
    before = p.read_bytes()
    with pytest.raises(AudioFileError, match=r"shape \(2, 50\); expected mono"):
        write_audio(p, np.zeros((2, 50), np.float32), 16000)
    with pytest.raises(AudioFileError, match=r"subtype 'PCM_8' is not supported"):
        write_audio(p, _noise(100), 16000, subtype="PCM_8")
    with pytest.raises(AudioFileError, match=r"folder .* does not exist"):
        write_audio(tmp_path / "missing" / "x.wav", _noise(10), 16000)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # no temporary file left behind
    mode = p.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_bundled_sample_is_short_speech() -> None:
    from rtvc.cli import sample_path

    p = sample_path()
    info = sf.info(p)
    assert info.channels == 1 and info.samplerate in (16000, 48000) and 4.0 <= info.duration <= 6.0
    assert p.stat().st_size < 300_000
    x, _ = read_audio(p)
    assert 0.1 < np.max(np.abs(x)) <= 1.0
