"""One call from audio to a finished voice: analyse, train, export, manifest, preview."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..features import FeatureConfig
from ..manifest import sha256_file
from .dataset import AugmentConfig, analyse_files, load_audio_16k, log_f0_stats
from .export import write_voice
from .options import SYNTHESIS_OPTIONS
from .parallel import parallel_frames
from .train import TrainConfig, converter_factory, train_converter

__all__ = ["build_voice", "pick_preview", "SYNTHESIS_OPTIONS"]

def pick_preview(audio: Sequence[np.ndarray], *, min_s: float = 3.0, max_s: float = 8.0) -> np.ndarray:
    """3-8 s of the target's own (unconverted) speech: whole utterances joined by 0.2 s pauses."""
    out: list[np.ndarray] = []
    total = 0
    gap = np.zeros(3200, np.float32)
    for x in audio:
        if total + len(x) > max_s * 16000:
            if total >= min_s * 16000:
                break
            x = x[: int(max_s * 16000) - total]
        out += [x, gap]
        total += len(x) + len(gap)
        if total >= min_s * 16000:
            break
    y = np.concatenate(out)[: int(max_s * 16000)] if out else np.zeros(int(min_s * 16000), np.float32)
    peak = float(np.max(np.abs(y))) or 1.0
    return (y * min(1.0, 0.9 / peak)).astype(np.float32)


def _converter_fn(model, lookahead: int = 0):  # noqa: ANN001, ANN202
    """Input features ``(n, F)`` -> envelope cepstra ``(n, E)`` with a trained converter, on the
    input's timeline (a converter with ``lookahead`` k gives frame t's envelope at output t + k;
    the last k frames repeat the last envelope)."""
    import torch

    def convert(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y, _ = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None], model.init_state(1))
        y = y[0].numpy()
        if lookahead:
            y = np.concatenate([y[lookahead:], np.repeat(y[-1:], lookahead, axis=0)])
        return y

    return convert


def build_voice(sources: Sequence[Path] | Sequence[np.ndarray], out_dir: str | Path, name: str, *,
                description: str, gender: str, data: str, licence: str, command: str = "",
                synthesis: str = "pulse-noise", synthesis_options: dict[str, Any] | None = None,
                train: TrainConfig | None = None, aug: AugmentConfig | None = None,
                progress: bool = True, extra: dict[str, Any] | None = None,
                feature_config: FeatureConfig | None = None, cache_dir: str | Path | None = None,
                parallel: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, realign: bool = False,
                content: str | Path | None = None) -> Path:
    """Train a voice on ``sources`` (the target's speech) and write it into ``out_dir``.

    Returns the path of the ``.onnx`` file. ``synthesis_options`` default to
    :data:`SYNTHESIS_OPTIONS` (pass ``{}`` for the original synthesis). ``feature_config``
    (default :class:`~rtvc.features.FeatureConfig`) fixes the analysis, e.g. the cepstral order
    ``n_cep`` of the envelope the model predicts; it goes into the manifest. With ``cache_dir``
    the analysed frames are cached there (see :func:`~rtvc.train.dataset.analyse_files`).
    ``parallel``: ``(source, target)`` pairs of 16 kHz utterances, other speakers saying what the
    target says (see :mod:`rtvc.train.parallel`), trained on beside the disguised target;
    with ``realign`` they are aligned again with the converter trained on the first alignment
    (converted source against target envelope) and the voice is trained again on that (twice
    the training time).
    ``content``: a content student (``.npz``, :func:`~rtvc.train.content.save_student`); the
    converter then reads the frozen student's output instead of the MFCC, and the voice exports
    both as one graph (:class:`~rtvc.train.content.ContentVoice`).
    """
    t0 = time.perf_counter()
    audio = [s if isinstance(s, np.ndarray) else load_audio_16k(s) for s in sources]
    fc = feature_config or FeatureConfig()
    frames = analyse_files(audio, config=fc, cache_dir=cache_dir)
    par = parallel_frames(parallel, config=fc, cache_dir=cache_dir) if parallel else None
    t_an = time.perf_counter() - t0
    mean, std = log_f0_stats(frames.f0_hz)
    factory, content_info = converter_factory, None
    if content is not None:
        from .content import content_voice_factory, load_student  # torch-heavy; only when asked

        student, content_info = load_student(content)
        factory = content_voice_factory(student)
        content_info = {"student": Path(content).name, "sha256": sha256_file(Path(content)), **content_info}
    model, info = train_converter(frames, config=train, feature_config=fc, aug=aug, progress=progress, parallel=par,
                                  model_factory=factory)
    first_train_s = 0.0
    if par is not None and realign:
        first_train_s = info["train_s"]
        par = parallel_frames(parallel, config=fc, convert=_converter_fn(model, (train or TrainConfig()).lookahead))
        model, info = train_converter(frames, config=train, feature_config=fc, aug=aug, progress=progress, parallel=par,
                                      model_factory=factory)
    tc = train or TrainConfig()
    training = {"data": data, "licence": licence, "minutes": round(frames.minutes, 2), "command": command,
                "steps": tc.steps, "batch": tc.batch, "frames": tc.frames, "hidden": tc.hidden, "layers": tc.layers,
                "seed": tc.seed, "lookahead": tc.lookahead, "device": tc.device, "loss": tc.loss_options(),
                "augment": (aug or AugmentConfig()).options(),
                "final_loss": round(info["final_loss"], 5), "analysis_s": round(t_an, 1),
                "train_s": round(info["train_s"], 1), "n_cep": fc.n_cep, **(extra or {})}
    if content_info is not None:
        training["content"] = content_info
    if par is not None:
        training["parallel_frames"] = {"pairs": len(parallel), "minutes": round(par.minutes, 2),
                                       "share": (aug or AugmentConfig()).parallel_share, "realigned": realign,
                                       **({"first_train_s": round(first_train_s, 1)} if realign else {})}
    return write_voice(model, out_dir, name, description=description, gender=gender, f0_log2_mean=mean,
                       f0_log2_std=std, synthesis=synthesis, training=training, preview=pick_preview(audio),
                       feature_config=fc, lookahead_frames=tc.lookahead,
                       synthesis_options=SYNTHESIS_OPTIONS if synthesis_options is None else synthesis_options)
