"""The speaker history: the speech an engine heard, and the speaker memory that outlives a session.

A voice that adapts to the speaker (a neural voice's F0, timbre and warp statistics) learns the
speaker from the engine's last ``HISTORY_S`` of input when it loads (``stage.prime``), so
switching voices mid-session is not a cold start. :class:`SpeakerHistory` holds those hops: the
ones the noise gate let through (speech, not the silence of a pause). With a memory file it
outlives the session: a new history starts from that file (:meth:`SpeakerHistory.recall`), and
:meth:`SpeakerHistory.save` writes it back (at stop, and every ``save_every_s`` through
:meth:`SpeakerHistory.save_if_due`, whose clock lives here). :meth:`SpeakerHistory.begin_forget`
is the hand-over: the history and the memory file are dropped.

Threads: the audio thread is the only writer of the rows (:meth:`add`, :meth:`clear`,
:meth:`finish_forget`); any other thread reads them (:meth:`heard`, :attr:`seconds`) without
stopping it, and saves or forgets under the history's own lock, which the audio thread never
takes.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .errors import AudioFileError
from .wavio import read_audio, write_audio

log = logging.getLogger(__name__)

__all__ = ["SpeakerHistory", "delete_speaker_memory", "HISTORY_S", "SPEAKER_MEMORY_MIN_S", "SPEAKER_SAVE_EVERY_S"]

# the input a newly selected voice learns the speaker from (its ``prime``): the last 8 s the noise
# gate let through, after the input gain, longer than the warm-up of the neural voices' F0 and timbre
# statistics (200 voiced frames)
HISTORY_S = 8.0
# ``save`` replaces the speaker memory only when the engine heard this much speech itself
SPEAKER_MEMORY_MIN_S = 1.0
# ``save_if_due``: while running, the memory is saved this often when new speech was heard (a crash
# or a killed process then loses at most this much of the session's update)
SPEAKER_SAVE_EVERY_S = 30.0


def delete_speaker_memory(path: str | Path) -> bool:
    """Delete a speaker memory file; whether there was one. A file that cannot be deleted is
    logged, not raised."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        log.warning("speaker memory: cannot delete %s (%s)", path, e)
        return False
    log.info("speaker memory: forgot the speaker (deleted %s)", path)
    return True


