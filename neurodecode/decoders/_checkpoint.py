"""Decoder checkpoints: one safetensors file holding the weights and the decoder's config.

A decoder made by :func:`create_decoder` remembers its registry name and arguments; that is
the config stored in the file's metadata, so :func:`load_decoder` rebuilds the same object
without pickles. Linear decoders (ridge) store their fitted arrays instead of a state dict.
"""

import json
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, atomic_path

_KEY = "neurodecode_decoder"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def save_decoder(decoder, path, *, overwrite=False):
    """Write ``decoder`` to ``path`` (``.safetensors``) atomically.

    Parameters
    ----------
    decoder : object
        Made by :func:`~neurodecode.decoders.create_decoder` (a torch module), or a fitted
        :class:`~neurodecode.decoders.brain_module.RidgeRetrieval`.
    path : path-like
    overwrite : bool

    Returns
    -------
    path : Path
    """
    from safetensors.numpy import save_file

    from .brain_module import RidgeRetrieval

    path = Path(path)
    if isinstance(decoder, RidgeRetrieval):
        if not hasattr(decoder, "model_"):
            raise UsageError("The ridge decoder is not fitted; call fit() before saving it.")
        tensors = {
            "mean_": decoder.mean_, "std_": decoder.std_,
            "coef_": np.atleast_2d(decoder.model_.coef_), "intercept_": np.atleast_1d(decoder.model_.intercept_),
        }
        config = {"name": "ridge_retrieval", "kwargs": {"alphas": list(decoder.alphas), "n_chans": decoder.n_chans,
                                                        "n_times": decoder.n_times, "features": decoder.features,
                                                        "bin_samples": decoder.bin_samples}, "alpha_": decoder.alpha_}
    else:
        config = getattr(decoder, "decoder_config_", None)
        if config is None:
            raise UsageError(
                "This decoder has no recorded config: create it with neurodecode.decoders.create_decoder(name, ...) "
                "so that it can be saved and rebuilt."
            )
        tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in decoder.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                  metadata={_KEY: json.dumps(_jsonable(config))})
    return path


def load_decoder(path):
    """Rebuild a decoder saved by :func:`save_decoder`; it is returned in eval mode.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    decoder : object
        Has ``encode(inst) -> BrainConditioning``.
    """
    from ..utils import read_safetensors

    path = Path(path)
    arrays, meta = read_safetensors(path, what="a decoder checkpoint", framework="numpy")
    if _KEY not in meta:
        raise InputFileError(f"{path}: a safetensors file, but not a neurodecode decoder (no '{_KEY}' metadata).")
    config = json.loads(meta[_KEY])
    if config["name"] == "ridge_retrieval":
        from sklearn.linear_model import Ridge

        from .brain_module import RidgeRetrieval

        dec = RidgeRetrieval(**config["kwargs"])
        dec.mean_, dec.std_ = arrays["mean_"], arrays["std_"]
        model = Ridge(alpha=config["alpha_"])
        model.coef_, model.intercept_ = arrays["coef_"], arrays["intercept_"]
        model.n_features_in_ = arrays["coef_"].shape[1]
        dec.model_, dec.alpha_ = model, config["alpha_"]
        return dec
    import torch

    from ._registry import create_decoder

    dec = create_decoder(config["name"], **config["kwargs"])
    state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    missing, unexpected = dec.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputFileError(
            f"{path}: the weights do not fit a {config['name']!r} decoder built from the stored config "
            f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})."
        )
    return dec.eval()
