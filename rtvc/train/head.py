"""A neural waveform head for a neural voice: the third resynthesis option.

The pulse+noise synthesiser renders the converted envelope; the head is a small causal network
on that waveform (gated dilated convolutions, a residual path from input to output that starts
as the identity) trained to make the voice's output sound like the real target: its input is
the voice's own output for the target's training utterances, its target those utterances, its
loss a multi-resolution log-mel distance plus spectral convergence (phase-blind: the pulse
train's phase is not the speaker's). It keeps the streaming contract of every stage: a hop in,
a hop out, the convolutions' past inputs an explicit ONNX state, no lookahead (no latency
added).

``python -m rtvc.train train-head --voice models/joe.onnx --corpus piper-joe --name joe-head`` writes
a new voice (the converter, preview and manifest of ``--voice``, plus ``NAME.head.onnx`` and a
``head`` section in the manifest); the original voice is not touched.
"""

from __future__ import annotations

import io
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..manifest import read_manifest, sha256_file, write_manifest
from .train import Progress

__all__ = ["WaveHead", "HEAD_TENSORS", "voice_output", "mel_loss", "train_head", "export_head", "write_head_voice"]

HEAD_TENSORS = {"audio_in": "audio_in", "state_in": "head_state_in", "audio_out": "audio_out",
                "state_out": "head_state_out"}
OPSET = 17
KERNEL = 3
_LOSS_RESOLUTIONS = ((512, 128, 80), (1024, 256, 80), (256, 64, 40))  # n_fft, hop, mel bands


