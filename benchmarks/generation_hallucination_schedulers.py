"""Hallucination score vs scheduler (ANN, 120 calib images vs 120 noise conditionings, high-variance rule AUROC per k).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_hallucination_schedulers.py neurodecode/weights/generation_ann_digits.safetensors
"""
import sys, time, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from generation_common import load_digits_with_embeddings, noise_conditioning
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.generation.hallucination import trajectory_variance, auroc
images, labels, embeds, split, enc = load_digits_with_embeddings(sys.argv[2] if len(sys.argv) > 2 else None)
cal = embeds[split == "calib"][:120]
ood = noise_conditioning(embeds[split == "train"], 120, seed=100)
for sched, steps in (("ddim", 10), ("ddpm", 10), ("ddpm", 20)):
    pipe = BrainToImagePipeline.from_weights(sys.argv[1], scheduler=sched)
    g = torch.Generator().manual_seed(1)
    ti = pipe.sample_trajectories(cal, steps, 2.0, generator=g)[0]  # image run only, no scoring runs
    to = pipe.sample_trajectories(ood, steps, 2.0, generator=g)[0]
    print(sched, steps, {k: round(auroc(trajectory_variance(ti, k), trajectory_variance(to, k)), 3) for k in (2, 3, 5, 10, 20) if k <= steps}, flush=True)
