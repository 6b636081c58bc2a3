"""Conventions shared by the whole package, said once.

- Audio is float32 mono, shape ``(n_samples,)``, full scale is +-1.0.
- Feature frames are float32, shape ``(n_frames, n_features)``.
- Sample counts (``hop``, ``latency``) are integers in samples at the rate named beside them;
  times carry their unit in the name (``latency_ms``, ``f0_hz``, ``gain_db``).
- The model rate (the rate the voice stages run at) is ``MODEL_RATE`` unless a voice
  manifest says otherwise.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Audio", "Frames", "MODEL_RATE", "HOP", "N_CEP", "NEURAL_DEVICES", "TRAIN_DEVICES", "Stage", "S"]

Audio = npt.NDArray[np.float32]
Frames = npt.NDArray[np.float32]

MODEL_RATE = 16_000
"""Rate of the voice stages, in Hz."""

HOP = 80
"""Engine hop at the model rate, in samples (5 ms): every stage is stepped with this many."""
N_CEP = 32
"""Cepstral coefficients of the envelope a neural voice predicts (the default order)."""

NEURAL_DEVICES = ("cpu", "cuda", "auto")
"""Where a neural voice's model runs: onnxruntime's CPU provider, its CUDA provider (the ``gpu``
extra; CPU with a logged reason where CUDA is unavailable), or CUDA where available."""

TRAIN_DEVICES = ("cpu", "cuda")
"""Where a converter trains (torch's device; ``cuda`` needs a torch that sees a GPU)."""

S = TypeVar("S")


class Stage(Protocol[S]):
    """The streaming contract every stage follows.

    ``state = stage.init_state()`` allocates everything the stage needs;
    ``y, state = stage.step(x, state)`` consumes exactly ``HOP`` samples and returns exactly
    ``HOP`` samples (a view into a buffer owned by ``state``: valid until the next ``step``).
    ``latency`` is the stage's algorithmic delay in samples at the model rate: an impulse at
    input sample ``n`` comes out (for a neutral setting) at output sample ``n + latency``.
    Parameters are not state: ``set_params`` swaps an immutable snapshot, and is only called
    by the engine at a block boundary. A stage that adapts to the speaker may also have
    ``prime(x, state) -> int``: the engine calls it on a fresh state with the input it heard
    before the voice was selected (:meth:`rtvc.engine.Engine.heard`), off the audio thread.
    """

    latency: int

    def init_state(self) -> S: ...

    def step(self, x: Audio, state: S) -> tuple[Audio, S]: ...

    def set_params(self, params: Any) -> None: ...
