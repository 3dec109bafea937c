"""Does synthetic augmentation help an artifact classifier? Real vs real + synthetic, over seeds.

An EEGNet (braindecode) is trained on the real train split alone, and on the real train split
plus the synthetic windows of each generator (saved by ``synthesis_fidelity.py``), then tested
on the held-out real test subjects. Balanced accuracy is reported as mean and 95% t-interval over
seeds, together with the paired difference to real-only training. With ``--match-steps`` a
real-only control trained for as many optimiser steps as the augmented runs is added (row
``real@<epochs>ep``), and each augmented row also gets its paired difference to that control.

    python benchmarks/synthesis_utility.py --store .cache/artifact_windows.h5 --sets .cache/synthetic_sets.npz
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from neurodecode.artifacts import fidelity as fd
from neurodecode.datasets.artifact_windows import SFREQ, load_artifact_windows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--sets", default=".cache/synthetic_sets.npz")
    ap.add_argument("--models", nargs="+", default=None, help="subset of the saved sets (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--match-steps", action="store_true", help="add the step-matched real-only control")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    Xtr, ytr, _ = load_artifact_windows(args.store, split="train")
    Xte, yte, _ = load_artifact_windows(args.store, split="test")
    saved = np.load(args.sets)
    names = args.models or [k for k in saved.files if k != "labels"]
    synth = {k: (saved[k], saved["labels"]) for k in names}
    res = fd.augmentation_utility(Xtr, ytr, Xte, yte, synth, SFREQ, seeds=args.seeds, epochs=args.epochs,
                                  match_steps=args.match_steps)
    print(f"EEGNet, {args.epochs} epochs, seeds {args.seeds}; train {len(ytr)} real windows "
          f"(+{len(saved['labels'])} synthetic); test {len(yte)} real windows of held-out subjects")
    print("| training set | balanced acc. (mean ± 95% CI) | paired Δ vs real (mean ± 95% CI) "
          "| paired Δ vs step-matched real | per seed |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        delta = "—" if name == "real" else f"{r['delta_mean']:+.3f} ± {r['delta_ci95']:.3f}"
        dm = f"{r['delta_matched_mean']:+.3f} ± {r['delta_matched_ci95']:.3f}" if "delta_matched_mean" in r else "—"
        print(f"| {name} | {r['mean']:.3f} ± {r['ci95']:.3f} | {delta} | {dm} | {np.round(r['bacc'], 3).tolist()} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": res}, indent=1))


if __name__ == "__main__":
    main()
