"""Train/test splits for backtesting: which points a method may see, and which it must predict.

A split is a callable ``split(frame, x=..., by=...) -> list[Fold]``: it reads the long table (one
row per observation) and returns one or more folds, each a pair of boolean row masks. Splits are
pure functions of the table, so the same split gives the same folds for every method.

- `LastPoints`: hold out the largest x of every task, by count, fraction or threshold (e.g. a
  FLOP cutoff).
- `HoldoutRuns`: hold out whole runs/models: the largest ones by a column (e.g. ``N``), or given ids.
- `RollingOrigin`: several folds, fit on x <= x_k and predict the rest (learning curves).
- `Given`: a split already in the table (e.g. the Revisiting benchmark's ``split`` column).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": ["a"] * 5, "x": [1.0, 2, 4, 8, 16], "y": [5.0, 4, 3, 2.5, 2.2]})
    >>> [f.test.tolist() for f in LastPoints(n=2)(df, x="x", by="task")]
    [[False, False, False, True, True]]
    >>> [f.name for f in RollingOrigin(fractions=(0.4, 0.6))(df, x="x", by="task")]
    ['origin=0.4', 'origin=0.6']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

__all__ = ["Fold", "Split", "LastPoints", "HoldoutRuns", "RollingOrigin", "Given", "as_list"]


@dataclasses.dataclass(frozen=True, eq=False)
class Fold:
    """One train/test partition of a table's rows.

    Attributes:
      name: label of the fold (``"holdout"``, ``"origin=0.5"``...).
      train: boolean mask over the table's rows: points the method may fit on.
      test: boolean mask over the rows: points it must predict (disjoint from `train`).
    """

    name: str
    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        if np.any(self.train & self.test):
            raise ValueError(f"fold {self.name!r}: a row is both in train and in test")


Split = Callable[..., list[Fold]]


def as_list(v: str | Sequence[str] | None) -> list[str]:
    """``"a"`` -> ``["a"]``; a sequence -> a list; None -> ``[]``."""
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def _order_column(frame: pd.DataFrame, x: str | Sequence[str], on: str | None) -> pd.Series:
    col = on if on is not None else as_list(x)[0]
    if col not in frame.columns:
        raise KeyError(f"split column {col!r} not in the table; columns are {list(frame.columns)}")
    return frame[col].astype(float)


def _groups(frame: pd.DataFrame, by: str | Sequence[str] | None) -> pd.core.groupby.GroupBy | None:
    keys = as_list(by)
    return frame.groupby(keys, sort=False, dropna=False) if keys else None


@dataclasses.dataclass(frozen=True)
class LastPoints:
    """Hold out the largest x of each task.

    Give exactly one of `n` (the last n points), `frac` (the last ceil(frac * points) points) or
    `threshold` (every point with x > threshold, e.g. a FLOP cutoff with ``on="C"``).

    Attributes:
      n: points held out per task.
      frac: fraction of each task's points held out (rounded up, at least one point, and at least
        one point is kept for training).
      threshold: hold out the points whose `on` value exceeds it.
      on: the column that orders points (default: the first x column).

    Example:
      >>> import pandas as pd
      >>> df = pd.DataFrame({"C": [1e18, 1e19, 1e20, 1e21], "y": [4.0, 3.5, 3.1, 2.9]})
      >>> LastPoints(threshold=5e19, on="C")(df, x="C", by=None)[0].test.tolist()
      [False, False, True, True]
    """

    n: int | None = None
    frac: float | None = None
    threshold: float | None = None
    on: str | None = None

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.n, self.frac, self.threshold)]
        if sum(given) != 1:
            raise ValueError("LastPoints needs exactly one of n=, frac= or threshold=")
        if self.n is not None and self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.frac is not None and not 0 < self.frac < 1:
            raise ValueError(f"frac must be in (0, 1), got {self.frac}")

    def __call__(self, frame: pd.DataFrame, *, x: str | Sequence[str], by: str | Sequence[str] | None = None) -> list[Fold]:
        v = _order_column(frame, x, self.on)
        if self.threshold is not None:
            test = (v > self.threshold).to_numpy()
        else:
            g = _groups(frame, by)
            # rank from the largest x down (1 = largest); ties keep table order
            rank = (v.groupby([frame[c] for c in as_list(by)], sort=False, dropna=False) if g is not None else v).rank(
                method="first", ascending=False)
            size = (v.groupby([frame[c] for c in as_list(by)], sort=False, dropna=False).transform("size")
                    if g is not None else pd.Series(len(v), index=v.index))
            if self.n is not None:
                k = np.minimum(self.n, size - 1)
            else:
                k = np.clip(np.ceil(self.frac * size - 1e-9), 1, size - 1)
            test = (rank <= k).to_numpy()
        name = "holdout"
        return [Fold(name, ~test, test)]


@dataclasses.dataclass(frozen=True)
class HoldoutRuns:
    """Hold out whole runs (models): every row of the chosen runs, in every task.

    Attributes:
      column: the column that identifies a run (``"run"``) or sizes it (``"N"``).
      largest: hold out the runs with the `largest` distinct values of `column`.
      ids: or hold out the rows whose `column` value is in `ids`.

    Example:
      >>> import pandas as pd
      >>> df = pd.DataFrame({"N": [1e8, 1e8, 4e8, 4e8, 1e9], "D": [2e9, 4e9, 8e9, 1.6e10, 2e10], "y": [3.0] * 5})
      >>> HoldoutRuns("N", largest=1)(df, x=["N", "D"])[0].test.tolist()
      [False, False, False, False, True]
    """

    column: str
    largest: int | None = None
    ids: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        if (self.largest is None) == (self.ids is None):
            raise ValueError("HoldoutRuns needs exactly one of largest= or ids=")

    def __call__(self, frame: pd.DataFrame, *, x: str | Sequence[str] | None = None,
                 by: str | Sequence[str] | None = None) -> list[Fold]:
        if self.column not in frame.columns:
            raise KeyError(f"run column {self.column!r} not in the table")
        col = frame[self.column]
        if self.ids is not None:
            test = col.isin(list(self.ids)).to_numpy()
        else:
            values = np.sort(col.dropna().unique())
            test = col.isin(values[-self.largest:]).to_numpy()
        return [Fold("holdout", ~test, test)]


@dataclasses.dataclass(frozen=True)
class RollingOrigin:
    """Several folds: fit on each task's points up to an origin, predict the points after it.

    Attributes:
      fractions: origins as fractions. With ``mode="count"`` the first ceil(f * points) points of
        each task are fitted; with ``mode="x"`` the points with x <= f * max x; with
        ``mode="logx"`` the points with log x <= log min x + f (log max x - log min x).
      mode: how a fraction maps to an origin (see above).
      horizon: with ``mode="x"``/``"logx"``, predict only up to this multiple of the origin's x
        (None: every later point).
      on: the column that orders points (default: the first x column).
      min_train: keep at least this many training points per task (the origin moves up).

    Example:
      >>> import pandas as pd
      >>> df = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [4.0, 3, 2.5, 2.2]})
      >>> [(int(f.train.sum()), int(f.test.sum())) for f in RollingOrigin(fractions=(0.5,), mode="x")(df, x="x")]
      [(2, 2)]
    """

    fractions: Sequence[float] = (0.5, 0.75)
    mode: Literal["count", "x", "logx"] = "count"
    horizon: float | None = None
    on: str | None = None
    min_train: int = 1

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0 < f < 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1), got {self.fractions}")
        if self.mode not in ("count", "x", "logx"):
            raise ValueError(f"mode must be 'count', 'x' or 'logx', got {self.mode!r}")

    def __call__(self, frame: pd.DataFrame, *, x: str | Sequence[str], by: str | Sequence[str] | None = None) -> list[Fold]:
        v = _order_column(frame, x, self.on)
        keys = [frame[c] for c in as_list(by)]
        grouped = v.groupby(keys, sort=False, dropna=False) if keys else None

        def per_task(fn: str) -> pd.Series:
            return grouped.transform(fn) if grouped is not None else pd.Series(getattr(v, fn)(), index=v.index)

        rank = grouped.rank(method="first") if grouped is not None else v.rank(method="first")
        size = per_task("size") if grouped is not None else pd.Series(len(v), index=v.index)
        folds = []
        for f in self.fractions:
            if self.mode == "count":
                k = np.maximum(np.ceil(f * size - 1e-9), self.min_train)
                train = rank <= k
                origin = v.where(train).groupby(keys, sort=False, dropna=False).transform("max") if keys else v[train].max()
            else:
                if self.mode == "x":
                    origin = f * per_task("max")
                else:
                    lv = np.log(v)
                    lo = lv.groupby(keys, sort=False, dropna=False).transform("min") if keys else lv.min()
                    hi = lv.groupby(keys, sort=False, dropna=False).transform("max") if keys else lv.max()
                    origin = np.exp(lo + f * (hi - lo))
                train = (v <= origin) | (rank <= self.min_train)
            test = ~train
            if self.horizon is not None:
                test &= v <= self.horizon * origin
            folds.append(Fold(f"origin={f:g}", train.to_numpy(), test.to_numpy()))
        return folds


@dataclasses.dataclass(frozen=True)
class Given:
    """A split stored in the table: rows whose `column` equals `train` are fitted, `test` predicted.

    Example:
      >>> import pandas as pd
      >>> df = pd.DataFrame({"x": [1.0, 2, 3], "split": ["train", "train", "extrapolate"]})
      >>> Given("split", train="train", test="extrapolate")(df, x="x")[0].test.tolist()
      [False, False, True]
    """

    column: str
    train: Any = True
    test: Any = None

    def __call__(self, frame: pd.DataFrame, *, x: str | Sequence[str] | None = None,
                 by: str | Sequence[str] | None = None) -> list[Fold]:
        if self.column not in frame.columns:
            raise KeyError(f"split column {self.column!r} not in the table")
        col = frame[self.column]
        train = (col == self.train).to_numpy()
        test = ~train if self.test is None else (col == self.test).to_numpy()
        return [Fold("holdout", train, test)]
