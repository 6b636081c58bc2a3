"""Where rtvc keeps user files. ``RTVC_HOME`` overrides everything (tests use it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "data_dir", "user_voices_dir", "presets_dir", "shipped_models_dir"]


def _home() -> Path | None:
    h = os.environ.get("RTVC_HOME")
    return Path(h) if h else None


def config_dir() -> Path:
    """Presets, control token, hotkeys.toml."""
    if (h := _home()) is not None:
        return h / "config"
    base = os.environ.get("APPDATA") if os.name == "nt" else os.environ.get("XDG_CONFIG_HOME")
    return Path(base or Path.home() / ".config") / "rtvc"


def data_dir() -> Path:
    """Cloned voices, corpora caches."""
    if (h := _home()) is not None:
        return h / "data"
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_DATA_HOME")
    return Path(base or Path.home() / ".local" / "share") / "rtvc"


def user_voices_dir() -> Path:
    return data_dir() / "voices"


def presets_dir() -> Path:
    return config_dir() / "presets"


def shipped_models_dir() -> Path:
    from . import _models

    return Path(_models.__file__).parent
