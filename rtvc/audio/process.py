"""The worker process: the block worker in its own interpreter, fed through shared-memory rings.

The rings and the callback counters live in one shared-memory block
(:class:`~rtvc.audio.rings.SharedBlock`) that both processes map: the audio callbacks (in the
runner's process, compiled, GIL-free) and the worker (in the child) meet only there, through the
same fenced single-producer / single-consumer rings. Nothing the runner's process does -- a
garbage collection, the control server, a model load, a Python thread spinning -- holds an
interpreter lock the worker needs.

Messages between the two processes are the dataclasses of this module, which both ends import:
commands to the worker (:class:`SetParams`, :class:`Reset`, :class:`Forget`, :class:`Stall`) and
what it says back (:class:`Ready`, :class:`Failed`, :class:`Report`, :class:`Fault`,
:class:`Error`, :class:`Exit`). On the runner's side, :class:`EngineProxy` is the runner's
engine's hand on the worker's engine: accepted snapshots, resets and speaker hand-overs go out
through it, and the worker engine's statistics come back to it (every ``REPORT_EVERY_S``). The
child raises its scheduling priority (``SCHED_FIFO`` where permitted, else a lower nice value)
so a busy machine does not preempt it, and says which it got.

Threads and processes::

    runner process                                   worker process
    --------------                                   --------------
    audio callbacks: device <-> rings      <-shm->   worker thread: in ring -> engine -> out ring
    control server, hotkeys, run loop                control thread: commands (pipe), voice loads,
    mirror thread: reports -> proxy, runner           reports back every 50 ms
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

from ..errors import ConfigError, DeviceError, RtvcError
from ..telemetry import EngineSnapshot, TelemetryPart, WorkerSnapshot
from .rings import CTL_LOOPS, CTL_STOP, SharedBlock, poll_interval_s
from .worker import BlockWorker

__all__ = ["WorkerProcess", "WorkerExited", "WorkerSpec", "EngineProxy", "raise_priority", "SetParams", "Reset",
           "Forget", "Stall", "Ready", "Failed", "Report", "Fault", "Error", "Exit"]

REPORT_EVERY_S = 0.05
START_TIMEOUT_S = 60.0
"""Longest wait for a worker process to import, load its voice and warm up."""
_log = logging.getLogger("rtvc.worker")


class WorkerExited(RuntimeError):
    """The worker process ended without being asked to (killed, crashed): the runner restarts it."""


# ---------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class SetParams:
    """A parameter snapshot the runner's engine accepted (``Params.as_dict()``)."""

    params: dict[str, Any]


@dataclass(frozen=True)
class Reset:
    """Clear the worker engine's audio state."""


@dataclass(frozen=True)
class Forget:
    """Forget the speaker (``Engine.forget_speaker`` on the worker's engine)."""


@dataclass(frozen=True)
class Stall:
    """Fault injection: the worker's next block first waits ``ms``."""

    ms: float


Command = Union[SetParams, Reset, Forget, Stall]


@dataclass(frozen=True)
class Ready:
    """The worker loaded its voice and warmed up."""

    pid: int
    priority: str


@dataclass(frozen=True)
class Failed:
    """The worker could not start (``error`` names the exception type)."""

    error: str
    message: str


@dataclass(frozen=True)
class Report:
    """The worker's statistics (``final``: its last, sent as it ends)."""

    engine: EngineSnapshot
    worker: WorkerSnapshot
    final: bool = False


@dataclass(frozen=True)
class Fault:
    """Something the worker could not apply (``kind`` as in ``LiveRunner.faults``)."""

    kind: str
    message: str


@dataclass(frozen=True)
class Error:
    """The block worker failed; the runner stops."""

    error: str
    message: str


@dataclass(frozen=True)
class Exit:
    """The worker ends (asked to)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What the runner tells a worker process: rate (Hz), block (samples), backlog and margins
    (blocks, see :class:`~rtvc.audio.worker.BlockWorker`), which rings a device reads, the
    scheduling priority to ask for and the wake-up descriptor."""

    rate: int
    block: int
    max_backlog_blocks: int
    margin_blocks: float
    margin_max_blocks: float
    margin_base_blocks: float
    margin_step_blocks: float
    margin_relax_s: float | None
    device_out: bool
    monitor: bool
    rt_priority: int | None
    wake_fd: int | None


@dataclass(frozen=True)
class ChildStart:
    """The first message to the child: its spec, the shared block, and the engine to build."""

    spec: WorkerSpec
    shm_path: str
    ring_samples: int
    config: Any
    registry: Any
    params: Any
    parent_pid: int


