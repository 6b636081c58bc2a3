"""A causal content encoder distilled from Whisper, and a voice built on it.

The converter's old input, the MFCC, carries the speaker: a converter trained on it either
keeps the source's timbre or, pushed harder, loses words. Whisper tiny.en's encoder states keep
the words and carry far less speaker, and a converter fed them reaches the synthesiser's ceiling
(``bench/RESULTS.md``, "Teacher ceiling"), but Whisper is neither causal nor cheap. So:

- :class:`ContentStudent`, a small causal GRU over the engine's own input features (MFCC + F0,
  voicing, periodicity; no lookahead), learns to predict the teacher's states
  (:mod:`rtvc.train.teacher`) of the *clean* utterance from *disguised* features of it (pitch,
  vocal-tract, EQ, tilt, level and noise disguises of :class:`~rtvc.train.dataset.Augmenter`),
  over many speakers: what it keeps is what stays when the speaker changes.
- :class:`ContentVoice` puts the frozen student in front of a :class:`~rtvc.train.model.Converter`
  that reads the student's output plus level and prosody and predicts the target's envelope. It
  exports as one ONNX graph with the shipped converter's interface (features in, envelope out, one
  stacked recurrent state), so the run time needs nothing new.
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..features import N_MFCC, FeatureConfig
from .dataset import Augmenter, FrameSet
from .model import Converter, RecurrentNet
from .options import AugmentConfig, TrainConfig
from .train import Progress

__all__ = ["PROSODY_INDEX", "STUDENT_AUGMENT", "StudentConfig", "ContentStudent", "ContentVoice", "train_student",
           "student_agreement", "content_voice_factory", "save_student", "load_student",
           "teacher_term"]

PROSODY_INDEX = (0, N_MFCC, N_MFCC + 1, N_MFCC + 2)
"""Input features the converter reads beside the content: level (MFCC c0), log F0, voicing, periodicity."""

STUDENT_AUGMENT = AugmentConfig(alpha_range=(0.75, 1.3), pitch_octaves=1.0, tilt_nepers=1.5, noise_prob=0.5,
                                snr_db=(5.0, 40.0), clean_prob=0.1, warp_spread=0.3, eq_nepers=1.0, room_prob=0.3)
"""Disguises of the student's input: wider than a voice's own training (every speaker is a source),
with rooms and band limits (real microphones), which the voices' own training leaves out."""


@dataclass(frozen=True)
class StudentConfig:
    hidden: int = 256
    layers: int = 2
    steps: int = 2500
    batch: int = 16
    frames: int = 200
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1


