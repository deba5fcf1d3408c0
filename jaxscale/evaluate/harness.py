"""The backtest harness: fit every method on the training part of each fold, predict the held-out
points, score them on the same points, and rank the methods.

A *method* is any callable ``method(train: Dataset) -> forecaster`` with a ``name``; a
*forecaster* is a callable ``forecaster(query: DataFrame) -> forecast table`` that returns the
shared forecast table (task keys, x columns, ``prediction`` and optional quantile columns
``q0.05``...) with one row per query row, in order. A method may also return a mapping
``{name: forecaster}`` (several forecasts from one training pass, e.g. `SelectLaw`). A forecaster
may carry ``info``: a per-task table (task keys plus columns such as ``status`` or ``choice``)
that is merged into the scores.

`LawMethod` wraps `jaxscale.fit`: every task of a fold is fitted in one batched call.

Example:
    >>> import numpy as np, pandas as pd
    >>> from jaxscale.evaluate import LawMethod, LastPoints, backtest, leaderboard
    >>> x = np.geomspace(1e3, 1e6, 12)
    >>> df = pd.DataFrame({"task": np.repeat(["a", "b"], 12), "x": np.tile(x, 2),
    ...                    "y": np.concatenate([0.5 + 30 * x ** -0.4, 0.2 + 9 * x ** -0.3])})
    >>> methods = [LawMethod("power_law"), LawMethod("saturating_power_law", name="m2")]
    >>> scores = backtest(df, methods, LastPoints(n=3), x="x", y="y", by="task")
    >>> float(leaderboard(scores).set_index("method").loc["m2", "win_rate"])
    1.0
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

import jaxscale
from jaxscale.data import Dataset, bucket, bucket_tasks
from jaxscale.evaluate.metrics import score, win_rates
from jaxscale.evaluate.splits import Split, as_list
from jaxscale.forecast import PREDICTION
from jaxscale.laws import Law
from jaxscale.laws import get as get_law
from jaxscale.result import FitResult

__all__ = [
    "Forecaster", "Method", "Forecast", "LawMethod", "ByGroup", "forecast_folds", "score_folds", "backtest",
    "leaderboard", "pad_points", "subset_tasks",
]

METHOD, FOLD, ROLE = "method", "fold", "role"


class Forecaster(Protocol):
    """``forecaster(query) -> forecast table``, one row per query row, in order."""

    def __call__(self, query: pd.DataFrame) -> pd.DataFrame: ...


class Method(Protocol):
    """``method(train) -> Forecaster`` (or ``{name: Forecaster}``), with a ``name``."""

    name: str

    def __call__(self, train: Dataset) -> Forecaster | Mapping[str, Forecaster]: ...


@dataclasses.dataclass(frozen=True, eq=False)
class Forecast:
    """A forecaster with per-task diagnostics.

    Attributes:
      predict: ``predict(query) -> forecast table``.
      info: per-task table (task keys plus diagnostics) merged into the backtest scores, or None.
      fit: the underlying `FitResult` when there is one (for plots and parameters).
    """

    predict: Callable[[pd.DataFrame], pd.DataFrame]
    info: pd.DataFrame | None = None
    fit: FitResult | None = None

    def __call__(self, query: pd.DataFrame) -> pd.DataFrame:
        return self.predict(query)


@dataclasses.dataclass(frozen=True, eq=False)
class LawMethod:
    """Least-squares fit of one law to every task at once (`jaxscale.fit` with ``by`` = the tasks).

    Attributes:
      law: a `Law` or its name (``"m4"``, ``"bnsl1"``...).
      loss: the fitting loss (``"mse_log"`` by default; see `jaxscale.losses`).
      name: label in the scores (default: the law's name).
      loss_options, fit_options: passed to `jaxscale.fit` (``polish``, ``max_iter``, ``penalty``...).
      weight: optional ``weight(train) -> [T, P]`` point weights (e.g. to down-weight early points).

    Example:
      >>> import pandas as pd
      >>> from jaxscale import laws
      >>> m = LawMethod(laws.m4.fix(eps_0=1.0), name="M4")
      >>> m.name
      'M4'
    """

    law: Law | str
    loss: str = "mse_log"
    name: str | None = None
    loss_options: Mapping[str, float] | None = None
    fit_options: Mapping[str, Any] | None = None
    weight: Callable[[Dataset], np.ndarray] | None = None

    def __post_init__(self) -> None:
        law = get_law(self.law) if isinstance(self.law, str) else self.law
        object.__setattr__(self, "law", law)
        if self.name is None:
            object.__setattr__(self, "name", law.name)

    def fit(self, train: Dataset) -> FitResult:
        """The batched fit of every task of `train` (tasks that cannot be fitted are reported)."""
        if self.weight is not None:
            w = np.asarray(self.weight(train), float)
            train = dataclasses.replace(train, weight=np.where(train.mask, train.weight * w, 0.0))
        opts = dict(self.fit_options or {})
        opts.setdefault("on_invalid", "report")
        return jaxscale.fit(train, self.law, loss=self.loss, loss_options=self.loss_options, **opts)

    def __call__(self, train: Dataset) -> Forecast:
        res = self.fit(train)
        frame = res.to_frame()
        info = frame[list(train.by) + ["status", "objective"]]
        return Forecast(res.forecast, info, res)


@dataclasses.dataclass(frozen=True, eq=False)
class ByGroup:
    """Different methods for different groups of tasks (e.g. M4 with eps_0 = 1.001 on BIG-bench).

    Tasks whose `column` value is in `methods` use that method; the others use `default`.
    Each group is fitted in one batched call.

    Example:
      >>> from jaxscale import laws
      >>> m4 = ByGroup("domain", {"BB": LawMethod(laws.m4.fix(eps_0=1.001))},
      ...              default=LawMethod(laws.m4.fix(eps_0=1.0)), name="M4 fixed eps_0")
      >>> m4.name
      'M4 fixed eps_0'
    """

    column: str
    methods: Mapping[Any, Method]
    default: Method | None = None
    name: str = "by_group"

    def __call__(self, train: Dataset) -> Forecast:
        if self.column not in train.keys.columns:
            raise KeyError(f"ByGroup column {self.column!r} must be one of the task keys {list(train.by)}")
        values = train.keys[self.column].to_numpy()
        parts: list[tuple[np.ndarray, Forecaster]] = []
        known = np.isin(values, list(self.methods))
        for v, m in self.methods.items():
            idx = np.nonzero(values == v)[0]
            if len(idx):
                parts.append((idx, m(subset_tasks(train, idx))))
        rest = np.nonzero(~known)[0]
        if len(rest):
            if self.default is None:
                raise ValueError(f"ByGroup: no method for {self.column} = {sorted(set(values[rest]))[:5]}")
            parts.append((rest, self.default(subset_tasks(train, rest))))
        keys = list(train.by)

        def predict(query: pd.DataFrame) -> pd.DataFrame:
            tid = train.task_index(query)
            out = None
            for idx, fc in parts:
                rows = np.isin(tid, idx)
                if not rows.any():
                    continue
                part = fc(query[rows].reset_index(drop=True))
                if out is None:
                    out = pd.DataFrame(index=range(len(query)), columns=part.columns)
                    out = out.astype(part.dtypes.to_dict())
                out.loc[np.nonzero(rows)[0], part.columns] = part.to_numpy(dtype=object)
            if out is None:
                out = query.reset_index(drop=True).assign(**{PREDICTION: np.nan})
            out[PREDICTION] = out[PREDICTION].astype(float)
            return out

        infos = [getattr(fc, "info", None) for _, fc in parts]
        infos = [i for i in infos if i is not None]
        info = pd.concat(infos, ignore_index=True) if infos else None
        if info is not None:
            info = info[keys + [c for c in info.columns if c not in keys]]
        return Forecast(predict, info)


# --------------------------------------------------------------------------- Dataset helpers
def pad_points(ds: Dataset, n_points: int) -> Dataset:
    """The same Dataset with its point axis padded to `n_points` (shapes shared across folds reuse
    compiled fits)."""
    t, p, k = ds.x.shape
    if n_points <= p:
        return ds
    x = np.ones((t, n_points, k))
    y = np.ones((t, n_points))
    mask = np.zeros((t, n_points), bool)
    w = np.zeros((t, n_points))
    x[:, :p], y[:, :p], mask[:, :p], w[:, :p] = ds.x, ds.y, ds.mask, ds.weight
    return dataclasses.replace(ds, x=x, y=y, mask=mask, weight=w)


def subset_tasks(ds: Dataset, idx: Sequence[int]) -> Dataset:
    """The tasks `idx` of a Dataset (task axis re-padded to its bucket)."""
    idx = np.asarray(idx, int)
    n = len(idx)
    tp = bucket_tasks(n)
    take = np.concatenate([idx, np.full(tp - n, idx[0] if n else 0)])
    pad = np.arange(tp) >= n
    mask = ds.mask[take] & ~pad[:, None]
    return dataclasses.replace(
        ds, x=ds.x[take], y=ds.y[take], mask=mask, weight=np.where(mask, ds.weight[take], 0.0),
        keys=ds.keys.iloc[idx].reset_index(drop=True), invalid=tuple(ds.invalid[i] for i in idx), n_tasks=n)


def _train_dataset(rows: pd.DataFrame, x: list[str], y: str, by: list[str], duplicates: str,
                   n_points: int | None) -> Dataset:
    ds = Dataset.from_frame(rows, x=x, y=y, by=by, duplicates=duplicates, on_invalid="report")
    return pad_points(ds, n_points) if n_points else ds


# --------------------------------------------------------------------------- backtest
def _prepare(data: pd.DataFrame | Dataset, x, y, by) -> tuple[pd.DataFrame, list[str], str, list[str]]:
    if isinstance(data, Dataset):
        frame = data.to_frame()
        return frame, list(data.x_names), data.y_name, list(data.by)
    if x is None or y is None:
        raise ValueError("backtesting a DataFrame needs x=... and y=...")
    xs, keys = as_list(x), as_list(by)
    frame = data
    if not keys:
        frame = data.assign(task="all")
        keys = ["task"]
    return frame.reset_index(drop=True), xs, y, keys


def forecast_folds(
    data: pd.DataFrame | Dataset,
    methods: Sequence[Method],
    split: Split,
    *,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    by: str | Sequence[str] | None = None,
    duplicates: str = "error",
    n_points: int | None = None,
    grid: int = 0,
) -> pd.DataFrame:
    """Every method's forecasts of every fold's held-out points, joined with the truth.

    Args:
      data: the long table (or a `Dataset`).
      methods: `Method` objects (each with a ``name``).
      split: a split from `jaxscale.evaluate.splits`.
      x, y, by: the covariate, target and task columns (as for `jaxscale.fit`).
      duplicates: passed to `Dataset.from_frame` for each training part.
      n_points: pad every training Dataset's point axis to at least this (shared shapes reuse
        compiled code); by default the bucket of the largest training part over all folds.
      grid: when > 0 and x is one column, also forecast `grid` log-spaced x values per task from the
        smallest training x to the largest held-out x (rows with ``role == "grid"``; for plots).

    Returns:
      One row per (fold, method, held-out point): ``fold``, ``method``, ``role`` (``"test"``, or
      ``"grid"``), the task keys, x, the target column (NaN on grid rows), ``prediction`` and any
      quantile columns, plus the per-task info columns of the forecasters (``status``...) and
      ``n_train`` (the task's training points in that fold).
    """
    frame, xs, y, keys = _prepare(data, x, y, by)
    folds = split(frame, x=xs, by=keys)
    counts = [frame[f.train].groupby(keys, sort=False, dropna=False).size().max() for f in folds]
    n_points = max(n_points or 0, bucket(int(max((c for c in counts if c == c), default=1))))
    out = []
    for fold in folds:
        train_rows = frame[fold.train]
        if len(train_rows) == 0:
            continue
        train = _train_dataset(train_rows, xs, y, keys, duplicates, n_points)
        n_train = train.keys.assign(n_train=train.n_points)
        query = frame.loc[fold.test, keys + xs + [y]].reset_index(drop=True)
        query[ROLE] = "test"
        if grid and len(xs) == 1:
            query = pd.concat([query, _grid_rows(train, query, xs[0], y, grid)], ignore_index=True)
        if len(query) == 0:
            continue
        for method in methods:
            produced = method(train)
            forecasters = produced if isinstance(produced, Mapping) else {method.name: produced}
            for name, fc in forecasters.items():
                table = fc(query[keys + xs])
                if len(table) != len(query):
                    raise ValueError(f"method {name!r} returned {len(table)} rows for {len(query)} query rows")
                table = table.reset_index(drop=True)
                for c in keys + xs:
                    table[c] = query[c].to_numpy()
                table[y] = query[y].to_numpy()
                table.insert(0, ROLE, query[ROLE].to_numpy())
                table.insert(0, METHOD, name)
                table.insert(0, FOLD, fold.name)
                info = getattr(fc, "info", None)
                extra = n_train if info is None else n_train.merge(info, on=keys, how="left")
                table = table.merge(extra, on=keys, how="left")
                out.append(table)
    if not out:
        raise ValueError("the split left no training or no held-out points")
    result = pd.concat(out, ignore_index=True)
    info_cols = ["n_train"]
    for t in out:
        info_cols += [c for c in t.columns if c not in info_cols and c not in _row_columns(t, keys, xs, y)]
    result.attrs.update({"x": xs, "y": y, "by": keys, "info_columns": info_cols})
    return result


def _row_columns(table: pd.DataFrame, keys: list[str], xs: list[str], y: str) -> set[str]:
    qs = {c for c in table.columns if isinstance(c, str) and c.startswith("q") and c[1:2].isdigit()}
    return {FOLD, METHOD, ROLE, PREDICTION, y, *keys, *xs} | qs


def _grid_rows(train: Dataset, query: pd.DataFrame, xname: str, y: str, n: int) -> pd.DataFrame:
    tf = train.to_frame()
    lo = tf.groupby(list(train.by), sort=False)[xname].min()
    hi = pd.concat([tf, query]).groupby(list(train.by), sort=False)[xname].max()
    rows = []
    for key, a in lo.items():
        b = hi.loc[key]
        key = key if isinstance(key, tuple) else (key,)
        xs = np.geomspace(a, b, n) if a > 0 else np.linspace(a, b, n)
        rows.append(pd.DataFrame({**dict(zip(train.by, key)), xname: xs}))
    g = pd.concat(rows, ignore_index=True)
    g[y] = np.nan
    g[ROLE] = "grid"
    return g


def score_folds(forecasts: pd.DataFrame, *, y: str, by: str | Sequence[str],
                metrics: Mapping[str, Callable] | None = None) -> pd.DataFrame:
    """Score `forecast_folds` output: one row per (fold, method, task) with the metrics of
    `jaxscale.evaluate.metrics.score`, ``n_train`` and the forecasters' per-task info columns."""
    keys = as_list(by)
    test = forecasts[forecasts[ROLE] == "test"] if ROLE in forecasts else forecasts
    groups = [FOLD, METHOD] + keys
    scores = score(test, y=y, by=groups, metrics=metrics)
    info = [c for c in forecasts.attrs.get("info_columns", ["n_train"]) if c in test.columns]
    if info:
        extra = test.groupby(groups, sort=False, dropna=False)[info].first().reset_index()
        scores = scores.merge(extra, on=groups, how="left")
    out = scores
    out.attrs["by"] = keys
    return out


def backtest(
    data: pd.DataFrame | Dataset,
    methods: Sequence[Method],
    split: Split,
    *,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    by: str | Sequence[str] | None = None,
    metrics: Mapping[str, Callable] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Fit every method on every fold's training part and score it on the held-out points.

    Returns the tidy scores table: one row per (fold, method, task) with ``n_train``, ``n_test``,
    ``failed``, ``rmsle``, ``mae``, ``rel_error``, ``bias`` (and for quantile forecasts coverage,
    width, ``pinball`` and ``crps``), plus per-task diagnostics such as ``status``. Use
    `forecast_folds` then `score_folds` to keep the forecasts too (for plots).

    Example:
      >>> import numpy as np, pandas as pd
      >>> from jaxscale.evaluate import LastPoints
      >>> x = np.geomspace(10, 1e4, 10)
      >>> df = pd.DataFrame({"x": x, "y": 2 * x ** -0.5})
      >>> s = backtest(df, [LawMethod("power_law")], LastPoints(n=2), x="x", y="y")
      >>> float(s.rmsle.iloc[0]) < 1e-6
      True
    """
    frame, xs, yname, keys = _prepare(data, x, y, by)
    fc = forecast_folds(frame, methods, split, x=xs, y=yname, by=keys, **options)
    return score_folds(fc, y=yname, by=keys, metrics=metrics)


def leaderboard(
    scores: pd.DataFrame,
    *,
    metric: str = "rmsle",
    group: str | Sequence[str] | None = None,
    task: str | Sequence[str] | None = None,
    decimals: int | None = 3,
    blowup: float | None = 0.2,
    overall: bool = True,
) -> pd.DataFrame:
    """Rank methods per group by their mean error, with win rates (errors truncated to `decimals`,
    ties split, as in the M-competitions).

    Args:
      scores: `backtest` output.
      metric: the score column to rank by.
      group: column(s) to rank within (e.g. ``"domain"``); None ranks over all tasks.
      task: the columns identifying a task (default: the backtest's task keys); each (fold, task)
        is one contest for the win rates.
      decimals: truncation of errors before counting wins (None: exact).
      blowup: count tasks whose error exceeds this (or is NaN) as ``n_blowup``.
      overall: with `group`, also add rows for all tasks together (group value ``"all"``).

    Returns:
      One row per (group, method): ``n_tasks``, ``mean``, ``median``, ``max``, ``n_failed``,
      ``n_blowup``, ``wins``, ``win_rate`` (0-1) and ``rank`` (1 = lowest mean).
    """
    keys = as_list(task) or list(scores.attrs.get("by", [])) or ["task"]
    contest = ([FOLD] if FOLD in scores else []) + keys
    groups = as_list(group)
    parts = []
    if groups:
        for gval, g in scores.groupby(groups, sort=True, dropna=False):
            parts.append((gval if isinstance(gval, tuple) else (gval,), g))
        if overall:
            parts.append((("all",) * len(groups), scores))
    else:
        parts.append(((), scores))
    rows = []
    for gval, g in parts:
        wins = win_rates(g, metric=metric, task=contest, decimals=decimals).set_index(METHOD)
        err = g[metric].astype(float)
        agg = g.assign(_e=err).groupby(METHOD, sort=False)["_e"].agg(
            n_tasks="size", mean="mean", median="median", max="max")
        agg["n_failed"] = (~np.isfinite(err)).groupby(g[METHOD], sort=False).sum()
        if blowup is not None:
            agg["n_blowup"] = (~(err <= blowup)).groupby(g[METHOD], sort=False).sum()
        agg["wins"] = wins["wins"]
        agg["win_rate"] = wins["win_rate"]
        # a method that failed on some task has an infinite mean for ranking purposes
        key = agg["mean"].where(agg["n_failed"] == 0, np.inf)
        agg["rank"] = key.rank(method="min").astype(int)
        agg = agg.reset_index()
        for c, v in zip(groups, gval):
            agg.insert(0, c, v)
        rows.append(agg.sort_values("rank", kind="stable"))
    return pd.concat(rows, ignore_index=True)
