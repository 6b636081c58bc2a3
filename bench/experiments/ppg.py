"""Experiment (session 10, not shipped): phonetic-posteriorgram (PPG) conversion.

The shipped converter maps the source's MFCC, log-F0, voicing and periodicity to the target's
envelope; MFCC carry the source speaker, and speakers the voice never heard convert at 0.59-0.70
resemblyzer similarity. This experiment puts a speaker-independent representation in front of the
converter: a small causal phone recogniser (``PhoneNet``: the same 23 input features, a 2 x 128
GRU, 40 phone classes) trained on phone-labelled speech of many synthetic speakers, whose
posteriors (or GRU outputs) feed the converter in place of, or beside, the MFCC. Both networks run
in one ONNX graph with their recurrent states stacked in the one state tensor, so the runtime,
the manifest checks and the latency are unchanged.

Labelled data (no MBROLA audio: a shipped recogniser must not be trained on it; none of the
quality benchmark's source speakers): ``espeak:en-us+VARIANT`` corpora (libespeak-ng phone
events) and Kokoro ``jf_alpha``, ``jf_gongitsune``, ``jf_tebukuro`` and blends of them (the
model's durations), through :class:`rtvc.train.dataset.Augmenter`'s disguise.

    python bench/experiments/ppg.py phones --out /tmp/ppg            # corpora + recogniser (~15 min)
    python bench/experiments/ppg.py voice --phones /tmp/ppg/phones.pt --corpus kokoro:jm_kumo \\
        --max-utterances 45 --name kumo-ppg --input posteriors         # a voice in the user folder
    python bench/quality.py --voices kumo,kumo-ppg --no-reference

Measured results are in bench/RESULTS.md (voice quality, what was tried).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rtvc.train.corpus import PAUSE, build_corpus  # noqa: E402
from rtvc.train.dataset import AugmentConfig, Augmenter, FrameSet, analyse_files  # noqa: E402
from rtvc.train.model import Converter  # noqa: E402
from rtvc.train.train import Progress, TrainConfig, train_converter  # noqa: E402

PHONES = ("-", "aɪ", "aʊ", "b", "d", "dʒ", "eɪ", "f", "h", "i", "j", "k", "l", "m", "n", "oʊ", "p", "s", "t",
          "tʃ", "u", "v", "w", "z", "æ", "ð", "ŋ", "ɑ", "ɔ", "ɔɪ", "ə", "ɛ", "ɡ", "ɪ", "ɹ", "ʃ", "ʊ", "ʌ", "ʒ", "θ")
"""The recogniser's classes: US English phones as espeak-ng writes them in IPA, ``-`` silence."""
_CANON = {"ɚ": "ə", "ɜ": "ə", "r": "ɹ", "ᵻ": "ɪ", "ɐ": "ə", "ɾ": "t", "ʔ": "t", "ɬ": "l", "e": "eɪ",
          "o": "oʊ", "a": "æ", "ɒ": "ɑ", "x": "k", "n̩": "n", "l̩": "l", "əl": "l", "iə": "i", "ɑɹ": "ɑ",
          "ɔɹ": "ɔ", "oɹ": "oʊ", "ɛɹ": "ɛ", "ɪɹ": "ɪ", "ʊɹ": "ʊ", "aɪɚ": "aɪ", "aɪə": "aɪ", "aʊɚ": "aʊ"}
ESPEAK_VARIANTS = ("m1", "m2", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f4", "f5", "klatt", "klatt2", "klatt3",
                   "klatt4", "adam", "Alex", "Andy", "anika", "antonio", "aunty", "belinda", "benjamin", "boris",
                   "caleb", "david", "edward", "grandma", "grandpa", "iven", "john", "linda", "max", "michel",
                   "norbert", "paul", "pedro", "quincy", "rob", "robert", "steph", "travis", "victor", "zac")
