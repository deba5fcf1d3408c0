"""Plots with credible bands (matplotlib)."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import jax
import numpy as np
import pandas as pd

from jaxscale.bayes.inference import Posterior


def plot_forecast(post: Posterior, task: int = 0, *, x_grid: np.ndarray | None = None, levels: Sequence[float] = (0.5, 0.9),
                  kind: Literal["mean", "observation"] = "mean", key: jax.Array | None = None, test: pd.DataFrame | None = None,
                  ax: Any = None, color: str = "C0", label: str | None = None, logx: bool = True, logy: bool = True):
    """One task's data, posterior median curve and central credible bands (`levels`) over `x_grid`
    (default: from the smallest x to 10x the largest, one-input laws). `test` (x and y columns of
    the fit) adds held-out points as crosses. Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    if post.law.n_inputs != 1:
        raise ValueError("plot_forecast draws one-input laws; use chain_forecast tables for others")
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    d = post.data
    m = d.mask[task]
    xs, ys = d.x[task, m, 0], d.y[task, m]
    if x_grid is None:
        x_grid = np.geomspace(xs.min(), xs.max() * 10, 80) if logx else np.linspace(xs.min(), xs.max() * 2, 80)
    draws = post.predict(np.asarray(x_grid), kind=kind, key=key)[task]  # [S, G]
    for lv in sorted(levels, reverse=True):
        lo, hi = np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        ax.fill_between(x_grid, lo, hi, color=color, alpha=0.15 + 0.15 * (1 - lv), lw=0, label=f"{lv:.0%} {kind}")
    ax.plot(x_grid, np.median(draws, axis=0), color=color, lw=1.5, label=label or "posterior median")
    ax.scatter(xs, ys, s=12, color="k", zorder=3, label="fit points")
    if test is not None:
        ax.scatter(test[d.x_names[0]], test[d.y_name], marker="x", color="C3", zorder=3, label="held out")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(d.x_names[0])
    ax.set_ylabel(d.y_name)
    title = ", ".join(f"{k}={v}" for k, v in d.keys.iloc[task].items())
    ax.set_title(title, fontsize=9)
    return ax


def plot_intervals(table: pd.DataFrame, truth: np.ndarray | None = None, *, label: str = "task", lo: str = "q0.05",
                   hi: str = "q0.95", ax: Any = None, color: str = "C0"):
    """A forecast table as error bars per row (median and the `lo`-`hi` interval), with the
    true values if given: the chained forecasts of many tasks at a glance."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 0.3 * len(table) + 1))[1]
    y = np.arange(len(table))
    med = table["prediction"].to_numpy()
    ax.errorbar(med, y, xerr=[med - table[lo].to_numpy(), table[hi].to_numpy() - med], fmt="o", color=color,
                ms=3, capsize=2, label=f"median, {lo}-{hi}")
    if truth is not None:
        ax.scatter(truth, y, marker="x", color="C3", zorder=3, label="actual")
    ax.set_yticks(y)
    ax.set_yticklabels(table[label].astype(str) if label in table else y, fontsize=7)
    ax.legend(fontsize=7)
    return ax
