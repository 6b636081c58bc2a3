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

__all__ = ["Params", "ParamSpec", "PARAM_SPECS", "validate_value", "number", "integer", "shown"]


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
    "denoise": ParamSpec(bool, doc="noise suppression (DeepFilterNet3) before the voice; adds its latency "
                                   "(about 37 ms); needs the denoise extra"),
    "denoise_limit_db": ParamSpec(float, 0.0, 100.0, "dB",
                                  "the most noise suppression takes away (100 = all it can; 10-20 keeps some "
                                  "of the room and is gentler on the voice)"),
    "bypass": ParamSpec(bool, doc="pass the input through unconverted (same latency)"),
    "mute": ParamSpec(bool, doc="silence the output"),
}


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (an integer of 400 digits stays readable)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<{'a negative' if value < 0 else 'an'} integer of {len(str(abs(value)))} digits>"
    s = repr(value)
    return s if len(s) <= limit else s[:limit] + "..."


def _range(lo: float | None, hi: float | None, unit: str, kind: str | None = None) -> str:
    """``[lo, hi] unit`` (or ``>= lo``, ``<= hi``, ``finite``), after ``a KIND`` when ``kind`` is given."""
    if lo is not None and hi is not None:
        text = f"in [{lo}, {hi}]" if kind else f"[{lo}, {hi}]"
    elif lo is not None or hi is not None:
        text = f">= {lo}" if lo is not None else f"<= {hi}"
    else:
        text = "" if kind else "a finite number"
    if kind:
        text = f"a {kind} {text}" if text else f"a finite {kind}"
    return f"{text} {unit}".rstrip()


def number(value: Any, *, what: str, lo: float | None = None, hi: float | None = None, unit: str = "") -> float:
    """A finite number in ``[lo, hi]`` as a float, from any form JSON or TOML gives one.

    The one number check of rtvc: parameters, protocol arguments, presets and manifests use it.
    Integers of any size are compared exactly before they are converted, so a literal too big
    for a float (``1e309`` written out as digits) is out of range, never an ``OverflowError``.

    Raises
    ------
    ConfigError
        Not a number (booleans are not numbers), not finite, or outside ``[lo, hi]``; the
        message starts with ``what`` and names the value and the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} = {shown(value)}: expected {_range(lo, hi, unit, 'number')}")
    if (isinstance(value, float) and not math.isfinite(value)) or (lo is not None and value < lo) \
            or (hi is not None and value > hi):
        raise ConfigError(f"{what} = {shown(value)} is out of range; expected {_range(lo, hi, unit)}")
    try:
        return float(value)
    except OverflowError:  # an unbounded integer beyond the float range
        raise ConfigError(f"{what} = {shown(value)} is out of range; expected a finite number") from None


def integer(value: Any, *, what: str, lo: int | None = None, hi: int | None = None, unit: str = "") -> int:
    """Like :func:`number`, for a whole number: ``48000`` and ``48000.0`` both give ``48000``."""
    v = number(value, what=what, lo=lo, hi=hi, unit=unit)
    if isinstance(value, float) and not v.is_integer():
        raise ConfigError(f"{what} = {shown(value)}: expected {_range(lo, hi, unit, 'whole number')}")
    return int(value)


def validate_value(name: str, value: Any) -> Any:
    """Check one parameter value and return it in its canonical type.

    Raises
    ------
    ConfigError
        Unknown name, wrong type, non-finite or out-of-range value; the message names both.
    """
    spec = PARAM_SPECS.get(name)
    if spec is None:
        raise ConfigError(f"unknown parameter {shown(name)}; expected one of {sorted(PARAM_SPECS)}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {name!r} = {shown(value)}: expected true or false")
        return value
    if spec.kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"parameter {name!r} = {shown(value)}: expected a non-empty string")
        return value
    return number(value, what=f"parameter {name!r}", lo=spec.lo, hi=spec.hi, unit=spec.unit)


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
    denoise: bool = False
    denoise_limit_db: float = 100.0
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
