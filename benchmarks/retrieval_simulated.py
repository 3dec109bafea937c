"""Brain-to-image retrieval on the SIMULATED paired benchmark: ridge vs brain module vs UBP (+ ablations).

Real images (scikit-learn digits, scikit-image/scikit-learn photo crops, LFW subset), their
EfficientNet-Lite0 embeddings, a forward model to a real montage, and real background EEG (PhysioNet
eegmmidb) or MEG (KIT) at each SNR; zero-shot test images (concepts unseen in training). See
``neurodecode.datasets.paired``. Prints one markdown table row per (forward model, repeats, SNR,
method), then (for ridge vs brain module) the brain module / ridge top-5 ratio at every setting, against
the better of the two ridge baselines (pooled over subjects, or one per subject) on the test set (the
stronger baseline, so the ratio is not flattered), with a one-sided binomial test of that ridge's top-5
against chance.

Training data scale with ``--n-subjects`` (each simulated subject has the real background EEG of a
different eegmmidb volunteer, S001-S011, and its own dipoles) and ``--train-repeats`` (presentations of
each training image per subject, each a new trial with its own noise, jitter and gain; test images are
shown once, so the test set does not change).

Two forward models (``--forward``): ``physio`` (retinotopic early visual sources and nonlinear
high-level sources with their own latencies, trial-wise latency jitter and gain, sphere-model dipoles)
and ``linear`` (the response is linear in the image features), to show how the comparison depends on
the simulation. The simulated MEG has no realistic noise (only 2 s of real MEG exist here): its numbers
are not meaningful.

Examples
--------
Brain module vs ridge (brain signal carries the sharp image's features)::

    python benchmarks/retrieval_simulated.py --experiment decoders --forward physio linear --snrs 0.01 0.03 0.1 0.3

Blur prior (brain signal carries a low-passed image)::

    python benchmarks/retrieval_simulated.py --experiment blur --lowpass 8 --snrs 0.05 0.1 0.3

Training-set size (4 subjects, 1 / 2 / 4 presentations of each training image)::

    python benchmarks/retrieval_simulated.py --experiment decoders --n-subjects 4 --train-repeats 1 2 4 --snrs 0.03
"""

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from neurodecode.decoders.retrieval_metrics import chance_scores  # noqa: E402
from neurodecode.training.retrieval import RetrievalDataModule, run_retrieval  # noqa: E402

