"""Paired brain/image data: real offline images and a simulated paired EEG/MEG benchmark.

No public paired brain/image dataset (THINGS-EEG2, THINGS-MEG, NSD) can be obtained offline here,
so the brain-to-image decoders are validated on **simulated** pairs built from real ingredients:

- real images shipped inside installed Python packages (:func:`load_image_set`): scikit-learn's
  8x8 handwritten digits (1797), scikit-image's sample photographs and scikit-learn's two sample
  photos (cut into crops, grouped by source photo), and scikit-image's LFW subset (200 small faces and
  non-faces);
- their embeddings from the default image encoder (ImageNet EfficientNet-Lite0);
- a forward model (:func:`build_simulated_pairs`) that maps each image to sensor space, optionally
  from a low-passed (Gaussian blur) copy of the image, to mimic the gap between what was seen and
  what the brain signal carries. ``forward_model="physio"`` (default): retinotopic early visual
  sources driven by the saturating V1 contrast energy of the image (peaks 70-110 ms) and ventral
  occipito-temporal ON/OFF populations coding the embedding's principal components (rectified,
  saturating; peaks 130-350 ms), dipoles in a spherical head model fitted to the montage, per-trial
  latency jitter and gain of each stream (values and sources in :data:`PHYSIO_DEFAULTS`).
  ``forward_model="linear"``: ``k`` sources linear in the whitened principal components of the
  embeddings, each with a smooth scalp blob over the montage and one ERP-like time course;
- real background noise: segments of real task EEG (PhysioNet eegmmidb, one real person per
  simulated subject), or phase-randomised surrogates of the real (2-s) KIT MEG recording, added at a
  stated signal-to-noise ratio;
- a zero-shot split: test images come from concepts (digit classes, source photos, LFW groups) that no
  training image shares, as in THINGS' 200-way zero-shot protocol.

Everything here is deterministic given ``seed``. The simulation is a test bench for the decoders;
numbers measured on it say nothing about real brain recordings.
"""

from __future__ import annotations

import functools
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
    "FORWARD_MODELS",
    "PHYSIO_DEFAULTS",
    "v1_contrast_energy",
    "naka_rushton",
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


@functools.lru_cache(maxsize=4)
def _eeg_noise_raw(subject_id, sfreq):
    """Real EEG of one eegmmidb subject (runs concatenated), 0.5-40 Hz, resampled to ``sfreq``.

    Cached in memory (a few per process) because a benchmark sweeps SNRs over the same noise; callers
    only read it.
    """
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


@functools.lru_cache(maxsize=2)
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


def _phase_surrogates(noise, n, n_times, rng):
    """``n`` windows (n, n_chans, n_times) of phase-randomised copies of ``noise`` (n_chans, n_samples).

    One random phase per frequency, shared by all channels, keeps each channel's spectrum and the
    cross-spectra between channels (Theiler et al. 1992's surrogate data).
    """
    spec = np.fft.rfft(noise - noise.mean(1, keepdims=True), axis=1)
    out = np.empty((n, noise.shape[0], n_times), np.float32)
    for i in range(n):
        phase = np.exp(2j * np.pi * rng.random(spec.shape[1]))
        phase[0] = 1.0
        if noise.shape[1] % 2 == 0:
            phase[-1] = 1.0  # the Nyquist bin must stay real
        sur = np.fft.irfft(spec * phase, n=noise.shape[1], axis=1)
        s0 = int(rng.integers(0, noise.shape[1] - n_times + 1))
        out[i] = sur[:, s0 : s0 + n_times]
    return out


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



# ---------------------------------------------------------------------------------------------
# "physio" forward model: retinotopic early visual sources + nonlinear high-level sources,
# dipoles in a spherical head, trial-wise latency jitter and gain.
# ---------------------------------------------------------------------------------------------

FORWARD_MODELS = ("linear", "physio")