# ---------------------------------------------------------------------------- the child
def raise_priority(rt_priority: int | None) -> str:
    """Raise the calling thread's scheduling priority (threads started later inherit it).

    ``SCHED_FIFO`` at ``rt_priority`` where permitted (root, CAP_SYS_NICE or an rtprio limit),
    else nice -10, else nothing; returns which, for telemetry."""
    if rt_priority is None:
        return "normal (not requested)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(rt_priority)))  # type: ignore[attr-defined]
        return f"SCHED_FIFO {int(rt_priority)}"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)  # type: ignore[attr-defined]
        return "nice -10"
    except (AttributeError, OSError):
        return "normal (no permission to raise it)"


def _child_main(start: ChildStart, cmd: Any, rep: Any) -> None:
    """Entry point of the worker process (spawned: a fresh interpreter)."""
    from ..engine import Engine
    from ..params import Params

    send_lock = threading.Lock()
    spec = start.spec

    def send(msg: Any) -> None:
        with send_lock:
            try:
                rep.send(msg)
            except (OSError, EOFError, ValueError):
                pass  # the runner's process is gone; the stop check ends this one

    try:
        priority = raise_priority(spec.rt_priority)
        shm = SharedBlock(Path(start.shm_path), start.ring_samples, create=False)
        engine = Engine(start.config, registry=start.registry, params=start.params)
        engine.warm_up()
        worker = BlockWorker(engine, shm.rings, rate=spec.rate, block=spec.block,
                             max_backlog_blocks=spec.max_backlog_blocks, out_margin_blocks=spec.margin_blocks,
                             margin_max_blocks=spec.margin_max_blocks, margin_step_blocks=spec.margin_step_blocks,
                             margin_relax_s=spec.margin_relax_s, base_margin_blocks=spec.margin_base_blocks,
                             device_out=spec.device_out, monitor=spec.monitor, wake_fd=spec.wake_fd)
    except BaseException as e:  # noqa: BLE001 - reported to the runner, which raises it
        send(Failed(type(e).__name__, str(e)))
        return
    ctl = shm.rings.ctl
    stop = threading.Event()

    def should_stop() -> bool:
        return stop.is_set() or ctl[CTL_STOP] != 0

    def report(since: int, *, final: bool = False) -> tuple[Report, int]:
        snap, n = engine.snapshot(since)
        return Report(snap, WorkerSnapshot(dict(worker.stats), worker.telemetry(), worker.margin_blocks), final), n

    def apply(msg: Command) -> None:
        if isinstance(msg, SetParams):
            engine.request(Params(**msg.params))
        elif isinstance(msg, Reset):
            engine.reset()
        elif isinstance(msg, Forget):
            engine.forget_speaker()
        elif isinstance(msg, Stall):
            worker.stall_s = float(msg.ms) / 1000.0

    def control() -> None:
        """Commands in, reports out; ends the worker if the runner dies."""
        sent = 0
        next_report = time.monotonic()
        while not should_stop():
            try:
                ready = cmd.poll(REPORT_EVERY_S / 2)
                msg = cmd.recv() if ready else None
            except (EOFError, OSError):
                stop.set()
                break
            if msg is not None:
                try:
                    apply(msg)
                except RtvcError as e:  # e.g. the model file changed between the two loads
                    send(Fault("voice", f"the worker process could not apply {type(msg).__name__}: {e}"))
            now = time.monotonic()
            engine.save_speaker_if_due(now)  # logs, never raises
            if now >= next_report:
                rep_msg, sent = report(sent)
                send(rep_msg)
                next_report = now + REPORT_EVERY_S
            if os.getppid() != start.parent_pid:
                stop.set()

    gc.collect()
    gc.freeze()  # import-time objects leave the collector's view: a collection walks only new ones
    sys.setswitchinterval(0.0005)
    t = threading.Thread(target=control, name="rtvc-worker-control", daemon=True)
    t.start()
    send(Ready(os.getpid(), priority))
    try:
        worker.run(should_stop, sleep_s=poll_interval_s(worker.block, worker.rate), loops=ctl[CTL_LOOPS:])
    except BaseException as e:  # noqa: BLE001 - the runner reports it and stops
        send(Error(type(e).__name__, str(e)))
    stop.set()
    t.join(timeout=2.0)
    engine.save_speaker()  # logs, never raises
    send(report(0, final=True)[0])
    send(Exit())


_CHILD_CMD = "import sys; from rtvc.audio.process import child_entry; child_entry(sys.argv[1])"


