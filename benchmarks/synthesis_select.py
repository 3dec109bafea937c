"""Choose a synthesis checkpoint (or a sampling setting) on the validation split only.

For every candidate weights file it draws ``--n`` windows per class and compares them with the
real windows of the validation subjects (S008, S009), class by class: mean band-power relative
error, MMD² on standardised window features (no permutation test), class recovery by a kNN
trained on the real train split, and the ratio of synthetic to real mean 1-30 Hz band power
against the train and the validation windows (``pow_tr``, ``pow_val``; the per-class ratios are
averaged; below 1 = too quiet). The test subjects are never read. A row for real training
windows gives the floor set by the subject gap.

    python benchmarks/synthesis_select.py --store .cache/artifact_windows.h5 --model wgan \
        --weights .cache/wgan/snaps/*.safetensors
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
    """Mean 1-30 Hz band power (µV², Welch), averaged over channels."""
    return float(np.mean(sum(fd.band_powers(X, SFREQ).values())))


def score(X, y, Xval, yval, knn, real_power):
    """``real_power``: {"tr": [...], "val": [...]}, :func:`total_power` of the real windows per class."""
    per = [fd.distribution_metrics(Xval[yval == c], X[y == c], SFREQ, n_permutations=0) for c in range(len(LABELS))]
    ratio = {name: float(np.mean([total_power(X[y == c]) / ref[c] for c in range(len(LABELS))]))
             for name, ref in real_power.items()}
    return {
        "bp_mean": float(np.mean([p["bp_mean"] for p in per])),
        "mmd2": float(np.mean([p["mmd2"] for p in per])),
        "knn": fd.class_recovery({"knn": knn}, X, y)["knn"],
        "pow_tr": ratio["tr"],
        "pow_val": ratio["val"],
    }


def fmt(r):
    return " | ".join(f"{r[k]:.3f}" for k in ("bp_mean", "mmd2", "knn", "pow_tr", "pow_val"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--model", required=True, choices=["wgan", "ddpm"])
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=100, help="windows per class")
    ap.add_argument("--steps", type=int, nargs="+", default=[25], help="DDIM steps (ddpm)")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="guidance scales (ddpm)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ar", action="store_true", help="also print the AR baseline's row")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    Xtr, ytr, _ = load_artifact_windows(args.store, split="train")
    Xval, yval, _ = load_artifact_windows(args.store, split="val")
    knn = fd.fit_knn(Xtr, ytr, SFREQ)
    # the real windows' band power, once (not again for every candidate)
    real_power = {name: [total_power(R[r == c]) for c in range(len(LABELS))]
                  for name, R, r in (("tr", Xtr, ytr), ("val", Xval, yval))}
    labels = np.repeat(np.arange(len(LABELS)), args.n)
    rng = np.random.default_rng(args.seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), args.n, replace=False) for c in range(len(LABELS))])
    print(f"validation split ({len(yval)} windows: {np.bincount(yval).tolist()}), n={args.n}/class, seed {args.seed}")
    print("| candidate | bp_mean | mmd2 | knn | pow_tr | pow_val | cpu s |")
    print("|---|---|---|---|---|---|---|")
    r = score(Xtr[idx], ytr[idx], Xval, yval, knn, real_power)
    print(f"| real_train | {fmt(r)} | - |")
    if args.ar:
        X = generate(load_generator("ar", store=args.store), labels, seed=args.seed)
        print(f"| ar | {fmt(score(X, labels, Xval, yval, knn, real_power))} | - |")
    settings = [(s, w) for s in args.steps for w in args.guidance] if args.model == "ddpm" else [(None, None)]
    for path in args.weights:
        gen = load_generator(args.model, path)
        for steps, w in settings:
            t0 = time.process_time()
            kw = {"steps": steps, "guidance": w} if args.model == "ddpm" else {}
            X = generate(gen, labels, seed=args.seed, **kw)
            cpu = time.process_time() - t0
            r = score(X, labels, Xval, yval, knn, real_power)
            name = Path(path).stem + (f" steps={steps} w={w:g}" if args.model == "ddpm" else "")
            print(f"| {name} | {fmt(r)} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
