"""Training disguises (rtvc.train.dataset.Augmenter): the band-dependent warp, the random EQ and the
run time's input normalisation on a share of the rows."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtvc.errors import ConfigError  # noqa: E402
from rtvc.features import FeatureConfig  # noqa: E402
from rtvc.train.__main__ import main as train_main  # noqa: E402
from rtvc.train.dataset import EQ_ORDER, AugmentConfig, Augmenter, FrameSet  # noqa: E402


def _frames(n: int = 400, seed: int = 0) -> FrameSet:
    rng = np.random.default_rng(seed)
    c = FeatureConfig()
    nb = c.n_fft // 2 + 1
    k = np.arange(nb)
    t = np.arange(n)[:, None]
    logmag = (-3.0 + np.cos(2 * np.pi * k / 90.0 + 0.05 * t) - k / 200.0).astype(np.float16)
    f0 = np.where(rng.random(n) < 0.7, 120.0 + 20 * np.sin(0.1 * np.arange(n)), 0.0).astype(np.float32)
    return FrameSet(logmag=logmag, cepstrum=np.zeros((n, c.n_cep), np.float32), f0_hz=f0,
                    periodicity=(f0 > 0).astype(np.float32))


def _warp_reference(x: np.ndarray, r_of_k) -> np.ndarray:
    """x(k / r(k)) by linear interpolation, one bin at a time, last bin held."""
    k = x.shape[-1]
    out = np.empty_like(x)
    for j in range(k):
        pos = min(j / r_of_k(j), k - 1)
        i0 = min(int(np.floor(pos)), k - 2)
        f = pos - i0
        out[..., j] = x[..., i0] * (1 - f) + x[..., i0 + 1] * f
    return out


def test_band_dependent_warp_equals_its_reference_and_one_ratio_is_the_plain_warp():
    x = torch.randn(2, 3, 257, generator=torch.Generator().manual_seed(1))
    lo, hi = torch.tensor([0.8, 1.2]), torch.tensor([1.1, 0.9])
    got = Augmenter._warp(x, lo, hi).numpy()
    for b in range(2):
        r = lambda j, b=b: float(lo[b]) * (float(hi[b]) / float(lo[b])) ** (j / 256)  # noqa: E731
        np.testing.assert_allclose(got[b], _warp_reference(x[b].numpy(), r), atol=5e-4)  # float32 positions
    np.testing.assert_allclose(Augmenter._warp(x, lo, lo).numpy(), Augmenter._warp(x, lo).numpy(), atol=1e-6)


def _batch(aug: AugmentConfig, seed: int = 3):
    a = Augmenter(_frames(), aug=aug, seed=seed)
    return a.batch(6, 50)


def test_defaults_leave_the_disguise_as_it_was():
    # the new options at 0 draw no random numbers and change nothing
    x0, y0 = _batch(AugmentConfig())
    x1, y1 = _batch(AugmentConfig(warp_spread=0.0, eq_nepers=0.0, normalise=0.0))
    assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_random_eq_is_smooth_bounded_and_spares_the_targets_and_clean_rows():
    aug = AugmentConfig(eq_nepers=1.0, noise_prob=0.0, clean_prob=0.5)
    a = Augmenter(_frames(), aug=aug, seed=5)
    seen = {}
    orig = a._features_from_power

    def spy(power, f0, per):
        seen["logmag"] = 0.5 * torch.log(power)
        return orig(power, f0, per)

    a._features_from_power = spy
    _, y = a.batch(8, 50)
    b = Augmenter(_frames(), aug=AugmentConfig(noise_prob=0.0, clean_prob=0.5), seed=5)
    b._features_from_power = lambda power, f0, per: seen.setdefault("plain", 0.5 * torch.log(power)) is None or orig(power, f0, per)
    _, y_plain = b.batch(8, 50)
    # the EQ draws its own numbers after the others: same disguises otherwise, same targets
    assert torch.allclose(y, y_plain)
    d = (seen["logmag"] - seen["plain"]).numpy()
    assert np.ptp(d, axis=1).max() < 1e-3  # one curve per sequence, the same in every frame
    curve = d[:, 0, :]
    bound = sum(1.0 / k for k in range(1, EQ_ORDER + 1))
    assert np.abs(curve).max() <= bound + 1e-4
    moved = np.abs(curve).max(axis=1) > 1e-3
    assert 0 < moved.sum() < 8  # clean rows (the target itself) keep their spectrum
    # smooth: nothing finer than the order-8 cosine series (second differences stay small)
    # |second difference| <= sum_k (eq / k) (pi k / 256)^2 for a cosine series of order 8
    assert np.abs(np.diff(curve, 2, axis=1)).max() <= (np.pi / 256) ** 2 * sum(range(1, EQ_ORDER + 1)) + 1e-5


def _normalise_case(seed: int = 7):
    """A batch's disguised inputs (no noise) and what ``Augmenter._normalise`` makes of them, with
    the pieces it works from."""
    a = Augmenter(_frames(), aug=AugmentConfig(normalise=1.0, noise_prob=0.0), seed=seed)
    idx = a.draw_index(24, 60)
    lm, f0, per = a.logmag[idx].float(), a.f0[idx], a.per[idx]
    p = 2.0 ** (torch.rand(24, generator=torch.Generator().manual_seed(seed)) * 2 - 1)
    env = lm @ a.lift
    power = torch.exp(2.0 * (a._warp(env, torch.full((24,), 1.1)) + a._warp(lm - env, p)))
    inputs = a._features_from_power(power, f0 * p[:, None], per)
    out = a._normalise(inputs.clone(), power, lm, f0, p, per)
    w = (p ** 0.3).clamp(0.8, 1.25)
    warped = a._features_from_power(a._warp(power, 1.0 / w), f0 * p[:, None], per)
    return a, inputs, out, warped, lm, f0, per


def test_settled_rows_are_warped_by_the_pitch_ratio_and_have_the_clean_timbre_mean():
    a, inputs, out, warped, lm, f0, per = _normalise_case()
    k = a.config.n_mfcc
    clean = a.features_from_logmag(lm, f0, per)
    v = (f0 > 0).float()[..., None]
    mean = lambda t: (t[..., 1:k] * v).sum(1) / v.sum(1)  # noqa: E731
    d = out - warped  # a settled row: the warped input moved by one offset per coefficient c1..
    settled = (d[..., 1:k].std(dim=1).amax(dim=1) < 1e-3) & (d[..., :1].abs().amax(dim=(1, 2)) == 0)
    assert 4 <= int(settled.sum()) <= 20
    np.testing.assert_allclose(mean(out)[settled].numpy(), mean(clean)[settled].numpy(), atol=1e-3)
    assert torch.equal(out[settled][..., k:], warped[settled][..., k:])
    assert (mean(inputs) - mean(clean)).abs().amax(dim=1).min() > 0.1  # the disguise had moved every row


def test_cold_rows_follow_the_run_time_mean_shift_from_a_fresh_stream():
    from rtvc._native.timbre import mean_shift
    from rtvc.converter import TIMBRE_EMA_FRAMES, TIMBRE_RAMP_FRAMES, WARP_MIN_FRAMES

    a, inputs, out, warped, lm, f0, per = _normalise_case(seed=11)
    k = a.config.n_mfcc
    target = a.timbre_mean.numpy().astype(np.float32)
    matched = 0
    for b in range(inputs.shape[0]):
        # the reference: the run time's kernel, frame by frame, on a fresh state; the warp once
        # WARP_MIN_FRAMES voiced frames came before this one (the count before the hop's update)
        st = np.zeros(2 * (k - 1) + 1, np.float32)
        ref = np.empty(inputs.shape[1:], np.float32)
        before = 0
        for t in range(inputs.shape[1]):
            voiced = bool(f0[b, t] > 0)
            frame = (warped if before >= WARP_MIN_FRAMES else inputs)[b, t].numpy().astype(np.float32).copy()
            mean_shift(frame, 1, voiced, target, st, TIMBRE_EMA_FRAMES, TIMBRE_RAMP_FRAMES)
            ref[t] = frame
            before += voiced
        matched += bool(np.allclose(out[b].numpy(), ref, atol=2e-3))
    assert 4 <= matched <= 20  # about half of the rows start cold


def test_rows_left_alone_are_the_plain_disguise():
    a = Augmenter(_frames(), aug=AugmentConfig(normalise=0.3, clean_prob=0.0), seed=4)
    b = Augmenter(_frames(), aug=AugmentConfig(clean_prob=0.0), seed=4)
    x1, y1 = a.batch(16, 50)
    x0, y0 = b.batch(16, 50)
    assert torch.equal(y0, y1)  # the targets never change
    same = (x1 == x0).all(dim=2).all(dim=1)
    assert 4 <= int(same.sum()) <= 15  # about 70 % of the rows are the plain disguise


def test_augment_flags_are_checked_and_recorded(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from tests.train.test_build import clone_tiny

    assert train_main(["voice", "--corpus", "x", "--name", "v", "--gender", "male", "--aug-eq", "3"]) == 2
    assert "eq_nepers 3.0; expected 0..2 nepers" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"warp_spread -0.1; expected 0\.\.1"):  # library callers too
        AugmentConfig(warp_spread=-0.1)
    assert train_main(["voice", "--corpus", "x", "--name", "v", "--gender", "male", "--aug-normalise", "1.5"]) == 2
    assert "normalise 1.5; expected a share of rows 0..1" in capsys.readouterr().err
    m, _ = clone_tiny(tmp_path, monkeypatch, "eq", "--aug-warp-spread", "0.25", "--aug-eq", "0.5",
                      "--aug-normalise", "0.5")
    assert m["training"]["augment"] == {"warp_spread": 0.25, "eq_nepers": 0.5, "normalise": 0.5}
    assert m["training"]["command"].endswith("--aug-warp-spread 0.25 --aug-eq 0.5 --aug-normalise 0.5")


def test_room_reverb_is_a_causal_tail_and_the_band_limit_cuts_the_top():
    c = FeatureConfig()
    a = Augmenter(_frames(), aug=AugmentConfig(room_prob=1.0, clean_prob=0.0), seed=0)
    bins = c.n_fft // 2 + 1
    power = torch.zeros((4, 60, bins))
    power[:, 20] = 1.0  # one loud frame in silence
    out = a._room(power.clone(), torch.zeros(4, dtype=torch.bool))
    hz = np.linspace(0, c.sample_rate / 2, bins)
    low = hz < 3000  # below every cut-off: the band limit leaves it alone
    assert torch.all(out[:, :20] == 0)  # nothing before the click
    tail = out[:, 21:30, low].mean(-1)
    assert torch.all(tail > 1e-4) and torch.all(tail[:, 1:] < tail[:, :-1])  # a decaying tail after it
    # 8 kHz lies past every cut-off (<= 7.5 kHz): at least 60 dB/octave * log2(8 / 7.5) = 5.6 dB down
    assert torch.all(out[:, 20, -1] < 10 ** -0.55 * out[:, 20, 0])
    # clean rows are left alone
    same = a._room(power.clone(), torch.ones(4, dtype=torch.bool))
    assert torch.equal(same, power)
    with pytest.raises(ConfigError, match="room_prob 2"):
        AugmentConfig(room_prob=2)