#: Parameters of the "physio" forward model, with where each value comes from. They were fixed
#: from these sources before any decoder was run on the simulation; none was tuned on results.
PHYSIO_DEFAULTS = {
    # Early (V1-V3) evoked response: C1/P1 peaks 60-110 ms after onset (Di Russo et al. 2002,
    # Hum Brain Mapp 15:95); single-image identity is best decoded from MEG at about 100 ms
    # (Cichy, Pantazis & Oliva 2014, Nat Neurosci 17:455).
    "early_peak_s": (0.07, 0.11),
    "early_width_s": (0.015, 0.03),
    # High-level (ventral occipito-temporal) responses: category information from about 85-115 ms,
    # strongest 115-315 ms, then spreading to anterior temporal cortex (van de Nieuwenhuijzen et al.
    # 2013, NeuroImage 83:1063; Cichy et al. 2014). Semantic effects extend to about 300-400 ms.
    "late_peak_s": (0.13, 0.35),
    "late_width_s": (0.03, 0.08),
    # Trial-to-trial latency jitter (standard deviation): about 10 ms for early components and a few
    # tens of ms for later ones (single-trial peak studies of P1-P3, e.g. the Single Trial Peaks
    # procedure of Gavin et al.; Jung et al. 2001 Hum Brain Mapp 14:166). The late jitter adds to
    # the early one (a late component cannot start before the early one did).
    "early_jitter_s": 0.010,
    "late_extra_jitter_s": 0.028,
    # Trial-wise multiplicative gain of each stream (log-normal, sd of log gain 0.3, i.e. a
    # coefficient of variation near 0.3: single-trial amplitudes vary by tens of percent, Truccolo et
    # al. 2002 Clin Neurophysiol 113:206; Arieli et al. 1996 Science 273:1868).
    "gain_log_sd": 0.3,
    # Saturating contrast response of visual neurons, Naka-Rushton R = c^n / (c^n + c50^n) with
    # n near 2 (Albrecht & Hamilton 1982, J Neurophysiol 48:217); c50 = the median input, i.e.
    # half-saturation at a typical stimulus (contrast gain control keeps neurons in their range).
    "naka_rushton_n": 2.0,
    # V1 model: quadrature Gabor energy at 4 orientations, about 8 cycles per image, pooled on a
    # 4 x 4 retinotopic grid; each grid cell is one cortical patch (one dipole) summing its
    # orientation columns, which EEG/MEG cannot resolve.
    "v1_grid": 4,
    "v1_cycles_per_image": 8.0,
    # Dipole positions in a sphere fitted to the montage (radius ~9.5 cm): calcarine cortex
    # ~6.5 cm from the centre, posterior and below; ventral occipito-temporal cortex bilateral
    # (~4 cm lateral), ~6 cm from the centre. Approximate anatomy, not an MRI.
    "v1_depth_m": 0.065,
    "late_depth_m": 0.060,
    "late_spread_m": 0.012,
    # Individual anatomy: each simulated subject's dipoles move by ~5 mm and turn by ~15 degrees.
    "subject_shift_m": 0.005,
    "subject_turn": 0.25,
    # Signal power: both streams are scaled to equal power before summing (early ERP components and
    # later ones have amplitudes of the same order, a few microvolts).
    "early_power_share": 0.5,
}


def _gabor_bank(size, cycles, n_orient=4):
    """Quadrature Gabor kernels (n_orient, 2, k, k) with about one octave bandwidth."""
    lam = size / cycles
    sig = 0.56 * lam
    half = int(np.ceil(2.5 * sig))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    env = np.exp(-(xx**2 + yy**2) / (2 * sig**2))
    bank = []
    for th in np.arange(n_orient) * np.pi / n_orient:
        u = xx * np.cos(th) + yy * np.sin(th)
        even, odd = env * np.cos(2 * np.pi * u / lam), env * np.sin(2 * np.pi * u / lam)
        even -= even.mean()
        bank.append([even / np.abs(even).sum(), odd / np.abs(odd).sum()])
    return np.asarray(bank)


