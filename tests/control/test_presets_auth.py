"""Presets on disk (JSON/TOML, name validation) and the auth helpers (token, Origin, bind host)."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from rtvc.control import auth
from rtvc.control.presets import PresetStore, validate_preset_name
from rtvc.errors import ConfigError
from rtvc.paths import presets_dir


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVC_HOME", str(tmp_path))
    monkeypatch.delenv("RTVC_TOKEN", raising=False)
    return tmp_path


def test_presets_save_load_list_delete(home):
    store = PresetStore()
    assert store.directory == presets_dir() == home / "config" / "presets"
    assert store.names() == [] and store.list() == []
    path = store.save("deep_1", {"voice": "deeper", "pitch_st": -3, "bypass": False})
    assert path == presets_dir() / "deep_1.json"
    doc = json.loads(path.read_text())
    assert doc == {"rtvc_preset": 1, "name": "deep_1", "params": {"bypass": False, "pitch_st": -3.0, "voice": "deeper"}}
    assert store.load("deep_1") == {"voice": "deeper", "pitch_st": -3.0, "bypass": False}
    (presets_dir() / "robo.toml").write_text('voice = "robot"\nformant_ratio = 1.1\n')
    (presets_dir() / "tabled.toml").write_text('description = "x"\n[params]\nmix = 0.5\n')
    (presets_dir() / "plain.json").write_text('{"output_gain_db": -6}')
    assert store.names() == ["deep_1", "plain", "robo", "tabled"]
    assert store.load("robo") == {"voice": "robot", "formant_ratio": 1.1}
    assert store.load("tabled") == {"mix": 0.5}
    assert store.load("plain") == {"output_gain_db": -6.0}
    store.save("robo", {"voice": "whisper"})  # JSON replaces the TOML file of the same name
    assert not (presets_dir() / "robo.toml").exists() and store.load("robo") == {"voice": "whisper"}
    store.delete("robo")
    assert "robo" not in store.names()
    with pytest.raises(ConfigError, match=r"no preset named 'robo'.*expected one of \['deep_1', 'plain', 'tabled'\]"):
        store.delete("robo")
    assert not [p for p in presets_dir().iterdir() if p.name.endswith(".tmp")]


def test_bad_preset_files_are_reported_not_loaded(home):
    store = PresetStore()
    presets_dir().mkdir(parents=True)
    (presets_dir() / "broken.json").write_text("{nope")
    (presets_dir() / "loud.toml").write_text("output_gain_db = 99\n")
    (presets_dir() / "empty.toml").write_text("")
    with pytest.raises(ConfigError, match=r"broken.json cannot be parsed"):
        store.load("broken")
    with pytest.raises(ConfigError, match=r"loud.toml.*'output_gain_db' = 99 is out of range; expected \[-60.0, 24.0\]"):
        store.load("loud")
    with pytest.raises(ConfigError, match=r"expected a non-empty object"):
        store.load("empty")
    listed = {p["name"]: p for p in store.list()}
    assert listed["broken"]["params"] is None and "cannot be parsed" in listed["broken"]["error"]


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "a\\b", ".hidden", "C:x", "", "x" * 65, "a b", "ä", None, 3,
                                  "-lead", "nl\n", "x\n\n", "\nx"])
def test_preset_names_cannot_escape_the_folder(home, name):
    with pytest.raises(ConfigError, match="preset name .* is invalid"):
        validate_preset_name(name)
    with pytest.raises(ConfigError, match="preset name"):
        PresetStore().save(name, {"mix": 0.5})
    assert not any(home.rglob("*.json"))


def test_a_file_named_with_a_trailing_newline_is_not_a_preset(home):
    presets_dir().mkdir(parents=True)
    (presets_dir() / "nl\n.json").write_text('{"mix": 0.5}')
    (presets_dir() / "ok.json").write_text('{"mix": 0.5}')
    assert PresetStore().names() == ["ok"]


def test_one_bad_preset_file_does_not_hide_the_others(home):
    """Issue 28: a huge integer (TOML and JSON keep it exact), deep nesting, bytes that are not
    UTF-8: each such file is listed with its error, the good ones with their parameters."""
    presets_dir().mkdir(parents=True)
    (presets_dir() / "big.toml").write_text("pitch_st = 1" + "0" * 310 + "\n")
    (presets_dir() / "bigjson.json").write_text('{"mix": -1' + "0" * 400 + "}")
    (presets_dir() / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (presets_dir() / "deeptoml.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (presets_dir() / "latin1.toml").write_bytes(b'voice = "\xe9"\n')
    (presets_dir() / "good.toml").write_text("mix = 0.25\n")
    store = PresetStore()
    with pytest.raises(ConfigError, match=r"big.toml: parameter 'pitch_st' = <an integer of 311 digits> is out of "
                                          r"range; expected \[-12.0, 12.0\] semitones"):
        store.load("big")
    with pytest.raises(ConfigError, match=r"deep.json cannot be parsed: nested too deeply"):
        store.load("deep")
    listed = {p["name"]: p for p in store.list()}
    assert sorted(listed) == ["big", "bigjson", "deep", "deeptoml", "good", "latin1"]
    assert listed["good"] == {"name": "good", "params": {"mix": 0.25}}
    for name in ("big", "bigjson", "deep", "deeptoml", "latin1"):
        assert listed[name]["params"] is None and name in listed[name]["error"]
    assert "'mix' = <a negative integer of 401 digits> is out of range" in listed["bigjson"]["error"]


def test_preset_values_are_validated(home):
    with pytest.raises(ConfigError, match=r"'pitch_st' = 40 is out of range"):
        PresetStore().save("x", {"pitch_st": 40})
    with pytest.raises(ConfigError, match=r"unknown parameter 'speed'"):
        PresetStore().save("x", {"speed": 2})
    with pytest.raises(ConfigError, match=r"non-empty object"):
        PresetStore().save("x", {})


def test_token_sources_and_storage(home):
    tok, where = auth.load_or_create_token()
    path = home / "config" / auth.TOKEN_FILE
    assert where == str(path) and len(tok) >= 32 and path.read_text().strip() == tok
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.load_or_create_token() == (tok, str(path))  # stable across starts
    assert auth.load_or_create_token(env={"RTVC_TOKEN": "from-env-123"}) == ("from-env-123", "RTVC_TOKEN")
    assert auth.load_or_create_token("given-token-1", env={"RTVC_TOKEN": "x" * 10}) == ("given-token-1", "--token")
    with pytest.raises(ConfigError, match=r"control token '<5 characters>' is invalid; expected 8-256 printable"):
        auth.load_or_create_token("short")
    with pytest.raises(ConfigError, match=r"<11 characters>"):
        auth.validate_token("has a space")
    path.write_text("bad\n")
    with pytest.raises(ConfigError, match=r"token file .*control_token.*delete the file"):
        auth.load_or_create_token()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_token_file_others_can_read_is_used_with_a_warning(home, caplog):
    tok, where = auth.load_or_create_token()
    path = home / "config" / auth.TOKEN_FILE
    assert auth.token_file_warning(path) is None
    with caplog.at_level("WARNING", logger="rtvc.control"):
        assert auth.load_or_create_token() == (tok, where)
    assert caplog.text == ""
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="rtvc.control"):
        assert auth.load_or_create_token() == (tok, where)
    assert re.search(rf"control token file {re.escape(str(path))} has mode 0644: other users of this machine can "
                     rf"read the token.*chmod 600 {re.escape(str(path))}", caplog.text)


def test_token_comparison_and_extraction():
    assert auth.tokens_equal("abcdefgh12", "abcdefgh12")
    assert not auth.tokens_equal("abcdefgh13", "abcdefgh12")
    assert not auth.tokens_equal(None, "abcdefgh12")
    assert not auth.tokens_equal("", "abcdefgh12")
    assert not auth.tokens_equal("ünïcode-token", "abcdefgh12")
    assert auth.token_from_request("Bearer abc", "") == "abc"
    assert auth.token_from_request("bearer  abc ", "token=zzz") == "abc"
    assert auth.token_from_request(None, "a=1&token=q%20r") == "q r"
    assert auth.token_from_request("Basic abc", "") is None
    assert auth.token_from_request(None, "tokens=1") is None


def test_origin_allow_list():
    allowed = auth.default_origins(8765)
    assert allowed == ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", "null"]
    assert auth.origin_allowed(None, allowed)  # not a browser
    assert auth.origin_allowed("null", allowed)  # OBS browser source / file pages
    assert auth.origin_allowed("http://LOCALHOST:8765", allowed)
    for bad in ("http://localhost:8766", "https://localhost:8765", "http://evil.example", "", "http://127.0.0.1"):
        assert not auth.origin_allowed(bad, allowed), bad
    assert auth.origin_allowed("https://deck.example", ["https://deck.example"])


def test_bind_host_needs_allow_remote():
    assert auth.check_bind_host("127.0.0.1", allow_remote=False) is None
    assert auth.check_bind_host("::1", allow_remote=False) is None
    assert auth.check_bind_host("localhost", allow_remote=False) is None
    with pytest.raises(ConfigError, match=r"control host '0.0.0.0' is not a loopback address.*--allow-remote"):
        auth.check_bind_host("0.0.0.0", allow_remote=False)
    with pytest.raises(ConfigError, match=r"'192.168.1.5'"):
        auth.check_bind_host("192.168.1.5", allow_remote=False)
    assert "WARNING" in auth.check_bind_host("0.0.0.0", allow_remote=True)
