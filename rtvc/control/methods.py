"""The methods of the control protocol: one frozen dataclass per JSON-RPC method, with its
validation and its JSON schema, and the error codes a method answers with. Pure (no I/O).

``Command.from_params`` turns a request's named parameters into a typed command or raises
:class:`RpcError` naming the bad value; :data:`COMMANDS` maps method names to the classes.
The JSON-RPC framing around them (decode, encode, batches) is :mod:`rtvc.control.protocol`,
which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError
from ..params import PARAM_SPECS, integer, number, shown, validate_value

__all__ = [
    "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR", "RATE_LIMITED",
    "NOT_AVAILABLE", "VOICE_LOAD_FAILED", "DEVICE_ERROR", "MIN_RATE_HZ", "MAX_RATE_HZ", "RpcError",
    "Command", "GetState", "SetParams", "ListVoices", "SetVoice", "ListDevices", "SetDevices", "ListPresets",
    "SavePreset", "LoadPreset", "DeletePreset", "ForgetSpeaker", "Quit", "SetOptions", "CloneBegin", "CloneUpload",
    "CloneStart", "CloneCancel", "CloneStatus", "SelfTest", "Subscribe", "Unsubscribe", "COMMANDS",
]

MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 60.0
"""The telemetry rates ``subscribe`` accepts."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RATE_LIMITED = -32000
NOT_AVAILABLE = -32001
VOICE_LOAD_FAILED = -32002
DEVICE_ERROR = -32003


class RpcError(Exception):
    """A JSON-RPC error to send back: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# --------------------------------------------------------------------------- typed commands
def _str(method: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise RpcError(INVALID_PARAMS, f"{method}: {key}={shown(v)}; expected a non-empty string")
    return v


MAX_DEVICE_INDEX = 2**31 - 1
"""PortAudio's device indices are C ints."""


def _device(method: str, key: str, v: Any) -> int | str | None:
    if v is None or (isinstance(v, str) and v):
        return v
    try:
        return integer(v, what=key, lo=0, hi=MAX_DEVICE_INDEX)
    except ConfigError:
        raise RpcError(INVALID_PARAMS, f"{method}: {key} = {shown(v)}; expected a device index "
                                       f"(0..{MAX_DEVICE_INDEX}), a name substring or null") from None


@dataclass(frozen=True)
class Command:
    """Base of the typed commands; ``method`` is the JSON-RPC method name."""

    method: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    params_schema: ClassVar[dict[str, Any]] = {}
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Command":
        unknown = sorted(set(params) - set(cls.params_schema))
        if unknown:
            raise RpcError(INVALID_PARAMS, f"{cls.method}: unknown parameter(s) {unknown}; "
                                           f"expected {sorted(cls.params_schema) or 'none'}")
        missing = [k for k in cls.required if k not in params]
        if missing:
            raise RpcError(INVALID_PARAMS, f"{cls.method}: missing parameter(s) {missing}")
        return cls._build(params)

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        return cls()


@dataclass(frozen=True)
class GetState(Command):
    method: ClassVar[str] = "get_state"
    doc: ClassVar[str] = "current parameters, active voice, latency, devices and protocol version"


def _params_schema() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in PARAM_SPECS.items():
        d: dict[str, Any] = {"type": {bool: "boolean", str: "string", float: "number"}[s.kind]}
        if s.lo is not None:
            d["minimum"] = s.lo
        if s.hi is not None:
            d["maximum"] = s.hi
        if s.unit:
            d["unit"] = s.unit
        if s.doc:
            d["description"] = s.doc
        out[name] = d
    return out


@dataclass(frozen=True)
class SetParams(Command):
    method: ClassVar[str] = "set_params"
    doc: ClassVar[str] = ("partial update of the live parameters (any subset); all values are validated "
                          "before anything changes; selecting a voice also sets its preset pitch/formant "
                          "unless given")
    params_schema: ClassVar[dict[str, Any]] = _params_schema()
    changes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        if not params:
            raise RpcError(INVALID_PARAMS, f"set_params: empty update; expected at least one of {sorted(PARAM_SPECS)}")
        try:
            return cls({k: validate_value(k, v) for k, v in params.items()})
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"set_params: {e}") from None


@dataclass(frozen=True)
class ListVoices(Command):
    method: ClassVar[str] = "list_voices"
    doc: ClassVar[str] = "every voice: name, kind (dsp/neural), description, active"


@dataclass(frozen=True)
class SetVoice(Command):
    method: ClassVar[str] = "set_voice"
    doc: ClassVar[str] = "switch voice (loads its preset pitch/formant); the previous voice keeps playing if it fails"
    params_schema: ClassVar[dict[str, Any]] = {"name": {"type": "string", "description": "voice name"}}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        return cls(_str(cls.method, "name", params["name"]))


@dataclass(frozen=True)
class ListDevices(Command):
    method: ClassVar[str] = "list_devices"
    doc: ClassVar[str] = "audio devices of the host (needs the live audio runner)"


