"""The notebooks run top to bottom as committed, in order, and are committed without outputs.

Each notebook's code cells are executed in order in one namespace (what a kernel does
with "Run all"), in a temporary working directory shared by the four notebooks, so
notebook 02 trains on the sweep of 01 and 03/04 use the run of 02. Plots go to the Agg
backend. No Jupyter kernel is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_there_are_the_four_recipes():
    assert [p.stem for p in NOTEBOOKS] == ["01_simulate", "02_train", "03_validate",
                                           "04_virtual_experiment"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.slow   # ~40 s on 2 cores: the four notebooks executed end to end
def test_notebooks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in NOTEBOOKS:
        namespace = {"__name__": "__main__"}
        for number, cell in enumerate(_cells(path)):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            try:
                exec(compile(source, f"{path.name}[cell {number}]", "exec"), namespace)
            finally:
                plt.close("all")
    assert (tmp_path / "work" / "report" / "report.json").exists()
    assert (tmp_path / "work" / "virtual.h5").exists()
