"""Every tutorial in notebooks/ is executed, so none can rot."""

from pathlib import Path

import pytest

# Notebooks whose own test executes them and checks their outputs (not run twice).
DEDICATED = {"decoding_tutorial.ipynb": "tests/decoding/test_decoding_notebook.py"}
NOTEBOOKS = sorted(p for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb") if p.name not in DEDICATED)


def test_dedicated_notebook_tests_exist():
    root = Path(__file__).resolve().parents[1]
    for nb, test in DEDICATED.items():
        assert (root / "notebooks" / nb).exists() and (root / test).exists(), (nb, test)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, shared_data, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
