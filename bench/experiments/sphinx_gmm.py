"""Experiment (session 20, not shipped): pocketsphinx's acoustic model as a phonetic front end.

Session 10's phone recogniser (``ppg.py``) was trained on synthetic speakers only and recognised
52-56 % of kumo's frames; its conclusion was that a phonetic front end needs a recogniser trained
on many real speakers. One installs offline: pocketsphinx's ``en-us`` acoustic model (the one the
quality benchmark's WER uses), a phonetically-tied-mixture GMM (42 codebooks of 128 diagonal
Gaussians over 13 MFCC + deltas + double deltas, one codebook per context-independent phone)
trained by CMU Sphinx on many real American speakers. This script measures whether its
frame-level phone scores recognise voices that none of our networks heard better than session
10's recogniser did, with the same phone labels (espeak-ng phone events, Kokoro durations):

- *direct*: the CI phone whose best CI senone (the model's own mixture weights from ``sendump``)
  scores highest, raw and averaged over +-2 frames;
- *readout*: a logistic regression over +-2 frames of the 42 phone scores, trained on a few
  other synthetic speakers (the same footing as session 10's recogniser, which was trained too).

The front end follows ``feat.params``: 16 kHz, 10 ms frames of 410 samples, pre-emphasis 0.97,
Hamming, 512-point FFT, 25 unit-area mel filters over 130-6800 Hz, natural log, orthonormal
DCT-II, lifter 22, utterance-mean CMN, deltas over +-2 frames and double deltas over +-3 (its
noise removal is left out: the sources are clean).

    python bench/experiments/sphinx_gmm.py                 # ~2 min with cached corpora

Measured results are in bench/RESULTS.md (voice quality, what was tried).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rtvc.train.corpus import build_corpus  # noqa: E402

# session 10's phone classes, labelling rule and silence level, so the figures compare (ppg.py needs torch)
from bench.experiments.ppg import PHONES, SILENCE_NEPERS, frame_labels  # noqa: E402

CIPHONES = ("+NSN+ +SPN+ AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH SIL T TH "
            "UH UW V W Y Z ZH").split()
"""The model's CI phones in ``mdef`` order; codebook ``i`` and CI senones ``3i..3i+2`` belong to phone ``i``."""
ARPABET_TO_IPA = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "tʃ", "D": "d", "DH": "ð",
    "EH": "ɛ", "ER": "ə", "EY": "eɪ", "F": "f", "G": "ɡ", "HH": "h", "IH": "ɪ", "IY": "i", "JH": "dʒ", "K": "k",
    "L": "l", "M": "m", "N": "n", "NG": "ŋ", "OW": "oʊ", "OY": "ɔɪ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ",
    "SIL": "-", "+NSN+": "-", "+SPN+": "-", "T": "t", "TH": "θ", "UH": "ʊ", "UW": "u", "V": "v", "W": "w",
    "Y": "j", "Z": "z", "ZH": "ʒ"}
"""CMU phones onto :data:`PHONES` (ER -> ə as ``canon`` maps ɚ; the noise phones are silence)."""
SENDUMP_NEPERS = 1024 * np.log(1.0001)
"""One step of a quantised ``sendump`` weight: -log weight in units of log base 1.0001, shifted by 10
bits (the weights of a senone then sum to 0.95; 0.1 or 0.2 per step would give 1.05 or 0.02)."""
FRAME, HOP, NFFT, NFILT = 410, 160, 512, 25
LABEL_BACK = HOP - FRAME // 2
"""``ppg.frame_labels``'s offset for 10 ms frames: frame ``t`` reads the phone at its window centre,
sample ``t * HOP + FRAME / 2``."""


def model_dir() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"


def read_gaussians(path: Path) -> list[np.ndarray]:
    """A Sphinx-3 ``means`` or ``variances`` file: one array ``(codebooks, densities, veclen)`` per stream."""
    b = path.read_bytes()
    i = b.index(b"endhdr\n") + len(b"endhdr\n")
    if struct.unpack_from("<I", b, i)[0] != 0x11223344:
        raise ValueError(f"{path}: byte-order mark {b[i:i + 4]!r} is not little-endian 0x11223344")
    n_cb, n_feat, n_dens = struct.unpack_from("<3i", b, i + 4)
    veclen = struct.unpack_from(f"<{n_feat}i", b, i + 16)
    i += 16 + 4 * n_feat
    (n,) = struct.unpack_from("<i", b, i)
    flat = np.frombuffer(b, "<f4", n, i + 4).reshape(n_cb, -1)
    out, off = [], 0
    for d in veclen:
        out.append(flat[:, off:off + n_dens * d].reshape(n_cb, n_dens, d).astype(np.float64))
        off += n_dens * d
    return out


