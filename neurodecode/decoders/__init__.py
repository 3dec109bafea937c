"""Decoders: EEG/MEG/fMRI -> class logits or image-aligned conditioning features.

Heavy modules (torch) are imported lazily by attribute access.
"""

import importlib

from .conditioning import BrainConditioning

_LAZY = {
    "create_decoder": "._registry",
    "register_decoder": "._registry",
    "list_decoders": "._registry",
    "signal_kwargs": "._registry",
    "save_decoder": "._checkpoint",
    "load_decoder": "._checkpoint",
    "get_image_encoder": ".image_encoders",
}

__all__ = ["BrainConditioning", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
