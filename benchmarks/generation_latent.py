"""Latent-space generation on real digits: train a small diffusers AutoencoderKL, then an ANN denoiser on its latents.

1. ``AutoencoderKL`` (1 -> 4 channels, 16x16 -> 4x4) trained on the training split's 16x16 digits (MSE plus a
   small KL term), its ``scaling_factor`` set to 1 / std of the training latents, saved with ``save_pretrained``
   to ``--vae-out`` (a local folder: the path a user would give).
2. ``ConditionalUNet`` on the 4x4x4 latents (``GenerationDataModule(autoencoder=folder)``), conditioned on
   the EfficientNet-Lite0 embeddings, as ``pipelines/generation_latent_digits.yaml``.
3. Test split, DDIM 10 steps, guidance 2, encoder-embedding conditioning: PixCorr, SSIM and two-way
   identification of the decoded 16x16 images, next to the autoencoder's own reconstructions (ceiling).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_latent.py --vae-out /tmp/digits_vae
"""

import argparse
import time

import numpy as np
import torch

from generation_common import GUIDANCE, SAMPLING_STEPS, load_digits_with_embeddings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vae-out", required=True)
    p.add_argument("--vae-steps", type=int, default=1500)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="also write the latent generator weights here")
    a = p.parse_args()
    torch.set_num_threads(1)

    import lightning as L
    from diffusers import AutoencoderKL, DDIMScheduler

    from generation_eval import pixcorr, ssim, two_way
    from neurodecode.generation.energy import OpCounter, energy_report
    from neurodecode.generation.latent import decode_latents, encode_latents, load_autoencoder
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.generation.unet import ConditionalUNet
    from neurodecode.training.generation_system import GenerationDataModule, GenerationSystem, images_to_tensor

    L.seed_everything(a.seed, verbose=False)
    images, labels, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    x = images_to_tensor(images, 1)  # (n, 1, 16, 16) in [-1, 1]
    tr, te = split == "train", split == "test"

    c0 = time.process_time()
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(16, 32, 32),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=8, sample_size=16)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    xtr = x[torch.from_numpy(tr)]
    g = torch.Generator().manual_seed(a.seed)
    for step in range(a.vae_steps):
        b = xtr[torch.randint(0, len(xtr), (64,), generator=g)]
        post = vae.encode(b).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        loss = torch.nn.functional.mse_loss(rec, b) + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            print(f"vae step {step} loss {loss.item():.4f}", flush=True)
    vae.eval()
    with torch.no_grad():
        z = vae.encode(xtr).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    vae.save_pretrained(a.vae_out)
    vae_cpu = time.process_time() - c0
    vae = load_autoencoder(a.vae_out)  # as a user would: from the local folder
    print(f"autoencoder: {a.vae_steps} steps, {vae_cpu:.0f} CPU s, scaling factor {vae.config.scaling_factor:.3f}", flush=True)

    c0 = time.process_time()
    dm = GenerationDataModule(images, embeds, split, channels=1, batch_size=32, seed=a.seed, autoencoder=vae)
    den = ConditionalUNet(sample_size=4, in_channels=4, cond_dim=1280, n_tokens=4, cross_attention_dim=32,
                          block_out_channels=(32, 64), layers_per_block=1, attention_levels=(False, True),
                          attention_head_dim=8, norm_num_groups=8)
    system = GenerationSystem(den, cond_dropout=0.1, cond_noise=0.3, lr=2e-3)
    trainer = L.Trainer(max_steps=a.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, dm)
    den_cpu = time.process_time() - c0
    print(f"latent denoiser: {sum(q.numel() for q in den.parameters())} parameters, {a.steps} steps, "
          f"{den_cpu:.0f} CPU s, last loss {float(trainer.callback_metrics['train_loss']):.4f}", flush=True)

    den.eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler.from_config(system.scheduler_config()), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    if a.out:
        pipe.save_weights(a.out, overwrite=True, half=True,
                          extra_metadata={"train_steps": a.steps, "guidance_scale": GUIDANCE,
                                          "num_inference_steps": SAMPLING_STEPS, "seed": a.seed})
    target = (x[torch.from_numpy(te)][:, 0].numpy() + 1) / 2
    f_true = embeds[te]

    def rgb(im):  # (n, 16, 16) [0, 1] -> (n, 16, 16, 3)
        return np.repeat(im[..., None], 3, axis=-1)

    rows = []
    with torch.no_grad():
        ae = ((decode_latents(vae, encode_latents(vae, x[torch.from_numpy(te)])) / 2 + 0.5).clamp(0, 1))[:, 0].numpy()
    rows.append(("autoencoder reconstruction (ceiling)", pixcorr(ae, target), ssim(ae, target),
                 two_way(enc.encode(rgb(ae)), f_true), float("nan"), float("nan")))
    c0 = time.process_time()
    out = pipe(f_true, SAMPLING_STEPS, GUIDANCE, generator=torch.Generator().manual_seed(a.seed))
    cpu_s = (time.process_time() - c0) / te.sum()
    rec = out.images[..., 0]
    with OpCounter(vae.decoder) as dec_count, torch.no_grad():
        vae.decoder(torch.zeros(1, 4, 4, 4))
    dec_mj = energy_report(dec_count.count, 1)["energy_mj"]
    rows.append(("ANN U-Net on 4x4x4 latents, encoder embedding", pixcorr(rec, target), ssim(rec, target),
                 two_way(enc.encode(rgb(rec)), f_true), cpu_s, out.energy["energy_mj"] + dec_mj))
    print()
    print(f"Test split ({te.sum()} images, 16x16), DDIM {SAMPLING_STEPS} steps, guidance {GUIDANCE}, seed {a.seed}; "
          f"energy = denoiser sampling run + one decoder pass ({dec_mj:.3f} mJ)")
    print("| images | PixCorr | SSIM | 2-way id. | CPU s / image | energy mJ / image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} |")


if __name__ == "__main__":
    main()
