"""WGAN-GP, conditional diffusion and AR baseline: behaviour on tiny configurations."""

import numpy as np
import pytest
import torch

from neurodecode.artifacts.synthesis.ar_baseline import ARBaseline
from neurodecode.artifacts.synthesis.ddpm import UNet1DConditional
from neurodecode.artifacts.synthesis.wgan_gp import (
    ConditionalWGANGP,
    gradient_penalty,
    minmax_scale,
    minmax_unscale,
)
from neurodecode.utils import InputFileError, UsageError


def _tiny_unet(**kw):
    return UNet1DConditional(n_chans=2, n_times=32, base_channels=8, channel_mults=(1, 2), emb_dim=16, **kw)


def test_minmax_scaling_roundtrip_and_range():
    x = torch.randn(5, 3, 16) * 40 + 7
    s, lo, hi = minmax_scale(x)
    assert s.min() == pytest.approx(-1) and s.max() == pytest.approx(1)
    assert torch.allclose(minmax_unscale(s, lo, hi), x, atol=1e-4)
    sn, lon, hin = minmax_scale(x.numpy())  # numpy input works too
    assert np.allclose(sn, s.numpy(), atol=1e-6)


def test_gradient_penalty_is_zero_for_unit_gradient_critic():
    w = torch.randn(1, 2, 8)

    def critic(x, y, scale=1.0):
        return (x * w / w.norm() * scale).sum((1, 2))

    real, fake, y = torch.randn(6, 2, 8), torch.randn(6, 2, 8), torch.zeros(6, dtype=torch.long)
    assert gradient_penalty(critic, real, fake, y).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(lambda x, y: critic(x, y, 3.0), real, fake, y).item() == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_over_window_and_range_code():
    w, v = torch.randn(1, 2, 8), torch.randn(1, 2)
    n = torch.sqrt(w.pow(2).sum() + v.pow(2).sum())

    def critic(x, y, s):  # gradient norm 1 over (x, s) together
        return (x * w / n).sum((1, 2)) + (s * v / n).sum(1)

    real, fake, y = (torch.randn(6, 2, 8), torch.randn(6, 2)), (torch.randn(6, 2, 8), torch.randn(6, 2)), None
    assert gradient_penalty(critic, real, fake, y).item() == pytest.approx(0.0, abs=1e-8)
    assert gradient_penalty(lambda x, y, s: 2 * critic(x, y, s), real, fake, y).item() == pytest.approx(1.0, rel=1e-5)


def test_wgan_range_code_roundtrip_and_generated_range(tmp_path):
    torch.manual_seed(0)  # the untrained generator's weights and x below
    m = ConditionalWGANGP(n_chans=2, n_times=32, n_classes=3, latent_dim=8, width=4).eval()
    x = torch.randn(50, 2, 32) * torch.logspace(0, 2, 50)[:, None, None]
    _, lo, hi = minmax_scale(x)
    m.fit_scale_stats(lo.numpy(), hi.numpy())
    code = m.encode_range(lo, hi)
    assert code[:, 0].mean().abs() < 1e-4 and code[:, 0].std(unbiased=False) == pytest.approx(1.0, rel=1e-3)
    lo2, hi2 = m.decode_range(code)
    assert torch.allclose(lo2, lo, rtol=1e-4, atol=1e-4) and torch.allclose(hi2, hi, rtol=1e-4, atol=1e-4)
    # samples come back in µV with the range the generator chose for each window
    with torch.no_grad():
        g = m.generator.scale_head[-1]
        g.weight.zero_()
        g.bias.copy_(torch.tensor([2.0, 0.0]))  # every window: log range 2 SD above the mean, centred
    X = m.sample(["clean", "eye", "muscle"] * 4, seed=3)
    assert X.shape == (12, 2, 32)
    lo3, hi3 = m.decode_range(torch.tensor([[2.0, 0.0]]))
    assert np.abs(X).max() <= hi3.item() + 1e-3
    # the µV output is the [-1, 1] output mapped onto the chosen range, whatever the untrained
    # generator's waveform amplitude is: -1 -> lo, +1 -> hi
    Xs = m.sample(["clean", "eye", "muscle"] * 4, seed=3, scaled=True)
    expect = lo3.item() + (Xs + 1) / 2 * (hi3.item() - lo3.item())
    assert np.allclose(X, expect, rtol=1e-4, atol=1e-3 * hi3.item())
    assert np.ptp(X) > 0.01 * (hi3.item() - lo3.item())  # not collapsed to the centre
    m.save(tmp_path / "w.safetensors")
    m2 = ConditionalWGANGP.load(tmp_path / "w.safetensors")
    assert np.allclose(m2.sample(["eye"] * 3, seed=1), m.sample(["eye"] * 3, seed=1))
    with pytest.raises(UsageError, match="'label' parameter"):
        m.sample(["blink"])
    with pytest.raises(InputFileError, match="expected 'UNet1DConditional'"):
        UNet1DConditional.load(tmp_path / "w.safetensors")


