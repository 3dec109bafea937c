"""Simulated multi-subject fMRI benchmark (SIMULATED responses, real images, real BOLD noise).

No paired fMRI/image recording can be had offline, so this module builds one, and says so in
every output's ``meta["simulated"]``. Per subject:

* voxel responses are a fixed random mixture of two image feature sets:
  low-level ``f_low`` (the image downsampled to ``low_size`` x ``low_size`` luminance plus its
  local contrast energy at that resolution) and high-level ``f_high`` (the default image
  encoder's embedding, EfficientNet-Lite0, reduced to its first ``n_high`` principal
  components). Each voxel has its own weight between the two (an "early" vs "late" visual
  voxel), drawn from a Beta distribution;
* noise is REAL BOLD: volumes of the real 4D runs in ``../shared/data`` (nitime's two runs and
  nipy's functional run), masked, detrended and z-scored per run by :class:`BoldMasker`. Each
  subject draws its voxels from one run; each trial's noise is the average of two random
  volumes of that run scaled back to unit variance, so the spatial correlation of real noise
  is kept;
* subjects differ in voxel count, SNR and amount of training data; the test images are the
  same held-out images for every subject (like NSD's shared images) and never appear in any
  subject's training trials; test trials are repeated and averaged.
"""

import json
from pathlib import Path

import numpy as np

from ..utils import UsageError, data_dir
from ..utils import cache_dir as default_cache_dir
from .fmri import BoldMasker, FMRIResponses

#: Real 4D BOLD runs used as noise sources, relative to the data folder.
NOISE_SOURCES = ("fmri_nitime/fmri1.nii.gz", "fmri_nitime/fmri2.nii.gz", "fmri_nipy/functional.nii.gz")


def real_bold_noise(sources=NOISE_SOURCES, root=None):
    """Cleaned real BOLD volumes to draw noise from.

    Returns
    -------
    list of ndarray, shape (n_volumes, n_voxels)
        One per source run, detrended and z-scored per voxel.
    """
    from ..io import read_bold

    root = data_dir() if root is None else root
    out = []
    for s in sources:
        run = read_bold(root / s)
        out.append(BoldMasker().fit_transform([run])[0])
    return out