class ContentStudent(RecurrentNet):
    """Linear -> GRU (``layers`` x ``hidden``) -> Linear: input features to *standardised* teacher states.

    ``features (B, T, F)``, ``state (L, B, H)`` -> ``content (B, T, D)``, state. The teacher's
    per-dimension mean and std (``out_mean``, ``out_std``) define that space (:meth:`standardise`)."""

    def __init__(self, n_input: int, n_output: int, *, hidden: int = 256, layers: int = 2) -> None:
        super().__init__(n_input, n_output, hidden=hidden, layers=layers)
        self.head = nn.Linear(2 * hidden, n_output)

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, h, state = self.recur(features, state)
        return self.head(torch.cat([h, z], dim=-1)), state

    def standardise(self, states: torch.Tensor) -> torch.Tensor:
        """Teacher states in the space the student predicts them in."""
        return (states - self.out_mean) / self.out_std

    def distil_error(self, features: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the student on ``features (B, T, F)`` against the teacher's
        ``states (B, T, D)``, in the standardised space (from a zero state)."""
        pred, _ = self(features, self.init_state(features.shape[0]))
        return torch.mean((pred - self.standardise(states)) ** 2)


class ContentVoice(nn.Module):
    """A frozen :class:`ContentStudent` in front of a :class:`Converter`, as one model with the
    converter's interface: ``features (B, T, F)``, ``state (Ls + Lc, B, Hs)`` -> envelope, state.

    ``tune_student``: the student trains on with the converter (on the target's envelope) instead
    of staying frozen. ``passthrough``: the input features the converter reads beside the content (default
    :data:`PROSODY_INDEX`; all of them gives it the MFCC too). The state's rows are ``H = max(Hs, Hc)`` wide; each network uses the first entries of its own
    rows, the rest stays zero. ``in_mean``/``in_std`` are the student's (the raw features'),
    ``out_mean``/``out_std`` the converter's (the envelope's)."""

    def __init__(self, student: ContentStudent, converter: Converter,
                 passthrough: Sequence[int] = PROSODY_INDEX, *, tune_student: bool = False) -> None:
        super().__init__()
        self.student, self.converter = student, converter
        for p in self.student.parameters():
            p.requires_grad_(tune_student)
        self.n_input, self.n_output = student.n_input, converter.n_output
        self.layers, self.hidden = student.layers + converter.layers, max(student.hidden, converter.hidden)
        self.passthrough = tuple(int(i) for i in passthrough)
        self.register_buffer("prosody_index", torch.tensor(self.passthrough, dtype=torch.long), persistent=False)

    @property
    def in_mean(self) -> torch.Tensor:
        return self.student.in_mean

    @property
    def in_std(self) -> torch.Tensor:
        return self.student.in_std

    @property
    def out_mean(self) -> torch.Tensor:
        return self.converter.out_mean

    @property
    def out_std(self) -> torch.Tensor:
        return self.converter.out_std

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def converter_input(self, features: torch.Tensor, student_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return converter_input(self.student, self.prosody_index, features, student_state)

    def forward_normalised(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ls, hs, hc = self.student.layers, self.student.hidden, self.converter.hidden
        x, s_out = self.converter_input(features, state[:ls, :, :hs].contiguous())
        y, c_out = self.converter.forward_normalised(x, state[ls:, :, :hc].contiguous())
        return y, torch.cat([self._widen(s_out), self._widen(c_out)], dim=0)

    def _widen(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] == self.hidden:
            return h
        return torch.cat([h, torch.zeros(h.shape[0], h.shape[1], self.hidden - h.shape[-1], dtype=h.dtype)], dim=-1)

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.forward_normalised(features, state)
        return y * self.out_std + self.out_mean, state


def save_student(student: ContentStudent, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``student`` as an ``.npz`` of its float32 tensors plus its shape and ``info`` (JSON)."""
    path = Path(path)
    meta = {"n_input": student.n_input, "n_output": student.n_output, "hidden": student.hidden,
            "layers": student.layers, "info": info or {}}
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in student.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    os.replace(tmp, path)
    return path


def load_student(path: str | Path) -> tuple[ContentStudent, dict[str, Any]]:
    """The student written by :func:`save_student` (eval mode) and its ``info``.

    Raises
    ------
    ModelError
        A missing, damaged or mismatched file, named."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: torch.from_numpy(z[k]) for k in z.files if k != "__meta__"}
        student = ContentStudent(int(meta["n_input"]), int(meta["n_output"]), hidden=int(meta["hidden"]),
                                 layers=int(meta["layers"]))
        student.load_state_dict(arrays)
    except FileNotFoundError as e:
        raise ModelError(f"content student {path} is missing; expected the .npz written by save_student") from e
    except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as e:
        raise ModelError(f"content student {path} cannot be read ({e}); expected the .npz written by "
                         f"save_student") from e
    return student.eval(), dict(meta.get("info", {}))


def converter_input(student: ContentStudent, passthrough: torch.Tensor, features: torch.Tensor,
                    student_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the converter reads: the student's content beside the ``passthrough`` input features
    (a long tensor of column indices), and the student's new state."""
    content, s_out = student(features, student_state)
    return torch.cat([content, features.index_select(-1, passthrough)], dim=-1), s_out


