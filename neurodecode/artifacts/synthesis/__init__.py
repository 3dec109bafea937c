"""Label-aware artifact synthesis: conditional WGAN-GP and diffusion (lazy: no torch at import)."""

_LAZY = {
    "ConditionalWGANGP": "wgan_gp",
    "UNet1DConditional": "ddpm",
    "ARBaseline": "ar_baseline",
    "load_generator": "api",
    "generate": "api",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
