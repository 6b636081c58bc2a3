"""Training subcommands merged into the ``rtvc`` CLI (and ``python -m rtvc.train``).

``SUBCOMMANDS`` maps a name to ``(add_arguments(parser), handler(args) -> int)``. Building the
parsers imports no torch (the defaults come from :mod:`rtvc.train.options`); each handler checks
for the ``train`` extra first and, without it, says in one line how to install it (exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path

from ..errors import ConfigError, RtvcError
from ..manifest import MAX_LOOKAHEAD_FRAMES
from ..types import N_CEP, TRAIN_DEVICES
from .options import (AUGMENT_FLAGS, HIGH_VOICE_HZ, LOSS_OPTIONS, N_CEP_HIGH, N_CEP_LOW, SYNTHESIS_OPTIONS,
                      AugmentConfig, TrainConfig)

__all__ = ["SUBCOMMANDS", "holdout_split", "frames_cache_dir", "needs_train_extra", "content_student",
           "CONTENT_STUDENT"]


def needs_train_extra(command: str) -> int | None:
    """Exit code 2 with a one-line install hint when torch (the ``train`` extra) is missing, else None."""
    from ..options import extra_hint

    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    print(f"rtvc: error: {extra_hint(command, 'train', missing[0])}", file=sys.stderr)
    return 2


def _fail(command: str, e: RtvcError) -> int:
    print(f"rtvc: error: {command}: {e}", file=sys.stderr)
    return 2


def holdout_split(items: list, share: float) -> tuple[list, list]:
    """Deterministic split: every ``round(1/share)``-th item is held out (none for share 0)."""
    if share <= 0:
        return list(items), []
    k = max(2, int(round(1.0 / share)))
    return [x for i, x in enumerate(items) if i % k != k - 1], [x for i, x in enumerate(items) if i % k == k - 1]


def add_clone_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="folder of one speaker's recordings (wav/flac/ogg/mp3, any rate)")
    p.add_argument("--name", required=True, help="name of the new voice (letters, digits, - and _; not the name of a "
                                                 "built-in voice)")
    p.add_argument("--force", action="store_true", help="replace an existing user voice of this name")
    p.add_argument("--minutes", type=float, default=None, help="use at most this many minutes of speech")
    p.add_argument("--min-minutes", type=float, default=5.0, help="refuse less speech than this (default 5)")
    p.add_argument("--gender", default="unknown", choices=("female", "male", "other", "unknown"),
                   help="the speaker's gender, recorded in the voice's manifest and shown in voice lists "
                        "(default unknown)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the user voices folder)")
    _add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    adv = p.add_argument_group("advanced training options (the defaults are the measured best)")
    adv.add_argument("--epochs", type=float, default=None, help="passes over the data (default: by data size)")
    adv.add_argument("--steps", type=int, default=None, help="training steps (overrides --epochs)")
    _add_synthesis_arguments(adv)
    _add_content_argument(adv)
    _add_feature_arguments(adv, by_voice=True)
    _add_loss_arguments(adv)


def _add_feature_arguments(p: argparse.ArgumentParser, *, by_voice: bool = False) -> None:
    if by_voice:  # clone: the order follows the recordings' pitch (rtvc.train.clone.cepstral_order_for)
        p.add_argument("--n-cep", type=int, default=None,
                       help=f"cepstral coefficients of the predicted envelope (default: {N_CEP_HIGH} for a voice "
                            f"whose median F0 is {HIGH_VOICE_HZ:g} Hz or higher, else {N_CEP_LOW})")
    else:
        p.add_argument("--n-cep", type=int, default=N_CEP,
                       help=f"cepstral coefficients of the predicted envelope (default {N_CEP})")
    p.add_argument("--no-frames-cache", action="store_true",
                   help="analyse the audio again instead of reading cached frames (and cache nothing)")


def _add_synthesis_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--postfilter", type=float, default=None, metavar="BETA",
                   help="cepstral postfilter of the synthesis, 1..2, 1 = none (default "
                        f"{SYNTHESIS_OPTIONS['postfilter']:g}); a manifest option, the ONNX model does "
                        "not depend on it")
    p.add_argument("--f0-continuity", type=float, default=None, metavar="THR",
                   help="voicing with continuity for the synthesis' F0: a CMNDF threshold in (0.15, 0.9], "
                        f"0 = off (default {SYNTHESIS_OPTIONS['f0_continuity']:g}); a manifest option like "
                        "--postfilter")


CONTENT_STUDENT = "content_student.npz"
"""The shipped content student, in the shipped models folder (see :mod:`rtvc.train.content`)."""


def _add_content_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--content", default="auto", metavar="STUDENT",
                   help="the converter's input: 'auto' (default) reads the shipped content student's output "
                        f"({CONTENT_STUDENT}, Whisper distilled into a causal network) where it is installed, "
                        "'mfcc' the MFCC as before, or the path of another student (.npz)")


def content_student(choice: str) -> Path | None:
    """The student file ``--content`` names: None for 'mfcc' (or 'auto' without a shipped one)."""
    from ..paths import shipped_models_dir

    if choice == "mfcc":
        return None
    if choice == "auto":
        shipped = shipped_models_dir() / CONTENT_STUDENT
        return shipped if shipped.is_file() else None
    path = Path(choice)
    if not path.is_file():
        raise ConfigError(f"--content {choice!r}: no such file; expected 'auto', 'mfcc' or the path of a "
                          f"content student (.npz)")
    return path


def _add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=TRAIN_DEVICES, default="cpu",
                   help="where the network trains (default cpu; cuda needs a torch that sees a GPU)")


def _add_loss_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--delta-weight", type=float, default=d.delta_weight, metavar="W",
                   help=f"weight of the frame-to-frame difference loss term (default {d.delta_weight:g})")
    p.add_argument("--gv-weight", type=float, default=d.gv_weight, metavar="W",
                   help="weight of the global-variance loss term: predicted vs target per-coefficient std "
                        f"over each training sequence, against over-smoothing (default {d.gv_weight:g})")
    p.add_argument("--cep-emphasis", type=float, default=d.cep_emphasis, metavar="G",
                   help="weigh cepstral coefficient k by (k+1)**G in the loss, 0: equally "
                        f"(default {d.cep_emphasis:g})")
    p.add_argument("--adv-weight", type=float, default=d.adv_weight, metavar="W",
                   help="weight of the adversarial term of a critic over envelope sequences "
                        f"(rtvc.train.adversarial; default {d.adv_weight:g}: no critic)")
    p.add_argument("--fm-weight", type=float, default=d.fm_weight, metavar="W",
                   help=f"weight of that critic's feature-matching term (default {d.fm_weight:g})")
    a = AugmentConfig()
    p.add_argument(AUGMENT_FLAGS["warp_spread"], type=float, default=a.warp_spread, metavar="S",
                   help="disguise: the vocal-tract warp at the top of the band differs from the bottom's by "
                        f"up to 2**S (0..1; default {a.warp_spread:g}: one warp for the whole band)")
    p.add_argument(AUGMENT_FLAGS["eq_nepers"], type=float, default=a.eq_nepers, metavar="N",
                   help=f"disguise: random smooth EQ of up to N nepers per cosine term (0..2; default {a.eq_nepers:g})")
    p.add_argument(AUGMENT_FLAGS["normalise"], type=float, default=a.normalise, metavar="SHARE",
                   help="this share of the training rows gets the run time's input normalisation (the warp "
                        "by the F0 ratio and the timbre mean shift; half as settled, half as a fresh stream's "
                        f"first words; 0..1, default {a.normalise:g})")


def _augment(args: argparse.Namespace):  # noqa: ANN202
    """The :class:`~rtvc.train.options.AugmentConfig` of the parsed flags (its ConfigError names a bad one)."""
    share = getattr(args, "parallel_share", None)  # train only: clone has no parallel speakers
    options = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in AUGMENT_FLAGS.items()}
    return AugmentConfig(**options, **({} if share is None else {"parallel_share": share}))


def _loss_options(args: argparse.Namespace) -> dict[str, float]:
    """The loss fields of :class:`~rtvc.train.options.TrainConfig` from the parsed flags."""
    return {name: getattr(args, name) for name in LOSS_OPTIONS}


def _feature_config(args: argparse.Namespace):  # noqa: ANN202
    """The parsed ``--n-cep`` as a FeatureConfig; None where the clone chooses it."""
    from ..features import FeatureConfig

    return None if args.n_cep is None else FeatureConfig(n_cep=args.n_cep)


def _synthesis_options(args: argparse.Namespace) -> dict | None:
    from ..synthesis import check_options

    given = {k: v for k, v in (("postfilter", args.postfilter), ("f0_continuity", args.f0_continuity))
             if v is not None}
    if not given:
        return None  # build_voice's default
    opts = {**SYNTHESIS_OPTIONS, **given}
    check_options(opts)  # a bad value is refused before any training
    return opts


def frames_cache_dir(root: Path | None = None) -> Path:
    """Analysed-frame cache: ``ROOT/frames`` (ROOT: ``--cache-dir`` or the rtvc data folder)."""
    from ..paths import data_dir

    return (root if root is not None else data_dir()) / "frames"


def clone_handler(args: argparse.Namespace) -> int:
    """train a new voice from a folder of your recordings (train extra)"""
    if (code := needs_train_extra("clone")) is not None:
        return code
    from .clone import clone_voice

    t0 = time.perf_counter()
    try:
        path = clone_voice(args.folder, args.name, minutes_limit=args.minutes, epochs=args.epochs, steps=args.steps,
                           min_minutes=args.min_minutes, progress=not args.quiet, out_dir=args.out, gender=args.gender,
                           feature_config=_feature_config(args), loss_options=_loss_options(args),
                           aug=_augment(args), cache_dir=None if args.no_frames_cache else frames_cache_dir(),
                           device=args.device, synthesis_options=_synthesis_options(args), force=args.force,
                           content=content_student(args.content))
    except RtvcError as e:
        return _fail("clone", e)
    print(f"voice {args.name!r} written to {path} in {time.perf_counter() - t0:.0f} s")
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="corpus name (see rtvc.train.corpus.list_corpora)")
    p.add_argument("--name", required=True)
    p.add_argument("--gender", required=True, choices=["female", "male", "other"])
    p.add_argument("--description", default="")
    p.add_argument("--max-utterances", type=int, default=None)
    p.add_argument("--holdout", type=float, default=0.1, help="share of utterances kept out of training")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=16, help="sequences per training step (default 16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lookahead", type=int, default=0, metavar="K",
                   help=f"frames (5 ms each) the converter hears before it gives a frame's envelope, "
                        f"0..{MAX_LOOKAHEAD_FRAMES}; each adds 5 ms to the voice's latency (default 0)")
    _add_device_argument(p)
    p.add_argument("--synthesis", default="pulse-noise", choices=["pulse-noise", "source"])
    _add_synthesis_arguments(p)
    _add_content_argument(p)
    p.add_argument("--parallel", default="", metavar="CORPORA",
                   help="comma-separated corpora of other speakers saying the target corpus's sentences (same "
                        "seed, matched by text), aligned to it and trained on beside the disguised target, "
                        "e.g. kokoro:jf_alpha,espeak:en-us+m3 (default: none)")
    p.add_argument("--parallel-max-utterances", type=int, default=None, metavar="N",
                   help="utterances per parallel corpus (default: --max-utterances)")
    p.add_argument("--parallel-realign", action="store_true",
                   help="align the parallel speakers again with the converter trained on the first alignment "
                        "and train again on that (twice the training time)")
    p.add_argument("--parallel-share", type=float, default=0.5, metavar="S",
                   help="share of training rows drawn from the parallel speakers, 0..1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="corpora cache (default: the rtvc data folder)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped models folder)")
    _add_feature_arguments(p)
    _add_loss_arguments(p)
    p.add_argument("--quiet", action="store_true")


def _note_mbrola(corpus: str) -> None:
    if "mbrola" in corpus:
        print("rtvc train: note: MBROLA data may be used for experiments only, never for shipped voices")


def _parallel_pairs(args: argparse.Namespace, train: list) -> tuple[list, list]:
    """``(source, target)`` audio pairs from the ``--parallel`` corpora (utterances saying a
    training utterance's text) and the parallel utterances used."""
    from .corpus import build_corpus
    from .dataset import load_audio_16k
    from .parallel import match_by_text

    names = [n.strip() for n in args.parallel.split(",") if n.strip()]
    pairs, used = [], []
    target_audio: dict[int, object] = {}  # each target utterance read once, shared by its pairs
    for name in names:
        _note_mbrola(name)
        n = args.parallel_max_utterances or args.max_utterances
        src = build_corpus(name, cache_dir=args.cache_dir, max_utterances=n, progress=not args.quiet)
        matched = match_by_text(train, src)
        if not matched:
            raise ConfigError(f"parallel corpus {name!r} says none of the {len(train)} training sentences of "
                              f"{args.corpus!r}; expected a corpus built with the same seed (synthetic corpora)")
        for i, j in matched:
            if i not in target_audio:
                target_audio[i] = load_audio_16k(train[i].path)
            pairs.append((load_audio_16k(src[j].path), target_audio[i]))
            used.append(src[j])
    return pairs, used


def train_handler(args: argparse.Namespace) -> int:
    """train a shipped voice from an offline corpus (train extra)"""
    if (code := needs_train_extra("train")) is not None:
        return code
    from ..paths import shipped_models_dir
    from .build import build_voice
    from .corpus import build_corpus

    t0 = time.perf_counter()
    try:
        fc = _feature_config(args)
        _synthesis_options(args)
        # a bad option is refused before any corpus work
        tc = TrainConfig(steps=args.steps, hidden=args.hidden, batch=args.batch, threads=args.threads,
                         seed=args.seed, lookahead=args.lookahead, device=args.device, **_loss_options(args))
        aug = _augment(args)
        content = content_student(args.content)
        utts = build_corpus(args.corpus, cache_dir=args.cache_dir, max_utterances=args.max_utterances,
                            progress=not args.quiet)
        _note_mbrola(args.corpus)
        train, held = holdout_split(utts, args.holdout)
        pairs, par_utts = _parallel_pairs(args, train)
        licences = sorted({u.licence for u in train} | {u.licence for u in par_utts})
        path = build_voice([u.path for u in train], args.out or shipped_models_dir(), args.name,
                           description=args.description or f"trained on {args.corpus}", gender=args.gender,
                           data=f"corpus {args.corpus!r} (rtvc.train.corpus), {len(train)} utterances; "
                                f"{len(held)} held out (every {max(2, round(1 / args.holdout)) if args.holdout > 0 else 0}th)",
                           licence=" | ".join(licences), command=shlex.join(["python", "-m", "rtvc.train", *sys.argv[1:]]),
                           synthesis=args.synthesis, synthesis_options=_synthesis_options(args),
                           train=tc, aug=aug,
                           progress=not args.quiet, extra={"heldout": [u.path.name for u in held],
                                                           **({"parallel": {"corpora": args.parallel.split(","),
                                                                            "pairs": len(pairs)}} if pairs else {})},
                           feature_config=fc, parallel=pairs or None, realign=args.parallel_realign,
                           cache_dir=None if args.no_frames_cache else frames_cache_dir(args.cache_dir),
                           content=content)
    except RtvcError as e:
        return _fail("train", e)
    print(f"voice {args.name!r} written to {path} in {time.perf_counter() - t0:.0f} s")
    return 0


def add_head_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", required=True, type=Path, help="the neural voice's .onnx (its manifest beside it)")
    p.add_argument("--corpus", required=True, help="the corpus the voice was trained on (its held-out files stay out)")
    p.add_argument("--name", required=True, help="name of the new voice (the voice plus the head)")
    p.add_argument("--max-utterances", type=int, default=None)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="corpora cache (default: the rtvc data folder)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the user voices folder)")
    p.add_argument("--quiet", action="store_true")


