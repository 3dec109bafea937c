"""Train a generation denoiser (ANN or spiking) on real digits conditioned on image embeddings.

Writes ``neurodecode/weights/generation_<kind>_digits.safetensors`` with the hallucination detector
calibrated on the held-out ``calib`` split (k and threshold for DDIM with the benchmark's step count).

    PYTHONPATH=$PWD python benchmarks/generation_train.py --denoiser ann --steps 3000
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from generation_common import ANN_CONFIG, SNN_CONFIG, load_digits_with_embeddings, noise_conditioning, to_model_size

SAMPLING_STEPS = 20
GUIDANCE = 2.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--denoiser", choices=["ann", "spiking"], required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)

    import lightning as L
    from diffusers import DDIMScheduler

    from neurodecode.generation.hallucination import calibrate
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.generation.spiking import SpikingUNet
    from neurodecode.generation.unet import ConditionalUNet
    from neurodecode.training.generation_system import GenerationDataModule, GenerationSystem

    L.seed_everything(a.seed, verbose=False)
    images, labels, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    den = ConditionalUNet(**ANN_CONFIG) if a.denoiser == "ann" else SpikingUNet(**SNN_CONFIG)
    den.set_conditioning_stats(embeds[split == "train"])
    n_params = sum(q.numel() for q in den.parameters())
    system = GenerationSystem(den, cond_dropout=0.1, cond_noise=0.3, lr=a.lr,
                              tsm_finetune_fraction=0.1 if a.denoiser == "spiking" else 0.0)
    dm = GenerationDataModule(to_model_size(images), embeds, split, channels=1, batch_size=a.batch_size, seed=a.seed)
    class Progress(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step % 100 == 0:
                print(f"step {trainer.global_step} loss {float(outputs['loss']):.4f} {time.time() - t0:.0f} s", flush=True)

    trainer = L.Trainer(max_steps=a.steps, callbacks=[Progress()], accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50)
    t0 = time.time()
    trainer.fit(system, dm)
    train_s = time.time() - t0
    loss = float(trainer.callback_metrics.get("train_loss", float("nan")))
    print(f"{a.denoiser}: {n_params} parameters, {a.steps} steps in {train_s:.0f} s, last loss {loss:.4f}", flush=True)

    den.eval()
    sched = DDIMScheduler.from_config(system.scheduler_config())
    pipe = BrainToImagePipeline(den, sched)
    pipe.set_progress_bar_config(disable=True)
    cal_e = embeds[split == "calib"]
    g = torch.Generator().manual_seed(a.seed + 1)
    t0 = time.time()
    tin = pipe(cal_e, SAMPLING_STEPS, GUIDANCE, generator=g, measure_energy=False, return_trajectory=True).x0_trajectory
    ood = noise_conditioning(embeds[split == "train"], len(cal_e), seed=a.seed + 100)
    tout = pipe(ood, SAMPLING_STEPS, GUIDANCE, generator=g, measure_energy=False, return_trajectory=True).x0_trajectory
    cal = calibrate(tin, tout, scheduler="DDIMScheduler", num_inference_steps=SAMPLING_STEPS, ks=(2, 3, 5, 10, 20))
    pipe.add_calibration(cal)
    print(f"calibration ({time.time() - t0:.0f} s): {json.dumps(cal.to_dict())}", flush=True)
    out = Path(a.out or Path(__file__).resolve().parents[1] / "neurodecode" / "weights" / f"generation_{a.denoiser}_digits.safetensors")
    meta = {"train_steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "train_seconds": round(train_s),
            "last_train_loss": round(loss, 5), "encoder": enc.name, "encoder_checksum": enc.checksum,
            "data": "scikit-learn digits (8x8; embeddings of 16x16 upsampled copies), image split seed 0 (train/calib/test 70/10/20 per class)",
            "guidance_scale": GUIDANCE, "num_inference_steps": SAMPLING_STEPS}
    pipe.save_weights(out, overwrite=a.overwrite, extra_metadata=meta, half=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