def test_wgan_label_reaches_every_generator_layer():
    torch.manual_seed(0)
    m = ConditionalWGANGP(n_chans=2, n_times=32, n_classes=3, latent_dim=8, width=4)
    with torch.no_grad():
        for norm in m.generator.norms:
            norm.gain.weight.normal_()
    m.eval()
    z = torch.randn(4, 8)
    a, sa = m(z, torch.zeros(4, dtype=torch.long))
    b, sb = m(z, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b) and not torch.allclose(sa, sb)
    # the class embedding at the input is not the only path: freeze it and the output still follows the label
    m.generator.class_emb.weight.data.zero_()
    a, _ = m(z, torch.zeros(4, dtype=torch.long))
    b, _ = m(z, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_unet_skip_connections_carry_signal():
    torch.manual_seed(0)
    m = _tiny_unet().eval()
    # Cut the bottleneck: whatever still reaches the output must pass through the skips.
    m.mid2.forward = lambda h, emb: torch.zeros_like(h)
    t, y = torch.tensor([10, 10]), torch.tensor([0, 0])
    x = torch.randn(1, 2, 32)
    out_a = m(torch.cat([x, x]), t, y)
    out_b = m(torch.cat([x, 2 * x + 1]), t, y)
    assert torch.allclose(out_a[0], out_a[1])
    assert not torch.allclose(out_b[0], out_b[1], atol=1e-4)


def test_unet_conditioning_and_null_token():
    torch.manual_seed(0)
    m = _tiny_unet().eval()
    x, t = torch.randn(3, 2, 32), torch.tensor([5, 5, 5])
    outs = [m(x, t, torch.full((3,), c)) for c in range(4)]  # 3 = null token
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.allclose(outs[a], outs[b])


def test_label_dropout_in_training_loss():
    m = _tiny_unet()
    seen = []
    orig = m.forward
    m.forward = lambda x, t, y: (seen.append(y.clone()), orig(x, t, y))[1]
    y = torch.zeros(64, dtype=torch.long)
    m.training_loss(torch.randn(64, 2, 32), y, p_uncond=1.0)
    assert (seen[-1] == 3).all()
    m.training_loss(torch.randn(64, 2, 32), y, p_uncond=0.0)
    assert (seen[-1] == 0).all()
    m.training_loss(torch.randn(400, 2, 32), torch.zeros(400, dtype=torch.long), p_uncond=0.25,
                    generator=torch.Generator().manual_seed(0))
    assert 0.15 < (seen[-1] == 3).float().mean() < 0.35


def test_sampler_uses_training_schedule_and_guidance_batches():
    m = _tiny_unet(beta_schedule="linear", prediction_type="epsilon").eval()
    train_cfg = m.train_scheduler().config
    for kind in ("ddim", "ddpm"):
        s = m.sampler(kind).config
        for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "beta_start", "beta_end"):
            assert s[key] == train_cfg[key]
    batches = []
    orig = m.forward
    m.forward = lambda x, t, y: (batches.append(len(x)), orig(x, t, y))[1]
    X1 = m.sample([0, 1], guidance=1.0, num_inference_steps=3, seed=0)
    assert batches == [2, 2, 2]
    batches.clear()
    X2 = m.sample([0, 1], guidance=3.0, num_inference_steps=3, seed=0)
    assert batches == [4, 4, 4]
    assert X1.shape == X2.shape == (2, 2, 32) and not np.allclose(X1, X2)
    with pytest.raises(UsageError, match="'sampler' parameter"):
        m.sampler("euler")