def v1_contrast_energy(images, *, lowpass_sigma=0.0, grid=4, cycles=8.0):
    """V1-like local contrast energy of images on a retinotopic grid.

    Grey-level images are filtered by quadrature Gabor pairs at 4 orientations (energy = sqrt of
    the sum of squares of the pair), and the energy is averaged within each cell of a ``grid`` x
    ``grid`` partition of the visual field, summing orientations.

    Parameters
    ----------
    images : ndarray, shape (n, H, W, 3), uint8
    lowpass_sigma : float
        Gaussian blur in pixels of a 224-px image, applied first (what the brain carries).
    grid : int
    cycles : float
        Gabor frequency in cycles per image.

    Returns
    -------
    energy : ndarray, shape (n, grid * grid)
        Row-major over the grid (row 0 = top of the image = upper visual field).
    """
    from scipy.ndimage import gaussian_filter
    from scipy.signal import fftconvolve

    g = np.asarray(images, np.float64).mean(-1) / 255.0
    size = g.shape[1]
    if lowpass_sigma > 0:
        g = gaussian_filter(g, sigma=(0, lowpass_sigma * size / 224.0, lowpass_sigma * size / 224.0), mode="reflect")
    g = g - g.mean(axis=(1, 2), keepdims=True)
    energy = 0.0
    for even, odd in _gabor_bank(size, cycles):
        e = fftconvolve(g, even[None], mode="same", axes=(1, 2))
        o = fftconvolve(g, odd[None], mode="same", axes=(1, 2))
        energy = energy + np.sqrt(e**2 + o**2)
    cell = size // grid
    energy = energy[:, : cell * grid, : cell * grid].reshape(len(g), grid, cell, grid, cell).mean(axis=(2, 4))
    return energy.reshape(len(g), grid * grid)


def naka_rushton(x, n=2.0, c50=None):
    """Saturating response ``x^n / (x^n + c50^n)`` of non-negative ``x`` (c50 default: median of x > 0)."""
    x = np.clip(np.asarray(x, np.float64), 0, None)
    if c50 is None:
        c50 = float(np.median(x[x > 0])) if np.any(x > 0) else 1.0
    return x**n / (x**n + c50**n)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _physio_dipoles(k_late, grid, rng, p):
    """Dipole positions (relative to the sphere centre, m) and orientations of the two streams.

    Early: one dipole per retinotopic grid cell in calcarine cortex. The left visual field maps to
    the right hemisphere, eccentricity to depth along the calcarine sulcus (fovea at the occipital
    pole), and upper/lower visual field to the lower/upper bank, whose opposite orientation flips
    the polarity of the C1 (the "cruciform" model). Late: ``2 * k_late`` dipoles (ON and OFF
    populations of each high-level feature) scattered over bilateral ventral occipito-temporal
    cortex, with random orientations (cortical folding).
    """
    pole = _unit([0.0, -0.9, -0.35])  # occipital pole direction from the head centre
    early_pos, early_ori = [], []
    for r in range(grid):
        for c in range(grid):
            fx = (c + 0.5) / grid - 0.5  # visual-field x (left < 0)
            fy = 0.5 - (r + 0.5) / grid  # visual-field y (up > 0)
            ecc = np.hypot(fx, fy)
            pos = pole * p["v1_depth_m"]
            pos = pos + np.array([-np.sign(fx) * (0.006 + 0.01 * abs(fx)), 0.03 * ecc, 0.0])
            pos = pos + rng.normal(0, 0.002, 3)
            bank = -np.sign(fy)  # upper field -> lower bank
            early_ori.append(_unit(np.array([0.3 * np.sign(fx), -0.3, bank]) + rng.normal(0, 0.2, 3)))
            early_pos.append(pos)
    late_pos, late_ori = [], []
    for j in range(2 * k_late):
        side = 1.0 if j % 2 == 0 else -1.0
        centre = _unit([0.45 * side, -0.75, -0.5]) * p["late_depth_m"]
        q = centre + rng.normal(0, p["late_spread_m"], 3)  # scattered over the region...
        late_pos.append(_unit(q) * (p["late_depth_m"] + rng.uniform(-0.005, 0.005)))  # ...at cortical depth
        late_ori.append(_unit(rng.normal(size=3)))
    return (np.asarray(early_pos), np.asarray(early_ori)), (np.asarray(late_pos), np.asarray(late_ori))


def _leadfield(info, pos, ori):
    """Sensor gains (n_chans, n_dipoles) of fixed dipoles in a sphere head model fitted to ``info``."""
    import mne

    kind = ("eeg",) if any(ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH for ch in info["chs"]) else None
    try:
        if kind:
            radius, r0, _ = mne.bem.fit_sphere_to_headshape(info, dig_kinds=kind, units="m", verbose="error")
        else:
            radius, r0 = 0.09, np.array([0.0, 0.0, 0.04])
        sphere = mne.make_sphere_model(r0=r0, head_radius=radius if kind else None, verbose="error")
        dip = mne.Dipole(np.zeros(len(pos)), pos + r0, np.ones(len(pos)), ori, np.ones(len(pos)))
        fwd, _ = mne.make_forward_dipole(dip, sphere, info, verbose="error")
    except Exception as e:  # pragma: no cover - depends on the montage of the noise file
        raise InputFileError(f"Cannot compute a sphere-model forward solution for these sensors: {e}") from e
    return np.asarray(fwd["sol"]["data"], np.float64)


