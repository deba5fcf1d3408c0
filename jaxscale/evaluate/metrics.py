"""Forecast metrics: point errors, interval coverage and width, pinball loss and CRPS.

Every metric reads a forecast table joined with the truth (columns ``prediction``, the target
column and optional quantile columns ``q0.05``...) and returns one number per group of rows.
`score` computes all of them per task; `win_rates` counts wins after truncating errors, as in the
M-competitions.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"task": ["a", "a", "b"], "y": [1.0, 2.0, 4.0], "prediction": [1.1, 1.8, 4.0]})
    >>> score(t, y="y", by="task")[["task", "rmsle", "mae"]].round(4).to_dict("list")
    {'task': ['a', 'b'], 'rmsle': [0.1005, 0.0], 'mae': [0.15, 0.0]}
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale.evaluate.splits import as_list
from jaxscale.forecast import PREDICTION, quantile_column, quantile_levels

__all__ = [
    "POINT_METRICS", "rmsle", "mae", "rel_error", "signed_error", "coverage", "interval_width", "pinball",
    "crps", "score", "truncate", "win_rates", "central_pairs",
]


def _log_err(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(p) - np.log(y)
    # a non-positive prediction of a positive target is an infinitely bad log forecast
    return np.where(np.isnan(out) & (y > 0) & (p <= 0), np.inf, out)


def rmsle(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error of log(prediction) vs log(y) (the Revisiting/BNSL metric)."""
    return float(np.sqrt(np.mean(_log_err(np.asarray(y, float), np.asarray(p, float)) ** 2)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(p, float) - np.asarray(y, float))))


def rel_error(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute relative error |p - y| / |y| (a fraction, not a percentage)."""
    y = np.asarray(y, float)
    return float(np.mean(np.abs(np.asarray(p, float) - y) / np.abs(y)))


def signed_error(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of p - y (positive: over-prediction)."""
    return float(np.mean(np.asarray(p, float) - np.asarray(y, float)))


#: Point metrics computed by `score`: name -> fn(y, prediction).
POINT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmsle": rmsle, "mae": mae, "rel_error": rel_error, "bias": signed_error,
}


