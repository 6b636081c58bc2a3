"""A native PulseAudio (and PipeWire-pulse) client for the live path: ``LiveRunner(backend="pulse")``.

PortAudio reaches PulseAudio through ALSA's ``pulse`` plugin: PortAudio's callback thread polls
an emulated ALSA device whose samples a second thread (the plugin's libpulse mainloop) moves to
and from the server, with ALSA's period/buffer bookkeeping in between. On the measured VM the
5 ms xruns of the loopback and load benchmarks were ALSA-level (the plugin's stream ran dry
although rtvc's ring had audio). This client talks to the server directly with libpulse's
asynchronous API: one threaded mainloop per stream, and the server's requests are answered by
the compiled callbacks of ``rtvc._native.pulse_callback`` on the mainloop's thread (no GIL, no
allocation, the same rings and counters as the PortAudio path).

Buffering: a playback stream asks for ``tlength`` = the device latency (default: two device
blocks) with ``minreq`` = half a block and ``PA_STREAM_EARLY_REQUESTS`` (the server asks as soon
as half a block is free, and runs its sink with periods of that size, as it does for ALSA's
plugin); a record stream gets ``fragsize`` = one block. Measured on the 2-core VM (20 s after a
5 s start, bypass): with ``PA_STREAM_ADJUST_LATENCY`` instead the server shrank the null sink's
period to 0.5-2.5 ms and underran our stream 23-26 times in 20 s; with early requests 0-3 xruns,
as many as PortAudio's path. The write callback answers each request in full, from the output
ring and with silence for what it lacks (see ``rtvc._native.pulse_callback``). Setup and
teardown are plain Python (ctypes) holding the mainloop's lock; nothing in Python runs per
block, and while the streams run no Python thread takes that lock (the stream state is read
from words the compiled state callbacks store).

Devices are PulseAudio sink and source names (``pactl list short sinks``); ``None`` is the
client default (``PULSE_SINK`` / ``PULSE_SOURCE`` when set, else the server's default).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import DeviceError

__all__ = ["available", "list_pulse_devices", "resolve_pulse_device", "PulseStream", "KINDS"]

KINDS = ("input", "output", "monitor")
CONNECT_TIMEOUT_S = 3.0

# enums and flags (pulse/def.h, pulse/sample.h)
_CTX_READY, _CTX_FAILED, _CTX_TERMINATED = 4, 5, 6
_ST_READY, _ST_FAILED, _ST_TERMINATED = 2, 3, 4
_OP_DONE, _OP_CANCELLED = 1, 2
_SAMPLE_FLOAT32LE = 5
_CONTEXT_NOAUTOSPAWN = 0x0001
_STREAM_START_CORKED = 0x0001
_STREAM_INTERPOLATE_TIMING = 0x0002
_STREAM_AUTO_TIMING_UPDATE = 0x0008
_STREAM_EARLY_REQUESTS = 0x4000
_NO_VALUE = 0xFFFFFFFF  # (uint32_t) -1: let the server choose


class _SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [("maxlength", ctypes.c_uint32), ("tlength", ctypes.c_uint32), ("prebuf", ctypes.c_uint32),
                ("minreq", ctypes.c_uint32), ("fragsize", ctypes.c_uint32)]


class _DeviceInfoHead(ctypes.Structure):
    """The leading fields shared by ``pa_sink_info`` and ``pa_source_info``."""
    _fields_ = [("name", ctypes.c_char_p), ("index", ctypes.c_uint32), ("description", ctypes.c_char_p),
                ("sample_spec", _SampleSpec)]


class _ServerInfoHead(ctypes.Structure):
    _fields_ = [("user_name", ctypes.c_char_p), ("host_name", ctypes.c_char_p), ("server_version", ctypes.c_char_p),
                ("server_name", ctypes.c_char_p), ("sample_spec", _SampleSpec),
                ("default_sink_name", ctypes.c_char_p), ("default_source_name", ctypes.c_char_p)]


_INFO_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_DeviceInfoHead), ctypes.c_int, ctypes.c_void_p)
_SERVER_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_ServerInfoHead), ctypes.c_void_p)
_REQUEST_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_NOTIFY_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

_VP = ctypes.c_void_p
_PROTOS: dict[str, tuple[Any, list[Any]]] = {
    "pa_threaded_mainloop_new": (_VP, []),
    "pa_threaded_mainloop_get_api": (_VP, [_VP]),
    "pa_threaded_mainloop_start": (ctypes.c_int, [_VP]),
    "pa_threaded_mainloop_stop": (None, [_VP]),
    "pa_threaded_mainloop_free": (None, [_VP]),
    "pa_threaded_mainloop_lock": (None, [_VP]),
    "pa_threaded_mainloop_unlock": (None, [_VP]),
    "pa_context_new": (_VP, [_VP, ctypes.c_char_p]),
    "pa_context_connect": (ctypes.c_int, [_VP, ctypes.c_char_p, ctypes.c_int, _VP]),
    "pa_context_get_state": (ctypes.c_int, [_VP]),
    "pa_context_errno": (ctypes.c_int, [_VP]),
    "pa_context_disconnect": (None, [_VP]),
    "pa_context_set_state_callback": (None, [_VP, _VP, _VP]),
    "pa_context_unref": (None, [_VP]),
    "pa_context_get_sink_info_list": (_VP, [_VP, _INFO_CB, _VP]),
    "pa_context_get_source_info_list": (_VP, [_VP, _INFO_CB, _VP]),
    "pa_context_get_server_info": (_VP, [_VP, _SERVER_CB, _VP]),
    "pa_operation_get_state": (ctypes.c_int, [_VP]),
    "pa_operation_unref": (None, [_VP]),
    "pa_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "pa_stream_new": (_VP, [_VP, ctypes.c_char_p, ctypes.POINTER(_SampleSpec), _VP]),
    "pa_stream_set_read_callback": (None, [_VP, _VP, _VP]),
    "pa_stream_set_write_callback": (None, [_VP, _VP, _VP]),
    "pa_stream_set_underflow_callback": (None, [_VP, _VP, _VP]),
    "pa_stream_set_overflow_callback": (None, [_VP, _VP, _VP]),
    "pa_stream_set_state_callback": (None, [_VP, _VP, _VP]),
    "pa_stream_connect_playback": (ctypes.c_int, [_VP, ctypes.c_char_p, ctypes.POINTER(_BufferAttr), ctypes.c_int,
                                                  _VP, _VP]),
    "pa_stream_connect_record": (ctypes.c_int, [_VP, ctypes.c_char_p, ctypes.POINTER(_BufferAttr), ctypes.c_int]),
    "pa_stream_get_state": (ctypes.c_int, [_VP]),
    "pa_stream_get_buffer_attr": (ctypes.POINTER(_BufferAttr), [_VP]),
    "pa_stream_get_device_name": (ctypes.c_char_p, [_VP]),
    "pa_stream_cork": (_VP, [_VP, ctypes.c_int, _VP, _VP]),
    "pa_stream_disconnect": (ctypes.c_int, [_VP]),
    "pa_stream_unref": (None, [_VP]),
    "pa_stream_peek": (ctypes.c_int, [_VP, _VP, _VP]),
    "pa_stream_drop": (ctypes.c_int, [_VP]),
    "pa_stream_begin_write": (ctypes.c_int, [_VP, _VP, _VP]),
    "pa_stream_write": (ctypes.c_int, [_VP, _VP, ctypes.c_size_t, _VP, ctypes.c_int64, ctypes.c_int]),
    "pa_stream_cancel_write": (ctypes.c_int, [_VP]),
}

_lib: Any = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def _libpulse() -> Any:
    """libpulse, loaded once with the prototypes above; DeviceError naming what is missing."""
    global _lib, _lib_error
    with _lib_lock:
        if _lib is None and _lib_error is None:
            name = ctypes.util.find_library("pulse") or "libpulse.so.0"
            try:
                lib = ctypes.CDLL(name)
                for fn, (res, args) in _PROTOS.items():
                    f = getattr(lib, fn)
                    f.restype, f.argtypes = res, args
                _lib = lib
            except (OSError, AttributeError) as e:
                _lib_error = f"libpulse could not be loaded ({name}: {e}); install libpulse0 or use --backend portaudio"
        if _lib is None:
            raise DeviceError(f"the pulse backend is not available: {_lib_error}")
        return _lib


def available() -> bool:
    """True where libpulse loads (a server may still be unreachable)."""
    try:
        _libpulse()
        return True
    except DeviceError:
        return False


def _function_addresses(lib: Any) -> dict[str, int]:
    from .._native.pulse_callback import PULSE_FUNCTIONS

    return {f: ctypes.cast(getattr(lib, f), ctypes.c_void_p).value or 0 for f in PULSE_FUNCTIONS}


class _Connection:
    """A threaded mainloop and a context connected to the server (``PULSE_SERVER`` or the
    default socket; never autospawns a daemon). ``with conn.locked():`` around every libpulse
    call once the mainloop runs."""

    def __init__(self, name: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        lib = self.lib = _libpulse()
        self.ml = lib.pa_threaded_mainloop_new()
        if not self.ml:
            raise DeviceError("PulseAudio: pa_threaded_mainloop_new failed")
        self.ctx = lib.pa_context_new(lib.pa_threaded_mainloop_get_api(self.ml), name.encode())
        self.started = False
        try:
            if not self.ctx:
                raise DeviceError("PulseAudio: pa_context_new failed")
            if lib.pa_context_connect(self.ctx, None, _CONTEXT_NOAUTOSPAWN, None) < 0:
                raise DeviceError(f"cannot reach the PulseAudio server: {self.error()}")
            if lib.pa_threaded_mainloop_start(self.ml) < 0:
                raise DeviceError("PulseAudio: the mainloop thread did not start")
            self.started = True
            self.wait(lambda: self.lib.pa_context_get_state(self.ctx), (_CTX_READY,), (_CTX_FAILED, _CTX_TERMINATED),
                      timeout_s, "connecting to the PulseAudio server")
        except BaseException:
            self.close()
            raise

    def error(self) -> str:
        code = self.lib.pa_context_errno(self.ctx) if self.ctx else 0
        return f"{(self.lib.pa_strerror(code) or b'?').decode('utf-8', 'replace')} [pa errno {code}]"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The mainloop's lock (nothing to take before the mainloop thread runs)."""
        if not self.started:
            yield
            return
        self.lib.pa_threaded_mainloop_lock(self.ml)
        try:
            yield
        finally:
            self.lib.pa_threaded_mainloop_unlock(self.ml)

    def wait(self, state: Callable[[], int], ready: tuple[int, ...], failed: tuple[int, ...], timeout_s: float,
             what: str) -> None:
        """Poll ``state()`` (called with the lock held) until it is one of ``ready``; DeviceError
        on a failed state or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.locked():
                st = state()
                err = self.error() if st in failed else ""
            if st in ready:
                return
            if st in failed:
                raise DeviceError(f"{what} failed: {err}")
            if time.monotonic() > deadline:
                raise DeviceError(f"{what} timed out after {timeout_s:g} s (state {st})")
            time.sleep(0.002)

    def run_operation(self, start: Callable[[], Any], what: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Start an operation (``start()`` under the lock) and wait until it is done or cancelled."""
        with self.locked():
            op = start()
        if not op:
            raise DeviceError(f"PulseAudio: {what} failed: {self.error()}")
        try:
            self.wait(lambda: self.lib.pa_operation_get_state(op), (_OP_DONE, _OP_CANCELLED), (), timeout_s,
                      f"PulseAudio: {what}")
        finally:
            with self.locked():
                self.lib.pa_operation_unref(op)

    def close(self) -> None:
        lib = self.lib
        if self.ctx:
            with self.locked():
                lib.pa_context_disconnect(self.ctx)
                lib.pa_context_unref(self.ctx)
            self.ctx = None
        if self.ml:
            if self.started:
                lib.pa_threaded_mainloop_stop(self.ml)
                self.started = False
            lib.pa_threaded_mainloop_free(self.ml)
            self.ml = None


