"""NeuroPictor on the SIMULATED multi-subject fMRI benchmark: levels and training-regime ablations.

What is real and what is simulated (see :mod:`neurodecode.datasets.simulated_fmri`):
real images (scikit-learn digits, scikit-image/scikit-learn photo crops, LFW subset; via
``neurodecode.datasets.paired.load_image_set``), real image embeddings (default encoder,
EfficientNet-Lite0), real BOLD noise (nitime/nipy runs in ``../shared/data``); SIMULATED voxel
responses (fixed random mixtures of low- and high-level image features).

Steps, all seeded:

1. the retrieval benchmark's 800 images (16x16 grey for the generator) and their EfficientNet-Lite0 embeddings;
2. three simulated subjects with 1500/1000/700 voxels and 600/400/100 training trials; 100 held-out
   test images shown twice to every subject (averaged), never used in any training;
3. the shared generation backend (``ConditionalUNet`` + ``BrainToImagePipeline``) trained on the
   non-test images with their true embeddings (high level) and their 4x4 coarse grey images as
   spatial maps (low level), both dropped at random so zero maps / the null vector mean
   "unmodulated";
4. NeuroPictor encoders: single-subject (trained on one subject) and multi-subject pre-training
   followed by refinement on that subject, same number of updates on the target subject's data;
5. reconstructions of the test images for high-level only, low-level only and both, scored with
   PixCorr, SSIM and two-way identification in the default encoder's space.

Usage::

    python benchmarks/neuropictor_simulated.py [--quick] [--workdir DIR]

``--quick`` shrinks everything for a smoke run (its numbers mean nothing).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


SIZE = 16  # generator images, SIZE x SIZE grey
LOW = 4  # low-level grid: simulated voxels carry LOW x LOW luminance/contrast; the maps are LOW x LOW


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def load_images(size, cache_dir, n_images, encoder_size, seed):
    """The retrieval benchmark's images: ``load_image_set("mixed", size=64)``, the same ``n_images``
    subset (``build_simulated_pairs``' rule) and EfficientNet-Lite0 embeddings at ``encoder_size``."""
    from neurodecode.datasets.paired import load_image_set
    from neurodecode.decoders.image_encoders import encode_cached, get_image_encoder

    iset = load_image_set("mixed", size=64, seed=seed)
    keep = np.sort(np.random.default_rng(seed + 7).choice(len(iset), int(n_images), replace=False))
    imgs = iset.images[keep]
    enc = get_image_encoder(image_size=encoder_size)
    emb = encode_cached(enc, imgs, cache_dir=cache_dir)
    # The generator works on small grey images: area-average 64 -> size.
    f = 64 // size
    grey = imgs.astype(np.float32).mean(-1).reshape(len(imgs), size, f, size, f).mean((2, 4)) / 255.0
    return grey, emb, enc, iset.labels[keep]


def train_backend(grey, embeds, maps, *, steps, batch_size, seed, cond_dropout=0.1, map_dropout=0.3):
    """Train the shared ConditionalUNet: eps-prediction MSE, conditioning and map dropout."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.generation.unet import ConditionalUNet

    torch.manual_seed(seed)
    size = grey.shape[-1]
    den = ConditionalUNet(sample_size=size, in_channels=1, cond_dim=embeds.shape[1], n_tokens=4,
                          cross_attention_dim=32, block_out_channels=(16, 32), attention_levels=(False, True),
                          attention_head_dim=16, norm_num_groups=8, spatial_channels=1)
    if hasattr(den, "set_conditioning_stats"):
        den.set_conditioning_stats(torch.as_tensor(embeds))
        e_all = torch.as_tensor(embeds, dtype=torch.float32)
    else:  # older backend without stored statistics: standardise here and keep it in the pipeline input
        e_all = torch.as_tensor(embeds, dtype=torch.float32)
    x_all = torch.as_tensor(grey[:, None] * 2 - 1)
    m_all = torch.as_tensor(maps)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(den.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    den.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x0, e, m = x_all[idx], e_all[idx], m_all[idx].clone()
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        xt = noise_sched.add_noise(x0, noise, t)
        drop = torch.rand(batch_size, generator=g) < cond_dropout
        m[torch.rand(batch_size, generator=g) < map_dropout] = 0.0  # zero maps = unmodulated generator
        loss = torch.nn.functional.mse_loss(den(xt, t, e, spatial_maps=m, drop_mask=drop), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"backend step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f} s)")
    den.eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler.from_config(noise_sched.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_data(sub, emb, low):
    tr = sub["train"]
    return {"x": tr.responses, "embeds": emb[tr.stim_ids], "low": low[tr.stim_ids]}


def build_system(n_voxels, embed_dim, lr):
    from neurodecode.decoders.neuropictor import NeuroPictorEncoder
    from neurodecode.training.neuropictor_system import NeuroPictorSystem

    enc = NeuroPictorEncoder(n_voxels, embed_dim=embed_dim, n_tokens=8, d_model=64, depth=2, n_heads=4,
                             n_cond_tokens=4, map_channels=1, map_size=LOW, dropout=0.2)
    return NeuroPictorSystem(enc, lr=lr, low_channels=1, low_size=LOW, low_readout=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; numbers mean nothing")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "neurodecode" / "neuropictor-benchmark"),
                    help="caches (embeddings, backend weights, reconstructions); outside the repository")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", choices=["all", "backend", "encoders", "eval"], default="all",
                    help="run one phase (results cached in --workdir) so that phases can run in parallel")
    ap.add_argument("--only", nargs="+", default=None,
                    help="with --phase eval: evaluate only these units (subject names or 'references'), cache, exit")
    ap.add_argument("--n-images", type=int, default=800)
    ap.add_argument("--encoder-size", type=int, default=128)
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "neurodecode" / "embeddings"))
    ap.add_argument("--backend-steps", type=int, default=1200)
    ap.add_argument("--epochs-pretrain", type=int, default=30)
    ap.add_argument("--epochs-refine", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20, help="DDIM sampling steps")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--snr", type=float, nargs=3, default=(0.3, 0.25, 0.2))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from neurodecode.datasets.fmri import average_repeats
    from neurodecode.datasets.simulated_fmri import simulate_subjects
    from neurodecode.decoders.neuropictor import backend_conditioning
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.training.neuropictor_system import (
        load_checkpoint,
        low_level_target,
        pixcorr,
        pretrain,
        refine,
        save_checkpoint,
        ssim_score,
        two_way_identification,
    )
    from neurodecode.utils import seed_everything

    print(f"# command: python benchmarks/neuropictor_simulated.py {' '.join(sys.argv[1:])}")
    seed_everything(args.seed)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{'quick' if args.quick else 'full'}-s{args.seed}"
    grey, emb, encoder, labels = load_images(SIZE, args.cache_dir, 200 if args.quick else args.n_images,
                                             args.encoder_size, args.seed)
    n = len(grey)
    rng = np.random.default_rng(args.seed)
    n_test = 24 if args.quick else 100
    test_idx = np.sort(rng.choice(n, n_test, replace=False))
    train_mask = np.ones(n, bool)
    train_mask[test_idx] = False
    low = low_level_target(grey, LOW).numpy()  # (n, 1, LOW, LOW) in [-1, 1]: the low-level maps' target
    train_sizes = (120, 80, 30) if args.quick else (600, 400, 100)
    n_vox = (1500, 1000, 700)
    order = np.concatenate([np.flatnonzero(train_mask), test_idx])  # test images last for simulate_subjects
    subs = simulate_subjects(grey[order], emb[order], train_sizes=train_sizes, n_voxels=n_vox, snr=args.snr,
                             n_test=n_test, test_repeats=2, low_size=LOW, seed=args.seed)
    for s in subs:  # map stim ids back to the original image indices
        for part in ("train", "test"):
            s[part].stim_ids = order[s[part].stim_ids]
    names = [s["train"].subject for s in subs]
    log(f"{n} images ({SIZE}x{SIZE} grey), {n_test} test; subjects {names} voxels {n_vox} train trials {train_sizes} "
        f"snr {args.snr}")

    backend_steps = 60 if args.quick else args.backend_steps
    bpath = work / f"backend-{tag}-{backend_steps}.safetensors"
    if args.phase in ("all", "backend") and not bpath.exists():
        pipe = train_backend(grey[train_mask], emb[train_mask], low[train_mask], steps=backend_steps,
                             batch_size=32, seed=args.seed)
        pipe.save_weights(bpath)
        log(f"backend saved to {bpath}")

    lr = 1e-3
    ep_pre = 2 if args.quick else args.epochs_pretrain
    ep_ref = 1 if args.quick else args.epochs_refine
    ckpt = {(r, nm): work / f"encoder-{tag}-{r}-{nm}-{ep_pre}-{ep_ref}.safetensors"
            for r in ("single", "multi+refine") for nm in names}
    if args.phase in ("all", "encoders") and not all(p.exists() for p in ckpt.values()):
        data = {nm: make_data(s, emb, low) for nm, s in zip(names, subs)}
        t0 = time.time()
        multi = build_system({nm: s["train"].n_voxels for nm, s in zip(names, subs)}, emb.shape[1], lr)
        pretrain(multi, data, epochs=ep_pre, batch_size=32, seed=args.seed)
        log(f"multi-subject pre-training done ({time.time() - t0:.0f} s)")
        pre_state = {k: v.clone() for k, v in multi.state_dict().items()}
        for nm, s in zip(names, subs):
            multi.load_state_dict(pre_state)
            refine(multi, data, nm, epochs=ep_ref, batch_size=32, seed=args.seed)
            save_checkpoint(multi, ckpt[("multi+refine", nm)], overwrite=True)
            single = build_system({nm: s["train"].n_voxels}, emb.shape[1], lr)
            # Same number of passes over the target subject's data as pre-training + refinement.
            pretrain(single, {nm: data[nm]}, epochs=ep_pre + ep_ref, batch_size=32, seed=args.seed)
            save_checkpoint(single, ckpt[("single", nm)], overwrite=True)
            log(f"{nm}: refined and single-subject models trained ({time.time() - t0:.0f} s)")
    if args.phase not in ("all", "eval"):
        return
    pipe = BrainToImagePipeline.from_weights(bpath)
    den = pipe.denoiser

    def encoder_for(regime, nm):
        return load_checkpoint(ckpt[(regime, nm)]).encoder.eval()

    true_feat = emb[test_idx]
    truth = grey[test_idx]
    gen = dict(num_inference_steps=3 if args.quick else args.steps, guidance_scale=args.guidance)
    gtag = f"{tag}-{backend_steps}-{ep_pre}-{ep_ref}-{gen['num_inference_steps']}-{args.guidance}"
    recon_cache = {}

    def score(rec):
        rec_feat = encoder.encode(np.repeat(rec[..., None], 3, -1))
        return {"PixCorr": pixcorr(rec, truth), "SSIM": ssim_score(rec, truth),
                "2way_recon": two_way_identification(rec_feat, true_feat)}

    def subject_rows(nm, s):
        test = average_repeats(s["test"])  # rows in increasing stim id order == test_idx order
        assert np.array_equal(test.stim_ids, test_idx)
        rows = []
        for regime in ("single", "multi+refine"):
            enc = encoder_for(regime, nm)
            dec = enc.encode(test.responses, nm)
            emb_2way = two_way_identification(dec.embeds.numpy(), true_feat)
            coarse = (dec.spatial_maps.numpy()[:, 0] + 1) / 2
            map_pix = pixcorr(coarse, low_level_target(truth, LOW).numpy()[:, 0] / 2 + 0.5)
            level_sets = [("high", "low")] if regime == "single" else [("high",), ("low",), ("high", "low")]
            for levels in level_sets:
                cond = backend_conditioning(enc.encode(test.responses, nm, levels=levels), den)
                out = pipe(cond, generator=torch.Generator().manual_seed(args.seed), **gen)
                rec = out.images[..., 0]
                recon_cache[(nm, regime, "+".join(levels))] = rec
                rows.append({"subject": nm, "train_trials": len(s["train"]), "regime": regime,
                             "levels": "+".join(levels), **score(rec), "2way_decoded_embed": emb_2way,
                             "PixCorr_decoded_map": map_pix, "halluc_mean": float(np.mean(out.hallucination_score))})
                log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}))
        return rows

    def reference_rows():
        # The backend driven by the TRUE embeddings/maps of the test images, and unconditioned.
        from neurodecode.decoders import BrainConditioning

        e, m = torch.as_tensor(true_feat), torch.as_tensor(low[test_idx])
        refs = {"true high+low (upper bound)": BrainConditioning(e, m, meta={"levels": ["high", "low"]}),
                "true high only": BrainConditioning(e, None, meta={"levels": ["high"]}),
                "true low only": BrainConditioning(e, m, meta={"levels": ["low"]}),
                "no conditioning (floor)": BrainConditioning(e, None, meta={"levels": []})}
        rows = []
        for label, c in refs.items():
            out = pipe(backend_conditioning(c, den), generator=torch.Generator().manual_seed(args.seed), **gen)
            rows.append({"reference": label, **score(out.images[..., 0])})
            log(json.dumps(rows[-1]))
        return rows

    def cached(name, fn):
        # Each unit is cached so that several processes can share the work (--only) and a rerun is free.
        path = work / f"rows-{gtag}-{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        rows = fn()
        path.write_text(json.dumps(rows))
        return rows

    units = {nm: (lambda nm=nm, s=s: subject_rows(nm, s)) for nm, s in zip(names, subs)}
    units["references"] = reference_rows
    if args.only:
        for name in args.only:
            cached(name, units[name])
        return
    rows, ref_rows = [], []
    for name, fn in units.items():
        (ref_rows if name == "references" else rows).extend(cached(name, fn))

    print()
    print(f"SIMULATED fMRI (real images, real BOLD noise); {n_test} held-out test images x 2 repeats; seed {args.seed}; "
          f"DDIM {gen['num_inference_steps']} steps, guidance {args.guidance}; {SIZE}x{SIZE} grey")
    print()
    print("| subject | train trials | regime | levels | PixCorr | SSIM | 2-way (recon, EffNet-L0) | 2-way (decoded embed) | PixCorr decoded 4x4 map |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['subject']} | {r['train_trials']} | {r['regime']} | {r['levels']} | {r['PixCorr']:.3f} | {r['SSIM']:.3f} | "
              f"{r['2way_recon']:.3f} | {r['2way_decoded_embed']:.3f} | {r['PixCorr_decoded_map']:.3f} |")
    print()
    print("| reference (same backend, same test images) | PixCorr | SSIM | 2-way (recon) |")
    print("|---|---|---|---|")
    for r in ref_rows:
        print(f"| {r['reference']} | {r['PixCorr']:.3f} | {r['SSIM']:.3f} | {r['2way_recon']:.3f} |")
    print()
    # Target checks, stated as measured
    for nm in names:
        by = {r["levels"]: r for r in rows if r["subject"] == nm and r["regime"] == "multi+refine"}
        both, hi, lo = by["high+low"], by["high"], by["low"]
        print(f"{nm}: both > high-only and low-only on 2-way: {both['2way_recon'] > max(hi['2way_recon'], lo['2way_recon'])}; "
              f"on PixCorr: {both['PixCorr'] > max(hi['PixCorr'], lo['PixCorr'])}")
    least = names[int(np.argmin(train_sizes))]
    sg = next(r for r in rows if r["subject"] == least and r["regime"] == "single")
    mr = next(r for r in rows if r["subject"] == least and r["regime"] == "multi+refine" and r["levels"] == "high+low")
    print(f"{least} (least data): multi+refine vs single, 2-way recon {mr['2way_recon']:.3f} vs {sg['2way_recon']:.3f}, "
          f"PixCorr {mr['PixCorr']:.3f} vs {sg['PixCorr']:.3f}, 2-way decoded embed {mr['2way_decoded_embed']:.3f} vs "
          f"{sg['2way_decoded_embed']:.3f}")
    if recon_cache:
        np.savez_compressed(work / f"recons-{gtag}.npz", test_idx=test_idx,
                            **{"|".join(k): v for k, v in recon_cache.items()})


if __name__ == "__main__":
    main()
