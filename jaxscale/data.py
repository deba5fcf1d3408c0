"""The data model: a pandas long table -> a padded, masked `Dataset` of tasks.

One row per observation; one or more task columns (`by`), covariate columns (`x`), one target
column (`y`) and optional weights. `Dataset.from_frame` validates the table and builds arrays
``x[T, P, k]``, ``y[T, P]``, ``mask[T, P]`` whose shapes are bucketed (powers of two) so that
new data sizes do not trigger new compilations.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np
import pandas as pd

TASK = "task"


class DataError(ValueError):
    """Invalid input data; the message names the column, task and row at fault."""


def bucket(n: int, minimum: int = 8) -> int:
    """Smallest bucket >= max(n, minimum): a power of two or, from 12 on, 1.5 times one.

    Two buckets per octave (8, 12, 16, 24, 32, 48, ...) waste at most a third of the padded work
    (20 points pad to 24, not 32) while still bounding the number of compiled shapes.
    """
    n = max(int(n), minimum)
    p = 1 << (n - 1).bit_length()
    return 3 * p // 4 if p >= 16 and n <= 3 * p // 4 else p


def bucket_tasks(t: int) -> int:
    """Padded task count: a power of two up to 1,024, then a multiple of 1,024."""
    return bucket(t, 1) if t <= 1024 else -(-t // 1024) * 1024


def _as_list(v: str | Sequence[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Padded arrays of many tasks (curves).

    Attributes:
      x: ``[T, P, k]`` covariates (padding holds 1.0).
      y: ``[T, P]`` targets (padding holds 1.0).
      mask: ``[T, P]`` True for real points.
      weight: ``[T, P]`` point weights (0 on padding).
      keys: one row per real task with the `by` columns (``task`` when there is no `by`).
      x_names, y_name, by: the column names used.
      invalid: per real task, '' or the reason the task cannot be fitted.
      n_tasks: number of real tasks (``T`` counts padding too).

    Example:
      >>> import pandas as pd
      >>> df = pd.DataFrame({"run": ["a"] * 4, "N": [1e6, 1e7, 1e8, 1e9], "loss": [4.0, 3.4, 3.0, 2.8]})
      >>> ds = Dataset.from_frame(df, x="N", y="loss", by="run")
      >>> ds.x.shape, ds.n_tasks
      ((1, 8, 1), 1)
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    keys: pd.DataFrame
    x_names: tuple[str, ...]
    y_name: str
    by: tuple[str, ...]
    invalid: tuple[str, ...]
    n_tasks: int

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        x: str | Sequence[str],
        y: str,
        by: str | Sequence[str] | None = None,
        weight: str | None = None,
        *,
        duplicates: Literal["error", "mean"] = "error",
        on_invalid: Literal["raise", "report"] = "raise",
        bucket_shapes: bool = True,
    ) -> "Dataset":
        """Validate a long table and pad it into arrays.

        Args:
          df: one row per observation.
          x: covariate column(s), in the order the law takes them.
          y: target column.
          by: task column(s); None means the whole table is one task.
          weight: optional non-negative weight column.
          duplicates: ``"error"`` rejects repeated (task, x) rows; ``"mean"`` averages them.
          on_invalid: ``"raise"`` raises `DataError` naming the first problems; ``"report"`` keeps
            going and marks the bad tasks invalid (they are reported, not fitted).
          bucket_shapes: pad P and T to buckets (keeps compiled functions reusable).
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        x_names, by_names = _as_list(x), _as_list(by)
        if not x_names:
            raise DataError("at least one x column is required")
        needed = x_names + [y] + by_names + ([weight] if weight else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataError(f"column(s) {missing} not in the data; columns are {list(df.columns)}")
        if len(set(needed)) != len(needed):
            raise DataError(f"a column is used twice in x/y/by/weight: {needed}")
        if len(df) == 0:
            raise DataError("the data has no rows")

        frame = df[needed].copy()
        if not by_names:
            frame[TASK] = "all"
            by_names = [TASK]
        for col in x_names + [y] + ([weight] if weight else []):
            frame[col] = _numeric_column(frame[col], col)

        problems: dict[int, str] = {}  # task id -> reason
        gid = frame.groupby(by_names, sort=True, dropna=False).ngroup().to_numpy()
        keys = frame.groupby(by_names, sort=True, dropna=False).size().reset_index()[by_names]
        value_cols = x_names + [y] + ([weight] if weight else [])
        vals = frame[value_cols].to_numpy(dtype=float)
        bad = ~np.isfinite(vals)
        if weight:
            bad[:, -1] |= vals[:, -1] < 0
        for row, col in zip(*np.nonzero(bad)):
            t = gid[row]
            if t not in problems:
                what = "negative" if np.isfinite(vals[row, col]) else repr(float(vals[row, col]))
                problems[t] = (
                    f"column {value_cols[col]!r} has {what} value at row {frame.index[row]!r} "
                    f"(task {_key_str(keys, t)})"
                )

        # duplicates of (task, x)
        dup = frame.assign(_gid=gid).duplicated(subset=["_gid"] + x_names, keep=False).to_numpy()
        if dup.any():
            if duplicates == "mean":
                frame = frame.assign(_gid=gid).groupby(["_gid"] + x_names, sort=False, as_index=False).agg(
                    {**{c: "first" for c in by_names}, y: "mean", **({weight: "sum"} if weight else {})}
                )
                gid = frame["_gid"].to_numpy()
                vals = frame[value_cols].to_numpy(dtype=float)
            elif duplicates == "error":
                for row in np.nonzero(dup)[0]:
                    t = gid[row]
                    if t not in problems:
                        xs = ", ".join(f"{c}={float(frame[c].iloc[row]):g}" for c in x_names)
                        problems[t] = (
                            f"duplicate rows for task {_key_str(keys, t)} at {xs} "
                            "(pass duplicates='mean' to average them)"
                        )
            else:
                raise DataError(f"duplicates must be 'error' or 'mean', got {duplicates!r}")

        if problems and on_invalid == "raise":
            lines = [problems[t] for t in sorted(problems)[:5]]
            more = f"\n... and {len(problems) - 5} more task(s)" if len(problems) > 5 else ""
            raise DataError("invalid data:\n  " + "\n  ".join(lines) + more)
        if on_invalid not in ("raise", "report"):
            raise DataError(f"on_invalid must be 'raise' or 'report', got {on_invalid!r}")

        # sort within task by x, then scatter into padded arrays
        order = np.lexsort([vals[:, i] for i in reversed(range(len(x_names)))] + [gid])
        gid, vals = gid[order], vals[order]
        n_tasks = len(keys)
        counts = np.bincount(gid, minlength=n_tasks)
        pos = np.arange(len(gid)) - np.repeat(np.cumsum(counts) - counts, counts)
        p_pad = bucket(counts.max()) if bucket_shapes else int(counts.max())
        t_pad = bucket_tasks(n_tasks) if bucket_shapes else n_tasks
        k = len(x_names)
        xa = np.ones((t_pad, p_pad, k))
        ya = np.ones((t_pad, p_pad))
        wa = np.zeros((t_pad, p_pad))
        xa[gid, pos] = vals[:, :k]
        ya[gid, pos] = vals[:, k]
        wa[gid, pos] = vals[:, k + 1] if weight else 1.0
        ok_vals = np.isfinite(xa).all(-1) & np.isfinite(ya) & np.isfinite(wa)
        xa[~np.isfinite(xa)] = 1.0
        ya[~np.isfinite(ya)] = 1.0
        wa[~ok_vals] = 0.0
        mask = np.zeros((t_pad, p_pad), dtype=bool)
        mask[gid, pos] = True
        invalid = tuple(problems.get(t, "") for t in range(n_tasks))
        for t in problems:
            mask[t] = False
            wa[t] = 0.0
        return cls(xa, ya, mask, wa, keys.reset_index(drop=True), tuple(x_names), y, tuple(by_names), invalid, n_tasks)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        mask: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        *,
        x_names: Sequence[str] | None = None,
        y_name: str = "y",
        bucket_shapes: bool = True,
    ) -> "Dataset":
        """Build from arrays ``x[T, P]`` or ``[T, P, k]`` and ``y[T, P]`` (tasks named 0..T-1)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.ndim == 2:
            x = x[..., None]
        if x.shape[:2] != y.shape:
            raise DataError(f"x has shape {x.shape} but y has shape {y.shape}; expected x[T, P(, k)] and y[T, P]")
        mask = np.ones(y.shape, bool) if mask is None else np.asarray(mask, bool)
        weight = np.ones(y.shape) if weight is None else np.asarray(weight, float)
        t, p, k = x.shape
        tp, pp = (bucket_tasks(t), bucket(p)) if bucket_shapes else (t, p)
        xa, ya, ma, wa = np.ones((tp, pp, k)), np.ones((tp, pp)), np.zeros((tp, pp), bool), np.zeros((tp, pp))
        xa[:t, :p], ya[:t, :p], ma[:t, :p] = x, y, mask
        wa[:t, :p] = np.where(mask, weight, 0.0)
        bad = ~(np.isfinite(xa).all(-1) & np.isfinite(ya))
        if (bad & ma).any():
            t0, p0 = np.argwhere(bad & ma)[0]
            raise DataError(f"non-finite value in task {t0} at point {p0}")
        names = tuple(x_names) if x_names else tuple(f"x{i}" if k > 1 else "x" for i in range(k))
        keys = pd.DataFrame({TASK: np.arange(t)})
        return cls(xa, ya, ma, wa, keys, names, y_name, (TASK,), ("",) * t, t)

    # ---------------------------------------------------------------- views
    @property
    def n_points(self) -> np.ndarray:
        """Real points per real task."""
        return self.mask[: self.n_tasks].sum(axis=1)

    @property
    def n_inputs(self) -> int:
        return self.x.shape[-1]

    def to_frame(self) -> pd.DataFrame:
        """Back to a long table (real points only)."""
        t_idx, p_idx = np.nonzero(self.mask[: self.n_tasks])
        out = self.keys.iloc[t_idx].reset_index(drop=True)
        for i, name in enumerate(self.x_names):
            out[name] = self.x[t_idx, p_idx, i]
        out[self.y_name] = self.y[t_idx, p_idx]
        return out

    def task_index(self, frame: pd.DataFrame) -> np.ndarray:
        """Index of each row's task (by the `by` columns); -1 where the task is unknown.

        A table without the key columns is allowed when there is a single task.
        """
        missing = [c for c in self.by if c not in frame.columns]
        if missing and self.n_tasks == 1 and len(missing) == len(self.by):
            return np.zeros(len(frame), dtype=int)
        if missing:
            raise DataError(f"column(s) {missing} (the task keys) not in the table")
        lookup = self.keys.assign(_tid=np.arange(self.n_tasks))
        merged = frame[list(self.by)].merge(lookup, on=list(self.by), how="left")
        return merged["_tid"].fillna(-1).to_numpy(dtype=int)


def _numeric_column(s: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(s) or not (pd.api.types.is_numeric_dtype(s) or s.dtype == object):
        raise DataError(f"column {name!r} must be numeric, got dtype {s.dtype}")
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    conv = pd.to_numeric(s, errors="coerce")
    bad = conv.isna() & s.notna()
    if bad.any():
        row = bad.idxmax()
        raise DataError(f"column {name!r} must be numeric: row {row!r} holds {s.loc[row]!r}")
    return conv.astype(float)


def _key_str(keys: pd.DataFrame, t: int) -> str:
    row = keys.iloc[int(t)]
    return ", ".join(f"{c}={row[c]!r}" for c in keys.columns)

