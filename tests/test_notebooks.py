"""The notebooks run, top to bottom, on data they make themselves, and their plots render.

Each one is executed with nbclient in the venv's own ``python3`` kernel (ipykernel), from a temporary
working directory; every cell must succeed and at least one output must be a rendered PNG. The files in
git carry no outputs (they are stripped before commit).
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
BUDGET = 60.0
"""Seconds a notebook may take here (each is designed for well under 30 s, kernel start included)."""


def test_the_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-capture-and-query.ipynb",
        "02-after-hours.ipynb",
        "03-strategy-against-replay.ipynb",
        "04-simulated-day.ipynb",
        "05-trades.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_plots(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: the notebook's data lands here
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=BUDGET, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
    )
    t0 = time.monotonic()
    client.execute()  # raises CellExecutionError with the cell's traceback if a cell fails
    elapsed = time.monotonic() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
    assert images, f"{path.name} rendered no plot"
    assert all(len(o.data["image/png"]) > 10_000 for o in images)  # a real figure, not an empty canvas
    assert elapsed < BUDGET, f"{path.name} took {elapsed:.0f} s"
    print(f"{path.name}: {elapsed:.1f} s")
