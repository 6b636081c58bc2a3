"""The control protocol: JSON-RPC 2.0 over a websocket, as a pure module (no I/O).

``decode(text)`` turns one websocket text message into typed commands (or ready error
responses); ``result``/``error``/``notification`` turn answers back into JSON text. The
server is a thin adapter that moves these strings; everything here is tested without sockets.

Server-to-client notifications: ``hello`` (once, on connect: protocol version, methods, state),
``state_changed`` (after any client, hotkey or HTTP button changed something), ``telemetry``
(at the rate asked for with ``subscribe``).

Error codes: the JSON-RPC ones (-32700 parse error, -32600 invalid request, -32601 method not
found, -32602 invalid params, -32603 internal error) plus the server-defined range:
-32000 rate limited, -32001 not available (no audio runner, e.g. file mode), -32002 voice
failed to load, -32003 device error. Batches (arrays) of up to ``MAX_BATCH`` calls are served.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, Union

from ..params import PARAM_SPECS, integer, number, shown, validate_value
from ..errors import ConfigError

__all__ = [
    "PROTOCOL_VERSION", "MAX_BATCH", "MAX_MESSAGE_BYTES", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND",
    "INVALID_PARAMS", "INTERNAL_ERROR", "RATE_LIMITED", "NOT_AVAILABLE", "VOICE_LOAD_FAILED", "DEVICE_ERROR",
    "Command", "GetState", "SetParams", "ListVoices", "SetVoice", "ListDevices", "SetDevices", "ListPresets",
    "SavePreset", "LoadPreset", "DeletePreset", "ForgetSpeaker", "SetOptions", "CloneBegin", "CloneUpload",
    "CloneStart", "CloneCancel", "CloneStatus", "SelfTest", "Subscribe", "Unsubscribe", "COMMANDS", "Call", "Failure",
    "RpcError", "decode", "result", "error", "notification", "dumps", "build_schema", "TokenBucket",
    "TELEMETRY_FIELDS", "MIN_RATE_HZ", "MAX_RATE_HZ", "command_to_request",
]

PROTOCOL_VERSION = "1.0"
DEFAULT_PORT = 8765
"""Default control port (websocket and HTTP on the same port)."""
MAX_BATCH = 32
MAX_MESSAGE_BYTES = 64 * 1024
MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 60.0

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RATE_LIMITED = -32000
NOT_AVAILABLE = -32001
VOICE_LOAD_FAILED = -32002
DEVICE_ERROR = -32003

TELEMETRY_FIELDS: dict[str, str] = {
    "voice": "active voice",
    "bypass": "bypass on",
    "mute": "mute on",
    "input_level_dbfs": "input peak level, dBFS (decaying)",
    "output_level_dbfs": "output peak level, dBFS (decaying)",
    "noise_floor_dbfs": "tracked input noise floor (smallest input RMS, smoothed over 40 ms, of the last 3 s), dBFS "
                        "(-200 until 0.5 s of input)",
    "gate_open_dbfs": "input peak level above which the noise gate opens: gate_threshold_db, or the noise floor "
                      "plus gate_floor_margin_db where that is higher (at most -26), dBFS",
    "algorithmic_latency_ms": "algorithmic latency of the active voice, ms",
    "compute_ms_p50": "compute time per block, median, ms",
    "compute_ms_p99": "compute time per block, 99th percentile, ms",
    "rtf": "real-time factor (median compute / block duration)",
    "buffer_age_ms": "age of the oldest buffered input, ms (null when not measured, e.g. file mode)",
    "device_latency_ms": "what the sound devices buffer, input plus output stream latency as the runner opened "
                         "them, ms (0 for a file side; null without a runner)",
    "queue_ms": "audio a sample waits in rtvc's own rings on the way through, on average: buffer_age_ms (read "
                "right after a block is written, the rings at their fullest) less one block, ms (null when not "
                "measured)",
    "total_latency_ms": "about what a listener hears: algorithmic_latency_ms + device_latency_ms + queue_ms "
                        "(those that are known), ms",
    "xruns": "audio under/overruns",
    "dropped_blocks": "input blocks dropped because compute fell behind",
    "blocks": "blocks processed",
    "stage_errors": "times the active voice failed while running (each silences one 5 ms hop)",
    "speaker_s": "seconds of speech (at most 8) a neural voice learns the speaker from now: it grows while the "
                 "speaker talks, 0 after forget_speaker",
    "voice_provider": "where the active neural voice's model runs (onnxruntime provider, e.g. "
                      "'CPUExecutionProvider' or 'CUDAExecutionProvider'); null for DSP voices",
}


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


class _NamedPreset(Command):
    name: str

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
    params_schema: ClassVar[dict[str, Any]] = {"name": _PRESET_NAME}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""


@dataclass(frozen=True)
class DeletePreset(_NamedPreset):
    method: ClassVar[str] = "delete_preset"
    doc: ClassVar[str] = "delete a saved preset"
    params_schema: ClassVar[dict[str, Any]] = {"name": _PRESET_NAME}
    required: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""


@dataclass(frozen=True)
class ForgetSpeaker(Command):
    method: ClassVar[str] = "forget_speaker"
    doc: ClassVar[str] = ("someone else takes the microphone: the active neural voice starts learning the speaker "
                          "afresh (crossfaded, no click) and the speaker memory file is deleted; returns the state")


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
    DeletePreset, ForgetSpeaker, SetOptions, CloneBegin, CloneUpload, CloneStart, CloneCancel, CloneStatus, SelfTest,
    Subscribe, Unsubscribe)}

RpcId = Union[int, str, None]


@dataclass(frozen=True)
class Call:
    """A decoded request: the typed command and its id (``notify`` = no answer wanted)."""

    command: Command
    id: RpcId = None
    notify: bool = False


@dataclass(frozen=True)
class Failure:
    """A request that could not be decoded: the error response is already encoded."""

    response: str
    code: int


# --------------------------------------------------------------------------- encoding
def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Compact, strict JSON (non-finite floats become null)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def result(rpc_id: RpcId, value: Any) -> str:
    return dumps({"jsonrpc": "2.0", "id": rpc_id, "result": value})


def error(rpc_id: RpcId, code: int, message: str, data: Any = None) -> str:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return dumps({"jsonrpc": "2.0", "id": rpc_id, "error": err})


def notification(method: str, params: Mapping[str, Any]) -> str:
    return dumps({"jsonrpc": "2.0", "method": method, "params": dict(params)})


# --------------------------------------------------------------------------- decoding
def _valid_id(v: Any) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _decode_one(obj: Any) -> Call | Failure:
    if not isinstance(obj, dict):
        return Failure(error(None, INVALID_REQUEST, f"invalid request {_short(obj)}: expected a JSON-RPC 2.0 object"),
                       INVALID_REQUEST)
    rid = obj.get("id")
    if not _valid_id(rid):
        return Failure(error(None, INVALID_REQUEST, f"invalid request id {_short(rid)}: expected a string, an "
                                                    "integer or null"), INVALID_REQUEST)
    if obj.get("jsonrpc") != "2.0":
        return Failure(error(rid, INVALID_REQUEST, f"invalid request: jsonrpc={_short(obj.get('jsonrpc'))}; "
                                                   "expected \"2.0\""), INVALID_REQUEST)
    method = obj.get("method")
    if not isinstance(method, str):
        return Failure(error(rid, INVALID_REQUEST, f"invalid request: method={_short(method)}; expected a string"),
                       INVALID_REQUEST)
    notify = "id" not in obj
    cls = COMMANDS.get(method)
    if cls is None:
        return Failure(error(rid, METHOD_NOT_FOUND, f"method {_short(method)} not found; expected one of "
                                                    f"{sorted(COMMANDS)}"), METHOD_NOT_FOUND)
    params = obj.get("params", {})
    if isinstance(params, list) and not params:
        params = {}
    if not isinstance(params, dict):
        return Failure(error(rid, INVALID_PARAMS, f"{method}: params={_short(params)}; expected an object "
                                                  "of named parameters"), INVALID_PARAMS)
    try:
        return Call(cls.from_params(params), rid, notify)
    except RpcError as e:
        return Failure(error(rid, e.code, e.message, e.data), e.code)


def _short(v: Any, limit: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "...'"


def decode(message: str | bytes) -> tuple[list[Call | Failure], bool]:
    """Decode one websocket message.

    Returns
    -------
    items : list of Call or Failure
        One per request (a single request gives a list of one).
    batch : bool
        True when the message was a JSON array: answers go back as one array.
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        return [Failure(error(None, INVALID_REQUEST, f"binary message of {len(message)} bytes refused; expected a "
                                                     "JSON-RPC text message"), INVALID_REQUEST)], False
    try:
        obj = json.loads(message)
    except (ValueError, RecursionError) as e:
        return [Failure(error(None, PARSE_ERROR, f"parse error: {e}"), PARSE_ERROR)], False
    if isinstance(obj, list):
        if not obj:
            return [Failure(error(None, INVALID_REQUEST, "empty batch; expected at least one request"),
                            INVALID_REQUEST)], False
        if len(obj) > MAX_BATCH:
            return [Failure(error(None, INVALID_REQUEST, f"batch of {len(obj)} requests refused; expected at most "
                                                         f"{MAX_BATCH}"), INVALID_REQUEST)], False
        return [_decode_one(o) for o in obj], True
    return [_decode_one(obj)], False


