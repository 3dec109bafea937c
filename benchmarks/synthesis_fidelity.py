"""Fidelity and specificity of synthetic EEG artifact windows: WGAN-GP, DDPM (+/- guidance), AR.

For every generator it draws ``--n`` windows per class, compares them with real windows of the
reference split (default: the held-out test subjects) class by class, and prints one table:
band-power relative errors (Welch, µV²), channel-covariance Frobenius distance, ACF L2,
unbiased MMD² on standardised window features (RBF, median heuristic) with the permutation
p-value, PRD F8 / F1/8, and class recovery (balanced accuracy) by a kNN and an EEGNet trained on
the real train split. Metric values are means over the three classes.

The synthetic windows are saved (``--save``) so that ``synthesis_utility.py`` reuses them.

    python benchmarks/synthesis_fidelity.py --store .cache/artifact_windows.h5 --n 300
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from neurodecode.artifacts import fidelity as fd
from neurodecode.artifacts.synthesis.api import generate, load_generator
from neurodecode.datasets.artifact_windows import LABELS, SFREQ, load_artifact_windows

COLS = ["bp_delta", "bp_theta", "bp_alpha", "bp_beta", "bp_mean", "cov_fro", "acf_l2", "mmd2", "mmd_p", "prd_F8",
        "prd_F1_8"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--wgan", default=None, help="WGAN weights (default: shipped)")
    ap.add_argument("--ddpm", default=None, help="DDPM weights (default: shipped)")
    ap.add_argument("--n", type=int, default=300, help="synthetic windows per class")
    ap.add_argument("--reference", default="test", choices=["train", "val", "test"])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--cnn-epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=".cache/synthetic_sets.npz")
    ap.add_argument("--load-sets", default=None, help="reuse synthetic sets saved by an earlier run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    Xtr, ytr, _ = load_artifact_windows(args.store, split="train")
    Xref, yref, _ = load_artifact_windows(args.store, split=args.reference)
    labels = np.repeat(np.arange(len(LABELS)), args.n)

    sets, timing = {}, {}
    if args.load_sets:
        saved = np.load(args.load_sets)
        labels = saved["labels"]
        sets = {k: saved[k] for k in saved.files if k != "labels"}
        args.n = int(np.bincount(labels)[0])
    else:
        t0 = time.time()
        sets["ar"] = generate(load_generator("ar", store=args.store), labels, seed=args.seed)
        timing["ar"] = time.time() - t0
        t0 = time.time()
        sets["wgan"] = generate(load_generator("wgan", args.wgan), labels, seed=args.seed)
        timing["wgan"] = time.time() - t0
        ddpm = load_generator("ddpm", args.ddpm)
        for w in args.guidance:
            t0 = time.time()
            sets[f"ddpm_w{w:g}"] = generate(ddpm, labels, seed=args.seed, guidance=w, steps=args.steps)
            timing[f"ddpm_w{w:g}"] = time.time() - t0
    # Reference row: real training windows. Against held-out subjects it measures the cross-subject
    # gap; against the train split, the reference is one random half and this row the other half.
    rng = np.random.default_rng(args.seed)
    pool = np.arange(len(ytr))
    if args.reference == "train":
        perm = rng.permutation(len(ytr))
        Xref, yref = Xtr[perm[: len(perm) // 2]], ytr[perm[: len(perm) // 2]]
        pool = perm[len(perm) // 2 :]
    idx = np.concatenate([rng.choice(pool[ytr[pool] == c], min(args.n, int((ytr[pool] == c).sum())), replace=False)
                          for c in range(len(LABELS))])
    rows_sets = {"real_train": (Xtr[idx], ytr[idx])}
    for name, X in sets.items():
        rows_sets[name] = (X, labels)
    if args.save and not args.load_sets:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save, labels=labels, **sets)

    knn = fd.fit_knn(Xtr, ytr, SFREQ)
    cnn = fd.train_cnn(Xtr, ytr, SFREQ, epochs=args.cnn_epochs, seed=args.seed)
    results = {}
    for name, (X, y) in rows_sets.items():
        per_class = []
        for c in range(len(LABELS)):
            per_class.append(fd.distribution_metrics(Xref[yref == c], X[y == c], SFREQ,
                                                     n_permutations=args.permutations, seed=args.seed))
        row = {k: float(np.mean([pc[k] for pc in per_class])) for k in COLS}
        row["mmd_p"] = float(np.max([pc["mmd_p"] for pc in per_class]))  # least significant class
        row.update(fd.class_recovery({"knn": knn, "cnn": cnn}, X, y))
        row["per_class_mmd2"] = [pc["mmd2"] for pc in per_class]
        row["per_class_bp_mean"] = [pc["bp_mean"] for pc in per_class]
        row["seconds_per_1000"] = round(1000 * timing.get(name, float("nan")) / len(y), 2)
        results[name] = row

    origin = f"loaded from {args.load_sets}" if args.load_sets else f"drawn now, DDIM steps {args.steps}"
    print(f"reference: real {args.reference} split ({len(yref)} windows: "
          f"{np.bincount(yref).tolist()}), synthetic n={args.n}/class ({origin}), seed {args.seed}")
    head = ["model", *COLS, "knn", "cnn", "s/1000"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in results.items():
        vals = [f"{r[k]:.3f}" if k != "mmd_p" else f"{r[k]:.3g}" for k in COLS]
        print(f"| {name} | " + " | ".join(vals) + f" | {r['knn']:.3f} | {r['cnn']:.3f} | {r['seconds_per_1000']} |")
    print("\nper-class MMD² (clean, eye, muscle) and mean band-power error:")
    for name, r in results.items():
        print(f"  {name}: mmd2 {np.round(r['per_class_mmd2'], 4).tolist()}  bp {np.round(r['per_class_bp_mean'], 3).tolist()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
