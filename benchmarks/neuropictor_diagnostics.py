"""Validation-only diagnostics of the NeuroPictor simulated benchmark (never looks at the test images' scores).

Reads the caches of ``benchmarks/neuropictor_simulated.py`` (``--workdir``) and prints, on the 50 VALIDATION
images of one seed:

* ``ceiling``: two-way identification of the seen images themselves at the generator's resolution
  (16x16 grey through the default encoder) against the original embeddings -- what a perfect
  generator could reach on the benchmark's two-way metric;
* ``generators GEN...``: each generator file driven by the TRUE features (both levels / high only / low
  only), DDIM 10 steps, over guidance scales and sampling seeds 0..2;
* ``decoded GEN``: the same generator driven by the regression-stage multi+refine encoders' decoded
  features (sim-01 and sim-03), over guidance settings (``--control-guidance`` weights the maps
  separately), two sampling seeds; ``--map-gain`` scales the decoded maps' deviation from their
  training mean.

These are the runs behind the "Diagnosis" section of ``docs/benchmarks/neuropictor.md``.

Usage::

    python benchmarks/neuropictor_diagnostics.py ceiling
    python benchmarks/neuropictor_diagnostics.py generators GEN_A.safetensors GEN_B.safetensors
    python benchmarks/neuropictor_diagnostics.py decoded GEN.safetensors
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import neuropictor_simulated as bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["ceiling", "generators", "decoded"])
    ap.add_argument("generators", nargs="*", help="generator files (BrainToImagePipeline.save_weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "neurodecode" / "neuropictor-benchmark-v2"))
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "neurodecode" / "embeddings"))
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--map-gain", type=float, nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    from neurodecode.datasets.simulated_fmri import benchmark_split, simulate_subjects
    from neurodecode.decoders import BrainConditioning
    from neurodecode.decoders.neuropictor import backend_conditioning
    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.training.neuropictor_system import load_checkpoint, low_level_target, pixcorr, two_way_identification

    t0 = time.process_time()
    seed = args.seed
    work = Path(args.workdir)
    grey, emb, enc_img, _ = bench.load_images(16, args.cache_dir, 800, 128, seed)
    test_idx, val_idx = benchmark_split(len(grey), 100, 50, seed)
    held = np.concatenate([val_idx, test_idx])
    low = low_level_target(grey, 4).numpy()

    def feat(g):
        return enc_img.encode(np.repeat(g[..., None], 3, -1))

    seen = feat(grey[val_idx])
    if args.what == "ceiling":
        print(f"seed {seed}: two-way of the seen 16x16 grey images vs the original embeddings: validation "
              f"{two_way_identification(seen, emb[val_idx]):.3f}, test {two_way_identification(feat(grey[test_idx]), emb[test_idx]):.3f}")
        return

    def evaluate(pipe, cond, steps, g, sl, sampling_seeds):
        tw, tw16, pc = [], [], []
        for s in sampling_seeds:
            o = pipe(backend_conditioning(cond, pipe.denoiser), num_inference_steps=steps, guidance_scale=g,
                     control_guidance_scale=sl, generator=torch.Generator().manual_seed(s), measure_energy=False)
            r = o.images[..., 0]
            f = feat(r)
            tw.append(two_way_identification(f, emb[val_idx], per_image=True))
            tw16.append(two_way_identification(f, seen, per_image=True))
            pc.append(pixcorr(r, grey[val_idx], per_image=True))
        return np.mean(tw, 0), np.mean(tw16, 0), np.mean(pc, 0)

    if args.what == "generators":
        e, m = torch.as_tensor(emb[val_idx]), torch.as_tensor(low[val_idx])
        conds = {"both": BrainConditioning(e, m, meta={"levels": ["high", "low"]}),
                 "high": BrainConditioning(e, None, meta={"levels": ["high"]}),
                 "low": BrainConditioning(e, m, meta={"levels": ["low"]})}
        for path in args.generators:
            pipe = BrainToImagePipeline.from_weights(path)
            for steps in args.steps:
                for g in args.guidance:
                    res = {k: evaluate(pipe, c, steps, g, None, range(3)) for k, c in conds.items()}
                    d = res["both"][0] - res["high"][0]
                    print(f"{Path(path).name} true features, DDIM {steps}, guidance {g}: " + "; ".join(
                        f"{k} 2-way {v[0].mean():.3f} PixCorr {v[2].mean():.3f}" for k, v in res.items())
                        + f"; both - high 2-way {d.mean():+.3f} [cpu {time.process_time() - t0:.0f} s]", flush=True)
        return

    pipe = BrainToImagePipeline.from_weights(args.generators[0])
    subs = simulate_subjects(grey, emb, train_sizes=(600, 400, 100), n_voxels=(1500, 1000, 700), snr=(0.3, 0.25, 0.2),
                             test_idx=held, n_test=len(held), test_repeats=2, low_size=4, seed=seed)
    grid = {("high",): [(2.0, None), (3.0, None)], ("low",): [(2.0, None)],
            ("high", "low"): [(2.0, None), (3.0, None), (3.0, 1.0), (3.0, 2.0), (2.0, 0.5)]}
    for s in subs:
        nm = s["train"].subject
        if nm == "sim-02":
            continue
        enc = load_checkpoint(work / f"encoder-full-s{seed}-regression-multi+refine-{nm}-30-15.safetensors").encoder.eval()
        val = bench.split(s["test"], val_idx)
        for levels, settings in grid.items():
            dec = enc.encode(val.responses, nm, levels=levels)
            for g, sl in settings:
                r = evaluate(pipe, dec, 10, g, sl, [seed, seed + 1000])
                print(f"{nm} multi+refine {'+'.join(levels)} guidance {g} maps {sl}: 2-way {r[0].mean():.3f} "
                      f"2-way vs seen 16x16 {r[1].mean():.3f} PixCorr {r[2].mean():.3f} [cpu {time.process_time() - t0:.0f} s]",
                      flush=True)
        dec = enc.encode(val.responses, nm)
        mu = enc.encode(s["train"].responses, nm).spatial_maps.mean(0, keepdim=True)
        for gain in args.map_gain:
            c = BrainConditioning(dec.embeds, mu + gain * (dec.spatial_maps - mu), meta=dec.meta)
            r = evaluate(pipe, c, 10, 2.0, None, [seed, seed + 1000])
            print(f"{nm} multi+refine high+low guidance 2.0, map gain {gain}: 2-way {r[0].mean():.3f} "
                  f"2-way vs seen 16x16 {r[1].mean():.3f} PixCorr {r[2].mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
