"""Training loop of the converter (CPU, seeded, deterministic) with a progress bar and ETA."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..features import FeatureConfig, N_INPUT
from .dataset import AugmentConfig, Augmenter, FrameSet
from .model import Converter

__all__ = ["TrainConfig", "Progress", "train_converter"]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch: int = 16
    frames: int = 160  # 0.8 s sequences
    hidden: int = 128
    layers: int = 2
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2


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


def train_converter(frames: FrameSet, *, config: TrainConfig | None = None, feature_config: FeatureConfig | None = None,
                    aug: AugmentConfig | None = None, progress: bool = True) -> tuple[Converter, dict[str, float]]:
    """Train a :class:`Converter` on one speaker's frames (any-to-one, augmented inputs).

    Returns
    -------
    model : Converter (eval mode, normalisation set)
    info : dict with ``final_loss``, ``train_s``, ``steps``
    """
    c = config or TrainConfig()
    fc = feature_config or FeatureConfig()
    torch.manual_seed(c.seed)
    np.random.seed(c.seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    try:
        data = Augmenter(frames, config=fc, aug=aug, seed=c.seed)
        # normalisation from a few augmented batches (inputs) and the clean targets
        xs, ys = zip(*(data.batch(c.batch, c.frames) for _ in range(8)))
        x_all = torch.cat(xs).reshape(-1, xs[0].shape[-1])
        y_all = torch.from_numpy(frames.cepstrum)
        model = Converter(x_all.shape[-1], y_all.shape[-1], hidden=c.hidden, layers=c.layers)
        model.set_normalisation(x_all.mean(0), x_all.std(0).clamp(min=1e-3), y_all.mean(0), y_all.std(0).clamp(min=1e-3))
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-5)
        warm = max(1, min(50, c.steps // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (0.55 + 0.45 * math.cos(math.pi * min(1.0, s / c.steps))))
        bar = Progress("train", c.steps, enabled=progress)
        t0 = time.perf_counter()
        model.train()
        ema = None
        for step in range(c.steps):
            x, y = data.batch(c.batch, c.frames)
            pred, _ = model.forward_normalised(x, model.init_state(c.batch))
            target = (y - model.out_mean) / model.out_std
            loss = torch.nn.functional.smooth_l1_loss(pred, target, beta=0.5)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(loss=ema)
        model.eval()
        return model, {"final_loss": float(ema or 0.0), "train_s": time.perf_counter() - t0, "steps": c.steps,
                       "n_input": N_INPUT}
    finally:
        torch.set_num_threads(prev_threads)
