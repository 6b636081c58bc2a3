"""The action layer: everything a client, an HTTP button or a hotkey can do to the engine.

The websocket server, the HTTP routes and the hotkeys all call one :class:`Controller`, so
they validate the same way and every change is announced the same way: after any change the
controller calls its listeners with a ``state_changed`` payload (the server broadcasts it to
every connected client). Controller methods may be called from any thread; they are serialised
by a lock. Voice loading happens in the caller's thread (``Engine.update``), never on the
audio path.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError, ControlError, DeviceError, ModelError, RtvcError
from . import protocol as P
from .devices import Devices, SelfTest
from .presets import DEFAULT_EXCLUDED, PresetStore

__all__ = ["Controller", "Announcer", "ACTIONS", "PITCH_STEP_ST", "keep_offsets", "preview_path", "rpc_error"]

PITCH_STEP_ST = 1.0
"""Semitones per ``pitch_up``/``pitch_down`` press."""

ACTIONS: dict[str, str] = {
    "bypass_toggle": "toggle bypass",
    "mute_toggle": "toggle mute",
    "voice_next": "next voice in list_voices order (wraps)",
    "voice_prev": "previous voice (wraps)",
    "pitch_up": f"pitch +{PITCH_STEP_ST:g} semitone (clamped to +12)",
    "pitch_down": f"pitch -{PITCH_STEP_ST:g} semitone (clamped to -12)",
    "monitor_toggle": "toggle the hear-yourself monitor",
    "denoise_toggle": "toggle noise suppression (adds its latency while on; needs the denoise extra)",
    "speaker_forget": "forget the speaker (someone else takes the microphone): the neural voice learns afresh "
                      "and the speaker memory is deleted",
    "quit": "stop rtvc (as Ctrl-C in its window; the speaker memory is saved)",
}
"""Named one-shot actions (hotkeys and HTTP buttons)."""

def rpc_error(what: str, e: RtvcError) -> P.RpcError:
    """The JSON-RPC error for ``e``, raised while running ``what`` (a method or an HTTP route): a bad
    value is invalid params, a voice that will not load or a device that will not open says what
    keeps playing, anything else of rtvc's is an internal error. The message starts with ``what``."""
    if isinstance(e, ConfigError):
        return P.RpcError(P.INVALID_PARAMS, f"{what}: {e}")
    if isinstance(e, ModelError):
        return P.RpcError(P.VOICE_LOAD_FAILED, f"{what}: {e}; the previous voice keeps playing")
    if isinstance(e, DeviceError):
        return P.RpcError(P.DEVICE_ERROR, f"{what}: {e}; the previous devices stay open")
    return P.RpcError(P.INTERNAL_ERROR, f"{what}: {e}")


Listener = Callable[[dict[str, Any]], None]
log = logging.getLogger("rtvc.control")


class Announcer:
    """Who hears about changes: state listeners get ``state_changed`` payloads, notification
    listeners ``(method, params)`` for the others (``clone_progress``). Listeners may be added
    and removed from any thread; a broken listener never breaks the caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: list[Listener] = []
        self._notify: list[Callable[[str, dict[str, Any]], None]] = []

    def add(self, fn: Listener) -> None:
        with self._lock:
            self._state.append(fn)

    def remove(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._state:
                self._state.remove(fn)

    def add_notify(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        with self._lock:
            self._notify.append(fn)

    def remove_notify(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        with self._lock:
            if fn in self._notify:
                self._notify.remove(fn)

    def state_changed(self, st: dict[str, Any], changed: list[str], source: str) -> None:
        """Tell the state listeners (nothing when ``changed`` is empty)."""
        if not changed:
            return
        payload = {"state": st, "changed": changed, "source": source}
        for fn in list(self._state):
            try:
                fn(payload)
            except Exception:  # a broken listener must not break the caller's change
                pass

    def notify(self, method: str, params: dict[str, Any]) -> None:
        for fn in list(self._notify):
            try:
                fn(method, params)
            except Exception:  # a broken listener must not stop the job
                pass


def keep_offsets(changes: Mapping[str, Any], params: Any, registry: Any) -> dict[str, Any]:
    """``changes`` (a voice switch) with the new voice's preset pitch/formant plus the user's
    offsets from the old voice's preset (pitch in semitones added, formant as a ratio
    multiplied), clamped to their ranges; values ``changes`` gives stay. ``params`` are the
    current parameters, ``registry`` the voice registry the presets come from."""
    from ..params import PARAM_SPECS

    try:
        old = registry.get(params.voice).defaults
    except RtvcError:  # the old voice is gone from the list: its offsets are the whole values
        old = {}
    new = registry.get(changes["voice"]).defaults
    out = dict(changes)
    spec = PARAM_SPECS
    if "pitch_st" not in out:
        v = new.get("pitch_st", 0.0) + params.pitch_st - old.get("pitch_st", 0.0)
        out["pitch_st"] = min(spec["pitch_st"].hi, max(spec["pitch_st"].lo, v))
    if "formant_ratio" not in out:
        v = new.get("formant_ratio", 1.0) * params.formant_ratio / old.get("formant_ratio", 1.0)
        out["formant_ratio"] = min(spec["formant_ratio"].hi, max(spec["formant_ratio"].lo, v))
    return out


def preview_path(info: Any) -> Path | None:
    """A neural voice's preview clip (``NAME.preview.wav`` beside its model), if there is one."""
    path = getattr(info, "path", None)
    if info.kind != "neural" or path is None:
        return None
    clip = Path(path).with_name(Path(path).stem + ".preview.wav")
    return clip if clip.is_file() else None


