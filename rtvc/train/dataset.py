"""Training data for any-to-one conversion without parallel data.

Only the target's own speech is needed. Its frames are analysed once (natural-log magnitude
spectra, clean cepstral envelope, F0, periodicity); every training batch then builds *input*
features from a randomly disguised version of those spectra, in the spectral domain:

- vocal-tract length: the cepstral envelope is warped in frequency by ``alpha``;
- pitch: the fine structure (log magnitude minus envelope) is warped by ``p`` and F0 scaled by it;
- microphone / room: a spectral tilt, a level change and additive noise at a random SNR;
- optionally (``AugmentConfig.normalise``), on a share of the rows, what the run time does to a
  speaker's input: the mel filterbank reads the spectrum at ``p ** WARP_GAMMA`` times each
  frequency (:class:`~rtvc.converter.WarpNormaliser`), and the MFCC ``c1..`` are moved onto the
  target's mean (:class:`~rtvc.converter.TimbreMapper`); half of those rows as once the speaker's
  statistics have settled, half as a fresh stream's first words (see ``Augmenter._normalise``).

The *output* stays the clean target envelope (with the same level change in ``c0``, so the
output level follows the input), so at run time any speaker's features map to the target.
Everything is seeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..features import F0_REF_HZ, POWER_AMIN, FeatureConfig, FeatureExtractor, dct_matrix, mel_filterbank
from .._native.cepstrum import cepstrum_matrices
from ..converter import TIMBRE_RAMP_FRAMES, WARP_GAMMA, WARP_GRID, WARP_MIN_FRAMES
from .options import AugmentConfig

__all__ = ["FrameSet", "AugmentConfig", "Augmenter", "load_audio_16k", "analyse_files", "frames_cache_key",
           "log_f0_stats", "ANALYSIS_VERSION"]

ANALYSIS_VERSION = 3
"""Part of the frame-cache key: bump it when the analysis code changes its output."""
FRAMES_CACHE_KEEP = 4
"""Frame files a cache folder keeps (the most recently used); older ones are removed."""


def _prune_cache(folder: Path, keep: int = FRAMES_CACHE_KEEP, pattern: str = "frames-*.npz") -> None:
    """Keep the ``keep`` most recently used files matching ``pattern`` in ``folder``: the cache is
    bounded (one file holds ~10 MB per minute of audio)."""
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        try:
            old.unlink()
        except OSError:
            pass  # removed meanwhile by another build


def load_audio_16k(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any soundfile-readable file (or mp3 through ffmpeg), mix to mono, resample to 16 kHz."""
    import soundfile as sf
    import soxr

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # libsndfile without mp3 support, or another container: let ffmpeg decode
        import subprocess

        r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
                           capture_output=True, check=False)
        if r.returncode != 0:
            raise
        return np.frombuffer(r.stdout, np.float32).copy()
    x = x.mean(axis=1)
    if sr != 16000:
        x = soxr.resample(x, sr, 16000).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass
class FrameSet:
    """All analysed frames of a speaker, concatenated in time.

    Attributes
    ----------
    logmag : (n, n_bins) float16
    cepstrum : (n, n_cep) float32
    f0_hz, periodicity : (n,) float32
    """

    logmag: np.ndarray
    cepstrum: np.ndarray
    f0_hz: np.ndarray
    periodicity: np.ndarray

    def __len__(self) -> int:
        return int(self.cepstrum.shape[0])

    @property
    def minutes(self) -> float:
        return len(self) * 80 / 16000 / 60


def frames_cache_key(audio: Sequence[np.ndarray], config: FeatureConfig, *, salt: dict | None = None) -> str:
    """sha256 over the 16 kHz samples of every file (in order), the feature config and
    :data:`ANALYSIS_VERSION` (and ``salt``, for other analyses of the same audio): the same audio
    analysed with the same settings gives the same key."""
    h = hashlib.sha256()
    head = {"config": config.as_dict(), "version": ANALYSIS_VERSION, **({"salt": salt} if salt else {})}
    h.update(json.dumps(head, sort_keys=True).encode())
    for x in audio:
        x = np.ascontiguousarray(x, dtype=np.float32)
        h.update(np.int64(x.shape[0]).tobytes())
        h.update(x.tobytes())
    return h.hexdigest()


