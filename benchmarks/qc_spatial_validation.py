"""Validation-only choice of hvEEGNet's spatial reference (issue 4): which score to ship.

Compares, on validation data only, variants of the hvEEGNet quality score that add a spatial
reference to the per-channel residual features (``HVEEGNet.residual_features`` of the recorded
window against the coarse prediction):

- ``none``: no spatial reference (the default before this comparison);
- ``z - channel median``: each channel's robust z (against its recording) minus the median z of
  all channels of the same window (a window-wide raise, e.g. movement, cancels);
- ``z - neighbour median``: the same against the median of the 4 nearest electrodes (10-05
  positions), so that a focal but multi-electrode event (a blink on Fp1/Fp2) cancels too;
- ``LOO residual``: the residual of each channel minus its leave-one-channel-out linear
  prediction from the other channels' residuals, fitted on the recording (``spatial="loo"``,
  ``HVEEGNet.spatial_map``), then the same features and recording z (ridge 0.01 and 0.1);
- ``LOO input, no network``: the same regression on the recorded window itself, without the
  model (what the spatial step alone does);

and, for reference, the per-recording baselines of ``qc_benchmark.py`` (peak-to-peak against
the recording's median, Riemannian potato fitted per recording).

Validation sets (never the test subjects S009-S011):

- ``S008``: the validation subject, runs R04/R08/R12 (as ``qc_benchmark.py --test-subjects 8``);
- ``dirty``: recordings as contaminated as the raw test recordings, which S008 is not: the runs
  of S001 that were never used for training or calibration (R03, R05-R07, R09-R11, R13, R14;
  real fist/feet movement and imagery) and S003's eyes-open/closed baselines R01/R02. These are
  subjects of the training split (other runs), so this set checks robustness to a dirty
  background; it does not replace a held-out subject.

The corruptions and the clean/corrupted protocol are those of ``qc_benchmark.py`` (same seeds).

Run::

    NEURODECODE_DATA=/path/to/shared/data python benchmarks/qc_spatial_validation.py
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qc_benchmark import KINDS, WEIGHTS, corrupt, load_emg  # noqa: E402

from neurodecode.artifacts.hveegnet import CHANNELS_1020, RESIDUAL_FEATURES, TWO_SIDED, HVEEGNet  # noqa: E402
from neurodecode.training.hveegnet_system import eegmmidb_windows  # noqa: E402

SETS = {
    "S008": [(8, (4, 8, 12))],
    "dirty": [(1, (3, 5, 6, 7, 9, 10, 11, 13, 14)), (3, (1, 2))],
}


def neighbours(k=4):
    """Indices of the k nearest electrodes of each model channel (standard 10-05 positions)."""
    import mne

    from neurodecode.io._read import _standard_montage_name

    pos = mne.channels.make_standard_montage(_standard_montage_name()).get_positions()["ch_pos"]
    low = {n.lower(): v for n, v in pos.items()}
    p = np.array([low[c.lower()] for c in CHANNELS_1020])
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    return np.argsort(d, 1)[:, 1:k + 1]


def main(argv=None):
    from pyriemann.artifact_detection import Potato
    from pyriemann.estimation import Covariances
    from sklearn.metrics import roc_auc_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--n-windows", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hveegnet", default=str(WEIGHTS / "hveegnet_eegmmidb.safetensors"))
    p.add_argument("--veegnet", default=str(WEIGHTS / "veegnet_eegmmidb.safetensors"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    model = HVEEGNet.from_pretrained(args.hveegnet)
    vmodel = HVEEGNet.from_pretrained(args.veegnet)
    two = np.array([f in TWO_SIDED for f in RESIDUAL_FEATURES])
    nb = neighbours()
    emg, _ = load_emg(model.sfreq)
    cov_est = Covariances(estimator="oas")

    for set_name in args.sets:
        ws, gs = [], []
        for subj, runs in SETS[set_name]:
            w, g = eegmmidb_windows(model, [subj], runs=runs)
            ws.append(w)
            gs.append(g)
        allw, rec = np.concatenate(ws), np.concatenate(gs)
        rng = np.random.default_rng(args.seed)
        idx = np.sort(rng.choice(len(allw), size=min(args.n_windows, len(allw)), replace=False))
        clean, crec = allw[idx], rec[idx]
        sets = {"clean": clean}
        for kind in KINDS:
            krng = np.random.default_rng([args.seed, KINDS.index(kind)])
            sets[kind] = np.stack([corrupt(w, kind, krng, model.sfreq, emg) for w in clean])
        recs = np.unique(rec)

        # per recording: network outputs on all its windows, statistics and spatial maps
        _, _, coarse_all = model._features(allw, error=False, spatial_map="none")
        resid_all = allw - coarse_all
        maps = {}
        for ridge in (0.01, 0.1):
            model.spatial_ridge = ridge
            maps[("res", ridge)] = {r: model.spatial_map(resid_all[rec == r]) for r in recs}
        model.spatial_ridge = 0.01
        maps[("input", 0.01)] = {r: model.spatial_map(allw[rec == r]) for r in recs}

        def feats(x, pred, recs_of, which):
            """Residual features of each window with its recording's map (None: no map)."""
            out = np.empty(x.shape[:2] + (len(RESIDUAL_FEATURES),))
            for r in np.unique(recs_of):
                sel = recs_of == r
                smap = None if which is None else maps[which][r]
                out[sel] = model._spatial_residual_features(x[sel], pred[sel], smap)
            return out

        variants = {"none": None, "LOO residual (ridge 0.01)": ("res", 0.01),
                    "LOO residual (ridge 0.1)": ("res", 0.1), "LOO input, no network": ("input", 0.01)}
        f_ref = {}
        for label, which in variants.items():
            pred_all = np.zeros_like(allw) if which == ("input", 0.01) else coarse_all
            f_ref[label] = feats(allw, pred_all, rec, which)
        zs = {label: {} for label in variants}
        for kind, w in sets.items():
            _, _, coarse = model._features(w, error=False, spatial_map="none")
            for label, which in variants.items():
                pred = np.zeros_like(w) if which == ("input", 0.01) else coarse
                f = feats(w, pred, crec, which)
                z = np.empty_like(f)
                for r in np.unique(crec):
                    q25, med, q75 = np.percentile(f_ref[label][rec == r], [25, 50, 75], axis=0)
                    z[crec == r] = (f[crec == r] - med) / np.maximum(q75 - q25, 1e-6)
                z[..., two] = np.abs(z[..., two])
                zs[label][kind] = z

        scores = {
            "hvEEGNet, no spatial reference (previous default)": {k: z.max((1, 2)) for k, z in zs["none"].items()},
            "hvEEGNet, z - channel median": {
                k: (z - np.median(z, 1, keepdims=True)).max((1, 2)) for k, z in zs["none"].items()},
            "hvEEGNet, z - median of 4 neighbours": {
                k: (z - np.median(z[:, nb], 2)).max((1, 2)) for k, z in zs["none"].items()},
            "hvEEGNet, LOO residual (ridge 0.01; spatial='loo')": {
                k: z.max((1, 2)) for k, z in zs["LOO residual (ridge 0.01)"].items()},
            "hvEEGNet, LOO residual (ridge 0.1)": {k: z.max((1, 2)) for k, z in zs["LOO residual (ridge 0.1)"].items()},
            "no network: LOO of the input, same features": {
                k: z.max((1, 2)) for k, z in zs["LOO input, no network"].items()},
        }
        # the single-level ablation with and without the spatial reference (its only reconstruction)
        _, vrec_all, _ = vmodel._features(allw, error=False, spatial_map="none")
        vmaps = {r: vmodel.spatial_map(allw[rec == r] - vrec_all[rec == r]) for r in recs}
        for label, use_map in (("vEEGNet, no spatial reference", False), ("vEEGNet, LOO residual (ridge 0.01)", True)):
            def vfeats(x, pred, recs_of):
                out = np.empty(x.shape[:2] + (len(RESIDUAL_FEATURES),))
                for r in np.unique(recs_of):
                    sel = recs_of == r
                    out[sel] = vmodel._spatial_residual_features(x[sel], pred[sel], vmaps[r] if use_map else None)
                return out
            ref_f = vfeats(allw, vrec_all, rec)
            for kind, w in sets.items():
                _, vr, _ = vmodel._features(w, error=False, spatial_map="none")
                f = vfeats(w, vr, crec)
                z = np.empty_like(f)
                for r in np.unique(crec):
                    q25, med, q75 = np.percentile(ref_f[rec == r], [25, 50, 75], axis=0)
                    z[crec == r] = (f[crec == r] - med) / np.maximum(q75 - q25, 1e-6)
                z[..., two] = np.abs(z[..., two])
                scores.setdefault(label, {})[kind] = z.max((1, 2))
        # per-recording baselines (as in qc_benchmark.py)
        ptp_rec = {r: np.median(np.ptp(allw[rec == r], axis=-1), axis=0) for r in recs}
        potato = {r: Potato(threshold=3).fit(cov_est.transform(allw[rec == r].astype(np.float64))) for r in recs}
        for kind, w in sets.items():
            ptp = np.maximum(np.ptp(w, axis=-1), 1e-6)
            covs = cov_est.transform(w.astype(np.float64))
            s_ptp, s_pot = np.empty(len(w)), np.empty(len(w))
            for r in np.unique(crec):
                sel = crec == r
                s_ptp[sel] = np.abs(np.log(ptp[sel] / ptp_rec[r])).max(1)
                s_pot[sel] = potato[r].transform(covs[sel])
            scores.setdefault("peak-to-peak (peak+flat, recording ref.)", {})[kind] = s_ptp
            scores.setdefault("Riemannian potato (fit per recording)", {})[kind] = s_pot

        big = np.percentile(np.ptp(clean, axis=-1).max(1), [25, 50, 75]).round(0)
        runs_txt = "; ".join(f"S{s:03d} R" + "/R".join(f"{r:02d}" for r in runs) for s, runs in SETS[set_name])
        print(f"## validation set {set_name}: {runs_txt}: {len(allw)} windows in {len(recs)} recordings, "
              f"{len(clean)} drawn (seed {args.seed}); largest channel peak-to-peak of the drawn windows, "
              f"percentiles 25/50/75: {big} uV\n")
        print("| score | " + " | ".join(KINDS) + " | mean |")
        print("|---" * (len(KINDS) + 2) + "|")
        y = np.r_[np.zeros(len(clean)), np.ones(len(clean))]
        for label, by_kind in scores.items():
            aucs = [roc_auc_score(y, np.r_[by_kind["clean"], by_kind[k]]) for k in KINDS]
            print(f"| {label} | " + " | ".join(f"{a:.3f}" for a in aucs) + f" | **{np.mean(aucs):.3f}** |")
        print()
    print(f"CPU {time.process_time() - c0:.0f} s, wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
