"""Voice cloning from a folder of a person's recordings (no transcripts, no parallel data).

Every file is read and checked *before* any training: unreadable files, clipping, silence and
too little speech are refused with an :class:`~rtvc.errors.AudioFileError` that names the
file or the amount and what is expected. The voice is written into
:func:`rtvc.paths.user_voices_dir` so it appears in ``VoiceRegistry().list()`` at once.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import AudioFileError, ConfigError
from ..features import N_CEP, FeatureConfig
from ..paths import shipped_models_dir, user_voices_dir
from ..voices import VoiceRegistry
from ..synthesis import check_options
from .build import build_voice
from .dataset import load_audio_16k
from .options import (AUGMENT_FLAGS, HIGH_VOICE_HZ, LOSS_OPTIONS, N_CEP_HIGH, N_CEP_LOW, SYNTHESIS_OPTIONS,
                      AugmentConfig, TrainConfig)

__all__ = ["AUDIO_EXTENSIONS", "CloneSource", "check_clone_folder", "clone_voice", "active_seconds",
           "cepstral_order_for"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
CLIP_LEVEL = 0.999
MAX_CLIPPED_SHARE = 0.01
SILENT_DBFS = -50.0
F0_SAMPLE_S = 120.0  # seconds of the recordings the median F0 is measured on


class CloneSource:
    """Checked audio of a clone folder: 16 kHz arrays, their files and the active speech time."""

    def __init__(self, files: list[Path], audio: list[np.ndarray], active_s: float, skipped: list[str]) -> None:
        self.files, self.audio, self.active_s, self.skipped = files, audio, active_s, skipped


def active_seconds(x: np.ndarray, *, frame: int = 320) -> float:
    """Seconds of active speech: 20 ms frames louder than -45 dBFS and than the file's loudest
    frame minus 40 dB (a plain energy detector: no model, robust to level)."""
    n = len(x) // frame
    if n == 0:
        return 0.0
    e = 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)
    thr = max(-45.0, float(e.max()) - 40.0)
    return float(np.count_nonzero(e > thr) * frame / 16000)


def check_clone_folder(folder: str | Path, *, min_minutes: float = 5.0, minutes_limit: float | None = None) -> CloneSource:
    """Read and validate every audio file of ``folder`` (recursively).

    Raises
    ------
    AudioFileError
        Folder missing; no wav/flac/ogg/mp3 file; a file that cannot be decoded; a clipped file
        (more than 1 % of samples at full scale); nothing but silence; less active speech than
        ``min_minutes``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioFileError(f"clone folder {folder} does not exist; expected a folder of recordings")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise AudioFileError(f"no usable audio in {folder}: no {'/'.join(e[1:] for e in AUDIO_EXTENSIONS)} files found")
    audio, used, skipped = [], [], []
    active = 0.0
    for p in files:
        try:
            x = load_audio_16k(p)
        except Exception as e:
            raise AudioFileError(f"{p} cannot be decoded ({e}); expected wav/flac/ogg/mp3 audio") from None
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise AudioFileError(f"{p} is empty or holds non-finite samples; expected finite audio samples")
        clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
        if clipped > MAX_CLIPPED_SHARE:
            raise AudioFileError(f"{p} is clipped: {100 * clipped:.1f}% of samples at full scale; expected at most "
                                 f"{100 * MAX_CLIPPED_SHARE:.0f}% (record it again at a lower level)")
        rms_db = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20)
        if rms_db < SILENT_DBFS:
            skipped.append(f"{p.name}: silent ({rms_db:.0f} dBFS)")
            continue
        a = active_seconds(x)
        audio.append(x.astype(np.float32))
        used.append(p)
        active += a
        if minutes_limit is not None and active >= 60 * minutes_limit:
            break
    if not audio:
        raise AudioFileError(f"no usable audio in {folder}: every file is silent (below {SILENT_DBFS:.0f} dBFS)")
    if active < 60 * min_minutes:
        raise AudioFileError(f"{folder} holds {active / 60:.2f} minutes of active speech; expected at least "
                             f"{min_minutes:g} minutes (lower it with --min-minutes at a cost in quality)")
    return CloneSource(used, audio, active, skipped)


