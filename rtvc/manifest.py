"""The JSON manifest that travels beside every neural voice (``NAME.onnx`` + ``NAME.json``).

Nothing about a model is inferred from its file name: rates, hop, feature layout, tensor names,
state shape, F0 statistics, synthesis method, the model's sha256 and the training data with its
licence are all written here at export time and checked at load time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ModelError

__all__ = ["MANIFEST_VERSION", "REQUIRED_KEYS", "MAX_LOOKAHEAD_FRAMES", "sha256_file", "check_manifest",
           "read_manifest", "write_manifest"]

MANIFEST_VERSION = 1

MAX_LOOKAHEAD_FRAMES = 2
"""Most frames (hops) a converter may look ahead (optional key ``lookahead_frames``, default 0):
each adds one hop (5 ms) to the voice's latency."""

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


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_manifest(m: Any, *, source: str = "manifest", model_rate: int | None = None,
                   hop: int | None = None) -> dict[str, Any]:
    """Validate the structure of a manifest object; return it.

    Raises
    ------
    ModelError
        Missing or mistyped key, unsupported version, rate or hop other than asked.
    """
    if not isinstance(m, dict):
        raise ModelError(f"{source}: expected a JSON object, got {type(m).__name__}")
    for key, kind in REQUIRED_KEYS.items():
        if key not in m:
            raise ModelError(f"{source}: missing key {key!r}; expected keys {sorted(REQUIRED_KEYS)}")
        if not isinstance(m[key], kind) or (kind is int and isinstance(m[key], bool)):
            raise ModelError(f"{source}: key {key!r} = {m[key]!r}; expected a {getattr(kind, '__name__', kind)}")
    if m["format_version"] != MANIFEST_VERSION:
        raise ModelError(f"{source}: format_version {m['format_version']}; expected {MANIFEST_VERSION}")
    if model_rate is not None and m["model_rate"] != model_rate:
        raise ModelError(f"{source}: model_rate {m['model_rate']} Hz; expected {model_rate} Hz")
    if hop is not None and m["hop"] != hop:
        raise ModelError(f"{source}: hop {m['hop']} samples; expected {hop}")
    t = m["tensors"]
    for key in ("features", "state_in", "envelope", "state_out", "state_shape"):
        if key not in t:
            raise ModelError(f"{source}: tensors has no {key!r}; expected features, state_in, envelope, "
                             "state_out, state_shape")
    shape = t["state_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ModelError(f"{source}: state_shape {shape!r}; expected [layers, 1, hidden] positive integers")
    f = m["features"]
    for key in ("n_input", "n_output", "config", "input_names"):
        if key not in f:
            raise ModelError(f"{source}: features has no {key!r}")
    if len(f["input_names"]) != f["n_input"]:
        raise ModelError(f"{source}: {len(f['input_names'])} input names for n_input={f['n_input']}")
    if not (isinstance(m["onnx_sha256"], str) and len(m["onnx_sha256"]) == 64):
        raise ModelError(f"{source}: onnx_sha256 {m['onnx_sha256']!r}; expected 64 hex digits")
    for key in ("log2_mean", "log2_std"):
        if not isinstance(m["f0"].get(key), (int, float)):
            raise ModelError(f"{source}: f0.{key} = {m['f0'].get(key)!r}; expected a number")
    k = m.get("lookahead_frames", 0)
    if not (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= MAX_LOOKAHEAD_FRAMES):
        raise ModelError(f"{source}: lookahead_frames {k!r}; expected an integer 0..{MAX_LOOKAHEAD_FRAMES}")
    if not isinstance(m.get("synthesis_options", {}), dict):
        raise ModelError(f"{source}: synthesis_options = {m['synthesis_options']!r}; expected an object "
                         "(see rtvc.synthesis) or no key")
    if "head" in m:
        _check_head(m["head"], source)
    for key in ("data", "licence"):
        if not isinstance(m["training"].get(key), str):
            raise ModelError(f"{source}: training.{key} missing; expected the training data and its licence")
    return m


HEAD_TENSOR_KEYS = ("audio_in", "state_in", "audio_out", "state_out")


def _check_head(h: Any, source: str) -> None:
    """The optional ``head`` section: a waveform head run on the synthesiser's output
    (``{"onnx": FILE, "sha256": HEX, "tensors": {audio_in, state_in, audio_out, state_out,
    state_shape: [1, C, S]}, "training": {...}}``)."""
    if not isinstance(h, dict):
        raise ModelError(f"{source}: head = {h!r}; expected an object (onnx, sha256, tensors, training)")
    f = h.get("onnx")
    if not (isinstance(f, str) and f.endswith(".onnx") and "/" not in f and "\\" not in f):
        raise ModelError(f"{source}: head.onnx = {f!r}; expected a .onnx file name beside the manifest")
    if not (isinstance(h.get("sha256"), str) and len(h["sha256"]) == 64):
        raise ModelError(f"{source}: head.sha256 = {h.get('sha256')!r}; expected 64 hex digits")
    t = h.get("tensors")
    if not (isinstance(t, dict) and all(isinstance(t.get(k), str) for k in HEAD_TENSOR_KEYS)):
        raise ModelError(f"{source}: head.tensors = {t!r}; expected names for {', '.join(HEAD_TENSOR_KEYS)}")
    shape = t.get("state_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and shape[0] == 1
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise ModelError(f"{source}: head.tensors.state_shape = {shape!r}; expected [1, channels, samples]")


def read_manifest(json_path: str | Path, **kw: Any) -> dict[str, Any]:
    """Read and check ``json_path`` (see :func:`check_manifest`)."""
    p = Path(json_path)
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"voice manifest {p} is missing; expected it beside the .onnx file") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"voice manifest {p} cannot be read as JSON: {e}") from e
    return check_manifest(m, source=str(p), **kw)


def write_manifest(json_path: str | Path, m: dict[str, Any]) -> None:
    check_manifest(m, source=str(json_path))
    Path(json_path).write_text(json.dumps(m, indent=2, sort_keys=False) + "\n")