class Controller:
    """Steers one engine (and optionally a live audio runner).

    Parameters
    ----------
    engine : rtvc.engine.Engine
    runner : rtvc.audio.LiveRunner or None
        Needed by ``list_devices``/``set_devices``. Without one, and with a runner that opened
        no device (file mode: input and output are files or null, no monitor), those methods
        answer a ``NOT_AVAILABLE`` error; so does ``set_devices`` asking for a device on a side
        that a file replaces.
    presets : PresetStore or None
        Default: the user's presets folder.
    keep_offsets : bool
        The initial ``keep_offsets`` option (see :meth:`set_options`).
    clones : rtvc.control.clone.CloneJobs or None
        Clone jobs (default: uploads in the user's data folder, ``rtvc clone`` as the trainer).
    selftest : callable() -> dict, or None
        Runs the loopback self-test (:func:`rtvc.route.selftest`); default that function where
        ``pactl`` and ``pacat`` are found (a PulseAudio or PipeWire-Pulse server), else none.
    """

    def __init__(self, engine: Any, *, runner: Any = None, presets: PresetStore | None = None,
                 keep_offsets: bool = False, clones: Any = None,
                 selftest: Callable[[], dict[str, Any]] | None = None) -> None:
        from .clone import CloneJobs

        self.engine = engine
        self.runner = runner
        self.devices = Devices(runner)
        self.presets = presets or PresetStore()
        self._lock = threading.RLock()
        self.listeners = Announcer()
        self.options: dict[str, Any] = {"keep_offsets": bool(keep_offsets)}
        self.clones = clones or CloneJobs(on_event=lambda job: None, voice_names=lambda: [])
        self.clones.bind(on_event=self._clone_event, voice_names=lambda: self.engine.registry.names())
        self.loopback = SelfTest.default(selftest)
        self._denoise: dict[str, Any] | None = None
        self.quit_requested: threading.Event | None = None
        """Set by :meth:`quit`; whoever runs the session (``rtvc run``/``serve``'s loop) gives the
        event and stops when it is set. None: nothing would stop, and :meth:`quit` says so."""

    # ------------------------------------------------------------------ listeners
    def add_listener(self, fn: Listener) -> None:
        self.listeners.add(fn)

    def remove_listener(self, fn: Listener) -> None:
        self.listeners.remove(fn)

    def add_notify_listener(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """``fn(method, params)`` for notifications other than ``state_changed`` (``clone_progress``)."""
        self.listeners.add_notify(fn)

    def remove_notify_listener(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        self.listeners.remove_notify(fn)

    def _clone_event(self, job: dict[str, Any]) -> None:
        self.listeners.notify("clone_progress", job)
        if job["state"] == "done":  # the new voice is in the list now
            self._announce(self.state(), ["voices"], "clone")

    def close(self) -> None:
        """Stop what runs beside the engine (clone jobs in training)."""
        self.clones.close()

    def _changed(self, before: dict[str, Any], source: str) -> dict[str, Any]:
        st = self.state()
        after = st["params"]
        self._announce(st, sorted(k for k in after if before.get(k) != after[k]), source)
        return st

    def _announce(self, st: dict[str, Any], changed: list[str], source: str) -> None:
        self.listeners.state_changed(st, changed, source)

    # ------------------------------------------------------------------ queries
    def state(self) -> dict[str, Any]:
        """Parameters, active voice, latency and devices (the ``get_state`` result)."""
        eng = self.engine
        p = eng.params
        return {
            "protocol_version": P.PROTOCOL_VERSION,
            "params": p.as_dict(),
            "voice": p.voice,
            "bypass": p.bypass,
            "mute": p.mute,
            "algorithmic_latency_ms": float(eng.algorithmic_latency_ms),
            "device_rate": int(eng.config.device_rate),
            "devices": self.devices.current(),
            "live": self.runner is not None,
            "speaker": self.speaker(),
            "options": dict(self.options),
            "selftest": self.loopback.state(),
            "denoise": self.denoise_info(),
        }

    def denoise_info(self) -> dict[str, Any]:
        """Noise suppression here: ``available``, the ``reason`` when not, the ``latency_ms`` it adds
        (:func:`rtvc.denoise.denoise_info`, found once per session)."""
        if self._denoise is None:
            from ..denoise import denoise_info

            cfg = self.engine.config
            self._denoise = denoise_info(model_rate=cfg.model_rate, hop=cfg.hop)
        return dict(self._denoise)

    def speaker(self) -> dict[str, Any]:
        """The speaker memory: its file (``null`` when off), whether it holds a speaker now, and
        how much speech the session started from."""
        path = self.engine.config.speaker_memory
        return {"memory": path, "remembered": bool(path) and os.path.exists(path),
                "recalled_s": round(float(self.engine.speaker_recalled_s), 2)}

    def telemetry(self) -> dict[str, Any]:
        """The telemetry notification payload (see ``protocol.TELEMETRY_FIELDS``)."""
        t = self.engine.telemetry()
        out = {k: t.get(k) for k in P.TELEMETRY_FIELDS}
        out["buffer_age_ms"] = t.get("buffer_age_ms")
        out["device_latency_ms"] = dev = self.devices.latency_ms()
        age, block_ms = out["buffer_age_ms"], self.devices.block_ms
        # the age is read right after a block is written, when the rings are at their fullest; a
        # sample waits a block less on average (checked against a loopback through PulseAudio)
        out["queue_ms"] = queue = None if age is None else max(0.0, float(age) - float(block_ms or 0.0))
        parts = [t.get("algorithmic_latency_ms"), dev, queue]
        out["total_latency_ms"] = sum(float(x) for x in parts if x is not None)
        return out

    def list_voices(self) -> list[dict[str, Any]]:
        active = self.engine.params.voice
        return [{"name": v.name, "kind": v.kind, "description": v.description, "active": v.name == active,
                 "preview": preview_path(v) is not None}
                for v in self.engine.registry.list()]

    def preview(self, name: str) -> Path:
        """The preview clip of voice ``name``; ConfigError naming the voice when it has none."""
        info = self.engine.registry.get(name)
        clip = preview_path(info)
        if clip is None:
            raise ConfigError(f"voice {name!r} has no preview clip; expected a neural voice with NAME.preview.wav "
                              "beside its model")
        return clip

    def list_devices(self) -> list[dict[str, Any]]:
        return self.devices.list()

    def list_presets(self) -> list[dict[str, Any]]:
        return self.presets.list()

    # ------------------------------------------------------------------ changes
    def set_params(self, changes: Mapping[str, Any], *, source: str = "api") -> dict[str, Any]:
        """Validated partial update; raises ConfigError (bad value) or ModelError (voice load).

        Turning the monitor on with no monitor device open is refused (``NOT_AVAILABLE``): it
        would say "on" while nothing can be heard. With the ``keep_offsets`` option, a voice
        switch keeps the user's pitch and formant offsets from the old voice's preset."""
        with self._lock:
            cur = self.engine.params
            changes = dict(changes)
            if changes.get("monitor") is True and not cur.monitor and not self.devices.has_monitor():
                raise P.RpcError(P.NOT_AVAILABLE, "monitor = true: no monitor device is open, so there is nothing to "
                                                  "hear yourself on; expected a monitor device first (set_devices "
                                                  "{monitor: ...}, or start rtvc with --monitor DEVICE)")
            if self.options["keep_offsets"] and changes.get("voice", cur.voice) != cur.voice:
                changes = keep_offsets(changes, cur, self.engine.registry)
            before = cur.as_dict()
            self.engine.update(**changes)
            return self._changed(before, source)

    def set_param_text(self, name: str, text: str | None, *, source: str = "http") -> dict[str, Any]:
        """Set parameter (or option) ``name`` from a URL's text: a value, ``+=STEP``/``-=STEP`` from
        the current value, or ``toggle`` (see :func:`rtvc.control.routes.param_value`)."""
        from .routes import OPTIONS, param_value

        with self._lock:
            value = param_value(name, text, {**self.engine.params.as_dict(), **self.options})
            if name in OPTIONS:
                return self.set_options(**{name: value}, source=source)
            return self.set_params({name: value}, source=source)

    def set_options(self, *, keep_offsets: bool | None = None, source: str = "api") -> dict[str, Any]:
        """Session options of the controller (not engine parameters): ``keep_offsets``."""
        with self._lock:
            before = dict(self.options)
            if keep_offsets is not None:
                self.options["keep_offsets"] = bool(keep_offsets)
            st = self.state()
            self._announce(st, sorted(k for k in self.options if self.options[k] != before[k]), source)
            return st

    def set_voice(self, name: str, *, source: str = "api") -> dict[str, Any]:
        return self.set_params({"voice": name}, source=source)

    def set_devices(self, *, input: Any = None, output: Any = None, monitor: Any = None, rate: int | None = None,
                    source: str = "api") -> dict[str, Any]:
        with self._lock:
            before = self.devices.current()
            self.devices.switch(input=input, output=output, monitor=monitor, rate=rate)
            st = self.state()
            self._announce(st, ["devices"] if st["devices"] != before else [], source)
            return st

    def selftest(self, *, source: str = "api") -> dict[str, Any]:
        """Play a chirp through the sound server -> an rtvc engine (the neutral path) -> the sound
        server and measure the delay (``rtvc selftest``); the result is kept in the state."""
        last = self.loopback.run()
        with self._lock:
            st = self.state()
            self._announce(st, ["selftest"], source)
        return last

    def forget_speaker(self, *, source: str = "api") -> dict[str, Any]:
        """Someone else takes the microphone: the active neural voice starts learning the speaker
        afresh (crossfaded) and the speaker memory is deleted. Announced as a ``speaker`` change
        (always: the voice's learnt state changed even where no file was deleted)."""
        with self._lock:
            self.engine.forget_speaker()
            st = self.state()
            self._announce(st, ["speaker"], source)
            return st

    def quit(self, *, source: str = "api") -> dict[str, Any]:
        """Ask the session to stop (its loop closes the streams and saves the speaker memory, as on
        Ctrl-C). Refused with ``NOT_AVAILABLE`` when no loop watches (a controller embedded elsewhere)."""
        if self.quit_requested is None:
            raise P.RpcError(P.NOT_AVAILABLE, "quit: this rtvc was not started from the command line, so nothing "
                                              "here can stop it; expected `rtvc run --control` or `rtvc serve`")
        log.info("quit asked by %s", source)
        self.quit_requested.set()
        return {"stopping": True}

    def save_preset(self, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if params is None:
            params = {k: v for k, v in self.engine.params.as_dict().items() if k not in DEFAULT_EXCLUDED}
        path = self.presets.save(name, params)
        self._announce(self.state(), ["presets"], "api")  # preset lists elsewhere refresh
        return {"name": name, "params": self.presets.load(name), "path": str(path)}

    def load_preset(self, name: str, *, source: str = "api") -> dict[str, Any]:
        params = self.presets.load(name)
        if params.get("monitor") is True and not self.devices.has_monitor():
            params.pop("monitor")  # a preset saved with a monitor device loads without one all the same
            log.info("preset %s: monitor left off (no monitor device is open)", name)
            if not params:
                return self.state()
        return self.set_params(params, source=source)

    def delete_preset(self, name: str) -> dict[str, Any]:
        self.presets.delete(name)
        self._announce(self.state(), ["presets"], "api")
        return {"name": name, "deleted": True}

    # ------------------------------------------------------------------ one-shot actions
    def toggle(self, name: str, *, source: str = "api") -> dict[str, Any]:
        with self._lock:
            return self.set_params({name: not getattr(self.engine.params, name)}, source=source)

    def pitch_step(self, steps: float, *, source: str = "api") -> dict[str, Any]:
        with self._lock:
            v = min(12.0, max(-12.0, self.engine.params.pitch_st + steps * PITCH_STEP_ST))
            return self.set_params({"pitch_st": v}, source=source)

    def cycle_voice(self, direction: int, *, source: str = "api") -> dict[str, Any]:
        """Switch to the next (``+1``) or previous (``-1``) voice of ``list_voices``, wrapping.

        A voice that fails to load is skipped (and logged): the press goes on to the one after,
        so a damaged voice in the list never stops the cycle there. Only when every other voice
        fails is the first failure raised (the current voice keeps playing)."""
        with self._lock:
            names = self.engine.registry.names()
            cur = self.engine.params.voice
            i = names.index(cur) if cur in names else (-1 if direction > 0 else 0)
            first: RtvcError | None = None
            for k in range(1, len(names) + 1):
                name = names[(i + k * direction) % len(names)]
                if name == cur:
                    break
                try:
                    return self.set_voice(name, source=source)
                except (ModelError, ConfigError) as e:  # damaged, or gone since the list was read
                    log.warning("voice %s skipped: %s", name, e)
                    first = first or e
            if first is not None:
                raise first
            return self.state()

    def action(self, name: str, *, source: str = "api") -> dict[str, Any]:
        """Run one of :data:`ACTIONS` by name; returns the new state."""
        if name == "bypass_toggle":
            return self.toggle("bypass", source=source)
        if name == "mute_toggle":
            return self.toggle("mute", source=source)
        if name == "monitor_toggle":
            return self.toggle("monitor", source=source)
        if name == "denoise_toggle":
            return self.toggle("denoise", source=source)
        if name == "voice_next":
            return self.cycle_voice(+1, source=source)
        if name == "voice_prev":
            return self.cycle_voice(-1, source=source)
        if name == "pitch_up":
            return self.pitch_step(+1, source=source)
        if name == "pitch_down":
            return self.pitch_step(-1, source=source)
        if name == "speaker_forget":
            return self.forget_speaker(source=source)
        if name == "quit":
            self.quit(source=source)
            return self.state()
        raise ControlError(f"unknown action {name!r}; expected one of {sorted(ACTIONS)}")

    # ------------------------------------------------------------------ protocol dispatch
    def execute(self, cmd: P.Command, *, source: str = "api") -> Any:
        """Run a typed command (not subscribe/unsubscribe: those belong to the connection).

        Raises
        ------
        protocol.RpcError
            With the JSON-RPC code for the failure; the message names the bad value.
        """
        try:
            if isinstance(cmd, P.GetState):
                return self.state()
            if isinstance(cmd, P.SetParams):
                return self.set_params(cmd.changes, source=source)
            if isinstance(cmd, P.ListVoices):
                return self.list_voices()
            if isinstance(cmd, P.SetVoice):
                return self.set_voice(cmd.name, source=source)
            if isinstance(cmd, P.ListDevices):
                return self.list_devices()
            if isinstance(cmd, P.SetDevices):
                return self.set_devices(input=cmd.input, output=cmd.output, monitor=cmd.monitor, rate=cmd.rate,
                                        source=source)
            if isinstance(cmd, P.ListPresets):
                return self.list_presets()
            if isinstance(cmd, P.SavePreset):
                return self.save_preset(cmd.name, cmd.params)
            if isinstance(cmd, P.LoadPreset):
                return self.load_preset(cmd.name, source=source)
            if isinstance(cmd, P.DeletePreset):
                return self.delete_preset(cmd.name)
            if isinstance(cmd, P.ForgetSpeaker):
                return self.forget_speaker(source=source)
            if isinstance(cmd, P.Quit):
                return self.quit(source=source)
            if isinstance(cmd, P.SetOptions):
                return self.set_options(keep_offsets=cmd.keep_offsets, source=source)
            if isinstance(cmd, P.CloneBegin):
                return self.clones.begin(cmd.name, gender=cmd.gender)
            if isinstance(cmd, P.CloneUpload):
                return self.clones.upload(cmd.job, cmd.file, cmd.offset, cmd.data)
            if isinstance(cmd, P.CloneStart):
                return self.clones.start(cmd.job, steps=cmd.steps, min_minutes=cmd.min_minutes)
            if isinstance(cmd, P.CloneCancel):
                return self.clones.cancel(cmd.job)
            if isinstance(cmd, P.CloneStatus):
                return self.clones.status()
            if isinstance(cmd, P.SelfTest):
                return self.selftest(source=source)
        except (ConfigError, ModelError, DeviceError, ControlError) as e:
            raise rpc_error(cmd.method, e) from None
        raise P.RpcError(P.METHOD_NOT_FOUND, f"method {cmd.method!r} is handled by the connection, not the controller")