def list_pulse_devices() -> dict[str, Any]:
    """The server's sinks and sources: ``{"sinks": [...], "sources": [...], "default_sink",
    "default_source"}``, each device ``{"name", "index", "description", "channels", "rate"}``.
    DeviceError when no server is reachable."""
    conn = _Connection("rtvc-list")
    try:
        out: dict[str, Any] = {"sinks": [], "sources": [], "default_sink": None, "default_source": None}

        def collector(key: str) -> Any:
            def cb(ctx: int, info: Any, eol: int, ud: int) -> None:
                if eol or not info:
                    return
                i = info.contents
                out[key].append({"name": (i.name or b"").decode("utf-8", "replace"), "index": int(i.index),
                                 "description": (i.description or b"").decode("utf-8", "replace"),
                                 "channels": int(i.sample_spec.channels), "rate": int(i.sample_spec.rate)})
            return _INFO_CB(cb)

        def server_cb(ctx: int, info: Any, ud: int) -> None:
            if info:
                out["default_sink"] = (info.contents.default_sink_name or b"").decode() or None
                out["default_source"] = (info.contents.default_source_name or b"").decode() or None

        lib = conn.lib
        sink_cb, source_cb, srv_cb = collector("sinks"), collector("sources"), _SERVER_CB(server_cb)
        conn.run_operation(lambda: lib.pa_context_get_sink_info_list(conn.ctx, sink_cb, None), "listing sinks")
        conn.run_operation(lambda: lib.pa_context_get_source_info_list(conn.ctx, source_cb, None), "listing sources")
        conn.run_operation(lambda: lib.pa_context_get_server_info(conn.ctx, srv_cb, None), "reading server info")
        return out
    finally:
        conn.close()