EXPERIMENTS = {
    "decoders": [("ridge", "none"), ("ridge_per_subject", "none"), ("brain_module", "none")],
    "blur": [("ubp", "none"), ("ubp", "fixed"), ("ubp", "uncertainty")],
    "all": [("ridge", "none"), ("ridge_per_subject", "none"), ("brain_module", "none"), ("ubp", "none"), ("ubp", "fixed"), ("ubp", "uncertainty")],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="decoders")
    p.add_argument("--modality", choices=["eeg", "meg"], default="eeg")
    p.add_argument("--forward", choices=["physio", "linear"], nargs="+", default=["physio"],
                   help="forward model(s) of the simulation")
    p.add_argument("--snrs", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    p.add_argument("--lowpass", type=float, default=0.0, help="blur (px at 224) of what the brain carries")
    p.add_argument("--n-images", type=int, default=800)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--n-subjects", type=int, default=2, help="simulated subjects (EEG noise of eegmmidb S001...)")
    p.add_argument("--train-repeats", type=int, nargs="+", default=[1],
                   help="presentations of each training image per subject (one run per value)")
    p.add_argument("--encoder-size", type=int, default=128)
    p.add_argument("--sfreq", type=float, default=100.0)
    p.add_argument("--n-times", type=int, default=80, help="samples per epoch from stimulus onset")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=6, help="epochs without better validation top-5")
    p.add_argument("--bm-batch-size", type=int, default=32, help="brain module batch size (UBP: 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/neurodecode/embeddings"))
    p.add_argument("--json", default=None, help="also append results as JSON lines to this file")
    p.add_argument("--verbose", action="store_true", help="log every epoch to stderr")
    args = p.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    print(f"# command: python benchmarks/retrieval_simulated.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    if args.modality == "meg":
        print("# WARNING: simulated MEG uses surrogates of a 2-s KIT fixture as noise; results are not meaningful.")
    print("| forward | modality | SNR | lowpass | subjects x repeats | method | blur | features | top-1 % | top-5 % | "
          "median rank | chance top-5 % | train / test trials | epochs | cpu s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for fwd, reps, snr in [(f, r, s_) for f in args.forward for r in args.train_repeats for s_ in args.snrs]:
        base, row = None, {}
        for method, blur in EXPERIMENTS[args.experiment]:
            if method == "ridge_per_subject" and args.n_subjects == 1:
                continue  # identical to the pooled ridge
            dm = RetrievalDataModule(modality=args.modality, snr=snr, lowpass_sigma=args.lowpass,
                                     n_subjects=args.n_subjects, train_repeats=reps, n_test=args.n_test, n_images=args.n_images,
                                     encoder_size=args.encoder_size, blur=blur, cache_dir=args.cache_dir,
                                     sfreq=args.sfreq, n_times=args.n_times, forward_model=fwd,
                                     batch_size=args.bm_batch_size if method == "brain_module" else 128,
                                     seed=args.seed, data=base)
            dm.setup()
            base = dm.data  # same simulated recordings for every method at this SNR
            nfit = len(dm.index["fit"])
            t0, c0 = time.time(), time.process_time()
            s, _ = run_retrieval(dm, method, max_epochs=args.epochs, patience=args.patience, seed=args.seed)
            cpu = time.process_time() - c0
            ch = chance_scores(s["n_candidates"])
            row[(method, blur)] = s
            print(f"| {fwd} | {args.modality} | {snr:g} | {args.lowpass:g} | {args.n_subjects} x {reps} | {method} | {blur} | "
                  f"{s.get('features', '-')} | {100 * s['top1']:.1f} | "
                  f"{100 * s['top5']:.1f} | {s['median_rank']:.0f} / {s['n_candidates']} | {100 * ch['top5']:.1f} | "
                  f"{len(dm.index['fit'])} / {s['n_trials']} | {s['epochs']} | {cpu:.0f} |", flush=True)
            if args.json:
                rec = dict(s, snr=snr, lowpass=args.lowpass, modality=args.modality, seed=args.seed,
                           n_subjects=args.n_subjects, train_repeats=reps, n_fit_trials=len(dm.index["fit"]),
                           forward_model=fwd, n_images=args.n_images, wall_s=round(time.time() - t0, 1),
                           cpu_s=round(cpu, 1))
                with open(args.json, "a") as f:
                    f.write(json.dumps(rec, default=float) + "\n")
        if ("ridge", "none") in row and ("brain_module", "none") in row:
            summary.append((fwd, reps, snr, nfit, row[("ridge", "none")], row.get(("ridge_per_subject", "none")),
                            row[("brain_module", "none")]))
    if summary:
        from scipy.stats import binomtest

        print()
        print("| forward | subjects x repeats | train trials | SNR | ridge pooled top-5 % | ridge per subject top-5 % | "
              "brain module top-5 % | ratio BM / better ridge | better ridge above chance (binomial p, one-sided) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for fwd, reps, snr, nfit, r, rs, b in summary:
            best = r if rs is None or r["top5"] >= rs["top5"] else rs
            n = best["n_trials"]
            hits = int(round(best["top5"] * n))
            pval = binomtest(hits, n, chance_scores(best["n_candidates"])["top5"], alternative="greater").pvalue
            ratio = b["top5"] / best["top5"] if best["top5"] > 0 else float("inf")
            rs_txt = "-" if rs is None else f"{100 * rs['top5']:.1f}"
            print(f"| {fwd} | {args.n_subjects} x {reps} | {nfit} | {snr:g} | {100 * r['top5']:.1f} | "
                  f"{rs_txt} | {100 * b['top5']:.1f} | {ratio:.2f}x | "
                  f"{'yes' if pval < 0.05 else 'no'} (p = {pval:.2g}) |")

if __name__ == "__main__":
    main()