# --------------------------------------------------------------------------- the student
def _cosine_lr(opt: torch.optim.Optimizer, steps: int) -> Any:
    warm = max(1, min(100, steps // 10))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))


def train_student(frames: FrameSet, teacher: np.ndarray, *, config: StudentConfig | None = None,
                  feature_config: FeatureConfig | None = None, aug: AugmentConfig = STUDENT_AUGMENT,
                  progress: bool = True, init: ContentStudent | None = None) -> tuple[ContentStudent, dict[str, Any]]:
    """Distil ``teacher`` (``(len(frames), D)``: the teacher's states aligned to every frame) into
    a :class:`ContentStudent` over disguised input features of ``frames`` (or train ``init``
    further: its weights and normalisation are the start, a fresh learning-rate schedule runs).

    Returns the student (eval mode) and ``info`` (``final_loss``: the mean squared error in the
    teacher's standardised space, smoothed; ``train_s``; ``steps``)."""
    c = config or StudentConfig()
    fc = feature_config or FeatureConfig()
    if teacher.shape[0] != len(frames):
        raise ValueError(f"teacher has {teacher.shape[0]} frames; expected {len(frames)} (one per analysed frame)")
    torch.manual_seed(c.seed)
    prev = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    try:
        data = Augmenter(frames, config=fc, aug=aug, seed=c.seed)
        tgt = torch.from_numpy(np.ascontiguousarray(teacher, np.float16))
        sample = tgt[torch.linspace(0, len(frames) - 1, min(len(frames), 50000)).long()].float()
        xs = torch.cat([data.batch(c.batch, c.frames)[0] for _ in range(8)])
        xs = xs.reshape(-1, xs.shape[-1])
        model = ContentStudent(xs.shape[-1], tgt.shape[1], hidden=c.hidden, layers=c.layers)
        if init is not None:
            model.load_state_dict(init.state_dict())
        else:
            with torch.no_grad():
                model.in_mean.copy_(xs.mean(0))
                model.in_std.copy_(xs.std(0).clamp(min=1e-3))
                model.out_mean.copy_(sample.mean(0))
                model.out_std.copy_(sample.std(0).clamp(min=1e-3))
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-5)
        sched = _cosine_lr(opt, c.steps)
        bar = Progress("student", c.steps, enabled=progress)
        t0 = time.perf_counter()
        ema = None
        model.train()
        for _ in range(c.steps):
            idx = data.draw_index(c.batch, c.frames)
            x, _ = data.disguise(idx)
            loss = model.distil_error(x, tgt[idx].float())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.update(loss=ema)
        model.eval()
        return model, {"final_loss": float(ema or 0.0), "train_s": time.perf_counter() - t0, "steps": c.steps}
    finally:
        torch.set_num_threads(prev)


@torch.no_grad()
def student_agreement(student: ContentStudent, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """How well ``student`` predicts the teacher on ``pairs`` of (input features ``(T, F)``,
    teacher states ``(T, D)`` aligned to them), pooled over frames: ``r2`` (1 - error variance /
    teacher variance, in the student's standardised space) and ``cosine`` (mean per-frame cosine
    between predicted and true states, each with the teacher's mean removed)."""
    err = var = 0.0
    cos: list[np.ndarray] = []
    for x, t in pairs:
        pred, _ = student(torch.from_numpy(np.asarray(x, np.float32))[None], student.init_state(1))
        p = pred[0].numpy()
        z = student.standardise(torch.from_numpy(np.asarray(t, np.float32))).numpy()
        err += float(((p - z) ** 2).sum())
        var += float((z ** 2).sum())
        num = (p * z).sum(1)
        cos.append(num / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1), 1e-9))
    return {"r2": 1.0 - err / max(var, 1e-9), "cosine": float(np.concatenate(cos).mean()) if cos else float("nan")}


# --------------------------------------------------------------------------- the voice
def teacher_term(teacher: np.ndarray, weight: float):  # noqa: ANN201
    """An ``extra_loss`` for :func:`rtvc.train.train.train_converter` on a :class:`ContentVoice`
    whose student trains on (``tune_student``): ``weight`` x the student's squared error against
    ``teacher`` (``(len(frames), D)``, the teacher's states aligned to the target's frames) in the
    teacher's standardised space, so the student keeps predicting the teacher while it learns the
    target's envelope."""
    tgt = torch.from_numpy(np.ascontiguousarray(teacher, np.float16))

    def term(model: ContentVoice, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return weight * model.student.distil_error(x, tgt[idx].float())

    return term


def content_voice_factory(student: ContentStudent, passthrough: Sequence[int] = PROSODY_INDEX, *,  # noqa: ANN201
                          tune_student: bool = False):
    """A ``model_factory`` for :func:`rtvc.train.train.train_converter`: the converter behind the
    frozen ``student``, its input normalisation measured on the student's outputs."""

    def factory(xs: list[torch.Tensor], y_all: torch.Tensor, c: TrainConfig) -> ContentVoice:
        x = torch.cat(xs)
        with torch.no_grad():
            z, _ = converter_input(student, torch.tensor(passthrough, dtype=torch.long), x,
                                   student.init_state(x.shape[0]))
        z = z.reshape(-1, z.shape[-1])
        conv = Converter(z.shape[-1], y_all.shape[-1], hidden=c.hidden, layers=c.layers)
        conv.set_normalisation(z.mean(0), z.std(0).clamp(min=1e-3), y_all.mean(0), y_all.std(0).clamp(min=1e-3))
        return ContentVoice(student, conv, passthrough, tune_student=tune_student)

    return factory
