"""Latent-space generation through a user-provided diffusers autoencoder (never downloaded).

The denoisers work on whatever tensor they are given; in latent space that tensor is the autoencoder's
(scaled) latent of the image instead of its pixels. This module loads the autoencoder from a local folder,
encodes training images to latents once, and records which autoencoder a generator was trained with, so
that sampling decodes with the same one.

Conventions (those of diffusers' own pipelines):

* images enter the autoencoder in ``[-1, 1]``, shape ``(n, C, H, W)``;
* stored latents are ``(z - shift_factor) * scaling_factor`` (``shift_factor`` 0 when the config has none),
  where ``z`` is the mean of ``AutoencoderKL``'s posterior (deterministic) or ``AutoencoderTiny``'s latent;
* decoding inverts that: ``z = latents / scaling_factor + shift_factor``.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..utils import InputFileError, UsageError

AUTOENCODER_CLASSES = ("AutoencoderKL", "AutoencoderTiny")


def load_autoencoder(path):
    """Load a diffusers ``AutoencoderKL`` or ``AutoencoderTiny`` from a local folder.

    Parameters
    ----------
    path : path-like
        A folder written by ``save_pretrained`` (``config.json`` and the weights), or the ``config.json``
        or weights file inside it. Nothing is ever downloaded.

    Returns
    -------
    diffusers autoencoder, in eval mode, gradients off
    """
    import diffusers

    p = Path(path)
    folder = p.parent if p.is_file() else p
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise InputFileError(
            f"Autoencoder {path} not found: expected a local folder written by diffusers' save_pretrained "
            f"(with config.json and the weights); nothing is downloaded."
        )
    try:
        cls_name = json.loads(cfg_file.read_text()).get("_class_name")
    except (OSError, ValueError) as err:
        raise InputFileError(f"Could not read {cfg_file} as a diffusers config: {err}") from err
    if cls_name not in AUTOENCODER_CLASSES:
        raise InputFileError(
            f"{cfg_file} describes a {cls_name!r}; expected one of {', '.join(AUTOENCODER_CLASSES)}."
        )
    try:
        vae = getattr(diffusers, cls_name).from_pretrained(folder, local_files_only=True)
    except Exception as err:  # diffusers raises several types for missing or damaged weights
        raise InputFileError(f"Could not load the {cls_name} in {folder}: {err}") from err
    return vae.eval().requires_grad_(False)


def latent_factors(vae):
    """``(scaling_factor, shift_factor)`` of an autoencoder's config (shift 0 when absent)."""
    cfg = vae.config
    shift = getattr(cfg, "shift_factor", None)
    return float(getattr(cfg, "scaling_factor", 1.0)), float(shift) if shift is not None else 0.0


def autoencoder_fingerprint(vae):
    """Short hash of an autoencoder's class, config and weights (to match it again at sampling time)."""
    h = hashlib.sha256(type(vae).__name__.encode())
    cfg = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for k, v in sorted(vae.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_latents(vae, images, batch_size=64):
    """Encode images to scaled latents.

    Parameters
    ----------
    vae : AutoencoderKL or AutoencoderTiny
    images : Tensor, shape (n, C, H, W), values in [-1, 1]
    batch_size : int

    Returns
    -------
    Tensor, shape (n, latent_channels, h, w)
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    n_in = vae.config.in_channels
    if images.ndim != 4 or images.shape[1] != n_in:
        raise UsageError(
            f"Invalid images for the autoencoder: expected shape (n, {n_in}, H, W), but got {tuple(images.shape)}."
        )
    scale, shift = latent_factors(vae)
    out = []
    for i in range(0, len(images), batch_size):
        enc = vae.encode(images[i : i + batch_size])
        # KL autoencoder: the posterior mean (deterministic targets); tiny autoencoder: its latent.
        z = enc.latent_dist.mean if hasattr(enc, "latent_dist") else enc.latents
        out.append((z - shift) * scale)
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae, latents):
    """Scaled latents (n, c, h, w) -> images (n, C, H, W) in about [-1, 1]."""
    scale, shift = latent_factors(vae)
    return vae.decode(latents / scale + shift).sample


def check_autoencoder(vae, denoiser_config, expected_fingerprint=None):
    """Raise a clear error when ``vae`` cannot be the one a denoiser was trained with.

    Parameters
    ----------
    vae : diffusers autoencoder
    denoiser_config : dict-like
        The denoiser's config (``in_channels``).
    expected_fingerprint : str | None
        :func:`autoencoder_fingerprint` stored with the generator weights.
    """
    lat = vae.config.latent_channels
    if denoiser_config["in_channels"] != lat:
        raise UsageError(
            f"The autoencoder has {lat} latent channels but the denoiser works on {denoiser_config['in_channels']}; "
            "give the autoencoder the generator was trained with."
        )
    if expected_fingerprint is not None and autoencoder_fingerprint(vae) != expected_fingerprint:
        raise UsageError(
            f"The autoencoder differs from the one the generator was trained with (fingerprint "
            f"{autoencoder_fingerprint(vae)} vs {expected_fingerprint})."
        )


def latent_rms(latents):
    """Root mean square of latents, the ``sigma_data`` of the spiking denoiser's preconditioned output."""
    return float(np.sqrt(np.mean(np.square(np.asarray(latents, np.float64)))))
