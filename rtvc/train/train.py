"""Training loop of the converter (CPU, seeded, deterministic) with a progress bar and ETA."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..features import FeatureConfig, N_INPUT
from ..manifest import MAX_LOOKAHEAD_FRAMES
from ..types import TRAIN_DEVICES
from .dataset import AugmentConfig, Augmenter, FrameSet
from .options import LOSS_OPTIONS, TrainConfig
from .model import Converter

__all__ = ["TrainConfig", "Progress", "train_converter", "converter_factory", "ModelFactory", "envelope_loss", "cepstral_weights", "LOSS_OPTIONS"]

def cepstral_weights(n_cep: int, emphasis: float) -> torch.Tensor:
    """Per-coefficient weights ``(k + 1) ** emphasis``, k = 0..n_cep-1, with a mean of 1. Shape ``(n_cep,)``."""
    w = torch.arange(1, n_cep + 1, dtype=torch.float32) ** float(emphasis)
    return w / w.mean()


def envelope_loss(pred: torch.Tensor, target: torch.Tensor, *, config: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss on normalised envelopes ``(B, T, E)``: frame + delta + global-variance terms.

    Returns the scalar loss and its unweighted parts (``frame``, ``delta``, ``gv``; the latter two
    only when their weight is positive) as floats for the progress line.
    """
    w = cepstral_weights(pred.shape[-1], config.cep_emphasis).to(pred.device)
    l1 = torch.nn.functional.smooth_l1_loss
    frame = (l1(pred, target, beta=0.5, reduction="none") * w).mean()
    loss, parts = frame, {"frame": frame.item()}
    if config.delta_weight > 0:
        delta = (l1(pred.diff(dim=1), target.diff(dim=1), beta=0.5, reduction="none") * w).mean()
        loss = loss + config.delta_weight * delta
        parts["delta"] = delta.item()
    if config.gv_weight > 0:
        # std over time per sequence and coefficient: a flattened prediction has a smaller one
        gv = ((pred.std(dim=1) - target.std(dim=1)).abs() * w).mean()
        loss = loss + config.gv_weight * gv
        parts["gv"] = gv.item()
    return loss, parts


class Progress:
    """A one-line progress bar with rate and ETA on stderr (refreshed at most twice a second)."""

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, max(1, total), enabled
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.n = 0

    def update(self, n: int = 1, **info: float) -> None:
        self.n += n
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.5 and self.n < self.total):
            return
        self.last = now
        el = now - self.t0
        eta = el / self.n * (self.total - self.n)
        extra = " ".join(f"{k}={v:.4g}" for k, v in info.items())
        bar = "#" * int(30 * self.n / self.total)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.n}/{self.total} {extra} "
                         f"elapsed {el:5.0f}s ETA {eta:5.0f}s")
        if self.n >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


ModelFactory = Callable[[list[torch.Tensor], torch.Tensor, TrainConfig], torch.nn.Module]
"""``(input batches (B, T, F), target frames (n, E), config) -> model`` with its normalisation set.
The model has :class:`Converter`'s interface (``forward_normalised``, ``init_state``,
``out_mean``, ``out_std``, ``n_input``, ``n_output``, ``hidden``, ``layers``)."""


def converter_factory(xs: list[torch.Tensor], y_all: torch.Tensor, c: TrainConfig) -> Converter:
    """The shipped model: a :class:`Converter` normalised on the input batches and target frames."""
    x_all = torch.cat(xs).reshape(-1, xs[0].shape[-1])
    model = Converter(x_all.shape[-1], y_all.shape[-1], hidden=c.hidden, layers=c.layers)
    model.set_normalisation(x_all.mean(0), x_all.std(0).clamp(min=1e-3), y_all.mean(0), y_all.std(0).clamp(min=1e-3))
    return model


def train_converter(frames: FrameSet, *, config: TrainConfig | None = None, feature_config: FeatureConfig | None = None,
                    aug: AugmentConfig | None = None, progress: bool = True,
                    parallel: FrameSet | None = None,
                    model_factory: ModelFactory = converter_factory,
                    extra_loss: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                    ) -> tuple[Converter, dict[str, float]]:
    """Train a :class:`Converter` (or what ``model_factory`` builds) on one speaker's frames
    (any-to-one, augmented inputs), and on ``parallel`` frames of other speakers aligned to them
    where given (see :class:`Augmenter`). ``extra_loss(model, inputs, frame_indices)`` adds a term
    to every step's loss (the indices are rows of ``frames``, ``(B, T)``).

    Returns
    -------
    model : Converter (eval mode, normalisation set)
    info : dict with ``final_loss`` (all terms, smoothed), ``train_s``, ``steps``
    """
    c = config or TrainConfig()
    fc = feature_config or FeatureConfig()
    torch.manual_seed(c.seed)
    np.random.seed(c.seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    try:
        data = Augmenter(frames, config=fc, aug=aug, seed=c.seed, parallel=parallel)
        # normalisation from a few augmented batches (inputs) and the clean targets
        xs, _ = zip(*(data.batch(c.batch, c.frames) for _ in range(8)))
        model = model_factory(list(xs), torch.from_numpy(frames.cepstrum), c)
        dev = torch.device(c.device)
        model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-5)
        warm = max(1, min(50, c.steps // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (0.55 + 0.45 * math.cos(math.pi * min(1.0, s / c.steps))))
        bar = Progress("train", c.steps, enabled=progress)
        t0 = time.perf_counter()
        adversary = None
        if c.adv_weight > 0 or c.fm_weight > 0:
            from .adversarial import Adversary

            adversary = Adversary(model.n_output, adv_weight=c.adv_weight, fm_weight=c.fm_weight, steps=c.steps,
                                  device=dev)
        model.train()
        ema: dict[str, float] = {}  # smoothed total loss and its parts
        for step in range(c.steps):
            idx = data.draw_index(c.batch, c.frames)  # (what data.batch does, with the indices kept)
            x, y = data.disguise(idx)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            pred, _ = model.forward_normalised(x, model.init_state(c.batch).to(dev))
            target = (y - model.out_mean) / model.out_std
            if c.lookahead:  # the output at frame t is the envelope of frame t - k
                pred, target = pred[:, c.lookahead:], target[:, :-c.lookahead]
            loss, parts = envelope_loss(pred, target, config=c)
            if extra_loss is not None:  # e.g. a teacher term on a content student (rtvc.train.content)
                extra = extra_loss(model, x, idx)
                loss = loss + extra
                parts["extra"] = extra.item()
            if adversary is not None:
                term, adv_parts = adversary.converter_terms(pred, target, step)
                loss = loss + term
                parts.update(adv_parts)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if adversary is not None:
                parts.update(adversary.critic_step(pred, target))
            for k, v in {"loss": loss.item(), **parts}.items():
                ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
            bar.update(**ema)
        model.cpu().eval()  # export and the parity checks run on the CPU
        return model, {"final_loss": ema.get("loss", 0.0), "train_s": time.perf_counter() - t0, "steps": c.steps,
                       "n_input": N_INPUT}
    finally:
        torch.set_num_threads(prev_threads)
