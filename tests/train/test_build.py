"""The cepstral order of a voice (``--n-cep``) and the analysed-frame cache of the voice build."""

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rtvc.errors import ConfigError  # noqa: E402
from rtvc.features import N_CEP, FeatureConfig  # noqa: E402
from rtvc.train import dataset as D  # noqa: E402
from rtvc.train.dataset import analyse_files, frames_cache_key  # noqa: E402


def _speech_like(seed: int, seconds: float = 0.6, f0_hz: float = 120.0) -> np.ndarray:
    """A voiced buzz around ``f0_hz`` (+-25 %) with a moving formant and a little noise (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = f0_hz * (1 + 0.25 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k * (1 + np.cos(2 * np.pi * k * f0 / (700 + 400 * t))) for k in range(1, 30))
    return (0.1 * x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def audio():
    return [_speech_like(1), _speech_like(2, 0.4)]


def test_feature_config_refuses_an_impossible_cepstral_order():
    with pytest.raises(ConfigError, match="n_cep 1; expected 2..256"):
        FeatureConfig(n_cep=1)
    with pytest.raises(ConfigError, match="n_cep 300; expected 2..256"):
        FeatureConfig(n_cep=300)
    assert FeatureConfig(n_cep=64).as_dict()["n_cep"] == 64


def test_cache_key_follows_audio_content_and_feature_config(audio):
    base = frames_cache_key(audio, FeatureConfig())
    assert base == frames_cache_key([a.copy() for a in audio], FeatureConfig())
    assert base != frames_cache_key(audio, FeatureConfig(n_cep=64))
    changed = [audio[0].copy(), audio[1]]
    changed[0][100] += 1e-3
    assert base != frames_cache_key(changed, FeatureConfig())
    # the same samples split differently between files are other files
    joined = [np.concatenate(audio)]
    assert base != frames_cache_key(joined, FeatureConfig())


def test_cached_frames_equal_fresh_analysis_and_skip_it(audio, tmp_path, monkeypatch):
    fc = FeatureConfig(n_cep=48)
    fresh = analyse_files(audio, config=fc, cache_dir=tmp_path)
    assert fresh.cepstrum.shape[1] == 48
    assert len(list(tmp_path.glob("frames-*.npz"))) == 1

    def no_analysis(*a, **k):
        raise AssertionError("analysed again although the frames are cached")

    monkeypatch.setattr(D.FeatureExtractor, "analyze", no_analysis)
    cached = analyse_files(audio, config=fc, cache_dir=tmp_path)
    for name in ("logmag", "cepstrum", "f0_hz", "periodicity"):
        a, b = getattr(fresh, name), getattr(cached, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # another cepstral order is another key: it must analyse (and here it cannot)
    with pytest.raises(AssertionError, match="analysed again"):
        analyse_files(audio, config=FeatureConfig(), cache_dir=tmp_path)


def test_a_damaged_cache_file_is_analysed_again(audio, tmp_path):
    ref = analyse_files(audio, cache_dir=tmp_path)
    (path,) = tmp_path.glob("frames-*.npz")
    path.write_bytes(b"not an npz file")
    again = analyse_files(audio, cache_dir=tmp_path)
    np.testing.assert_array_equal(ref.cepstrum, again.cepstrum)
    with np.load(path) as z:  # rewritten whole
        np.testing.assert_array_equal(z["cepstrum"], ref.cepstrum)


def test_no_cache_dir_writes_nothing(audio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    analyse_files(audio[:1])
    assert list(tmp_path.iterdir()) == []


def _clone_folder(tmp_path, audio):
    import soundfile as sf

    folder = tmp_path / "me"
    folder.mkdir(parents=True)
    for i, x in enumerate(audio):
        sf.write(str(folder / f"take{i}.wav"), x, 16000)
    return folder


def clone_tiny(tmp_path, monkeypatch, name, *flags):
    """``rtvc clone`` of two seconds of synthetic speech, 2 steps, with ``flags``; returns
    (the manifest, the voices folder)."""
    import json

    from rtvc.train.__main__ import main

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    out = tmp_path / "voices"
    folder = _clone_folder(tmp_path, [_speech_like(1), _speech_like(2, 0.4)])
    argv = ["clone", str(folder), "--name", name, "--min-minutes", "0.01", "--out", str(out), "--quiet",
            "--steps", "2", "--no-frames-cache", *flags]
    assert main(argv) == 0
    return json.loads((out / f"{name}.json").read_text()), out


def test_clone_command_trains_the_asked_cepstral_order_and_reuses_the_frames(audio, tmp_path, monkeypatch):
    from rtvc.train.__main__ import main

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    folder = _clone_folder(tmp_path, audio)
    out = tmp_path / "voices"
    args = ["clone", str(folder), "--name", "c48", "--min-minutes", "0.01", "--out", str(out), "--quiet"]
    assert main(args + ["--steps", "2", "--n-cep", "48"]) == 0
    m = json.loads((out / "c48.json").read_text())
    assert m["features"]["config"]["n_cep"] == 48 and m["features"]["n_output"] == 48
    assert m["training"]["n_cep"] == 48 and m["training"]["command"].endswith("--steps 2 --n-cep 48")
    frames = list((tmp_path / "home" / "data" / "frames").glob("frames-*.npz"))
    assert len(frames) == 1

    # retraining with another step count reads the cached frames
    monkeypatch.setattr(D.FeatureExtractor, "analyze", lambda *a, **k: pytest.fail("analysed again"))
    assert main(args + ["--force", "--steps", "3", "--n-cep", "48"]) == 0  # the same name again: --force replaces
    assert json.loads((out / "c48.json").read_text())["training"]["steps"] == 3

    # the runtime loads the 48-coefficient voice and converts with it
    from rtvc.voices import VoiceRegistry

    monkeypatch.undo()
    reg = VoiceRegistry([out])
    stage = reg.make_stage(reg.get("c48"))
    st = stage.init_state()
    y, st = stage.step(audio[0][:80], st)
    assert y.shape == (80,) and np.all(np.isfinite(y)) and st.cep_out.shape == (48,)


@pytest.mark.parametrize("f0_hz, n_cep", [(100, 64), (150, 64), (175, N_CEP), (230, N_CEP)])
def test_clone_cepstral_order_follows_the_median_pitch(f0_hz, n_cep):
    from rtvc.train.clone import cepstral_order_for

    order, median = cepstral_order_for([_speech_like(3, 4 / 3, f0_hz), _speech_like(4, 2 / 3, f0_hz)])  # whole cycles
    assert order == n_cep and median == pytest.approx(f0_hz, rel=0.06)


def test_clone_cepstral_order_of_unvoiced_audio_is_the_default_and_only_the_first_minutes_count():
    from rtvc.train import clone as C

    rng = np.random.default_rng(0)
    assert C.cepstral_order_for([(0.05 * rng.standard_normal(16000)).astype(np.float32)]) == (N_CEP, 0.0)
    assert C.cepstral_order_for([np.zeros(8000, np.float32)]) == (N_CEP, 0.0)
    high, low = _speech_like(5, 1.0, 220.0), _speech_like(6, 3.0, 100.0)
    budget = C.F0_SAMPLE_S
    try:
        C.F0_SAMPLE_S = 1.0  # one second: the low voice after the high one is not heard
        assert C.cepstral_order_for([high, low])[0] == N_CEP
        assert C.cepstral_order_for([low, high])[0] == 64
    finally:
        C.F0_SAMPLE_S = budget


def test_clone_default_cepstral_order_by_pitch_and_no_cache_flag(audio, tmp_path, monkeypatch):
    from rtvc.train.__main__ import main

    monkeypatch.setenv("RTVC_HOME", str(tmp_path / "home"))
    out = tmp_path / "voices"
    for name, takes, flag in (("low", audio, " --n-cep 64"),
                              ("high", [_speech_like(1, 0.6, 220.0), _speech_like(2, 0.4, 220.0)], "")):
        folder = _clone_folder(tmp_path / name, takes)
        assert main(["clone", str(folder), "--name", name, "--min-minutes", "0.01", "--out", str(out), "--quiet",
                     "--steps", "1", "--no-frames-cache"]) == 0
        m = json.loads((out / f"{name}.json").read_text())
        assert m["features"]["n_output"] == (64 if flag else N_CEP)
        assert m["training"]["command"].endswith("--steps 1" + flag)  # the command re-makes the same order
        assert 100 < m["training"]["n_cep_from_median_f0_hz"] < 250
    assert not (tmp_path / "home" / "data" / "frames").exists()


def test_commands_refuse_a_bad_cepstral_order(audio, tmp_path, capsys):
    from rtvc.train.__main__ import main

    folder = _clone_folder(tmp_path, audio)
    assert main(["clone", str(folder), "--name", "v", "--min-minutes", "0.01", "--n-cep", "1000",
                 "--out", str(tmp_path / "o")]) == 2
    assert "n_cep 1000; expected 2..256" in capsys.readouterr().err
    assert main(["voice", "--corpus", "asterisk", "--name", "v", "--gender", "female", "--n-cep", "0",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    assert "n_cep 0; expected 2..256" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_voice_command_trains_the_asked_cepstral_order_with_a_frames_cache(tmp_path, monkeypatch):
    import shlex
    import shutil

    from rtvc.train import sources as S
    from rtvc.train.__main__ import main

    if shutil.which("ffmpeg") is None or not any(d.is_dir() and any(d.rglob("*.g722")) for d in S._ASTERISK_DIRS):
        pytest.skip("the asterisk prompts (and ffmpeg) are needed")
    args = ["voice", "--corpus", "asterisk", "--max-utterances", "4", "--holdout", "0", "--name", "t40",
            "--gender", "female", "--description", "two words", "--hidden", "16", "--threads", "1",
            "--n-cep", "40", "--postfilter", "1.2", "--f0-continuity", "0.4", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--quiet"]
    monkeypatch.setattr("sys.argv", ["python -m rtvc.train", *args, "--steps", "1"])
    assert main(args + ["--steps", "1"]) == 0
    m = json.loads((tmp_path / "o" / "t40.json").read_text())
    assert m["features"]["config"]["n_cep"] == 40 and m["features"]["n_output"] == 40
    assert m["synthesis_options"] == {"phase": "zero", "voicing": "adaptive", "postfilter": 1.2, "f0_continuity": 0.4,
                                      "f0_continuity_tolerance": 0.12}
    # the recorded command re-runs as is (quoted description)
    cmd = shlex.split(m["training"]["command"])
    assert cmd[:3] == ["python", "-m", "rtvc.train"] and cmd[cmd.index("--description") + 1] == "two words"
    assert len(list((tmp_path / "c" / "frames").glob("frames-*.npz"))) == 1


def test_voice_command_refuses_a_bad_postfilter_before_building_anything(tmp_path, capsys):
    from rtvc.train.__main__ import main

    assert main(["voice", "--corpus", "asterisk", "--name", "v", "--gender", "female", "--postfilter", "3",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    assert "synthesis postfilter 3.0; expected a number in [1, 2]" in capsys.readouterr().err
    assert main(["voice", "--corpus", "asterisk", "--name", "v", "--gender", "female", "--f0-continuity", "0.1",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    assert "synthesis f0_continuity 0.1; expected 0 (off)" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "o").exists()


def test_the_cache_keeps_only_the_most_recently_used_files(audio, tmp_path):
    from rtvc.train.dataset import FRAMES_CACHE_KEEP

    configs = [FeatureConfig(n_cep=n) for n in (16, 20, 24, 28, 32, 36)]
    analyse_files(audio, config=configs[0], cache_dir=tmp_path)
    first = sorted(tmp_path.glob("frames-*.npz"))
    for k, fc in enumerate(configs[1:], start=1):
        if k == 3:  # use the first file again: it becomes the most recently used
            time.sleep(0.01)
            analyse_files(audio, config=configs[0], cache_dir=tmp_path)
        time.sleep(0.01)
        analyse_files(audio, config=fc, cache_dir=tmp_path)
    left = sorted(tmp_path.glob("frames-*.npz"))
    assert len(left) == FRAMES_CACHE_KEEP
    assert first[0] in left  # reused, so kept; the two oldest unused ones are gone


def test_clone_synthesis_flags_reach_the_manifest_and_the_command(tmp_path, monkeypatch):
    m, _ = clone_tiny(tmp_path, monkeypatch, "pf", "--postfilter", "1.3", "--f0-continuity", "0")
    assert m["synthesis_options"]["postfilter"] == 1.3 and m["synthesis_options"]["f0_continuity"] == 0.0
    assert m["training"]["command"].endswith("--postfilter 1.3 --f0-continuity 0")
    from rtvc.train.build import SYNTHESIS_OPTIONS

    plain, _ = clone_tiny(tmp_path / "plain", monkeypatch, "plain")
    assert {k: plain["synthesis_options"][k] for k in SYNTHESIS_OPTIONS} == SYNTHESIS_OPTIONS
    assert "--postfilter" not in plain["training"]["command"] and "--f0-continuity" not in plain["training"]["command"]


def test_clone_refuses_a_bad_synthesis_option_before_reading_audio(tmp_path, capsys):
    from rtvc.train.__main__ import main

    assert main(["clone", str(tmp_path / "nowhere"), "--name", "v", "--postfilter", "3", "--out", str(tmp_path / "o")]) == 2
    assert "synthesis postfilter 3.0; expected a number in [1, 2]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
