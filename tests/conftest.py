"""Shared test settings: float64, and the data directory ../shared/data beside the repository."""

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
