"""The JSON manifest that travels beside every neural voice (``NAME.onnx`` + ``NAME.json``).

Nothing about a model is inferred from its file name: rates, hop, feature layout, tensor names,
state shape, F0 statistics, synthesis method, the model's sha256 and the training data with its
licence are all written here at export time and checked at load time.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError
from .params import number, shown

__all__ = ["MANIFEST_VERSION", "REQUIRED_KEYS", "MAX_LOOKAHEAD_FRAMES", "VOICE_NAME_RE", "FEATURE_CONFIG_KEYS",
           "F0_MEAN_HZ_RANGE", "sha256_file", "check_manifest", "read_manifest", "write_manifest", "printable"]

MANIFEST_VERSION = 1

MAX_LOOKAHEAD_FRAMES = 2
"""Most frames (hops) a converter may look ahead (optional key ``lookahead_frames``, default 0):
each adds one hop (5 ms) to the voice's latency."""

VOICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A voice name: 1-64 letters, digits, ``_`` or ``-``, starting with a letter or digit (``fullmatch``)."""

FEATURE_CONFIG_KEYS = ("sample_rate", "hop", "n_fft", "syn_len", "n_mels", "n_mfcc", "n_cep")
"""The keys of ``features.config`` (``FeatureConfig.as_dict()``), no more, no fewer."""

F0_MEAN_HZ_RANGE = (40.0, 1000.0)
"""Where a voice's mean F0 (``f0.log2_mean``, in log2 Hz) may lie."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 1 << 16  # bound on every count and tensor dimension (a 400-digit "hidden" is damage, not a model)
_TENSOR_KEYS = ("features", "state_in", "envelope", "state_out")
_HEAD_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.onnx")  # no folder, never ".."
_KIND = {int: "an integer", str: "a string", dict: "an object"}

REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "name": str,
    "description": str,
    "gender": str,
    "model_rate": int,
    "hop": int,
    "features": dict,  # {"config": FeatureConfig.as_dict(), "input_names": [...], "n_input", "n_output", means/stds}
    "tensors": dict,  # {"features": "features", "state_in": ..., "envelope": ..., "state_out": ..., "state_shape": [L,1,H]}
    "f0": dict,  # {"log2_mean": float, "log2_std": float}
    "synthesis": str,  # optional "synthesis_options": {"phase", "voicing", "postfilter", "f0_continuity", ...}
    "onnx_sha256": str,
    "training": dict,  # {"data": str, "licence": str, "minutes": float, "command": str, ...}
    "onnxruntime_version": str,
    "created": str,
}


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: every character that is not printable (terminal
    escape sequences start with one, as do newlines, tabs and bidirectional overrides) is
    written as its Python escape (``\\x1b``, ``\\n``, ``\\u202e``); the rest is kept as is."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Fields:
    """Field-by-field checks of one manifest; every refusal names the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, value: Any, expected: str) -> ModelError:
        return ModelError(f"{self.source}: {field} = {shown(value)}; expected {expected}")

    def obj(self, parent: dict[str, Any], key: str, field: str) -> dict[str, Any]:
        v = self.present(parent, key, field)
        if not isinstance(v, dict):
            raise self.fail(field, v, "an object")
        return v

    def present(self, parent: dict[str, Any], key: str, field: str) -> Any:
        if key not in parent:
            raise ModelError(f"{self.source}: {field} is missing")
        return parent[key]

    def integer(self, parent: dict[str, Any], key: str, field: str, lo: int, hi: int) -> int:
        v = self.present(parent, key, field)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(field, v, f"an integer in [{lo}, {hi}]")
        return v

    def same(self, parent: dict[str, Any], key: str, field: str, expected: int, why: str) -> None:
        v = self.present(parent, key, field)
        if isinstance(v, bool) or not isinstance(v, int) or v != expected:
            raise self.fail(field, v, f"{expected} ({why})")

    def number(self, parent: Any, key: Any, field: str, lo: float | None, hi: float | None) -> float:
        v = parent[key] if isinstance(parent, list) else self.present(parent, key, field)
        try:
            return number(v, what=field, lo=lo, hi=hi)
        except ConfigError as e:
            raise ModelError(f"{self.source}: {e}") from None

    def name(self, parent: dict[str, Any], key: str, field: str) -> str:
        v = self.present(parent, key, field)
        if not isinstance(v, str) or not v:
            raise self.fail(field, v, "a non-empty string")
        return v

    def numbers(self, parent: dict[str, Any], key: str, field: str, n: int) -> None:
        """Optional list of ``n`` finite numbers (the normalisation statistics)."""
        if key not in parent:
            return
        v = parent[key]
        if not isinstance(v, list) or len(v) != n:
            raise self.fail(field, v, f"a list of {n} numbers")
        for i in range(n):
            self.number(v, i, f"{field}[{i}]", None, None)

    def shape(self, parent: dict[str, Any], key: str, field: str, what: str, *, batch_first: bool = False) -> None:
        v = self.present(parent, key, field)
        ok = isinstance(v, list) and len(v) == 3 and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= _MAX_SIZE for d in v)
        if not ok or (v[0] != 1 if batch_first else v[1] != 1):
            raise self.fail(field, v, f"{what}, integers in [1, {_MAX_SIZE}]")

    def names(self, parent: dict[str, Any], keys: tuple[str, ...], field: str) -> None:
        for k in keys:
            self.name(parent, k, f"{field}.{k}")
        if len({parent[k] for k in keys}) != len(keys):
            raise self.fail(field, {k: parent[k] for k in keys}, f"distinct tensor names for {', '.join(keys)}")


def check_manifest(m: Any, *, source: str = "manifest", model_rate: int | None = None,
                   hop: int | None = None) -> dict[str, Any]:
    """Validate a manifest object field by field; return it.

    Every field the runtime reads is checked for type and range (names, rates, sizes, tensor
    names, finite statistics), so a damaged manifest is refused here and never reaches the
    audio path. Whether the analysis it describes is the one this rtvc runs is checked when
    the model loads (:meth:`rtvc.converter.NeuralVoice.load`).

    Raises
    ------
    ModelError
        Naming ``source`` and the field: missing or mistyped key, unsupported version, value
        out of range, rate or hop other than asked.
    """
    if not isinstance(m, dict):
        raise ModelError(f"{source}: expected a JSON object, got {type(m).__name__}")
    c = _Fields(source)
    for key, kind in REQUIRED_KEYS.items():
        if key not in m:
            raise ModelError(f"{source}: missing key {key!r}; expected keys {sorted(REQUIRED_KEYS)}")
        if not isinstance(m[key], kind) or (kind is int and isinstance(m[key], bool)):
            raise c.fail(key, m[key], _KIND[kind])
    if m["format_version"] != MANIFEST_VERSION:
        raise c.fail("format_version", m["format_version"], str(MANIFEST_VERSION))
    if not VOICE_NAME_RE.fullmatch(m["name"]):
        raise c.fail("name", m["name"], "1-64 letters, digits, '_' or '-', starting with a letter or digit")
    rate = c.integer(m, "model_rate", "model_rate", 8000, 192000)
    if model_rate is not None and rate != model_rate:
        raise ModelError(f"{source}: model_rate {rate} Hz; expected {model_rate} Hz")
    hop_ = c.integer(m, "hop", "hop", 1, 4096)
    if hop is not None and hop_ != hop:
        raise ModelError(f"{source}: hop {hop_} samples; expected {hop}")
    _check_features(c, m["features"], rate, hop_)
    _check_tensors(c, m["tensors"])
    f0 = m["f0"]
    lo, hi = (math.log2(f) for f in F0_MEAN_HZ_RANGE)
    c.number(f0, "log2_mean", "f0.log2_mean", round(lo, 3), round(hi, 3))
    c.number(f0, "log2_std", "f0.log2_std", 0.0, 4.0)
    if "mean_hz" in f0:
        c.number(f0, "mean_hz", "f0.mean_hz", *F0_MEAN_HZ_RANGE)
    if not m["synthesis"]:
        raise c.fail("synthesis", m["synthesis"], "a synthesis method (see rtvc.synthesis)")
    if not _SHA256_RE.fullmatch(m["onnx_sha256"]):
        raise c.fail("onnx_sha256", m["onnx_sha256"], "64 lowercase hex digits")
    if "lookahead_frames" in m:
        c.integer(m, "lookahead_frames", "lookahead_frames", 0, MAX_LOOKAHEAD_FRAMES)
    if not isinstance(m.get("synthesis_options", {}), dict):
        raise c.fail("synthesis_options", m["synthesis_options"], "an object (see rtvc.synthesis) or no key")
    if "head" in m:
        _check_head(m["head"], source)
    for key in ("data", "licence"):
        if not isinstance(m["training"].get(key), str):
            raise ModelError(f"{source}: training.{key} missing; expected the training data and its licence")
    return m


def _check_features(c: _Fields, f: dict[str, Any], rate: int, hop: int) -> None:
    cfg = c.obj(f, "config", "features.config")
    extra = sorted(set(cfg) - set(FEATURE_CONFIG_KEYS), key=str)
    if extra:
        raise ModelError(f"{c.source}: features.config has the unexpected key(s) {shown(extra)}; expected exactly "
                         f"{list(FEATURE_CONFIG_KEYS)}")
    c.same(cfg, "sample_rate", "features.config.sample_rate", rate, "model_rate")
    c.same(cfg, "hop", "features.config.hop", hop, "hop")
    n_fft = c.integer(cfg, "n_fft", "features.config.n_fft", 2 * hop, _MAX_SIZE)
    c.integer(cfg, "syn_len", "features.config.syn_len", hop, n_fft)
    n_mels = c.integer(cfg, "n_mels", "features.config.n_mels", 1, n_fft // 2 + 1)
    c.integer(cfg, "n_mfcc", "features.config.n_mfcc", 1, n_mels)
    n_cep = c.integer(cfg, "n_cep", "features.config.n_cep", 2, n_fft // 2)
    n_in = c.integer(f, "n_input", "features.n_input", 1, _MAX_SIZE)
    c.same(f, "n_output", "features.n_output", n_cep, "features.config.n_cep: the envelope is the cepstrum the "
                                                      "synthesis reads")
    names = c.present(f, "input_names", "features.input_names")
    if not (isinstance(names, list) and len(names) == n_in and all(isinstance(x, str) and x for x in names)
            and len(set(names)) == n_in):
        raise c.fail("features.input_names", names, f"{n_in} distinct non-empty names (features.n_input)")
    c.numbers(f, "input_mean", "features.input_mean", n_in)
    c.numbers(f, "input_std", "features.input_std", n_in)
    c.numbers(f, "output_mean", "features.output_mean", n_cep)
    c.numbers(f, "output_std", "features.output_std", n_cep)


def _check_tensors(c: _Fields, t: dict[str, Any]) -> None:
    c.names(t, _TENSOR_KEYS, "tensors")
    c.shape(t, "state_shape", "tensors.state_shape", "[layers, 1, hidden]")
    if "opset" in t:
        c.integer(t, "opset", "tensors.opset", 1, 1000)


HEAD_TENSOR_KEYS = ("audio_in", "state_in", "audio_out", "state_out")


def _check_head(h: Any, source: str) -> None:
    """The optional ``head`` section: a waveform head run on the synthesiser's output
    (``{"onnx": FILE, "sha256": HEX, "tensors": {audio_in, state_in, audio_out, state_out,
    state_shape: [1, C, S]}, "training": {...}}``)."""
    c = _Fields(source)
    if not isinstance(h, dict):
        raise c.fail("head", h, "an object (onnx, sha256, tensors, training)")
    f = h.get("onnx")
    if not (isinstance(f, str) and _HEAD_FILE_RE.fullmatch(f)):
        raise c.fail("head.onnx", f, "a .onnx file name beside the manifest")
    if not (isinstance(h.get("sha256"), str) and _SHA256_RE.fullmatch(h["sha256"])):
        raise c.fail("head.sha256", h.get("sha256"), "64 lowercase hex digits")
    t = c.obj(h, "tensors", "head.tensors")
    c.names(t, HEAD_TENSOR_KEYS, "head.tensors")
    c.shape(t, "state_shape", "head.tensors.state_shape", "[1, channels, samples]", batch_first=True)


def read_manifest(json_path: str | Path, **kw: Any) -> dict[str, Any]:
    """Read and check ``json_path`` (see :func:`check_manifest`)."""
    p = Path(json_path)
    shown_path = printable(str(p))
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"voice manifest {shown_path} is missing; expected it beside the .onnx file") from None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"voice manifest {shown_path} cannot be read as JSON: {printable(str(e))}") from e
    except RecursionError:
        raise ModelError(f"voice manifest {shown_path} cannot be read as JSON: nested too deeply") from None
    return check_manifest(m, source=f"voice manifest {shown_path}", **kw)


def write_manifest(json_path: str | Path, m: dict[str, Any]) -> None:
    check_manifest(m, source=str(json_path))
    Path(json_path).write_text(json.dumps(m, indent=2, sort_keys=False) + "\n")
