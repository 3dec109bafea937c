"""neurodecode: read, clean, decode and visualise EEG, MEG and fMRI recordings.

Subpackages are imported lazily so that ``import neurodecode`` stays cheap: it
never imports torch, diffusers or open_clip (checked by a test).
"""

import importlib
import logging

# A library logs; the application (our CLI, or the user's script) decides what is shown.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

_SUBMODULES = (
    "io",
    "utils",
    "datasets",
    "artifacts",
    "decoders",
    "generation",
    "training",
    "batch",
    "report",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'neurodecode' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
