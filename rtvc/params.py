"""Live parameters: an immutable, validated snapshot.

The engine holds one ``Params`` at a time and swaps it at block boundaries; the control server,
the CLI, hotkeys and presets all build new snapshots through :func:`Params.replace`, so every
path validates the same way and names the same ranges.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["Params", "ParamSpec", "PARAM_SPECS", "validate_value"]


@dataclass(frozen=True)
class ParamSpec:
    """Type, range and unit of one live parameter (also used for the control schema)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    doc: str = ""


PARAM_SPECS: dict[str, ParamSpec] = {
    "voice": ParamSpec(str, doc="active voice name (see list_voices)"),
    "pitch_st": ParamSpec(float, -12.0, 12.0, "semitones", "pitch shift"),
    "formant_ratio": ParamSpec(float, 0.7, 1.4, "ratio", "spectral envelope warp (>1 brighter/smaller)"),
    "mix": ParamSpec(float, 0.0, 1.0, "", "wet/dry mix (1 = converted only)"),
    "input_gain_db": ParamSpec(float, -60.0, 24.0, "dB"),
    "output_gain_db": ParamSpec(float, -60.0, 24.0, "dB"),
    "monitor_gain_db": ParamSpec(float, -60.0, 12.0, "dB", "gain of the hear-yourself output"),
    "monitor": ParamSpec(bool, doc="send the output to the monitor device too"),
    "gate_threshold_db": ParamSpec(float, -120.0, 0.0, "dBFS", "noise gate opens above this input level"),
    "gate_attack_ms": ParamSpec(float, 0.1, 50.0, "ms"),
    "gate_hold_ms": ParamSpec(float, 0.0, 2000.0, "ms"),
    "gate_release_ms": ParamSpec(float, 1.0, 2000.0, "ms"),
    "gate_floor_margin_db": ParamSpec(float, 0.0, 40.0, "dB",
                                      "the gate also stays shut below the tracked noise floor plus this margin "
                                      "(steady noise: fans, hiss, hum); 0 = off"),
    "gate_confirm_ms": ParamSpec(float, 0.0, 50.0, "ms",
                                 "a closed gate opens only for a sound that lasts this long without dying away "
                                 "like a click (key clicks, taps, mouse buttons stay out); 0 = off"),
    "bypass": ParamSpec(bool, doc="pass the input through unconverted (same latency)"),
    "mute": ParamSpec(bool, doc="silence the output"),
}


def validate_value(name: str, value: Any) -> Any:
    """Check one parameter value and return it in its canonical type.

    Raises
    ------
    ConfigError
        Unknown name, wrong type, non-finite or out-of-range value; the message names both.
    """
    spec = PARAM_SPECS.get(name)
    if spec is None:
        raise ConfigError(f"unknown parameter {name!r}; expected one of {sorted(PARAM_SPECS)}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {name!r} = {value!r}: expected true or false")
        return value
    if spec.kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"parameter {name!r} = {value!r}: expected a non-empty string")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"parameter {name!r} = {value!r}: expected a number in [{spec.lo}, {spec.hi}] {spec.unit}")
    v = float(value)
    if not math.isfinite(v) or (spec.lo is not None and v < spec.lo) or (spec.hi is not None and v > spec.hi):
        raise ConfigError(f"parameter {name!r} = {value!r} is out of range; expected [{spec.lo}, {spec.hi}] {spec.unit}")
    return v


@dataclass(frozen=True)
class Params:
    """One immutable snapshot of every live knob. See ``PARAM_SPECS`` for ranges and units."""

    voice: str = "neutral"
    pitch_st: float = 0.0
    formant_ratio: float = 1.0
    mix: float = 1.0
    input_gain_db: float = 0.0
    output_gain_db: float = 0.0
    monitor_gain_db: float = -6.0
    monitor: bool = False
    gate_threshold_db: float = -60.0
    gate_attack_ms: float = 2.0
    gate_hold_ms: float = 150.0
    gate_release_ms: float = 120.0
    gate_floor_margin_db: float = 16.0
    gate_confirm_ms: float = 20.0
    bypass: bool = False
    mute: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, validate_value(f.name, getattr(self, f.name)))

    def replace(self, **changes: Any) -> "Params":
        """A new snapshot with ``changes`` applied (validated; unknown names are refused)."""
        for k, v in changes.items():
            validate_value(k, v)
        return dataclasses.replace(self, **changes)

    def update(self, changes: Mapping[str, Any]) -> "Params":
        """Like :meth:`replace`, from a mapping (a partial update from the control protocol)."""
        if not isinstance(changes, Mapping):
            raise ConfigError(f"parameter update {changes!r}: expected an object of name: value")
        return self.replace(**dict(changes))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
