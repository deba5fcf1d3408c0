"""Small helpers shared by the loaders: verified reads and column checks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ._store import fetch

DataDir = str | os.PathLike[str] | None


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: object) -> None:
    """Raise ``ValueError`` naming ``source`` and the columns it lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {missing}; it has {list(frame.columns)}"
        )


def read_csv(relpath: str, data_dir: DataDir, columns: Iterable[str] = ()) -> pd.DataFrame:
    """Fetch a registered CSV, read it, and check that ``columns`` are present."""
    path = fetch(relpath, data_dir=data_dir)
    frame = pd.read_csv(path)
    require_columns(frame, columns, path)
    return frame


def read_json(relpath: str, data_dir: DataDir) -> Any:
    """Fetch a registered JSON file and parse it."""
    with open(fetch(relpath, data_dir=data_dir), encoding="utf-8") as handle:
        return json.load(handle)


def read_npz(relpath: str, data_dir: DataDir, keys: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Fetch a registered ``.npz`` (no pickles) and check that ``keys`` are present."""
    path = fetch(relpath, data_dir=data_dir)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} is missing array(s) {missing}; it has {sorted(arrays)}")
    return arrays
