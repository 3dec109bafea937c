"""Quality-control benchmark: detect injected corruptions in held-out eegmmidb windows.

Data: eegmmidb subjects S009-S011 (never seen in training, calibration or model selection),
runs R04/R08/R12, the 19 10-20 channels at 128 Hz, 1 s windows (uV, demeaned per channel).
``--n-windows`` windows are drawn (seeded); each corruption type is injected into a copy of
every drawn window, and AUROC separates the clean copies from the corrupted ones.

Detectors (all see the same windows):
- hvEEGNet: per channel, robust z-scores (against that channel's values over the window's whole
  recording; ``TWO_SIDED`` features in both directions) of the features of
  ``HVEEGNet.channel_features``; the window's score is the largest over channels and the listed
  features. "coarse residual" = the five ``res_*`` features: the recorded window against the
  model's coarse prediction (level-1 latent at its prior mean, i.e. decoded from the deeper,
  spatially pooled levels). "spatial LOO": each channel's residual minus its leave-one-channel-out
  linear prediction from the other channels' residuals, fitted on the window's whole recording
  (``HVEEGNet.spatial_map``; the model's ``spatial="loo"``); "no spatial reference" is the previous
  default. "default" marks the model's ``score_features`` and ``spatial`` (chosen on validation
  data: S008 with ``--test-subjects 8``, and ``qc_spatial_validation.py``). Ablations: each residual feature alone; the
  same five features against the full reconstruction; the level-1 KL features (the previous
  default); the soft-DTW "error"; the default against the clean-training statistics; the paper's
  plain channel mean of the error.
- vEEGNet (single-latent ablation): the same residual features against its only reconstruction,
  the error, and the channel mean of the error.
- no network: the same five features of the recorded window's own leave-one-channel-out residual
  (map fitted on its recording), i.e. the spatial step without any model.
- peak-to-peak: MNE ``annotate_amplitude`` style. "peak": largest channel peak-to-peak;
  "peak+flat": largest |log(ptp / median ptp of that channel)| (catches flat channels too),
  with the median from training windows or from the window's own recording.
- Riemannian potato (pyriemann ``Potato``, OAS covariances, z-scored distance), fitted on the
  training windows, or on each whole test recording (its usual adaptive use).

Corruptions are added to the windows as recorded (uV, no filtering), and every detector scores
them at that scale.

Recording statistics come from all windows of the uncorrupted recording (three 2 min runs per
held-out subject); in real use the recording also holds its corrupted windows, which a median
and an IQR tolerate while they are a minority.

Run::

    NEURODECODE_DATA=/path/to/shared/data python benchmarks/qc_benchmark.py

Prints the AUROC table and the reconstruction fidelity table (Markdown).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from neurodecode.artifacts.hveegnet import RESIDUAL_FEATURES, TWO_SIDED, HVEEGNet
from neurodecode.training.hveegnet_system import eegmmidb_windows
from neurodecode.utils import data_dir

WEIGHTS = Path(__file__).resolve().parent.parent / "neurodecode" / "weights"
LINE_HZ = 60.0  # eegmmidb was recorded in the USA


def load_emg(sfreq):
    """Real surface EMG (biosppy emg_1.txt, 1 kHz) resampled to ``sfreq``, bursts only, unit RMS."""
    from scipy.signal import resample_poly
    from fractions import Fraction

    path = data_dir() / "biosppy_semg" / "emg_1.txt"
    x = np.loadtxt(path, comments="#")
    x = x - x.mean()
    frac = Fraction(sfreq / 1000.0).limit_denominator(1000)
    x = resample_poly(x, frac.numerator, frac.denominator)
    n = int(sfreq)
    segs = np.stack([x[i:i + n] for i in range(0, len(x) - n, n // 4)])
    rms = segs.std(1)
    bursts = segs[rms > 3 * np.median(rms)]  # the active contractions
    return bursts / bursts.std(1, keepdims=True), str(path)


def _taper(n, rng, lo, hi, t):
    """A Hann-tapered burst of random duration in [lo, hi] samples placed in a length-t window."""
    d = int(rng.integers(lo, hi + 1))
    start = int(rng.integers(0, t - d + 1))
    env = np.zeros(t)
    env[start:start + d] = np.hanning(d)
    return env


def corrupt(w, kind, rng, sfreq, emg):
    """Return a corrupted copy of one window ``w`` (C, T) in uV; see the module docstring."""
    x = w.astype(np.float64).copy()
    c, t = x.shape
    tt = np.arange(t) / sfreq
    ch = rng.integers(c)
    if kind == "flat":
        x[ch] = rng.normal(0, 0.05, t)  # disconnected electrode: amplifier noise only
    elif kind == "pop":
        t0, tau = rng.integers(t // 8, 7 * t // 8), rng.uniform(0.1, 0.5) * sfreq
        amp = rng.choice([-1, 1]) * rng.uniform(50, 200)
        k = np.arange(t) - t0
        x[ch] += np.where(k >= 0, amp * np.exp(-np.clip(k, 0, None) / tau), 0.0)
    elif kind == "clipping":
        y = rng.uniform(2, 4) * x[ch] + rng.uniform(-20, 20)
        lim = np.quantile(np.abs(y), rng.uniform(0.6, 0.8))
        x[ch] = np.clip(y, -lim, lim)
    elif kind == "line_noise":
        # mains picked up through a degraded electrode contact: tens of uV on 1-4 electrodes
        env = _taper(t, rng, int(0.3 * sfreq), int(0.8 * sfreq), t)
        for k in rng.choice(c, int(rng.integers(1, 5)), replace=False):
            x[k] += rng.uniform(20, 50) * env * np.sin(2 * np.pi * LINE_HZ * tt + rng.uniform(0, 2 * np.pi))
    elif kind == "drift":
        for k in rng.choice(c, 3, replace=False):
            f, amp = rng.uniform(0.2, 0.5), rng.uniform(30, 100)
            x[k] += amp * np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
    elif kind == "emg":
        env = _taper(t, rng, int(0.3 * sfreq), t, t)
        for k in rng.choice(c, 2, replace=False):
            seg = emg[rng.integers(len(emg))]
            x[k] += rng.uniform(1, 3) * x[k].std() * seg * env
    elif kind == "spike":
        t0, width = rng.integers(t // 8, 7 * t // 8), rng.uniform(0.02, 0.06) * sfreq
        x[ch] += rng.choice([-1, 1]) * rng.uniform(100, 300) * np.exp(-0.5 * ((np.arange(t) - t0) / (width / 2.355)) ** 2)
    else:
        raise ValueError(kind)
    return (x - x.mean(-1, keepdims=True)).astype(np.float32)


KINDS = ("flat", "pop", "clipping", "line_noise", "drift", "emg", "spike")


def model_scores(model, windows):
    errors, recon = model.channel_errors(windows, batch_size=64)
    return {"max": model._standardise(errors).max(1), "mean": errors.mean(1)}, recon


def fidelity(windows, recon):
    """Pearson correlation per window and channel, and the RMSE (uV), on clean windows."""
    x = windows - windows.mean(-1, keepdims=True)
    r = recon - recon.mean(-1, keepdims=True)
    corr = (x * r).sum(-1) / np.sqrt((x ** 2).sum(-1) * (r ** 2).sum(-1) + 1e-12)
    rmse = np.sqrt(((x - r) ** 2).mean())
    return corr, rmse


def main(argv=None):
    from pyriemann.artifact_detection import Potato
    from pyriemann.estimation import Covariances
    from sklearn.metrics import roc_auc_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-windows", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-clean-ptp", type=float, default=None, metavar="UV",
                   help="Draw only windows whose largest channel peak-to-peak is below UV (a quieter background); "
                   "recording statistics still use every window.")
    p.add_argument("--test-subjects", type=int, nargs="+", default=[9, 10, 11])
    p.add_argument("--train-subjects", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7])
    p.add_argument("--hveegnet", default=str(WEIGHTS / "hveegnet_eegmmidb.safetensors"))
    p.add_argument("--veegnet", default=str(WEIGHTS / "veegnet_eegmmidb.safetensors"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()

    models = {"hvEEGNet": HVEEGNet.from_pretrained(args.hveegnet), "vEEGNet": HVEEGNet.from_pretrained(args.veegnet)}
    ref = models["hvEEGNet"]
    test, rec_ids = eegmmidb_windows(ref, args.test_subjects)
    train, _ = eegmmidb_windows(ref, args.train_subjects)
    rng = np.random.default_rng(args.seed)
    pool = np.arange(len(test))
    if args.max_clean_ptp is not None:
        pool = pool[np.ptp(test, axis=-1).max(1) < args.max_clean_ptp]
    idx = np.sort(rng.choice(pool, size=min(args.n_windows, len(pool)), replace=False))
    clean, clean_rec = test[idx], rec_ids[idx]
    emg, emg_path = load_emg(ref.sfreq)
    sets = {"clean": clean}
    for kind in KINDS:
        krng = np.random.default_rng([args.seed, KINDS.index(kind)])
        sets[kind] = np.stack([corrupt(w, kind, krng, ref.sfreq, emg) for w in clean])

    def per_recording(stat_fn, apply_fn, values):
        """Standardise ``values`` of each drawn window by statistics of its own recording."""
        out = np.empty(len(values))
        for r in np.unique(clean_rec):
            sel = clean_rec == r
            out[sel] = apply_fn(stat_fn(r), values[sel])
        return out

    # baselines: fixed ones fitted on training windows; adaptive ones on each whole test recording
    ptp_train = np.median(np.ptp(train, axis=-1), axis=0)
    ptp_rec = {r: np.median(np.ptp(test[rec_ids == r], axis=-1), axis=0) for r in np.unique(rec_ids)}
    cov = Covariances(estimator="oas")
    potato = Potato(threshold=3).fit(cov.transform(train.astype(np.float64)))
    potato_rec = {r: Potato(threshold=3).fit(cov.transform(test[rec_ids == r].astype(np.float64))) for r in np.unique(rec_ids)}

    scores, recon_all, sdtw_all, coarse_all = {}, {}, {}, {}

    def z_from(feats, ref, names, use):
        """Robust z per channel and feature against ``ref``; two-sided where the model says; max over ``use``."""
        q25, med, q75 = np.percentile(ref, [25, 50, 75], axis=0)
        z = (feats - med) / np.maximum(q75 - q25, 1e-6)
        for i, n in enumerate(names):
            if n in TWO_SIDED:
                z[..., i] = np.abs(z[..., i])
        return z[..., [names.index(u) for u in use]].max(-1)

    def recording_z(f, f_ref, names, use):
        z = np.empty(f.shape[:2])
        for r in np.unique(clean_rec):
            sel = clean_rec == r
            z[sel] = z_from(f[sel], f_ref[rec_ids == r], names, use)
        return z.max(1)

    res = list(RESIDUAL_FEATURES)
    recs = np.unique(rec_ids)

    def spatial_feats(m, f, w, pred, recs_of, maps):
        """``f`` with its residual columns recomputed after each recording's spatial map."""
        out = f.copy()
        for r in np.unique(recs_of):
            sel = recs_of == r
            out[sel, :, -len(res):] = m._spatial_residual_features(w[sel], pred[sel], maps[r])
        return out

    for name, m in models.items():
        names = m.feature_names
        spatial = m.spatial == "loo"
        # every held-out window: recording statistics and spatial maps
        f_all, rec_all, coarse_all[name] = m._features(test, batch_size=64, spatial_map="none")
        recon_all[name] = rec_all
        sdtw_all[name] = f_all[..., 0]  # soft-DTW per sample, computed by the model's own scoring
        maps = {r: m.spatial_map(test[rec_ids == r] - coarse_all[name][rec_ids == r]) for r in recs}
        f_all_sp = spatial_feats(m, f_all, test, coarse_all[name], rec_ids, maps)
        train_map = {r: m.train_spatial_map.numpy().astype(np.float64) for r in recs}
        # ablation: the same residual features against the full reconstruction
        full_all = m.residual_features(test, rec_all) if m.hierarchical else None
        base = "coarse residual" if m.hierarchical else "residual"
        # (label, features, with the spatial reference)
        variants = [(f"{base}, spatial LOO", res, True), (f"{base}, no spatial reference (previous default)", res, False)]
        if m.hierarchical:
            variants += [(f"{v} only, spatial LOO", [v], True) for v in res] + [("kl + kl_peak", ["kl", "kl_peak"], False)]
        variants += [("error", ["error"], False)]
        for kind, w in sets.items():
            w_kind = clean if kind == "clean" else w
            if kind == "clean":
                f, recon, coarse = f_all[idx], rec_all[idx], coarse_all[name][idx]
            else:
                f, recon, coarse = m._features(w, batch_size=64, spatial_map="none")
            f_sp = spatial_feats(m, f, w_kind, coarse, clean_rec, maps)
            for label, use, sp in variants:
                default = use == list(m.score_features) and sp == spatial
                tag = label + ", recording ref." + (", default" if default else "")
                scores.setdefault(f"{name} ({tag})", {})[kind] = (
                    recording_z(f_sp, f_all_sp, names, use) if sp else recording_z(f, f_all, names, use))
            if m.hierarchical:
                full = np.concatenate([f[..., :3], m.residual_features(w_kind, recon)], -1)
                full_ref = np.concatenate([f_all[..., :3], full_all], -1)
                scores.setdefault(f"{name} (residual of the full reconstruction, recording ref.)", {})[kind] = \
                    recording_z(full, full_ref, names, res)
                f_tr = spatial_feats(m, f, w_kind, coarse, clean_rec, train_map) if spatial else f
                scores.setdefault(f"{name} ({' + '.join(m.score_features)}"
                                  + (", spatial LOO" if spatial else "") + ", training ref.)", {})[kind] = \
                    m._standardise(f_tr, "training").max(1)
            scores.setdefault(f"{name} (channel-mean error, as in the paper)", {})[kind] = f[..., 0].mean(1)
    # what the spatial step does without any network: the same features of the input's own
    # leave-one-channel-out residual (map fitted on each whole recording)
    in_maps = {r: ref.spatial_map(test[rec_ids == r]) for r in recs}
    zeros = np.zeros_like(test)
    f_in_all = spatial_feats(ref, np.zeros(test.shape[:2] + (len(res),)), test, zeros, rec_ids, in_maps)
    for kind, w in sets.items():
        w_kind = clean if kind == "clean" else w
        f_in = spatial_feats(ref, np.zeros(w.shape[:2] + (len(res),)), w_kind, zeros[:len(w)], clean_rec, in_maps)
        scores.setdefault("no network: input, spatial LOO, same features (recording ref.)", {})[kind] = \
            recording_z(f_in, f_in_all, res, res)
    for kind, w in sets.items():
        ptp = np.maximum(np.ptp(w, axis=-1), 1e-6)
        scores.setdefault("peak-to-peak (peak)", {})[kind] = ptp.max(1)
        scores.setdefault("peak-to-peak (peak+flat, training ref.)", {})[kind] = np.abs(np.log(ptp / ptp_train)).max(1)
        scores.setdefault("peak-to-peak (peak+flat, recording ref.)", {})[kind] = per_recording(
            lambda r: ptp_rec[r], lambda s, v: np.abs(np.log(v / s)).max(1), ptp)
        covs = cov.transform(w.astype(np.float64))
        scores.setdefault("Riemannian potato (fit on training)", {})[kind] = potato.transform(covs)
        scores.setdefault("Riemannian potato (fit per recording)", {})[kind] = per_recording(
            lambda r: potato_rec[r], lambda pt, v: pt.transform(v), covs)

    print(f"held-out subjects {args.test_subjects}: {len(test)} windows, {len(clean)} drawn (seed {args.seed}"
          + (f", from the {len(pool)} with peak-to-peak < {args.max_clean_ptp:g} uV" if args.max_clean_ptp else "") + "); "
          f"{len(train)} training windows for baselines; EMG from {emg_path}\n")
    print("AUROC, clean vs corrupted (n = %d + %d per type)\n" % (len(clean), len(clean)))
    print("| detector | " + " | ".join(KINDS) + " | mean |")
    print("|---" * (len(KINDS) + 2) + "|")
    for det, by_kind in scores.items():
        aucs = [roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(clean))], np.r_[by_kind["clean"], by_kind[k]]) for k in KINDS]
        print(f"| {det} | " + " | ".join(f"{a:.3f}" for a in aucs) + f" | **{np.mean(aucs):.3f}** |")

    print("\nCalibrated threshold (99th percentile of clean training scores): share of windows flagged\n")
    print("| model | clean held-out | " + " | ".join(KINDS) + " |")
    print("|---" * (len(KINDS) + 2) + "|")
    for name, m in models.items():
        by_kind = next(v for k, v in scores.items() if k.startswith(name + " (") and k.endswith("recording ref., default)"))
        thr = float(m.threshold)
        print(f"| {name} (thr {thr:.2f}) | {np.mean(by_kind['clean'] > thr):.3f} | "
              + " | ".join(f"{np.mean(by_kind[k] > thr):.3f}" for k in KINDS) + " |")

    print(f"\nReconstruction fidelity on all {len(test)} held-out windows (S{args.test_subjects})\n")
    print("| model | parameters | Pearson r mean | r median | share of channel-windows r >= 0.9 | soft-DTW / sample (uV^2) | RMSE (uV) | coarse prediction: r mean | its RMSE (uV) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in models.items():
        corr, rmse = fidelity(test, recon_all[name])
        c_corr, c_rmse = fidelity(test, coarse_all[name])
        sd = sdtw_all[name]
        n_par = sum(p.numel() for p in m.parameters())
        print(f"| {name} | {n_par} | {corr.mean():.3f} | {np.median(corr):.3f} | {np.mean(corr >= 0.9):.3f} | {sd.mean():.1f} | {rmse:.2f} "
              f"| {c_corr.mean():.3f} | {c_rmse:.2f} |")
    spec = np.abs(np.fft.rfft(clean, axis=-1)) * 2 / clean.shape[-1]
    freqs = np.fft.rfftfreq(clean.shape[-1], 1 / ref.sfreq)
    line = spec[..., (freqs >= 58) & (freqs <= 62)].max(-1).max(-1)
    print("\nDifficulty of the clean held-out windows (before injection): largest channel peak-to-peak "
          f"percentiles 25/50/75: {np.percentile(np.ptp(clean, axis=-1).max(1), [25, 50, 75]).round(0)} uV; "
          f"largest channel 58-62 Hz amplitude percentiles 25/50/75: {np.percentile(line, [25, 50, 75]).round(1)} uV")
    print(f"\nsignal RMS of the held-out windows: {test.std():.2f} uV; wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
