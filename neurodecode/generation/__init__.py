"""Shared generation backend: conditional diffusion with ANN or spiking denoisers."""

_LAZY = {"BrainToImagePipeline": "pipeline", "BrainToImageOutput": "pipeline", "ConditionalUNet": "unet",
         "SpikingUNet": "spiking", "ControlledUNet": "control", "calibrate": "hallucination", "OpCounter": "energy",
         "load_autoencoder": "latent"}


def __getattr__(name):
    # Lazy: importing neurodecode.generation must not import torch or diffusers.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
