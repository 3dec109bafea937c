"""Artifact removal, quality control and artifact synthesis (one file per method)."""

# Lazy names (importing this package must not import torch).
_LAZY = {"ATAT": ".atat", "clean_raw": ".clean"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
