"""Budgeted evaluation design: which models to evaluate when evaluations cost money.

Each candidate model costs about its parameter count to evaluate. Given a budget (a share of the
cost of evaluating every candidate), `greedy_design` picks models one at a time by the gain in
I-optimality (the drop of the boundary's average prediction variance over the compute range) per
unit cost, plus a balance bonus for compute bins still thinly covered (Zhang et al. 2026's
"balanced I-optimal" design). The information matrix ``M = sum_i j_i j_i^T`` of the sigmoid's
Jacobian at a prior guess ``theta`` is updated by rank-one (Sherman-Morrison) steps, so each
greedy step scores every candidate at once in O(n p^2). The design never looks at the scores: it
decides what to evaluate before the evaluations exist.

`budget_sweep` runs designs at several budgets (and a random-subset baseline at the same budgets),
refits the boundary on each chosen subset of the training period(s), and scores the coverage of the
next period - all lanes (task x split x budget x method x replicate) in one batched fit per stage.

Example:
  >>> z = np.repeat([21.0, 22.0, 23.0, 24.0], 5); cost = np.repeat([1.0, 2.0, 4.0, 8.0], 5)
  >>> sel = greedy_design(z, cost, budget=0.3 * cost.sum())
  >>> bool(cost[sel].sum() <= 0.3 * cost.sum()), len(sel) > 4
  (True, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from jaxscale.prescribe.boundary import BoundaryFit, fit_lanes, lanes_from_frame
from jaxscale.prescribe.coverage import assign_bins, equal_mass_edges
from jaxscale.prescribe.temporal import PROTEUS_BOUNDARIES, assign_periods, period_labels, splits

__all__ = ["jacobian", "default_theta", "greedy_design", "random_design", "BudgetResult", "budget_sweep"]

Objective = Literal["i_optimal_balanced", "i_optimal", "d_optimal"]


def default_theta(z: np.ndarray) -> np.ndarray:
    """A score-free prior boundary for the design: y0 0.2, L 0.75, z* mid-range and a slope that
    spans the compute range (b = 4 / range), as (y0, L, b, z*)."""
    lo, hi = float(np.min(z)), float(np.max(z))
    return np.array([0.2, 0.75, 4.0 / max(hi - lo, 1e-6), 0.5 * (lo + hi)])


def jacobian(z: np.ndarray, theta: Sequence[float]) -> np.ndarray:
    """``[n, 4]`` derivatives of q(z) = y0 + L sigmoid(b (z - z*)) in (y0, L, b, z*) at `theta`."""
    y0, L, b, zs = (float(v) for v in theta)
    z = np.asarray(z, dtype=float)
    s = 1.0 / (1.0 + np.exp(-b * (z - zs)))
    ds = L * s * (1.0 - s)
    return np.stack([np.ones_like(z), s, ds * (z - zs), -ds * b], axis=-1)


def greedy_design(z: np.ndarray, cost: np.ndarray, budget: float, *, theta: Sequence[float] | None = None,
                  objective: Objective = "i_optimal_balanced", balance_lambda: float = 0.1, n_bins: int = 10,
                  seed_c: float = 1.543, eps: float = 1e-9, seed: int = 42) -> np.ndarray:
    """Indices of the models to evaluate (in the order chosen) with total cost <= `budget`.

    Args:
      z: log10 compute of each candidate; cost: its evaluation cost (e.g. parameters).
      budget: total cost allowed.
      theta: prior (y0, L, b, z*) at which the Jacobian is taken (default `default_theta`).
      objective: ``"i_optimal_balanced"`` (default), ``"i_optimal"`` or ``"d_optimal"``.
      balance_lambda: weight of the bin-balance bonus ``log(n_b + 1) - log(n_b)``.
      n_bins: equal-mass compute bins for the I-optimal grid and the balance term.
      seed_c: the first picks are the models nearest zmin, zmax and z* -/+ seed_c / b (the D-optimal
        support of a logistic).
      eps: the information matrix starts at ``eps * I``.
      seed: tie-breaking order among equal candidates.
    """
    z = np.asarray(z, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n = z.size
    if n == 0 or budget <= 0:
        return np.array([], dtype=int)
    theta = default_theta(z) if theta is None else np.asarray(theta, dtype=float)
    J = jacobian(z, theta)
    perm = np.random.default_rng(seed).permutation(n)  # tie-breaking: scan candidates in this order
    edges = equal_mass_edges(z, n_bins, 1)
    mids = 0.5 * (edges[:-1] + edges[1:]) if len(edges) > 1 else np.array([z.mean()])
    Jg = jacobian(mids, theta)
    A = Jg.T @ Jg / len(mids)
    bins = assign_bins(z, edges) if len(edges) > 1 else np.zeros(n, dtype=int)
    counts = np.zeros(max(len(edges) - 1, 1))
    minv = np.eye(4) / eps
    used = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    spent = 0.0

    def take(i: int) -> None:
        nonlocal minv, spent
        v = minv @ J[i]
        minv = minv - np.outer(v, v) / (1.0 + J[i] @ v)
        used[i] = True
        chosen.append(int(i))
        spent += cost[i]
        if bins[i] >= 0:
            counts[bins[i]] += 1

    y0, L, b, zs = theta
    for target in (z.min(), z.max(), zs - seed_c / b, zs + seed_c / b):
        order = perm[np.lexsort((np.arange(n), np.abs(z[perm] - target)))]
        for i in order:
            if not used[i] and spent + cost[i] <= budget:
                take(int(i))
                break
    while True:
        ok = ~used & (cost <= budget - spent) & (cost > 0)
        if not ok.any():
            break
        V = J @ minv  # rows: M^-1 j_i (M^-1 symmetric)
        denom = 1.0 + np.einsum("ij,ij->i", V, J)
        if objective == "d_optimal":
            gain = np.log(np.maximum(denom, 1e-300))
        else:
            gain = np.einsum("ij,jk,ik->i", V, A, V) / denom
            if objective == "i_optimal_balanced" and balance_lambda > 0:
                nb = counts[np.maximum(bins, 0)]
                gain = gain + balance_lambda * (np.log(nb + 1.0 + 1e-6) - np.log(nb + 1e-6)) * (bins >= 0)
        score = np.where(ok, gain / np.where(cost > 0, cost, 1.0), -np.inf)
        s_perm = score[perm]
        j = int(perm[np.argmax(s_perm)])
        if not np.isfinite(score[j]) or score[j] <= 0:
            break
        take(j)
    return np.asarray(chosen, dtype=int)


def random_design(cost: np.ndarray, budget: float, seed: int = 0) -> np.ndarray:
    """A random subset within `budget`: models in random order, each kept if it still fits."""
    cost = np.asarray(cost, dtype=float)
    out, spent = [], 0.0
    for i in np.random.default_rng(seed).permutation(cost.size):
        if spent + cost[i] <= budget:
            out.append(int(i))
            spent += cost[i]
    return np.asarray(out, dtype=int)


@dataclasses.dataclass(frozen=True, eq=False)
class BudgetResult:
    """A budget sweep.

    Attributes:
      table: one row per (task, split, budget, method, replicate): ``n_selected``, ``cost_share``
        (cost actually spent / cost of the whole pool), ``is_error`` (coverage error on the whole
        training pool), ``oos_error`` (on the next period) and ``oos_coverage``.
      summary: per (task, budget, method): mean errors over splits and replicates, and
        ``oos_vs_full`` = oos_error - the full-data fit's oos_error.
      selections: (split, budget, method, replicate) -> selected model ids.
      fit: the batched `BoundaryFit`.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    selections: dict
    fit: BoundaryFit


