"""Re-calibrate the hallucination detector of a saved generator on the held-out calib split.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_calibrate.py neurodecode/weights/generation_ann_digits.safetensors
"""

import argparse
import json

import torch

from generation_common import calibrate_pipeline, load_digits_with_embeddings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("--out", default=None, help="default: overwrite the input file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    from safetensors import safe_open

    from neurodecode.generation.pipeline import BrainToImagePipeline

    _, _, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    pipe = BrainToImagePipeline.from_weights(a.weights)
    pipe.hallucination_calibrations.clear()
    cal = calibrate_pipeline(pipe, embeds, split, enc, seed=a.seed, cache_dir=a.cache_dir)
    print(json.dumps(cal.to_dict()))
    with safe_open(a.weights, framework="pt") as f:
        meta = f.metadata()
    keep = {k: v for k, v in meta.items() if k not in ("denoiser_class", "denoiser_config", "scheduler_class",
                                                        "scheduler_config", "hallucination")}
    pipe.save_weights(a.out or a.weights, overwrite=True, extra_metadata=keep, half=True)


if __name__ == "__main__":
    main()
