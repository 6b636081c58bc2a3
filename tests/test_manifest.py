"""Voice manifests: the field-by-field schema, safe text, and the voice list around a bad one.

The fuzz test at the end takes a shipped manifest and damages every field in turn (deleted,
of another type, NaN, huge, negative, empty, a list, an escape sequence): each time the
manifest is refused with a ModelError naming the file, or the voice loads and runs one hop.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from rtvc.errors import ConfigError, ModelError
from rtvc.manifest import check_manifest, printable, read_manifest
from rtvc.paths import shipped_models_dir
from rtvc.voices import DSP_PRESETS, VoiceRegistry

SHIPPED = sorted(p for p in shipped_models_dir().glob("*.json") if not p.name.endswith(".preview.json"))
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no neural voice shipped")


def shipped() -> dict[str, Any]:
    return json.loads(SHIPPED[0].read_text())


def write(folder: Path, m: Any, name: str | None = None, *, onnx: bool = False) -> Path:
    """``m`` as ``folder/NAME.json`` (NAME: the manifest's name), with the shipped model beside it."""
    name = name or m["name"]
    jp = folder / f"{name}.json"
    jp.write_text(m if isinstance(m, str) else json.dumps(m))
    if onnx:
        shutil.copy(SHIPPED[0].with_suffix(".onnx"), jp.with_suffix(".onnx"))
    return jp


def test_the_shipped_manifests_pass():
    for jp in SHIPPED:
        assert read_manifest(jp, model_rate=16000, hop=80)["name"] == jp.stem


# ---------------------------------------------------------------------- issue 28's repros
def _damaged(path: str, value: Any) -> dict[str, Any]:
    m = shipped()
    *parents, last = path.split(".")
    d = m
    for k in parents:
        d = d[k]
    d[last] = value
    return m


@pytest.mark.parametrize("path,value,match", [
    ("features.config.extra", 1, r"features.config has the unexpected key\(s\) \['extra'\]; expected exactly "
                                 r"\['sample_rate', 'hop', 'n_fft'"),
    ("features.config.n_fft", "lots", r"features.config.n_fft = 'lots'; expected an integer in \[160, 65536\]"),
    ("features.config.n_mels", 0, r"features.config.n_mels = 0; expected an integer in \[1, 257\]"),
    ("features.config.n_cep", 10 ** 400, r"features.config.n_cep = <an integer of 401 digits>; expected an integer"),
    ("features.input_names", 23, r"features.input_names = 23; expected 23 distinct non-empty names"),
    ("features.input_names", ["mfcc0"] * 23, r"features.input_names = \['mfcc0', .*; expected 23 distinct"),
    ("tensors.state_in", ["state_in"], r"tensors.state_in = \['state_in'\]; expected a non-empty string"),
    ("tensors.envelope", "features", r"tensors = .*; expected distinct tensor names"),
    ("tensors.state_shape", [2, 1, 10 ** 400], r"tensors.state_shape = .*; expected \[layers, 1, hidden\]"),
    ("f0.log2_mean", math.nan, r"f0.log2_mean = nan is out of range; expected \[5.322, 9.966\]"),
    ("f0.log2_mean", 10 ** 400, r"f0.log2_mean = <an integer of 401 digits> is out of range"),
    ("f0.log2_std", "wide", r"f0.log2_std = 'wide': expected a number in \[0.0, 4.0\]"),
    ("features.output_mean", [0.0] * 3, r"features.output_mean = \[0.0, 0.0, 0.0\]; expected a list of \d+ numbers"),
    ("name", "../evil", r"name = '../evil'; expected 1-64 letters, digits"),
    ("name", "joe\n", r"name = 'joe\\n'; expected 1-64 letters"),
    ("onnx_sha256", "Z" * 64, r"onnx_sha256 = 'ZZZ.*; expected 64 lowercase hex digits"),
    ("hop", 80.0, r"hop = 80.0; expected an integer"),
    ("features.n_input", True, r"features.n_input = True; expected an integer in \[1, 65536\]"),
])
def test_a_malformed_manifest_is_refused_naming_the_file_and_the_field(tmp_path, path, value, match):
    jp = write(tmp_path, _damaged(path, value), "v")
    with pytest.raises(ModelError, match=rf"{tmp_path}/v.json: {match}"):
        read_manifest(jp)


def test_what_the_runtime_cannot_run_is_refused_when_the_voice_loads(tmp_path):
    """Well-formed, but for another analysis or synthesis than this rtvc's: refused at load."""
    pytest.importorskip("onnxruntime")
    from rtvc.converter import NeuralVoice

    for path, value, match in (("features.config.n_mels", 39, r"features.config.n_mels = 39; expected 40, the "
                                                               r"analysis this rtvc runs"),
                               ("synthesis", "vocoder", r"synthesis = 'vocoder'; expected one of \('pulse-noise'"),
                               ("synthesis_options", {"postfilter": 10 ** 400},
                                r"synthesis postfilter <an integer of 401 digits>; expected a number in \[1, 2\]")):
        m = _damaged(path, value)
        if path.endswith("n_mels"):
            m["features"]["config"]["n_mfcc"] = 20
        jp = write(tmp_path, m, onnx=True)
        with pytest.raises(ModelError, match=match):
            NeuralVoice.load(jp.with_suffix(".onnx"))
    m = shipped()
    m["features"]["input_names"] = [f"x{i}" for i in range(m["features"]["n_input"])]
    jp = write(tmp_path, m, onnx=True)
    with pytest.raises(ModelError, match=r"features.input_names = \['x0', .*expected the inputs this rtvc computes, "
                                         r"mfcc0..periodicity \(23\)"):
        NeuralVoice.load(jp.with_suffix(".onnx"))


@pytest.mark.parametrize("text,match", [
    ("{nope", r"cannot be read as JSON: Expecting property name"),
    ("[" * 100_000 + "]" * 100_000, r"cannot be read as JSON: nested too deeply"),
    (b'{"name": "\xff"}', r"cannot be read as JSON: 'utf-8' codec can't decode"),
    ("[1, 2]", r"expected a JSON object, got list"),
])
def test_a_manifest_that_is_not_json_is_refused(tmp_path, text, match):
    jp = tmp_path / "v.json"
    jp.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelError, match=match):
        read_manifest(jp)


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("plain, accentué 日本") == "plain, accentué 日本"
    assert printable("\x1b[2J\x1b]0;owned\x07red\nnext\u202egnp.exe\x9b") \
        == "\\x1b[2J\\x1b]0;owned\\x07red\\nnext\\u202egnp.exe\\x9b"


