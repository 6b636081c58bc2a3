"""The critic over envelope sequences (rtvc.train.adversarial) and its place in the training loop."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtvc.errors import ConfigError  # noqa: E402
from rtvc.train.adversarial import ADV_START, Adversary, EnvelopeCritic  # noqa: E402
from rtvc.train.dataset import FrameSet  # noqa: E402
from rtvc.train.train import TrainConfig, train_converter  # noqa: E402


def _moving(batch: int = 4, frames: int = 48, n_cep: int = 8, seed: int = 0) -> torch.Tensor:
    """Envelopes with structure over time (what the critic should call real), ``(B, T, E)``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float32)[None, :, None]
    k = torch.arange(n_cep, dtype=torch.float32)[None, None, :]
    return torch.sin(0.4 * t * (1 + 0.1 * k) + 6.28 * torch.rand(batch, 1, n_cep, generator=g))


def test_critic_scores_every_frame_and_returns_its_inner_features():
    critic = EnvelopeCritic(8, channels=16)
    score, feats = critic(_moving())
    assert score.shape == (4, 48)
    assert [f.shape for f in feats] == [(4, 16, 48)] * 3


def test_converter_terms_are_off_before_the_start_step_and_train_only_the_converter():
    adv = Adversary(8, adv_weight=0.5, fm_weight=1.0, steps=100)
    assert adv.start == round(ADV_START * 100)
    target = _moving()
    pred = (0.3 * _moving(seed=1)).requires_grad_(True)
    term, parts = adv.converter_terms(pred, target, step=adv.start - 1)
    assert term.item() == 0.0 and parts == {}
    term, parts = adv.converter_terms(pred, target, step=adv.start)
    assert set(parts) == {"adv", "fm"} and parts["fm"] > 0 and term.item() > 0
    term.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None for p in adv.critic.parameters())  # the converter's step leaves the critic alone
    assert all(p.requires_grad for p in adv.critic.parameters())


def test_feature_matching_is_zero_for_a_perfect_prediction():
    adv = Adversary(8, adv_weight=0.0, fm_weight=1.0, steps=4)
    y = _moving()
    _, parts = adv.converter_terms(y.clone(), y, step=4)
    assert parts["fm"] == pytest.approx(0.0, abs=1e-7)


def test_critic_learns_to_tell_moving_envelopes_from_flat_ones():
    torch.manual_seed(0)
    adv = Adversary(8, adv_weight=1.0, fm_weight=0.0, steps=1, lr=2e-3)
    real = _moving(seed=2)
    fake = real.mean(dim=1, keepdim=True).expand_as(real) + 0.05 * torch.randn_like(real)  # over-smoothed
    first = adv.critic_step(fake, real)["critic"]
    for _ in range(60):
        last = adv.critic_step(fake, real)["critic"]
    assert last < 0.5 * first
    with torch.no_grad():
        s_real, _ = adv.critic(real)
        s_fake, _ = adv.critic(fake)
    assert float(s_real.mean()) > float(s_fake.mean()) + 0.5


def _frames(n: int = 600, n_cep: int = 16) -> tuple[FrameSet, "FeatureConfig"]:  # noqa: F821
    """Frames of a speaker with a voiced, moving spectrum (enough for the training loop to run)."""
    from rtvc.features import FeatureConfig

    c = FeatureConfig(n_cep=n_cep)
    rng = np.random.default_rng(0)
    nb = c.n_fft // 2 + 1
    t = np.arange(n)[:, None]
    logmag = (-4 + np.sin(0.05 * t + np.linspace(0, 6, nb)[None]) + 0.1 * rng.standard_normal((n, nb)))
    cep = np.sin(0.05 * t * (1 + 0.1 * np.arange(n_cep))[None]).astype(np.float32)
    f0 = np.where(np.sin(0.02 * t[:, 0]) > -0.3, 120.0, 0.0).astype(np.float32)
    return FrameSet(logmag.astype(np.float16), cep, f0, (f0 > 0).astype(np.float32)), c


def test_training_with_the_critic_runs_reports_its_terms_and_changes_the_weights():
    frames, fc = _frames()
    cfg = dict(steps=8, batch=2, frames=24, hidden=8, layers=1, threads=1)
    plain, _ = train_converter(frames, config=TrainConfig(**cfg), feature_config=fc, progress=False)
    again, _ = train_converter(frames, config=TrainConfig(**cfg, adv_weight=0.0, fm_weight=0.0), feature_config=fc,
                               progress=False)
    critic, info = train_converter(frames, config=TrainConfig(**cfg, adv_weight=0.5, fm_weight=1.0),
                                   feature_config=fc, progress=False)
    sd = {k: v for k, v in plain.state_dict().items()}
    # weights 0: no critic, the same training as before, bit for bit
    assert all(torch.equal(sd[k], v) for k, v in again.state_dict().items())
    # with the critic from step 2 of 8 on, the converter learns other weights, all finite
    assert any(not torch.equal(sd[k], v) for k, v in critic.state_dict().items())
    assert all(torch.isfinite(v).all() for v in critic.state_dict().values())
    assert np.isfinite(info["final_loss"])


@pytest.mark.parametrize("field,value", [("adv_weight", -0.1), ("fm_weight", float("inf"))])
def test_bad_critic_weights_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match=f"{field} {value!r}; expected a finite number >= 0"):
        TrainConfig(**{field: value})
