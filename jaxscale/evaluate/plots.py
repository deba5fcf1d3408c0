"""Plots for backtests: one task's fits and extrapolations with the held-out points marked, and a
leaderboard chart.

Example:
    >>> from jaxscale import evaluate
    >>> fc = evaluate.forecast_folds(df, methods, split, x="x", y="y", by="task", grid=64)  # doctest: +SKIP
    >>> evaluate.plots.plot_task(df, fc, {"task": "a"})  # doctest: +SKIP
    >>> evaluate.plots.plot_leaderboard(evaluate.leaderboard(evaluate.score_folds(fc, y="y", by="task")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale.evaluate.harness import FOLD, METHOD, ROLE
from jaxscale.forecast import PREDICTION

__all__ = ["plot_task", "plot_leaderboard"]


def _select(frame: pd.DataFrame, task: Mapping[str, Any]) -> pd.DataFrame:
    keep = np.ones(len(frame), bool)
    for k, v in task.items():
        keep &= (frame[k] == v).to_numpy()
    return frame[keep]


def plot_task(data: pd.DataFrame, forecasts: pd.DataFrame, task: Mapping[str, Any], *, methods: Sequence[str] | None = None,
              fold: str | None = None, ax: Any = None, logx: bool = True, logy: bool = True, title: str | None = None) -> Any:
    """One task: its points (held-out ones marked with crosses), each method's fitted curve and
    extrapolation (the ``grid`` rows of `forecast_folds`) and its predictions at the held-out x.

    Args:
      data: the long table that was backtested.
      forecasts: `forecast_folds` output (run it with ``grid=...`` to draw whole curves).
      task: the task's key values, e.g. ``{"task": "IC/bird_5/ViT/B/16"}``.
      methods: which methods to draw (default: all).
      fold: which fold (default: the first).
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    x = forecasts.attrs.get("x", [None])[0]
    y = forecasts.attrs.get("y")
    if x is None or y is None:
        raise ValueError("forecasts lack their x/y names (pass the output of forecast_folds)")
    fc = _select(forecasts, task)
    if fc.empty:
        raise ValueError(f"no forecasts for task {dict(task)}")
    fold = fold if fold is not None else fc[FOLD].iloc[0]
    fc = fc[fc[FOLD] == fold]
    names = list(dict.fromkeys(fc[METHOD])) if methods is None else list(methods)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    pts = _select(data, task)
    test = fc[(fc[ROLE] == "test") & (fc[METHOD] == names[0])] if names else fc.iloc[:0]
    held = pts[x].isin(test[x])
    ax.scatter(pts.loc[~held, x], pts.loc[~held, y], s=14, color="0.25", label="fitted points", zorder=3)
    ax.scatter(pts.loc[held, x], pts.loc[held, y], s=22, marker="x", color="crimson", label="held out", zorder=3)
    if held.any():
        ax.axvline(pts.loc[~held, x].max(), color="0.6", lw=0.8, ls=":")
    for i, name in enumerate(names):
        m = fc[fc[METHOD] == name]
        color = f"C{i % 10}"
        grid = m[m[ROLE] == "grid"].sort_values(x)
        if len(grid):
            ax.plot(grid[x], grid[PREDICTION], color=color, lw=1.3, label=name)
            lo = [c for c in grid.columns if c in ("q0.05", "q0.025", "q0.1")]
            hi = [c for c in grid.columns if c in ("q0.95", "q0.975", "q0.9")]
            if lo and hi:
                ax.fill_between(grid[x], grid[lo[0]], grid[hi[-1]], color=color, alpha=0.15)
        t = m[m[ROLE] == "test"].sort_values(x)
        ax.plot(t[x], t[PREDICTION], ls="none", marker=".", ms=4, color=color,
                label=None if len(grid) else name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title if title is not None else ", ".join(f"{v}" for v in task.values()), fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_leaderboard(board: pd.DataFrame, *, metric: str = "mean", group: str | None = None, ax: Any = None,
                     log: bool = True) -> Any:
    """Bar chart of a `leaderboard`: the metric of each method (one panel per group), annotated
    with its win rate. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    groups = [None] if group is None else list(dict.fromkeys(board[group]))
    if ax is None:
        fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 0.35 * board[METHOD].nunique() + 1.2),
                                 squeeze=False)
        axes = axes[0]
    else:
        axes, fig = [ax], ax.figure
    for a, g in zip(axes, groups):
        part = board if g is None else board[board[group] == g]
        part = part.sort_values(metric, ascending=False)
        vals = part[metric].to_numpy(float)
        a.barh(part[METHOD].astype(str), vals, color=["C3" if r == 1 else "C0" for r in part.get("rank", [0] * len(part))])
        for yi, (v, w) in enumerate(zip(vals, part.get("win_rate", [np.nan] * len(part)))):
            if np.isfinite(v) and np.isfinite(w):
                a.text(v, yi, f" {100 * w:.0f}%", va="center", fontsize=7)
        if log:
            a.set_xscale("log")
        a.set_title(f"{g}" if g is not None else metric, fontsize=9)
        a.set_xlabel(f"{metric} ({'win rate' if 'win_rate' in part else ''})", fontsize=8)
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
