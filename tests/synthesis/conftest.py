"""Fixtures for the synthesis tests: a tiny real window store built from one eegmmidb run."""

import pytest


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, shared_data):
    """Artifact windows from S001 (train) and S010 (test), one run each: a few hundred windows."""
    from neurodecode.datasets.artifact_windows import write_artifact_windows

    path = tmp_path_factory.mktemp("synth") / "windows.h5"
    write_artifact_windows(path, root=shared_data, subjects=["S001", "S010"], max_runs=1)
    return path
