"""One entry point for the three generators: load a model by name and draw labelled windows."""

import numpy as np

from ...utils import InputFileError, UsageError, check_option
from ._common import LABELS, label_ids

MODELS = ("wgan", "ddpm", "ar")


def load_generator(model, weights=None, store=None):
    """Return a generator object with ``sample(labels, seed=..., **kw)``.

    Parameters
    ----------
    model : {'wgan', 'ddpm', 'ar'}
    weights : path-like | None
        Safetensors file for ``wgan``/``ddpm`` (None: the shipped weights).
    store : path-like | None
        Artifact-window store; required for ``ar``, which is fitted on its ``train`` split.
    """
    check_option("model", model, MODELS)
    if model == "wgan":
        from .wgan_gp import ConditionalWGANGP

        return ConditionalWGANGP.load(weights)
    if model == "ddpm":
        from .ddpm import UNet1DConditional

        return UNet1DConditional.load(weights)
    if store is None:
        raise UsageError("The 'ar' baseline is fitted on real windows: pass --store WINDOWS.h5.")
    from ...datasets.artifact_windows import load_artifact_windows
    from .ar_baseline import ARBaseline

    X, y, _ = load_artifact_windows(store, split="train")
    return ARBaseline().fit(X, y)


def generate(model, labels, *, seed=0, guidance=1.0, steps=50, sampler="ddim"):
    """Draw windows (n, n_chans, n_times) in µV for ``labels`` from a loaded generator."""
    ids = label_ids(labels)
    if type(model).__name__ == "UNet1DConditional":
        return model.sample(ids, seed=seed, guidance=guidance, num_inference_steps=steps, sampler=sampler)
    return model.sample(ids, seed=seed)


def write_synthetic(path, X, labels, *, meta, sfreq=128.0, ch_names=None, overwrite=False):
    """Write synthetic windows as a window store (one group per label, ``split='synthetic'``)."""
    from ...datasets.artifact_windows import CHANNELS
    from ...io import write_windows

    X = np.asarray(X, np.float32)
    ids = label_ids(labels)
    if not np.isfinite(X).all():
        raise InputFileError("the generator produced NaN or infinite values; nothing was written.")
    n = X.shape[-1]
    recs = []
    for c in np.unique(ids):
        W = X[ids == c]
        recs.append(
            {
                "name": f"synthetic_{LABELS[c]}",
                "data": np.concatenate(list(W), axis=1),
                "sfreq": sfreq,
                "ch_names": list(ch_names or CHANNELS),
                "windows": np.stack([np.arange(len(W)) * n, (np.arange(len(W)) + 1) * n], 1),
                "labels": np.full(len(W), c, np.int64),
                "attrs": {"subject": "synthetic", "split": "synthetic", "label": LABELS[c],
                          "label_names": list(LABELS), "units": "uV", **meta},
            }
        )
    return write_windows(path, recs, config=meta, overwrite=overwrite)
