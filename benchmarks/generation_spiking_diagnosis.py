"""Spiking-gap diagnosis on the calib split only (model selection never looks at the test split).

For each generator file: the epsilon-prediction mean squared error on the 179 calib images at fixed noise
levels t (same noise draw for every model), and the two-way identification, PixCorr and energy of DDIM
10-step reconstructions of the calib images from their encoder embeddings.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_spiking_diagnosis.py W1.safetensors [W2 ...] --cache-dir DIR
"""
import sys, time, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, __import__("os").path.dirname(__file__))
args = sys.argv[1:]
cache = None
if "--cache-dir" in args:
    i = args.index("--cache-dir")
    cache = args[i + 1]
    del args[i : i + 2]
files = args
from generation_common import load_digits_with_embeddings, to_model_size
from generation_eval import two_way, upsample, pixcorr
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.training.generation_system import images_to_tensor
from diffusers import DDPMScheduler
images, labels, embeds, split, enc = load_digits_with_embeddings(cache)
ca = split == "calib"
x0 = images_to_tensor(to_model_size(images[ca]), 1)
e = torch.from_numpy(embeds[ca])
for w in files:
    c0 = time.process_time()
    p = BrainToImagePipeline.from_weights(w)
    ns = DDPMScheduler.from_config(p.scheduler.config)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g)
    r = {}
    with torch.no_grad():
        for t in (50, 200, 400, 600, 800, 950):
            tt = torch.full((len(x0),), t)
            r[t] = round(torch.nn.functional.mse_loss(p.denoiser(ns.add_noise(x0, noise, tt), tt, e), noise).item(), 4)
    out = p(embeds[ca], 10, 2.0, generator=torch.Generator().manual_seed(0), measure_energy=True)
    f = enc.encode(upsample(out.images))
    print(w, r, "2way %.3f pixcorr %.3f energy %.3f mJ" % (two_way(f, embeds[ca]), pixcorr(out.images[..., 0], to_model_size(images[ca]).mean(-1)), out.energy["energy_mj"]),
          "cpu %.0f" % (time.process_time() - c0), flush=True)
