"""Law selection without peeking: pick a law per task by rolling-origin validation inside the
training part only, and optionally an ensemble weighted by validation error.

`SelectLaw` is itself a method: given a training Dataset it backtests its candidates on the
training points alone (fit on the early points, predict the later ones), picks per task the
candidate with the lowest mean validation error, refits every candidate on the whole training
part (one batched fit per candidate) and forecasts with the chosen one. The held-out points of the
outer backtest are never seen. `selection_report` says how often the choice was the best
candidate on the held-out points.

Example:
    >>> from jaxscale import laws
    >>> from jaxscale.evaluate import LawMethod, RollingOrigin
    >>> breaks = SelectLaw([LawMethod(laws.bnsl(n)) for n in (0, 1, 2)],
    ...                    validation=RollingOrigin(fractions=(0.5, 0.75)), name="bnsl_selected")
    >>> breaks.name
    'bnsl_selected'
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale.data import Dataset
from jaxscale.evaluate.harness import METHOD, Forecast, Method, forecast_folds, score_folds
from jaxscale.evaluate.metrics import truncate
from jaxscale.evaluate.splits import RollingOrigin, Split, as_list
from jaxscale.forecast import PREDICTION, quantile_levels

__all__ = ["SelectLaw", "validation_errors", "selection_report"]


def validation_errors(train: Dataset, candidates: Sequence[Method], validation: Split,
                      metric: str = "rmsle") -> pd.DataFrame:
    """``[tasks, candidates]`` mean validation error of each candidate on `train`'s points alone.

    Rows follow ``train.keys``; a candidate that failed on a fold of a task scores +inf there; a
    task with no validation fold is NaN for every candidate.
    """
    keys = list(train.by)
    frame = train.to_frame()
    names = [m.name for m in candidates]
    try:
        fc = forecast_folds(frame, candidates, validation, x=list(train.x_names), y=train.y_name, by=keys,
                            n_points=train.mask.shape[1])
    except ValueError:  # no validation fold at all (too few points everywhere)
        return pd.DataFrame(np.nan, index=pd.MultiIndex.from_frame(train.keys), columns=names)
    val = score_folds(fc, y=train.y_name, by=keys)
    err = val[metric].astype(float).where(np.isfinite(val[metric].astype(float)), np.inf)
    mean = val.assign(_e=err).groupby(keys + [METHOD], sort=False)["_e"].mean().unstack(METHOD)
    mean = mean.reindex(columns=names)
    return mean.reindex(pd.MultiIndex.from_frame(train.keys) if len(keys) > 1 else train.keys[keys[0]])


@dataclasses.dataclass(frozen=True, eq=False)
class SelectLaw:
    """Choose a law (or a number of BNSL breaks) per task by validation inside the training part.

    Attributes:
      candidates: methods returning one forecaster each (usually `LawMethod` s).
      validation: the split applied to the training points only (default: rolling origin, fit on
        the first 50 % / 75 % of each task's training points, predict the rest).
      metric: validation metric (a `score` column), averaged over the validation folds.
      name: name of the selected forecaster.
      ensemble: if given, also return a forecaster of this name that averages the candidates'
        predictions (geometric mean for positive predictions) with weights proportional to
        1 / validation error^2 over the `top_k` best candidates of each task.
      top_k: candidates kept in the ensemble.
      keep_candidates: also return each candidate's own forecaster (fitted on the full training
        part), so a single backtest run scores the candidates, the selection and the ensemble.
      subsets: further selections from the same validation run, ``{name: [candidate names]}``
        (e.g. the number of BNSL breaks among the BNSL candidates only).

    A task without any validation fold (too few points) uses the first candidate (of its subset).
    """

    candidates: Sequence[Method]
    validation: Split = RollingOrigin(fractions=(0.5, 0.75), mode="count")
    metric: str = "rmsle"
    name: str = "selected"
    ensemble: str | None = None
    top_k: int | None = 3
    keep_candidates: bool = False
    subsets: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique, got {names}")
        if not names:
            raise ValueError("SelectLaw needs at least one candidate")
        for sub, members in (self.subsets or {}).items():
            unknown = set(members) - set(names)
            if unknown or not members:
                raise ValueError(f"subset {sub!r}: unknown or no candidates {sorted(unknown)}")

    def __call__(self, train: Dataset) -> dict[str, Forecast]:
        names = [m.name for m in self.candidates]
        err = validation_errors(train, self.candidates, self.validation, self.metric).to_numpy(float)
        full = [m(train) for m in self.candidates]
        task_keys = train.keys.reset_index(drop=True)

        def predict_all(query: pd.DataFrame, which: Sequence[int]) -> tuple[np.ndarray, list[pd.DataFrame]]:
            return train.task_index(query), [full[j](query) for j in which]

        result: dict[str, Forecast] = {}
        selections = {self.name: names, **dict(self.subsets or {})}
        for sel_name, members in selections.items():
            cols = [names.index(m) for m in members]
            result[sel_name] = _selected_forecast(err[:, cols], cols, names, task_keys, predict_all)
        if self.ensemble is not None:
            filled = np.where(np.isnan(err), np.inf, err)
            no_val = np.isnan(err).all(axis=1)
            weights = _weights(filled, self.top_k)
            weights[no_val] = 0.0
            weights[no_val, 0] = 1.0
            every = list(range(len(names)))

            def ensemble(query: pd.DataFrame) -> pd.DataFrame:
                tid, tables = predict_all(query, every)
                w = np.where(tid[:, None] >= 0, weights[np.maximum(tid, 0)], np.nan)  # [R, C]
                preds = np.stack([t[PREDICTION].to_numpy(float) for t in tables], axis=1)
                out = query.reset_index(drop=True).copy()
                out[PREDICTION] = _combine(preds, w)
                levels = set.intersection(*[set(quantile_levels(t)) for t in tables])
                for q in sorted(levels):
                    col = f"q{q:g}"
                    out[col] = _combine(np.stack([t[col].to_numpy(float) for t in tables], axis=1), w)
                return out

            w_text = [", ".join(f"{n}:{w:.2f}" for n, w in zip(names, row) if w > 0) for row in weights]
            result[self.ensemble] = Forecast(ensemble, task_keys.assign(weights=w_text))
        if self.keep_candidates:
            for n, f in zip(names, full):
                result[n] = f
        return result


def _selected_forecast(err: np.ndarray, cols: list[int], names: list[str], task_keys: pd.DataFrame,
                       predict_all) -> Forecast:
    """The forecaster that uses, per task, the candidate (among `cols`) of lowest validation error."""
    filled = np.where(np.isnan(err), np.inf, err)
    no_val = np.isnan(err).all(axis=1)
    local = np.where(no_val, 0, np.argmin(filled, axis=1))
    choice = np.asarray(cols)[local]

    def selected(query: pd.DataFrame) -> pd.DataFrame:
        tid, tables = predict_all(query, cols)
        pick = np.where(tid >= 0, local[np.maximum(tid, 0)], -1)
        out = query.reset_index(drop=True).copy()
        extra = [c for t in tables for c in t.columns if c not in out.columns]
        for c in dict.fromkeys([PREDICTION] + extra):
            vals = np.full(len(query), np.nan)
            for j, t in enumerate(tables):
                if c in t.columns:
                    rows = pick == j
                    vals[rows] = t[c].to_numpy(float)[rows]
            out[c] = vals
        return out

    best = filled[np.arange(len(local)), local]
    info = task_keys.assign(choice=[names[c] for c in choice], val_error=np.where(no_val, np.nan, best))
    return Forecast(selected, info)


def _weights(err: np.ndarray, top_k: int | None) -> np.ndarray:
    """Per task: weights proportional to 1 / err^2 over the top_k finite candidates."""
    t, c = err.shape
    k = c if top_k is None else min(top_k, c)
    order = np.argsort(err, axis=1, kind="stable")
    keep = np.zeros_like(err, dtype=bool)
    np.put_along_axis(keep, order[:, :k], True, axis=1)
    keep &= np.isfinite(err)
    inv = np.where(keep, 1.0 / np.maximum(err, 1e-12) ** 2, 0.0)
    total = inv.sum(axis=1, keepdims=True)
    return np.where(total > 0, inv / np.where(total > 0, total, 1.0), np.eye(1, c).repeat(t, 0))


def _combine(preds: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted geometric mean per row when all used predictions are positive, else arithmetic."""
    ok = np.isfinite(preds) & (w > 0)
    w = np.where(ok, w, 0.0)
    total = w.sum(axis=1)
    w = w / np.where(total > 0, total, 1.0)[:, None]
    p = np.where(ok, preds, 1.0)
    positive = np.all(np.where(ok, preds > 0, True), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.exp(np.sum(w * np.log(np.where(p > 0, p, 1.0)), axis=1))
    arith = np.sum(w * np.where(ok, preds, 0.0), axis=1)
    return np.where(total > 0, np.where(positive, geo, arith), np.nan)


def selection_report(scores: pd.DataFrame, *, selected: str = "selected", candidates: Sequence[str] | None = None,
                     metric: str = "rmsle", group: str | Sequence[str] | None = None,
                     task: str | Sequence[str] | None = None, decimals: int | None = 3) -> pd.DataFrame:
    """How often the selection picked the best candidate on the held-out points.

    Needs a backtest with the selected method (its ``choice`` column) and the candidates scored
    on the same tasks (``SelectLaw(..., keep_candidates=True)`` does both in one run).

    Returns one row per group (and ``"all"``): ``n_tasks``; ``right`` (share of tasks whose chosen
    candidate has the lowest held-out error among the candidates after truncation to `decimals`,
    ties counted as right); ``selected`` (mean held-out error of the selection), ``oracle`` (mean
    of the per-task best candidate) and ``best_single`` (the best candidate mean) with its name.
    """
    keys = as_list(task) or list(scores.attrs.get("by", [])) or ["task"]
    contest = (["fold"] if "fold" in scores else []) + keys
    sel = scores[scores[METHOD] == selected]
    if sel.empty or "choice" not in sel:
        raise ValueError(f"no scores with choices for method {selected!r}")
    names = list(candidates) if candidates is not None else sorted(set(sel["choice"].dropna()))
    cand = scores[scores[METHOD].isin(names)]
    wide = cand.pivot_table(index=contest, columns=METHOD, values=metric, aggfunc="first", dropna=False)
    wide = wide.reindex(columns=names)
    tr = pd.DataFrame(truncate(wide.to_numpy(), decimals) if decimals is not None else
                      np.where(np.isfinite(wide.to_numpy()), wide.to_numpy(), np.inf), index=wide.index, columns=names)
    s = sel.set_index(contest)
    tr = tr.reindex(s.index)
    wide = wide.reindex(s.index)
    chosen_tr = np.array([tr.loc[i, c] if c in tr.columns else np.inf for i, c in zip(tr.index, s["choice"])]) \
        if len(s) else np.array([])
    right = chosen_tr <= tr.min(axis=1).to_numpy()
    df = s.reset_index().assign(_right=right, _oracle=wide.min(axis=1).to_numpy(), _sel=s[metric].to_numpy())
    for n in names:
        df["_c_" + n] = wide[n].to_numpy()
    groups = as_list(group)
    parts = [(g if isinstance(g, tuple) else (g,), d) for g, d in df.groupby(groups, sort=True)] if groups else []
    parts.append((("all",) * len(groups), df))
    rows = []
    for gval, d in parts:
        means = {n: d["_c_" + n].mean() for n in names}
        best = min(means, key=lambda n: np.inf if np.isnan(means[n]) else means[n])
        rows.append({**dict(zip(groups, gval)), "n_tasks": len(d), "right": float(d["_right"].mean()),
                     "selected": float(d["_sel"].mean()), "oracle": float(d["_oracle"].mean()),
                     "best_single": float(means[best]), "best_single_name": best})
    return pd.DataFrame(rows)