def child_entry(address: str) -> None:
    """``python -c`` entry of the worker process: connect back (commands, then reports), take the
    start message, run. The authentication key comes in the environment, not on the command line."""
    from multiprocessing.connection import Client

    # Ctrl-C and a closed terminal window signal the whole process group: the runner (which takes them
    # and stops cleanly, the speaker memory saved) stops this process; left to itself it died first
    # (Ctrl-C: "the audio worker stopped: KeyboardInterrupt", exit 1; SIGHUP: nothing saved)
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    key = bytes.fromhex(os.environ.pop("RTVC_WORKER_KEY"))
    cmd = Client(address, authkey=key)
    rep = Client(address, authkey=key)
    _child_main(cmd.recv(), cmd, rep)


class _Child:
    """The subset of ``multiprocessing.Process`` the runner uses, over a ``subprocess.Popen``."""

    def __init__(self, popen: Any) -> None:
        self._p = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self._p.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self._p.poll()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._p.wait(timeout)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: still running, as Process.join
            pass

    def kill(self) -> None:
        self._p.kill()


# ---------------------------------------------------------------------------- the runner's side
class EngineProxy:
    """The runner process's hand on the engine that runs in the worker process.

    Attached to the runner's engine while the worker runs (:meth:`attach`): the engine's control
    (:class:`~rtvc.engine_control.EngineControl`) validates a request and loads a new voice in the
    caller's thread as always, then hands the accepted snapshot, a reset or a speaker hand-over to
    this proxy, which sends it to the worker's engine. The worker engine's snapshots come back
    through :meth:`receive`; its counters and speaker seconds are this proxy's share of the
    engine's telemetry (:meth:`telemetry`), its levels and compute times become the runner's
    engine's (:meth:`rtvc.telemetry.EngineStats.load`)."""

    def __init__(self, engine: Any, send: Callable[[Command], None]) -> None:
        self.engine = engine
        self.send = send
        self.last: EngineSnapshot | None = None

    def attach(self) -> None:
        """Take the engine's accepted commands and give it the worker's statistics."""
        self.engine.control.attach(self)
        self.engine.stats.remote = self

    def detach(self) -> None:
        """The worker ended: the engine's commands are its own again; what the worker counted stays counted."""
        self.engine.control.attach(None)
        self.engine.stats.detach()

    def request(self, params: Any) -> None:
        self.send(SetParams(params.as_dict()))

    def reset(self) -> None:
        self.send(Reset())

    def forget_speaker(self) -> None:
        self.send(Forget())

    def receive(self, snap: EngineSnapshot) -> None:
        """A worker engine's snapshot (mirror thread)."""
        self.last = snap
        self.engine.stats.load(snap)

    def telemetry(self) -> TelemetryPart:
        last = self.last
        if last is None:
            return TelemetryPart()
        return TelemetryPart(last.counters, {"speaker_s": last.speaker_s})