def analyse_files(paths: Sequence[Path] | Sequence[np.ndarray], *, config: FeatureConfig | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> FrameSet:
    """Analyse files (or 16 kHz arrays) with the streaming-identical offline analysis.

    With ``cache_dir`` the frames are kept in ``cache_dir/frames-KEY.npz``, ``KEY`` from
    :func:`frames_cache_key` (audio content + feature config), and read back instead of
    analysed again: retraining with other training settings skips the analysis.
    """
    config = config or FeatureConfig()
    audio = [p if isinstance(p, np.ndarray) else load_audio_16k(p) for p in paths]
    cache: Path | None = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"frames-{frames_cache_key(audio, config)}.npz"
        fs = read_cached_frames(cache)
        if fs is not None:
            return fs
    fx = FeatureExtractor(config)
    parts = []
    for x in audio:
        a = fx.analyze(x, keep_logmag=True)
        assert a.logmag is not None
        parts.append(a)
    fs = FrameSet(np.concatenate([a.logmag for a in parts]).astype(np.float16),
                  np.concatenate([a.cepstrum for a in parts]),
                  np.concatenate([a.f0_hz for a in parts]),
                  np.concatenate([a.periodicity for a in parts]))
    if cache is not None:
        write_cached_frames(cache, fs)
    return fs


def read_cached_frames(cache: Path) -> FrameSet | None:
    """The :class:`FrameSet` kept in ``cache``, marked most recently used; ``None`` when it is
    missing, damaged or partial (then the caller analyses again)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as z:
            fs = FrameSet(z["logmag"], z["cepstrum"], z["f0_hz"], z["periodicity"])
        os.utime(cache)  # most recently used: kept by the pruning
        return fs
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def write_cached_frames(cache: Path, fs: FrameSet) -> None:
    """Keep ``fs`` in ``cache`` (written atomically: a concurrent reader never sees half a file)
    and prune the folder's files of the same kind (the name's part before the first ``-``)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, logmag=fs.logmag, cepstrum=fs.cepstrum, f0_hz=fs.f0_hz, periodicity=fs.periodicity)
    os.replace(tmp, cache)
    _prune_cache(cache.parent, pattern=cache.name.split("-", 1)[0] + "-*.npz")


def log_f0_stats(f0_hz: np.ndarray) -> tuple[float, float]:
    """Mean and std of log2 F0 over voiced frames."""
    v = f0_hz[f0_hz > 0]
    if v.size < 10:
        return float(np.log2(F0_REF_HZ)), 0.25
    lf = np.log2(v)
    return float(lf.mean()), float(lf.std())


EQ_ORDER = 8
"""Cepstral order of the random EQ curves (smooth: a few broad bumps over the band)."""


