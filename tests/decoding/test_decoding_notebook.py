"""The decoding tutorial notebook runs from top to bottom on two real subjects."""

import os
from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks" / "decoding_tutorial.ipynb"


def test_tutorial_notebook_executes(data_file, monkeypatch):
    data_file("eegmmidb", "S002", "S002R12.edf")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NB, as_version=4)
    # the kernel must import this checkout, with one thread
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NB.parents[1]), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NB.parent)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "(90, 21, 192)" in outputs and "| loso | dbconformer | 2 |" in outputs
