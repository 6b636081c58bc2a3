"""``NeuralVoice``: the streaming ONNX voice stage (features -> GRU -> envelope -> synthesis).

Per hop of 80 samples at 16 kHz::

    x -> FeatureExtractor (causal STFT, MFCC, F0)            -> features [1, 1, F]
         (its mel filterbank warped by the source/target F0 ratio: WarpNormaliser)
      -> timbre mean map: MFCC c1.. - running source mean (voiced frames) + target mean
      -> ONNX GRU (state in/out, one frame per step)          -> target cepstrum [1, 1, E]
      -> synthesis voicing: the tracker's, or with continuity (manifest ``f0_continuity``)
      -> F0 map: log2 f0 - running source mean + target mean + pitch_st / 12
      -> Synthesizer (pulse+noise or source excitation, target envelope, short OLA) -> y
      -> optional waveform head (manifest ``head``: causal ONNX convolutions, state in/out) -> y

The stage latency is the synthesis OLA delay (``syn_len - hop`` = 80 samples, 5 ms): the
analysis window ends at the current hop and the GRU looks at no future frame; a voice whose
manifest gives ``lookahead_frames`` k (trained with ``--lookahead k``) outputs frame t - k's
envelope after hearing frame t, which adds k hops to the latency.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._native.f0 import yin_continue
from ._native.mix import all_finite
from .errors import AudioFileError, ConfigError, ModelError
from .features import FeatureConfig, FeatureExtractor, input_feature_names
from .manifest import printable, read_manifest, sha256_file
# the mappers live in .normalise; rtvc.train.dataset and the tests import them from here too
from .normalise import (F0_EMA_FRAMES, F0_WARMUP_FRAMES, TIMBRE_EMA_FRAMES, TIMBRE_RAMP_FRAMES,  # noqa: F401
                        WARP_GAMMA, WARP_GRID, WARP_MIN_FRAMES, F0Mapper, TimbreMapper, WarpNormaliser,
                        target_timbre_mean)
from .params import shown
from .synthesis import METHODS, Synthesizer, check_options
from .types import HOP, MODEL_RATE, NEURAL_DEVICES, Audio

__all__ = ["NeuralVoice", "NeuralState", "AnalysisState", "HeadState", "DelayLine", "F0Mapper", "TimbreMapper", "WarpNormaliser",
           "target_timbre_mean", "select_providers"]

log = logging.getLogger(__name__)


def select_providers(device: str = "cpu", providers: list[str] | None = None) -> list[str]:
    """Execution providers for ``device`` ('cpu', 'cuda' or 'auto'); the choice is logged."""
    import onnxruntime as ort

    if providers:
        return list(providers)
    if device not in NEURAL_DEVICES:
        raise ModelError(f"device {device!r}; expected one of {NEURAL_DEVICES}")
    avail = ort.get_available_providers()
    if device in ("cuda", "auto"):
        if "CUDAExecutionProvider" in avail:
            log.info("onnxruntime: using CUDAExecutionProvider (asked %r)", device)
            _preload_cuda_libraries(ort)
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        global _cuda_fallback_told
        loud = device == "cuda" and not _cuda_fallback_told  # said once per process, then in the debug log
        _cuda_fallback_told |= loud
        (log.warning if loud else log.info if device == "auto" else log.debug)(
            "onnxruntime: CUDA asked (%r) but this onnxruntime offers only %s (CUDA needs the gpu extra: "
            "onnxruntime-gpu in place of onnxruntime); running on CPU", device, avail)
    return ["CPUExecutionProvider"]


_cuda_preloaded = False
_cuda_fallback_told = False


def _check_analysis(path: Path, m: dict[str, Any]) -> None:
    """The analysis a (structurally checked) manifest asks for, if it is the one this rtvc runs:
    the same window, mel and MFCC sizes and input layout (a voice chooses only its cepstral
    order, ``n_cep``) and a synthesis method it has."""
    fc = m["features"]["config"]
    base = FeatureConfig().as_dict()
    where = f"voice manifest {printable(str(path))}"
    for k in ("n_fft", "syn_len", "n_mels", "n_mfcc"):
        if fc[k] != base[k]:
            raise ModelError(f"{where}: features.config.{k} = {fc[k]}; expected {base[k]}, the "
                             "analysis this rtvc runs (the voice was made for another one)")
    names = input_feature_names()
    if m["features"]["input_names"] != names:
        raise ModelError(f"{where}: features.input_names = {shown(m['features']['input_names'])}; expected "
                         f"the inputs this rtvc computes, {names[0]}..{names[-1]} ({len(names)})")
    if m["synthesis"] not in METHODS:
        raise ModelError(f"{where}: synthesis = {shown(m['synthesis'])}; expected one of {METHODS}")
    try:
        check_options(m.get("synthesis_options"))
    except ConfigError as e:
        raise ModelError(f"{where}: synthesis_options: {e}") from None
    try:
        FeatureConfig(**fc)
    except ConfigError as e:
        raise ModelError(f"{where}: features.config: {e}") from None


def _check_sha256(path: Path, expected: str, *, what: str = "voice model") -> None:
    """Raise ModelError unless ``path`` has the sha256 its manifest gives."""
    digest = sha256_file(path)
    if digest != expected:
        raise ModelError(f"{what} {path} has sha256 {digest}; expected {expected} (from the manifest): "
                         "the file is damaged or was replaced")


def _check_tensors(sess: Any, what: str, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    """Raise ModelError unless ``sess`` has exactly these input and output names; return the
    inputs' shapes by name."""
    ins = {i.name: i.shape for i in sess.get_inputs()}
    outs = {o.name for o in sess.get_outputs()}
    if set(ins) != set(inputs) or outs != set(outputs):
        raise ModelError(f"{what}: tensors in={sorted(ins)} out={sorted(outs)}; expected "
                         f"in={sorted(inputs)} out={sorted(outputs)}")
    return ins


