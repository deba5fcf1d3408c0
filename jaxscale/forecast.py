"""The forecast table every method returns.

Columns: the task key columns, the x columns, ``prediction`` and, where a method gives them,
quantile columns named ``q0.05``, ``q0.5``, ``q0.95``, ... (`quantile_column`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

PREDICTION = "prediction"


def quantile_column(q: float) -> str:
    """Column name of quantile level q: ``quantile_column(0.05) == "q0.05"``."""
    return f"q{float(q):g}"


def forecast_frame(rows: pd.DataFrame, prediction: np.ndarray,
                   quantiles: Mapping[float, np.ndarray] | None = None) -> pd.DataFrame:
    """Assemble a forecast table from its key/x rows, point predictions and optional quantiles."""
    out = rows.reset_index(drop=True).copy()
    out[PREDICTION] = np.asarray(prediction, dtype=float)
    for q in sorted(quantiles or {}):
        out[quantile_column(q)] = np.asarray(quantiles[q], dtype=float)
    return out


def quantile_levels(frame: pd.DataFrame) -> list[float]:
    """The quantile levels present in a forecast table."""
    out = []
    for c in frame.columns:
        if isinstance(c, str) and c.startswith("q"):
            try:
                out.append(float(c[1:]))
            except ValueError:
                pass
    return sorted(out)
