"""Generation backend: denoisers, spiking neurons, energy counting, hallucination score, pipeline."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from neurodecode.decoders.conditioning import BrainConditioning
from neurodecode.generation.energy import E_AC_PJ, E_MAC_PJ, OpCounter
from neurodecode.generation.hallucination import auroc, calibrate, pooled_trajectory_variance, trajectory_variance
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.generation.spiking import ATanSpike, LIFNeuron, SpikingUNet, TSMConv2d
from neurodecode.generation.unet import ConditionalUNet
from neurodecode.utils import InputFileError, UsageError

TINY = dict(sample_size=8, in_channels=1, cond_dim=12, n_tokens=2, cross_attention_dim=16,
            block_out_channels=(8, 16), attention_levels=(False, True), attention_head_dim=8)


def _ann(**kw):
    torch.manual_seed(0)
    return ConditionalUNet(**{**TINY, "norm_num_groups": 4, **kw})


def _snn(**kw):
    torch.manual_seed(0)
    m = SpikingUNet(**{**TINY, "time_steps": 2, **kw})
    # Set the batch-norm statistics from a few batches, as training would, so that activity
    # propagates in eval mode (with the initial statistics an untrained SNN is silent).
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, 1, 8, 8), torch.randint(0, 1000, (8,)), torch.randn(8, 12))
    return m


@pytest.mark.parametrize("make", [_ann, _snn])
def test_denoiser_shapes_conditioning_and_gradients(make):
    m = make()
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 500, 999])
    e = torch.randn(3, 12)
    y = m(x, t, e)
    assert y.shape == x.shape
    # The conditioning matters: other vectors give another prediction.
    assert not torch.allclose(m(x, t, e + 1.0), y)
    # Token sequences (batch, n, d) are accepted too.
    assert m(x, t, e[:, None].repeat(1, 3, 1)).shape == x.shape
    # Dropping the conditioning gives the same output whatever the vector was (null embedding).
    drop = torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(m(x, t, e, drop_mask=drop), m(x, t, e * 5, drop_mask=drop))
    y.pow(2).mean().backward()
    assert m.cond_proj.weight.grad is not None and m.cond_proj.weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="embeds"):
        m(x, t, torch.randn(3, 7))
    with pytest.raises(UsageError, match="spatial_channels=0"):
        m(x, t, e, spatial_maps=torch.randn(3, 2, 4, 4))


@pytest.mark.parametrize("make", [_ann, _snn])
def test_spatial_maps_change_the_prediction(make):
    m = make(spatial_channels=2)
    x, t, e = torch.randn(2, 1, 8, 8), torch.tensor([10, 20]), torch.randn(2, 12)
    maps = torch.randn(2, 2, 4, 4)  # resized to the sample grid inside
    assert not torch.allclose(m(x, t, e, spatial_maps=maps), m(x, t, e))
    with pytest.raises(UsageError, match="spatial_maps"):
        m(x, t, e, spatial_maps=torch.randn(2, 3, 4, 4))


def test_conditioning_stats_standardise_inputs():
    m = _ann()
    e = torch.randn(50, 12) * 7 + 3
    m.set_conditioning_stats(e)
    torch.testing.assert_close(m.cond_mean, e.mean(0))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    # After standardisation, shifting every input by the stored mean is the same as a zero-mean input.
    m2 = _ann()
    torch.testing.assert_close(m(x, t, e[:2]), m2(x, t, (e[:2] - m.cond_mean) / m.cond_std))


def test_lif_neuron_dynamics_and_surrogate():
    # IF neuron, threshold 1: constant input 0.6 -> V = 0.6, 1.2 (spike, reset), 0.6, 1.2 (spike)
    n = LIFNeuron(tau=None, threshold=1.0)
    s = n(torch.full((4, 1), 0.6))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert n.spikes == 2 and n.slots == 4
    # LIF with tau=2 leaks: V = 0.3, 0.45, 0.525 ... never reaches 1 with input 0.6.
    lif = LIFNeuron(tau=2.0)
    assert lif(torch.full((6, 1), 0.6)).sum() == 0
    # Threshold guidance: a lower threshold makes the same input fire earlier.
    n.threshold_scale = 0.5
    assert n(torch.full((4, 1), 0.6)).flatten().tolist() == [1.0, 1.0, 1.0, 1.0]
    # Surrogate gradient: largest at the threshold, decaying away from it.
    x = torch.tensor([0.0, 0.5, -2.0], requires_grad=True)
    ATanSpike.apply(x, 2.0).sum().backward()
    g = x.grad
    assert g[0] == pytest.approx(1.0) and g[0] > g[1] > g[2] > 0
    with pytest.raises(UsageError, match="tau"):
        LIFNeuron(tau=0.5)


def test_tsm_scales_each_snn_step():
    conv = TSMConv2d(2, 3, time_steps=3, norm=False)
    s = (torch.rand(3, 2, 2, 5, 5) > 0.5).float()
    base = conv(s)
    with torch.no_grad():
        conv.tsm_scale.copy_(torch.tensor([1.0, 2.0, 0.0]))
    y = conv(s)
    torch.testing.assert_close(y[0], base[0])
    torch.testing.assert_close(y[1], 2 * base[1])
    assert torch.all(y[2] == 0)


def test_spiking_unet_records_firing_and_threshold_guidance():
    m = _snn().eval()
    x, t, e = torch.randn(2, 1, 8, 8), torch.tensor([100, 900]), torch.randn(2, 12)
    m.reset_stats()
    y1 = m(x, t, e)
    rates = m.firing_rates()
    assert len(rates) == len(m.neurons()) and all(0 <= r <= 1 for r in rates.values())
    assert any(r > 0 for r in rates.values())
    m.threshold_scale = 0.9
    y2 = m(x, t, e)
    assert not torch.allclose(y1, y2)
    assert len(m.tsm_parameters()) > 5
    with pytest.raises(UsageError, match="threshold_scale"):
        m.threshold_scale = 0.0


def test_energy_counts_macs_and_measured_spikes():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 5, 5)
    with OpCounter(conv, spike_aware=True) as c:
        conv(x)
    dense = 4 * 5 * 5 * 2 * 9
    assert c.count.macs == dense and c.count.sops == 0
    assert c.count.energy_joules() == pytest.approx(dense * E_MAC_PJ * 1e-12)
    spikes = torch.zeros(1, 2, 5, 5)
    spikes[0, 0, :2] = 1  # 10 of 50 inputs fire
    with OpCounter(conv, spike_aware=True) as c:
        conv(spikes)
    assert c.count.macs == 0 and c.count.sops == pytest.approx(dense * 0.2)
    assert c.count.energy_joules() == pytest.approx(dense * 0.2 * E_AC_PJ * 1e-12)
    # A dense network's zeros are not spikes.
    with OpCounter(conv) as c:
        conv(spikes)
    assert c.count.macs == dense


def test_spiking_energy_follows_activity():
    m = _snn().eval()
    x, t, e = torch.randn(2, 1, 8, 8), torch.tensor([100, 900]), torch.randn(2, 12)
    with OpCounter(m) as c1:
        m(x, t, e)
    m.threshold_scale = 3.0  # fewer spikes -> fewer synaptic operations, same MACs
    with OpCounter(m) as c2:
        m(x, t, e)
    assert c1.count.sops > c2.count.sops > 0 or c2.count.sops == 0
    assert c1.count.sops > c2.count.sops
    assert c1.count.macs == pytest.approx(c2.count.macs)
    assert c1.count.dense_spiking_macs > c1.count.sops


def test_hallucination_score_and_calibration():
    rng = np.random.default_rng(0)
    steady = np.repeat(rng.normal(size=(1, 40, 3, 4, 4)), 8, axis=0) + 0.01 * rng.normal(size=(8, 40, 3, 4, 4))
    wobbly = rng.normal(size=(8, 40, 3, 4, 4))
    s_in, s_out = trajectory_variance(steady, 3), trajectory_variance(wobbly, 3)
    assert s_in.shape == (40,) and s_in.max() < s_out.min()
    # Only the last k steps count: a jump early in the trajectory does not raise the score.
    early = steady.copy()
    early[0] += 10
    np.testing.assert_allclose(trajectory_variance(early, 3), s_in)
    assert auroc(s_in, s_out) == 1.0 and auroc(s_out, s_in) == 0.0
    cal = calibrate(steady, wobbly, scheduler="DDIMScheduler", num_inference_steps=8, ks=(2, 5, 20), false_flag_rate=0.1)
    assert cal.k in (2, 5) and cal.validation_auroc == 1.0 and cal.rule == "high"
    assert cal.flag(s_out).all() and cal.flag(trajectory_variance(steady, cal.k)).mean() <= 0.1
    # Out-of-distribution trajectories that settle *more* than usual: only the two-sided rule sees them.
    frozen = np.repeat(rng.normal(size=(1, 40, 3, 4, 4)), 8, axis=0)
    wob = np.repeat(rng.normal(size=(1, 40, 3, 4, 4)), 8, axis=0) + rng.uniform(0.005, 0.05, (1, 40, 1, 1, 1)) * rng.normal(size=(8, 40, 3, 4, 4))
    cal2 = calibrate(wob, frozen + 1e-4 * rng.normal(size=frozen.shape), scheduler="DDIMScheduler",
                     num_inference_steps=8, ks=(3,), false_flag_rate=0.1)
    assert cal2.rule in ("low", "two-sided", "band") and cal2.validation_auroc > 0.95
    assert cal2.flag(trajectory_variance(frozen + 1e-4 * rng.normal(size=frozen.shape), 3)).mean() > 0.9
    # Two kinds on opposite sides (one settles more, one less than usual): a one-sided rule fails one of
    # them, so the choice maximising the worst AUROC is two-sided, and the per-kind AUROCs are kept.
    two = {"settled": frozen + 1e-4 * rng.normal(size=frozen.shape), "wobbly": wobbly}
    cal3 = calibrate(wob, two, scheduler="DDIMScheduler", num_inference_steps=8, ks=(3,), false_flag_rate=0.1)
    assert cal3.rule in ("two-sided", "band") and cal3.center is not None
    assert set(cal3.validation_auroc_per_kind) == {"settled", "wobbly"} and cal3.validation_auroc > 0.9
    assert cal3.flag(trajectory_variance(wobbly, 3)).mean() > 0.9
    only_high = calibrate(wob, two, scheduler="DDIMScheduler", num_inference_steps=8, ks=(3,), rules=("high",))
    assert only_high.rule == "high" and only_high.validation_auroc_per_kind["settled"] < 0.1
    with pytest.raises(UsageError, match="rules"):
        calibrate(wob, two, scheduler="x", num_inference_steps=8, rules=("sideways",))
    with pytest.raises(UsageError, match="'k'"):
        trajectory_variance(steady, 9)
    with pytest.raises(UsageError, match="ks"):
        calibrate(steady, scheduler="x", num_inference_steps=8, ks=(50,))


def test_pooled_variance_over_draws_and_its_calibration():
    rng = np.random.default_rng(1)
    # In-distribution: every run ends on the same sample (per conditioning); out-of-distribution: each run
    # settles just as well, but on a sample that depends on its starting noise.
    target = rng.normal(size=(1, 30, 1, 4, 4))
    runs_in = [np.repeat(target, 6, 0) + 0.02 * rng.normal(size=(6, 30, 1, 4, 4)) for _ in range(4)]
    runs_out = [np.repeat(rng.normal(size=(1, 30, 1, 4, 4)), 6, 0) + 0.02 * rng.normal(size=(6, 30, 1, 4, 4))
                for _ in range(4)]
    # One run: the paper's score, unchanged; the pooled score equals the variance over all R * k values.
    np.testing.assert_allclose(trajectory_variance(runs_in[:1], 3), trajectory_variance(runs_in[0], 3))
    stacked = np.concatenate([r[-3:] for r in runs_out]).reshape(12, 30, -1)
    np.testing.assert_allclose(pooled_trajectory_variance(runs_out, 3), stacked.var(0).mean(1))
    # Within a run both settle alike (chance), pooled over runs the seed-dependent ones stand out.
    assert 0.2 < auroc(trajectory_variance(runs_in[0], 3), trajectory_variance(runs_out[0], 3)) < 0.8
    assert auroc(pooled_trajectory_variance(runs_in, 1), pooled_trajectory_variance(runs_out, 1)) == 1.0
    cal = calibrate(runs_in, {"seed-dependent": runs_out}, scheduler="DDIMScheduler", num_inference_steps=6,
                    ks=(1, 2, 3), draws=(1, 2, 4), false_flag_rate=0.1, score_scheduler="DDPMScheduler")
    assert cal.draws in (2, 4) and cal.validation_auroc == 1.0 and cal.score_scheduler == "DDPMScheduler"
    assert cal.flag(cal.score(runs_out[: cal.draws])).all()
    one = calibrate(runs_in, {"seed-dependent": runs_out}, scheduler="DDIMScheduler", num_inference_steps=6,
                    ks=(2, 3), draws=(1,))
    assert one.draws == 1 and one.validation_auroc < 0.8
    with pytest.raises(UsageError, match="'k'"):
        trajectory_variance(runs_in[0], 1)  # one run: a variance over one step is meaningless
    with pytest.raises(UsageError, match="same shape"):
        pooled_trajectory_variance([runs_in[0], runs_in[1][:, :5]], 2)
    with pytest.raises(UsageError, match="draws"):
        calibrate(runs_in, runs_out, scheduler="x", num_inference_steps=6, draws=(8,))
    with pytest.raises(UsageError, match="fewer than 4 runs"):
        calibrate(runs_in, {"short": runs_out[:2]}, scheduler="x", num_inference_steps=6, draws=(4,))


@pytest.mark.parametrize("score_scheduler, score_guidance", [(None, None), ("DDPMScheduler", None), (None, 4.0)])
def test_pipeline_scoring_draws(tmp_path, score_scheduler, score_guidance):
    pipe = BrainToImagePipeline(_ann().eval(), DDIMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    e = torch.randn(4, 12)
    plain = pipe(e, num_inference_steps=4, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    assert "hallucination_energy_mj" not in plain.energy  # one draw, no calibration: no extra run
    runs = pipe.sample_trajectories(e, 4, score_guidance or 2.0, generator=torch.Generator().manual_seed(3), draws=3,
                                    scheduler=score_scheduler)
    assert len(runs) == 3 and runs[0].shape == (4, 4, 1, 8, 8)
    cal = calibrate(runs, scheduler="DDIMScheduler", num_inference_steps=4, ks=(2,), false_flag_rate=0.5,
                    score_scheduler=score_scheduler, score_guidance=score_guidance)
    assert cal.draws == 3
    pipe.add_calibration(cal)
    out = pipe(e, num_inference_steps=4, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    # The images and their trajectory do not change; the score pools the extra draws.
    np.testing.assert_allclose(out.images, plain.images, atol=1e-6)
    np.testing.assert_allclose(out.x0_trajectory, plain.x0_trajectory, atol=1e-6)
    reuse = score_scheduler is None and score_guidance is None
    if reuse:  # the image's run is the first draw, the generator continues
        expected = trajectory_variance(runs, 2)
    else:  # the image's run consumes the generator first, then come 3 scoring runs
        g = torch.Generator().manual_seed(3)
        pipe.sample_trajectories(e, 4, 2.0, generator=g)
        expected = trajectory_variance(pipe.sample_trajectories(e, 4, score_guidance or 2.0, generator=g, draws=3,
                                                                scheduler=score_scheduler), 2)
    np.testing.assert_allclose(out.hallucination_score, expected, rtol=1e-4)
    assert not np.allclose(out.hallucination_score, plain.hallucination_score)
    np.testing.assert_array_equal(out.hallucinated, cal.flag(expected))
    if reuse:
        assert 0 < out.hallucinated.sum() < 4
    extra = 2 if reuse else 3
    assert out.energy["hallucination_energy_mj"] == pytest.approx(extra * out.energy["energy_mj"], rel=1e-6)
    assert out.energy["energy_mj"] == pytest.approx(plain.energy["energy_mj"])
    # Another number of draws than calibrated: scores but no flags.
    assert pipe(e, num_inference_steps=4, hallucination_draws=2).hallucinated is None
    with pytest.raises(UsageError, match="hallucination_draws"):
        pipe(e, num_inference_steps=4, hallucination_draws=-1)
    with pytest.raises(UsageError, match="scheduler"):
        pipe.sample_trajectories(e, 4, scheduler="Euler")
    back = BrainToImagePipeline.from_weights(pipe.save_weights(tmp_path / "g.safetensors"))
    c = back.calibration_for(4)
    assert (c.draws, c.score_scheduler, c.score_guidance) == (3, score_scheduler, score_guidance)


@pytest.mark.parametrize("make", [_ann, _snn])
@pytest.mark.parametrize("sched", [DDIMScheduler, DDPMScheduler])
def test_pipeline_outputs(make, sched):
    den = make().eval()
    pipe = BrainToImagePipeline(den, sched(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    cond = BrainConditioning(embeds=np.random.default_rng(0).normal(size=(3, 12)).astype("float32"))
    out = pipe(cond, num_inference_steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
               return_trajectory=True)
    assert out.images.shape == (3, 8, 8, 1) and out.images.min() >= 0 and out.images.max() <= 1
    assert out.hallucination_score.shape == (3,) and np.all(out.hallucination_score >= 0)
    assert out.hallucinated is None  # no calibration registered
    assert out.x0_trajectory.shape == (4, 3, 1, 8, 8)
    assert out.energy["energy_mj"] > 0
    if isinstance(den, SpikingUNet):
        assert out.energy["sops"] > 0 and out.firing_rates
        assert out.energy["energy_mj"] < out.energy["ann_equivalent_mj"]
    else:
        assert out.energy["sops"] == 0 and out.firing_rates is None
    # Same seed -> same images; guidance changes them.
    again = pipe(cond, num_inference_steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(again.images, out.images, atol=1e-5)
    other = pipe(cond, num_inference_steps=4, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert not np.allclose(other.images, out.images)


def test_pipeline_energy_scales_with_guidance_and_steps():
    pipe = BrainToImagePipeline(_ann().eval(), DDIMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    e = torch.randn(2, 12)
    one = pipe(e, num_inference_steps=4, guidance_scale=1.0).energy["macs"]
    assert pipe(e, num_inference_steps=4, guidance_scale=3.0).energy["macs"] == pytest.approx(2 * one)
    assert pipe(e, num_inference_steps=8, guidance_scale=1.0).energy["macs"] == pytest.approx(2 * one)


def test_pipeline_flags_and_weights_roundtrip(tmp_path):
    den = _snn().eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    e = torch.randn(4, 12)
    out = pipe(e, num_inference_steps=5, return_trajectory=True, generator=torch.Generator().manual_seed(1))
    cal = calibrate(out.x0_trajectory, scheduler="DDIMScheduler", num_inference_steps=5, ks=(3,), false_flag_rate=0.5)
    pipe.add_calibration(cal)
    flagged = pipe(e, num_inference_steps=5, generator=torch.Generator().manual_seed(1)).hallucinated
    assert flagged is not None and flagged.dtype == bool and 0 < flagged.sum() < 4
    path = pipe.save_weights(tmp_path / "gen.safetensors")
    with pytest.raises(UsageError, match="exists"):
        pipe.save_weights(path)
    back = BrainToImagePipeline.from_weights(path)
    assert isinstance(back.denoiser, SpikingUNet) and back.calibration_for(5).k == 3
    a = pipe(e, num_inference_steps=5, generator=torch.Generator().manual_seed(2)).images
    b = back(e, num_inference_steps=5, generator=torch.Generator().manual_seed(2)).images
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Another scheduler than the stored one: no calibration -> no flags.
    assert BrainToImagePipeline.from_weights(path, scheduler="ddpm")(e, num_inference_steps=5).hallucinated is None
    with pytest.raises(InputFileError, match="no such file; expected generator weights"):
        BrainToImagePipeline.from_weights(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputFileError, match="bad.safetensors"):
        BrainToImagePipeline.from_weights(tmp_path / "bad.safetensors")
    with pytest.raises(UsageError, match="output_type"):
        pipe(e, output_type="jpg")


def test_pipeline_latent_space_with_autoencoder():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=2, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=16).eval()
    den = _ann(in_channels=2).eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=100), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(torch.randn(2, 12), num_inference_steps=3, output_type="pt")
    # 8x8 latents decoded to 16x16 images.
    assert out.images.shape == (2, 1, 16, 16)