def _physio_signal(images, z, lowpass_sigma, info, times, subject_rng, shared_rng, trial_rng, p=PHYSIO_DEFAULTS,
                   trial_image=None):
    """Noise-free sensor signal (n_trials, n_chans, n_times) of one subject under the "physio" model.

    ``z`` (n_img, k): whitened principal components of what the brain carries (high-level stream).
    ``trial_image`` (n_trials,): the image each trial shows (default: each image once, in order).
    Responses are a function of the image; latency jitter and gain are drawn per trial, so repeated
    presentations of one image differ as real repetitions do.

    ``shared_rng`` draws what all subjects share (time courses, the nominal dipoles); ``subject_rng``
    their individual anatomy; ``trial_rng`` the trial-wise jitter and gain.
    """
    n_img = len(images)
    trial_image = np.arange(n_img) if trial_image is None else np.asarray(trial_image)
    n_trials = len(trial_image)
    # Early stream: V1 contrast energy per retinotopic cell, through a saturating response.
    e = v1_contrast_energy(images, lowpass_sigma=lowpass_sigma, grid=p["v1_grid"], cycles=p["v1_cycles_per_image"])
    r_early = naka_rushton(e, n=p["naka_rushton_n"])
    # Late stream: each whitened principal component of the (optionally low-passed) embedding is
    # coded by an ON and an OFF population (half-wave rectified, saturating).
    k = z.shape[1]
    on = naka_rushton(np.clip(z, 0, None), n=p["naka_rushton_n"], c50=float(np.median(np.abs(z))))
    off = naka_rushton(np.clip(-z, 0, None), n=p["naka_rushton_n"], c50=float(np.median(np.abs(z))))
    r_late = np.empty((n_img, 2 * k))
    r_late[:, 0::2], r_late[:, 1::2] = on, off

    (pe, oe), (pl, ol) = _physio_dipoles(k, p["v1_grid"], shared_rng, p)
    # Time courses shared by subjects: one per dipole within a stream's latency range.
    pk_e = shared_rng.uniform(*p["early_peak_s"], len(pe))
    wd_e = shared_rng.uniform(*p["early_width_s"], len(pe))
    pk_l = shared_rng.uniform(*p["late_peak_s"], len(pl))
    wd_l = shared_rng.uniform(*p["late_width_s"], len(pl))
    # Individual anatomy.
    pe = pe + subject_rng.normal(0, p["subject_shift_m"], pe.shape)
    pl = pl + subject_rng.normal(0, p["subject_shift_m"], pl.shape)
    oe = _unit(oe + subject_rng.normal(0, p["subject_turn"], oe.shape))
    ol = _unit(ol + subject_rng.normal(0, p["subject_turn"], ol.shape))
    L_e, L_l = _leadfield(info, pe, oe), _leadfield(info, pl, ol)

    jit_e = trial_rng.normal(0, p["early_jitter_s"], n_trials)
    jit_l = jit_e + trial_rng.normal(0, p["late_extra_jitter_s"], n_trials)
    g_e = np.exp(trial_rng.normal(0, p["gain_log_sd"], n_trials))
    g_l = np.exp(trial_rng.normal(0, p["gain_log_sd"], n_trials))

    def stream(r, L, peak, width, jit, gain):
        """(full response, its image-dependent part): responses are non-negative firing rates, so
        every image also evokes the mean response (a generic ERP, jittered and scaled per trial)."""
        tc = _erp_kernel(times[None, None, :] - jit[:, None, None], (peak - width)[None, :, None], width[None, :, None])
        # The generic response is the mean over images (not over trials), so that repetitions do not
        # change what counts as image-dependent.
        rt, dt = r[trial_image], (r - r.mean(0))[trial_image]
        full = np.matmul(L[None], (rt * gain[:, None])[:, :, None] * tc)  # (n, c, t), BLAS
        dev = np.matmul(L[None], (dt * gain[:, None])[:, :, None] * tc)
        return full, dev

    (s_e, d_e), (s_l, d_l) = stream(r_early, L_e, pk_e, wd_e, jit_e, g_e), stream(r_late, L_l, pk_l, wd_l, jit_l, g_l)
    # Power split and SNR refer to the image-dependent part (what a decoder can use); the generic
    # evoked response comes on top with its natural size relative to it.
    share = p["early_power_share"]
    a_e = np.sqrt(share / max(d_e.var(), 1e-300))
    a_l = np.sqrt((1 - share) / max(d_l.var(), 1e-300))
    full, dev = a_e * s_e + a_l * s_l, a_e * d_e + a_l * d_l
    return full.astype(np.float32), dev.astype(np.float32), int(k)


