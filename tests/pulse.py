"""A private PulseAudio server for live tests (no sound card needed).

``PulseServer`` starts ``pulseaudio`` with its own ``XDG_RUNTIME_DIR`` and ``HOME`` (so it never
touches a user's server), two null sinks ``rtvc_test_in`` / ``rtvc_test_out`` and the native
protocol; ``env`` is the environment a child process needs to reach it (PortAudio reaches it
through ALSA's ``pulse`` device, from libasound2-plugins). ``stop()`` kills exactly the daemon
it started (by the pid in its pid file); ``kill()`` + ``start()`` crash and restart it on the
same socket (the fault tests).

Use the ``pulse_server`` fixture (skips only when the ``pulseaudio`` binary is missing).
"""

from __future__ import annotations

import os
import shutil
import signal
import json
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

__all__ = ["PulseServer", "pulse_server", "Recorder"]

SINKS = ("rtvc_test_in", "rtvc_test_out")


class PulseServer:
    """One private pulseaudio daemon (see the module docstring)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rtvc-pulse-"))
        self.runtime = self.root / "run"
        self.home = self.root / "home"
        self.runtime.mkdir(mode=0o700)
        self.home.mkdir(mode=0o700)
        self.pid: int | None = None
        env = dict(os.environ)
        env.update({"XDG_RUNTIME_DIR": str(self.runtime), "HOME": str(self.home),
                    "PULSE_SERVER": f"unix:{self.runtime / 'pulse' / 'native'}"})
        for k in ("PULSE_SINK", "PULSE_SOURCE", "PULSE_COOKIE", "RTVC_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
            env.pop(k, None)  # rtvc's user files (the speaker memory, presets) go to the temporary home too
        self.env = env

    def start(self, timeout_s: float = 10.0) -> "PulseServer":
        args = ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
                "--log-target=file:" + str(self.root / "pulse.log"),
                f"--load=module-null-sink sink_name={SINKS[0]}", f"--load=module-null-sink sink_name={SINKS[1]}",
                "--load=module-native-protocol-unix"]
        env = {k: v for k, v in self.env.items() if k != "PULSE_SERVER"}
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s)
        if r.returncode != 0:
            raise RuntimeError(f"pulseaudio did not start (rc {r.returncode}): {r.stderr.strip()}")
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.pactl("info", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"pulseaudio started but does not answer: {self.log()}")
        self.pid = int((self.runtime / "pulse" / "pid").read_text().split()[0])
        return self

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=check, timeout=10)

    def child_env(self, *, sink: str | None = None, source: str | None = None) -> dict[str, str]:
        """Environment for a client: ``PULSE_SINK`` / ``PULSE_SOURCE`` pick its sink and source."""
        env = dict(self.env)
        if sink:
            env["PULSE_SINK"] = sink
        if source:
            env["PULSE_SOURCE"] = source
        return env

    def log(self) -> str:
        p = self.root / "pulse.log"
        return p.read_text()[-3000:] if p.exists() else ""

    def kill(self) -> None:
        """SIGKILL the daemon (a crash), keeping its folders so that :meth:`start` can bring the
        same server (same socket path) back."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                for _ in range(100):
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
            self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


class Recorder:
    """``pacat -r`` of one source into a raw float32 file; ``stop()`` returns (frames, channels)."""

    def __init__(self, server: PulseServer, device: str, path: Path, *, rate: int = 48_000, channels: int = 1) -> None:
        self.path, self.channels = path, channels
        self._f = open(path, "wb")
        self.proc = subprocess.Popen(["pacat", "-r", "--raw", f"--device={device}", "--format=float32le",
                                      f"--rate={rate}", f"--channels={channels}", "--latency-msec=10"],
                                     stdout=self._f, stderr=subprocess.PIPE, env=server.env)

    def stop(self) -> np.ndarray:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._f.close()
        x = np.fromfile(self.path, dtype="<f4")
        n = x.shape[0] // self.channels
        return x[: n * self.channels].reshape(n, self.channels)



class RtvcProcess:
    """``python -m rtvc run --input pulse --output pulse --rate RATE --json --quiet ARGS`` as a child
    process of the test server; waits until its streams are open (it prints the latency).
    ``backend="pulse"``: ``--backend pulse`` instead, whose default devices are the same
    ``PULSE_SINK`` / ``PULSE_SOURCE``. ``popen``: more ``subprocess.Popen`` arguments (its own
    process group, as in a terminal: ``start_new_session=True``)."""

    def __init__(self, server: PulseServer, args: list[str], *, sink: str, source: str, rate: int,
                 backend: str = "portaudio", **popen: Any) -> None:
        devices = ["--input", "pulse", "--output", "pulse"] if backend == "portaudio" else ["--backend", backend]
        self.proc = subprocess.Popen([sys.executable, "-m", "rtvc", "run", *devices,
                                      "--rate", str(rate), "--json", "--quiet", *args],
                                     env=server.child_env(sink=sink, source=source),
                                     cwd=str(Path(__file__).resolve().parents[1]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        self.err: list[str] = []
        self.ready = threading.Event()
        self._t = threading.Thread(target=self._read_err, daemon=True)
        self._t.start()
        if not self.ready.wait(60.0):
            self.proc.kill()
            raise AssertionError("rtvc did not open its streams within 60 s:\n" + "".join(self.err))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.err.append(line)
                if "algorithmic latency" in line:
                    self.ready.set()
        except ValueError:  # closed by finish()'s communicate(), which reads the rest
            pass
        self.ready.set()

    def finish(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait for the run to end; return its final JSON summary (exit code 0 asserted)."""
        out, rest = self.proc.communicate(timeout=timeout_s)
        self._t.join(timeout=5)
        self.err.append(rest or "")
        assert self.proc.returncode == 0, f"rtvc exited {self.proc.returncode}:\n" + "".join(self.err)
        return json.loads(out.strip().splitlines()[-1])


def runner_devices(backend: str) -> dict[str, str]:
    """``LiveRunner`` device arguments that reach this module's server: PortAudio's ``pulse``
    device (``PULSE_SINK`` / ``PULSE_SOURCE`` pick the sink and source); rtvc's own ``pulse``
    backend reads the same variables for its defaults, so it needs none."""
    return {"input": "pulse", "output": "pulse"} if backend == "portaudio" else {}


@pytest.fixture
def pulse_server() -> Iterator[PulseServer]:
    """A started private PulseAudio server, killed at the end of the test."""
    if shutil.which("pulseaudio") is None:
        pytest.skip("the `pulseaudio` binary is not installed (Debian: apt-get install pulseaudio pulseaudio-utils)")
    srv = PulseServer()
    try:
        srv.start()
    except BaseException:
        srv.stop()
        raise
    try:
        yield srv
    finally:
        srv.stop()
