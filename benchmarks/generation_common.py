"""Shared set-up of the generation benchmarks: data, split, model configs (imported by the scripts)."""

import numpy as np

# The digits' native resolution is 8x8; the encoder sees them upsampled to 16x16 (then 224), and the
# denoisers work at 8x8, which keeps training to minutes on one shared CPU core.
ENCODED_SIZE = 16
IMAGE_SIZE = 8
SPLIT_SEED = 0

# Denoisers sized for minutes of CPU training on one thread (16x16 grey digits).
_SHARED = dict(sample_size=IMAGE_SIZE, in_channels=1, cond_dim=1280, n_tokens=4, cross_attention_dim=32,
               block_out_channels=(16, 32), layers_per_block=1, attention_levels=(False, True), attention_head_dim=8)
ANN_CONFIG = dict(_SHARED, norm_num_groups=8)
SNN_CONFIG = dict(_SHARED, time_steps=4, tau=None, threshold=1.0)
SAMPLING_STEPS = 10
GUIDANCE = 2.0


def load_digits_with_embeddings(cache_dir=None):
    """Real 8x8 scikit-learn digits upsampled to 16x16, their EfficientNet-Lite0 embeddings and split.

    Returns
    -------
    images : ndarray (n, 16, 16, 3) uint8
        What the encoder embedded (use :func:`to_model_size` for the denoisers' 8x8 targets).
    labels : ndarray (n,)
    embeds : ndarray (n, 1280) float32
    split : ndarray (n,) of "train" / "calib" / "test"
    encoder : ImageEncoder
    """
    from neurodecode.datasets.paired import load_image_set
    from neurodecode.decoders.image_encoders import encode_cached, get_image_encoder
    from neurodecode.training.generation_system import image_split

    s = load_image_set("digits", size=ENCODED_SIZE)
    enc = get_image_encoder()
    embeds = encode_cached(enc, s.images, cache_dir=cache_dir)
    split = image_split(s.labels, calib_fraction=0.1, test_fraction=0.2, seed=SPLIT_SEED)
    return s.images, s.labels, np.asarray(embeds, np.float32), split, enc


def noise_conditioning(embeds_train, n, seed):
    """Out-of-distribution conditioning: Gaussian vectors with the training embeddings' per-dim mean and std.

    The hard case: per dimension it matches real embeddings (so its raw and standardised norms match
    too, to about 2 %); only the correlations between dimensions differ.
    """
    rng = np.random.default_rng(seed)
    mu, sd = embeds_train.mean(0), embeds_train.std(0)
    return (mu + sd * rng.standard_normal((n, embeds_train.shape[1]))).astype(np.float32)


def isotropic_noise_conditioning(embeds_train, n, seed):
    """Isotropic Gaussian vectors rescaled to the training embeddings' mean norm (raw space).

    Same length as a real embedding but none of its per-dimension statistics: after the denoiser's
    standardisation it lies far from every training vector (an easy out-of-distribution case).
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, embeds_train.shape[1]))
    r = np.linalg.norm(embeds_train, axis=1).mean()
    return (z / np.linalg.norm(z, axis=1, keepdims=True) * r).astype(np.float32)


def to_model_size(images):
    """(n, 16, 16, 3) uint8 -> (n, 8, 8, 3) float in [0, 1] by 2x2 averaging."""
    x = np.asarray(images, np.float32) / 255.0
    n, h, w, c = x.shape
    f = h // IMAGE_SIZE
    return x.reshape(n, IMAGE_SIZE, f, IMAGE_SIZE, f, c).mean((2, 4))


def unseen_class_calibration_embeddings(encoder, n, cache_dir=None):
    """Embeddings of ``n`` crops of scikit-image/scikit-learn photographs (unseen classes for calibration).

    Kept apart from the evaluation's unseen classes (the LFW faces / non-faces), so that the detector is
    never calibrated on the images it is scored on.
    """
    from neurodecode.datasets.paired import load_image_set
    from neurodecode.decoders.image_encoders import encode_cached

    crops = load_image_set("photos", size=ENCODED_SIZE, crops_per_photo=8, seed=1)
    return np.asarray(encode_cached(encoder, crops.images, cache_dir=cache_dir), np.float32)[:n]


def calibrate_pipeline(pipe, embeds, split, encoder, seed=0, ks=(1, 2, 3, 4, 5, 6, 8, 10), draws=(1, 2, 4, 8),
                       score_schedulers=(None, "DDPMScheduler"), score_guidances=(None,), cache_dir=None, verbose=True):
    """Calibrate the hallucination detector of ``pipe`` on held-out data only (never the test split).

    In-distribution: the calib images' embeddings. Out-of-distribution, two kinds: as many noise vectors
    (fresh seed) and as many embeddings of photograph crops (classes the generator never saw; not the
    evaluation's LFW images). For each scoring sampler (scheduler and guidance; None: the image's, whose
    run is then the first draw), ``k``, the number of draws and the rule maximise the worse of the two
    AUROCs; the scoring sampler with the better worst AUROC is kept (on a tie the earlier candidate).
    """
    import torch

    from neurodecode.generation.hallucination import calibrate

    cal_e = embeds[split == "calib"]
    conds = {"in": cal_e,
             "noise": noise_conditioning(embeds[split == "train"], len(cal_e), seed=seed + 100),
             "unseen classes": unseen_class_calibration_embeddings(encoder, len(cal_e), cache_dir)}
    best = None
    for sched, g in [(s, g) for s in score_schedulers for g in score_guidances]:
        runs = {name: pipe.sample_trajectories(e, SAMPLING_STEPS, g or GUIDANCE,
                                               generator=torch.Generator().manual_seed(seed + 1),
                                               draws=max(draws), scheduler=sched)
                for name, e in conds.items()}
        cal = calibrate(runs.pop("in"), runs, scheduler=type(pipe.scheduler).__name__,
                        num_inference_steps=SAMPLING_STEPS, ks=ks, draws=draws, score_scheduler=sched,
                        score_guidance=g)
        if verbose:
            print(f"scoring with {sched or 'the image scheduler'}, guidance {g or GUIDANCE}: k {cal.k}, "
                  f"draws {cal.draws}, rule {cal.rule}, calib AUROC "
                  f"{ {k: round(v, 3) for k, v in cal.validation_auroc_per_kind.items()} }", flush=True)
        if best is None or cal.validation_auroc > best.validation_auroc:
            best = cal
    pipe.add_calibration(best)
    return best
