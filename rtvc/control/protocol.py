"""The control protocol: JSON-RPC 2.0 over a websocket, as a pure module (no I/O).

``decode(text)`` turns one websocket text message into typed commands (or ready error
responses); ``result``/``error``/``notification`` turn answers back into JSON text. The
server is a thin adapter that moves these strings; everything here is tested without sockets.
The methods themselves (one typed dataclass each, with its validation) and the error codes are
:mod:`rtvc.control.methods`; every name there is importable from here too.

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
from dataclasses import dataclass, fields
from typing import Any, Mapping, Union

from ..errors import ConfigError
# the typed methods and error codes (re-exported: clients of the protocol import them from here)
from .methods import (COMMANDS, DEVICE_ERROR, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, MAX_RATE_HZ,
                      METHOD_NOT_FOUND, MIN_RATE_HZ, NOT_AVAILABLE, PARSE_ERROR, RATE_LIMITED, VOICE_LOAD_FAILED,
                      CloneBegin, CloneCancel, CloneStart, CloneStatus, CloneUpload, Command, DeletePreset,
                      ForgetSpeaker, GetState, ListDevices, ListPresets, ListVoices, LoadPreset, Quit, RpcError,
                      SavePreset, SelfTest, SetDevices, SetOptions, SetParams, SetVoice, Subscribe, Unsubscribe,
                      _params_schema)

__all__ = [
    "PROTOCOL_VERSION", "MAX_BATCH", "MAX_MESSAGE_BYTES", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND",
    "INVALID_PARAMS", "INTERNAL_ERROR", "RATE_LIMITED", "NOT_AVAILABLE", "VOICE_LOAD_FAILED", "DEVICE_ERROR",
    "Command", "GetState", "SetParams", "ListVoices", "SetVoice", "ListDevices", "SetDevices", "ListPresets",
    "SavePreset", "LoadPreset", "DeletePreset", "ForgetSpeaker", "Quit", "SetOptions", "CloneBegin", "CloneUpload",
    "CloneStart", "CloneCancel", "CloneStatus", "SelfTest", "Subscribe", "Unsubscribe", "COMMANDS", "Call", "Failure",
    "RpcError", "decode", "result", "error", "notification", "dumps", "build_schema", "TokenBucket",
    "TELEMETRY_FIELDS", "MIN_RATE_HZ", "MAX_RATE_HZ", "command_to_request",
]

PROTOCOL_VERSION = "1.0"
DEFAULT_PORT = 8765
"""Default control port (websocket and HTTP on the same port)."""
MAX_BATCH = 32
MAX_MESSAGE_BYTES = 64 * 1024

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
    "algorithmic_latency_ms": "algorithmic latency of the active voice, ms (noise suppression's included)",
    "denoise_latency_ms": "what noise suppression adds to algorithmic_latency_ms, ms (0 while it is off)",
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
