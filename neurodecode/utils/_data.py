"""Where the real recordings used by tests and benchmarks live."""

import os
from pathlib import Path

_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_dir():
    """Return the folder of real recordings: ``$NEURODECODE_DATA`` or ``../shared/data``.

    The default is resolved relative to the project checkout, so it works from any
    working directory. The folder may not exist; callers check.
    """
    env = os.environ.get("NEURODECODE_DATA")
    return Path(env).expanduser().resolve() if env else _DEFAULT


def cache_dir():
    """Folder for files the package can rebuild (window stores, embeddings, demo inputs):
    ``$XDG_CACHE_HOME/neurodecode``, by default ``~/.cache/neurodecode``. It may not exist yet."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "neurodecode"


def requires_data_path(*parts):
    """Return ``data_dir() / parts``, raising FileNotFoundError with a reason if absent."""
    p = data_dir().joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(
            f"{p} is not available: set NEURODECODE_DATA to the folder of real recordings "
            "(see its MANIFEST.md)."
        )
    return p
