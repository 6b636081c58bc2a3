"""The voice list: DSP presets (no model) and neural voices (ONNX + manifest).

Neural voices are found in the shipped ``models/`` folder and the user's voices folder
(where ``rtvc clone`` writes). Listing reads manifests only; building a stage loads the model,
which happens off the audio path (the engine swaps the ready stage in at a block boundary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, ModelError
from .manifest import VOICE_NAME_RE, printable, read_manifest
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


class VoiceRegistry:
    """All voices the engine can switch to. ``model_dirs`` defaults to shipped + user folders."""

    def __init__(self, model_dirs: Iterable[Path] | None = None) -> None:
        self.model_dirs = [Path(d) for d in model_dirs] if model_dirs is not None else [shipped_models_dir(), user_voices_dir()]
        self.problems: list[str] = []
        """Why a manifest was left out of the last :meth:`list` (damaged, or hidden by a voice of
        the same name listed before it), one line each, safe to print."""
        self._damaged: dict[str, str] = {}  # file stem of a damaged manifest -> its error

    def list(self) -> list[VoiceInfo]:
        """DSP presets first, then neural voices sorted by name (re-scanned on every call).

        Each manifest is checked in full (:func:`rtvc.manifest.check_manifest`); one that fails
        is left out and its error recorded in :attr:`problems`, and the others are listed."""
        voices = list(DSP_PRESETS)
        seen = {v.name: "the built-in DSP voice" for v in voices}
        self.problems = []
        self._damaged = {}
        neural = []
        for d in self.model_dirs:
            if not d.is_dir():
                continue
            for jp in sorted(d.glob("*.json")):
                if jp.name.endswith(".preview.json"):
                    continue
                if not VOICE_NAME_RE.fullmatch(jp.stem):  # its paths end up in messages: keep them printable
                    self.problems.append(f"voice manifest {printable(str(jp))}: file name {jp.stem!r}; expected "
                                         "NAME.json, NAME 1-64 letters, digits, '_' or '-'")
                    continue
                try:
                    m = read_manifest(jp)
                except ModelError as e:
                    self.problems.append(str(e))
                    self._damaged.setdefault(jp.stem, str(e))
                    continue
                name = m["name"]
                if name in seen:
                    self.problems.append(f"voice manifest {printable(str(jp))}: voice {name!r} is hidden by "
                                         f"{seen[name]}, which has the same name; rename it to use it")
                    continue
                seen[name] = f"the voice in {printable(str(jp))}"
                neural.append(VoiceInfo(name, "neural", printable(m["description"]), "neural",
                                        {"pitch_st": 0.0, "formant_ratio": 1.0}, jp.with_suffix(".onnx"), m))
        return voices + sorted(neural, key=lambda v: v.name)

    def names(self) -> list[str]:
        return [v.name for v in self.list()]

    def get(self, name: str) -> VoiceInfo:
        """The voice called ``name``.

        Raises
        ------
        ModelError
            No voice of that name is listed because its manifest (``NAME.json``) is damaged.
        ConfigError
            No voice of that name at all.
        """
        voices = self.list()
        for v in voices:
            if v.name == name:
                return v
        if name in self._damaged:
            raise ModelError(f"voice {name!r} cannot be used: {self._damaged[name]}")
        raise ConfigError(f"unknown voice {name!r}; expected one of {[v.name for v in voices]}")

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
