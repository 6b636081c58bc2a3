"""The one exception tree of rtvc.

Every message names the bad value and what was expected, so that a user reading it can fix
the call without reading the source.
"""

from __future__ import annotations

__all__ = ["RtvcError", "ConfigError", "DeviceError", "ModelError", "ControlError", "AudioFileError"]


class RtvcError(Exception):
    """Base class of every error rtvc raises on purpose."""


class ConfigError(RtvcError, ValueError):
    """A parameter, option or config file value is out of range or of the wrong kind."""


class DeviceError(RtvcError):
    """An audio device is missing, ambiguous, or cannot do the requested rate/channels."""


class ModelError(RtvcError):
    """A voice model or its manifest is missing, damaged or does not match."""


class ControlError(RtvcError):
    """A control message is malformed or asks for something that cannot be done."""


class AudioFileError(RtvcError):
    """An audio file is missing, corrupt, empty, or in a format rtvc cannot use."""