def build_simulated_pairs(
    images=None,
    *,
    image_source="mixed",
    image_size=64,
    n_images=None,
    n_test=200,
    n_subjects=2,
    train_repeats=1,
    modality="eeg",
    snr=1.0,
    n_sources=32,
    lowpass_sigma=0.0,
    latency_jitter=0.02,
    forward_model="physio",
    n_times=80,
    sfreq=100.0,
    encoder="efficientnet_lite0",
    checkpoint=None,
    encoder_size=None,
    cache_dir=None,
    seed=0,
):
    """Simulate EEG/MEG responses to real images, at a stated SNR, on real background noise.

    **Simulated data.** Each image's target embedding comes from the frozen ``encoder``. The
    brain-side latent is the whitened projection of the (optionally low-passed) image's embedding on
    the first ``n_sources`` principal components of all images' embeddings. With
    ``forward_model="linear"`` each latent drives one source with a smooth scalp pattern over the real
    montage and an ERP-like time course (latency 80-250 ms, width 30-80 ms, per-trial latency jitter).
    With ``"physio"`` see below. Subjects share source time courses but differ in their spatial
    patterns (individual anatomy) and in their real background noise.

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
        Every subject sees every test image once and every training image ``train_repeats`` times.
    train_repeats : int
        Presentations of each training image per subject (default 1). Each repetition is a new trial:
        its own latency jitter, gain and background-noise segment (the image's response is the same
        function of the image). Test images are shown once, so the test set does not depend on it.
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
        Standard deviation (s) of the per-trial shift of all time courses (``"linear"`` model; the
        ``"physio"`` model uses the values in :data:`PHYSIO_DEFAULTS`).
    forward_model : {"physio", "linear"}
        ``"linear"``: the response is a linear function of the ``n_sources`` whitened embedding
        components, each with a smooth scalp blob and one ERP time course, one shared latency jitter.
        ``"physio"``: two cortical streams with their own time courses, each with trial-wise latency
        jitter and gain: (1) early visual cortex, one dipole per cell of a 4 x 4 retinotopic grid whose
        response is the saturating (Naka-Rushton) V1 contrast energy of that part of the image, peaking
        70-110 ms; (2) ventral occipito-temporal cortex, ON and OFF populations for each of the
        ``n_sources`` embedding components (half-wave rectified, saturating), peaking 130-350 ms.
        Dipoles project to the sensors through a spherical head model fitted to the montage (MNE).
        Every image also evokes the generic (mean) response. ``snr`` is the power of the
        image-dependent part over the noise power. Values and sources: :data:`PHYSIO_DEFAULTS`.
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
        ``X`` (n_subjects * (n_images + (train_repeats - 1) * n_train_images), n_chans, n_times) with ``split``, ``embeds`` the unblurred
        targets, ``meta["simulated"] = True``.
    """
    from ..decoders.image_encoders import encode_cached, get_image_encoder

    check_option("modality", modality, ("eeg", "meg"))
    check_option("forward_model", forward_model, FORWARD_MODELS)
    if not (np.isfinite(snr) and snr > 0):
        raise UsageError(f"Invalid value for the 'snr' parameter: expected a positive number, got {snr!r}.")
    if n_subjects < 1:
        raise UsageError(f"Invalid value for the 'n_subjects' parameter: expected >= 1, got {n_subjects!r}.")
    if int(train_repeats) != train_repeats or train_repeats < 1:
        raise UsageError(f"Invalid value for the 'train_repeats' parameter: expected an integer >= 1, got {train_repeats!r}.")
    train_repeats = int(train_repeats)
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
    # Trials of one subject: every image once (in order), then the extra presentations of the
    # training images. With train_repeats=1 this is every image once, as before.
    trial_img = np.concatenate([np.arange(n_img)] + [np.flatnonzero(~test_img)] * (train_repeats - 1))
    n_tr = len(trial_img)
    X_all, idx_all, subj_all, split_all, sources, evoked_ratio = [], [], [], [], [], []
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
        if forward_model == "physio":
            sig, sig_dev, k = _physio_signal(
                images.images, z, lowpass_sigma, raw.info, times,
                subject_rng=np.random.default_rng(seed * 1000 + 101 + si),
                shared_rng=np.random.default_rng(seed * 1000 + 17), trial_rng=rng, trial_image=trial_img,
            )
            evoked_ratio.append(float(sig.var() / max(sig_dev.var(), 1e-30)))
        else:
            pats = _spatial_patterns(pos, k, np.random.default_rng(seed * 1000 + 17))
            # Subject-specific perturbation of the shared patterns.
            pats = pats + 0.3 * _spatial_patterns(pos, k, np.random.default_rng(seed * 1000 + 101 + si))
            jit = rng.normal(0, latency_jitter, n_tr)
            # (n_trials, k, n_times) time courses with each trial's jitter.
            tc = _erp_kernel(times[None, None, :] - jit[:, None, None], lat[None, :, None], wid[None, :, None])
            sig = sig_dev = np.einsum("nk,ck,nkt->nct", z[trial_img], pats, tc).astype(np.float32)
        if noise.shape[1] <= n_times:
            raise InputFileError(f"Noise recording {files} is shorter than one epoch ({n_times} samples).")
        if modality == "meg":
            # Only 2 s of real MEG exist: reused windows would let a decoder learn the noise itself.
            # Each trial gets a phase-randomised surrogate of the recording instead (same power
            # spectra and cross-spectra, new waveform), then a random window of it.
            # The KIT channels' variances span orders of magnitude, so a few channels would hold most
            # of the noise power and the rest would be almost clean at any SNR: equalise them first.
            noise = noise / noise.std(axis=1, keepdims=True) * np.median(noise.std(axis=1))
            nz = _phase_surrogates(noise, n_tr, n_times, rng)
        else:
            starts = rng.integers(0, noise.shape[1] - n_times, n_tr)
            nz = np.stack([noise[:, s0 : s0 + n_times] for s0 in starts])
        nz = nz - nz.mean(-1, keepdims=True)
        scale = np.sqrt(snr * nz.var() / max(sig_dev.var(), 1e-30))
        X_all.append(sig * scale + nz)
        idx_all.append(trial_img)
        subj_all.append(np.full(n_tr, si))
        split_all.append(np.where(test_img[trial_img], "test", "train"))
    meta = {
        "simulated": True,
        "description": "Simulated paired brain/image data: real images, forward model, real background noise.",
        "modality": modality, "snr": float(snr), "n_sources": int(k), "lowpass_sigma": float(lowpass_sigma),
        "latency_jitter": float(latency_jitter), "forward_model": forward_model,
        # per subject: total evoked power / image-dependent power (1 for the linear model)
        "evoked_to_image_power": [round(r, 4) for r in evoked_ratio] if evoked_ratio else [1.0] * n_subjects,
        "physio_params": dict(PHYSIO_DEFAULTS) if forward_model == "physio" else None,
        "encoder": enc.name, "encoder_checksum": enc.checksum,
        "encoder_size": int(enc.preprocessing["size"]),
        "image_source": images.source, "noise_files": sorted(set(sources)), "seed": int(seed),
        "n_test_images": int(test_img.sum()), "n_train_images": int((~test_img).sum()),
        "train_repeats": train_repeats,
    }
    return PairedBrainImageData(
        X=np.concatenate(X_all), image_index=np.concatenate(idx_all), subject=np.concatenate(subj_all),
        split=np.concatenate(split_all), ch_names=ch_names, sfreq=float(sfreq), images=images.images,
        embeds=embeds, image_labels=images.labels, ch_pos=ch_pos, ch_type=ch_type, meta=meta,
    )
