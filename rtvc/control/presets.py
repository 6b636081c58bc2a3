"""Named parameter presets: JSON or TOML files in :func:`rtvc.paths.presets_dir`.

A preset file holds a partial parameter set (any names of :data:`rtvc.params.PARAM_SPECS`)::

    # deep-robot.toml                       // deep-robot.json
    voice = "robot"                         {"rtvc_preset": 1,
    pitch_st = -3.0                          "params": {"voice": "robot", "pitch_st": -3.0}}

TOML files may also put the parameters under a ``[params]`` table. rtvc writes JSON. Names are
checked against :data:`PRESET_NAME_RE` before any path is built, so a name can never leave the
presets folder (no ``/``, ``\\``, ``..``, drive letters or hidden files).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..params import PARAM_SPECS, shown, validate_value
from ..paths import presets_dir

__all__ = ["PRESET_NAME_RE", "PresetStore", "validate_preset_name", "validate_preset_params", "DEFAULT_EXCLUDED"]

PRESET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""1-64 characters: letters, digits, ``_`` and ``-``, starting with a letter or digit. Use it with
``fullmatch``: ``$`` would also match before a trailing newline (``"nl\\n"``)."""

DEFAULT_EXCLUDED = ("bypass", "mute")
"""Not stored when a preset is saved from the current state (loading a preset should not mute)."""

_FORMAT_KEYS = ("rtvc_preset", "name", "description")


def validate_preset_name(name: Any) -> str:
    """Return ``name`` if it is a valid preset name, else raise ConfigError naming it."""
    if not isinstance(name, str) or not PRESET_NAME_RE.fullmatch(name):
        raise ConfigError(f"preset name {shown(name)} is invalid; expected 1-64 characters of letters, digits, "
                          "'_' or '-', starting with a letter or digit")
    return name


def validate_preset_params(params: Any) -> dict[str, Any]:
    """Validate a partial parameter mapping (each value through ``validate_value``)."""
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"preset parameters {shown(params)}: expected a non-empty object of name: value "
                          f"with names from {sorted(PARAM_SPECS)}")
    return {str(k): validate_value(str(k), v) for k, v in params.items()}


class PresetStore:
    """Presets in one folder (default :func:`presets_dir`, created on first save)."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self._dir = Path(directory) if directory is not None else None

    @property
    def directory(self) -> Path:
        # resolved lazily so that RTVC_HOME set after construction (tests) is honoured
        return self._dir if self._dir is not None else presets_dir()

    def _files(self, name: str) -> list[Path]:
        d = self.directory
        return [p for p in (d / f"{name}.json", d / f"{name}.toml") if p.is_file()]

    def names(self) -> list[str]:
        """Sorted names of the presets in the folder (files with invalid names are ignored)."""
        d = self.directory
        if not d.is_dir():
            return []
        found = {p.stem for p in d.iterdir() if p.suffix in (".json", ".toml") and PRESET_NAME_RE.fullmatch(p.stem)}
        return sorted(found)

    def list(self) -> list[dict[str, Any]]:
        """``[{"name", "params"}]`` for every preset; one that cannot be used has ``params: None``
        and an ``error`` saying why, and the others are listed all the same."""
        out = []
        for n in self.names():
            try:
                out.append({"name": n, "params": self.load(n)})
            except ConfigError as e:
                out.append({"name": n, "params": None, "error": str(e)})
        return out

    def load(self, name: str) -> dict[str, Any]:
        """The validated parameters of preset ``name`` (JSON preferred over TOML)."""
        validate_preset_name(name)
        files = self._files(name)
        if not files:
            raise ConfigError(f"no preset named {name!r} in {self.directory}; expected one of {self.names()}")
        path = files[0]
        try:
            if path.suffix == ".json":
                doc = json.loads(path.read_text(encoding="utf-8"))
            else:
                doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
            raise ConfigError(f"preset file {path} cannot be parsed: {e}") from e
        except RecursionError:  # arrays nested thousands deep
            raise ConfigError(f"preset file {path} cannot be parsed: nested too deeply; expected a flat object "
                              "of name = value") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"preset file {path} holds {type(doc).__name__}; expected an object")
        params = doc["params"] if isinstance(doc.get("params"), dict) else {
            k: v for k, v in doc.items() if k not in _FORMAT_KEYS}
        try:
            return validate_preset_params(params)
        except ConfigError as e:
            raise ConfigError(f"preset file {path}: {e}") from None

    def save(self, name: str, params: Mapping[str, Any]) -> Path:
        """Write preset ``name`` as JSON (atomically, replacing a TOML file of that name)."""
        validate_preset_name(name)
        clean = validate_preset_params(params)
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.json"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"rtvc_preset": 1, "name": name, "params": clean}, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        (d / f"{name}.toml").unlink(missing_ok=True)
        return path

    def delete(self, name: str) -> None:
        """Remove preset ``name`` (both formats). Raises ConfigError if there is none."""
        validate_preset_name(name)
        files = self._files(name)
        if not files:
            raise ConfigError(f"no preset named {name!r} in {self.directory}; expected one of {self.names()}")
        for p in files:
            p.unlink(missing_ok=True)
