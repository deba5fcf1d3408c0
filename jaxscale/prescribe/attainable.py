"""From budget to accuracy: the accuracy attainable at training compute C, with intervals.

Two routes:

- `attainable`: a loss law (``chinchilla`` or ``overtraining``) gives the loss of the
  compute-optimal model at C (or of the model trained at M tokens per parameter); a downstream law
  of that loss (``exp_error``, ``logistic``, any one-input law fitted on (loss, metric) pairs)
  turns it into the metric. Draws of both laws (bootstrap replicates or posterior draws) are paired
  at random and pushed through, so the interval carries the uncertainty of both fits.
- `attainable_from_boundary`: the capability boundary itself, read at z = log10 C: the score that
  the best (tau-quantile) models of that compute reach; intervals from a bootstrap of the models.

Example:
  >>> loss_params = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
  >>> from jaxscale import laws
  >>> acc = {"law": laws.logistic, "params": {"a": 0.7, "k": -6.0, "x0": 2.3, "b": 0.25}}
  >>> tab = attainable_accuracy([1e22, 1e24], loss=loss_params, metric=acc)
  >>> tab[["C", "loss", "prediction"]].round(3).values.tolist()
  [[1e+22, 2.141, 0.755], [1e+24, 1.96, 0.87]]
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
import pandas as pd

from jaxscale.forecast import forecast_frame, quantile_column
from jaxscale.laws import Law
from jaxscale.prescribe.allocation import _solve, draws_of
from jaxscale.prescribe.boundary import BoundaryFit

__all__ = ["attainable_accuracy", "attainable_from_boundary"]


def _metric_source(metric: Any) -> tuple[Law, pd.DataFrame, np.ndarray, np.ndarray | None]:
    """(law, keys, point params [T, n], draws [T, S, n] or None) of the loss -> metric law."""
    from jaxscale.bootstrap import BootstrapResult
    from jaxscale.result import FitResult

    if isinstance(metric, BootstrapResult):
        return metric.fit.law, metric.fit.data.keys.copy(), metric.fit.param_array, metric.param_array
    if isinstance(metric, FitResult):
        return metric.law, metric.data.keys.copy(), metric.param_array, None
    if hasattr(metric, "ls") and hasattr(metric, "samples") and hasattr(metric, "law"):  # bayes.Posterior
        return metric.law, metric.data.keys.copy(), metric.ls.param_array, np.asarray(metric.samples)
    if isinstance(metric, Mapping) and "law" in metric:
        law = metric["law"]
        p = np.array([[float(metric["params"][n]) for n in law.param_names]])
        return law, pd.DataFrame({"task": ["metric"]}), p, None
    raise TypeError(f"cannot read a loss -> metric law from a {type(metric).__name__}")


def _eval_law(law: Law, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """law at params ``[..., n]`` and x broadcast against ``[...]``."""
    p = {n: params[..., i] for i, n in enumerate(law.param_names)}
    return np.asarray(law(p, np.asarray(x, dtype=float)))


def attainable_accuracy(C: float | Sequence[float], *, loss: Any, metric: Any, M: float | Sequence[float] | None = None,
               loss_task: int = 0, levels: Sequence[float] = (0.05, 0.95), n_draws: int = 2000,
               key: jax.Array | None = None, law: str | None = None) -> pd.DataFrame:
    """The metric attainable at compute C: loss law -> loss at the (compute-optimal) allocation ->
    downstream law.

    Args:
      C: training FLOPs.
      loss: the loss law: anything `allocation` reads (`FitResult`, `BootstrapResult`,
        `bayes.Posterior`, samples table, parameter mapping) of ``chinchilla`` or ``overtraining``.
      metric: the loss -> metric law: a `FitResult`, `BootstrapResult` or `bayes.Posterior` of a
        one-input law of the loss, or ``{"law": Law, "params": {...}}``. Every task of it is a row
        group of the result (e.g. one per benchmark).
      M: tokens per parameter (None: compute-optimal).
      loss_task: which task of the loss law to use.
      levels: quantile levels of the interval; n_draws: draw pairs (when either side has draws).
      key: `jax.random` key for pairing draws (default PRNGKey(0)).

    Returns:
      The forecast table: metric task keys, ``C`` (and ``M``), ``N``, ``D``, ``loss`` (point, with
      ``loss_q*`` quantiles when the loss law has draws), ``prediction`` (the metric) and ``q*``.
    """
    C = np.atleast_1d(np.asarray(C, dtype=float))
    Mv = None
    if M is not None:  # budgets and multipliers are zipped (one broadcasts against the other)
        C, Mv = (np.array(a) for a in np.broadcast_arrays(C, np.atleast_1d(np.asarray(M, dtype=float))))
    _, lname, lpoint, ldraws = draws_of(loss, law)
    lp = {k: v[loss_task] for k, v in lpoint.items()}
    n, d, l_point = _solve(lname, lp, C, Mv)
    mlaw, mkeys, mpoint, mdraws = _metric_source(metric)
    t = len(mkeys)
    pred = np.stack([_eval_law(mlaw, np.broadcast_to(mpoint[i], (C.size, mpoint.shape[1])), l_point)
                     for i in range(t)])  # [T, Q]
    quant: dict[float, np.ndarray] = {}
    loss_q: dict[float, np.ndarray] = {}
    if ldraws is not None or mdraws is not None:
        rng = np.random.default_rng(int(jax.random.randint(key if key is not None else jax.random.PRNGKey(0), (),
                                                           0, 2**31 - 1)))
        if ldraws is not None:
            ld = {k: v[loss_task] for k, v in ldraws.items()}
            s_l = len(next(iter(ld.values())))
            pick = rng.integers(0, s_l, n_draws)
            _, _, l_draw = _solve(lname, {k: v[pick][:, None] for k, v in ld.items()}, C[None, :],
                                  None if Mv is None else Mv[None, :])  # [S, Q]
            loss_q = {q: np.nanquantile(l_draw, q, axis=0) for q in levels}
        else:
            l_draw = np.broadcast_to(l_point, (n_draws, C.size))
        out = np.empty((t, n_draws, C.size))
        for i in range(t):
            if mdraws is not None:
                mp = mdraws[i][rng.integers(0, mdraws.shape[1], n_draws)]
            else:
                mp = np.broadcast_to(mpoint[i], (n_draws, mpoint.shape[1]))
            out[i] = _eval_law(mlaw, np.broadcast_to(mp[:, None, :], (n_draws, C.size, mp.shape[1])), l_draw)
        quant = {q: np.nanquantile(out, q, axis=1).reshape(-1) for q in levels}
    rows = []
    for i in range(t):
        for j, c in enumerate(C):
            row = {**mkeys.iloc[i].to_dict(), "C": c, **({} if Mv is None else {"M": Mv[j]}),
                   "N": float(n[j]), "D": float(d[j]), "loss": float(l_point[j])}
            for q, v in loss_q.items():
                row[f"loss_{quantile_column(q)}"] = float(v[j])
            rows.append(row)
    return forecast_frame(pd.DataFrame(rows), pred.reshape(-1), quant)


def attainable_from_boundary(fit: BoundaryFit, C: float | Sequence[float], *, n_boot: int = 0,
                             key: jax.Array | None = None, levels: Sequence[float] = (0.05, 0.95)) -> pd.DataFrame:
    """The tau-quantile score reachable at compute C, read off each lane's capability boundary.

    With ``n_boot > 0`` the boundary is bootstrapped (models resampled, `BoundaryFit.bootstrap`) and
    the ``q*`` columns give the interval of the boundary at each C.

    Returns: lane keys (task, tau...), ``C``, ``log10_flops``, ``prediction`` and ``q*``.
    """
    C = np.atleast_1d(np.asarray(C, dtype=float))
    z = np.log10(C)
    pred = fit.predict(z)  # [R, Q]
    quant = {}
    if n_boot > 0:
        reps = fit.bootstrap(n_boot, key if key is not None else jax.random.PRNGKey(0))  # [R, B, 4]
        from jaxscale.prescribe.boundary import boundary_value

        vals = boundary_value(reps[:, :, None, :], z[None, None, :])  # [R, B, Q]
        quant = {q: np.nanquantile(vals, q, axis=1).reshape(-1) for q in levels}
    rows = [{**fit.lanes.keys.iloc[i].to_dict(), "C": c, "log10_flops": zz}
            for i in range(fit.lanes.n) for c, zz in zip(C, z)]
    return forecast_frame(pd.DataFrame(rows), pred.reshape(-1), quant)