def budget_sweep(frame: pd.DataFrame, *, budgets: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
                 boundaries: Sequence[Any] = PROTEUS_BOUNDARIES, mode: Literal["cumulative", "single"] = "single",
                 methods: Sequence[str] = ("i_optimal_balanced", "random"), n_random: int = 3, seed: int = 0,
                 tau: float = 0.98, x: str = "log10_flops", y: str = "score", by: str = "task",
                 model: str = "model", cost: str = "params", date: str = "date", theta: Sequence[float] | None = None,
                 balance_lambda: float = 0.1, n_bins: int = 10, min_bin: int = 30, **fit_options: Any) -> BudgetResult:
    """Design at each budget, refit on the chosen models, score coverage on the next period.

    Args:
      frame: long table (one row per model and task) with `model`, `cost`, `date` columns.
      budgets: shares of the pool's total cost (1.0 = every model: the full-data fit).
      boundaries, mode: the periods and the splits (`temporal.splits`): the design chooses within
        the training period(s) and is scored on the next period (every model of it).
      methods: design objectives of `greedy_design` and/or ``"random"`` (`n_random` replicates).
      theta, balance_lambda: passed to `greedy_design`.
      tau, n_bins, min_bin: boundary level and coverage bins; fit_options: passed to `fit_lanes`.
    """
    df = frame.reset_index(drop=True)
    lanes = lanes_from_frame(df, x=x, y=y, by=by, taus=(tau,))
    labels = period_labels(boundaries)
    period = assign_periods(df[date], boundaries)
    models = df[model].to_numpy()
    per = np.where(lanes.row >= 0, period[np.maximum(lanes.row, 0)], -1)
    lane_model = np.where(lanes.row >= 0, models[np.maximum(lanes.row, 0)], None)
    firsts = df.drop_duplicates(model)
    m_z = dict(zip(firsts[model], firsts[x].astype(float)))
    m_cost = dict(zip(firsts[model], firsts[cost].astype(float)))
    m_per = dict(zip(firsts[model], period[firsts.index.to_numpy()]))

    selections: dict[tuple, np.ndarray] = {}
    keys, take, w_fit, w_pool, w_test = [], [], [], [], []
    for s, (tr, te) in enumerate(splits(len(labels), mode)):
        pool = np.array([m for m in m_z if m_per[m] in tr])
        if pool.size == 0:
            continue
        zc = np.array([m_z[m] for m in pool])
        cc = np.array([m_cost[m] for m in pool])
        runs: list[tuple[float, str, int, np.ndarray]] = []
        for f in budgets:
            if f >= 1.0:
                runs.append((1.0, "full", 0, pool))
                continue
            for meth in methods:
                reps = range(n_random) if meth == "random" else range(1)
                for r in reps:
                    idx = (random_design(cc, f * cc.sum(), seed + 1000 * s + r) if meth == "random" else
                           greedy_design(zc, cc, f * cc.sum(), theta=theta, objective=meth,  # type: ignore[arg-type]
                                         balance_lambda=balance_lambda, n_bins=n_bins))
                    runs.append((float(f), meth, r, pool[idx]))
        train_lab = labels[tr[0]] if len(tr) == 1 else f"{labels[tr[0]]} .. {labels[tr[-1]]}"
        for f, meth, r, chosen in runs:
            selections[(s, f, meth, r)] = chosen
            chosen_set = set(chosen.tolist())
            share = float(sum(m_cost[m] for m in chosen) / cc.sum())
            for i in range(lanes.n):
                sel = np.array([m in chosen_set for m in lane_model[i]], dtype=bool)
                in_tr = np.isin(per[i], tr)
                keys.append({**lanes.keys.iloc[i].to_dict(), "split": s, "train_periods": train_lab,
                             "test_period": labels[te], "budget": f, "method": meth, "replicate": r,
                             "n_selected": len(chosen), "cost_share": share})
                take.append(i)
                w_fit.append(np.where(in_tr & sel, lanes.w[i], 0.0))
                w_pool.append(np.where(in_tr, lanes.w[i], 0.0))
                w_test.append(np.where(per[i] == te, lanes.w[i], 0.0))
    bl = lanes.with_weights(np.stack(w_fit), pd.DataFrame(keys), np.asarray(take))
    fit = fit_lanes(bl, **fit_options)
    ins = fit.coverage(np.stack(w_pool), n_bins=n_bins, min_bin=min_bin)
    oos = fit.coverage(np.stack(w_test), n_bins=n_bins, min_bin=min_bin)
    table = bl.keys.copy()
    table["is_error"] = ins["coverage_error"].to_numpy()
    table["oos_error"] = oos["coverage_error"].to_numpy()
    table["oos_coverage"] = oos["coverage"].to_numpy()
    g = [c for c in lanes.keys.columns if c != "tau"]
    summ = table.groupby([*g, "budget", "method"], sort=True).agg(
        n_selected=("n_selected", "mean"), cost_share=("cost_share", "mean"), is_error=("is_error", "mean"),
        oos_error=("oos_error", "mean"), oos_error_sd=("oos_error", "std"), runs=("oos_error", "size")).reset_index()
    full = summ[summ["method"] == "full"].set_index(g)["oos_error"]
    summ["oos_vs_full"] = summ["oos_error"] - full.reindex(pd.MultiIndex.from_frame(summ[g]) if len(g) > 1
                                                           else summ[g[0]]).to_numpy()
    return BudgetResult(table, summ, selections, fit)