"""espeak-ng variants for the recogniser (f3 and m3 are benchmark sources or their kin: left out)."""
KOKORO_SPEAKERS = ("jf_alpha", "jf_gongitsune", "jf_tebukuro", "blend:jf_alpha+jf_gongitsune:0.5",
                   "blend:jf_gongitsune+jf_tebukuro:0.5", "blend:jf_alpha+jf_tebukuro:0.5")
"""Kokoro speakers for the recogniser (jf_nezumi and jm_kumo are benchmark sources: left out)."""
SILENCE_NEPERS = 4.5  # frames whose c0 is this far under the utterance's loudest are labelled silence


@contextlib.contextmanager
def _torch_threads(n: int):  # noqa: ANN202
    """torch's intra-op thread count set to ``n`` for the block, then put back."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def canon(p: str) -> str:
    p = p.replace("ː", "").replace("ˈ", "").replace("ˌ", "").replace("\u0329", "")
    return _CANON.get(p, p)


def frame_labels(n_frames: int, phones: list[tuple[str, float, float]], hop: int = 80, back: int = 160) -> list[str]:
    """One label per analysis frame: the phone at sample ``(t + 1) * hop - back`` (the frame's
    window centre, roughly); pauses are ``-``."""
    pos = ((np.arange(n_frames) + 1) * hop - back) / 16000.0
    starts = np.array([a for _, a, _ in phones])
    names = ["-" if p == PAUSE else canon(p) for p, _, _ in phones]
    k = np.searchsorted(starts, pos, side="right") - 1
    return ["-" if i < 0 else names[i] for i in k]


def labelled_frames(corpora: list[str], *, seed: int, per_corpus: int) -> tuple[FrameSet, torch.Tensor, list[str]]:
    """Frames of every corpus with a phone label each (-100 for phones outside :data:`PHONES`)."""
    sets, labels, speakers = [], [], []
    index = {p: i for i, p in enumerate(PHONES)}
    for name in corpora:
        utts = build_corpus(name, seed=seed, max_utterances=per_corpus, progress=False)
        fs = analyse_files([u.path for u in utts])
        off = 0
        for u in utts:
            n = int(round(u.duration_s * 16000)) // 80
            lab = np.array(frame_labels(n, u.phones))
            c0 = fs.cepstrum[off:off + n, 0]
            lab[c0 < c0.max() - SILENCE_NEPERS] = "-"
            labels += [index.get(p, -100) for p in lab]
            off += n
        assert off == len(fs), (name, off, len(fs))
        sets.append(fs)
        speakers += [name] * len(fs)
        print(f"  {name}: {len(utts)} utterances, {fs.minutes:.1f} min", file=sys.stderr)
    fs = FrameSet(*(np.concatenate([getattr(f, k) for f in sets]) for k in ("logmag", "cepstrum", "f0_hz", "periodicity")))
    return fs, torch.tensor(labels), speakers


class PhoneNet(nn.Module):
    """Causal phone recogniser: features (B, T, 23) -> phone logits (B, T, 40)."""

    def __init__(self, n_input: int = 23, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.n_input, self.n_class, self.hidden, self.layers = n_input, len(PHONES), hidden, layers
        self.register_buffer("in_mean", torch.zeros(n_input))
        self.register_buffer("in_std", torch.ones(n_input))
        self.proj = nn.Linear(n_input, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, self.n_class)

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def hidden_seq(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gru(torch.tanh(self.proj((x - self.in_mean) / self.in_std)), h)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.hidden_seq(x, h)
        return self.out(y), h


def train_phone_net(fs: FrameSet, labels: torch.Tensor, *, steps: int, seed: int = 0, threads: int = 2,
                    batch: int = 16, frames: int = 160, lr: float = 3e-3) -> PhoneNet:
    with _torch_threads(threads):
        return _train_phone_net(fs, labels, steps=steps, seed=seed, batch=batch, frames=frames, lr=lr)


def _train_phone_net(fs: FrameSet, labels: torch.Tensor, *, steps: int, seed: int, batch: int, frames: int,
                     lr: float) -> PhoneNet:
    torch.manual_seed(seed)
    aug = Augmenter(fs, aug=AugmentConfig(), seed=seed)
    xs = torch.cat([aug.batch(batch, frames)[0] for _ in range(8)]).reshape(-1, 23)
    net = PhoneNet()
    net.in_mean.copy_(xs.mean(0))
    net.in_std.copy_(xs.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.55 + 0.45 * math.cos(math.pi * min(1.0, s / steps))))
    bar, ema = Progress("phones", steps), {}
    for _ in range(steps):
        idx = aug.draw_index(batch, frames)
        x, _ = aug.disguise(idx)
        y = labels[idx]
        logits, _ = net(x, net.init_state(batch))
        loss = nn.functional.cross_entropy(logits.reshape(-1, net.n_class), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        acc = float(((logits.argmax(-1) == y) & (y >= 0)).sum() / (y >= 0).sum())
        for k, v in {"loss": loss.item(), "acc": acc}.items():
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        bar.update(**ema)
    return net.eval()


@torch.no_grad()
def frame_accuracy(net: PhoneNet, fs: FrameSet, labels: torch.Tensor) -> float:
    """Share of labelled frames whose most likely phone is the label (clean features, one pass)."""
    a = Augmenter(fs)
    x = a.features_from_logmag(torch.from_numpy(fs.logmag).float()[None], torch.from_numpy(fs.f0_hz)[None],
                               torch.from_numpy(fs.periodicity)[None])
    logits, _ = net(x, net.init_state(1))
    ok = (logits[0].argmax(-1) == labels) & (labels >= 0)
    return float(ok.sum() / (labels >= 0).sum())


INPUTS = {"posteriors": "phone posteriors + mfcc0, log-F0, voicing, periodicity",
          "hidden": "the recogniser's GRU output (128) + mfcc0, log-F0, voicing, periodicity",
          "posteriors+mfcc": "phone posteriors + all 23 input features"}


class PPGConverter(nn.Module):
    """Frozen :class:`PhoneNet` -> :class:`~rtvc.train.model.Converter`, one graph, one state tensor
    ``(recogniser layers + converter layers, B, 128)``; the interface of ``Converter`` (export,
    manifest and training loss work unchanged)."""

    def __init__(self, phone: PhoneNet, n_output: int, *, inputs: str, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        if hidden != phone.hidden:
            raise ValueError(f"hidden {hidden}; expected the recogniser's {phone.hidden} (one state tensor)")
        self.phone = phone
        for p in phone.parameters():
            p.requires_grad_(False)
        self.inputs = inputs
        self.extra = list(range(23)) if inputs == "posteriors+mfcc" else [0, 20, 21, 22]
        width = phone.hidden if inputs == "hidden" else phone.n_class
        self.conv = Converter(width + len(self.extra), n_output, hidden=hidden, layers=layers)
        self.n_input, self.n_output, self.hidden = phone.n_input, n_output, hidden
        self.layers = phone.layers + layers
        self.register_buffer("in_mean", phone.in_mean.clone())  # what the manifest records
        self.register_buffer("in_std", phone.in_std.clone())

    @property
    def out_mean(self) -> torch.Tensor:
        return self.conv.out_mean

    @property
    def out_std(self) -> torch.Tensor:
        return self.conv.out_std

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def train(self, mode: bool = True) -> "PPGConverter":
        super().train(mode)
        self.phone.eval()  # frozen
        return self

    def converter_input(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.inputs == "hidden":
            z, state = self.phone.hidden_seq(features, state)
        else:
            logits, state = self.phone(features, state)
            z = torch.softmax(logits, -1)
        return torch.cat([z, features[..., self.extra]], -1), state

    def forward_normalised(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.phone.layers
        x, s_phone = self.converter_input(features, state[:n])
        y, s_conv = self.conv.forward_normalised(x, state[n:])
        return y, torch.cat([s_phone, s_conv], 0)

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, s = self.forward_normalised(features, state)
        return y * self.out_std + self.out_mean, s


def train_ppg_converter(frames: FrameSet, phone: PhoneNet, *, inputs: str, config: TrainConfig,
                        **kw: Any) -> tuple[PPGConverter, dict[str, float]]:
    """The shipped trainer (:func:`rtvc.train.train.train_converter`: disguise, loss, schedule)
    around a :class:`PPGConverter`; ``kw`` goes to it (``aug``, ``parallel``, ``progress``...)."""

    def make(xs: list[torch.Tensor], y_all: torch.Tensor, c: TrainConfig) -> PPGConverter:
        model = PPGConverter(phone, y_all.shape[-1], inputs=inputs, hidden=c.hidden, layers=c.layers)
        with torch.no_grad():
            zs = [model.converter_input(x, phone.init_state(x.shape[0]))[0] for x in xs]
        z = torch.cat(zs).reshape(-1, zs[0].shape[-1])
        model.conv.set_normalisation(z.mean(0), z.std(0).clamp(min=1e-3), y_all.mean(0), y_all.std(0).clamp(min=1e-3))
        return model

    return train_converter(frames, config=config, model_factory=make, **kw)


def phones_command(a: argparse.Namespace) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpora = [f"espeak:en-us+{v}" for v in ESPEAK_VARIANTS] + [f"kokoro:{k}" for k in KOKORO_SPEAKERS]
    fs, labels, _ = labelled_frames(corpora, seed=a.seed, per_corpus=a.per_corpus)
    print(f"labelled: {fs.minutes:.1f} min in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    net = train_phone_net(fs, labels, steps=a.steps, threads=a.threads)
    torch.save(net.state_dict(), out / "phones.pt")
    # frame accuracy on speakers the recogniser never heard (clean) and on its own (first 30000 frames)
    report = {"own speakers": frame_accuracy(net, FrameSet(fs.logmag[:30000], fs.cepstrum[:30000], fs.f0_hz[:30000],
                                                           fs.periodicity[:30000]), labels[:30000])}
    for name in ("espeak:en-us+f3", "espeak:en-us+m3", "kokoro:jf_nezumi", "kokoro:jm_kumo"):
        f, lab, _ = labelled_frames([name], seed=a.seed + 1000, per_corpus=10)
        report[name] = frame_accuracy(net, f, lab)
    for k, v in report.items():
        print(f"frame accuracy {k:20s} {v:.3f}")
    print(f"phones.pt written to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


def voice_command(a: argparse.Namespace) -> int:
    import rtvc.train.build as build
    from rtvc.paths import user_voices_dir
    from rtvc.train.__main__ import main as train_main

    phone = PhoneNet()
    phone.load_state_dict(torch.load(a.phones))
    phone.eval()

    def trainer(frames, *, config=None, **kw):  # noqa: ANN001, ANN202
        return train_ppg_converter(frames, phone, inputs=a.input, config=config or TrainConfig(), **kw)

    build.train_converter = trainer  # the rest of `python -m rtvc.train voice` as it is
    return train_main(["voice", "--corpus", a.corpus, "--max-utterances", str(a.max_utterances), "--name", a.name,
                       "--gender", a.gender, "--holdout", "0.1", "--steps", str(a.steps), "--n-cep", "64",
                       "--threads", str(a.threads), "--description", f"PPG experiment: {INPUTS[a.input]}",
                       "--out", str(a.out or user_voices_dir())])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/experiments/ppg.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("phones", help="build the labelled corpora and train the phone recogniser")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--per-corpus", type=int, default=15)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    v = sub.add_parser("voice", help="train a voice whose converter reads the recogniser's output")
    v.add_argument("--phones", required=True)
    v.add_argument("--corpus", required=True)
    v.add_argument("--max-utterances", type=int, default=45)
    v.add_argument("--name", required=True)
    v.add_argument("--gender", default="male")
    v.add_argument("--input", choices=tuple(INPUTS), default="posteriors")
    v.add_argument("--steps", type=int, default=1000)
    v.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    v.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    return phones_command(a) if a.command == "phones" else voice_command(a)


if __name__ == "__main__":
    sys.exit(main())
