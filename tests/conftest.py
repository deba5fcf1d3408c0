"""Shared test settings: float64, the data directory ../shared/data beside the repository, and a
notebook runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import jaxscale  # noqa: F401  (enables float64)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("JAXSCALE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"test data directory {DATA_DIR} not found: set JAXSCALE_DATA")
    return DATA_DIR


@pytest.fixture
def run_notebook(monkeypatch, data_dir):
    """``run_notebook(name, cwd) -> text``: execute ``notebooks/<name>`` with its small settings
    (``JAXSCALE_NOTEBOOK_SMALL=1``), the test data and a headless matplotlib, in the kernel of this
    interpreter, with working directory `cwd`; returns the text of every code cell's outputs."""
    import nbclient
    import nbformat

    def run(name: str, cwd: Path) -> str:
        for key, value in {"JAXSCALE_NOTEBOOK_SMALL": "1", "JAXSCALE_DATA": str(data_dir), "MPLBACKEND": "Agg"}.items():
            monkeypatch.setenv(key, value)
        nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
        return "\n".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", ""))
                         for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))

    return run
