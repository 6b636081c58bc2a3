"""Shared fixtures for the control tests: an engine fed by a thread, a running server."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import numpy as np

from rtvc.control.actions import Controller
from rtvc.control.presets import PresetStore
from rtvc.control.server import ControlServer, ServerHandle
from rtvc.engine import Engine, EngineConfig
from rtvc.params import Params
from rtvc.voices import DelayStage, VoiceRegistry

TOKEN = "test-token-0123456789"


class DelayRegistry(VoiceRegistry):
    """Every voice (DSP presets included) is a pure 160-sample delay: no rtvc.dsp needed."""

    def __init__(self) -> None:
        super().__init__(model_dirs=[])

    def make_stage(self, info: Any, *, model_rate: int = 16000, hop: int = 80, device: str = "cpu") -> Any:
        return DelayStage(160, hop=hop)


def make_engine() -> Engine:
    """A 48 kHz engine whose voices are all delays, warmed up (Numba kernels loaded)."""
    eng = Engine(EngineConfig(device_rate=48_000), registry=DelayRegistry(), params=Params(voice="neutral"))
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

    def __init__(self, tmp_path: Any, **server_kw: Any) -> None:
        self.engine = make_engine()
        self.feeder = Feeder(self.engine).start()
        self.controller = Controller(self.engine, presets=PresetStore(tmp_path / "presets"))
        self.server = ControlServer(self.controller, token=TOKEN, port=0, **server_kw)
        self.handle: ServerHandle = self.server.start_background()
        self.port = self.handle.port
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.http = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.handle.stop()
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