class WaveHead(nn.Module):
    """``y, state_out = head(x, state_in)``: ``x (B, T)`` float32 audio, ``state_in (B, C, S)``.

    1x1 conv to ``channels``, one gated dilated causal conv (kernel 3) with a 1x1 residual per
    dilation, 1x1 conv back to one channel, added to ``x`` (zero-initialised: the untrained head
    is the identity). ``S = sum(2 * d)`` past samples of each layer's input are the state.
    """

    def __init__(self, *, channels: int = 16, dilations: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> None:
        super().__init__()
        self.channels, self.dilations = int(channels), tuple(int(d) for d in dilations)
        self.inp = nn.Conv1d(1, channels, 1)
        self.convs = nn.ModuleList([nn.Conv1d(channels, 2 * channels, KERNEL, dilation=d) for d in self.dilations])
        self.res = nn.ModuleList([nn.Conv1d(channels, channels, 1) for _ in self.dilations])
        self.out = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def state_len(self) -> int:
        return sum((KERNEL - 1) * d for d in self.dilations)

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.channels, self.state_len)

    def forward(self, x: torch.Tensor, state_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.inp(x[:, None])
        kept, off = [], 0
        for conv, res, d in zip(self.convs, self.res, self.dilations):
            n = (KERNEL - 1) * d
            hx = torch.cat([state_in[:, :, off:off + n], h], dim=2)
            off += n
            kept.append(hx[:, :, -n:])
            g = conv(hx)  # static halves (not ``chunk``): no shape arithmetic in the exported graph
            h = h + res(torch.tanh(g[:, :self.channels]) * torch.sigmoid(g[:, self.channels:]))
        return x + self.out(h)[:, 0], torch.cat(kept, dim=2)


def voice_output(voice: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voice stage's output for ``x`` (16 kHz), time-aligned with it: ``(y, x)`` cut to whole hops."""
    hop, lat = voice.config.hop, int(voice.latency)
    n = x.size // hop * hop
    xp = np.concatenate([np.asarray(x[:n], np.float32), np.zeros(lat + hop, np.float32)])
    st = voice.init_state()
    y = np.concatenate([voice.step(xp[i:i + hop], st)[0].copy() for i in range(0, xp.size - hop + 1, hop)])
    return y[lat:lat + n], np.asarray(x[:n], np.float32)


_MEL_CACHE: dict[int, torch.Tensor] = {}


def mel_loss(y: torch.Tensor, t: torch.Tensor, *, sample_rate: int = 16_000) -> torch.Tensor:
    """Mean over three resolutions of spectral convergence + L1 of log-mel magnitudes."""
    import librosa

    loss = y.new_zeros(())
    for n_fft, hop, n_mels in _LOSS_RESOLUTIONS:
        if n_fft not in _MEL_CACHE:
            fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
            _MEL_CACHE[n_fft] = torch.from_numpy(fb).float()
        w = torch.hann_window(n_fft)
        ys = torch.stft(y, n_fft, hop, window=w, return_complex=True).abs()
        ts = torch.stft(t, n_fft, hop, window=w, return_complex=True).abs()
        mel = _MEL_CACHE[n_fft]
        loss = loss + torch.linalg.norm(ts - ys) / torch.linalg.norm(ts).clamp_min(1e-8)
        loss = loss + ((mel @ ys).clamp_min(1e-5).log() - (mel @ ts).clamp_min(1e-5).log()).abs().mean()
    return loss / len(_LOSS_RESOLUTIONS)


def train_head(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], *, steps: int = 1500,
               channels: int = 16, batch: int = 8, segment: int = 8000, lr: float = 1e-3, seed: int = 0,
               threads: int = 2, progress: bool = True) -> tuple[WaveHead, dict[str, Any]]:
    """Train a :class:`WaveHead` mapping ``inputs[i]`` (the voice's output) to ``targets[i]``.

    Returns the model and ``{"steps", "final_loss", "identity_loss", "train_s"}`` (the losses are
    the mean of the last 100 steps, the head's and the untrained identity's on the same batches).
    """
    if len(inputs) != len(targets) or not inputs:
        raise ConfigError(f"{len(inputs)} inputs and {len(targets)} targets; expected as many, at least one")
    x = np.concatenate([np.asarray(a, np.float32) for a in inputs])
    t = np.concatenate([np.asarray(a, np.float32) for a in targets])
    if x.shape != t.shape or x.size < 2 * segment:
        raise ConfigError(f"head training audio of {x.size} samples (targets {t.size}); expected as many, "
                          f"at least {2 * segment}")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(x, t, steps=steps, channels=channels, batch=batch, segment=segment, lr=lr, seed=seed,
                      progress=progress)
    finally:
        torch.set_num_threads(prev_threads)


def _train(x: np.ndarray, t: np.ndarray, *, steps: int, channels: int, batch: int, segment: int, lr: float,
           seed: int, progress: bool) -> tuple[WaveHead, dict[str, Any]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = WaveHead(channels=channels)
    opt = torch.optim.Adam(model.parameters(), lr)
    warm = min(512, segment // 4)  # the first samples of a segment start from a zero state: not scored
    last: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    bar = Progress("head", steps, enabled=progress)
    for step in range(steps):
        idx = rng.integers(0, x.size - segment, batch)
        xb = torch.from_numpy(np.stack([x[i:i + segment] for i in idx]))
        tb = torch.from_numpy(np.stack([t[i:i + segment] for i in idx]))
        y, _ = model(xb, model.init_state(batch))
        loss = mel_loss(y[:, warm:], tb[:, warm:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - 100:
            with torch.no_grad():
                last.append((loss.item(), mel_loss(xb[:, warm:], tb[:, warm:]).item()))
        bar.update(loss=loss.item())
    model.eval()
    return model, {"steps": steps, "channels": channels, "batch": batch, "segment": segment,
                   "final_loss": round(float(np.mean([a for a, _ in last])), 4),
                   "identity_loss": round(float(np.mean([b for _, b in last])), 4),
                   "train_s": round(time.perf_counter() - t0, 1)}


def export_head(model: WaveHead, path: str | Path) -> Path:
    """Export to ONNX: ``audio_in [1, T]`` (T dynamic), ``head_state_in [1, C, S]`` ->
    ``audio_out [1, T]``, ``head_state_out [1, C, S]``."""
    path = Path(path)
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 80), model.init_state(1)), buf,
                          input_names=[HEAD_TENSORS["audio_in"], HEAD_TENSORS["state_in"]],
                          output_names=[HEAD_TENSORS["audio_out"], HEAD_TENSORS["state_out"]], opset_version=OPSET,
                          dynamic_axes={HEAD_TENSORS["audio_in"]: {1: "T"}, HEAD_TENSORS["audio_out"]: {1: "T"}},
                          dynamo=False)
    path.write_bytes(buf.getvalue())
    return path


def write_head_voice(voice_onnx: str | Path, model: WaveHead, out_dir: str | Path, name: str, *,
                     training: dict[str, Any]) -> Path:
    """A new voice ``name`` in ``out_dir``: the converter, preview and manifest of ``voice_onnx``
    with the head added (``NAME.head.onnx``, manifest key ``head``). Returns the .onnx path."""
    src = Path(voice_onnx).with_suffix(".onnx")
    m = read_manifest(src.with_suffix(".json"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    preview = src.with_name(src.stem + ".preview.wav")
    if onnx_path.resolve() != src.resolve():  # else: the head of the voice itself is (re)placed
        shutil.copyfile(src, onnx_path)
        if preview.is_file():
            shutil.copyfile(preview, out_dir / f"{name}.preview.wav")
    head_path = export_head(model, out_dir / f"{name}.head.onnx")
    suffix = "" if "head" in m else "; with a neural waveform head"  # a head replaced, not stacked
    m = dict(m, name=name, description=m["description"] + suffix)
    m["head"] = {"onnx": head_path.name, "sha256": sha256_file(head_path),
                 "tensors": {**HEAD_TENSORS, "state_shape": [1, model.channels, model.state_len]},
                 "training": training}
    write_manifest(out_dir / f"{name}.json", m)
    return onnx_path
