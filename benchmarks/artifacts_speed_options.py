"""Speed options of AT-AT inference and what they cost in quality, on the VALIDATION split only.

    python benchmarks/artifacts_speed_options.py [--store-dir build/datasets]

For each shipped model (EMG, EOG) and each transformer precision (float32, the reference, and
bfloat16), prints the gated validation RRMSE_t (window-level gate as in ``ATATNet.gated``: windows
the autoencoder flags go through the transformer, the others are left as they are), its change
relative to float32, and the transformer's CPU seconds per 1000 windows (one thread).

A second table runs the whole-recording path (:func:`neurodecode.artifacts.apply.denoise_array`:
overlapping windows, gate, overlap-add) on one continuous row made of the validation pairs laid end
to end at their original scale (clean x * std(y) and noisy y * std(y)), for each precision and
window overlap, and prints RRMSE_t per 2 s segment (mean) against the clean row, its change against
the reference (float32, 50 % overlap, no pre-screen), and CPU seconds.

The pre-screen thresholds (``neurodecode/weights/atat_prescreen.json``, written with
``--write-prescreen``) are calibrated here too: the 1 % quantile of the feature on the contaminated
validation windows; the table shows the share of contaminated validation windows skipped per SNR
(the miss rate) and of clean validation windows skipped (what it saves); ``--eog-feature`` picks the
EOG feature (``smoothness``, shipped; ``smoothness_40``). Test data are never read.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _table(title, columns):
    """Print a markdown section title and the header of its table."""
    print(f"## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--store-dir", default=str(ROOT / "build" / "datasets"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--miss", type=float, default=0.01, help="pre-screen: quantile on contaminated val windows")
    p.add_argument("--eog-feature", default="smoothness", help="pre-screen feature of the EOG model")
    p.add_argument("--write-prescreen", action="store_true", help="write neurodecode/weights/atat_prescreen.json")
    a = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from neurodecode.artifacts import metrics as M
    from neurodecode.artifacts.apply import (PRECISIONS, PRESCREEN_FEATURES, PRESCREEN_FILE, calibrate_prescreen,
                                             denoise_array, transformer_fn)
    from neurodecode.artifacts.atat import ATAT
    from neurodecode.datasets.denoise import load_benchmark

    features = {"emg": "hf_fraction", "eog": a.eog_feature}
    val = {art: load_benchmark(str(Path(a.store_dir) / f"denoise_{art}.h5"), "val") for art in ("emg", "eog")}
    screens = {}
    _table("Pre-screen calibration (validation split)",
           ["model", "feature", "threshold", "contaminated val windows skipped (miss), per SNR dB",
            "clean val windows skipped"])
    for art, (vx, vy, lab) in val.items():
        sc = calibrate_prescreen(vy, features[art], 256.0, a.miss)
        fy = PRESCREEN_FEATURES[sc["feature"]](vy.astype(np.float64), 256.0)
        fx = PRESCREEN_FEATURES[sc["feature"]](vx.astype(np.float64), 256.0)
        snrs = np.unique(lab[:, 0])
        per = ", ".join(f"{s:g}: {np.mean(fy[lab[:, 0] == s] < sc['threshold']):.1%}" for s in snrs)
        sc["val_miss"] = float(np.mean(fy < sc["threshold"]))
        sc["val_clean_skipped"] = float(np.mean(fx < sc["threshold"]))
        screens[art] = sc
        print(f"| {art.upper()} | {sc['feature']} | {sc['threshold']:.4f} | {sc['val_miss']:.1%} ({per}) | "
              f"{sc['val_clean_skipped']:.1%} |")
    if a.write_prescreen:
        import json

        out = ROOT / "neurodecode" / "weights" / PRESCREEN_FILE
        out.write_text(json.dumps(screens, indent=1, sort_keys=True) + "\n")
        print(f"\nwritten: {out.relative_to(ROOT)}")
    print()
    _table("AT-AT inference options: validation quality and transformer speed (one thread)",
           ["model", "transformer precision", "gated val RRMSE_t", "change vs float32", "gate open (val)",
            "transformer CPU s / 1000 windows"])
    for art, (vx, vy, _) in val.items():
        model = ATAT.from_pretrained(art)
        net = model.net.eval()
        ref = None
        with torch.inference_mode():
            y = torch.from_numpy(np.ascontiguousarray(vy))
            gate = np.concatenate([net.gate(y[i:i + a.batch]).any(1).numpy() for i in range(0, len(y), a.batch)])
            for prec in PRECISIONS:
                tf = transformer_fn(net, prec)
                tf(y[: a.batch])  # warm-up
                out = vy.copy()
                idx = np.flatnonzero(gate)
                c0 = time.process_time()
                for i in range(0, len(idx), a.batch):
                    j = idx[i:i + a.batch]
                    out[j] = tf(y[j]).numpy()
                cpu = time.process_time() - c0
                r = float(np.mean(M.rrmse_temporal(out, vx)))
                ref = r if ref is None else ref
                print(f"| {art.upper()} | {prec} | {r:.4f} | {100 * (r / ref - 1):+.1f} % | {gate.mean():.1%} | "
                      f"{1000 * cpu / max(len(idx), 1):.2f} |")

    print()
    _table("Whole-recording path on the validation pairs laid end to end (one thread)",
           ["model", "transformer precision", "overlap", "pre-screen", "RRMSE_t (mean per 2 s)",
            "change vs reference", "CPU s"])
    for art, (vx, vy, lab) in val.items():
        sd = lab[:, 1:2].astype(np.float64)
        y_row = (vy * sd).reshape(1, -1)
        model = ATAT.from_pretrained(art)
        ref = None
        combos = [(ov, prec, False) for ov in (0.5, 0.25) for prec in PRECISIONS] + [(0.25, "bfloat16", True)]
        for ov, prec, ps in combos:
            c0 = time.process_time()
            out = denoise_array(model, y_row, model.sfreq, highpass=False, precision=prec, overlap=ov,
                                prescreen=screens[art] if ps else None)
            cpu = time.process_time() - c0
            seg = out.reshape(vx.shape) / sd
            r = float(np.mean(M.rrmse_temporal(seg, vx)))
            ref = r if ref is None else ref
            print(f"| {art.upper()} | {prec} | {ov:.0%} | {'yes' if ps else 'no'} | {r:.4f} | "
                  f"{100 * (r / ref - 1):+.1f} % | {cpu:.1f} |")


if __name__ == "__main__":
    main()