def central_pairs(levels: Sequence[float]) -> list[tuple[float, float]]:
    """Symmetric quantile pairs (lo, hi) with lo + hi = 1 among `levels`, widest first."""
    lv = sorted(levels)
    out = []
    for lo in lv:
        hi = [h for h in lv if abs(lo + h - 1) < 1e-9 and h > lo]
        if hi:
            out.append((lo, hi[0]))
    return out


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of targets inside [lo, hi]."""
    y = np.asarray(y, float)
    return float(np.mean((y >= np.asarray(lo, float)) & (y <= np.asarray(hi, float))))


def interval_width(lo: np.ndarray, hi: np.ndarray) -> float:
    """Mean width hi - lo of an interval."""
    return float(np.mean(np.asarray(hi, float) - np.asarray(lo, float)))


def pinball(y: np.ndarray, q: np.ndarray, tau: float) -> float:
    """Mean pinball (quantile) loss of quantile forecasts `q` at level tau: mean of max(tau u, (tau - 1) u), u = y - q."""
    u = np.asarray(y, float) - np.asarray(q, float)
    return float(np.mean(np.maximum(tau * u, (tau - 1.0) * u)))


def crps(y: np.ndarray, quantiles: Mapping[float, np.ndarray]) -> float:
    """CRPS approximated from quantile forecasts: 2 x the mean pinball loss over the levels.

    Exact in the limit of many evenly spaced levels (CRPS = 2 int_0^1 pinball_tau d tau).
    """
    if not quantiles:
        return float("nan")
    return float(2.0 * np.mean([pinball(y, q, tau) for tau, q in quantiles.items()]))


def _task_scores(g: pd.DataFrame, y: str, levels: list[float], pairs: list[tuple[float, float]],
                 metrics: Mapping[str, Callable]) -> dict[str, float]:
    yy = g[y].to_numpy(float)
    pp = g[PREDICTION].to_numpy(float)
    out: dict[str, float] = {"n_test": len(g)}
    failed = ~np.isfinite(pp).all()
    out["failed"] = bool(failed)
    for name, fn in metrics.items():
        out[name] = float("nan") if failed else fn(yy, pp)
    if levels:
        qs = {tau: g[quantile_column(tau)].to_numpy(float) for tau in levels}
        ok = all(np.isfinite(v).all() for v in qs.values())
        for lo, hi in pairs:
            pct = f"{round(100 * (hi - lo)):d}"
            out[f"coverage_{pct}"] = coverage(yy, qs[lo], qs[hi]) if ok else float("nan")
            out[f"width_{pct}"] = interval_width(qs[lo], qs[hi]) if ok else float("nan")
        out["pinball"] = float(np.mean([pinball(yy, q, t) for t, q in qs.items()])) if ok else float("nan")
        out["crps"] = crps(yy, qs) if ok else float("nan")
    return out


def score(table: pd.DataFrame, *, y: str, by: str | Sequence[str] | None = None,
          metrics: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] | None = None) -> pd.DataFrame:
    """Score a forecast table joined with the truth: one row per group of `by` (e.g. method, task).

    Columns: the `by` columns, ``n_test``, ``failed`` (a prediction is NaN/inf: the point metrics
    are NaN), each point metric (default `POINT_METRICS`: ``rmsle``, ``mae``, ``rel_error``,
    ``bias``), and where the table has quantile columns: ``coverage_90``/``width_90`` per central
    interval (here for ``q0.05``/``q0.95``), ``pinball`` (mean over levels) and ``crps``.

    Example:
      >>> import pandas as pd
      >>> t = pd.DataFrame({"y": [1.0, 2.0], "prediction": [1.0, 2.0], "q0.05": [0.5, 2.5], "q0.95": [1.5, 3.0]})
      >>> score(t, y="y")[["coverage_90", "width_90"]].to_dict("records")
      [{'coverage_90': 0.5, 'width_90': 0.75}]
    """
    metrics = POINT_METRICS if metrics is None else dict(metrics)
    keys = as_list(by)
    levels = quantile_levels(table)
    pairs = central_pairs(levels)
    if keys:
        rows = []
        for k, g in table.groupby(keys, sort=False, dropna=False):
            k = k if isinstance(k, tuple) else (k,)
            rows.append({**dict(zip(keys, k)), **_task_scores(g, y, levels, pairs, metrics)})
        return pd.DataFrame(rows)
    return pd.DataFrame([_task_scores(table, y, levels, pairs, metrics)])


def truncate(values: np.ndarray | pd.Series, decimals: int = 3) -> np.ndarray:
    """Truncate (not round) toward zero to `decimals` decimals; NaN becomes +inf (a loss)."""
    v = np.asarray(values, float)
    f = 10.0 ** decimals
    # the small epsilon keeps values such as 0.0290000001 stored as 0.028999999 from dropping a digit
    out = np.trunc(v * f + np.sign(v) * 1e-9) / f
    return np.where(np.isfinite(v), out, np.inf)


def win_rates(scores: pd.DataFrame, *, metric: str = "rmsle", method: str = "method",
              task: str | Sequence[str] = "task", decimals: int | None = 3) -> pd.DataFrame:
    """Share of tasks each method wins: errors truncated to `decimals`, ties split equally.

    A task's errors are compared across the methods scored on it; the methods tied at the lowest
    truncated error each get 1/k of the win. NaN counts as a loss.

    Returns one row per method: ``wins`` (fractional count), ``n_tasks`` and ``win_rate`` (0-1).

    Example:
      >>> import pandas as pd
      >>> s = pd.DataFrame({"task": [1, 1, 2, 2], "method": ["a", "b"] * 2, "rmsle": [0.0101, 0.0109, 0.02, 0.03]})
      >>> win_rates(s).set_index("method").win_rate.to_dict()
      {'a': 0.75, 'b': 0.25}
    """
    keys = as_list(task)
    err = truncate(scores[metric], decimals) if decimals is not None else np.where(
        np.isfinite(scores[metric]), scores[metric], np.inf)
    s = scores[keys + [method]].assign(_e=err)
    best = s.groupby(keys, sort=False, dropna=False)["_e"].transform("min")
    winner = (s["_e"] == best) & np.isfinite(best)
    n_win = winner.groupby([s[k] for k in keys], sort=False, dropna=False).transform("sum")
    s["_w"] = np.where(winner, 1.0 / n_win.clip(lower=1), 0.0)
    out = s.groupby(method, sort=False).agg(wins=("_w", "sum"), n_tasks=("_e", "size")).reset_index()
    out["win_rate"] = out["wins"] / s.groupby(keys, sort=False, dropna=False).ngroups
    return out
