"""The voice list: DSP presets (no model) and neural voices (ONNX + manifest).

Neural voices are found in the shipped ``models/`` folder and the user's voices folder
(where ``rtvc clone`` writes). Listing reads manifests only; building a stage loads the model,
which happens off the audio path (the engine swaps the ready stage in at a block boundary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, ModelError
from .paths import shipped_models_dir, user_voices_dir
from .types import HOP, MODEL_RATE

__all__ = ["VoiceInfo", "VoiceRegistry", "DSP_PRESETS", "DelayStage"]


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice is, without loading it."""

    name: str
    kind: str  # "dsp" or "neural"
    description: str
    mode: str = "shift"  # dsp: shift | robot | whisper | neutral
    defaults: dict[str, float] = field(default_factory=dict)  # pitch_st / formant_ratio set on selection
    path: Path | None = None  # neural: the .onnx file
    manifest: dict[str, Any] | None = None


DSP_PRESETS: tuple[VoiceInfo, ...] = (
    VoiceInfo("neutral", "dsp", "your own voice, delayed like every other voice (pitch/formant knobs still apply)", "shift",
              {"pitch_st": 0.0, "formant_ratio": 1.0}),
    VoiceInfo("deeper", "dsp", "lower pitch and a larger vocal tract", "shift", {"pitch_st": -4.0, "formant_ratio": 0.88}),
    VoiceInfo("higher", "dsp", "higher pitch and a smaller vocal tract", "shift", {"pitch_st": 4.0, "formant_ratio": 1.12}),
    VoiceInfo("male-to-female", "dsp", "typical male to female: +5 semitones, formants x1.18", "shift",
              {"pitch_st": 5.0, "formant_ratio": 1.18}),
    VoiceInfo("female-to-male", "dsp", "typical female to male: -5 semitones, formants x0.85", "shift",
              {"pitch_st": -5.0, "formant_ratio": 0.85}),
    VoiceInfo("robot", "dsp", "monotone 110 Hz buzz through your own vocal tract (pitch knob moves the tone)", "robot",
              {"pitch_st": 0.0, "formant_ratio": 1.0}),
    VoiceInfo("whisper", "dsp", "breath noise shaped by your spectral envelope", "whisper",
              {"pitch_st": 0.0, "formant_ratio": 1.0}),
)


class DelayStage:
    """A pure delay of ``latency`` samples: the exact reference of the neutral path."""

    def __init__(self, latency: int, *, hop: int = HOP) -> None:
        self.latency = int(latency)
        self.hop = hop

    def init_state(self) -> dict[str, Any]:
        import numpy as np

        return {"buf": np.zeros(self.latency + self.hop, np.float32), "out": np.zeros(self.hop, np.float32)}

    def step(self, x: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        buf, out = state["buf"], state["out"]
        buf[self.latency:] = x
        out[:] = buf[: self.hop]
        buf[: self.latency] = buf[self.hop:]  # numpy handles the overlap
        return out, state

    def set_params(self, params: Any) -> None:
        pass


def _read_manifest(json_path: Path) -> dict[str, Any]:
    try:
        m = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"voice manifest {json_path} cannot be read as JSON: {e}") from e
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        raise ModelError(f"voice manifest {json_path} has no 'name' string; expected a manifest object")
    return m


class VoiceRegistry:
    """All voices the engine can switch to. ``model_dirs`` defaults to shipped + user folders."""

    def __init__(self, model_dirs: Iterable[Path] | None = None) -> None:
        self.model_dirs = [Path(d) for d in model_dirs] if model_dirs is not None else [shipped_models_dir(), user_voices_dir()]
        self.problems: list[str] = []  # manifests that could not be listed, with the reason

    def list(self) -> list[VoiceInfo]:
        """DSP presets first, then neural voices sorted by name (re-scanned on every call)."""
        voices = list(DSP_PRESETS)
        seen = {v.name for v in voices}
        self.problems = []
        neural = []
        for d in self.model_dirs:
            if not d.is_dir():
                continue
            for jp in sorted(d.glob("*.json")):
                if jp.name.endswith(".preview.json"):
                    continue
                try:
                    m = _read_manifest(jp)
                except ModelError as e:
                    self.problems.append(str(e))
                    continue
                onnx = jp.with_suffix(".onnx")
                if m["name"] in seen:
                    continue
                seen.add(m["name"])
                neural.append(VoiceInfo(m["name"], "neural", str(m.get("description", "")), "neural",
                                        {"pitch_st": 0.0, "formant_ratio": 1.0}, onnx, m))
        return voices + sorted(neural, key=lambda v: v.name)

    def names(self) -> list[str]:
        return [v.name for v in self.list()]

    def get(self, name: str) -> VoiceInfo:
        for v in self.list():
            if v.name == name:
                return v
        raise ConfigError(f"unknown voice {name!r}; expected one of {self.names()}")

    def make_stage(self, info: VoiceInfo, *, model_rate: int = MODEL_RATE, hop: int = HOP,
                   device: str = "cpu") -> Any:
        """Build (and load) the stage for ``info``; a neural voice runs on ``device`` ('cpu',
        'cuda' or 'auto', see :func:`~rtvc.converter.select_providers`). Raises ModelError for a
        damaged model."""
        if info.kind == "dsp":
            from .dsp import DspVoice

            return DspVoice(mode=info.mode, model_rate=model_rate, hop=hop)
        from .converter import NeuralVoice

        assert info.path is not None
        return NeuralVoice.load(info.path, model_rate=model_rate, hop=hop, device=device)
