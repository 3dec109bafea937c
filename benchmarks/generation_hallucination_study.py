"""Calib-split study of hallucination statistics (which variance separates both kinds of bad conditioning).

Step 1 records the x0 trajectories of R sampling runs (initial-noise seeds 1..R) of the calib images'
embeddings ("in"), a training subset ("train", used only as a reference), noise vectors and photograph
crops (the calibration's out-of-distribution kinds; never the test split or LFW):

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_hallucination_study.py collect ann ddim 10 8 [N_TRAIN [GUIDANCE]] --cache-dir DIR

(writes /tmp/neurodecode_halluc_study/traj_{kind}_{sched}{steps}_R{R}_g{guidance}.npz). Step 2 prints AUROCs
(calib embeddings vs noise / vs crops) of candidate statistics under the high / low / band rules:

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_hallucination_study.py analyse FILE.npz --cache-dir DIR
"""

import sys
import time

import numpy as np

OUT = "/tmp/neurodecode_halluc_study"


def _cache_dir(argv):
    return argv[argv.index("--cache-dir") + 1] if "--cache-dir" in argv else None


def collect(argv):
    import os

    import torch

    from generation_common import (GUIDANCE, load_digits_with_embeddings, noise_conditioning,
                                   unseen_class_calibration_embeddings)
    from neurodecode.generation.pipeline import BrainToImagePipeline

    torch.set_num_threads(1)
    pos = [a for i, a in enumerate(argv) if a != "--cache-dir" and (i == 0 or argv[i - 1] != "--cache-dir")]
    kind, sched, steps, R = pos[0], pos[1], int(pos[2]), int(pos[3])
    ntrain = int(pos[4]) if len(pos) > 4 else 179
    guidance = float(pos[5]) if len(pos) > 5 else GUIDANCE
    cache = _cache_dir(argv)
    _, labels, embeds, split, enc = load_digits_with_embeddings(cache)
    cal_e = embeds[split == "calib"]
    groups = {"in": cal_e,
              "train": embeds[split == "train"][np.random.default_rng(5).permutation((split == "train").sum())[:ntrain]],
              "noise": noise_conditioning(embeds[split == "train"], len(cal_e), seed=100),
              "unseen": unseen_class_calibration_embeddings(enc, len(cal_e), cache)}
    pipe = BrainToImagePipeline.from_weights(f"neurodecode/weights/generation_{kind}_digits.safetensors", scheduler=sched)
    out = {}
    c0 = time.process_time()
    for name, e in groups.items():
        tr = []
        for r in range(R):
            g = torch.Generator().manual_seed(1 + r)
            # the image's run only (the same trajectory as the pipeline call, without its scoring runs)
            t = pipe.sample_trajectories(e, steps, guidance, generator=g)[0]
            tr.append(t.reshape(t.shape[0], t.shape[1], -1).numpy().astype(np.float32))
        out[name] = np.stack(tr)  # (R, steps, n, 64)
        print(name, out[name].shape, f"{time.process_time() - c0:.1f} CPU s", flush=True)
    n_img = sum(len(e) for e in groups.values()) * R
    print(f"CPU s per image-sample: {(time.process_time() - c0) / n_img:.4f}")
    os.makedirs(OUT, exist_ok=True)
    np.savez_compressed(f"{OUT}/traj_{kind}_{sched}{steps}_R{R}_g{guidance:g}.npz", **out)


def analyse(argv):
    from generation_common import load_digits_with_embeddings, to_model_size
    from neurodecode.generation.hallucination import _rule_params, auroc, rule_statistic

    d = dict(np.load(argv[0]))
    Rmax, S = d["in"].shape[0], d["in"].shape[1]
    G = ("in", "train", "noise", "unseen")

    def rep(name, f):
        s = {g: f(d[g]) for g in G}
        p = _rule_params(s["in"])
        res = []
        for rule in ("high", "low", "band"):
            st = {g: rule_statistic(v, rule, *p) for g, v in s.items()}
            res.append((rule, auroc(st["in"], st["noise"]), auroc(st["in"], st["unseen"])))
        best = max(res, key=lambda r: min(r[1:]))
        print(f"{name:45s} " + "  ".join(f"{r}: {a:.3f}/{b:.3f}" for r, a, b in res)
              + f"   best worst {min(best[1:]):.3f}", flush=True)

    print("rule: AUROC vs noise / vs unseen classes (calib split)")
    for k in (2, 3, 5, 8, 10):
        if k <= S:
            rep(f"k={k} seed0 within", lambda x: x[0, -k:].var(0).mean(-1))
    for R in (2, 4, 8, 16):
        if R > Rmax:
            continue
        for k in (2, 3, 5, 10):
            if k > S:
                continue
            rep(f"R={R} k={k} mean within-seed", lambda x: x[:R, -k:].var(1).mean(-1).mean(0))
            rep(f"R={R} k={k} pooled seeds x steps", lambda x: x[:R, -k:].reshape(R * k, *x.shape[2:]).var(0).mean(-1))
        rep(f"R={R} between-seed final", lambda x: x[:R, -1].var(0).mean(-1))

    # Pooled variance in other spaces (high rule only): per-pixel normalised by the training subset's
    # median, coarse 4x4 pixels, principal components of the training images (w: whitened).
    images, labels, embeds, split, enc = load_digits_with_embeddings(_cache_dir(argv))
    tr_img = to_model_size(images[split == "train"]).mean(-1).reshape(-1, 64) * 2 - 1  # model space [-1, 1]
    mu = tr_img.mean(0)
    _, sv, Vt = np.linalg.svd(tr_img - mu, full_matrices=False)
    sdpc = sv / np.sqrt(len(tr_img))

    def feats(x, how):
        if how == "pix":
            return x
        if how == "coarse":
            return x.reshape(*x.shape[:-1], 4, 2, 4, 2).mean((-3, -1)).reshape(*x.shape[:-1], 16)
        m = int(how[3:].split("w")[0])
        z = (x - mu) @ Vt[:m].T
        return z / sdpc[:m] if "w" in how else z

    def rep_high(name, s):
        a, b = auroc(s["in"], s["noise"]), auroc(s["in"], s["unseen"])
        print(f"{name:45s} high: {a:.3f}/{b:.3f}   worst {min(a, b):.3f}", flush=True)

    for R in (4, 8):
        if R > Rmax:
            continue
        for k in (1, 2, 3, 5):
            for how in ("pix", "coarse", "pca5", "pca10", "pca20", "pca10w", "pca20w"):
                v = {g: feats(d[g][:R, -k:], how).reshape(R * k, d[g].shape[2], -1).var(0) for g in G}  # (n, f)
                rep_high(f"R={R} k={k} pooled {how}", {g: v[g].mean(-1) for g in G})
                if how == "pix":
                    ref = np.median(v["train"], 0) + 1e-8
                    rep_high(f"R={R} k={k} pooled {how} /ref_pix", {g: (v[g] / ref).mean(-1) for g in G})
                    rep_high(f"R={R} k={k} pooled {how} /ref_pix geo", {g: np.log(v[g] / ref + 1e-12).mean(-1) for g in G})


if __name__ == "__main__":
    {"collect": collect, "analyse": analyse}[sys.argv[1]](sys.argv[2:])
