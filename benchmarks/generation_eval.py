"""Evaluate the shipped generation denoisers (ANN vs spiking) on held-out digits.

Conditioning: (a) the image encoder's embedding of each held-out image (upper bound: a perfect decoder);
(b) a ridge decoder's prediction from simulated EEG (real digits, forward model, real eegmmidb background
noise; see ``neurodecode.datasets.paired.build_simulated_pairs``), trained on the training images only.

Metrics on the test split (images never seen in training; split by image, stratified by class):
pixel correlation, SSIM, two-way identification and feature FID in the default encoder's (EfficientNet-Lite0)
feature space, CPU time per image, estimated energy per image, and the hallucination score's AUROC for
in-distribution conditioning vs noise vectors and vs embeddings of unseen image classes (LFW faces /
non-faces from scikit-image).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_eval.py
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from generation_common import (ENCODED_SIZE, GUIDANCE, SAMPLING_STEPS, isotropic_noise_conditioning,
                               load_digits_with_embeddings, noise_conditioning, to_model_size)

WEIGHTS = Path(__file__).resolve().parents[1] / "neurodecode" / "weights"


def pixcorr(a, b):
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


def ssim(a, b):
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(x, y, data_range=1.0, win_size=7) for x, y in zip(a, b)]))


def two_way(feat_rec, feat_true):
    """Fraction of (i, j != i) pairs where recon i correlates more with its own image than with image j."""
    r = feat_rec - feat_rec.mean(1, keepdims=True)
    t = feat_true - feat_true.mean(1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    c = r @ t.T
    own = np.diag(c)[:, None]
    n = len(c)
    return float(((own > c).sum() - 0) / (n * (n - 1)))


def fid(f1, f2):
    from scipy import linalg

    m1, m2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2)
    covmean = covmean.real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def upsample(images8):
    """(n, 8, 8, 1) float [0, 1] -> (n, 16, 16, 3) float, bilinear, as the encoder saw the targets."""
    t = torch.from_numpy(np.ascontiguousarray(images8)).permute(0, 3, 1, 2)
    t = torch.nn.functional.interpolate(t, size=(ENCODED_SIZE, ENCODED_SIZE), mode="bilinear", align_corners=False)
    return t.clamp(0, 1).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


def ridge_decoder(X, embeds, split, image_index, seed):
    """Ridge from flattened EEG epochs to embeddings; alpha chosen on the calib images; outputs re-scaled.

    Predictions are mapped per dimension from the training predictions' mean/std to the training targets'
    (ridge shrinks towards the mean; the generator was trained on unshrunk embeddings).
    """
    from sklearn.linear_model import Ridge

    Xf = X.reshape(len(X), -1)
    Xf = Xf / Xf[split[image_index] == "train"].std()
    tr, ca, te = (split[image_index] == s for s in ("train", "calib", "test"))
    Y = embeds[image_index]
    best = None
    for alpha in (1e2, 1e3, 1e4, 1e5):
        m = Ridge(alpha=alpha).fit(Xf[tr], Y[tr])
        p = m.predict(Xf[ca])
        score = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(p, Y[ca])])
        if best is None or score > best[0]:
            best = (score, alpha, m)
    _, alpha, m = best
    ptr = m.predict(Xf[tr])
    mu_p, sd_p = ptr.mean(0), ptr.std(0) + 1e-6
    mu_y, sd_y = Y[tr].mean(0), Y[tr].std(0)
    pte = (m.predict(Xf[te]) - mu_p) / sd_p * sd_y + mu_y
    return pte.astype(np.float32), image_index[te], alpha


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=SAMPLING_STEPS)
    p.add_argument("--guidance", type=float, default=GUIDANCE)
    p.add_argument("--snr", type=float, default=1.0)
    p.add_argument("--n-ood", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--weights-dir", default=str(WEIGHTS))
    p.add_argument("--kinds", default="ann,spiking", help="denoisers to evaluate (comma-separated)")
    p.add_argument("--tg", type=float, default=None, help="also run the spiking denoiser with this threshold scale")
    a = p.parse_args()
    torch.set_num_threads(1)

    from neurodecode.datasets.paired import ImageSet, build_simulated_pairs, load_image_set
    from neurodecode.decoders.image_encoders import encode_cached
    from neurodecode.generation.hallucination import auroc
    from neurodecode.generation.pipeline import BrainToImagePipeline

    images, labels, embeds, split, enc = load_digits_with_embeddings(a.cache_dir)
    te = split == "test"
    target8 = to_model_size(images[te]).mean(-1)
    f_true = embeds[te]
    print(f"test images: {te.sum()} (train {np.sum(split == 'train')}, calib {np.sum(split == 'calib')})", flush=True)

    # Decoder conditioning from simulated EEG (one simulated subject; every image seen once).
    t0 = time.time()
    sim = build_simulated_pairs(ImageSet(images, labels, [f"digit {i}" for i in range(10)], "digits"),
                                n_subjects=1, snr=a.snr, n_test=50, encoder=enc, cache_dir=a.cache_dir, seed=a.seed,
                                # the generation tables were measured with the linear forward model; the retrieval
                                # benchmark's default became the physiological one later
                                forward_model="linear")
    dec_e, dec_idx, alpha = ridge_decoder(sim.X, embeds, split, sim.image_index, a.seed)
    order = np.argsort(dec_idx)
    dec_e, dec_idx = dec_e[order], dec_idx[order]
    assert np.array_equal(dec_idx, np.flatnonzero(te))
    print(f"ridge decoder (alpha {alpha:g}, SNR {a.snr}): embedding two-way identification "
          f"{two_way(dec_e, f_true):.3f} ({time.time() - t0:.0f} s)", flush=True)

    faces = load_image_set("faces", size=ENCODED_SIZE)
    f_faces = encode_cached(enc, faces.images, cache_dir=a.cache_dir)[: a.n_ood]
    f_noise = noise_conditioning(embeds[split == "train"], a.n_ood, seed=a.seed + 7)
    f_iso = isotropic_noise_conditioning(embeds[split == "train"], a.n_ood, seed=a.seed + 8)
    tr_e = embeds[split == "train"]
    mu, sd = tr_e.mean(0), tr_e.std(0)
    sd = np.maximum(sd, 1e-3 * sd.max() + 1e-8)  # the denoisers' floor for constant dimensions
    for nm, v in (("test embeddings", f_true), ("noise", f_noise), ("isotropic noise", f_iso), ("unseen classes", f_faces)):
        print(f"norms, {nm}: raw {np.linalg.norm(v, axis=1).mean():.2f}, "
              f"standardised {np.linalg.norm((v - mu) / sd, axis=1).mean():.1f}", flush=True)

    kinds = a.kinds.split(",")
    runs = [r for r in (("ANN U-Net", "ann", None), ("Spiking U-Net (T=4)", "spiking", None)) if r[1] in kinds]
    if a.tg is not None and "spiking" in kinds:
        runs.append((f"Spiking U-Net (T=4), TG {a.tg:g}", "spiking", a.tg))
    rows, hrows = [], []
    for name, kind, tg in runs:
        pipe = BrainToImagePipeline.from_weights(Path(a.weights_dir) / f"generation_{kind}_digits.safetensors")
        res = {}
        for cond_name, cond in (("encoder embedding", f_true), ("ridge decoder, simulated EEG", dec_e)):
            # Sampling alone (the image's run, no operation counting, no scoring runs) ...
            c0 = time.process_time()
            pipe.sample_trajectories(cond, a.steps, a.guidance, generator=torch.Generator().manual_seed(a.seed))
            cpu_s = (time.process_time() - c0) / len(cond)
            # ... and the whole call: images, energy counting and the hallucination score's extra runs.
            g = torch.Generator().manual_seed(a.seed)
            c0, w0 = time.process_time(), time.time()
            out = pipe(cond, a.steps, a.guidance, generator=g, spike_threshold_scale=tg)
            cpu_all, wall_s = (time.process_time() - c0) / len(cond), (time.time() - w0) / len(cond)
            rec = out.images  # (n, 8, 8, 1)
            f_rec = enc.encode(upsample(rec))
            res[cond_name] = out
            rows.append((name, cond_name, pixcorr(rec[..., 0], target8), ssim(rec[..., 0], target8),
                         two_way(f_rec, f_true), fid(f_rec, f_true), cpu_s, wall_s, out.energy["energy_mj"],
                         out.energy["ann_equivalent_mj"], out.energy["macs"], out.energy["sops"],
                         None if out.hallucinated is None else float(out.hallucinated.mean()),
                         cpu_all, out.energy.get("hallucination_energy_mj", 0.0)))
            print(rows[-1], flush=True)
            if out.firing_rates:
                fr = np.array(list(out.firing_rates.values()))
                print(f"  firing rates: mean {fr.mean():.3f}, min {fr.min():.3f}, max {fr.max():.3f} over {len(fr)} layers")
        s_in = res["encoder embedding"].hallucination_score
        ood = {}
        for kind, cond in (("noise", f_noise), ("unseen", f_faces), ("iso", f_iso)):
            g = torch.Generator().manual_seed(a.seed + 1)
            ood[kind] = pipe(cond, a.steps, a.guidance, generator=g, spike_threshold_scale=tg, measure_energy=False)
        s_dec = res["ridge decoder, simulated EEG"].hallucination_score
        cal = pipe.calibration_for(a.steps)
        stat = cal.statistic if cal is not None else (lambda v: v)
        flag = lambda o: None if o.hallucinated is None else float(o.hallucinated.mean())  # noqa: E731
        sc = {k: o.hallucination_score for k, o in ood.items()}
        desc = None if cal is None else (
            f"{cal.k}, {cal.rule}, {cal.draws} draw(s) of {cal.score_scheduler or type(pipe.scheduler).__name__}"
            f" at guidance {cal.score_guidance or a.guidance:g}")
        hrows.append((name, desc,
                      auroc(stat(s_in), stat(sc["noise"])), auroc(stat(s_in), stat(sc["unseen"])),
                      auroc(stat(s_in), stat(sc["iso"])),
                      flag(res["encoder embedding"]), flag(ood["noise"]), flag(ood["unseen"]), flag(ood["iso"]),
                      auroc(s_in, sc["noise"]), auroc(-s_in, -sc["noise"]), auroc(s_in, sc["unseen"]),
                      auroc(stat(s_in), stat(s_dec))))
        print(hrows[-1], flush=True)

    print()
    print(f"DDIM {a.steps} steps, guidance {a.guidance}, test split: {te.sum()} images, seed {a.seed}")
    print("| denoiser | conditioning | PixCorr | SSIM | 2-way id. | feature FID | CPU s / image "
          "| CPU s / image with score | wall s / image with score "
          "| energy mJ / image | same net as dense MACs, mJ | MACs / image | SOPs / image | score runs mJ / image "
          "| flagged |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        flag = "n/a" if r[12] is None else f"{r[12]:.2f}"
        print(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.1f} | {r[6]:.3f} | {r[13]:.3f} "
              f"| {r[7]:.3f} | {r[8]:.3f} | {r[9]:.3f} | {r[10]:.3g} | {r[11]:.3g} | {r[14]:.3f} | {flag} |")
    print()
    print(f"Hallucination score (variance of x0 over the last k steps, pooled over the scoring runs; k, rule and "
          f"runs calibrated on the calib split), "
          f"AUROC, test in-distribution ({te.sum()}) vs {a.n_ood} out-of-distribution conditionings each; "
          "flagged = fraction above the calibrated threshold")
    print("| denoiser | k, rule, scoring runs | AUROC vs noise | AUROC vs unseen classes | AUROC vs isotropic noise "
          "| flagged in-distribution | flagged noise | flagged unseen | flagged isotropic "
          "| noise, high-variance rule | noise, low-variance rule | unseen, high-variance rule "
          "| encoder vs decoder conditioning |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for h in hrows:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {h[0]} | {h[1]} | " + " | ".join(fmt(v) for v in h[2:]) + " |")


if __name__ == "__main__":
    main()