class SpeakerHistory:
    """The last ``HISTORY_S`` of speech, ``(rows, hop)`` float32 at the model rate, and its memory file.

    Parameters
    ----------
    model_rate, hop
        The rate (Hz) and hop (samples) of the rows.
    memory
        The speaker memory file (a WAV at ``model_rate``), or None: nothing outlives the session.
    save_every_s
        :meth:`save_if_due`'s period in seconds.
    """

    def __init__(self, *, model_rate: int, hop: int, memory: str | None = None,
                 save_every_s: float = SPEAKER_SAVE_EVERY_S) -> None:
        self.model_rate = int(model_rate)
        self.hop = int(hop)
        self.memory = memory
        self.save_every_s = float(save_every_s)
        self.rows = np.zeros((int(round(HISTORY_S * model_rate / hop)), hop), np.float32)
        self.n = 0  # hops written into ``rows`` (row n % len(rows)) since the start or a clear
        self.live = 0  # of them, hops this engine heard (not recalled from the memory)
        self.recalled_s = 0.0  # seconds of speech the history started with (the memory)
        self.speech_hops = 0  # hops added since the start (never cleared)
        self._saved_hops = 0  # ``speech_hops`` at the last save
        self._saved_at: float | None = None  # ``save_if_due``'s clock at the last save (or try)
        self._forget_asked = 0  # ``begin_forget`` calls; the audio thread has finished ``_forget_done`` of them
        self._forget_done = 0
        self._lock = threading.Lock()  # serialises saves and forgets (never taken by the audio thread)
        if memory is not None:
            self.recall(Path(memory))

    # ------------------------------------------------------------------ audio thread
    def add(self, x: np.ndarray) -> None:
        """A hop the gate let through (audio thread; allocation-free)."""
        self.rows[self.n % self.rows.shape[0]] = x
        self.n += 1
        self.live += 1
        self.speech_hops += 1

    def clear(self) -> None:
        """Forget what was heard (a reset; audio thread)."""
        self.n = 0
        self.live = 0

    def finish_forget(self, seq: int) -> None:
        """The audio thread has applied forget number ``seq`` (:meth:`begin_forget`)."""
        self.clear()
        self._forget_done = seq

    # ------------------------------------------------------------------ any thread
    def heard(self) -> np.ndarray:
        """The last ``HISTORY_S`` of speech (oldest first, the pauses left out), copied without
        stopping the audio: hops the audio thread writes while the copy is made (they overwrite
        the oldest) are left out. Empty while a forget waits for the audio thread. Allocates."""
        if self._forget_asked != self._forget_done:
            return np.zeros(0, np.float32)
        h = self.rows
        rows = h.shape[0]
        n1 = self.n
        snap = h.copy()
        n2 = self.n
        # row k % rows holds hop k until hop k + rows overwrites it; hops n1..n2 may have been
        # written during the copy, so keep the hops written before it that none of them overwrote
        if n2 < n1:  # a clear in between: what was heard before it is gone
            return np.zeros(0, np.float32)
        lo = max(0, n2 + 1 - rows)
        return snap[np.arange(lo, max(lo, n1)) % rows].reshape(-1)

    @property
    def seconds(self) -> float:
        """Seconds of speech a voice selected now would learn the speaker from (at most ``HISTORY_S``)."""
        if self._forget_asked != self._forget_done:
            return 0.0
        return min(self.n, self.rows.shape[0] - 1) * self.hop / self.model_rate

    def recall(self, path: Path) -> None:
        """Start from the memory file (its last ``HISTORY_S``); a missing file is a first session,
        a bad one is named in the log and left out."""
        if not path.exists():
            return
        try:
            x, rate = read_audio(path)
        except AudioFileError as e:
            log.warning("speaker memory: %s; starting without it", e)
            return
        if rate != self.model_rate:
            log.warning("speaker memory %s has sample rate %d Hz; expected %d Hz (rtvc writes it); starting "
                        "without it", path, rate, self.model_rate)
            return
        k = min(x.shape[0] // self.hop, self.rows.shape[0] - 1)
        if k > 0:
            self.rows[:k] = x[x.shape[0] - k * self.hop:].reshape(k, self.hop)
            self.n = k
        self.recalled_s = k * self.hop / self.model_rate
        log.info("speaker memory: %.1f s of speech from %s", self.recalled_s, path)

    def save(self) -> bool:
        """Write :meth:`heard` to the memory file (model rate, 16-bit PCM, readable by its owner
        only), when this history heard at least ``SPEAKER_MEMORY_MIN_S`` of speech itself since it
        started or was cleared; otherwise the file is left as it is. Allocates. Returns whether
        the file was written; a failure is logged, not raised."""
        path = self.memory
        if path is None:
            return False
        with self._lock:
            if self.live * self.hop < SPEAKER_MEMORY_MIN_S * self.model_rate:
                return False
            hops = self.speech_hops
            x = self.heard()
            if x.size == 0:
                return False
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                write_audio(path, x, self.model_rate, mode=0o600)
            except (AudioFileError, OSError) as e:
                log.warning("speaker memory: cannot save it (%s); the next session starts without it", e)
                return False
            self._saved_hops = hops
        log.info("speaker memory: saved %.1f s of speech to %s", x.size / self.model_rate, path)
        return True

    def save_if_due(self, now: float) -> bool:
        """:meth:`save` when ``save_every_s`` passed since the last save (or the first call) and new
        speech was heard since then; ``now`` is a monotonic clock in seconds. For a thread that
        ticks while the audio runs (never the audio thread)."""
        if self.memory is None:
            return False
        if self._saved_at is None:
            self._saved_at = now
            return False
        if now - self._saved_at < self.save_every_s or self.speech_hops == self._saved_hops:
            return False
        self._saved_at = now
        return self.save()

    def begin_forget(self) -> int:
        """Start a hand-over: :meth:`heard` is empty from now on until the audio thread calls
        :meth:`finish_forget` with the returned number. Waits for a save under way; the caller
        queues the forget for the audio thread and then calls :meth:`delete_memory`."""
        with self._lock:
            self.recalled_s = 0.0
            self._forget_asked += 1
            return self._forget_asked

    def delete_memory(self) -> bool:
        """Delete the memory file; whether there was one."""
        with self._lock:
            self.recalled_s = 0.0
            return self.memory is not None and delete_speaker_memory(self.memory)