def low_level_features(images, size=8):
    """Downsampled luminance and local contrast energy.

    Parameters
    ----------
    images : ndarray, shape (n, H, W) or (n, C, H, W), values in [0, 1]
    size : int
        Output grid; H and W must be multiples of it.

    Returns
    -------
    ndarray of float32, shape (n, 2 * size * size)
    """
    x = np.asarray(images, np.float32)
    if x.ndim == 4:
        x = x.mean(1)
    n, H, W = x.shape
    if H % size or W % size:
        raise UsageError(f"Images of {H}x{W} pixels cannot be pooled to a {size}x{size} grid; use a divisor.")
    blocks = x.reshape(n, size, H // size, size, W // size)
    lum = blocks.mean((2, 4))
    energy = ((blocks - lum[:, :, None, :, None]) ** 2).mean((2, 4))
    return np.concatenate([lum.reshape(n, -1), np.sqrt(energy).reshape(n, -1)], 1).astype(np.float32)


def _pca(X, k):
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ vt[:k].T


def simulate_subjects(images, embeddings, *, train_sizes=(600, 400, 120), n_voxels=(1500, 1000, 700),
                      snr=(0.5, 0.4, 0.3), test_idx=None, n_test=100, test_repeats=2, low_size=8, n_high=64,
                      noise=None, seed=0):
    """Simulate responses of several subjects to real images.

    Parameters
    ----------
    images : ndarray, shape (n_images, H, W) or (n_images, C, H, W), values in [0, 1]
    embeddings : ndarray, shape (n_images, d)
        The default image encoder's embeddings of ``images``.
    train_sizes, n_voxels, snr : sequences of equal length (one entry per subject)
        Training trials, voxel count and signal-to-noise variance ratio per subject.
    test_idx : array-like of int | None
        Held-out images shown to every subject; default: the last ``n_test`` images.
    test_repeats : int
        Trials per test image (averaged by the caller with :func:`average_repeats`).
    noise : list of ndarray | None
        Noise sources from :func:`real_bold_noise` (loaded when ``None``).
    seed : int

    Returns
    -------
    subjects : list of dict
        Per subject: ``"train"`` and ``"test"`` :class:`FMRIResponses` (``stim_ids`` index
        ``images``), ``"snr"``, ``"noise_source"``.
    """
    if not (len(train_sizes) == len(n_voxels) == len(snr)):
        raise UsageError("train_sizes, n_voxels and snr need one entry per subject (equal lengths).")
    rng = np.random.default_rng(seed)
    n_img = len(images)
    test_idx = np.arange(n_img - n_test, n_img) if test_idx is None else np.asarray(test_idx)
    pool = np.setdiff1d(np.arange(n_img), test_idx)
    if max(train_sizes) > len(pool):
        raise UsageError(f"A subject asks for {max(train_sizes)} training images but only {len(pool)} are not held out.")
    f_low = low_level_features(images, low_size)
    f_high = _pca(np.asarray(embeddings, np.float64), n_high)
    f_low = (f_low - f_low.mean(0)) / (f_low.std(0) + 1e-6)
    f_high = (f_high - f_high.mean(0)) / (f_high.std(0) + 1e-6)
    noise = real_bold_noise() if noise is None else noise
    subjects = []
    for s, (n_tr, nv, s_snr) in enumerate(zip(train_sizes, n_voxels, snr)):
        src = noise[s % len(noise)]
        # Voxel tuning: each voxel mixes low- and high-level features with its own weight.
        alpha = rng.beta(2.0, 2.0, size=nv)
        W_low = rng.standard_normal((f_low.shape[1], nv)) / np.sqrt(f_low.shape[1])
        W_high = rng.standard_normal((f_high.shape[1], nv)) / np.sqrt(f_high.shape[1])
        signal = np.sqrt(alpha) * (f_low @ W_low) + np.sqrt(1 - alpha) * (f_high @ W_high)
        signal = (signal - signal.mean(0)) / (signal.std(0) + 1e-6)
        vox_map = rng.choice(src.shape[1], size=nv, replace=nv > src.shape[1])

        def trials(stim):
            t1 = rng.integers(0, len(src), size=len(stim))
            t2 = (t1 + rng.integers(1, len(src), size=len(stim))) % len(src)
            eps = (src[t1][:, vox_map] + src[t2][:, vox_map]) / np.sqrt(2.0)
            return (np.sqrt(s_snr) * signal[stim] + eps).astype(np.float32)

        tr_stim = rng.choice(pool, size=n_tr, replace=False)
        te_stim = np.repeat(test_idx, test_repeats)
        name = f"sim-{s + 1:02d}"
        meta = {"simulated": True, "snr": float(s_snr), "noise_source": NOISE_SOURCES[s % len(NOISE_SOURCES)],
                "low_size": low_size, "n_high": n_high, "seed": seed}
        subjects.append({
            "train": FMRIResponses(trials(tr_stim), tr_stim, name, meta=meta),
            "test": FMRIResponses(trials(te_stim), te_stim, name, meta=meta),
            "snr": float(s_snr),
            "noise_source": meta["noise_source"],
        })
    return subjects


# --------------------------------------------------------------------------------------------
# The NeuroPictor demo input, rebuilt on demand (never shipped: it holds real BOLD noise)
# --------------------------------------------------------------------------------------------
#: Parameters of ``benchmarks/neuropictor_simulated.py`` (full run, defaults) that fix sim-01's test
#: responses; the cache file name hashes them, so a change gives another file.
DEMO_PARAMS = {
    "version": 1, "seed": 0, "n_images": 800, "encoder_size": 128, "size": 16, "low_size": 4,
    "n_test": 100, "n_val": 50, "train_sizes": [600, 400, 100], "n_voxels": [1500, 1000, 700],
    "snr": [0.3, 0.25, 0.2], "test_repeats": 2, "subject": "sim-01",
}


def benchmark_images(*, seed=0, n_images=800, size=16, encoder_size=128, cache_dir=None):
    """The simulated benchmark's images and their embeddings.

    ``load_image_set("mixed", size=64, seed=seed)``, a fixed random subset of ``n_images``
    (generator ``seed + 7``), default-encoder embeddings at ``encoder_size`` px and the images
    area-averaged to ``size`` x ``size`` grey.

    Returns
    -------
    grey : ndarray of float32, shape (n_images, size, size), values in [0, 1]
    emb : ndarray of float32, shape (n_images, d)
    iset : ImageSet
    keep : ndarray of int, shape (n_images,)
        Indices of the subset in ``iset``.
    """
    from ..decoders.image_encoders import encode_cached, get_image_encoder
    from .paired import load_image_set

    iset = load_image_set("mixed", size=64, seed=seed)
    keep = np.sort(np.random.default_rng(seed + 7).choice(len(iset), int(n_images), replace=False))
    imgs = iset.images[keep]
    emb = encode_cached(get_image_encoder(image_size=encoder_size), imgs,
                        cache_dir=default_cache_dir() / "embeddings" if cache_dir is None else cache_dir)
    f = 64 // size
    grey = imgs.astype(np.float32).mean(-1).reshape(len(imgs), size, f, size, f).mean((2, 4)) / 255.0
    return grey, emb, iset, keep


def benchmark_split(n, n_test, n_val, seed):
    """Test and validation image indices of the simulated benchmark (sorted, disjoint)."""
    rng = np.random.default_rng(seed)
    test_idx = np.sort(rng.choice(n, n_test, replace=False))
    val_idx = np.sort(rng.choice(np.setdiff1d(np.arange(n), test_idx), n_val, replace=False))
    return test_idx, val_idx


def neuropictor_demo_file(*, params=None, cache_dir=None):
    """The input ``neuropictor-sim-demo``: SIMULATED test responses of sim-01, rebuilt on demand.

    The file holds real BOLD noise (from the data folder), so it is not shipped; it is regenerated
    with the benchmark's simulation and seed (``benchmarks/neuropictor_simulated.py``) and kept in
    ``cache_dir`` (default :func:`neurodecode.utils.cache_dir`; image embeddings in its ``embeddings`` folder) under a
    name that hashes the parameters; an existing file is reused. Takes about 20 s of CPU the first
    time (image embeddings and the BOLD run), then none. Layout: NSD-style group ``sim-01`` (two repeats per test image) plus a top-level
    ``images`` dataset (n_images, 16, 16) float16 of the seen grey images indexed by stim id (only
    the test images are non-zero).

    Parameters
    ----------
    params : dict | None
        Simulation settings (default :data:`DEMO_PARAMS`, those of the shipped model).
    cache_dir : path-like | None

    Returns
    -------
    pathlib.Path
        The HDF5 file.

    Raises
    ------
    InputFileError
        When the file is not cached and the data folder lacks the BOLD run it needs.
    """
    import h5py

    from ..utils import InputFileError, atomic_path, config_hash
    from .fmri import FMRIResponses, average_repeats, write_nsd_responses

    p = dict(DEMO_PARAMS if params is None else params)
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    out = Path(cache_dir) / f"neuropictor_sim_demo-{config_hash(p)[:16]}.h5"
    if out.is_file():
        return out
    root = data_dir()
    missing = [s for s in NOISE_SOURCES[:1] if not (root / s).is_file()]
    if missing:
        raise InputFileError(
            f"The demo input 'neuropictor-sim-demo' is rebuilt from real BOLD noise, but {root / missing[0]} is missing: "
            "set NEURODECODE_DATA to the folder of real recordings (it needs fmri_nitime/fmri1.nii.gz)."
        )
    grey, emb, _, _ = benchmark_images(seed=p["seed"], n_images=p["n_images"], size=p["size"],
                                       encoder_size=p["encoder_size"], cache_dir=Path(cache_dir) / "embeddings")
    test_idx, val_idx = benchmark_split(len(grey), p["n_test"], p["n_val"], p["seed"])
    held = np.concatenate([val_idx, test_idx])
    # sim-01 is the first subject: its draws come first from the shared generator, so simulating it alone
    # (with its own noise run) gives the same responses as the three-subject benchmark.
    sub = simulate_subjects(grey, emb, train_sizes=p["train_sizes"][:1], n_voxels=p["n_voxels"][:1], snr=p["snr"][:1],
                            test_idx=held, n_test=len(held), test_repeats=p["test_repeats"], low_size=p["low_size"],
                            noise=real_bold_noise(NOISE_SOURCES[:1], root), seed=p["seed"])[0]["test"]
    keep = np.isin(sub.stim_ids, test_idx)
    # averaged over repeats, as the benchmark scores them (its ``split``)
    test = average_repeats(FMRIResponses(sub.responses[keep], sub.stim_ids[keep], sub.subject, meta=sub.meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        write_nsd_responses(tmp, [test])
        with h5py.File(tmp, "a") as f:
            imgs = np.zeros((len(grey), p["size"], p["size"]), np.float16)
            imgs[test_idx] = grey[test_idx]
            f.create_dataset("images", data=imgs, compression="gzip")
            f.attrs["simulated"] = "SIMULATED responses of benchmark subject " + p["subject"]
            f.attrs["params"] = json.dumps(p)
    return out
