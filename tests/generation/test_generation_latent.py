"""Latent-space training and sampling through a user-provided (local) diffusers autoencoder."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler

from neurodecode.generation.latent import (autoencoder_fingerprint, decode_latents, encode_latents,
                                           load_autoencoder)
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.generation.spiking import SpikingUNet
from neurodecode.generation.unet import ConditionalUNet
from neurodecode.training.generation_system import GenerationDataModule, GenerationSystem
from neurodecode.utils import InputFileError, UsageError


def _kl(tmp_path, seed=0, name="vae_kl"):
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=2, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=16, scaling_factor=0.7)
    vae.save_pretrained(tmp_path / name)
    return tmp_path / name


def _tiny(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderTiny(in_channels=1, out_channels=1, latent_channels=2, encoder_block_out_channels=(8, 8),
                          decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
    vae.save_pretrained(tmp_path / "vae_tiny")
    return tmp_path / "vae_tiny"


@pytest.mark.parametrize("make", [_kl, _tiny])
def test_load_encode_decode_local_autoencoders(tmp_path, make):
    folder = make(tmp_path)
    vae = load_autoencoder(folder)
    assert not any(p.requires_grad for p in vae.parameters())
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    z = encode_latents(vae, x, batch_size=2)
    assert z.shape[:2] == (3, 2) and z.shape[-1] < 16
    # Batching does not change the latents; decoding returns the image size.
    torch.testing.assert_close(z, encode_latents(vae, x, batch_size=3))
    assert decode_latents(vae, z).shape == (3, 1, 16, 16)
    # Loading the weights file inside the folder is the same autoencoder.
    weights = next(folder.glob("*.safetensors"))
    assert autoencoder_fingerprint(load_autoencoder(weights)) == autoencoder_fingerprint(vae)
    with pytest.raises(UsageError, match=r"expected shape \(n, 1, H, W\)"):
        encode_latents(vae, torch.rand(2, 3, 16, 16))


def test_load_autoencoder_errors(tmp_path):
    with pytest.raises(InputFileError, match="save_pretrained"):
        load_autoencoder(tmp_path / "nowhere")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(InputFileError, match="'UNet2DModel'; expected one of AutoencoderKL"):
        load_autoencoder(tmp_path / "unet")
    folder = _kl(tmp_path)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(InputFileError, match="Could not load the AutoencoderKL"):
        load_autoencoder(folder)


@pytest.mark.parametrize("spiking", [False, True])
def test_latent_training_sampling_and_weights_end_to_end(tmp_path, spiking):
    import lightning as L

    folder = _kl(tmp_path)
    rng = np.random.default_rng(0)
    n = 32
    lab = np.arange(n) % 2
    images = np.where(lab[:, None, None] == 1, np.eye(16)[None], np.fliplr(np.eye(16))[None]).astype("float32")
    embeds = np.c_[lab, 1 - lab, rng.normal(size=(n, 4)) * 0.1].astype("float32")
    split = np.array(["train"] * 24 + ["calib"] * 8)
    dm = GenerationDataModule(images, embeds, split, batch_size=8, autoencoder=str(folder))
    vae = dm.autoencoder
    lat = dm.part("train")["images"]
    # The training samples are the autoencoder's scaled latents, not pixels.
    assert lat.shape == (24, 2, 8, 8)
    torch.testing.assert_close(lat, encode_latents(vae, torch.from_numpy(images[:24, None] * 2 - 1)))
    kw = dict(sample_size=8, in_channels=2, cond_dim=6, n_tokens=2, cross_attention_dim=16,
              block_out_channels=(8, 16), attention_head_dim=8)
    torch.manual_seed(0)
    den = (SpikingUNet(**kw, time_steps=2, output_skip=True, sigma_data=float(lat.pow(2).mean().sqrt()),
                       num_train_timesteps=50) if spiking else ConditionalUNet(**kw, norm_num_groups=4))
    system = GenerationSystem(den, num_train_timesteps=50, lr=5e-3, warmup_steps=1)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, dm)
    den.eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler.from_config(system.scheduler_config()), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(embeds[:3], num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    # 8x8 latents are decoded by the autoencoder into 16x16 images.
    assert out.images.shape == (3, 16, 16, 1) and out.x0_trajectory is None
    assert out.energy["energy_mj"] > 0
    path = pipe.save_weights(tmp_path / "latent_gen.safetensors")
    back = BrainToImagePipeline.from_weights(path, vae=folder)
    again = back(embeds[:3], num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(again.images, out.images, atol=1e-5)
    # Latent weights need their autoencoder, and the same one.
    with pytest.raises(UsageError, match="latent space of a AutoencoderKL"):
        BrainToImagePipeline.from_weights(path)
    with pytest.raises(UsageError, match="differs from the one the generator was trained with"):
        BrainToImagePipeline.from_weights(path, vae=_kl(tmp_path, seed=1, name="other"))


def test_autoencoder_must_match_the_denoiser_channels(tmp_path):
    vae = load_autoencoder(_kl(tmp_path))
    den = ConditionalUNet(sample_size=8, in_channels=3, cond_dim=6, n_tokens=2, cross_attention_dim=16,
                          block_out_channels=(8, 16), attention_head_dim=8, norm_num_groups=4)
    with pytest.raises(UsageError, match="2 latent channels but the denoiser works on 3"):
        BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=50), vae=vae)


def test_latent_yaml_and_reconstruct_cli(tmp_path):
    import inspect
    from pathlib import Path

    import yaml
    from lightning.pytorch.cli import instantiate_class

    from neurodecode.cli import main
    from neurodecode.training.generation_system import ImageEmbeddingDataModule

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "generation_latent_digits.yaml").read_text())
    den = instantiate_class((), cfg["model"]["init_args"]["denoiser"])
    assert den.config.in_channels == 4 and den.config.sample_size == 4
    params = inspect.signature(ImageEmbeddingDataModule).parameters
    assert set(cfg["data"]["init_args"]) <= set(params) and "autoencoder" in cfg["data"]["init_args"]

    folder = _kl(tmp_path)
    vae = load_autoencoder(folder)
    torch.manual_seed(0)
    den = ConditionalUNet(sample_size=8, in_channels=2, cond_dim=6, n_tokens=2, cross_attention_dim=16,
                          block_out_channels=(8, 16), attention_head_dim=8, norm_num_groups=4).eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=50), vae=vae)
    gen = pipe.save_weights(tmp_path / "latent_gen.safetensors")
    data = tmp_path / "in.npz"
    np.savez(data, embeds=np.random.default_rng(0).normal(size=(3, 6)).astype("float32"))
    args = ["reconstruct", "--decoder", "embeds", "--generator", str(gen), "--input", str(data), "--steps", "3"]
    with pytest.raises(SystemExit) as exc:
        main(args + ["-o", str(tmp_path / "out"), "--autoencoder", str(folder)])
    assert exc.value.code == 0
    rec = np.load(tmp_path / "out" / "reconstructions.npz")
    assert any(v.shape[:3] == (3, 16, 16) for v in rec.values())
    with pytest.raises(SystemExit) as exc:
        main(args + ["-o", str(tmp_path / "out2")])
    assert exc.value.code == 2