def test_diffusion_learns_class_amplitude():
    """A few hundred steps on two classes of different amplitude: samples follow the label."""
    torch.manual_seed(0)
    m = _tiny_unet(dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        y = torch.randint(0, 2, (16,), generator=g)
        x0 = torch.sin(torch.linspace(0, 12, 32))[None, None] * (0.2 + 1.6 * y[:, None, None]).expand(16, 2, 32)
        loss = m.training_loss(x0, y, p_uncond=0.1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    X = m.sample([0] * 8 + [1] * 8, num_inference_steps=20, seed=0)
    a0, a1 = np.abs(X[:8]).mean(), np.abs(X[8:]).mean()
    assert a1 > 2.5 * a0


def test_window_scale_roundtrip_and_generated_amplitude():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((40, 2, 32)) * np.exp(rng.normal(2.0, 0.8, (40, 2, 1)))).astype(np.float32)
    m = _tiny_unet(window_scale=True).fit_data_stats(X)
    logs = np.log(X.std(axis=2))
    assert np.allclose(m.log_scale_mean.numpy(), logs.mean(0), rtol=1e-4)
    z = m.scale(torch.as_tensor(X))
    assert z.shape == (40, 4, 32)
    assert torch.allclose(z[:, :2].std(-1, unbiased=False), torch.ones(40, 2), atol=1e-4)  # unit-std shapes
    assert torch.allclose(m.unscale(z), torch.as_tensor(X), rtol=1e-3, atol=1e-3)
    # a generated shape that came out too quiet still gets exactly the generated amplitude
    code = torch.tensor([[1.0], [-0.5]]).expand(2, 32)[None]
    quiet = torch.cat([0.3 * torch.randn(1, 2, 32), code], 1)
    want = torch.exp(torch.tensor([1.0, -0.5]) * m.log_scale_std + m.log_scale_mean)
    assert torch.allclose(m.unscale(quiet).std(-1, unbiased=False)[0], want, rtol=1e-4)


def test_window_scale_warm_start_and_sampling():
    torch.manual_seed(0)
    old = _tiny_unet().eval()
    new = _tiny_unet(window_scale=True).init_from(old).eval()
    x, t, y = torch.randn(3, 2, 32), torch.tensor([7, 7, 7]), torch.tensor([0, 1, 3])
    extra = torch.randn(3, 2, 32)
    # the extra code channels start disconnected: the shape output equals the old model's output
    assert torch.allclose(new(torch.cat([x, extra], 1), t, y)[:, :2], old(x, t, y), atol=1e-6)
    assert torch.count_nonzero(new.conv_in.weight[:, 2:]) == 0
    # ... and the network predicts zero for them
    assert torch.count_nonzero(new(torch.cat([x, extra], 1), t, y)[:, 2:]) == 0
    # buffers are not copied (the data statistics are refitted)
    old.channel_scale.fill_(3.0)
    assert torch.equal(_tiny_unet(window_scale=True).init_from(old).channel_scale, torch.ones(2))
    new.fit_data_stats(np.random.default_rng(0).standard_normal((20, 2, 32)) * 5)
    X = new.sample([0, 1, 2], guidance=2.0, num_inference_steps=3, seed=0)
    assert X.shape == (3, 2, 32) and np.isfinite(X).all()


def test_ar_baseline_recovers_coefficients_and_spectrum():
    rng = np.random.default_rng(0)
    from scipy.signal import lfilter

    e = rng.standard_normal((60, 2, 512))
    X = lfilter([1.0], [1.0, -1.2, 0.5], e, axis=-1)[..., 256:]
    ar = ARBaseline(order=2).fit(X, np.zeros(60, int))
    assert np.allclose(ar.coef_[0][0], [1.2, -0.5], atol=0.05)
    S = ar.sample(["clean"] * 60, seed=1)
    assert S.shape == (60, 2, 256)
    assert np.std(S) == pytest.approx(np.std(X), rel=0.1)
    with pytest.raises(ValueError, match="class 1 was not seen"):
        ar.sample(["eye"])
    with pytest.raises(RuntimeError, match="not fitted"):
        ARBaseline().sample(["clean"])