def cepstral_order_for(audio: list[np.ndarray]) -> tuple[int, float]:
    """(cepstral order, median F0 in Hz) for a clone of ``audio`` (16 kHz arrays).

    A low voice gets the higher order: the envelope then resolves more of its formant detail,
    and at 64 coefficients (4 ms) it still stays under a male pitch period (6-12 ms), so it
    carries no harmonics. Measured with ``bench/clone.py --warm`` (18 utterances of 6 unseen
    speakers): a clone of 5 min of piper ``joe`` at 64 against 32 coefficients, similarity
    0.725 / 0.629, WER 0.46 / 0.53 (sources 0.47), P.808 3.29 / 3.29; a clone of 10 min of
    the Asterisk prompts (female, median 196 Hz) at 48 against 32, 0.634 / 0.617, WER 0.62 /
    0.60, P.808 2.96 / 3.04, F0 r 0.95 / 0.99: no gain worth its cost, so a high voice keeps
    the library default. The median F0 of voiced frames in the first ``F0_SAMPLE_S`` seconds
    decides; with no voiced frame at all the order is the default ``N_CEP`` and the median 0.
    """
    from ..f0 import track_f0

    budget, f0s = int(F0_SAMPLE_S * 16000), []
    for x in audio:
        if budget <= 0:
            break
        f0, _ = track_f0(x[:budget])
        f0s.append(f0[f0 > 0])
        budget -= x.size
    voiced = np.concatenate(f0s) if f0s else np.zeros(0)
    if voiced.size == 0:
        return N_CEP, 0.0
    med = float(np.median(voiced))
    return (N_CEP_HIGH if med >= HIGH_VOICE_HZ else N_CEP_LOW), med


def builtin_voice_names() -> set[str]:
    """The DSP presets and the shipped neural voices: names a clone may never take (a built-in
    voice hides a user voice of the same name)."""
    return set(VoiceRegistry([shipped_models_dir()]).names())  # the names the registry itself lets win


