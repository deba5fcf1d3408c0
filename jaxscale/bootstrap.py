"""Nonparametric bootstrap of any fit as one batched, warm-started solve.

A bootstrap replicate of a task resamples its points with replacement; jaxscale expresses it as
the same points with multinomial counts as weights, so all ``T x B`` replicates form one padded
`Dataset` and are fitted in a single call, each warm-started from the original fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

from jaxscale.data import Dataset
from jaxscale.fitting import fit as fit_fn
from jaxscale.forecast import forecast_frame
from jaxscale.result import FitResult

REPLICATE = "replicate"


@dataclasses.dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Bootstrap replicates of a fit.

    Attributes:
      fit: the fit on the original data (point estimates).
      replicates: the batched fit of all ``T x B`` resampled tasks.
      n: replicates per task (B).
    """

    fit: FitResult
    replicates: FitResult
    n: int

    @property
    def param_array(self) -> np.ndarray:
        """``[T, B, n_params]`` parameters of every replicate (NaN where a replicate failed)."""
        t = self.fit.data.n_tasks
        return self.replicates.param_array.reshape(t, self.n, -1)

    @property
    def samples(self) -> pd.DataFrame:
        """One row per (task, replicate): task keys, ``replicate`` and each parameter."""
        t = self.fit.data.n_tasks
        out = self.fit.data.keys.iloc[np.repeat(np.arange(t), self.n)].reset_index(drop=True)
        out[REPLICATE] = np.tile(np.arange(self.n), t)
        arr = self.replicates.param_array
        for i, name in enumerate(self.fit.law.param_names):
            out[name] = arr[:, i]
        return out

    def intervals(self, levels: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Per task and parameter: estimate, bootstrap standard error and quantiles."""
        arr = self.param_array
        rows = []
        est = self.fit.param_array
        for t in range(arr.shape[0]):
            for i, name in enumerate(self.fit.law.param_names):
                v = arr[t, :, i]
                v = v[np.isfinite(v)]
                row = {**self.fit.data.keys.iloc[t].to_dict(), "param": name, "estimate": est[t, i],
                       "se": float(np.std(v, ddof=1)) if len(v) > 1 else np.nan, "n_ok": len(v)}
                for q in levels:
                    row[f"q{q:g}"] = float(np.quantile(v, q)) if len(v) else np.nan
                rows.append(row)
        return pd.DataFrame(rows)

    def predict(self, new_x: Any) -> np.ndarray:
        """``[T, B, Q]`` predictions of every replicate at shared x."""
        t = self.fit.data.n_tasks
        pred = self.replicates.predict(new_x)
        return pred.reshape(t, self.n, -1)

    def predict_rows(self, rows: pd.DataFrame, x: np.ndarray | None = None) -> np.ndarray:
        """``[R, B]`` predictions of every replicate at each row's task and x.

        `rows` holds the task key columns and, unless `x` is given, the x columns. `x` may give
        per-row (``[R]`` / ``[R, k]``) or per-row-per-replicate (``[R, B]``) inputs, e.g. the
        draws of an earlier step in a chained forecast. Rows of unknown tasks give NaN.
        """
        data, law = self.fit.data, self.fit.law
        tid = data.task_index(rows)
        xa = rows[list(data.x_names)].to_numpy(float) if x is None else np.asarray(x, float)
        if law.n_inputs == 1 and xa.ndim == 2 and xa.shape[1] == 1 and x is None:
            xa = xa[:, 0]
        if law.n_inputs == 1:
            xa = xa if xa.ndim == 2 else xa[:, None]  # [R, B] or [R, 1]
        else:
            xa = xa[:, None, :]  # [R, 1, k]
        th = self.param_array[np.maximum(tid, 0)]  # [R, B, n]
        params = {n: th[..., i] for i, n in enumerate(law.param_names)}
        out = np.asarray(law(params, xa))
        return np.where((tid >= 0)[:, None], out, np.nan)

    def forecast(self, new_x: Any, levels: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """The shared forecast table: ``prediction`` from the original fit plus bootstrap quantiles."""
        base = self.fit.forecast(new_x)
        reps = self.predict(new_x)  # [T, B, Q]
        quant = {q: np.nanquantile(reps, q, axis=1).reshape(-1) for q in levels}
        return forecast_frame(base.drop(columns="prediction"), base["prediction"].to_numpy(), quant)


def resample_weights(data: Dataset, n: int, key: jax.Array) -> np.ndarray:
    """``[T, n, P]`` multinomial resampling counts of each task's real points (times their weights)."""
    t = data.n_tasks
    mask = data.mask[:t]
    # Draw indices among each task's real points: uniform over the first n_points slots after a
    # stable sort that moves real points first.
    order = np.argsort(~mask, axis=1, kind="stable")
    n_pts = mask.sum(axis=1)
    u = np.asarray(jax.random.uniform(key, (t, n, mask.shape[1])))
    draws = np.minimum((u * n_pts[:, None, None]).astype(int), np.maximum(n_pts - 1, 0)[:, None, None])
    slot = np.take_along_axis(np.broadcast_to(order[:, None, :], draws.shape), draws, axis=2)
    counts = np.zeros((t, n, mask.shape[1]))
    valid = np.broadcast_to(np.arange(mask.shape[1])[None, None, :] < n_pts[:, None, None], draws.shape)
    ti, bi, _ = np.nonzero(valid)
    np.add.at(counts, (ti, bi, slot[valid]), 1.0)
    return counts * data.weight[:t, None, :]


def bootstrap(
    data: Dataset | pd.DataFrame,
    law: Any,
    *,
    n: int = 1000,
    key: jax.Array,
    fit: FitResult | None = None,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    by: str | Sequence[str] | None = None,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Refit every task on `n` resamples of its points, all in one batched solve.

    Args:
      data, law, x, y, by: as for `jaxscale.fit`.
      n: bootstrap replicates per task.
      key: `jax.random` key (results are reproducible for a fixed key).
      fit: the original fit, if already computed (otherwise it is fitted here).
      fit_kwargs: passed to `jaxscale.fit` (``loss``, ``loss_options``, ``penalty``...).

    Returns:
      A `BootstrapResult` with per-replicate parameters, intervals and forecast quantiles.

    Example:
      >>> import jax, jaxscale
      >>> from jaxscale import datasets
      >>> df = datasets.load_chinchilla()  # doctest: +SKIP
      >>> bs = jaxscale.bootstrap(df, "chinchilla", x=["N", "D"], y="loss", loss="huber_log",
      ...                         n=4000, key=jax.random.PRNGKey(0))  # doctest: +SKIP
      >>> bs.intervals()  # doctest: +SKIP
    """
    if isinstance(data, pd.DataFrame):
        data = Dataset.from_frame(data, x=x, y=y, by=by, on_invalid=fit_kwargs.get("on_invalid", "raise"))
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    base = fit if fit is not None else fit_fn(data, law, **fit_kwargs)
    t, p = data.n_tasks, data.mask.shape[1]
    weights = resample_weights(data, n, key).reshape(t * n, p)
    rep = np.repeat(np.arange(t), n)
    mask = weights > 0
    boot = Dataset.from_arrays(data.x[rep], data.y[rep], mask, weights, x_names=data.x_names, y_name=data.y_name)
    # warm start: the original optimum (and the law's grid would be wasted effort)
    start = base.param_array[rep][:, None, :]
    start = np.where(np.isfinite(start), start, 1.0)
    kw = {k: v for k, v in fit_kwargs.items() if k not in ("starts", "polish", "on_invalid")}
    reps = fit_fn(boot, base.law, starts=start, polish=1, on_invalid="report", **kw)
    return BootstrapResult(fit=base, replicates=reps, n=n)
