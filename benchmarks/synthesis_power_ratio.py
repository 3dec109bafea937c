"""Systematic amplitude error of the generators: synthetic / real band power per class.

For each generator it draws ``--n`` windows per class and prints, per class, the ratio of the
mean Welch band power (1-30 Hz, µV², averaged over channels) of the synthetic windows to that of
the real train windows. A ratio below 1 means the generator is too quiet. The diffusion model is
drawn with DDIM at each of ``--steps`` (guidance 1), to show how the error depends on the number
of sampling steps; ``--ddpm`` adds other diffusion weights files (rows named after the file).

    python benchmarks/synthesis_power_ratio.py --store .cache/artifact_windows.h5 --n 24 --steps 25 100
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from neurodecode.artifacts import fidelity as fd
from neurodecode.artifacts.synthesis.api import generate, load_generator
from neurodecode.datasets.artifact_windows import LABELS, SFREQ, load_artifact_windows


def total_power(X):
    bp = fd.band_powers(X, SFREQ)
    return float(np.mean(sum(bp.values())))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ddpm", nargs="*", default=[], help="more diffusion weights to compare with the shipped one")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    Xtr, ytr, _ = load_artifact_windows(args.store, split="train")
    labels = np.repeat(np.arange(len(LABELS)), args.n)
    real = [total_power(Xtr[ytr == c]) for c in range(len(LABELS))]
    runs = [("ar", load_generator("ar", store=args.store), {}), ("wgan", load_generator("wgan"), {})]
    for path in [None, *args.ddpm]:
        ddpm = load_generator("ddpm", path)
        tag = "ddpm" if path is None else f"ddpm {Path(path).stem}"
        runs += [(f"{tag} DDIM {s} steps", ddpm, {"steps": s, "guidance": 1.0}) for s in args.steps]
    print(f"synthetic / real mean 1-30 Hz band power (train split), n={args.n}/class, seed {args.seed}")
    print("| generator | " + " | ".join(LABELS) + " | cpu s |")
    print("|---|" + "---|" * (len(LABELS) + 1))
    for name, gen, kw in runs:
        t0 = time.process_time()
        X = generate(gen, labels, seed=args.seed, **kw)
        cpu = time.process_time() - t0
        ratios = [total_power(X[labels == c]) / real[c] for c in range(len(LABELS))]
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + f" | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
