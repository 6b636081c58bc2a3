"""What the controller sees of the sound devices: the live runner's devices (which are open, what
they buffer, listing and switching them) and the loopback self-test through the sound server.

Both are narrow: :class:`Devices` wraps a runner (or none: file mode, ``rtvc serve --input``)
and answers ``NOT_AVAILABLE`` where there is no device to act on; :class:`SelfTest` runs one
measurement at a time and keeps the last result. Neither announces anything: the
:class:`~rtvc.control.actions.Controller` does, after they return.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any, Callable, Mapping

from ..errors import RtvcError
from . import protocol as P

__all__ = ["Devices", "SelfTest"]


class Devices:
    """The devices of one live audio runner (``None``: no runner attached)."""

    def __init__(self, runner: Any = None) -> None:
        self.runner = runner

    def current(self) -> dict[str, Any] | None:
        """The runner's open devices by side (``None`` without a runner)."""
        if self.runner is None:
            return None
        return dict(getattr(self.runner, "devices", {}) or {})

    def has_monitor(self) -> bool:
        """A monitor device is open (the hear-yourself output has somewhere to go)."""
        return bool((self.current() or {}).get("monitor"))

    def latency_ms(self) -> float | None:
        """What the sound devices buffer on the way in and out (PortAudio / PulseAudio stream
        latency, as the runner reads it when it opens the streams); ``None`` without a runner."""
        lat = getattr(self.runner, "stream_latency_s", None)
        if not isinstance(lat, Mapping):
            return None
        return 1000.0 * sum(float(v) for v in lat.values() if v is not None)

    @property
    def block_ms(self) -> float | None:
        return getattr(self.runner, "block_ms", None)

    def list(self) -> list[dict[str, Any]]:
        self._need_devices("list_devices")
        from .. import audio  # lazily: only the audio module imports sounddevice

        return list(audio.list_devices(getattr(self.runner, "backend", "portaudio")))

    def switch(self, *, input: Any = None, output: Any = None, monitor: Any = None, rate: int | None = None) -> None:
        """Check that each side asked for is a device side, then let the runner switch (its
        ``DeviceError`` leaves the old devices open)."""
        self._need_runner("set_devices")
        files = self._file_sides()
        for side, spec in (("input", input), ("output", output)):
            if spec is not None and files[side] is not None:
                raise P.RpcError(P.NOT_AVAILABLE, f"set_devices: {side}={spec!r}: the {side} of this session is the "
                                                  f"{files[side]}; restart rtvc without it to use a device")
        if monitor is not None:
            self._need_devices("set_devices")
        self.runner.set_devices(input=input, output=output, monitor=monitor, rate=rate)

    def _need_runner(self, method: str) -> None:
        if self.runner is None:
            raise P.RpcError(P.NOT_AVAILABLE, f"{method}: no live audio runner is attached (file mode or "
                                              "'rtvc serve --input FILE'); devices cannot be listed or changed")

    def _file_sides(self) -> dict[str, str | None]:
        """What replaces a device on each side of the runner (``None``: a device)."""
        r = self.runner
        inp = getattr(r, "input_file", None)
        out = getattr(r, "output_file", None)
        return {"input": f"file {str(inp)!r}" if inp is not None else None,
                "output": f"file {str(out)!r}" if out is not None
                else "null output" if getattr(r, "null_output", False) else None}

    def _need_devices(self, method: str) -> None:
        """A runner with at least one device stream (else: file mode, no live audio)."""
        self._need_runner(method)
        files = self._file_sides()
        if files["input"] is not None and files["output"] is not None and not self.has_monitor():
            raise P.RpcError(P.NOT_AVAILABLE, f"{method}: file mode (input: {files['input']}, output: "
                                              f"{files['output']}): no audio device is open, so devices cannot be "
                                              "listed or changed; start rtvc without --input-file/--output-file/"
                                              "--null-output to use devices")


class SelfTest:
    """The loopback self-test (a chirp through the sound server -> an rtvc engine on the neutral
    path -> the sound server, ``rtvc selftest``): one at a time, its last result kept.

    Parameters
    ----------
    run : callable() -> dict, or None
        The measurement; ``None``: none here (``run()`` answers ``NOT_AVAILABLE``). See
        :meth:`default`.
    """

    KEEP = ("arrived", "delay_ms", "correlation", "algorithmic_latency_ms", "rate")

    def __init__(self, run: Callable[[], dict[str, Any]] | None) -> None:
        self._run = run
        self._busy = threading.Lock()
        self.last: dict[str, Any] | None = None

    @classmethod
    def default(cls, run: Callable[[], dict[str, Any]] | None = None) -> "SelfTest":
        """``run``, else :func:`rtvc.route.selftest` where ``pactl`` and ``pacat`` are found (a
        PulseAudio or PipeWire-Pulse server), else none."""
        if run is None and shutil.which("pactl") and shutil.which("pacat"):
            def run() -> dict[str, Any]:  # the loopback through the sound server, as `rtvc selftest`
                from ..route import selftest

                return selftest()
        return cls(run)

    @property
    def available(self) -> bool:
        return self._run is not None

    def state(self) -> dict[str, Any]:
        """The ``get_state`` entry: ``{available, last}``."""
        return {"available": self.available, "last": self.last}

    def run(self) -> dict[str, Any]:
        """Measure (seconds); the kept fields of the result. ``NOT_AVAILABLE`` without a loopback,
        while one runs already, or when it fails (nothing kept then)."""
        if self._run is None:
            raise P.RpcError(P.NOT_AVAILABLE, "selftest: no loopback to measure with: it needs a PulseAudio or "
                                              "PipeWire-Pulse server (pactl and pacat); expected them on PATH")
        if not self._busy.acquire(blocking=False):
            raise P.RpcError(P.NOT_AVAILABLE, "selftest: one is running already; expected it to finish first")
        try:
            res = dict(self._run())
        except RtvcError as e:  # no server answering, pacat gone: said as it is, nothing kept
            raise P.RpcError(P.NOT_AVAILABLE, f"selftest: {e}") from None
        finally:
            self._busy.release()
        self.last = {k: res.get(k) for k in self.KEEP}
        return self.last
