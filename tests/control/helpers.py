"""Shared fixtures for the control tests: an engine fed by a thread, a running server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rtvc.control.actions import Controller
from rtvc.control.presets import PresetStore
from rtvc.control.server import ControlServer, ServerHandle
from rtvc.engine import Engine, EngineConfig
from rtvc.params import Params
from rtvc.voices import DelayStage, VoiceRegistry

TOKEN = "test-token-0123456789"


MODELS = Path(__file__).resolve().parents[2] / "models"
"""The shipped voices (manifests and preview clips; the delay registry never loads their models)."""


class DelayRegistry(VoiceRegistry):
    """Every voice (DSP presets included) is a pure 160-sample delay: no rtvc.dsp needed.
    ``models=True`` also lists the shipped neural voices (played as delays too)."""

    def __init__(self, *, models: bool = False) -> None:
        super().__init__(model_dirs=[MODELS] if models else [])

    def make_stage(self, info: Any, *, model_rate: int = 16000, hop: int = 80, device: str = "cpu") -> Any:
        return DelayStage(160, hop=hop)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_engine(*, models: bool = False) -> Engine:
    """A 48 kHz engine whose voices are all delays, warmed up (Numba kernels loaded)."""
    eng = Engine(EngineConfig(device_rate=48_000), registry=DelayRegistry(models=models),
                 params=Params(voice="neutral"))
    eng.process(np.zeros(480, np.float32))
    return eng


class Feeder:
    """Calls ``engine.process`` on a seeded signal from a thread (10 ms blocks, ~real time)."""

    def __init__(self, engine: Engine, *, block: int = 480) -> None:
        self.engine = engine
        rng = np.random.default_rng(1234)
        t = np.arange(48_000) / 48_000
        self.signal = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        self.block = block
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pos = 0
        while not self._stop.is_set():
            x = self.signal[pos:pos + self.block]
            if x.size < self.block:
                pos = 0
                continue
            pos += self.block
            self.engine.process(x)
            self._stop.wait(0.01)

    def start(self) -> "Feeder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Running:
    """Engine + feeder + controller + server in a background thread."""

    def __init__(self, tmp_path: Any, *, models: bool = False, runner: Any = None, clones: Any = None,
                 selftest: Any = None, **server_kw: Any) -> None:
        self.engine = make_engine(models=models)
        self.feeder = Feeder(self.engine).start()
        self.controller = Controller(self.engine, runner=runner, presets=PresetStore(tmp_path / "presets"),
                                     clones=clones, selftest=selftest)
        self.server = ControlServer(self.controller, token=TOKEN, port=0, **server_kw)
        self.handle: ServerHandle = self.server.start_background()
        self.port = self.handle.port
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.http = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.handle.stop()
        self.controller.close()
        self.feeder.stop()


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def rpc(ws: Any, method: str, params: dict | None = None, rid: int = 1, timeout: float = 5.0) -> dict:
    """Send one request and return its response, skipping notifications."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    await ws.send(json.dumps(msg))
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        m = await recv_json(ws, max(0.01, end - loop.time()))
        if isinstance(m, dict) and m.get("id") == rid and "method" not in m:
            return m


class FakeRunner:
    """What the controller reads of a live runner, with made-up devices: no sound card needed.

    ``ROWS`` are the rows ``audio.list_devices`` gives (patch it to return them); a device whose
    name holds "Broken" fails to open, and the previous devices stay, as in ``LiveRunner``.
    """

    input_file = None
    output_file = None
    null_output = False
    backend = "portaudio"
    ROWS = [
        {"index": 0, "name": "Built-in Microphone", "hostapi": "ALSA", "max_input_channels": 2,
         "max_output_channels": 0, "default_samplerate": 48000.0, "default_input": True, "default_output": False},
        {"index": 1, "name": "USB Headset", "hostapi": "ALSA", "max_input_channels": 1,
         "max_output_channels": 2, "default_samplerate": 48000.0, "default_input": False, "default_output": False},
        {"index": 2, "name": "Speakers", "hostapi": "ALSA", "max_input_channels": 0,
         "max_output_channels": 2, "default_samplerate": 48000.0, "default_input": False, "default_output": True},
        {"index": 3, "name": "Broken Interface", "hostapi": "ALSA", "max_input_channels": 2,
         "max_output_channels": 2, "default_samplerate": 44100.0, "default_input": False, "default_output": False},
    ]

    def __init__(self) -> None:
        self.devices: dict[str, Any] = {"input": "Built-in Microphone", "output": "Speakers", "monitor": None,
                                        "rate": 48_000}
        self.stream_latency_s = {"input": 0.008, "output": 0.012}
        self.calls: list[dict[str, Any]] = []

    def set_devices(self, *, input: Any = None, output: Any = None, monitor: Any = None,
                    rate: int | None = None) -> dict[str, Any]:
        from rtvc.errors import DeviceError

        self.calls.append({"input": input, "output": output, "monitor": monitor, "rate": rate})
        new = dict(self.devices)
        for side, spec in (("input", input), ("output", output), ("monitor", monitor)):
            if spec is None:
                continue
            rows = [r for r in self.ROWS if (r["index"] == spec if isinstance(spec, int) else spec in r["name"])]
            if len(rows) != 1:
                raise DeviceError(f"{side} device {spec!r} not found")
            if "Broken" in rows[0]["name"]:
                raise DeviceError(f"cannot open {side} device {rows[0]['name']!r}: Device unavailable [PaErrorCode -9985]")
            new[side] = rows[0]["name"]
        if rate is not None:
            new["rate"] = rate
        self.devices = new
        return new
