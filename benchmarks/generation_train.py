"""Train a generation denoiser (ANN or spiking) on real digits conditioned on image embeddings.

Writes ``neurodecode/weights/generation_<kind>_digits.safetensors`` with the hallucination detector
calibrated on the held-out ``calib`` split (k and threshold for DDIM with the benchmark's step count).

    PYTHONPATH=$PWD python benchmarks/generation_train.py --denoiser ann --steps 1500
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from generation_common import (ANN_CONFIG, GUIDANCE, SAMPLING_STEPS, SNN_CONFIG, calibrate_pipeline,
                               load_digits_with_embeddings, to_model_size)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--denoiser", choices=["ann", "spiking"], required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--output-skip", action="store_true", help="spiking: preconditioned output (c_skip x_t + c_out F)")
    p.add_argument("--init", default=None, help="start from the weights of this generator file (same denoiser class)")
    p.add_argument("--teacher", default=None, help="generator file whose noise predictions are distilled")
    p.add_argument("--distill-weight", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--tsm-fraction", type=float, default=0.1)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)

    import lightning as L
    from diffusers import DDIMScheduler

    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.generation.spiking import SpikingUNet
    from neurodecode.generation.unet import ConditionalUNet
    from neurodecode.training.generation_system import GenerationDataModule, GenerationSystem

    L.seed_everything(a.seed, verbose=False)
    images, labels, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    dm = GenerationDataModule(to_model_size(images), embeds, split, channels=1, batch_size=a.batch_size, seed=a.seed)
    extra = {}
    if a.output_skip:
        # Root mean square of the training images in the [-1, 1] units the denoiser sees.
        extra = dict(output_skip=True, sigma_data=round(float(dm.part("train")["images"].pow(2).mean().sqrt()), 4))
    den = ConditionalUNet(**ANN_CONFIG) if a.denoiser == "ann" else SpikingUNet(**SNN_CONFIG, **extra)
    if a.init:
        # Non-persistent buffers (the preconditioning) are rebuilt from the new config, so an older
        # file without them loads strictly.
        src = BrainToImagePipeline.from_weights(a.init).denoiser
        den.load_state_dict(src.state_dict())
        print(f"initialised from {a.init}", flush=True)
    den.set_conditioning_stats(embeds[split == "train"])
    n_params = sum(q.numel() for q in den.parameters())
    teacher = BrainToImagePipeline.from_weights(a.teacher).denoiser if a.teacher else None
    system = GenerationSystem(den, cond_dropout=0.1, cond_noise=0.3, lr=a.lr, warmup_steps=a.warmup_steps,
                              tsm_finetune_fraction=a.tsm_fraction if a.denoiser == "spiking" else 0.0,
                              teacher=teacher, distill_weight=a.distill_weight)
    class Progress(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step % 100 == 0:
                print(f"step {trainer.global_step} loss {float(outputs['loss']):.4f} {time.time() - t0:.0f} s", flush=True)

    trainer = L.Trainer(max_steps=a.steps, callbacks=[Progress()], accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50)
    t0 = time.time()
    c0 = time.process_time()
    trainer.fit(system, dm)
    train_s = time.time() - t0
    train_cpu = time.process_time() - c0
    loss = float(trainer.callback_metrics.get("train_loss", float("nan")))
    print(f"{a.denoiser}: {n_params} parameters, {a.steps} steps in {train_s:.0f} s wall, {train_cpu:.0f} CPU s, last loss {loss:.4f}", flush=True)

    den.eval()
    sched = DDIMScheduler.from_config(system.scheduler_config())
    pipe = BrainToImagePipeline(den, sched)
    pipe.set_progress_bar_config(disable=True)
    t0 = time.time()
    cal = calibrate_pipeline(pipe, embeds, split, enc, seed=a.seed, cache_dir=a.cache_dir)
    print(f"calibration ({time.time() - t0:.0f} s): {json.dumps(cal.to_dict())}", flush=True)
    out = Path(a.out or Path(__file__).resolve().parents[1] / "neurodecode" / "weights" / f"generation_{a.denoiser}_digits.safetensors")
    meta = {"train_steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "train_seconds": round(train_s),
            "train_cpu_seconds": round(train_cpu), "init": a.init or "random", "teacher": a.teacher or "none",
            "distill_weight": a.distill_weight, "output_skip": a.output_skip,
            "last_train_loss": round(loss, 5), "encoder": enc.name, "encoder_checksum": enc.checksum,
            "data": "scikit-learn digits (8x8; embeddings of 16x16 upsampled copies), image split seed 0 (train/calib/test 70/10/20 per class)",
            "guidance_scale": GUIDANCE, "num_inference_steps": SAMPLING_STEPS}
    pipe.save_weights(out, overwrite=a.overwrite, extra_metadata=meta, half=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