def command_to_request(command: Command, rpc_id: RpcId = None) -> str:
    """Encode a typed command as a request (the client side; used by tests and tools)."""
    params = {f.name: getattr(command, f.name) for f in fields(command)}
    if isinstance(command, SetParams):
        params = dict(command.changes)
    params = {k: v for k, v in params.items() if v is not None}
    return dumps({"jsonrpc": "2.0", "id": rpc_id, "method": command.method, "params": params})


# --------------------------------------------------------------------------- rate limit
class TokenBucket:
    """Per-connection request limit: ``rate`` tokens per second, at most ``burst`` saved.

    Pure: the caller passes the current time (``time.monotonic()``) in seconds.
    """

    def __init__(self, rate: float = 200.0, burst: float = 400.0, *, now: float = 0.0) -> None:
        if not (rate > 0 and burst >= 1):
            raise ConfigError(f"token bucket rate={rate!r}, burst={burst!r}; expected rate > 0 and burst >= 1")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens = float(burst)
        self.t = now

    def take(self, now: float, n: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


# --------------------------------------------------------------------------- schema
def build_schema() -> dict[str, Any]:
    """The machine-readable description shipped as ``rtvc/control/schema.json``."""
    methods = {}
    for name, cls in COMMANDS.items():
        methods[name] = {"description": cls.doc, "params": cls.params_schema, "required": list(cls.required)}
    return {
        "name": "rtvc control protocol",
        "transport": "websocket, JSON-RPC 2.0 text messages",
        "protocol_version": PROTOCOL_VERSION,
        "auth": "Authorization: Bearer TOKEN header or ?token=TOKEN query parameter",
        "limits": {"max_message_bytes": MAX_MESSAGE_BYTES, "max_batch": MAX_BATCH,
                   "rate_limit_per_s": 200, "rate_limit_burst": 400,
                   "telemetry_rate_hz": [MIN_RATE_HZ, MAX_RATE_HZ]},
        "params": _params_schema(),
        "methods": methods,
        "notifications": {
            "hello": {"description": "sent once on connect", "params": ["protocol_version", "server", "methods",
                                                                          "state"]},
            "state_changed": {"description": "any client, hotkey or HTTP button changed the state",
                              "params": ["state", "changed", "source"]},
            "telemetry": {"description": "at the subscribed rate", "params": sorted(TELEMETRY_FIELDS)},
            "clone_progress": {"description": "a clone job changed (to every client)",
                               "params": ["job", "name", "state", "stage", "fraction", "eta_s", "message", "files",
                                          "bytes", "voice"]},
        },
        "telemetry": TELEMETRY_FIELDS,
        "errors": {str(PARSE_ERROR): "parse error", str(INVALID_REQUEST): "invalid request",
                   str(METHOD_NOT_FOUND): "method not found", str(INVALID_PARAMS): "invalid params",
                   str(INTERNAL_ERROR): "internal error", str(RATE_LIMITED): "rate limited",
                   str(NOT_AVAILABLE): "not available (no audio runner)",
                   str(VOICE_LOAD_FAILED): "voice failed to load", str(DEVICE_ERROR): "device error"},
    }


if __name__ == "__main__":  # python -m rtvc.control.protocol > rtvc/control/schema.json
    print(json.dumps(build_schema(), indent=2))
