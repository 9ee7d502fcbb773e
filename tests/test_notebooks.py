"""Every notebook in notebooks/ runs top to bottom against the emulator, with no credentials."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dapframe.emulator import DEFAULT_CLIENT_SECRET

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def kernel_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any DAP_* variable: the notebooks start their own emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    env["DAPFRAME_CACHE_DIR"] = str(tmp_path / "cache")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    return env


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "sync_walkthrough.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=kernel_env(tmp_path))  # CellExecutionError on any error in any cell
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", cell.source
    saved = nbformat.writes(nb)
    assert DEFAULT_CLIENT_SECRET not in saved
    # The query commands drew their results and their progress bars.
    assert 'class=\\"dapframe-result\\"' in saved
    assert "application/vnd.jupyter.widget-view+json" in saved
