"""notebooks/explore_dataset.ipynb runs top to bottom (nbclient, a real kernel) on the session's tiny-model
dataset, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_dataset.ipynb"


def outputs(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


def test_the_notebook_runs_on_a_run_dataset(report_dataset, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # the kernel inherits the environment: the dataset to explore, and a private datasets cache
    monkeypatch.setenv("CHRONOEDIT_DATASET", str(report_dataset))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on any cell error
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = "\n".join(map(outputs, code))
    assert "Dataset({" in printed and "num_rows: 6" in printed  # loaded with datasets
    assert "NOTE: rows from a RANDOM-WEIGHT edit model" in printed and "RANDOM-WEIGHT CLIP" in printed
    assert "2 of 6 rows kept" in printed
    assert "no trajectories" not in printed and outputs(code[-1]).count("markup/add_car") == 2  # the callable's table
    assert any(o.get("data", {}).get("image/png") for c in code for o in c.outputs)  # pictures were drawn
