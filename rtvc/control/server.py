"""The control server: a thin ``websockets`` asyncio adapter over the pure protocol.

One port serves both the websocket (JSON-RPC 2.0, see :mod:`rtvc.control.protocol`) and a few
HTTP routes through websockets' ``process_request`` hook (answered by
:class:`rtvc.control.web.HttpFront`):

===============================  =====  =================================================
route                            auth   what
===============================  =====  =================================================
``GET /healthz``                 no     ``{"status": "ok", "protocol_version": ...}``
``GET /schema.json``             no     the protocol schema
``GET /`` or ``/panel?token=T``  yes    the control panel (self-contained)
``GET /overlay?token=T``         yes    the OBS browser-source overlay (self-contained)
``GET /preview/NAME.wav``        yes    a neural voice's preview clip
``GET /api/state``               yes    the ``get_state`` result as JSON
``POST /api/voice/NAME``         yes    switch voice
``POST /api/bypass/toggle``      yes    toggle bypass (also ``mute/toggle``,
                                        ``monitor/toggle``)
``POST /api/pitch/up`` / down    yes    pitch +-1 semitone
``POST /api/voice-next`` / prev  yes    next / previous voice
``POST /api/speaker/forget``     yes    forget the speaker (someone else takes the mic)
``POST /api/param/NAME?value=V``  yes    set any parameter: a value, ``+=N``/``-=N``, ``toggle``
``POST /api/preset/NAME``         yes    load a preset
``POST /api/devices?input=..``    yes    switch devices (``input``, ``output``, ``monitor``, ``rate``)
===============================  =====  =================================================

The ``/api`` actions also accept ``GET`` (Stream Deck's "access in background" sends GET);
the token is still required. A wrong or missing token gets ``401`` and nothing is done (the
pages answer a short HTML page saying how to get the address with the token); a browser
``Origin`` that is not allowed gets ``403``.

Per connection: a token bucket limits requests (default 200/s, burst 400; excess requests are
answered with ``RATE_LIMITED``); outgoing messages go through a bounded queue (default 64
messages) drained by one sender task; a client whose queue fills (it does not read) is
dropped with close code 1008, and nobody else waits for it. Messages over 64 KiB close the
connection with 1009 (websockets' ``max_size``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.streams import StreamReader

from ..errors import ConfigError
from . import protocol as P
from .protocol import DEFAULT_PORT
from .actions import Controller
from .auth import check_bind_host
from .routes import page_address
from .web import HttpFront, overlay_html, panel_html

__all__ = ["ControlServer", "ServerHandle", "DEFAULT_PORT", "SEND_QUEUE", "overlay_html", "panel_html"]

SEND_QUEUE = 64
log = logging.getLogger("rtvc.control")

# commands that may block (voice loading, device reopening, file I/O) run off the event loop
_BLOCKING = (P.SetParams, P.SetVoice, P.SetDevices, P.ListDevices, P.LoadPreset, P.SavePreset, P.DeletePreset,
             P.ListPresets, P.SetOptions, P.CloneBegin, P.CloneUpload, P.CloneStart, P.CloneCancel)


class _BodySkippingReader(StreamReader):
    """websockets' stream reader, except that the body of the HTTP request is read and dropped.

    While the request head is read (websockets reads it line by line), the ``Content-Length``
    line is kept from websockets, which would refuse the request, and once the head ends that
    many bytes are discarded as they arrive (nothing is held: a large body costs time, bounded
    by the server's open timeout, not memory). The request is then answered as if it had none;
    the ``/api`` routes take everything from the path.
    """

    def __init__(self) -> None:
        super().__init__()
        self._in_head = True
        self._body = 0

    def read_line(self, m: int, too_long_exc_type: type[Exception] = RuntimeError) -> Any:
        while True:
            line = yield from super().read_line(m, too_long_exc_type)
            if not self._in_head:
                return line
            name, colon, value = bytes(line).partition(b":")
            if colon and name.strip().lower() == b"content-length" and value.strip().isdigit() and not self._body:
                self._body = int(value.strip())
                continue  # a second, different Content-Length stays visible: websockets refuses it
            if line == b"\r\n":
                self._in_head = False
                yield from self._discard(self._body)
            return line

    def _discard(self, n: int) -> Any:
        while n > 0:
            if not self.buffer:
                if self.eof:
                    raise EOFError(f"stream ends {n} bytes before the end of the request body")
                yield
                continue
            k = min(n, len(self.buffer))
            del self.buffer[:k]
            n -= k


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    queue: asyncio.Queue[str]
    bucket: P.TokenBucket
    sender: asyncio.Task[None] | None = None
    telemetry: asyncio.Task[None] | None = None
    rate_hz: float = 0.0
    dropped: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "rate_limited": 0, "sent": 0})


class ControlServer:
    """Websocket + HTTP control server over a :class:`Controller`.

    Parameters
    ----------
    controller : Controller
    token : str
        The shared secret every connection and HTTP action must present.
    host, port : str, int
        Bind address; ``port=0`` picks a free port (see :attr:`port` after start).
        A non-loopback host needs ``allow_remote=True``.
    origins : iterable of str or None
        Allowed browser ``Origin`` values; default :func:`auth.default_origins` of the port.
    rate_per_s, burst : float
        Per-connection request token bucket.
    send_queue : int
        Outgoing messages buffered per client before it is dropped as not reading.
    """

    def __init__(self, controller: Controller, *, token: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 allow_remote: bool = False, origins: Iterable[str] | None = None, rate_per_s: float = 200.0,
                 burst: float = 400.0, send_queue: int = SEND_QUEUE,
                 max_message_bytes: int = P.MAX_MESSAGE_BYTES) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"control port {port!r} is out of range; expected 0..65535")
        if send_queue < 1:
            raise ConfigError(f"send_queue {send_queue!r} is out of range; expected >= 1")
        self.warning = check_bind_host(host, allow_remote=allow_remote)
        self.controller = controller
        self.token = token
        self.host = host
        self.port = port
        self.rate_per_s, self.burst = rate_per_s, burst
        P.TokenBucket(rate_per_s, burst)  # validates
        self.send_queue = send_queue
        self.max_message_bytes = max_message_bytes
        self._conns: set[_Conn] = set()
        self._every: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtvc-control")
        self.http = HttpFront(controller, token=token, pool=self._pool,
                              origins=list(origins) if origins is not None else None)
        self.http.port = port
        self._stats = {"connections": 0, "dropped_slow": 0}

    # ------------------------------------------------------------------ lifecycle
    @property
    def origins(self) -> list[str]:
        return self.http.origins

    @property
    def stats(self) -> dict[str, int]:
        """Connections, slow clients dropped, requests refused for a wrong token or origin (a copy)."""
        return {**self._stats, **self.http.stats}

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{h}:{self.port}/"

    @property
    def overlay_url(self) -> str:
        """The overlay's address with the token percent-encoded (a token may hold ``#&+%``)."""
        return page_address(self.host, self.port, self.token, "/overlay")

    @property
    def panel_url(self) -> str:
        """The control panel's address, with the token."""
        return page_address(self.host, self.port, self.token)

    async def start(self) -> None:
        """Bind and start serving (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        every = self._every

        class _Tracked(ServerConnection):
            """Remembers every TCP connection, also those still in (or never finishing) the handshake."""

            def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
                # websockets answers a request with a body by closing the connection without a
                # word; HTTP clients (curl -d, Stream Deck plugins) POST to /api with one. Its
                # parser restarts (no byte has arrived yet) on a reader that drops the body.
                protocol.reader = _BodySkippingReader()
                protocol.parser = protocol.parse()
                next(protocol.parser)
                super().__init__(protocol, *args, **kwargs)

            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                every.add(self)

        try:
            self._server = await serve(
                self._handler, self.host, self.port, process_request=self.http.process_request,
                max_size=self.max_message_bytes, max_queue=16, write_limit=16384, compression=None,
                ping_interval=20, ping_timeout=20, close_timeout=2, open_timeout=10, create_connection=_Tracked,
                logger=logging.getLogger("rtvc.control.ws"))
        except OSError as e:
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}; expected a free port "
                              "(choose another with --port)") from None
        self.port = self.http.port = self._server.sockets[0].getsockname()[1]
        self.controller.add_listener(self._on_change)
        self.controller.add_notify_listener(self._on_notify)

    async def stop(self) -> None:
        self.controller.remove_listener(self._on_change)
        self.controller.remove_notify_listener(self._on_notify)
        if self._server is not None:
            self._server.close()  # sends 1001 going away to every client
            try:
                await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), 1.0)
            except asyncio.TimeoutError:  # a client stuck in a handshake (browsers pre-connect) or in closing
                for c in list(self._every):
                    if c.transport is not None:
                        c.transport.abort()
                await self._server.wait_closed()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start_background(self, timeout_s: float = 10.0) -> "ServerHandle":
        """Run the server on its own asyncio loop in a daemon thread; returns a handle."""
        h = ServerHandle(self)
        h._start(timeout_s)
        return h

    # ------------------------------------------------------------------ broadcast
    def _on_change(self, payload: dict[str, Any]) -> None:
        """Controller listener: may run on any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = P.notification("state_changed", payload)
        try:
            loop.call_soon_threadsafe(self._broadcast, text)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _on_notify(self, method: str, params: dict[str, Any]) -> None:
        """Controller notification listener (``clone_progress``): may run on any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, P.notification(method, params))
        except RuntimeError:  # loop closed meanwhile
            pass

    def _broadcast(self, text: str) -> None:
        for c in list(self._conns):
            self._enqueue(c, text)

    def _enqueue(self, conn: _Conn, text: str) -> None:
        if conn.dropped:
            return
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(conn, f"send queue full ({self.send_queue} messages): client is not reading")

    def _drop(self, conn: _Conn, reason: str) -> None:
        conn.dropped = True
        self._conns.discard(conn)
        self._stats["dropped_slow"] += 1
        log.warning("dropping control client %s: %s", conn.ws.remote_address, reason)
        for t in (conn.telemetry, conn.sender):
            if t is not None:
                t.cancel()
        asyncio.ensure_future(conn.ws.close(1008, reason[:120]))

    # ------------------------------------------------------------------ websocket
    async def _handler(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            try:  # bound what the kernel buffers for a client that stops reading
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
            except OSError:
                pass
        conn = _Conn(ws, asyncio.Queue(self.send_queue), P.TokenBucket(self.rate_per_s, self.burst,
                                                                         now=asyncio.get_running_loop().time()))
        self._conns.add(conn)
        self._stats["connections"] += 1
        conn.sender = asyncio.create_task(self._sender(conn))
        self._enqueue(conn, P.notification("hello", {
            "protocol_version": P.PROTOCOL_VERSION, "server": "rtvc", "methods": sorted(P.COMMANDS),
            "state": self.controller.state()}))
        try:
            async for msg in ws:
                if conn.dropped:
                    break
                await self._on_message(conn, msg)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            for t in (conn.telemetry, conn.sender):
                if t is not None:
                    t.cancel()

    async def _sender(self, conn: _Conn) -> None:
        try:
            while True:
                text = await conn.queue.get()
                await conn.ws.send(text)
                conn.stats["sent"] += 1
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    async def _on_message(self, conn: _Conn, msg: str | bytes) -> None:
        loop = asyncio.get_running_loop()
        items, batch = P.decode(msg)
        answers: list[str] = []
        for it in items:
            conn.stats["requests"] += 1
            rid = it.id if isinstance(it, P.Call) else None
            if not conn.bucket.take(loop.time()):
                conn.stats["rate_limited"] += 1
                if isinstance(it, P.Failure) or not it.notify:
                    answers.append(P.error(rid, P.RATE_LIMITED, f"rate limited: more than {self.rate_per_s:g} "
                                                                f"requests/s (burst {self.burst:g}) on this connection"))
                continue
            if isinstance(it, P.Failure):
                answers.append(it.response)
                continue
            try:
                value = await self._run(conn, it.command)
                if not it.notify:
                    answers.append(P.result(it.id, value))
            except P.RpcError as e:
                if not it.notify:
                    answers.append(P.error(it.id, e.code, e.message, e.data))
            except Exception as e:  # keep the server up whatever a command does
                log.exception("control command %s failed", it.command.method)
                if not it.notify:
                    answers.append(P.error(it.id, P.INTERNAL_ERROR, f"{it.command.method}: internal error: "
                                                                    f"{type(e).__name__}: {e}"))
        if not answers:
            return
        self._enqueue(conn, ("[" + ",".join(answers) + "]") if batch else answers[0])

    async def _run(self, conn: _Conn, cmd: P.Command) -> Any:
        if isinstance(cmd, P.Subscribe):
            self._subscribe(conn, cmd.rate_hz)
            return {"subscribed": True, "rate_hz": cmd.rate_hz}
        if isinstance(cmd, P.Unsubscribe):
            was = conn.telemetry is not None
            if conn.telemetry is not None:
                conn.telemetry.cancel()
                conn.telemetry = None
            conn.rate_hz = 0.0
            return {"subscribed": False, "was_subscribed": was}
        if isinstance(cmd, P.SelfTest):  # seconds long: not in the pool that serialises the knobs
            return await asyncio.get_running_loop().run_in_executor(None, self.controller.execute, cmd)
        if isinstance(cmd, _BLOCKING):
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.controller.execute, cmd)
        return self.controller.execute(cmd)

    def _subscribe(self, conn: _Conn, rate_hz: float) -> None:
        if conn.telemetry is not None:
            conn.telemetry.cancel()
        conn.rate_hz = rate_hz
        conn.telemetry = asyncio.create_task(self._telemetry_loop(conn, rate_hz))

    async def _telemetry_loop(self, conn: _Conn, rate_hz: float) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / rate_hz
        due = loop.time()
        try:
            while not conn.dropped:
                due += period
                delay = due - loop.time()
                if delay < -5 * period:  # the loop stalled: do not burst to catch up
                    due = loop.time()
                    delay = 0.0
                await asyncio.sleep(max(0.0, delay))
                self._enqueue(conn, P.notification("telemetry", self.controller.telemetry()))
        except asyncio.CancelledError:
            pass


class ServerHandle:
    """A :class:`ControlServer` running on its own loop in a daemon thread."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def _start(self, timeout_s: float) -> None:
        self._thread = threading.Thread(target=self._main, name="rtvc-control-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise ConfigError(f"control server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to the starting thread
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self.server.start()
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