def read_sendump(path: Path, n_feat: int = 3) -> np.ndarray:
    """Quantised mixture weights ``(streams, densities, senones)``, uint8 steps of -log weight."""
    b = path.read_bytes()
    i = 0
    while True:  # header strings, each (int32 length, bytes); length 0 ends them
        (n,) = struct.unpack_from("<i", b, i)
        i += 4 + n
        if n == 0:
            break
    n_dens, n_sen = struct.unpack_from("<2i", b, i)
    return np.frombuffer(b, np.uint8, n_feat * n_dens * n_sen, i + 8).reshape(n_feat, n_dens, n_sen)


class SphinxGMM:
    """pocketsphinx's en-us model scoring 10 ms frames by CI phone."""

    def __init__(self, directory: Path | None = None) -> None:
        d = directory or model_dir()
        self.means, var = read_gaussians(d / "means"), read_gaussians(d / "variances")
        # densities with a zero variance were never trained: left out of the mixtures
        self.unused = [(v <= 0).any(-1) for v in var]
        self.var = [np.where(v <= 0, 1.0, v) for v in var]
        # log N(x; mu, var) = -x^2 . iv / 2 + x . mu iv + const, the parts that do not depend on x made once
        self._iv = [1.0 / v for v in self.var]
        self._mu_iv = [mu * iv for mu, iv in zip(self.means, self._iv)]
        self._const = [np.where(u, -np.inf, -0.5 * (mu * mu * iv + np.log(2 * np.pi * v)).sum(-1))
                       for mu, iv, v, u in zip(self.means, self._iv, self.var, self.unused)]
        self.log_w = -read_sendump(d / "sendump").astype(np.float64) * SENDUMP_NEPERS
        mel = lambda f: 2595 * np.log10(1 + f / 700.0)  # noqa: E731
        edges = 700 * (10 ** (np.linspace(mel(130.0), mel(6800.0), NFILT + 2) / 2595) - 1)
        hz = np.arange(NFFT // 2 + 1) * 16000 / NFFT
        lo, c, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        self.fb = np.maximum(0, np.minimum((hz - lo) / (c - lo), (hi - hz) / (hi - c))) * 2 / (hi - lo)
        k = np.arange(13)[:, None]
        self.dct = np.cos(np.pi / NFILT * (np.arange(NFILT) + 0.5) * k) * np.where(k == 0, np.sqrt(1 / NFILT),
                                                                                  np.sqrt(2 / NFILT))
        self.lifter = 1 + 11 * np.sin(np.arange(13) * np.pi / 22)

    def mfcc(self, audio: np.ndarray) -> np.ndarray:
        """(n_samples,) float audio at 16 kHz -> (n_frames, 13) liftered cepstra, before CMN."""
        y = np.asarray(audio, np.float64) * 32768.0
        y = np.append(y[:1], y[1:] - 0.97 * y[:-1])
        n = 1 + max(0, (len(y) - FRAME) // HOP)
        frames = y[np.arange(FRAME)[None] + HOP * np.arange(n)[:, None]] * np.hamming(FRAME)
        power = np.abs(np.fft.rfft(frames, NFFT)) ** 2
        return (np.log(np.maximum(power @ self.fb.T, 1e-5)) @ self.dct.T) * self.lifter

    @staticmethod
    def streams(cep: np.ndarray) -> list[np.ndarray]:
        """1s_c_d_dd: cepstra (utterance mean removed), deltas c[t+2]-c[t-2], double deltas."""
        c = cep - cep.mean(0)
        p = np.pad(c, ((3, 3), (0, 0)), mode="edge")
        s = lambda k: p[3 + k:3 + k + len(c)]  # noqa: E731
        return [c, s(2) - s(-2), (s(3) - s(-1)) - (s(1) - s(-3))]

    def phone_scores(self, cep: np.ndarray) -> np.ndarray:
        """(n_frames, 13) cepstra -> (n_frames, 42) log-likelihood of each CI phone's best CI senone."""
        senone_cb = np.arange(3 * len(CIPHONES)) // 3
        total = 0.0
        for x, iv, mu_iv, const, lw in zip(self.streams(cep), self._iv, self._mu_iv, self._const, self.log_w):
            ll = -0.5 * np.einsum("td,gkd->tgk", x * x, iv) + np.einsum("td,gkd->tgk", x, mu_iv) + const
            z = ll[:, senone_cb] + lw[:, :len(senone_cb)].T[None]  # (T, CI senones, K)
            top = z.max(-1, keepdims=True)
            total = total + top[..., 0] + np.log(np.exp(z - top).sum(-1))
        return total.reshape(len(cep), len(CIPHONES), 3).max(-1)


def corpus_frames(gmm: SphinxGMM, name: str, *, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Phone scores ``(frames, 42)`` and labels of ``n`` utterances of a corpus; frames
    ``SILENCE_NEPERS`` (in magnitude, twice that in power) under the utterance's loudest are labelled silence."""
    import soundfile as sf

    scores, labels = [], []
    for u in build_corpus(name, seed=seed, max_utterances=n, progress=False):
        audio, rate = sf.read(u.path, dtype="float32", always_2d=True)
        if rate != 16000:
            raise ValueError(f"{u.path}: rate {rate} Hz; expected the corpus's 16000 Hz")
        cep = gmm.mfcc(audio.mean(1))
        lab = np.array(frame_labels(len(cep), u.phones, hop=HOP, back=LABEL_BACK))
        # c0 of the orthonormal DCT is sqrt(NFILT) times the mean log power
        lab[cep[:, 0] < cep[:, 0].max() - 2 * SILENCE_NEPERS * np.sqrt(NFILT)] = "-"
        scores.append(gmm.phone_scores(cep))
        labels.append(lab)
    return np.concatenate(scores), np.concatenate(labels)


def context(scores: np.ndarray, width: int = 2) -> np.ndarray:
    """Per-frame log scores relative to the frame's best (floored at -50), frames t-width..t+width side by side."""
    s = np.maximum(scores - scores.max(1, keepdims=True), -50.0)
    p = np.pad(s, ((width, width), (0, 0)), mode="edge")
    return np.concatenate([p[k:k + len(s)] for k in range(2 * width + 1)], 1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    known = np.isin(labels, PHONES)
    return float(np.mean(pred[known] == labels[known]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/experiments/sphinx_gmm.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", default="espeak:en-us+m1,espeak:en-us+f2,espeak:en-us+m5,espeak:en-us+f4,kokoro:jf_alpha",
                    help="corpora the readout is trained on")
    ap.add_argument("--test", default="espeak:en-us+f3,kokoro:jf_nezumi,kokoro:jm_kumo",
                    help="corpora of voices none of our networks heard (session 10's figures are for these)")
    ap.add_argument("--train-utterances", type=int, default=15)
    ap.add_argument("--test-utterances", type=int, default=10)
    a = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    gmm = SphinxGMM()
    to_ipa = np.array([ARPABET_TO_IPA[p] for p in CIPHONES])
    xs, ys = [], []
    for name in a.train.split(","):
        s, lab = corpus_frames(gmm, name, n=a.train_utterances, seed=0)
        xs.append(context(s))
        ys.append(lab)
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = np.isin(y, PHONES)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    readout = LogisticRegression(max_iter=300).fit((x[keep] - mu) / sd, y[keep])
    print(f"readout: {keep.sum()} frames of {a.train}; training accuracy {readout.score((x[keep] - mu) / sd, y[keep]):.3f}")
    print(f"{'voice':20s} {'frames':>7s} {'direct':>7s} {'+-2 avg':>8s} {'readout':>8s}")
    for name in a.test.split(","):
        s, lab = corpus_frames(gmm, name, n=a.test_utterances, seed=1000)
        smooth = np.mean([np.roll(s, k, 0) for k in range(-2, 3)], 0)
        print(f"{name:20s} {len(lab):7d} {accuracy(to_ipa[s.argmax(1)], lab):7.3f} "
              f"{accuracy(to_ipa[smooth.argmax(1)], lab):8.3f} {accuracy(readout.predict((context(s) - mu) / sd), lab):8.3f}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
