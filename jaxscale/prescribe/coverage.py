"""Coverage of a quantile boundary: equal-mass compute bins and per-bin coverage error.

The evaluation of Zhang et al. (2026): sort the models by z = log10(FLOPs), cut them into
``n_bins`` bins of about equal mass (never splitting models of the same compute across two bins,
and merging bins smaller than ``min_bin`` into their smaller neighbour), and report in each bin
the coverage ``mean(y <= yhat)`` and its error ``|coverage - tau|``. The headline number is the
mean of the per-bin errors (the "macro" error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["equal_mass_edges", "assign_bins", "bin_coverage", "coverage_error"]


def equal_mass_edges(z: np.ndarray, n_bins: int = 10, min_bin: int = 1) -> np.ndarray:
    """Edges of about `n_bins` equal-mass bins of `z` whose boundaries fall between distinct values.

    Points with the same z are never split. A bin closes once it holds at least ``ceil(n / n_bins)``
    points (or `min_bin`); bins left with fewer than `min_bin` points are merged into their smaller
    neighbour. Bins are ``[e_i, e_{i+1})`` except the last, which is closed.

    Example:
      >>> equal_mass_edges(np.array([1.0, 1.0, 2.0, 3.0, 4.0, 4.0]), n_bins=3).tolist()
      [1.0, 3.0, 4.0]
    """
    z = np.sort(np.asarray(z, dtype=float)[np.isfinite(z)])
    if z.size == 0:
        return np.array([])
    uniq, counts = np.unique(z, return_counts=True)
    if uniq.size == 1:
        return np.array([uniq[0], uniq[0]])
    k = max(1, min(int(n_bins), uniq.size))
    target = max(int(min_bin), int(np.ceil(z.size / k)))
    edges = [float(uniq[0])]
    acc = 0
    for i, c in enumerate(counts):
        acc += int(c)
        if acc >= target or i == uniq.size - 1:
            edges.append(float(uniq[i]))
            acc = 0
    # merge bins below min_bin towards their smaller neighbour
    while len(edges) > 2:
        n = _bin_counts(z, np.asarray(edges))
        bad = np.nonzero(n < min_bin)[0]
        if bad.size == 0:
            break
        i = int(bad[0])
        if i == 0:
            del edges[1]
        elif i == len(n) - 1:
            del edges[-2]
        elif n[i - 1] <= n[i + 1]:
            del edges[i]
        else:
            del edges[i + 1]
    out = [edges[0]] + [e for prev, e in zip(edges, edges[1:]) if e > prev]
    return np.asarray(out if len(out) > 1 else [uniq[-1], uniq[-1]], dtype=float)


def _bin_counts(z_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    lo = np.searchsorted(z_sorted, edges[:-1], side="left")
    hi = np.append(np.searchsorted(z_sorted, edges[1:-1], side="left"), np.searchsorted(z_sorted, edges[-1], "right"))
    return hi - lo


def assign_bins(z: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each z for `edges` (``[e_i, e_{i+1})``, the last bin closed); -1 outside."""
    z = np.asarray(z, dtype=float)
    nb = len(edges) - 1
    idx = np.searchsorted(edges, z, side="right") - 1
    idx = np.where(z == edges[-1], nb - 1, idx)
    return np.where((idx >= 0) & (idx < nb) & np.isfinite(z), idx, -1)


def bin_coverage(z: np.ndarray, y: np.ndarray, yhat: np.ndarray, tau: float,
                 edges: np.ndarray | None = None, *, n_bins: int = 10, min_bin: int = 1) -> pd.DataFrame:
    """Per-bin coverage of a boundary: one row per bin with ``z_lo, z_hi, n, coverage, error``.

    Bins are equal-mass bins of `z` (`equal_mass_edges`) unless `edges` are given.

    Example:
      >>> z = np.repeat(np.arange(4.0), 50); y = np.tile(np.linspace(0, 1, 50), 4)
      >>> bin_coverage(z, y, np.full(200, 0.9), 0.9, n_bins=2)["coverage"].round(2).tolist()
      [0.9, 0.9]
    """
    z, y, yhat = (np.asarray(a, dtype=float) for a in (z, y, yhat))
    ok = np.isfinite(z) & np.isfinite(y) & np.isfinite(yhat)
    if edges is None:
        edges = equal_mass_edges(z[ok], n_bins, min_bin)
    if len(edges) < 2:
        return pd.DataFrame(columns=["bin", "z_lo", "z_hi", "n", "coverage", "error"])
    b = assign_bins(z, edges)
    rows = []
    for i in range(len(edges) - 1):
        m = ok & (b == i)
        n = int(m.sum())
        cov = float(np.mean(y[m] <= yhat[m])) if n else np.nan
        rows.append({"bin": i, "z_lo": float(edges[i]), "z_hi": float(edges[i + 1]), "n": n, "coverage": cov,
                     "error": abs(cov - tau) if n else np.nan})
    return pd.DataFrame(rows)


def coverage_error(z: np.ndarray, y: np.ndarray, yhat: np.ndarray, tau: float,
                   edges: np.ndarray | None = None, *, n_bins: int = 10, min_bin: int = 1) -> float:
    """Mean over bins of ``|mean(y <= yhat) - tau|`` (equal-mass bins of z; empty bins ignored).

    Example:
      >>> z = np.repeat(np.arange(4.0), 50); y = np.tile(np.linspace(0, 1, 50), 4)
      >>> round(coverage_error(z, y, np.full(200, 0.5), 0.9, n_bins=4), 2)
      0.4
    """
    tab = bin_coverage(z, y, yhat, tau, edges, n_bins=n_bins, min_bin=min_bin)
    err = tab["error"].to_numpy(dtype=float)
    err = err[np.isfinite(err)]
    return float(err.mean()) if err.size else float("nan")