# ---------------------------------------------------------------------- the voice list around a bad manifest
def test_the_voice_list_keeps_the_others_and_records_the_problem(tmp_path):
    good = shipped()
    good["name"] = "good"
    good["description"] = "\x1b[31mred\x1b[0m and\nnew line"
    write(tmp_path, good, onnx=True)
    bad = shipped()
    bad["name"] = "bad"
    bad["features"]["config"]["surprise"] = True
    write(tmp_path, bad, onnx=True)
    write(tmp_path, "{broken", "broken")
    robot = shipped()
    robot["name"] = "robot"  # a DSP voice's name
    write(tmp_path, robot, "myrobot")
    write(tmp_path, dict(good, name="esc"), "\x1b[2Jesc")
    reg = VoiceRegistry([tmp_path])
    names = reg.names()
    assert names == [v.name for v in DSP_PRESETS] + ["good"]
    assert reg.get("good").description == "\\x1b[31mred\\x1b[0m and\\nnew line"
    assert len(reg.problems) == 4 and all(p.isprintable() for p in reg.problems)
    assert any(f"{tmp_path}/\\x1b[2Jesc.json: file name '\\x1b[2Jesc'; expected NAME.json" in p for p in reg.problems)
    assert any(f"{tmp_path}/bad.json: features.config has the unexpected key(s) ['surprise']" in p
               for p in reg.problems)
    assert any(f"{tmp_path}/broken.json cannot be read as JSON" in p for p in reg.problems)
    assert any(f"{tmp_path}/myrobot.json: voice 'robot' is hidden by the built-in DSP voice, which has the same "
               "name; rename it to use it" in p for p in reg.problems)
    with pytest.raises(ModelError, match=rf"voice 'bad' cannot be used: voice manifest {tmp_path}/bad.json: "
                                         r"features.config has the unexpected key"):
        reg.get("bad")  # asked for by name: why it is not there, not "unknown voice"
    with pytest.raises(ConfigError, match=r"unknown voice 'ghost'; expected one of \['neutral', .*'good'\]"):
        reg.get("ghost")


def test_a_user_voice_named_like_a_shipped_one_is_reported(tmp_path):
    m = shipped()
    write(tmp_path, m, onnx=True)
    reg = VoiceRegistry([SHIPPED[0].parent, tmp_path])
    assert reg.names().count(m["name"]) == 1 and reg.get(m["name"]).path == SHIPPED[0].with_suffix(".onnx")
    assert reg.problems == [f"voice manifest {tmp_path}/{m['name']}.json: voice {m['name']!r} is hidden by the voice "
                            f"in {SHIPPED[0]}, which has the same name; rename it to use it"]


