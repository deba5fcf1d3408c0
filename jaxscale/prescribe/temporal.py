"""Temporal validation of capability boundaries: fit on earlier model releases, score later ones.

Models are split by release (upload) date into consecutive periods. For each split the boundary is
fitted on the training periods (all earlier periods, ``mode="cumulative"``, or only the previous
one, ``mode="single"``) and scored on the next period: the per-bin coverage error over equal-mass
compute bins of the test models (bins built on the test z, as the reference's ``test_fixed`` mode),
next to the in-sample error on the training models. Every (task, split) pair is one lane of a
single batched fit.

`boundary_by_period` fits each period on its own and reads the boundary at fixed compute, which
shows whether the frontier advances over time (Zhang et al. report that math reasoning does while
the other boundaries are stable).

Example:
  >>> from jaxscale import datasets
  >>> df = datasets.load_proteus()  # doctest: +SKIP
  >>> tv = temporal_validation(df)  # doctest: +SKIP
  >>> tv.table[["task", "test_period", "is_error", "oos_error", "oos_coverage"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from jaxscale.prescribe.boundary import BoundaryFit, Lanes, fit_lanes, lanes_from_frame

__all__ = ["PROTEUS_BOUNDARIES", "PAPER_BOUNDARIES", "assign_periods", "period_labels", "splits",
           "TemporalResult", "temporal_validation", "boundary_by_period"]

#: Half-year periods that split Proteus-2k's upload dates (2022-09 .. 2026-01) into 4 sizeable
#: groups: <= 2024-06 (513 models), 2024-H2 (434), 2025-H1 (586), >= 2025-07 (917).
PROTEUS_BOUNDARIES: tuple[str, ...] = ("2024-07-01", "2025-01-01", "2025-07-01")
#: The paper's "period4" boundaries (<= 2024-06, 2024-Q3, 2024-Q4, 2025-Q1); its last period ends in
#: 2025-03, here it is left open.
PAPER_BOUNDARIES: tuple[str, ...] = ("2024-07-01", "2024-10-01", "2025-01-01")


def _ts(d: Any) -> pd.Timestamp:
    t = pd.Timestamp(d)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def assign_periods(dates: Sequence[Any], boundaries: Sequence[Any]) -> np.ndarray:
    """Period index of each date: 0 before the first boundary, k between boundaries k-1 and k
    (boundaries belong to the later period); -1 for a missing date.

    Example:
      >>> assign_periods(["2024-01-05", "2024-07-01", "2025-03-01", None], ["2024-07-01", "2025-01-01"]).tolist()
      [0, 1, 2, -1]
    """
    d = pd.to_datetime(pd.Series(list(dates)), utc=True, format="mixed")
    edges = np.array([_ts(b).value for b in boundaries], dtype=np.int64)
    vals = d.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    idx = np.searchsorted(edges, vals, side="right")
    return np.where(d.isna().to_numpy(), -1, idx)


def period_labels(boundaries: Sequence[Any]) -> list[str]:
    """Readable labels of the periods cut by `boundaries` (``"< 2024-07"``, ``"2024-07..2024-12"``, ...)."""
    b = [_ts(x) for x in boundaries]
    out = [f"< {b[0]:%Y-%m}"] if b else ["all"]
    for lo, hi in zip(b, b[1:]):
        out.append(f"{lo:%Y-%m}..{(hi - pd.Timedelta(days=1)):%Y-%m}")
    if b:
        out.append(f">= {b[-1]:%Y-%m}")
    return out


def splits(n_periods: int, mode: Literal["cumulative", "single"] = "cumulative") -> list[tuple[list[int], int]]:
    """(training periods, test period) pairs: train on periods <= k (or only k), test on k + 1.

    Example:
      >>> splits(3), splits(3, "single")
      ([([0], 1), ([0, 1], 2)], [([0], 1), ([1], 2)])
    """
    if mode not in ("cumulative", "single"):
        raise ValueError(f"mode must be 'cumulative' or 'single', got {mode!r}")
    return [(list(range(k + 1)) if mode == "cumulative" else [k], k + 1) for k in range(n_periods - 1)]


@dataclasses.dataclass(frozen=True, eq=False)
class TemporalResult:
    """Temporal validation.

    Attributes:
      table: one row per (task, split): training/test periods, ``n_train``, ``n_test``,
        ``is_error`` (in-sample per-bin coverage error), ``oos_error`` (out-of-period, bins on the test
        models), ``oos_coverage`` (share of test models on or below the boundary), ``shortfall``
        (tau - oos_coverage: positive when later models beat the old boundary).
      bins: the out-of-period coverage per (task, split, bin).
      fit: the batched `BoundaryFit` (lanes = task x split).
      test_weights: ``[R, P]`` the test points of every lane.
    """

    table: pd.DataFrame
    bins: pd.DataFrame
    fit: BoundaryFit
    test_weights: np.ndarray


def _base_lanes(frame: pd.DataFrame, x: str, y: str, by: str | Sequence[str], tau: float, date: str,
                boundaries: Sequence[Any]) -> tuple[Lanes, np.ndarray, list[str]]:
    df = frame.reset_index(drop=True)
    lanes = lanes_from_frame(df, x=x, y=y, by=by, taus=(tau,))
    period = assign_periods(df[date], boundaries)
    per = np.where(lanes.row >= 0, period[np.maximum(lanes.row, 0)], -1)
    return lanes, per, period_labels(boundaries)


def temporal_validation(frame: pd.DataFrame, *, boundaries: Sequence[Any] = PROTEUS_BOUNDARIES,
                        mode: Literal["cumulative", "single"] = "cumulative", tau: float = 0.98,
                        x: str = "log10_flops", y: str = "score", by: str | Sequence[str] = "task",
                        date: str = "date", n_bins: int = 10, min_bin: int = 30, **fit_options: Any) -> TemporalResult:
    """Fit on earlier periods, score coverage on the next one, for every task and split at once.

    Args:
      frame: long table with the date column (e.g. `jaxscale.datasets.load_proteus`).
      boundaries: dates cutting the periods (`PROTEUS_BOUNDARIES`; `PAPER_BOUNDARIES`; or e.g.
        ``["2025-01-01"]`` for a single before/after split).
      mode: ``"cumulative"`` (train on all earlier periods) or ``"single"`` (only the previous one).
      tau: quantile level; n_bins, min_bin: the equal-mass bins of the coverage error.
      fit_options: passed to `fit_lanes`.
    """
    lanes, per, labels = _base_lanes(frame, x, y, by, tau, date, boundaries)
    sp = splits(len(labels), mode)
    keys, take, w_train, w_test = [], [], [], []
    for s, (tr, te) in enumerate(sp):
        for i in range(lanes.n):
            keys.append({**lanes.keys.iloc[i].to_dict(), "split": s,
                         "train_periods": labels[tr[0]] if len(tr) == 1 else f"{labels[tr[0]]} .. {labels[tr[-1]]}",
                         "test_period": labels[te]})
            take.append(i)
            w_train.append(np.where(np.isin(per[i], tr), lanes.w[i], 0.0))
            w_test.append(np.where(per[i] == te, lanes.w[i], 0.0))
    tl = lanes.with_weights(np.stack(w_train), pd.DataFrame(keys), np.asarray(take))
    fit = fit_lanes(tl, **fit_options)
    w_test = np.stack(w_test)
    ins = fit.coverage(n_bins=n_bins, min_bin=min_bin)
    oos = fit.coverage(w_test, n_bins=n_bins, min_bin=min_bin)
    table = tl.keys.copy()
    table["n_train"], table["n_test"] = ins["n"].to_numpy(), oos["n"].to_numpy()
    table["z_star"], table["b"] = fit.params_array[:, 3], fit.params_array[:, 2]
    table["is_error"] = ins["coverage_error"].to_numpy()
    table["oos_error"] = oos["coverage_error"].to_numpy()
    table["oos_coverage"] = oos["coverage"].to_numpy()
    table["shortfall"] = tau - table["oos_coverage"]
    bins = fit.coverage(w_test, n_bins=n_bins, min_bin=min_bin, by_bin=True)
    return TemporalResult(table, bins, fit, w_test)


def boundary_by_period(frame: pd.DataFrame, *, boundaries: Sequence[Any] = PROTEUS_BOUNDARIES,
                       z_ref: Sequence[float] = (23.0, 23.5, 24.0), tau: float = 0.98, x: str = "log10_flops",
                       y: str = "score", by: str | Sequence[str] = "task", date: str = "date",
                       **fit_options: Any) -> tuple[pd.DataFrame, BoundaryFit]:
    """Fit the boundary of each period on its own models and read it at compute `z_ref`.

    Returns (a table with one row per (task, period): ``n``, z*, b and ``q@{z}`` for each reference
    compute, plus one ``advance@{z}`` row-group column: the boundary's change from the first period,
    and the batched `BoundaryFit`). An advancing capability shows rising ``q@z`` at fixed compute.
    """
    lanes, per, labels = _base_lanes(frame, x, y, by, tau, date, boundaries)
    keys, take, ws = [], [], []
    for k, lab in enumerate(labels):
        for i in range(lanes.n):
            keys.append({**lanes.keys.iloc[i].to_dict(), "period": k, "period_label": lab})
            take.append(i)
            ws.append(np.where(per[i] == k, lanes.w[i], 0.0))
    pl = lanes.with_weights(np.stack(ws), pd.DataFrame(keys), np.asarray(take))
    fit = fit_lanes(pl, **fit_options)
    table = pl.keys.copy()
    table["n"] = (pl.w > 0).sum(1)
    table["z_star"], table["b"] = fit.params_array[:, 3], fit.params_array[:, 2]
    q = fit.predict(np.asarray(z_ref, dtype=float))
    group = [c for c in table.columns if c not in ("tau", "period", "period_label", "n", "z_star", "b")]
    for j, z in enumerate(z_ref):
        table[f"q@{z:g}"] = q[:, j]
        first = table.groupby(group, sort=False)[f"q@{z:g}"].transform("first")
        table[f"advance@{z:g}"] = table[f"q@{z:g}"] - first
    return table, fit
