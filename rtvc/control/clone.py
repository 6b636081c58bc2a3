"""Clone a voice from the control panel: uploads into the user's data folder, training in a
separate process, progress as events.

A job goes ``uploading`` -> ``training`` -> ``done`` (or ``failed`` / ``cancelled``). Uploads
arrive in chunks (``clone_upload``: base64, at most :data:`CHUNK_BYTES` each, in order) and are
written only under ``<data>/clone-uploads/JOB/``, with a file name reduced to a plain name of
letters, digits, ``._-`` and an audio extension, and bounded in size (:data:`MAX_FILE_BYTES` a
file, :data:`MAX_JOB_BYTES` a job, :data:`MAX_FILES` files). Training runs ``rtvc clone`` in a
child process at a lower CPU priority (the live audio runs in this process and its worker; the
training process can never stall them); its progress line (``train [###] n/total ... ETA s``) is
read and passed on as ``clone_progress`` events. The new voice lands in the user voices folder,
where the voice list finds it. A job's uploads are deleted when it ends (done, failed, cancelled).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..params import shown
from ..paths import data_dir, user_voices_dir
from . import protocol as P

__all__ = ["CloneJobs", "CHUNK_BYTES", "MAX_FILE_BYTES", "MAX_JOB_BYTES", "MAX_FILES", "AUDIO_EXTENSIONS",
           "parse_progress"]

CHUNK_BYTES = 32 * 1024
"""Largest decoded chunk of one ``clone_upload`` (its base64 fits a 64 KiB websocket message)."""
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_JOB_BYTES = 1024 * 1024 * 1024
MAX_FILES = 200
MAX_JOBS = 4
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
VOICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}")
_PROGRESS_RE = re.compile(r"(\w+) \[[# ]*\] (\d+)/(\d+).*?elapsed\s+(\d+)s ETA\s+(\d+)s")
GENDERS = ("female", "male", "other", "unknown")

log = logging.getLogger("rtvc.control")
Event = Callable[[dict[str, Any]], None]


def parse_progress(line: str) -> dict[str, Any] | None:
    """``{"stage", "done", "total", "elapsed_s", "eta_s"}`` from a training progress line, else None."""
    m = _PROGRESS_RE.search(line)
    if m is None:
        return None
    return {"stage": m.group(1), "done": int(m.group(2)), "total": int(m.group(3)),
            "elapsed_s": float(m.group(4)), "eta_s": float(m.group(5))}


@dataclass(eq=False)
class _Job:
    id: str
    name: str
    gender: str
    folder: Path
    files: dict[str, int] = field(default_factory=dict)
    state: str = "uploading"
    stage: str = "uploading"
    fraction: float = 0.0
    eta_s: float | None = None
    message: str = ""
    voice: str | None = None
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"job": self.id, "name": self.name, "state": self.state, "stage": self.stage,
                "fraction": round(self.fraction, 4), "eta_s": self.eta_s, "message": self.message,
                "files": dict(self.files), "bytes": sum(self.files.values()), "voice": self.voice}


class CloneJobs:
    """The clone jobs of one control server.

    Parameters
    ----------
    on_event : callable(dict), optional
        Called (from any thread) with a job's public state whenever it changes (the controller
        sets it with :meth:`bind`).
    voice_names : callable() -> list of str, optional
        The voices listed now (a new voice may not take a listed voice's name).
    root : path, optional
        Upload folder; default ``<data>/clone-uploads``.
    out_dir : path, optional
        Where the new voices go; default :func:`rtvc.paths.user_voices_dir` (``rtvc clone``'s
        own default).
    command : list of str, optional
        The clone command to run; default ``[python, -m, rtvc, clone]``.
    """

    def __init__(self, *, on_event: Event | None = None, voice_names: Callable[[], list[str]] | None = None,
                 root: Path | None = None, out_dir: Path | None = None, command: list[str] | None = None) -> None:
        self._on_event: Event = on_event or (lambda job: None)
        self._voice_names: Callable[[], list[str]] = voice_names or (lambda: [])
        self._root = root
        self._out_dir = out_dir
        self.command = command or [sys.executable, "-m", "rtvc", "clone"]
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def bind(self, *, on_event: Event, voice_names: Callable[[], list[str]]) -> None:
        """Attach to a controller: where events go and which voice names are taken."""
        self._on_event, self._voice_names = on_event, voice_names

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else data_dir() / "clone-uploads"

    # ------------------------------------------------------------------ queries
    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [j.public() for j in self._jobs.values()]

    def _get(self, job: str) -> _Job:
        j = self._jobs.get(job)
        if j is None:
            raise ConfigError(f"clone job {shown(job)} is not known; expected one of {sorted(self._jobs)}")
        return j

    def _emit(self, j: _Job) -> None:
        try:
            self._on_event(j.public())
        except Exception:  # a broken listener must not stop the job
            log.exception("clone event listener failed")

    # ------------------------------------------------------------------ steps
    def begin(self, name: str, *, gender: str = "unknown") -> dict[str, Any]:
        """A new job for voice ``name``: checks the name and that cloning is installed."""
        if not isinstance(name, str) or not VOICE_NAME_RE.fullmatch(name):
            raise ConfigError(f"voice name {shown(name)} is invalid; expected 1-64 letters, digits, '_' or '-', "
                              "starting with a letter or digit")
        if name in self._voice_names():
            raise ConfigError(f"voice name {name!r} is taken; expected a name that is not in the voice list")
        if gender not in GENDERS:
            raise ConfigError(f"gender {shown(gender)}: expected one of {list(GENDERS)}")
        if importlib.util.find_spec("torch") is None:
            raise P.RpcError(P.NOT_AVAILABLE, "clone_begin: cloning needs the training extra, which is not "
                                              "installed; expected pip install 'rtvc[train]'")
        with self._lock:
            live = [j for j in self._jobs.values() if j.state in ("uploading", "training")]
            if len(live) >= MAX_JOBS:
                raise ConfigError(f"{len(live)} clone jobs are open; expected at most {MAX_JOBS} (cancel one)")
            if any(j.name == name for j in live):
                raise ConfigError(f"a clone of {name!r} is already under way")
            jid = secrets.token_hex(6)
            folder = self.root / jid
            folder.mkdir(parents=True, exist_ok=False)
            j = self._jobs[jid] = _Job(jid, name, gender, folder)
        self._emit(j)
        return j.public()

    def upload(self, job: str, file: str, offset: int, data: str) -> dict[str, Any]:
        """Append one chunk (base64 ``data``) at ``offset`` of ``file`` (chunks come in order)."""
        with self._lock:
            j = self._get(job)
            if j.state != "uploading":
                raise ConfigError(f"clone job {job!r} is {j.state}; expected it to be uploading")
            fname = self._file_name(file)
            try:
                chunk = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ConfigError(f"clone_upload: data of {fname!r} at offset {offset} is not base64") from None
            if len(chunk) > CHUNK_BYTES:
                raise ConfigError(f"clone_upload: a chunk of {len(chunk)} bytes; expected at most {CHUNK_BYTES}")
            have = j.files.get(fname)
            if have is None and len(j.files) >= MAX_FILES:
                raise ConfigError(f"clone_upload: {fname!r} would be file {len(j.files) + 1}; expected at most "
                                  f"{MAX_FILES} files")
            if offset != (have or 0):
                raise ConfigError(f"clone_upload: {fname!r} offset {offset}; expected {have or 0} (chunks in order)")
            if offset + len(chunk) > MAX_FILE_BYTES:
                raise ConfigError(f"clone_upload: {fname!r} grows past {MAX_FILE_BYTES // 2**20} MiB; expected "
                                  "smaller files (split long recordings)")
            if sum(j.files.values()) + len(chunk) > MAX_JOB_BYTES:
                raise ConfigError(f"clone_upload: the recordings grow past {MAX_JOB_BYTES // 2**20} MiB; expected "
                                  "less (an hour of speech is plenty)")
            with open(j.folder / fname, "ab" if have else "wb") as f:
                f.write(chunk)
            j.files[fname] = offset + len(chunk)
            return {"job": job, "file": fname, "received": j.files[fname]}

    @staticmethod
    def _file_name(file: Any) -> str:
        base = os.path.basename(str(file).replace("\\", "/")) if isinstance(file, str) else ""
        if not _FILE_RE.fullmatch(base) or Path(base).suffix.lower() not in AUDIO_EXTENSIONS:
            raise ConfigError(f"clone_upload: file name {shown(file)}; expected a plain name (letters, digits, "
                              f"spaces, '._-') ending in one of {list(AUDIO_EXTENSIONS)}")
        return base

    def start(self, job: str, *, steps: int | None = None, min_minutes: float | None = None) -> dict[str, Any]:
        """Train the voice from the uploaded files in a child process (lower CPU priority)."""
        with self._lock:
            j = self._get(job)
            if j.state != "uploading":
                raise ConfigError(f"clone job {job!r} is {j.state}; expected it to be uploading")
            if not j.files:
                raise ConfigError(f"clone job {job!r} has no recordings; expected at least one uploaded file")
            cmd = [*self.command, str(j.folder), "--name", j.name, "--gender", j.gender]
            if self._out_dir is not None:
                cmd += ["--out", str(self._out_dir)]
            if steps is not None:
                cmd += ["--steps", str(int(steps))]
            if min_minutes is not None:
                cmd += ["--min-minutes", f"{float(min_minutes):g}"]
            kw: dict[str, Any] = {}
            if os.name == "posix":
                kw["preexec_fn"] = lambda: os.nice(10)  # the live audio keeps the CPU it needs
            j.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, bufsize=1, **kw)
            j.state, j.stage, j.fraction, j.started = "training", "analysing", 0.0, time.monotonic()
            j.message = f"analysing {len(j.files)} recordings"
            threading.Thread(target=self._watch, args=(j,), name=f"rtvc-clone-{j.id}", daemon=True).start()
        self._emit(j)
        return j.public()

    def _watch(self, j: _Job) -> None:
        """Read the child's output (progress lines end in '\\r') until it exits."""
        assert j.proc is not None and j.proc.stdout is not None
        last_error, buf = "", ""
        while True:
            ch = j.proc.stdout.read(1)
            if not ch:
                break
            if ch not in "\r\n":
                buf += ch
                continue
            line, buf = buf.strip(), ""
            if not line:
                continue
            p = parse_progress(line)
            if p is not None:
                j.stage = p["stage"]
                j.fraction = min(0.95, 0.05 + 0.9 * p["done"] / max(1, p["total"]))
                j.eta_s = p["eta_s"]
                j.message = f"{p['stage']} {p['done']}/{p['total']}, about {p['eta_s']:.0f} s left"
                if p["done"] >= p["total"]:
                    j.stage, j.message = "exporting", "exporting the voice"
            elif "error" in line.lower():
                last_error = line
            self._emit(j)
        rc = j.proc.wait()
        with self._lock:
            if j.state == "cancelled":
                pass
            elif rc == 0:
                j.state, j.stage, j.fraction, j.eta_s, j.voice = "done", "done", 1.0, 0.0, j.name
                j.message = f"voice {j.name!r} is ready ({time.monotonic() - j.started:.0f} s)"
            else:
                j.state, j.stage = "failed", "failed"
                j.message = (last_error.removeprefix("rtvc: error: ") or f"rtvc clone exited with code {rc}")
        shutil.rmtree(j.folder, ignore_errors=True)  # the disk a job took is given back however it ended
        self._emit(j)

    def cancel(self, job: str) -> dict[str, Any]:
        """Stop a job: its training process ends and its uploads are deleted."""
        with self._lock:
            j = self._get(job)
            if j.state in ("done", "failed", "cancelled"):
                return j.public()
            j.state, j.stage, j.message = "cancelled", "cancelled", "cancelled"
            proc = j.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(j.folder, ignore_errors=True)
        self._emit(j)
        return j.public()

    def close(self) -> None:
        """Cancel every job still running (the server stops)."""
        for jid in [j.id for j in self._jobs.values() if j.state in ("uploading", "training")]:
            self.cancel(jid)

    @property
    def out_dir(self) -> Path:
        return self._out_dir if self._out_dir is not None else user_voices_dir()