# ---------------------------------------------------------------------- fuzz: every field damaged in turn
_DELETE = object()
# 160 ms of a 150 Hz tone: the F0 tracker hears a voice after ~100 ms (a NaN F0 statistic shows from there)
VOICED = (0.3 * np.sin(2 * np.pi * 150.0 * np.arange(2560) / 16000)).astype(np.float32)
_BAD_VALUES: tuple[Any, ...] = (_DELETE, None, True, 0, -1, 23, 10 ** 400, -(10 ** 400), 1e308, math.nan, math.inf,
                                "", "lots", "\x1b[31m\n", [], {})


_FEW_BAD_VALUES: tuple[Any, ...] = (_DELETE, None, 10 ** 400, math.nan, "\x1b[31m\n", [])


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of ``node`` (lists: the first and last element stand for the others). The
    training record is documentation (only ``data`` and ``licence`` are read): its fields are
    damaged as a whole, not inside."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            if path != ("training",):
                yield from _paths(v, path + (k,))
    elif isinstance(node, list) and node:
        for i in sorted({0, len(node) - 1}):
            yield path + (i,)
            yield from _paths(node[i], path + (i,))


def _mutations(m: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for path in _paths(m):
        *parents, last = path
        orig = m
        for k in parents:
            orig = orig[k]
        orig = orig[last]
        free = path[0] == "training" and path[1:] not in (("data",), ("licence",), ())
        for bad in (_FEW_BAD_VALUES if free else _BAD_VALUES + ([orig], str(orig))):
            mm = copy.deepcopy(m)
            d = mm
            for k in parents:
                d = d[k]
            if bad is _DELETE:
                del d[last]
            else:
                d[last] = bad
            yield ".".join(map(str, path)) + f" <- {'deleted' if bad is _DELETE else repr(bad)[:40]}", mm
        if isinstance(orig, dict):
            mm = copy.deepcopy(m)
            d = mm
            for k in path:
                d = d[k]
            d["unexpected"] = 1
            yield ".".join(map(str, path)) + ".unexpected <- 1 (a key added)", mm
    for whole in (None, [], "", 3, [m]):
        yield f"<root> <- {whole!r:.40}", whole


def test_fuzz_every_field_of_a_shipped_manifest(tmp_path):
    """A ModelError naming the voice's file, or a voice that loads and runs (160 ms of a voiced
    tone, finite output): nothing else."""
    pytest.importorskip("onnxruntime")
    from rtvc.converter import NeuralVoice

    name = shipped()["name"]
    jp = tmp_path / f"{name}.json"
    shutil.copy(SHIPPED[0].with_suffix(".onnx"), jp.with_suffix(".onnx"))  # no preview: faster, same checks
    refused = loaded = 0
    wrong = []
    for what, mm in _mutations(shipped()):
        jp.write_text(json.dumps(mm))  # NaN and Infinity as JSON's extensions, as a hand edit would give
        reg = VoiceRegistry([tmp_path])
        try:
            listed = [v for v in reg.list() if v.kind == "neural"]
            voice = NeuralVoice.load(jp.with_suffix(".onnx"), model_rate=16000, hop=80)
            st = voice.init_state()
            for i in range(0, VOICED.size, 80):  # long enough for the F0 tracker to hear a voice
                y, st = voice.step(VOICED[i:i + 80], st)
                if not (y.shape == (80,) and np.all(np.isfinite(y))):
                    wrong.append(f"{what}: hop {i // 80} gives {y!r}")
                    break
            if not listed or not listed[0].description.isprintable() or reg.problems:
                wrong.append(f"{what}: loads, but listed as {listed} with problems {reg.problems}")
            loaded += 1
        except ModelError as e:
            if str(jp) not in str(e) and str(jp.with_suffix(".onnx")) not in str(e):
                wrong.append(f"{what}: ModelError naming neither file of the voice: {e}")
            if not listed and not any(str(jp) in p for p in reg.problems):
                wrong.append(f"{what}: refused ({e}) but neither listed nor reported by the voice list")
            refused += 1
        except Exception as e:  # the point of the test: anything else is a bug
            wrong.append(f"{what}: {type(e).__name__}: {e}")
    assert not wrong, "\n".join(wrong[:40])
    assert refused > 500 and loaded > 100  # both outcomes really happened
