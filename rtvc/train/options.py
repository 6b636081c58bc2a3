"""Training settings and their command-line vocabulary, without torch.

The ``rtvc`` parser reads the defaults here to build ``clone``/``train``/``train-head`` help, and
a bad option is refused before any corpus work, with or without the ``train`` extra installed.
:mod:`rtvc.train.train`, :mod:`rtvc.train.dataset` and :mod:`rtvc.train.build` re-export these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..manifest import MAX_LOOKAHEAD_FRAMES
from ..types import N_CEP, TRAIN_DEVICES

__all__ = ["TrainConfig", "AugmentConfig", "LOSS_OPTIONS", "SYNTHESIS_OPTIONS", "AUGMENT_FLAGS", "HIGH_VOICE_HZ",
           "N_CEP_LOW", "N_CEP_HIGH"]

SYNTHESIS_OPTIONS: dict[str, Any] = {"voicing": "adaptive", "f0_continuity": 0.3, "postfilter": 1.2}
"""Synthesis options of new voices (measured on the shipped voices: adaptive voicing DNSMOS up,
similarity equal; voicing with continuity 0.3 DNSMOS OVRL +0.07 to +0.12; a cepstral postfilter
of 1.2: joe similarity +0.03 and P.808 +0.13 for one WER point, clones +0.004 and +0.03, P.808
+0.09 and +0.15; see bench/RESULTS.md and rtvc.synthesis)."""

AUGMENT_FLAGS = {"warp_spread": "--aug-warp-spread", "eq_nepers": "--aug-eq", "normalise": "--aug-normalise"}
"""Command-line flag of each recorded :class:`AugmentConfig` option (the parser and the command a
cloned voice records both use it)."""

HIGH_VOICE_HZ = 160.0
"""A clone whose median F0 is at least this gets ``N_CEP_HIGH`` cepstral coefficients, a lower
voice ``N_CEP_LOW`` (the boundary lies between the usual male, 85-155 Hz, and female, 165-255 Hz,
ranges; measured in :func:`rtvc.train.clone.cepstral_order_for`)."""
N_CEP_LOW, N_CEP_HIGH = 64, N_CEP


def _torch_sees_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


LOSS_OPTIONS = ("delta_weight", "gv_weight", "cep_emphasis", "adv_weight", "fm_weight")
"""The :class:`TrainConfig` fields that shape the loss (recorded in the manifest's ``training.loss``)."""



@dataclass(frozen=True)
class TrainConfig:
    """Training settings. The loss options only change the weights learnt, never the ONNX graph.

    ``delta_weight``: weight of a smooth-L1 term on frame-to-frame differences of the envelope.
    ``gv_weight``: weight of a global-variance term, the L1 distance between predicted and target
    per-coefficient standard deviations over each training sequence (counters over-smoothing).
    ``cep_emphasis``: exponent ``g`` of per-coefficient weights ``(k + 1) ** g`` (normalised to a
    mean of 1) on every term; 0 weighs all coefficients equally.
    ``adv_weight`` / ``fm_weight``: weights of the adversarial and feature-matching terms of a
    critic over envelope sequences (:mod:`rtvc.train.adversarial`); both 0: no critic.
    """

    steps: int = 1500
    batch: int = 16
    frames: int = 160  # 0.8 s sequences
    hidden: int = 128
    layers: int = 2
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2
    lookahead: int = 0  # frames the converter hears before it outputs a frame's envelope (+5 ms latency each)
    device: str = "cpu"  # where the network trains: 'cpu' or 'cuda' (batches are built on the CPU either way)
    # bench/quality.py, 1000 steps: gv 0.1 + delta 1 raised DNSMOS P.808 by 0.02 (joe) and 0.11
    # (kumo) with the WER gap within 0.1 point; on joe, gv >= 0.25 raised similarity more but cost
    # 2-14 WER points and F0 correlation. delta 0, gv 0, emphasis 0 is the original loss.
    delta_weight: float = 1.0
    gv_weight: float = 0.1
    cep_emphasis: float = 0.0
    adv_weight: float = 0.0
    fm_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "frames", "hidden", "layers", "threads"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= (2 if name == "frames" else 1)):
                raise ConfigError(f"{name} {v!r}; expected an integer >= {2 if name == 'frames' else 1}")
        if not (isinstance(self.lookahead, int) and 0 <= self.lookahead <= MAX_LOOKAHEAD_FRAMES):
            raise ConfigError(f"lookahead {self.lookahead!r}; expected an integer 0..{MAX_LOOKAHEAD_FRAMES} frames")
        if self.lookahead >= self.frames:
            raise ConfigError(f"lookahead {self.lookahead} frames; expected fewer than the {self.frames} frames "
                              "of a training sequence")
        if self.device not in TRAIN_DEVICES:
            raise ConfigError(f"training device {self.device!r}; expected one of {TRAIN_DEVICES}")
        if self.device == "cuda" and not _torch_sees_cuda():
            raise ConfigError("training device 'cuda': this torch sees no CUDA GPU (torch.cuda.is_available() is "
                              "False); expected 'cpu' here")
        for name in LOSS_OPTIONS:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} {v!r}; expected a finite number >= 0")

    def loss_options(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in LOSS_OPTIONS}


@dataclass(frozen=True)
class AugmentConfig:
    alpha_range: tuple[float, float] = (0.78, 1.25)  # vocal-tract warp (target -> disguise)
    pitch_octaves: float = 1.0  # pitch ratio 2**U(-1, 1)
    tilt_nepers: float = 1.5  # +- across the band
    level_nepers: tuple[float, float] = (-2.5, 1.0)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 40.0)
    clean_prob: float = 0.15  # a share of batches is the target itself
    warp_spread: float = 0.0  # the warp's ratio at the top of the band differs by 2**U(-s, s) from the bottom's
    eq_nepers: float = 0.0  # random smooth EQ: cepstral offsets c1..c{EQ_ORDER} of up to this, falling as 1/k
    parallel_share: float = 0.5  # with parallel data (other speakers, aligned): this share of batch rows
    normalise: float = 0.0  # share of rows whose input gets the run time's input warp and timbre mean shift
    room_prob: float = 0.0  # share of disguised rows with reverberation, and (drawn apart) with a band limit

    def __post_init__(self) -> None:
        if not 0.0 <= self.warp_spread <= 1.0:
            raise ConfigError(f"warp_spread {self.warp_spread!r}; expected 0..1")
        if not 0.0 <= self.eq_nepers <= 2.0:
            raise ConfigError(f"eq_nepers {self.eq_nepers!r}; expected 0..2 nepers")
        if not 0.0 <= self.parallel_share <= 1.0:
            raise ConfigError(f"parallel_share {self.parallel_share!r}; expected 0..1")
        if not 0.0 <= self.room_prob <= 1.0:
            raise ConfigError(f"room_prob {self.room_prob!r}; expected a share of rows 0..1")
        if not 0.0 <= self.normalise <= 1.0:
            raise ConfigError(f"normalise {self.normalise!r}; expected a share of rows 0..1")

    def options(self) -> dict[str, float]:
        """The options a voice records in its manifest (``training.augment``)."""
        return {"warp_spread": self.warp_spread, "eq_nepers": self.eq_nepers, "normalise": self.normalise}
