"""The content student and the voice built on it (rtvc.train.content)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rtvc.features import N_INPUT, FeatureConfig  # noqa: E402
from rtvc.train.content import (PROSODY_INDEX, ContentStudent, ContentVoice, StudentConfig,  # noqa: E402
                                content_voice_factory, load_student, save_student, student_agreement,
                                train_student)
from rtvc.train.dataset import FrameSet, analyse_files  # noqa: E402
from rtvc.train.export import export_onnx  # noqa: E402
from rtvc.train.model import Converter  # noqa: E402
from rtvc.train.options import TrainConfig  # noqa: E402


def _voice(seed: int = 0) -> ContentVoice:
    torch.manual_seed(seed)
    s = ContentStudent(N_INPUT, 12, hidden=16, layers=2)
    c = Converter(12 + len(PROSODY_INDEX), 8, hidden=8, layers=2)
    for m in (s, c):  # non-trivial normalisation, so a forgotten one shows
        m.in_mean.uniform_(-1, 1)
        m.in_std.uniform_(0.5, 2)
        m.out_mean.uniform_(-1, 1)
        m.out_std.uniform_(0.5, 2)
    return ContentVoice(s.eval(), c.eval())


def test_stacked_state_streams_like_the_whole_sequence():
    v = _voice()
    assert (v.layers, v.hidden) == (4, 16)
    x = torch.randn(1, 30, N_INPUT) * 3
    with torch.no_grad():
        whole, h_whole = v(x, v.init_state(1))
        h = v.init_state(1)
        steps = []
        for t in range(30):
            y, h = v(x[:, t:t + 1], h)
            steps.append(y)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)
    assert torch.allclose(h, h_whole, atol=1e-6)
    assert torch.all(h[2:, :, 8:] == 0)  # the converter's rows use their first 8 entries only
    wide = ContentVoice(v.student, Converter(16, 8, hidden=24, layers=1))  # a converter wider than the student
    with torch.no_grad():
        _, hw = wide(x, wide.init_state(1))
    assert hw.shape == (3, 1, 24) and torch.all(hw[:2, :, 16:] == 0)
    # the converter reads the student's content and the prosody columns of the raw features
    with torch.no_grad():
        z, _ = v.converter_input(x, v.student.init_state(1))
    assert z.shape == (1, 30, 12 + 4)
    assert torch.equal(z[..., 12:], x[..., list(PROSODY_INDEX)])


def test_onnx_export_runs_frame_by_frame_like_torch(tmp_path):
    v = _voice(1)
    path = export_onnx(v, tmp_path / "v.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).standard_normal((1, 20, N_INPUT)) * 3).astype(np.float32)
    with torch.no_grad():
        ref, _ = v(torch.from_numpy(x), v.init_state(1))
    h = np.zeros((4, 1, 16), np.float32)
    out = []
    for t in range(20):
        y, h = sess.run(["envelope", "state_out"], {"features": x[:, t:t + 1], "state_in": h})
        out.append(y)
    np.testing.assert_allclose(np.concatenate(out, 1), ref.numpy(), atol=1e-4)


def test_the_student_learns_a_teacher_it_can_hear(tmp_path):
    # a teacher that is a fixed function of the clean frame's log-magnitude: the student must
    # learn it from disguised features, and beat predicting the mean
    rng = np.random.default_rng(0)
    n, bins = 4000, 257
    t = np.arange(n)
    logmag = (np.sin(t[:, None] * 0.03 + np.arange(bins)[None, :] * 0.05) - 4.0 +
              0.1 * rng.standard_normal((n, bins))).astype(np.float16)
    f0 = np.where((t // 50) % 2 == 0, 120.0, 0.0).astype(np.float32)
    frames = FrameSet(logmag, np.zeros((n, 64), np.float32), f0, (f0 > 0).astype(np.float32))
    w = rng.standard_normal((bins, 6)).astype(np.float32) / 16
    teacher = logmag.astype(np.float32) @ w
    cfg = StudentConfig(hidden=16, layers=1, steps=120, batch=8, frames=40, lr=1e-2)
    student, info = train_student(frames, teacher, config=cfg, progress=False)
    assert info["steps"] == 120 and np.isfinite(info["final_loss"])
    fc = FeatureConfig()
    from rtvc.train.dataset import Augmenter
    from rtvc.train.options import AugmentConfig

    clean = Augmenter(frames, config=fc, aug=AugmentConfig(clean_prob=1.0, noise_prob=0.0))
    x = clean.features_from_logmag(torch.from_numpy(logmag[:1000].astype(np.float32))[None],
                                   torch.from_numpy(f0[:1000])[None], torch.from_numpy(f0[:1000] > 0).float()[None])
    good = student_agreement(student, [(x[0].numpy(), teacher[:1000])])
    assert good["r2"] > 0.5 and good["cosine"] > 0.6
    with pytest.raises(ValueError, match="teacher has 10 frames"):
        train_student(frames, teacher[:10], config=cfg, progress=False)


class _Echo(ContentStudent):
    """A 'student' that outputs its input's first two columns (in the teacher's standardised space), or zeros."""

    def __init__(self, zeros: bool = False) -> None:
        super().__init__(3, 2, hidden=4, layers=1)
        self.zeros = zeros
        self.out_mean.copy_(torch.tensor([0.5, -1.0]))
        self.out_std.copy_(torch.tensor([2.0, 0.5]))

    def forward(self, features, state):  # noqa: ANN001, ANN201
        z = (features[..., :2] - self.out_mean) / self.out_std
        return (torch.zeros_like(z) if self.zeros else z), state


def test_agreement_scores_the_teacher_one_and_its_mean_zero():
    x = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32) * 3
    same = student_agreement(_Echo(), [(x, x[:, :2])])
    assert same["r2"] == pytest.approx(1.0) and same["cosine"] == pytest.approx(1.0, abs=1e-6)
    mean = student_agreement(_Echo(zeros=True), [(x, x[:, :2])])
    assert mean["r2"] == pytest.approx(0.0, abs=1e-6)
    flipped = student_agreement(_Echo(), [(x, 2 * x[:, :2].mean(0) - x[:, :2])])  # mirrored about the mean
    assert flipped["r2"] < 0.0


def test_factory_trains_only_the_converter(tmp_path):
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    x[4000:12000] += 0.3 * np.sin(2 * np.pi * 140 * np.arange(8000) / 16000).astype(np.float32)
    frames = analyse_files([x])
    torch.manual_seed(0)
    student = ContentStudent(N_INPUT, 6, hidden=8, layers=1).eval()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    from rtvc.train.train import train_converter

    model, info = train_converter(frames, config=TrainConfig(steps=5, batch=2, frames=20, hidden=8, layers=1, threads=1),
                                  model_factory=content_voice_factory(student), progress=False)
    assert isinstance(model, ContentVoice) and model.n_input == N_INPUT and model.n_output == frames.cepstrum.shape[1]
    assert all(torch.equal(before[k], v) for k, v in model.student.state_dict().items())
    assert model.converter.n_input == 6 + len(PROSODY_INDEX)


def test_student_round_trips_through_npz_and_damage_is_named(tmp_path):
    from rtvc.errors import ModelError

    s = _voice(3).student
    path = save_student(s, tmp_path / "s.npz", info={"steps": 7})
    back, info = load_student(path)
    assert info == {"steps": 7} and (back.hidden, back.layers, back.n_output) == (16, 2, 12)
    x = torch.randn(1, 9, N_INPUT)
    with torch.no_grad():
        assert torch.equal(s(x, s.init_state(1))[0], back(x, back.init_state(1))[0])
    with pytest.raises(ModelError, match="missing"):
        load_student(tmp_path / "nope.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError, match="cannot be read"):
        load_student(path)


def test_build_voice_with_a_student_loads_and_runs_at_run_time(tmp_path):
    from rtvc.converter import NeuralVoice
    from rtvc.train.build import build_voice

    rng = np.random.default_rng(4)
    t = np.arange(16000 * 3) / 16000
    x = (0.3 * np.sin(2 * np.pi * (120 + 20 * np.sin(t)) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    torch.manual_seed(0)
    student = save_student(ContentStudent(N_INPUT, 6, hidden=8, layers=1), tmp_path / "student.npz",
                           info={"teacher": "test"})
    path = build_voice([x], tmp_path / "out", "tiny", description="test", gender="male", data="a tone",
                       licence="test", train=TrainConfig(steps=3, batch=2, frames=20, hidden=12, layers=1, threads=1),
                       progress=False, content=student)
    voice = NeuralVoice.load(path)
    assert voice.manifest["training"]["content"]["teacher"] == "test"
    assert voice.manifest["training"]["content"]["student"] == "student.npz"
    assert tuple(voice.manifest["tensors"]["state_shape"]) == (2, 1, 12)
    st = voice.init_state()
    for i in range(20):
        y, st = voice.step(x[i * 80:(i + 1) * 80], st)
        assert np.all(np.isfinite(y))


def test_content_choice_names_a_missing_student(tmp_path, monkeypatch):
    from rtvc.errors import ConfigError
    from rtvc.train import commands

    assert commands.content_student("mfcc") is None
    monkeypatch.setattr("rtvc.paths.shipped_models_dir", lambda: tmp_path)
    assert commands.content_student("auto") is None  # nothing shipped in this folder
    (tmp_path / commands.CONTENT_STUDENT).write_bytes(b"x")
    assert commands.content_student("auto") == tmp_path / commands.CONTENT_STUDENT
    with pytest.raises(ConfigError, match="--content 'nope.npz': no such file"):
        commands.content_student("nope.npz")


def test_teacher_term_trains_the_student_towards_the_teacher_and_zero_weight_changes_nothing():
    from rtvc.train.content import teacher_term
    from rtvc.train.train import train_converter

    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    x[4000:12000] += 0.3 * np.sin(2 * np.pi * 140 * np.arange(8000) / 16000).astype(np.float32)
    frames = analyse_files([x])
    teacher = rng.standard_normal((len(frames), 6)).astype(np.float32)
    cfg = TrainConfig(steps=6, batch=2, frames=20, hidden=8, layers=1, threads=1)

    def trained(weight, tune=True):
        torch.manual_seed(0)
        student = ContentStudent(N_INPUT, 6, hidden=8, layers=1).eval()
        seen = []

        def term(model, xb, idx):
            seen.append(tuple(idx.shape))
            return teacher_term(teacher, weight)(model, xb, idx)

        model, info = train_converter(frames, config=cfg, progress=False, extra_loss=term,
                                      model_factory=content_voice_factory(student, tune_student=tune))
        return model, info, seen

    zero, info0, seen = trained(0.0)
    assert seen == [(2, 20)] * 6 and info0["final_loss"] > 0
    torch.manual_seed(0)
    plain, _ = train_converter(frames, config=cfg, progress=False,
                               model_factory=content_voice_factory(ContentStudent(N_INPUT, 6, hidden=8, layers=1).eval(),
                                                                   tune_student=True))
    assert all(torch.equal(a, b) for a, b in zip(zero.state_dict().values(), plain.state_dict().values()))
    heavy, _, _ = trained(100.0)
    assert not torch.equal(heavy.student.head.weight, zero.student.head.weight)


def test_a_bad_content_student_is_refused_before_any_corpus_work(capsys):
    from rtvc.train.__main__ import main

    code = main(["voice", "--corpus", "no-such-corpus", "--name", "v", "--gender", "male", "--content", "nope.npz"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--content 'nope.npz': no such file" in err and "no-such-corpus" not in err