def resolve_pulse_device(spec: int | str | None, kind: str, devices: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sink (``kind`` output / monitor) or source (input) that ``spec`` names: an exact name,
    a PulseAudio index, or a substring of one name or description; ``None``: the client default
    (``PULSE_SINK`` / ``PULSE_SOURCE``, else the server's). DeviceError listing the candidates."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not known; expected one of {KINDS}")
    devs = list_pulse_devices() if devices is None else devices
    key, env, dflt = ("sources", "PULSE_SOURCE", "default_source") if kind == "input" else \
        ("sinks", "PULSE_SINK", "default_sink")
    cands = devs[key]
    if isinstance(spec, str) and spec.strip().lower() in ("", "default"):
        spec = None
    if spec is None:
        spec = os.environ.get(env) or devs.get(dflt)
        if spec is None:
            raise DeviceError(f"the PulseAudio server has no default {key[:-1]}; name one of "
                              f"{[d['name'] for d in cands]}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        hits = [d for d in cands if d["index"] == int(spec)]
    else:
        hits = [d for d in cands if d["name"] == spec]
        if not hits:
            s = str(spec).lower()
            hits = [d for d in cands if s in d["name"].lower() or s in d["description"].lower()]
    if len(hits) != 1:
        names = ", ".join(d["name"] for d in cands) or "none"
        what = "matches no" if not hits else f"matches {len(hits)}"
        raise DeviceError(f"PulseAudio {kind} device {spec!r} {what} {key[:-1]}; expected one of: {names}")
    return hits[0]


class PulseStream:
    """One PulseAudio playback (``kind`` output / monitor) or record (input) stream whose
    callbacks are the compiled ``rtvc._native.pulse_callback`` functions. The interface is the
    one the runner uses for its PortAudio streams: ``start``, ``stop``, ``abort``, ``close``,
    ``active``, ``latency`` (s), ``kind``.

    ``ctl`` is the ``pa_callback`` control block (rings, counters, wake-up); it, ``keep`` and the
    pulse block live as long as this object. ``latency_s``: the playback buffer (``tlength``;
    None: two blocks); a record stream's fragments are one block.
    """

    def __init__(self, *, kind: str, device: str, channels: int, rate: int, block: int, ctl: np.ndarray,
                 keep: tuple[Any, ...], latency_s: float | None = None) -> None:
        from .._native.pulse_callback import (
            PB,
            make_pulse_block,
            pulse_context_state_cb,
            pulse_overflow_cb,
            pulse_read_cb,
            pulse_stream_state_cb,
            pulse_underflow_cb,
            pulse_write_cb,
        )

        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not known; expected one of {KINDS}")
        self.kind, self.device, self.rate, self.channels = kind, device, int(rate), int(channels)
        self.closed = True
        self._s: int | None = None
        self._conn = _Connection(f"rtvc {kind}")
        lib = self._lib = self._conn.lib
        self._pb = make_pulse_block(ctl, _function_addresses(lib), channels=channels)
        self._keep = (ctl, keep)
        frame = 4 * self.channels
        block = max(2, int(block))
        tl_frames = 2 * block if latency_s is None else max(block, int(round(latency_s * rate)))
        attr = _BufferAttr(_NO_VALUE, _NO_VALUE, _NO_VALUE, _NO_VALUE, _NO_VALUE)
        if kind == "input":
            attr.fragsize = block * frame
        else:
            attr.tlength, attr.minreq, attr.prebuf = tl_frames * frame, block // 2 * frame, block // 2 * frame
        spec = _SampleSpec(_SAMPLE_FLOAT32LE, self.rate, self.channels)
        flags = _STREAM_START_CORKED | _STREAM_EARLY_REQUESTS | _STREAM_INTERPOLATE_TIMING | _STREAM_AUTO_TIMING_UPDATE
        ud = ctypes.c_void_p(self._pb.ctypes.data)
        conn = self._conn
        try:
            with conn.locked():
                self._pb[PB["context_state"]] = lib.pa_context_get_state(conn.ctx)
                lib.pa_context_set_state_callback(conn.ctx, pulse_context_state_cb.address, ud)
                s = lib.pa_stream_new(conn.ctx, f"rtvc {kind}".encode(), ctypes.byref(spec), None)
                if not s:
                    raise DeviceError(f"PulseAudio: cannot create the {kind} stream: {conn.error()}")
                self._s = s
                lib.pa_stream_set_state_callback(s, pulse_stream_state_cb.address, ud)
                if kind == "input":
                    lib.pa_stream_set_read_callback(s, pulse_read_cb.address, ud)
                    lib.pa_stream_set_overflow_callback(s, pulse_overflow_cb.address, ud)
                    rc = lib.pa_stream_connect_record(s, device.encode(), ctypes.byref(attr), flags)
                else:
                    lib.pa_stream_set_write_callback(s, pulse_write_cb.address, ud)
                    lib.pa_stream_set_underflow_callback(s, pulse_underflow_cb.address, ud)
                    rc = lib.pa_stream_connect_playback(s, device.encode(), ctypes.byref(attr), flags, None, None)
                if rc < 0:
                    raise DeviceError(f"PulseAudio: cannot connect the {kind} stream to {device!r}: {conn.error()}")
            conn.wait(lambda: lib.pa_stream_get_state(s), (_ST_READY,), (_ST_FAILED, _ST_TERMINATED), CONNECT_TIMEOUT_S,
                      f"opening the PulseAudio {kind} stream on {device!r}")
            with conn.locked():
                a = lib.pa_stream_get_buffer_attr(s).contents
                self.buffer_attr = {f: int(getattr(a, f)) for f, _ in _BufferAttr._fields_}
                self.device = (lib.pa_stream_get_device_name(s) or device.encode()).decode("utf-8", "replace")
        except BaseException:
            self._teardown()
            raise
        self.closed = False
        held = self.buffer_attr["fragsize"] if kind == "input" else self.buffer_attr["tlength"]
        self.latency = held / frame / self.rate
        """The buffer the server granted (record: ``fragsize``; playback: ``tlength``), in s."""

    def _cork(self, corked: bool) -> None:
        if self.closed or self._s is None:
            return
        with self._conn.locked():
            op = self._lib.pa_stream_cork(self._s, 1 if corked else 0, None, None)
            if op:
                self._lib.pa_operation_unref(op)

    def start(self) -> None:
        self._cork(False)

    def stop(self) -> None:
        self._cork(True)

    def abort(self) -> None:
        self._cork(True)

    @property
    def active(self) -> bool:
        """Connection and stream ready: read from the states the compiled state callbacks store,
        without the mainloop's lock (a thread holding it while it waits for the GIL would stall
        every audio callback of this stream meanwhile)."""
        from .._native.pulse_callback import PB

        return (not self.closed and int(self._pb[PB["context_state"]]) == _CTX_READY
                and int(self._pb[PB["stream_state"]]) == _ST_READY)

    def _teardown(self) -> None:
        if self._s is not None:
            with self._conn.locked():
                for setter in ("pa_stream_set_read_callback", "pa_stream_set_write_callback",
                               "pa_stream_set_underflow_callback", "pa_stream_set_overflow_callback",
                               "pa_stream_set_state_callback"):
                    getattr(self._lib, setter)(self._s, None, None)
                if self._conn.ctx:
                    self._lib.pa_context_set_state_callback(self._conn.ctx, None, None)
                self._lib.pa_stream_disconnect(self._s)
                self._lib.pa_stream_unref(self._s)
            self._s = None
        self._conn.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._teardown()
