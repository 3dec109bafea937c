"""Re-calibrate the hallucination detector of a saved generator on the held-out calib split.

Candidates searched (all on calib data): the scoring sampler (``--score-schedulers``: ``same`` = the image's
scheduler, ``ddpm``; ``--score-guidances``: ``same`` = the image's guidance, or numbers), the number of
sampling runs the variance is pooled over (``--draws``), ``k`` and the rule. Each scoring sampler costs
``max(draws)`` sampling runs of 537 calib conditionings.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_calibrate.py neurodecode/weights/generation_ann_digits.safetensors
"""

import argparse
import json
import time

import torch

from generation_common import calibrate_pipeline, load_digits_with_embeddings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("--out", default=None, help="default: overwrite the input file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--score-schedulers", default="same,ddpm", help="comma-separated: same, ddpm, ddim")
    p.add_argument("--score-guidances", default="same", help="comma-separated: same or numbers")
    p.add_argument("--draws", default="1,2,4,8", help="candidate numbers of sampling runs")
    a = p.parse_args()
    names = {"same": None, "ddpm": "DDPMScheduler", "ddim": "DDIMScheduler"}
    scheds = tuple(names[x] for x in a.score_schedulers.split(","))
    guids = tuple(None if x == "same" else float(x) for x in a.score_guidances.split(","))
    draws = tuple(int(x) for x in a.draws.split(","))
    torch.set_num_threads(1)
    from safetensors import safe_open

    from neurodecode.generation.pipeline import BrainToImagePipeline

    _, _, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    pipe = BrainToImagePipeline.from_weights(a.weights)
    pipe.hallucination_calibrations.clear()
    c0 = time.process_time()
    cal = calibrate_pipeline(pipe, embeds, split, enc, seed=a.seed, cache_dir=a.cache_dir, draws=draws,
                             score_schedulers=scheds, score_guidances=guids)
    print(f"calibration: {time.process_time() - c0:.0f} CPU s")
    print(json.dumps(cal.to_dict()))
    with safe_open(a.weights, framework="pt") as f:
        meta = f.metadata()
    keep = {k: v for k, v in meta.items() if k not in ("denoiser_class", "denoiser_config", "scheduler_class",
                                                        "scheduler_config", "hallucination")}
    pipe.save_weights(a.out or a.weights, overwrite=True, extra_metadata=keep, half=True)


if __name__ == "__main__":
    main()