_DEV = {"type": ["integer", "string", "null"], "description": "device index or name substring; null keeps it"}


@dataclass(frozen=True)
class SetDevices(Command):
    method: ClassVar[str] = "set_devices"
    doc: ClassVar[str] = "reopen the stream on other devices without restarting; old streams stay if invalid"
    params_schema: ClassVar[dict[str, Any]] = {"input": _DEV, "output": _DEV, "monitor": _DEV,
                                               "rate": {"type": ["integer", "null"], "description": "device rate, Hz"}}
    input: int | str | None = None
    output: int | str | None = None
    monitor: int | str | None = None
    rate: int | None = None

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        if not params:
            raise RpcError(INVALID_PARAMS, "set_devices: empty call; expected at least one of "
                                           "['input', 'monitor', 'output', 'rate']")
        rate = params.get("rate")
        if rate is not None:
            try:
                rate = integer(rate, what="rate", lo=8000, hi=192000, unit="Hz")
            except ConfigError as e:
                raise RpcError(INVALID_PARAMS, f"set_devices: {e} or null") from None
        return cls(*(_device(cls.method, k, params.get(k)) for k in ("input", "output", "monitor")), rate)


@dataclass(frozen=True)
class ListPresets(Command):
    method: ClassVar[str] = "list_presets"
    doc: ClassVar[str] = "saved presets with their parameters"


_PRESET_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}


@dataclass(frozen=True)
class SavePreset(Command):
    method: ClassVar[str] = "save_preset"
    doc: ClassVar[str] = ("save a preset: the given params, or the current parameters "
                          "(without bypass/mute) when params is omitted")
    params_schema: ClassVar[dict[str, Any]] = {"name": _PRESET_NAME,
                                               "params": {"type": "object", "description": "partial parameters"}}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""
    params: dict[str, Any] | None = None

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        from .presets import validate_preset_name, validate_preset_params

        try:
            name = validate_preset_name(params["name"])
            p = params.get("params")
            return cls(name, None if p is None else validate_preset_params(p))
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"save_preset: {e}") from None


@dataclass(frozen=True)
class _NamedPreset(Command):
    """A command on one saved preset, named by ``name``."""

    params_schema: ClassVar[dict[str, Any]] = {"name": _PRESET_NAME}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        from .presets import validate_preset_name

        try:
            return cls(validate_preset_name(params["name"]))  # type: ignore[call-arg]
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"{cls.method}: {e}") from None


@dataclass(frozen=True)
class LoadPreset(_NamedPreset):
    method: ClassVar[str] = "load_preset"
    doc: ClassVar[str] = "apply a saved preset (a partial update)"


@dataclass(frozen=True)
class DeletePreset(_NamedPreset):
    method: ClassVar[str] = "delete_preset"
    doc: ClassVar[str] = "delete a saved preset"


@dataclass(frozen=True)
class ForgetSpeaker(Command):
    method: ClassVar[str] = "forget_speaker"
    doc: ClassVar[str] = ("someone else takes the microphone: the active neural voice starts learning the speaker "
                          "afresh (crossfaded, no click) and the speaker memory file is deleted; returns the state")


@dataclass(frozen=True)
class Quit(Command):
    method: ClassVar[str] = "quit"
    doc: ClassVar[str] = ("stop rtvc, as Ctrl-C in its window does (the streams close, the speaker memory is saved); "
                          "answers {\"stopping\": true} first; NOT_AVAILABLE where rtvc was not started from the "
                          "command line (nothing would stop)")


@dataclass(frozen=True)
class SetOptions(Command):
    method: ClassVar[str] = "set_options"
    doc: ClassVar[str] = ("session options of the control server (not engine parameters): keep_offsets = a voice "
                          "switch keeps the user's pitch/formant offsets from the old voice's preset; returns the "
                          "state (its 'options')")
    params_schema: ClassVar[dict[str, Any]] = {"keep_offsets": {"type": "boolean"}}
    keep_offsets: bool | None = None

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        v = params.get("keep_offsets")
        if not isinstance(v, bool):
            raise RpcError(INVALID_PARAMS, f"set_options: keep_offsets = {shown(v)}; expected true or false")
        return cls(v)


_JOB = {"type": "string", "description": "the job id clone_begin returned"}


def _job(method: str, params: Mapping[str, Any]) -> str:
    return _str(method, "job", params["job"])


@dataclass(frozen=True)
class CloneBegin(Command):
    method: ClassVar[str] = "clone_begin"
    doc: ClassVar[str] = ("start cloning a voice from recordings: a job that takes uploads (clone_upload), then "
                          "trains (clone_start) in a separate process; progress comes as clone_progress "
                          "notifications to every client")
    params_schema: ClassVar[dict[str, Any]] = {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", "description": "the new voice"},
        "gender": {"type": "string", "enum": ["female", "male", "other", "unknown"], "default": "unknown"}}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""
    gender: str = "unknown"

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        return cls(_str(cls.method, "name", params["name"]), _str(cls.method, "gender", params.get("gender", "unknown")))


