"""Is the diffusion model's generated amplitude code shrunk? Generated vs real scale code per class.

For a ``window_scale`` diffusion model it draws ``--n`` windows per class and prints, per class,
the mean and the standard deviation (averaged over channels) of the generated per-channel
log-std code next to those of the real train windows (code units: 0 mean, 1 std over all train
windows), and the standard deviation of the generated shape before it is brought back to 1
(below 1: the waveform itself came out too quiet).

    python benchmarks/synthesis_scale_code.py --store .cache/artifact_windows.h5 --n 40
"""

import argparse

import numpy as np
import torch

from neurodecode.artifacts.synthesis.api import load_generator
from neurodecode.datasets.artifact_windows import LABELS, load_artifact_windows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--ddpm", default=None, help="weights (default: shipped)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    m = load_generator("ddpm", args.ddpm)
    if not m.config.window_scale:
        raise SystemExit("this model has no window_scale code")
    X, y, _ = load_artifact_windows(args.store, split="train")
    c = m.config.n_chans
    real = m.scale(torch.as_tensor(X))[:, c:].mean(-1).numpy()
    raw = []
    unscale = m.unscale
    m.unscale = lambda z: (raw.append(z.clone()), unscale(z))[1]  # keep the model-unit output
    labels = np.repeat(np.arange(len(LABELS)), args.n)
    m.sample(labels, num_inference_steps=args.steps, guidance=args.guidance, seed=args.seed)
    z = torch.cat(raw)
    code, shape_sd = z[:, c:].mean(-1).numpy(), z[:, :c].std(-1, unbiased=False).numpy()
    print(f"scale code, n={args.n}/class, DDIM {args.steps} steps, w={args.guidance:g}, seed {args.seed}")
    print("| class | code mean (gen / real) | code std (gen / real) | raw shape std |")
    print("|---|---|---|---|")
    for k, name in enumerate(LABELS):
        g, r = code[labels == k], real[y == k]
        print(f"| {name} | {g.mean():.2f} / {r.mean():.2f} | {g.std(0).mean():.2f} / {r.std(0).mean():.2f} "
              f"| {shape_sd[labels == k].mean():.2f} |")


if __name__ == "__main__":
    main()
