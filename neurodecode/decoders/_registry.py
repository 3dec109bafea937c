"""Decoder registry (timm's pattern): ``@register_decoder`` and ``create_decoder(name, **kw)``."""

import importlib

from ..utils import UsageError

_REGISTRY = {}

# Modules whose import registers decoders; imported on first use so the registry is
# complete without importing torch at ``import neurodecode``.
_PROVIDERS = (
    "neurodecode.decoders.dbconformer",
    "neurodecode.decoders.baselines",
    "neurodecode.decoders.brain_module",
    "neurodecode.decoders.ubp",
    "neurodecode.decoders.neuropictor",
)
_loaded = False


def register_decoder(name):
    """Class or factory decorator adding a decoder under ``name``."""

    def deco(obj):
        _REGISTRY[name] = obj
        return obj

    return deco


def _load_providers():
    global _loaded
    if _loaded:
        return
    for mod in _PROVIDERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
    _loaded = True


def list_decoders():
    """Return the sorted names of registered decoders."""
    _load_providers()
    return sorted(_REGISTRY)


def create_decoder(name, **kwargs):
    """Instantiate the decoder registered as ``name`` with ``kwargs``."""
    _load_providers()
    if name not in _REGISTRY:
        raise UsageError(
            f"Invalid value for the 'name' parameter. Allowed values are {', '.join(map(repr, sorted(_REGISTRY)))}, "
            f"but got {name!r} instead."
        )
    obj = _REGISTRY[name](**kwargs)
    try:
        # The registry name and arguments are the decoder's config: save_decoder stores them.
        obj.decoder_config_ = {"name": name, "kwargs": dict(kwargs)}
    except AttributeError:  # objects with __slots__ or read-only attributes cannot carry it
        pass
    return obj


def signal_kwargs(epochs):
    """Return braindecode's signal arguments (n_chans, n_times, sfreq, chs_info) for ``epochs``."""
    return {
        "n_chans": len(epochs.ch_names),
        "n_times": len(epochs.times),
        "sfreq": float(epochs.info["sfreq"]),
        "chs_info": [dict(ch) for ch in epochs.info["chs"]],
    }