@dataclass(frozen=True)
class CloneUpload(Command):
    method: ClassVar[str] = "clone_upload"
    doc: ClassVar[str] = ("one chunk of a recording (base64, at most 32 KiB decoded), in order: offset = the bytes of "
                          "that file sent so far; files land only in the user's rtvc data folder, at most 200 MiB "
                          "each, 1 GiB and 200 files a job, names ending in .wav/.flac/.ogg/.mp3")
    params_schema: ClassVar[dict[str, Any]] = {"job": _JOB, "file": {"type": "string"},
                                               "offset": {"type": "integer", "minimum": 0},
                                               "data": {"type": "string", "contentEncoding": "base64"}}
    required: ClassVar[tuple[str, ...]] = ("job", "file", "offset", "data")
    job: str = ""
    file: str = ""
    offset: int = 0
    data: str = ""

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        try:
            offset = integer(params["offset"], what="offset", lo=0)
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"{cls.method}: {e}") from None
        data = params["data"]
        if not isinstance(data, str):
            raise RpcError(INVALID_PARAMS, f"{cls.method}: data = {shown(data)}; expected a base64 string")
        return cls(_job(cls.method, params), _str(cls.method, "file", params["file"]), offset, data)


@dataclass(frozen=True)
class CloneStart(Command):
    method: ClassVar[str] = "clone_start"
    doc: ClassVar[str] = ("train the job's voice from its uploads (rtvc clone in a separate process at a lower "
                          "priority); steps and min_minutes as rtvc clone's --steps and --min-minutes")
    params_schema: ClassVar[dict[str, Any]] = {"job": _JOB,
                                               "steps": {"type": "integer", "minimum": 1, "maximum": 100000},
                                               "min_minutes": {"type": "number", "minimum": 0, "maximum": 600}}
    required: ClassVar[tuple[str, ...]] = ("job",)
    job: str = ""
    steps: int | None = None
    min_minutes: float | None = None

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        try:
            steps = None if params.get("steps") is None else integer(params["steps"], what="steps", lo=1, hi=100000)
            mm = params.get("min_minutes")
            mm = None if mm is None else number(mm, what="min_minutes", lo=0, hi=600, unit="minutes")
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"{cls.method}: {e}") from None
        return cls(_job(cls.method, params), steps, mm)


@dataclass(frozen=True)
class CloneCancel(Command):
    method: ClassVar[str] = "clone_cancel"
    doc: ClassVar[str] = "stop a clone job: its training process ends and its uploads are deleted"
    params_schema: ClassVar[dict[str, Any]] = {"job": _JOB}
    required: ClassVar[tuple[str, ...]] = ("job",)
    job: str = ""

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        return cls(_job(cls.method, params))


@dataclass(frozen=True)
class CloneStatus(Command):
    method: ClassVar[str] = "clone_status"
    doc: ClassVar[str] = "the clone jobs of this session (what clone_progress last said of each)"


@dataclass(frozen=True)
class SelfTest(Command):
    method: ClassVar[str] = "selftest"
    doc: ClassVar[str] = ("play a chirp through the sound server -> rtvc (the neutral path) -> the sound server and "
                          "measure the loopback delay (as 'rtvc selftest'; a few seconds); needs a PulseAudio or "
                          "PipeWire-Pulse server; the result is also kept in get_state's selftest.last")


@dataclass(frozen=True)
class Subscribe(Command):
    method: ClassVar[str] = "subscribe"
    doc: ClassVar[str] = "receive 'telemetry' notifications at rate_hz (1-60, default 10); replaces an earlier rate"
    params_schema: ClassVar[dict[str, Any]] = {"rate_hz": {"type": "number", "minimum": MIN_RATE_HZ,
                                                           "maximum": MAX_RATE_HZ, "default": 10}}
    rate_hz: float = 10.0

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> "Command":
        try:
            return cls(number(params.get("rate_hz", 10.0), what="rate_hz", lo=MIN_RATE_HZ, hi=MAX_RATE_HZ, unit="Hz"))
        except ConfigError as e:
            raise RpcError(INVALID_PARAMS, f"subscribe: {e}") from None


@dataclass(frozen=True)
class Unsubscribe(Command):
    method: ClassVar[str] = "unsubscribe"
    doc: ClassVar[str] = "stop telemetry notifications"


COMMANDS: dict[str, type[Command]] = {c.method: c for c in (
    GetState, SetParams, ListVoices, SetVoice, ListDevices, SetDevices, ListPresets, SavePreset, LoadPreset,
    DeletePreset, ForgetSpeaker, Quit, SetOptions, CloneBegin, CloneUpload, CloneStart, CloneCancel, CloneStatus,
    SelfTest, Subscribe, Unsubscribe)}
