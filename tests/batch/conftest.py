"""Fixtures for the batch tests: folders of real and deliberately broken recordings."""

import hashlib
import os
import shutil
from pathlib import Path

import pytest


def tree_hashes(root, skip=()):
    """{relative path: sha256} of every file under ``root`` (names in ``skip`` left out)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if name in skip:
                continue
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, request):
    """Two real recordings in a plain folder tree: an EDF+ (64 ch) and an EEGLAB set (32 ch + .fdt)."""
    from neurodecode.utils import data_dir

    src = data_dir()
    files = [("eegmmidb/S001/S001R04.edf", "S001/S001R04.edf"),
             ("eeglab_sample/eeglab_data.set", "lab/eeglab_data.set"),
             ("eeglab_sample/eeglab_data.fdt", "lab/eeglab_data.fdt")]
    if not all((src / a).exists() for a, _ in files):
        pytest.skip(f"real recordings not found under {src}: set NEURODECODE_DATA")
    root = tmp_path_factory.mktemp("real_in")
    for a, b in files:
        (root / b).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / a, root / b)
    return root
