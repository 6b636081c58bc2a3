"""ONNX export of a trained converter, with its manifest and preview."""

from __future__ import annotations

import datetime as _dt
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..features import FeatureConfig, input_feature_names
from ..manifest import MANIFEST_VERSION, sha256_file, write_manifest
from ..synthesis import check_options
from .model import Converter

__all__ = ["TENSORS", "OPSET", "export_onnx", "write_voice"]

TENSORS = {"features": "features", "state_in": "state_in", "envelope": "envelope", "state_out": "state_out"}
OPSET = 17


def export_onnx(model: Converter, path: str | Path) -> Path:
    """Export ``model`` to ``path``: inputs ``features [1, T, F]`` (T dynamic) and
    ``state_in [L, 1, H]``; outputs ``envelope [1, T, E]`` and ``state_out [L, 1, H]``."""
    path = Path(path)
    model = model.eval()
    x = torch.zeros(1, 4, model.n_input)
    h = model.init_state(1)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x, h), buf, input_names=[TENSORS["features"], TENSORS["state_in"]],
                          output_names=[TENSORS["envelope"], TENSORS["state_out"]], opset_version=OPSET,
                          dynamic_axes={TENSORS["features"]: {1: "T"}, TENSORS["envelope"]: {1: "T"}},
                          dynamo=False)
    path.write_bytes(buf.getvalue())
    return path


def write_voice(model: Converter, out_dir: str | Path, name: str, *, description: str, gender: str,
                f0_log2_mean: float, f0_log2_std: float, synthesis: str, training: dict[str, Any],
                preview: np.ndarray | None = None, feature_config: FeatureConfig | None = None,
                synthesis_options: dict[str, Any] | None = None, lookahead_frames: int = 0) -> Path:
    """Write ``NAME.onnx``, ``NAME.json`` (manifest) and ``NAME.preview.wav`` into ``out_dir``.

    ``synthesis_options`` (see :mod:`rtvc.synthesis`) go into the manifest when given;
    ``lookahead_frames`` (the converter's output for frame t is the envelope of frame t - k) when
    not 0.

    Returns the path of the .onnx file.
    """
    import onnxruntime
    import soundfile as sf

    fc = feature_config or FeatureConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, out_dir / f"{name}.onnx")
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": name,
        "description": description,
        "gender": gender,
        "model_rate": fc.sample_rate,
        "hop": fc.hop,
        "features": {
            "config": fc.as_dict(),
            "input_names": input_feature_names(),
            "n_input": model.n_input,
            "n_output": model.n_output,
            "output": f"natural-log-magnitude real cepstrum c0..c{model.n_output - 1}",
            "normalisation": "inside the model graph",
            "input_mean": [round(float(v), 6) for v in model.in_mean],
            "input_std": [round(float(v), 6) for v in model.in_std],
            "output_mean": [round(float(v), 6) for v in model.out_mean],
            "output_std": [round(float(v), 6) for v in model.out_std],
        },
        "tensors": {**TENSORS, "state_shape": [model.layers, 1, model.hidden], "opset": OPSET},
        "f0": {"log2_mean": float(f0_log2_mean), "log2_std": float(f0_log2_std),
               "mean_hz": float(2.0 ** f0_log2_mean)},
        **({"lookahead_frames": int(lookahead_frames)} if lookahead_frames else {}),
        "synthesis": synthesis,
        **({"synthesis_options": check_options(synthesis_options)} if synthesis_options else {}),
        "onnx_sha256": sha256_file(onnx_path),
        "training": training,
        "onnxruntime_version": onnxruntime.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_manifest(out_dir / f"{name}.json", manifest)
    if preview is not None:
        sf.write(str(out_dir / f"{name}.preview.wav"), np.clip(preview, -1, 1), fc.sample_rate, subtype="PCM_16")
    return onnx_path
