"""Shared fixtures: where the real recordings are, and a skip when they are absent."""

import os

import pytest

from neurodecode.utils import data_dir

# Tests share two cores with everything else; one thread each keeps them predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real recordings; skips the test with a reason when absent."""
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"real recordings not found at {d}: set NEURODECODE_DATA (see ../shared/data/MANIFEST.md)")
    return d


@pytest.fixture(scope="session")
def data_file():
    """Return a function ``data_file(*parts)`` giving a path under the data folder.

    The calling test is skipped with a reason when that path is missing.
    """

    def _get(*parts):
        p = data_dir().joinpath(*parts)
        if not p.exists():
            pytest.skip(f"{p} not available: set NEURODECODE_DATA (see MANIFEST.md)")
        return p

    return _get