class WorkerProcess:
    """Runner side of a worker process: spawn, forward commands, mirror its snapshots.

    Parameters
    ----------
    shm
        The :class:`SharedBlock` holding the rings (created by the runner).
    engine
        The runner's engine: its requests are forwarded to the worker's engine and the
        worker's counters, gauges and compute times are mirrored into it.
    spec
        Everything else the worker needs (:class:`WorkerSpec`).
    on_report, on_fault, on_error
        Called from the mirror thread with the block worker's :class:`~rtvc.telemetry.WorkerSnapshot`
        (the engine's goes to :attr:`proxy`), ``(kind, message)``, and an exception (the worker
        failed; :class:`WorkerExited`: the process died).
    """

    def __init__(self, shm: SharedBlock, engine: Any, spec: "WorkerSpec", *,
                 on_report: Callable[[WorkerSnapshot], None], on_fault: Callable[[str, str], None],
                 on_error: Callable[[Exception], None]) -> None:
        self.shm = shm
        self.engine = engine
        self.spec = spec
        self.on_report, self.on_fault, self.on_error = on_report, on_fault, on_error
        self.info: dict[str, Any] = {}
        self._send_lock = threading.Lock()
        self._stopping = False
        self._proc: Any = None
        self.proxy: EngineProxy | None = None
        self._mirror: threading.Thread | None = None

    def _spawn(self, deadline: float) -> None:
        """Start ``python -c 'child_entry()'`` and accept its two connections (commands, reports).

        A fresh interpreter that imports only rtvc: unlike multiprocessing's spawn it never
        re-imports the caller's ``__main__``, so a script without a ``__main__`` guard works."""
        import subprocess
        from multiprocessing.connection import Listener

        family = "AF_PIPE" if sys.platform == "win32" else "AF_UNIX"
        key = os.urandom(32)
        lst = Listener(family=family, authkey=key)
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])  # where `import rtvc` finds this rtvc
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["RTVC_WORKER_KEY"] = key.hex()
        fds = (self.spec.wake_fd,) if self.spec.wake_fd is not None else ()
        self._proc = _Child(subprocess.Popen([sys.executable, "-c", _CHILD_CMD, str(lst.address)], env=env,
                                             stdin=subprocess.DEVNULL, pass_fds=fds))
        conns: list[Any] = []

        def accept() -> None:
            try:
                for _ in range(2):
                    conns.append(lst.accept())
            except (OSError, EOFError):
                pass

        t = threading.Thread(target=accept, name="rtvc-worker-accept", daemon=True)
        t.start()
        while t.is_alive() and time.monotonic() < deadline and self._proc.is_alive():
            t.join(0.05)
        if len(conns) < 2:
            lst.close()  # ends a pending accept
            for c in conns:
                c.close()
            code = self._proc.exitcode
            self._kill()
            raise DeviceError("the audio worker process did not connect within its start time" if code is None
                              else f"the audio worker process exited with code {code} while starting")
        lst.close()
        self._cmd, self._rep = conns

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Spawn the worker and wait until it has loaded the voice and warmed up."""
        self.shm.rings.ctl[CTL_STOP] = 0
        deadline = time.monotonic() + timeout_s
        self._spawn(deadline)
        self._cmd.send(ChildStart(self.spec, str(self.shm.path), self.shm.ring_samples, self.engine.config,
                                  self.engine.registry, self.engine.params, os.getpid()))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._rep.poll(min(left, 0.2)):
                if left <= 0 or not self._proc.is_alive():
                    code = self._proc.exitcode
                    self._kill()
                    raise DeviceError(f"the audio worker process did not start within {timeout_s:g} s" if code is None
                                      else f"the audio worker process exited with code {code} while starting")
                continue
            try:
                msg = self._rep.recv()
            except (EOFError, OSError):
                continue
            if isinstance(msg, Ready):
                self.info = {"pid": msg.pid, "priority": msg.priority}
                break
            if isinstance(msg, Failed):
                self._kill()
                if msg.error in ("ModelError", "ConfigError"):
                    raise ConfigError(f"the audio worker process could not load the voice: {msg.message}")
                raise DeviceError(f"the audio worker process failed to start: {msg.error}: {msg.message}")
        self.proxy = EngineProxy(self.engine, self.send)
        self.proxy.attach()
        self._mirror = threading.Thread(target=self._mirror_loop, name="rtvc-worker-mirror", daemon=True)
        self._mirror.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def send(self, msg: "Command") -> None:
        """Forward a command (:class:`SetParams`, :class:`Reset`, :class:`Forget`, :class:`Stall`) to the worker."""
        with self._send_lock:
            try:
                self._cmd.send(msg)
            except (OSError, ValueError) as e:
                raise RtvcError(f"the audio worker process is gone ({e}); the command was not applied") from e

    def _mirror_loop(self) -> None:
        while True:
            try:
                msg = self._rep.recv()
            except (EOFError, OSError):
                break
            if isinstance(msg, Report):
                if self.proxy is not None:
                    self.proxy.receive(msg.engine)
                self.on_report(msg.worker)
            elif isinstance(msg, Fault):
                self.on_fault(msg.kind, msg.message)
            elif isinstance(msg, Error):
                self.on_error(RuntimeError(f"{msg.error}: {msg.message}"))
            elif isinstance(msg, Exit):
                break
        if not self._stopping:
            self._proc.join(timeout=1.0)
            self.on_error(WorkerExited(f"the audio worker process exited unexpectedly (exit code {self._proc.exitcode})"))

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5.0)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to finish (it sends its final snapshot), wait, and kill it if it hangs."""
        self._stopping = True
        if self._proc is None:
            return
        self.shm.rings.ctl[CTL_STOP] = 1
        self._proc.join(timeout=timeout_s)
        if self._proc.is_alive():
            _log.warning("the audio worker process did not stop within %.1f s; killing it", timeout_s)
            self._kill()
        if self._mirror is not None:
            self._mirror.join(timeout=2.0)  # the final snapshot is mirrored before detaching
        if self.proxy is not None:
            self.proxy.detach()
        for c in (self._cmd, self._rep):
            try:
                c.close()
            except OSError:
                pass
