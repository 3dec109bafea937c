"""Decoding benchmark on eegmmidb imagined left vs right fist: six models under one protocol.

Usage (one thread; finished folds in --out are reused, so an interrupted run resumes)::

    NEURODECODE_DATA=/path/to/data python benchmarks/decoding_protocols.py --protocol loso --out results/decoding_loso

``--protocol holdout`` splits the subjects of the data folder into two folders of symbolic links
(no copy): the first ``--n-train`` subjects train, the others test.

Settings (fixed, not tuned on any test fold): 21 sensorimotor channels, 8-30 Hz, 64 Hz, 0.5-3.5 s after
the cue, Euclidean alignment, Adam lr 1e-3, batch 32, a fixed number of epochs, seed 0.
It prints the Markdown tables recorded in docs/benchmarks/decoding.md.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

MODELS = "dbconformer,csp_lda,ts_lr,eegnet,shallow,eegconformer"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="loso", choices=["within-chrono", "within-5fold", "loso", "holdout"])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None, help="eegmmidb folder (default $NEURODECODE_DATA/eegmmidb)")
    ap.add_argument("--n-train", type=int, default=8, help="holdout: number of training subjects")
    ap.add_argument("--out", default="results/decoding")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: print the tables of the folds already finished in --out")
    args = ap.parse_args(argv)
    if args.report_only:
        return report_only(args.out)

    import torch

    torch.set_num_threads(1)
    from neurodecode.training.evaluation import evaluate_classification
    from neurodecode.utils import data_dir

    root = Path(args.data_dir) if args.data_dir else data_dir() / "eegmmidb"
    kw = {}
    tmp = None
    if args.protocol == "holdout":
        tmp = tempfile.TemporaryDirectory()
        subs = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("S"))
        for part, names in (("train", subs[: args.n_train]), ("test", subs[args.n_train:])):
            (Path(tmp.name) / part).mkdir()
            for s in names:
                os.symlink(root / s, Path(tmp.name) / part / s)
        root, kw["test_data_dir"] = Path(tmp.name) / "train", Path(tmp.name) / "test"
    t0 = time.time()
    res = evaluate_classification(
        args.protocol, args.models.split(","), data_dir=root, out=args.out, epochs=args.epochs, seed=args.seed,
        progress=lambda m: print(f"  [{time.time() - t0:6.0f} s] {m}", file=sys.stderr, flush=True), **kw)
    print(f"# protocol {args.protocol}, {args.epochs} epochs, seed {args.seed}, wall {time.time() - t0:.0f} s")
    print(res["markdown"])
    if tmp is not None:
        tmp.cleanup()


def report_only(out):
    """Print the tables of every finished (model, fold) result stored in ``out``."""
    import json

    from neurodecode.training.evaluation import summarize, markdown_tables

    rows = [json.loads(p.read_text()) for p in sorted(Path(out).glob("folds/*/*.json"))]
    if not rows:
        raise SystemExit(f"{out}: no finished folds found.")
    summary, paired = summarize(rows)
    print(f"# finished folds read from {out} (nothing trained): {len(rows)} results")
    print(markdown_tables(summary, paired))


if __name__ == "__main__":
    main()