def head_handler(args: argparse.Namespace) -> int:
    """train the experimental ONNX waveform head after a voice's synthesiser (train extra)"""
    if (code := needs_train_extra("train-head")) is not None:
        return code
    from ..converter import NeuralVoice
    from ..paths import user_voices_dir
    from .corpus import build_corpus
    from .dataset import load_audio_16k
    from .head import train_head, voice_output, write_head_voice

    t0 = time.perf_counter()
    try:
        voice = NeuralVoice.load(args.voice)
        voice.head = None  # a voice that has a head already: the new one replaces it, so it learns the plain output
        held = set(voice.manifest["training"].get("heldout", []))
        utts = [u for u in build_corpus(args.corpus, cache_dir=args.cache_dir, max_utterances=args.max_utterances,
                                        progress=not args.quiet) if u.path.name not in held]
        _note_mbrola(args.corpus)
        pairs = [voice_output(voice, load_audio_16k(u.path)) for u in utts]
        model, info = train_head([y for y, _ in pairs], [x for _, x in pairs], steps=args.steps,
                                 channels=args.channels, threads=args.threads, seed=args.seed,
                                 progress=not args.quiet)
        info.update(data=f"corpus {args.corpus!r}: the voice's own output for {len(utts)} utterances "
                         f"({sum(x.size for _, x in pairs) / 16000 / 60:.2f} min) against the utterances",
                    licence=" | ".join(sorted({u.licence for u in utts})),
                    command=shlex.join(["python", "-m", "rtvc.train", *sys.argv[1:]]))
        path = write_head_voice(args.voice, model, args.out or user_voices_dir(), args.name, training=info)
    except RtvcError as e:
        return _fail("train-head", e)
    print(f"voice {args.name!r} written to {path} in {time.perf_counter() - t0:.0f} s "
          f"(head loss {info['final_loss']} against {info['identity_loss']} without it)")
    return 0


SUBCOMMANDS = {
    "clone": (add_clone_arguments, clone_handler),
    "train-head": (add_head_arguments, head_handler),
    "train": (add_train_arguments, train_handler),
}