def _preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the ``nvidia-*`` pip packages (onnxruntime-gpu's
    ``[cuda,cudnn]`` extras) once, so its CUDA provider finds them without LD_LIBRARY_PATH;
    a no-op where this onnxruntime has no ``preload_dlls`` (it then searches the system paths)."""
    global _cuda_preloaded
    if _cuda_preloaded or not hasattr(ort, "preload_dlls"):
        return
    _cuda_preloaded = True
    try:
        ort.preload_dlls()
    except Exception as e:  # a missing library shows again, with its name, when the session starts
        log.info("onnxruntime: preloading CUDA libraries failed (%s); the system library path is searched", e)


def _load_head(path: Path, manifest: dict[str, Any], opts: Any) -> Any:
    """The waveform head's onnxruntime session, checked against the manifest's ``head`` section.

    It runs on the CPU provider whatever the converter's device: a few thousand multiply-adds
    per sample, where a GPU would cost two copies per hop."""
    import onnxruntime as ort

    h = manifest["head"]
    hp = path.with_name(h["onnx"])
    if not hp.is_file():
        raise ModelError(f"voice model {path}: its head {hp.name} is missing; expected it beside the manifest")
    _check_sha256(hp, h["sha256"], what="voice head")
    try:
        sess = ort.InferenceSession(str(hp), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad bytes
        raise ModelError(f"voice head {hp} cannot be loaded by onnxruntime: {e}") from e
    t = h["tensors"]
    ins = _check_tensors(sess, f"voice head {hp}", [t["audio_in"], t["state_in"]], [t["audio_out"], t["state_out"]])
    if list(ins[t["state_in"]]) != list(t["state_shape"]):
        raise ModelError(f"voice head {hp}: state shape {ins[t['state_in']]}; expected {t['state_shape']}")
    hop = int(manifest["hop"])
    try:
        y, st = sess.run([t["audio_out"], t["state_out"]], {t["audio_in"]: np.zeros((1, hop), np.float32),
                                                             t["state_in"]: np.zeros(t["state_shape"], np.float32)})
    except Exception as e:
        raise ModelError(f"voice head {hp} fails on one hop of silence: {e}") from e
    if y.shape != (1, hop) or list(st.shape) != list(t["state_shape"]) or not np.all(np.isfinite(y)):
        raise ModelError(f"voice head {hp}: one hop gives audio {y.shape} and state {st.shape}; expected "
                         f"(1, {hop}) finite and {tuple(t['state_shape'])}")
    return sess


def _pingpong_bindings(session: Any, names: tuple[str, str, str, str], x: Any, y: Any, h: list[Any]) -> list[Any]:
    """Two io-bindings of a model with a recurrent state: ``names`` are (input, state in, output,
    state out); binding ``i`` reads ``h[i]`` and writes ``h[1 - i]``, so the state ping-pongs
    between two buffers and a hop allocates nothing."""
    bindings = []
    for i in (0, 1):
        b = session.io_binding()
        b.bind_ortvalue_input(names[0], x)
        b.bind_ortvalue_input(names[1], h[i])
        b.bind_ortvalue_output(names[2], y)
        b.bind_ortvalue_output(names[3], h[1 - i])
        bindings.append(b)
    return bindings


@dataclass(eq=False)
class DelayLine:
    """The source values of the last ``lookahead + 1`` frames (a ring; silence at first)."""

    f0: np.ndarray  # float64 (n,), the synthesis' F0 (Hz)
    per: np.ndarray  # float64 (n,), its voicing
    spec: np.ndarray  # (n, n_bins) complex, the source spectrum
    cep: np.ndarray  # (n, n_cep), the source cepstrum
    pos: int  # the slot the next frame goes into


@dataclass(eq=False)
class HeadState:
    """The waveform head's buffers, bound once like the converter's (state ping-pongs between two)."""

    x: np.ndarray  # float32 (1, hop), the head's input: this hop of synthesiser output
    y: np.ndarray  # float32 (1, hop), its output
    h: list[np.ndarray]  # the two recurrent state buffers
    h_in: int  # the one the next hop reads
    bindings: list[Any]  # onnxruntime IOBindings, one per ``h_in``
    ort_values: list[Any]  # the bindings refer to these; they keep the arrays alive
    resets: int  # non-finite results that restarted the state from zeros


@dataclass(eq=False)
class AnalysisState:
    """The analysis side of a stream: features and the source speaker's running statistics
    (:meth:`NeuralVoice.prime` runs a scratch copy of it)."""

    fx: dict[str, Any]  # the feature extractor's state (its ``feats`` is the model's input)
    f0: np.ndarray  # F0Mapper state
    warp: np.ndarray | None  # WarpNormaliser state (None: no warp)
    timbre: np.ndarray | None  # TimbreMapper state (None: no target timbre)
    f0_syn_hz: float  # the synthesis' F0 of the last frame (voicing with continuity)


@dataclass(eq=False)
class NeuralState:
    """Everything one :class:`NeuralVoice` stream owns (allocated in ``init_state``)."""

    analysis: AnalysisState
    syn: dict[str, Any]  # the synthesiser's state
    gpu: bool  # the session runs on the CUDA provider
    h: list[Any]  # the two state buffers (OrtValues; on the CPU provider views of host memory)
    h_host: list[np.ndarray] | None  # the host memory of ``h`` (CPU provider)
    h_in: int  # the one of ``h`` the next hop reads
    h_zero: np.ndarray  # zeros of the state's shape, for a reset on the GPU
    bindings: list[Any]  # onnxruntime IOBindings, one per ``h_in``
    ort_values: list[Any]  # the bindings refer to these; they keep the arrays alive
    cep_out: np.ndarray  # float32 (n_output,), the envelope the model writes
    resets: int  # non-finite results that restarted the recurrent state from zeros
    delay: DelayLine | None  # the lookahead's delay line (None: no lookahead)
    head: HeadState | None  # the waveform head's buffers (None: no head)


class NeuralVoice:
    """A neural voice stage; build it with :meth:`load`."""

    def __init__(self, session: Any, manifest: dict[str, Any], *, path: Path) -> None:
        self.session = session
        self.manifest = manifest
        self.path = path
        fc = manifest["features"]["config"]
        self.config = FeatureConfig(**{k: int(v) for k, v in fc.items()})
        self.fx = FeatureExtractor(self.config)
        try:
            self.synth = Synthesizer(manifest["synthesis"], config=self.config,
                                     options=manifest.get("synthesis_options"))
        except ConfigError as e:
            raise ModelError(f"voice model {path}: {e}") from e
        opts, t = self.synth.options, self.fx.f0
        # voicing with continuity (None = off): yin_continue's arguments other than the frame's,
        # the tracker's lag range and rate, then the option's threshold and tolerance
        self._continue_args = (((t.tau_min, t.tau_max, float(t.sample_rate)),
                                (opts["f0_continuity"], opts["f0_continuity_tolerance"]))
                               if opts["f0_continuity"] > 0.0 else None)
        # a converter with lookahead k gives frame t - k's envelope after hearing frame t: the
        # synthesis takes that frame's source values (F0, voicing, spectrum) from a k-hop delay line
        self.lookahead = int(manifest.get("lookahead_frames", 0))
        self.latency = self.synth.latency + self.lookahead * self.config.hop
        t = manifest["tensors"]
        self.names = (t["features"], t["state_in"], t["envelope"], t["state_out"])
        self.state_shape = tuple(t["state_shape"])
        self.n_input = int(manifest["features"]["n_input"])
        self.f0map = F0Mapper(float(manifest["f0"]["log2_mean"]))
        self.warp: WarpNormaliser | None = WarpNormaliser(self.config, float(manifest["f0"]["log2_mean"]))
        self.timbre: TimbreMapper | None = None  # set by ``load`` from the preview clip
        self.pitch_st = 0.0
        self.formant_ratio = 1.0
        self.session_options: Any = None  # set by ``load``; a CPU fallback session reuses them
        self.cpu_fallback_tried = False
        self.head: Any = None  # the waveform head's session (manifest ``head``), set by ``load``

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, *, model_rate: int = MODEL_RATE, hop: int = HOP,
             providers: list[str] | None = None, threads: int = 1, device: str = "cpu") -> "NeuralVoice":
        """Load ``path`` (.onnx) and its manifest (same stem, .json); check everything.

        Raises
        ------
        ModelError
            Missing files, manifest problems, sha256 mismatch, rate/hop other than asked,
            tensor names or shapes other than the manifest's, bytes onnxruntime cannot load.
        """
        import onnxruntime as ort

        path = Path(path)
        if path.suffix != ".onnx":
            path = path.with_suffix(".onnx")
        m = read_manifest(path.with_suffix(".json"), model_rate=model_rate, hop=hop)
        _check_analysis(path.with_suffix(".json"), m)
        if not path.is_file():
            raise ModelError(f"voice model {path} is missing; expected it beside {path.with_suffix('.json').name}")
        _check_sha256(path, m["onnx_sha256"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        provs = select_providers(device, providers)
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=provs)
        except Exception as e:  # onnxruntime raises its own exception types for bad bytes
            raise ModelError(f"voice model {path} cannot be loaded by onnxruntime: {e}") from e
        got = sess.get_providers()
        if "CUDAExecutionProvider" in provs and "CUDAExecutionProvider" not in got:
            log.warning("voice %s: onnxruntime could not start its CUDA provider (its own message above says "
                        "why: usually a missing CUDA or cuDNN library); running on CPU", m["name"])
        log.info("voice %s: providers %s, %d thread(s)", m["name"], got, threads)
        t = m["tensors"]
        ins = _check_tensors(sess, f"voice model {path}", [t["features"], t["state_in"]],
                             [t["envelope"], t["state_out"]])
        n_in = m["features"]["n_input"]
        if ins[t["features"]][-1] != n_in:
            raise ModelError(f"voice model {path}: features width {ins[t['features']][-1]}; expected {n_in}")
        if list(ins[t["state_in"]]) != list(t["state_shape"]):
            raise ModelError(f"voice model {path}: state shape {ins[t['state_in']]}; expected {t['state_shape']}")
        voice = cls(sess, m, path=path)
        voice.session_options = opts
        if "head" in m:
            voice.head = _load_head(path, m, opts)
        voice._load_timbre(path.with_name(path.stem + ".preview.wav"))
        voice._warm_up()
        return voice

    def _load_timbre(self, preview: Path) -> None:
        """The target's mean MFCC from its preview clip (real target speech, shipped with every
        voice); without a usable clip the input is not normalised (logged)."""
        from .wavio import read_audio

        if not preview.is_file():
            log.info("voice %s: no preview clip %s; speaker normalisation off", self.manifest["name"], preview.name)
            return
        try:
            x, _ = read_audio(preview, resample_to=self.config.sample_rate)
        except AudioFileError as e:  # a damaged clip must not stop the voice from loading
            log.warning("voice %s: %s; speaker normalisation off", self.manifest["name"], e)
            return
        mean = target_timbre_mean(x, self.fx, self.config.n_mfcc)
        if mean is None:
            log.warning("voice %s: preview clip %s has too little voiced speech; speaker normalisation off",
                        self.manifest["name"], preview)
            return
        self.timbre = TimbreMapper(mean)

    def _warm_up(self) -> None:
        # the widths the model really gives, before outputs are bound to buffers of the manifest's
        feed = {self.names[0]: np.zeros((1, 1, self.n_input), np.float32),
                self.names[1]: np.zeros(self.state_shape, np.float32)}
        env, h = self.session.run(self.names[2:], feed)
        n_out = self.manifest["features"]["n_output"]
        if env.shape != (1, 1, n_out):
            raise ModelError(f"voice model {self.path}: envelope shape {env.shape} for one frame; "
                             f"expected (1, 1, {n_out})")
        if h.shape != self.state_shape:
            raise ModelError(f"voice model {self.path}: state_out shape {h.shape}; expected {self.state_shape}")
        st = self.init_state()
        z = np.zeros(self.config.hop, np.float32)
        for _ in range(3):
            y, st = self.step(z, st)
        if not np.all(np.isfinite(y)):
            raise ModelError(f"voice model {self.path} gives non-finite output on silence")

    # ------------------------------------------------------------------ stage contract
    def set_params(self, params: Any) -> None:
        self.pitch_st = float(params.pitch_st)
        self.formant_ratio = float(params.formant_ratio)

    def init_state(self) -> NeuralState:
        """Buffers of one stream, with the ONNX inputs and outputs bound to them once.

        The features kernel writes straight into the model's input, the model writes the
        envelope straight into ``cep_out``, and the recurrent state ping-pongs between two
        buffers (``h_in`` names the one the next hop reads): a hop allocates nothing and passes
        no dictionaries to onnxruntime. On the CPU provider the bound buffers share memory with
        NumPy arrays. On the CUDA provider the state stays on the GPU (no copies), and the
        features input is bound again each hop: onnxruntime copies a host input to the GPU when
        it is bound, not when the model runs.
        """
        import onnxruntime as ort

        fx = self.fx.init_state(own_filterbank=self.warp is not None)
        n_out = int(self.manifest["features"]["n_output"])
        feats = fx["feats"].reshape(1, 1, self.n_input)  # a view: the model reads what the kernel wrote
        cep = np.zeros(n_out, np.float32)
        gpu = self.session.get_providers()[0] == "CUDAExecutionProvider"
        h_host = [np.zeros(self.state_shape, np.float32) for _ in (0, 1)]
        # on the CPU the OrtValues wrap ``h_host`` (which must stay alive); on the GPU they are copies
        h = [ort.OrtValue.ortvalue_from_numpy(a, *(("cuda", 0) if gpu else ())) for a in h_host]
        ov = [ort.OrtValue.ortvalue_from_numpy(a) for a in (feats, cep.reshape(1, 1, n_out))]
        bindings = _pingpong_bindings(self.session, self.names, ov[0], ov[1], h)
        analysis = AnalysisState(fx=fx, f0=self.f0map.init_state(),
                                 warp=self.warp.init_state() if self.warp is not None else None,
                                 timbre=self.timbre.init_state() if self.timbre is not None else None,
                                 f0_syn_hz=0.0)
        return NeuralState(
            analysis=analysis, syn=self.synth.init_state(), gpu=gpu, h=h, h_host=None if gpu else h_host, h_in=0,
            h_zero=np.zeros(self.state_shape, np.float32), bindings=bindings, ort_values=ov, cep_out=cep,
            resets=0, delay=self._init_delay(fx) if self.lookahead else None,
            head=self._init_head() if self.head is not None else None)

    def _init_head(self) -> HeadState:
        """The head's buffers, bound once like the converter's (state ping-pongs between two)."""
        import onnxruntime as ort

        t = self.manifest["head"]["tensors"]
        hop = self.config.hop
        x, y = np.zeros((1, hop), np.float32), np.zeros((1, hop), np.float32)
        h = [np.zeros(tuple(t["state_shape"]), np.float32) for _ in (0, 1)]
        ov = [ort.OrtValue.ortvalue_from_numpy(a) for a in (x, y, *h)]
        names = (t["audio_in"], t["state_in"], t["audio_out"], t["state_out"])
        bindings = _pingpong_bindings(self.head, names, ov[0], ov[1], ov[2:])
        return HeadState(x=x, y=y, h=h, h_in=0, bindings=bindings, ort_values=ov, resets=0)

    def _run_head(self, y: Audio, hs: HeadState) -> Audio:
        """The head on one hop of synthesiser output; a non-finite result restarts its state from
        zeros and lets this hop through unchanged."""
        hs.x[0] = y
        i = hs.h_in
        self.head.run_with_iobinding(hs.bindings[i])
        hs.h_in = 1 - i
        if not (all_finite(hs.y) and all_finite(hs.h[1 - i])):
            hs.h[1 - i][:] = 0.0
            hs.resets += 1
            return hs.x[0]
        return hs.y[0]

    def _init_delay(self, fx: dict[str, Any]) -> DelayLine:
        """The source values of the last ``lookahead + 1`` frames (a ring; silence at first)."""
        n = self.lookahead + 1
        return DelayLine(f0=np.zeros(n), per=np.zeros(n), spec=np.zeros((n, *fx["spec"].shape), fx["spec"].dtype),
                         cep=np.zeros((n, *fx["cep"].shape), fx["cep"].dtype), pos=0)

    def _fall_back_to_cpu(self, error: Exception) -> None:
        """The CUDA provider failed at run time (a lost or reset GPU): run this voice on the CPU
        from now on. Loading the CPU session takes tens of milliseconds in the audio path, once,
        instead of a voice that stays silent."""
        import onnxruntime as ort

        if self.cpu_fallback_tried:
            return
        self.cpu_fallback_tried = True
        name = self.manifest["name"]
        log.error("voice %s: onnxruntime's CUDA provider failed (%s: %s); moving the voice to the CPU",
                  name, type(error).__name__, error)
        try:
            _check_sha256(self.path, self.manifest["onnx_sha256"])
            self.session = ort.InferenceSession(str(self.path), sess_options=self.session_options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # the file went away or changed since the voice was loaded
            log.error("voice %s: cannot load it on the CPU either (%s); it stays silent", name, e)

    @staticmethod
    def recurrent_state(state: NeuralState) -> np.ndarray:
        """A host copy of the recurrent state the next hop reads (for inspection; allocates)."""
        return state.h[state.h_in].numpy().copy()

    def _analyse(self, x: Audio, a: AnalysisState) -> tuple[dict[str, Any], float, float]:
        """One hop of analysis: the warp, the features (written into the model's input,
        timbre-normalised) and the synthesis' F0 and voicing. Reads ``a.f0``; writes the rest of ``a``."""
        if self.warp is not None:
            self.warp.update(a.f0, a.fx["fb"], a.warp)
        feats, fs = self.fx.step(x, a.fx)
        f0_hz, per = fs["f0_hz"], fs["periodicity"]
        if self.timbre is not None:
            self.timbre.map(feats, f0_hz > 0.0, a.timbre)
        if self._continue_args is not None:  # the synthesis' voicing only; the model's input is the tracker's
            lags, opt = self._continue_args
            f0_hz, per = yin_continue(fs["f0"].cmndf, *lags, f0_hz, per, a.f0_syn_hz, *opt)
            a.f0_syn_hz = f0_hz
        return fs, f0_hz, per

    def prime(self, x: Audio, state: NeuralState) -> int:
        """Learn the source speaker from audio the stream heard before this voice was selected.

        ``x`` (model rate, oldest first; a trailing part hop is ignored) runs through this
        voice's analysis alone (warp, features, timbre and F0 statistics, in :meth:`step`'s
        order, lookahead included) in a scratch stream that starts from ``state``'s statistics.
        The statistics that describe the speaker (the F0 mapper's and the timbre mapper's
        running means and frame counts, the warp and its filterbank) are then copied into
        ``state``; its analysis buffers, recurrent state and synthesis are left as they are,
        so the stream goes on from its own audio. A voice selected mid-session therefore starts
        where it would be had it been playing all along, instead of re-learning the speaker
        over the first seconds (its words and intonation suffer there: ``bench/quality.py
        --warm``). Allocates; call it off the audio thread, before ``state`` is used.

        Returns the voiced frames the F0 statistics rest on.
        """
        hop = self.config.hop
        x = np.ascontiguousarray(x, np.float32)
        fx = self.fx.init_state(own_filterbank=self.warp is not None)
        live = state.analysis
        if self.warp is not None:
            fx["fb"][:] = self.warp.bank[int(live.warp[0])]
        scratch = AnalysisState(fx=fx, f0=live.f0.copy(), warp=None if live.warp is None else live.warp.copy(),
                                timbre=None if live.timbre is None else live.timbre.copy(), f0_syn_hz=0.0)
        delayed = [0.0] * self.lookahead  # the synthesis' F0 of the last ``lookahead`` frames (step's delay line)
        for i in range(x.shape[0] // hop):
            _, f0_hz, _ = self._analyse(x[i * hop:(i + 1) * hop], scratch)
            if delayed:
                delayed.append(f0_hz)
                f0_hz = delayed.pop(0)
            self.f0map.map(f0_hz, 0.0, scratch.f0)
        live.f0[:] = scratch.f0
        if scratch.timbre is not None:
            live.timbre[:] = scratch.timbre
        if scratch.warp is not None:
            live.warp[:] = scratch.warp
            live.fx["fb"][:] = fx["fb"]
        return int(live.f0[1])

    def step(self, x: Audio, state: NeuralState) -> tuple[Audio, NeuralState]:
        fs, f0_hz, per = self._analyse(x, state.analysis)
        i = state.h_in
        binding = state.bindings[i]
        if state.gpu:
            try:
                binding.bind_ortvalue_input(self.names[0], state.ort_values[0])  # copies this hop's features
                self.session.run_with_iobinding(binding)
            except Exception as e:
                self._fall_back_to_cpu(e)
                raise  # the engine silences this hop and asks for a fresh state: on the CPU
        else:
            self.session.run_with_iobinding(binding)
        cep = state.cep_out
        # bad numbers never enter the recurrent state: start it again from zeros. On the GPU the
        # state is not read back each hop; a non-finite state shows in the envelope it makes.
        ok = all_finite(cep) if state.gpu else all_finite(state.h_host[1 - i]) and all_finite(cep)
        if not ok:
            if state.gpu:
                state.h[1 - i].update_inplace(state.h_zero)
            else:
                state.h_host[1 - i][:] = 0.0
            state.resets += 1
            cep[:] = 0.0
            cep[0] = math.log(1e-5)  # silence
        state.h_in = 1 - i
        spec, src_cep = fs["spec"], fs["cep"]
        d = state.delay
        if d is not None:  # this frame in, the frame ``lookahead`` hops old out
            j = d.pos
            d.f0[j], d.per[j] = f0_hz, per
            d.spec[j] = spec
            d.cep[j] = src_cep
            j = (j + 1) % len(d.f0)
            d.pos = j
            f0_hz, per, spec, src_cep = float(d.f0[j]), float(d.per[j]), d.spec[j], d.cep[j]
        f0_out = self.f0map.map(f0_hz, self.pitch_st, state.analysis.f0)
        y = self.synth.step(cep, state.syn, f0_hz=f0_out, voicing=per,
                            formant_ratio=self.formant_ratio, src_spec=spec, src_cep=src_cep,
                            src_f0_hz=f0_hz)
        if state.head is not None:
            y = self._run_head(y, state.head)
        return y, state
