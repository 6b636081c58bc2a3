"""The control half of an engine: what reaches the audio path from any thread.

Control requests (:meth:`EngineControl.request` and friends) may come from any thread: they are
validated and voice models are loaded in the caller's thread (:func:`load_voice`), then handed
over as typed commands (:class:`SetParams`, :class:`Reset`, :class:`Forget`) through a bounded
queue that the audio thread drains at the next block boundary (:meth:`EngineControl.take`). A
voice that adapts to the speaker learns the speaker, when it loads, from what the engine heard
(``stage.prime``), so switching voices mid-session is not a cold start. When the audio runs in a
worker process, an attached :class:`~rtvc.audio.process.EngineProxy` takes the accepted commands
instead of the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

import numpy as np

from .errors import ControlError
from .params import Params
from .speaker import SpeakerHistory
from .voices import VoiceInfo, VoiceRegistry

log = logging.getLogger("rtvc.engine")

__all__ = ["Active", "load_voice", "EngineControl", "SetParams", "Reset", "Forget"]


class Active:
    """A loaded voice: its description, stage and stage state."""

    __slots__ = ("info", "stage", "state")

    def __init__(self, info: VoiceInfo, stage: Any) -> None:
        self.info = info
        self.stage = stage
        self.state = stage.init_state()


def load_voice(registry: VoiceRegistry, info: VoiceInfo, params: Params, *, config: Any,
               heard: Callable[[], np.ndarray] | None = None) -> Active:
    """Load a voice for an engine with ``config``; a stage that learns the speaker (``prime``,
    neural voices) first hears ``heard()`` (the engine's speaker history), so a switch
    mid-session is not a cold start. ``heard=None``: it starts cold."""
    stage = registry.make_stage(info, model_rate=config.model_rate, hop=config.hop, device=config.neural_device)
    stage.set_params(params)
    act = Active(info, stage)
    prime = getattr(stage, "prime", None)
    if prime is not None and heard is not None:
        x = heard()
        if x.size:
            t0 = time.perf_counter()
            voiced = prime(x, act.state)
            log.info("voice %s: learnt the speaker from the last %.1f s of input (%d voiced frames) in %.0f ms",
                     info.name, x.size / config.model_rate, voiced, 1e3 * (time.perf_counter() - t0))
    return act


@dataclass(frozen=True)
class SetParams:
    """A new parameter snapshot, with the voice loaded for it when it changes the voice."""

    params: Params
    loaded: Active | None


@dataclass(frozen=True)
class Reset:
    """Clear all audio state (not parameters)."""


@dataclass(frozen=True)
class Forget:
    """Forget the speaker: hand-over number ``seq``; ``fresh`` replaces a voice that learns the speaker."""

    seq: int
    fresh: Active | None


Command = Union[SetParams, Reset, Forget]


class EngineControl:
    """Requests to one engine, from any thread (see the module docstring).

    Parameters
    ----------
    registry, config
        The engine's voices and configuration (voice loads).
    params
        The starting snapshot (already playing).
    speaker
        The engine's speaker history (priming, hand-overs).
    adopt
        Called under the control lock with ``(loaded voice or None, params)`` when a request is
        accepted while a proxy runs the audio elsewhere: the engine then names the voice and
        parameters the worker plays.
    counters
        The engine's counters: this control writes ``commands_coalesced`` there (and nothing else).
    """

    def __init__(self, registry: VoiceRegistry, config: Any, *, params: Params, speaker: SpeakerHistory,
                 adopt: Callable[[Active | None, Params], None], counters: dict[str, int],
                 queue_size: int = 64) -> None:
        self.registry = registry
        self.config = config
        self.speaker = speaker
        self.adopt = adopt
        self.params = params
        """The last accepted snapshot (the audio path applies it at its next block boundary)."""
        self.remote: Any = None
        """The :class:`~rtvc.audio.process.EngineProxy` while the audio runs in a worker process."""
        self.denoiser: Any = None
        """The engine's :class:`~rtvc.denoise.Denoiser`, loaded here the first time a snapshot asks
        for noise suppression (the audio thread takes it when it applies that snapshot)."""
        self._counters = counters
        self._queue: queue.Queue[Command] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # serialises callers, never taken by the audio thread

    def load(self, info: VoiceInfo, params: Params, *, prime: bool = True) -> Active:
        return load_voice(self.registry, info, params, config=self.config,
                          heard=self.speaker.heard if prime else None)

    @property
    def queued(self) -> int:
        """Commands waiting for the audio thread."""
        return self._queue.qsize()

    def attach(self, proxy: Any) -> None:
        """From now on (``proxy``) or no longer (``None``) accepted commands go to a proxy."""
        with self._lock:
            self.remote = proxy

    def request(self, params: Params) -> Params:
        """Ask for a new parameter snapshot; applied at the next block boundary.

        A voice change loads the voice here, in the caller's thread; if loading fails the
        error is raised and the previous voice keeps playing.
        """
        if not isinstance(params, Params):
            raise ControlError(f"request() takes a Params snapshot, got {type(params).__name__}")
        with self._lock:
            loaded = None
            if params.voice != self.params.voice:
                loaded = self.load(self.registry.get(params.voice), params)
            if params.denoise:
                self.need_denoiser(params)
            if self.remote is not None:
                self.remote.request(params)
                self.adopt(loaded, params)  # latency and telemetry name the voice the worker plays
                self.params = params
                return params
            try:
                self._queue.put_nowait(SetParams(params, loaded))
            except queue.Full:
                self._coalesce(params, loaded)
            self.params = params
            return params

    def need_denoiser(self, params: Params) -> None:
        """Load the denoiser for ``params`` unless it is loaded; while a worker process runs the
        audio (it loads its own), only check that it can load. Raises ConfigError/ModelError when
        it cannot (the denoise extra missing, a damaged model): nothing is changed then."""
        from .denoise import load_denoiser, require_denoise

        if self.denoiser is not None:
            return
        if self.remote is not None:
            require_denoise()
            return
        self.denoiser = load_denoiser(model_rate=self.config.model_rate, hop=self.config.hop,
                                      limit_db=params.denoise_limit_db)

    def _coalesce(self, params: Params, loaded: Active | None) -> None:
        """The queue is full (nobody is draining it, e.g. the stream is stopped): parameters
        are snapshots, so only the newest matters. Merge what is pending into one command,
        keeping a pending voice load for the voice the newest snapshot asks for."""
        pending: list[Command] = []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if loaded is None:
            for cmd in reversed(pending):
                if isinstance(cmd, SetParams) and cmd.loaded is not None:
                    if cmd.loaded.info.name == params.voice:
                        loaded = cmd.loaded
                    break
        if any(isinstance(cmd, Reset) for cmd in pending):
            self._queue.put_nowait(Reset())
        forgets = [cmd for cmd in pending if isinstance(cmd, Forget)]
        if forgets:  # the newest forget (its fresh voice); a voice loaded after it already starts cold
            self._queue.put_nowait(forgets[-1])
        self._queue.put_nowait(SetParams(params, loaded))
        self._counters["commands_coalesced"] += len(pending)

    def update(self, **changes: Any) -> Params:
        """Partial update (validated). Selecting a voice also loads its preset pitch/formant
        unless those are given in the same update."""
        base = self.params
        if "voice" in changes and changes["voice"] != base.voice:
            info = self.registry.get(changes["voice"])
            for k, v in info.defaults.items():
                changes.setdefault(k, v)
        return self.request(base.replace(**changes))

    def reset(self) -> None:
        """Clear all audio state (not parameters) at the next block boundary."""
        if self.remote is not None:
            self.remote.reset()
            return
        try:
            self._queue.put_nowait(Reset())
        except queue.Full:
            raise ControlError("engine command queue is full; reset not queued") from None

    def forget_speaker(self) -> bool:
        """Forget the speaker (someone else takes the microphone): the speaker history is
        dropped, the speaker memory file is deleted, and the active voice, if it learns the
        speaker, is replaced at the next block boundary by a fresh copy that starts learning
        again (crossfaded like a voice switch; loaded here, in the caller's thread). Returns
        whether a memory file was deleted."""
        with self._lock:
            if self.remote is not None:  # the worker process runs the audio: it forgets there
                deleted = self.speaker.delete_memory()  # first: the worker deletes a save it makes meanwhile
                self.remote.forget_speaker()
                self.speaker.clear()
                return deleted
            fresh: Active | None = self.load(self.registry.get(self.params.voice), self.params,
                                             prime=False)  # may raise: nothing forgotten
            if getattr(fresh.stage, "prime", None) is None:
                fresh = None  # a voice that does not learn the speaker plays on
            seq = self.speaker.begin_forget()  # a save under way finishes first; later ones see the forget pending
            try:
                self._queue.put_nowait(Forget(seq, fresh))
            except queue.Full:
                self._coalesce(self.params, None)  # merges what waits into at most three commands
                self._queue.put_nowait(Forget(seq, fresh))
            return self.speaker.delete_memory()

    def empty(self) -> bool:
        """No command waits (the audio thread asks at every block boundary; allocation-free)."""
        return self._queue.empty()

    def take(self) -> Iterator[Command]:
        """The commands waiting, oldest first (the audio thread, at a block boundary)."""
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return