class Augmenter:
    """Builds (input features, target cepstra) batches from a :class:`FrameSet`.

    With ``parallel`` (other speakers' frames with the target's aligned envelope, see
    :func:`rtvc.train.parallel.parallel_frames`) a share ``aug.parallel_share`` of the rows of
    each batch is drawn from it instead of the target's own frames; every row is disguised the
    same way (a parallel row's speaker is disguised further).
    """

    def __init__(self, frames: FrameSet, *, config: FeatureConfig | None = None,
                 aug: AugmentConfig | None = None, seed: int = 0, parallel: FrameSet | None = None) -> None:
        self.frames = frames
        self.n_own = len(frames)
        self.n_parallel = 0 if parallel is None else len(parallel)
        self.config = c = config or FeatureConfig()
        self.aug = aug or AugmentConfig()
        self.gen = torch.Generator().manual_seed(seed)
        fwd, inv = cepstrum_matrices(c.n_fft, c.n_cep)
        self.lift = torch.from_numpy(fwd.T @ inv.T)  # (n_bins, n_bins): log magnitude -> envelope
        self.fb_t = torch.from_numpy(mel_filterbank(sample_rate=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels).T.copy())
        self.dct_t = torch.from_numpy(dct_matrix(c.n_mfcc, c.n_mels).T.copy())
        self.n_bins = c.n_fft // 2 + 1
        sets = [frames] if parallel is None else [frames, parallel]
        self.logmag = torch.from_numpy(np.concatenate([f.logmag for f in sets]))
        self.cep = torch.from_numpy(np.concatenate([f.cepstrum for f in sets]))
        self.f0 = torch.from_numpy(np.concatenate([f.f0_hz for f in sets]))
        self.per = torch.from_numpy(np.concatenate([f.periodicity for f in sets]))
        self.timbre_mean = None  # the target's mean MFCC c1.. over voiced frames, for the normalisation
        if self.aug.normalise > 0.0:  # (of up to 20000 frames spread over its speech)
            own = torch.linspace(0, self.n_own - 1, min(self.n_own, 20000)).long()
            self.timbre_mean = self._voiced_mean(self.logmag[own].float(), self.f0[own], self.per[own])

    def _voiced_mean(self, logmag: torch.Tensor, f0: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
        feats = self.features_from_logmag(logmag, f0, per)[..., 1:self.config.n_mfcc]
        v = f0 > 0
        return feats[v].mean(dim=0) if bool(v.any()) else feats.mean(dim=0)

    def _u(self, b: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=self.gen)

    @staticmethod
    def _warp(x: torch.Tensor, ratio: torch.Tensor, ratio_top: torch.Tensor | None = None) -> torch.Tensor:
        """``x(k / r(k))`` per batch row, linear interpolation, last bin held. x: (B, T, K).

        ``r`` is ``ratio``, or with ``ratio_top`` goes geometrically from ``ratio`` at bin 0 to
        ``ratio_top`` at the last bin (a vocal tract whose formants do not all move alike)."""
        b, t, k = x.shape
        grid = torch.arange(k, dtype=torch.float32)[None, :]
        if ratio_top is None:
            r = ratio[:, None]
        else:
            u = grid / (k - 1)
            r = ratio[:, None] * (ratio_top / ratio)[:, None] ** u
        pos = (grid / r).clamp(max=k - 1)
        i0 = pos.floor().long().clamp(max=k - 2)
        f = (pos - i0).unsqueeze(1)
        i0 = i0.unsqueeze(1).expand(b, t, k)
        return x.gather(2, i0) * (1 - f) + x.gather(2, i0 + 1) * f

    def features_from_logmag(self, logmag: torch.Tensor, f0: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
        """Input features from log magnitudes, as :class:`~rtvc.features.FeatureExtractor` computes them."""
        power = torch.exp(2.0 * logmag)
        return self._features_from_power(power, f0, per)

    def _features_from_power(self, power: torch.Tensor, f0: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
        mel = 10.0 * torch.log10(torch.clamp(power @ self.fb_t, min=POWER_AMIN))
        mfcc = mel @ self.dct_t
        voiced = (f0 > 0).float()
        logf0 = torch.where(f0 > 0, torch.log2(torch.clamp(f0, min=1.0) / F0_REF_HZ), torch.zeros_like(f0))
        return torch.cat([mfcc, logf0[..., None], voiced[..., None], per[..., None]], dim=-1)

    def batch(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One random batch: inputs ``(B, T, F)``, targets ``(B, T, E)`` (raw, not normalised)."""
        return self.disguise(self.draw_index(batch, frames))

    def draw_index(self, batch: int, frames: int) -> torch.Tensor:
        """Random frame indices ``(B, T)`` of a batch: runs of ``frames`` consecutive frames."""
        n = self.n_own
        start = torch.randint(0, max(1, n - frames), (batch,), generator=self.gen)
        idx = start[:, None] + torch.arange(frames)[None, :]
        idx = idx.clamp(max=n - 1)
        if self.n_parallel:  # rows from the parallel frames (stored after the target's own)
            m = self.n_parallel
            par = torch.rand(batch, generator=self.gen) < self.aug.parallel_share
            p_start = torch.randint(0, max(1, m - frames), (batch,), generator=self.gen)
            p_idx = n + (p_start[:, None] + torch.arange(frames)[None, :]).clamp(max=m - 1)
            idx = torch.where(par[:, None], p_idx, idx)
        return idx

    def disguise(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(B, T, F)`` of the frames ``idx`` (B, T) under a random disguise per row, and
        their targets ``(B, T, E)`` (the clean envelope with the disguise's level change)."""
        batch = idx.shape[0]
        lm = self.logmag[idx].float()
        cep = self.cep[idx].clone()
        f0 = self.f0[idx].clone()
        per = self.per[idx]
        a = self.aug
        clean = torch.rand(batch, generator=self.gen) < a.clean_prob
        alpha = torch.where(clean, torch.ones(batch), self._u(batch, *a.alpha_range))
        p = torch.where(clean, torch.ones(batch), 2.0 ** self._u(batch, -a.pitch_octaves, a.pitch_octaves))
        tilt = torch.where(clean, torch.zeros(batch), self._u(batch, -a.tilt_nepers, a.tilt_nepers))
        level = self._u(batch, *a.level_nepers)
        env = lm @ self.lift
        fine = lm - env
        top = None
        if a.warp_spread > 0.0:
            top = torch.where(clean, alpha, alpha * 2.0 ** self._u(batch, -a.warp_spread, a.warp_spread))
        aug = self._warp(env, alpha, top) + self._warp(fine, p)
        ramp = torch.linspace(-0.5, 0.5, self.n_bins)
        aug = aug + tilt[:, None, None] * ramp + level[:, None, None]
        if a.eq_nepers > 0.0:  # sum_k c_k cos(pi k bin / (n_bins - 1)), |c_k| <= eq / k
            k = torch.arange(1, EQ_ORDER + 1, dtype=torch.float32)
            c = (2.0 * torch.rand(batch, EQ_ORDER, generator=self.gen) - 1.0) * (a.eq_nepers / k)
            c = torch.where(clean[:, None], torch.zeros_like(c), c)
            basis = torch.cos(torch.pi * k[:, None] * torch.linspace(0.0, 1.0, self.n_bins)[None, :])
            aug = aug + (c @ basis)[:, None, :]
        power = torch.exp(2.0 * aug)
        noisy = (~clean) & (torch.rand(batch, generator=self.gen) < a.noise_prob)
        snr = self._u(batch, *a.snr_db)
        mean_pow = power.mean(dim=(1, 2))
        npow = torch.where(noisy, mean_pow * 10.0 ** (-snr / 10.0), torch.zeros(batch))
        noise = -torch.log(torch.rand(power.shape, generator=self.gen).clamp(min=1e-12))  # exponential
        power = power + npow[:, None, None] * noise
        if a.room_prob > 0.0:
            power = self._room(power, clean)
        inputs = self._features_from_power(power, f0 * p[:, None], per)
        if a.normalise > 0.0:
            inputs = self._normalise(inputs, power, lm, f0, p, per)
        cep[..., 0] += level[:, None]
        return inputs, cep

    def _room(self, power: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Reverberation and a band limit on a share ``aug.room_prob`` of the disguised rows each.

        Reverb in the frame-power domain: a tail decaying by 60 dB over ``T60 ~ U(0.15, 0.8)`` s
        (per frequency slightly faster above 4 kHz) at a direct-to-reverberant ratio of 0-15 dB,
        added causally across frames. Band limit: power above a cut-off ``~ U(3.4, 7.5)`` kHz falls
        by 60 dB per octave (a telephone or a cheap microphone)."""
        batch, frames, bins = power.shape
        a = self.aug
        hz = torch.linspace(0.0, self.config.sample_rate / 2.0, bins)
        rev = (~clean) & (torch.rand(batch, generator=self.gen) < a.room_prob)
        t60 = self._u(batch, 0.15, 0.8)[:, None] * torch.where(hz > 4000.0, 0.7, 1.0)[None, :]
        decay = 10.0 ** (-6.0 * (self.config.hop / self.config.sample_rate) / t60)  # per frame, (B, K)
        drr = 10.0 ** (self._u(batch, 0.0, 15.0) / 10.0)
        tail = torch.zeros(batch, bins)
        wet = torch.empty_like(power)
        for t in range(frames):  # causal: a frame hears the tail of the ones before it
            tail = tail * decay + power[:, t] * (1.0 - decay)
            wet[:, t] = tail
        power = torch.where(rev[:, None, None], power + wet / drr[:, None, None], power)
        band = (~clean) & (torch.rand(batch, generator=self.gen) < a.room_prob)
        cut = self._u(batch, 3400.0, 7500.0)
        octaves = torch.log2(torch.clamp(hz[None, :] / cut[:, None], min=1.0))
        gain = torch.where(band[:, None], 10.0 ** (-6.0 * octaves), torch.ones(batch, bins))
        return power * gain[:, None, :]

    def _normalise(self, inputs: torch.Tensor, power: torch.Tensor, lm: torch.Tensor, f0: torch.Tensor,
                   p: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
        """The run time's input normalisation on a share ``aug.normalise`` of the rows.

        Half of those rows get it as it is once a speaker's statistics have settled: the input
        warp (the filterbank reads the spectrum at ``w = p ** WARP_GAMMA`` times each frequency,
        :class:`~rtvc.converter.WarpNormaliser`) and MFCC ``c1..`` moved by the mean over voiced
        frames of the disguise's offset from the clean input, so their long-term mean is the
        target's own (:class:`~rtvc.converter.TimbreMapper`). The other half get it as a fresh
        stream does at its first words: the running mean from the row's first frame, the shift
        faded in over ``TIMBRE_RAMP_FRAMES`` voiced frames towards the target's mean over all its
        frames, the warp once ``WARP_MIN_FRAMES`` voiced frames came before the frame (the run
        time reads the F0 count before a hop's own update).
        """
        batch = inputs.shape[0]
        k = self.config.n_mfcc
        norm = torch.rand(batch, generator=self.gen) < self.aug.normalise
        cold = norm & (torch.rand(batch, generator=self.gen) < 0.5)
        w = (p ** WARP_GAMMA).clamp(float(WARP_GRID[0]), float(WARP_GRID[-1]))
        warped = self._features_from_power(self._warp(power, 1.0 / w), f0 * p[:, None], per)
        v = (f0 > 0).float()[..., None]
        seen = v.cumsum(dim=1)  # voiced frames so far, this one included
        # settled: the warp throughout, the oracle offset
        clean = self.features_from_logmag(lm, f0, per)
        offset = ((warped[..., 1:k] - clean[..., 1:k]) * v).sum(dim=1) / v.sum(dim=1).clamp(min=1.0)
        settled = warped.clone()
        settled[..., 1:k] -= offset[:, None, :]
        # cold: the warp once WARP_MIN_FRAMES voiced frames came before, the running mean from zero
        fresh = torch.where(seen - v >= WARP_MIN_FRAMES, warped, inputs)
        running = (fresh[..., 1:k] * v).cumsum(dim=1) / seen.clamp(min=1.0)
        ramp = (seen / TIMBRE_RAMP_FRAMES).clamp(max=1.0)
        fresh[..., 1:k] += (self.timbre_mean - running) * ramp
        out = torch.where(norm[:, None, None], settled, inputs)
        return torch.where(cold[:, None, None], fresh, out)