def _check_name(name: str, out_dir: Path, *, force: bool = False) -> str:
    """Refuse a clone name that is malformed, taken by a built-in voice, or (without ``force``)
    by an existing voice in ``out_dir``: before any training, so nothing is lost or overwritten."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", name):
        raise ConfigError(f"voice name {name!r}; expected 1-40 letters, digits, '-' or '_'")
    if name in builtin_voice_names():
        raise ConfigError(f"voice name {name!r} is a built-in voice (see `rtvc voices`); a clone of that name would "
                          "be hidden by it; expected another name")
    existing = [p for p in (out_dir / f"{name}.onnx", out_dir / f"{name}.json") if p.exists()]
    if existing and not force:
        raise ConfigError(f"voice name {name!r} is taken: {existing[0]} exists; expected another name, or --force "
                          "to replace that voice")
    return name


def clone_voice(folder: str | Path, name: str, *, minutes_limit: float | None = None, epochs: float | None = None,
                progress: bool = True, min_minutes: float = 5.0, steps: int | None = None,
                out_dir: str | Path | None = None, hidden: int = 128, seed: int = 0,
                synthesis: str = "pulse-noise", gender: str = "unknown",
                feature_config: FeatureConfig | None = None, loss_options: Mapping[str, float] | None = None,
                aug: AugmentConfig | None = None, cache_dir: str | Path | None = None,
                device: str = "cpu", synthesis_options: Mapping[str, Any] | None = None, force: bool = False,
                content: str | Path | None = None) -> Path:
    """Clone the voice in ``folder`` into ``NAME.onnx`` + manifest + preview; return the .onnx path.

    Parameters
    ----------
    folder : path
        Recordings of one speaker (wav/flac/ogg/mp3, any rate, mono or stereo).
    name : str
        Voice name (letters, digits, '-', '_').
    minutes_limit : float, optional
        Use at most this many minutes of active speech.
    epochs : float, optional
        Passes over the data (an epoch is as many frames as the data holds); default: a step
        count that grows with the data (300..1500 steps).
    min_minutes : float
        Refuse folders with less active speech than this.
    out_dir : path, optional
        Default :func:`rtvc.paths.user_voices_dir`.
    feature_config : FeatureConfig, optional
        Analysis settings (e.g. ``n_cep``); default :class:`~rtvc.features.FeatureConfig` with
        the cepstral order chosen by the recordings' median F0 (:func:`cepstral_order_for`).
    loss_options : mapping, optional
        Loss fields of :class:`~rtvc.train.train.TrainConfig` (``delta_weight``, ``gv_weight``,
        ``cep_emphasis``); default: its defaults.
    aug : AugmentConfig, optional
        How the training disguises the target (see :class:`~rtvc.train.dataset.AugmentConfig`).
    cache_dir : path, optional
        Cache the analysed frames there (keyed by audio content and feature config).
    device : str
        Where the network trains: 'cpu' (default) or 'cuda' (a torch that sees a GPU).
    synthesis_options : mapping, optional
        The manifest's synthesis options (``postfilter``, ``f0_continuity``, ...); default
        :data:`~rtvc.train.options.SYNTHESIS_OPTIONS`. Checked before any audio is read.
    force : bool
        Replace an existing voice of this name in ``out_dir`` (a built-in name is refused anyway).
    content : path, optional
        A content student (``.npz``) the converter reads instead of the MFCC (see
        :func:`~rtvc.train.build.build_voice`); None: the MFCC.
    """
    out = Path(out_dir) if out_dir is not None else user_voices_dir()
    _check_name(name, out, force=force)
    loss = dict(loss_options or {})
    if unknown := sorted(set(loss) - set(LOSS_OPTIONS)):
        raise ConfigError(f"loss options {unknown}; expected some of {list(LOSS_OPTIONS)}")
    tc = TrainConfig(hidden=hidden, seed=seed, device=device, **loss)  # bad options are refused before reading audio
    syn_opts = dict(SYNTHESIS_OPTIONS if synthesis_options is None else synthesis_options)
    syn_full, syn_default = check_options(syn_opts), check_options(SYNTHESIS_OPTIONS)
    src = check_clone_folder(folder, min_minutes=min_minutes, minutes_limit=minutes_limit)
    extra: dict[str, Any] = {"active_minutes": round(src.active_s / 60, 2), "skipped": src.skipped}
    fc = feature_config
    if fc is None:
        n_cep, median_f0 = cepstral_order_for(src.audio)
        fc = FeatureConfig(n_cep=n_cep)
        extra["n_cep_from_median_f0_hz"] = round(median_f0, 1)
    n_frames = sum(len(x) for x in src.audio) // 80
    if steps is None:
        if epochs is not None:
            if not epochs > 0:
                raise ConfigError(f"epochs {epochs!r}; expected a positive number")
            steps = int(np.ceil(epochs * n_frames / (tc.batch * tc.frames)))
        else:
            steps = int(np.clip(150 * src.active_s / 60, 300, 1500))
    tc = TrainConfig(hidden=hidden, seed=seed, steps=max(1, int(steps)), device=device, **loss)
    flags: list[str] = []
    for key, value in tc.loss_options().items():
        if value != getattr(TrainConfig(), key):  # the command names what differs from the defaults
            flags += ["--" + key.replace("_", "-"), f"{value:g}"]
    aug = aug or AugmentConfig()
    for key, flag in AUGMENT_FLAGS.items():
        if getattr(aug, key) != getattr(AugmentConfig(), key):
            flags += [flag, f"{getattr(aug, key):g}"]
    for key in ("postfilter", "f0_continuity"):  # the synthesis flags (rtvc clone has these two)
        if syn_full[key] != syn_default[key]:
            flags += ["--" + key.replace("_", "-"), f"{syn_full[key]:g}"]
    return build_voice(src.audio, out, name, description=f"cloned from {Path(folder).name} "
                       f"({src.active_s / 60:.1f} min of speech)", gender=gender,
                       data=f"user recordings: {len(src.files)} files from {Path(folder).resolve()}",
                       licence="the user's own recordings (not redistributed)",
                       command=shlex.join(["rtvc", "clone", str(folder), "--name", name, "--steps", str(tc.steps)]
                                          + (["--n-cep", str(fc.n_cep)] if fc.n_cep != N_CEP else [])
                                          + (["--content", str(content)] if content is not None else [])
                                          + flags + (["--device", device] if device != "cpu" else [])),
                       synthesis=synthesis, synthesis_options=syn_opts, train=tc, aug=aug, feature_config=fc,
                       cache_dir=cache_dir, progress=progress, extra=extra, content=content)
