"""Paired brain/image data: real offline images and a simulated paired EEG/MEG benchmark.

No public paired brain/image dataset (THINGS-EEG2, THINGS-MEG, NSD) can be obtained offline here,
so the brain-to-image decoders are validated on **simulated** pairs built from real ingredients:

- real images shipped inside installed Python packages (:func:`load_image_set`): scikit-learn's
  8x8 handwritten digits (1797), scikit-image's sample photographs and scikit-learn's two sample
  photos (cut into crops, grouped by source photo), and scikit-image's LFW subset (200 small faces and
  non-faces);
- their embeddings from the default image encoder (ImageNet EfficientNet-Lite0);
- a forward model (:func:`build_simulated_pairs`) that maps each image's features to sensor space:
  ``k`` sources whose loadings are the whitened principal components of the image embeddings, each
  with a smooth scalp pattern over the real montage positions and an ERP-like time course
  (gamma-shaped, 80-250 ms latencies, trial-to-trial latency jitter), optionally computed from a
  low-passed (foveated Gaussian blur) copy of the image, to mimic the gap between what was seen and
  what the brain signal carries;
- real background noise: segments of real resting/task EEG (PhysioNet eegmmidb, one real person per
  simulated subject) or of the real KIT MEG recording, added at a stated signal-to-noise ratio;
- a zero-shot split: test images come from concepts (digit classes, source photos, LFW groups) that no
  training image shares, as in THINGS' 200-way zero-shot protocol.

Everything here is deterministic given ``seed``. The simulation is a test bench for the decoders;
numbers measured on it say nothing about real brain recordings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, check_option, data_dir

logger = logging.getLogger("neurodecode")

__all__ = [
    "ImageSet",
    "PairedBrainImageData",
    "load_image_set",
    "build_simulated_pairs",
    "zero_shot_split",
    "IMAGE_SOURCES",
]

IMAGE_SOURCES = ("digits", "photos", "faces", "mixed")

# Photographs inside the scikit-image and scikit-learn wheels (no download involved).
_SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png", "clock_motion.png",
    "microaneurysms.png", "color.png",
)
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


@dataclass
class ImageSet:
    """Real images with their concept labels.

    Attributes
    ----------
    images : ndarray, shape (n, H, W, 3), uint8
    labels : ndarray, shape (n,), int
        Concept of each image (digit class, source photo, ...); zero-shot splits never share one.
    label_names : list of str
        Name of each concept, indexed by ``labels``.
    source : str
        Which image set these came from.
    """

    images: np.ndarray
    labels: np.ndarray
    label_names: list
    source: str

    def __len__(self):
        return len(self.images)


def _resize_uint8(img, size):
    from skimage.transform import resize

    out = resize(img.astype(np.float32) / 255.0, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def _to_rgb_uint8(img):
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.round(255 * (img - img.min()) / max(np.ptp(img), 1e-12)), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img[..., :3]


def _digits(size):
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.round(d.images / 16.0 * 255).astype(np.uint8)  # 17 grey levels -> uint8
    imgs = np.repeat(imgs[..., None], 3, axis=-1)
    if size is not None:
        imgs = np.stack([_resize_uint8(im, size) for im in imgs])
    return ImageSet(imgs, d.target.astype(int), [f"digit {i}" for i in range(10)], "digits")


def _photos(size, crops_per_photo, rng):
    import skimage
    import sklearn
    from skimage.io import imread

    paths = [Path(skimage.__file__).parent / "data" / p for p in _SKIMAGE_PHOTOS]
    paths += [Path(sklearn.__file__).parent / "datasets" / "images" / p for p in _SKLEARN_PHOTOS]
    crop = 64 if size is None else size
    imgs, labels, names = [], [], []
    for lab, p in enumerate(q for q in paths if q.is_file()):
        photo = _to_rgb_uint8(imread(p))
        h, w = photo.shape[:2]
        names.append(p.stem)
        for _ in range(crops_per_photo):
            # Crops of random size (1/4 to 1/2 of the short side) at random places, resized to `crop`.
            s = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            imgs.append(_resize_uint8(photo[y : y + s, x : x + s], crop))
            labels.append(len(names) - 1)
    return ImageSet(np.stack(imgs), np.asarray(labels), names, "photos")


def _faces(size):
    import skimage

    arr = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")  # (200, 25, 25) float [0, 1]
    imgs = np.stack([_to_rgb_uint8(np.round(a * 255).astype(np.uint8)) for a in arr])
    if size is not None:
        imgs = np.stack([_resize_uint8(im, size) for im in imgs])
    # The first 100 are faces, the last 100 non-face patches (skimage's documentation); split each
    # into 10 pseudo-concepts so that a zero-shot split can hold some out.
    labels = np.repeat(np.arange(20), 10)
    names = [f"face group {i}" for i in range(10)] + [f"non-face group {i}" for i in range(10)]
    return ImageSet(imgs, labels, names, "faces")


def load_image_set(source="mixed", *, size=64, crops_per_photo=40, seed=0):
    """Load real images shipped with installed packages (never downloads).

    Parameters
    ----------
    source : {"digits", "photos", "faces", "mixed"}
        ``"digits"``: scikit-learn's 1797 handwritten digits (8x8, 10 concepts).
        ``"photos"``: ``crops_per_photo`` random crops of each of 23 sample photographs of
        scikit-image and scikit-learn (concept = source photo).
        ``"faces"``: scikit-image's LFW subset (100 faces + 100 non-faces, 25x25).
        ``"mixed"``: all three, with concepts renumbered.
    size : int | None
        Side of the returned square images; ``None`` keeps native sizes (digits 8, faces 25, crops 64).
        ``"mixed"`` needs a common size.
    crops_per_photo : int
        Crops per photograph for ``"photos"``/``"mixed"``.
    seed : int
        Seed of the crop positions.

    Returns
    -------
    ImageSet
    """
    check_option("source", source, IMAGE_SOURCES)
    rng = np.random.default_rng(seed)
    if source == "digits":
        return _digits(size)
    if source == "photos":
        return _photos(size, crops_per_photo, rng)
    if source == "faces":
        return _faces(size)
    if size is None:
        raise UsageError("Invalid value for the 'size' parameter: source='mixed' needs a common size, got None.")
    parts = [_digits(size), _photos(size, crops_per_photo, rng), _faces(size)]
    imgs, labels, names = [], [], []
    for p in parts:
        imgs.append(p.images)
        labels.append(p.labels + len(names))
        names += [f"{p.source}: {n}" for n in p.label_names]
    return ImageSet(np.concatenate(imgs), np.concatenate(labels), names, "mixed")


def zero_shot_split(labels, n_test, *, seed=0):
    """Choose test images whose concepts never appear in training.

    Concepts are drawn at random until at least ``n_test`` images are held out; all images of a
    drawn concept go to the test set.

    Parameters
    ----------
    labels : array-like, shape (n,)
    n_test : int
        Minimum number of test images.

    Returns
    -------
    test_mask : ndarray of bool, shape (n,)
    """
    labels = np.asarray(labels)
    concepts = np.unique(labels)
    if n_test >= len(labels):
        raise UsageError(f"Invalid value for the 'n_test' parameter: it must be below the {len(labels)} images, got {n_test}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(concepts)
    test = np.zeros(len(labels), bool)
    for c in order:
        if test.sum() >= n_test:
            break
        test |= labels == c
    if test.all():
        raise UsageError("Cannot make a zero-shot split: every concept would be in the test set; lower 'n_test'.")
    return test


@dataclass
class PairedBrainImageData:
    """Brain responses paired with the images that evoked them.

    Attributes
    ----------
    X : ndarray, shape (n_trials, n_chans, n_times), float32
        Brain data (volts for EEG, tesla for MEG), braindecode's layout.
    image_index : ndarray, shape (n_trials,), int
        Row of ``images``/``embeds`` each trial shows.
    subject : ndarray, shape (n_trials,), int
    split : ndarray, shape (n_trials,), str
        ``"train"`` or ``"test"``; test images never appear in training trials.
    images : ndarray, shape (n_images, H, W, 3), uint8 | None
    embeds : ndarray, shape (n_images, d), float32 | None
        Target image embeddings (unblurred) from ``meta["encoder"]``.
    image_labels : ndarray, shape (n_images,), int | None
    ch_names : list of str
    ch_pos : ndarray, shape (n_chans, 3) | None
        Sensor positions in metres (head frame).
    ch_type : str
        ``"eeg"`` or ``"mag"``/``"grad"``.
    sfreq : float
    meta : dict
        Provenance (``simulated`` flag, SNR, noise source, encoder, seed ...).
    """

    X: np.ndarray
    image_index: np.ndarray
    subject: np.ndarray
    split: np.ndarray
    ch_names: list
    sfreq: float
    images: np.ndarray | None = None
    embeds: np.ndarray | None = None
    image_labels: np.ndarray | None = None
    ch_pos: np.ndarray | None = None
    ch_type: str = "eeg"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.X)
        for name in ("image_index", "subject", "split"):
            if len(getattr(self, name)) != n:
                raise UsageError(f"PairedBrainImageData: {name!r} has {len(getattr(self, name))} entries for {n} trials.")
        if self.X.ndim != 3 or self.X.shape[1] != len(self.ch_names):
            raise UsageError(
                f"PairedBrainImageData: X must be (n_trials, n_chans={len(self.ch_names)}, n_times), got {self.X.shape}."
            )

    def __len__(self):
        return len(self.X)

    @property
    def n_subjects(self):
        return int(self.subject.max()) + 1 if len(self.subject) else 0

    def select(self, split):
        """Return a copy restricted to trials of ``split`` (``"train"`` or ``"test"``)."""
        check_option("split", split, ("train", "test"))
        m = self.split == split
        return PairedBrainImageData(
            X=self.X[m], image_index=self.image_index[m], subject=self.subject[m], split=self.split[m],
            ch_names=list(self.ch_names), sfreq=self.sfreq, images=self.images, embeds=self.embeds,
            image_labels=self.image_labels, ch_pos=self.ch_pos, ch_type=self.ch_type, meta=dict(self.meta),
        )

    def test_images(self):
        """Sorted unique image rows used by test trials (the retrieval candidates)."""
        return np.unique(self.image_index[self.split == "test"])

    def info(self):
        """An ``mne.Info`` for the sensors (positions set when known)."""
        import mne

        info = mne.create_info(list(self.ch_names), self.sfreq, self.ch_type)
        if self.ch_pos is not None and self.ch_type == "eeg":
            mont = mne.channels.make_dig_montage(dict(zip(self.ch_names, self.ch_pos)), coord_frame="head")
            info.set_montage(mont)
        elif self.ch_pos is not None:
            for ch, p in zip(info["chs"], self.ch_pos):
                ch["loc"][:3] = p
        return info

    def to_epochs(self, split=None):
        """Return ``mne.EpochsArray`` with metadata columns image_index, subject, split."""
        import mne
        import pandas as pd

        d = self if split is None else self.select(split)
        meta = pd.DataFrame({"image_index": d.image_index, "subject": d.subject, "split": d.split})
        return mne.EpochsArray(d.X.astype(np.float64), d.info(), metadata=meta, verbose="error")


# ---------------------------------------------------------------------------------------------
# Real background noise
# ---------------------------------------------------------------------------------------------

_EEG_NOISE_RUNS = ("R04", "R08", "R12")


def _eeg_noise_raw(subject_id, sfreq):
    """Real EEG of one eegmmidb subject (runs concatenated), 0.5-40 Hz, resampled to ``sfreq``."""
    import mne

    root = data_dir() / "eegmmidb" / f"S{subject_id:03d}"
    files = [root / f"S{subject_id:03d}{r}.edf" for r in _EEG_NOISE_RUNS]
    files = [f for f in files if f.is_file()]
    if not files:
        raise InputFileError(
            f"No real EEG noise found in {root} (expected runs {', '.join(_EEG_NOISE_RUNS)}); "
            "set NEURODECODE_DATA to the folder of real recordings (see MANIFEST.md)."
        )
    raws = [mne.io.read_raw_edf(f, preload=True, verbose="error") for f in files]
    raw = mne.concatenate_raws(raws, verbose="error") if len(raws) > 1 else raws[0]
    mne.datasets.eegbci.standardize(raw)
    raw.set_montage(mne.channels.make_standard_montage("colin27_1005"), on_missing="ignore", verbose="error")
    raw.filter(0.5, 40.0, verbose="error")
    if raw.info["sfreq"] != sfreq:
        raw.resample(sfreq, verbose="error")
    return raw, [str(f) for f in files]


def _meg_noise_raw(sfreq):
    """Real KIT MEG (157 magnetometers, 2 s), 0.5-40 Hz, resampled to ``sfreq``."""
    import mne

    path = data_dir() / "mne_python_kit_meg" / "test.sqd"
    if not path.is_file():
        raise InputFileError(f"Real MEG noise {path} not found; set NEURODECODE_DATA (see MANIFEST.md).")
    raw = mne.io.read_raw_kit(path, preload=True, verbose="error").pick("meg")
    raw.filter(0.5, 40.0, verbose="error")
    raw.resample(sfreq, verbose="error")
    return raw, [str(path)]


def _sensor_positions(raw):
    pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]], dtype=float)
    if not np.all(np.isfinite(pos)) or np.allclose(pos, 0):
        raise InputFileError("The noise recording has no sensor positions; a forward model needs them.")
    return pos


# ---------------------------------------------------------------------------------------------
# Forward model
# ---------------------------------------------------------------------------------------------


def _erp_kernel(times, latency, width):
    """Gamma-like ERP wave peaking at ``latency`` (s) with rise width ``width`` (s)."""
    t = np.clip(times - (latency - width), 0, None) / width
    w = t**2 * np.exp(-t) * (np.e**2 / 4)  # peak 1 at t = 2 i.e. at `latency + width`
    return w


def _spatial_patterns(pos, n_sources, rng, spread=0.035):
    """Smooth, zero-mean scalp patterns: Gaussian blobs around sources near the sensor cloud."""
    centre = pos.mean(0)
    radius = np.linalg.norm(pos - centre, axis=1).mean()
    pats = np.empty((len(pos), n_sources))
    for j in range(n_sources):
        # A source near a random sensor, displaced a little.
        p = pos[rng.integers(len(pos))] + rng.normal(0, 0.2 * radius, 3)
        d2 = ((pos - p) ** 2).sum(1)
        g = np.exp(-d2 / (2 * spread**2))
        # A dipole-like second lobe of opposite sign on the other side.
        q = 2 * centre - p
        g -= 0.6 * np.exp(-((pos - q) ** 2).sum(1) / (2 * (1.5 * spread) ** 2))
        g -= g.mean()
        pats[:, j] = g / np.linalg.norm(g)
    return pats


def build_simulated_pairs(
    images=None,
    *,
    image_source="mixed",
    image_size=64,
    n_images=None,
    n_test=200,
    n_subjects=2,
    modality="eeg",
    snr=1.0,
    n_sources=32,
    lowpass_sigma=0.0,
    latency_jitter=0.02,
    n_times=128,
    sfreq=160.0,
    encoder="efficientnet_lite0",
    checkpoint=None,
    encoder_size=None,
    cache_dir=None,
    seed=0,
):
    """Simulate EEG/MEG responses to real images, at a stated SNR, on real background noise.

    **Simulated data.** Each image's target embedding comes from the frozen ``encoder``. The
    brain-side latent is the whitened projection of the (optionally low-passed) image's embedding on
    the first ``n_sources`` principal components of all images' embeddings; each latent drives one
    source with a smooth scalp pattern over the real montage and an ERP-like time course
    (latency 80-250 ms, width 30-80 ms, per-trial latency jitter). Subjects share source time courses
    but differ in their patterns (perturbed centres) and in their real background noise.

    Parameters
    ----------
    images : ImageSet | None
        Images to use; default ``load_image_set(image_source, size=image_size)``.
    image_source : str
        See :func:`load_image_set`.
    image_size : int
        Side of the loaded images.
    n_images : int | None
        Keep a random subset of this many images (seeded); ``None`` keeps all.
    n_test : int
        Minimum number of test images (zero-shot: their concepts are absent from training).
    n_subjects : int
        Simulated subjects; each gets the real noise of a different person (EEG: eegmmidb S001...).
        Every subject sees every image once.
    modality : {"eeg", "meg"}
        EEG: 64-channel montage and noise of PhysioNet eegmmidb; MEG: 157-channel KIT montage and
        noise from the 2-s KIT recording (short: noise segments overlap heavily).
    snr : float
        Signal-to-noise power ratio per trial (mean over channels and samples).
    n_sources : int
        Latent dimensions the brain signal carries.
    lowpass_sigma : float
        Uniform Gaussian blur (pixels of a 224-px image) applied to the images before
        computing what the brain carries; 0 = the brain carries the sharp image's features. (UBP's
        blur prior is foveated, so it never sees exactly the simulator's blur.)
    latency_jitter : float
        Standard deviation (s) of the per-trial shift of all time courses.
    n_times, sfreq : int, float
        Epoch length (samples) and sampling rate; epochs start at stimulus onset.
    encoder, checkpoint : str or ImageEncoder, path-like
        Image encoder (see :func:`neurodecode.decoders.image_encoders.get_image_encoder`).
    encoder_size : int | None
        Input size of the default encoder (None: 224).
    cache_dir : path-like | None
        HDF5 embedding cache folder.
    seed : int
        Seeds images' crops, split, patterns, latencies, jitter and noise segments.

    Returns
    -------
    PairedBrainImageData
        ``X`` (n_subjects * n_images, n_chans, n_times) with ``split``, ``embeds`` the unblurred
        targets, ``meta["simulated"] = True``.
    """
    from ..decoders.image_encoders import encode_cached, get_image_encoder

    check_option("modality", modality, ("eeg", "meg"))
    if not (np.isfinite(snr) and snr > 0):
        raise UsageError(f"Invalid value for the 'snr' parameter: expected a positive number, got {snr!r}.")
    if n_subjects < 1:
        raise UsageError(f"Invalid value for the 'n_subjects' parameter: expected >= 1, got {n_subjects!r}.")
    rng = np.random.default_rng(seed)
    if images is None:
        images = load_image_set(image_source, size=image_size, seed=seed)
    if not isinstance(images, ImageSet):
        raise UsageError("Invalid value for the 'images' parameter: expected an ImageSet (see load_image_set).")
    if n_images is not None and n_images < len(images):
        keep = np.sort(np.random.default_rng(seed + 7).choice(len(images), int(n_images), replace=False))
        labels_kept = images.labels[keep]
        images = ImageSet(images.images[keep], labels_kept, images.label_names, images.source)
    enc = get_image_encoder(encoder, checkpoint, image_size=encoder_size) if isinstance(encoder, str) else encoder
    embeds = encode_cached(enc, images.images, cache_dir=cache_dir)
    carried = embeds if lowpass_sigma <= 0 else encode_cached(enc, images.images, cache_dir=cache_dir,
                                                              blur_sigma=lowpass_sigma, fovea=False)
    test_img = zero_shot_split(images.labels, n_test, seed=seed)

    # Latent: whitened PCA scores of what the brain carries (the simulator's "visual cortex").
    mu = carried.mean(0)
    u, s, vt = np.linalg.svd(carried - mu, full_matrices=False)
    k = min(n_sources, len(s))
    z = (carried - mu) @ vt[:k].T / (s[:k] / np.sqrt(len(carried) - 1))

    if modality == "eeg":
        subj_ids = [1 + i for i in range(11)]
    times = np.arange(n_times) / sfreq
    lat = rng.uniform(0.08, 0.25, k)
    wid = rng.uniform(0.03, 0.08, k)

    n_img = len(images)
    X_all, idx_all, subj_all, split_all, sources = [], [], [], [], []
    ch_names = ch_pos = None
    for si in range(n_subjects):
        if modality == "eeg":
            raw, files = _eeg_noise_raw(subj_ids[si % len(subj_ids)], sfreq)
            ch_type = "eeg"
        else:
            raw, files = _meg_noise_raw(sfreq)
            ch_type = "mag"
        sources += files
        noise = raw.get_data().astype(np.float32)
        pos = _sensor_positions(raw)
        if ch_names is None:
            ch_names, ch_pos = list(raw.ch_names), pos
        elif list(raw.ch_names) != ch_names:
            raise InputFileError(f"Noise recordings {files} do not share the channels of the first subject.")
        pats = _spatial_patterns(pos, k, np.random.default_rng(seed * 1000 + 17))
        # Subject-specific perturbation of the shared patterns.
        pats = pats + 0.3 * _spatial_patterns(pos, k, np.random.default_rng(seed * 1000 + 101 + si))
        jit = rng.normal(0, latency_jitter, n_img)
        # (n_img, k, n_times) time courses with each trial's jitter.
        tc = _erp_kernel(times[None, None, :] - jit[:, None, None], lat[None, :, None], wid[None, :, None])
        sig = np.einsum("nk,ck,nkt->nct", z, pats, tc).astype(np.float32)
        if noise.shape[1] <= n_times:
            raise InputFileError(f"Noise recording {files} is shorter than one epoch ({n_times} samples).")
        starts = rng.integers(0, noise.shape[1] - n_times, n_img)
        nz = np.stack([noise[:, s0 : s0 + n_times] for s0 in starts])
        if modality == "meg":
            # Only 2 s of real MEG: random sign flips decorrelate reused segments a little.
            nz = nz * rng.choice([-1.0, 1.0], size=(n_img, 1, 1)).astype(np.float32)
        nz = nz - nz.mean(-1, keepdims=True)
        scale = np.sqrt(snr * nz.var() / max(sig.var(), 1e-30))
        X_all.append(sig * scale + nz)
        idx_all.append(np.arange(n_img))
        subj_all.append(np.full(n_img, si))
        split_all.append(np.where(test_img, "test", "train"))
    meta = {
        "simulated": True,
        "description": "Simulated paired brain/image data: real images, forward model, real background noise.",
        "modality": modality, "snr": float(snr), "n_sources": int(k), "lowpass_sigma": float(lowpass_sigma),
        "latency_jitter": float(latency_jitter), "encoder": enc.name, "encoder_checksum": enc.checksum,
        "encoder_size": int(enc.preprocessing["size"]),
        "image_source": images.source, "noise_files": sorted(set(sources)), "seed": int(seed),
        "n_test_images": int(test_img.sum()), "n_train_images": int((~test_img).sum()),
    }
    return PairedBrainImageData(
        X=np.concatenate(X_all), image_index=np.concatenate(idx_all), subject=np.concatenate(subj_all),
        split=np.concatenate(split_all), ch_names=ch_names, sfreq=float(sfreq), images=images.images,
        embeds=embeds, image_labels=images.labels, ch_pos=ch_pos, ch_type=ch_type, meta=meta,
    )
