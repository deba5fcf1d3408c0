"""Calibration on simulation: draw parameters from the prior, simulate tasks with the model
itself, fit, and check that the central credible intervals of held-out (extrapolated) points
cover at their nominal rates. With the priors used to simulate also used to fit, exact inference
is calibrated by construction (averaged over the prior), so this checks the sampler and the
forecast code end to end.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import Predictive

from jaxscale.data import Dataset
from jaxscale.laws import Law
from jaxscale.laws import get as get_law
from jaxscale.bayes import models as M
from jaxscale.bayes import priors as P
from jaxscale.forecast import quantile_column


def simulate(law: Law | str, priors: Mapping[str, Any], x: np.ndarray, *, key: jax.Array,
             likelihood: M.Likelihood = "normal", df: float = 4.0) -> dict[str, np.ndarray]:
    """Simulate tasks from the prior predictive of `make_model(law, priors)`.

    Args:
      x: ``[T, P]`` (or ``[T, P, k]``) inputs of every task.

    Returns:
      ``{"y": [T, P] observations, "y_mean": [T, P] noiseless law values, "params": [T, n],
      "sigma": [T]}``.
    """
    law = get_law(law) if isinstance(law, str) else law
    x = np.asarray(x, float)
    if x.ndim == 2:
        x = x[..., None]
    model = M.make_model(law, priors, likelihood=likelihood, df=df)
    t, p = x.shape[:2]
    s = Predictive(model, num_samples=1)(key, jnp.asarray(x), None, jnp.ones((t, p), bool))
    s = {k: np.asarray(v[0]) for k, v in s.items()}
    params = np.stack([s[n] for n in law.param_names], axis=-1)
    xa = x[..., 0] if law.n_inputs == 1 else x
    y_mean = np.exp(np.asarray(M._law_log(law, {n: jnp.asarray(params[:, i, None]) for i, n in enumerate(law.param_names)},
                                          jnp.asarray(xa))))
    return {"y": np.exp(s["obs"].T), "y_mean": y_mean, "params": params, "sigma": s[P.SIGMA]}


def interval_levels(levels: Sequence[float]) -> list[float]:
    """Quantile levels needed for central intervals at `levels` (0.5 -> 0.25 and 0.75...)."""
    out = set()
    for lv in levels:
        out.add(round((1 - lv) / 2, 10))
        out.add(round((1 + lv) / 2, 10))
    return sorted(out | {0.5})


def coverage(table: pd.DataFrame, truth: np.ndarray, levels: Sequence[float] = (0.5, 0.8, 0.95)) -> pd.DataFrame:
    """Share of `truth` inside the central intervals of a forecast table (rows aligned), and the
    intervals' mean width in log space (``log(hi / lo)``)."""
    truth = np.asarray(truth, float)
    rows = []
    for lv in levels:
        lo = table[quantile_column(round((1 - lv) / 2, 10))].to_numpy()
        hi = table[quantile_column(round((1 + lv) / 2, 10))].to_numpy()
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(truth)
        inside = (truth >= lo) & (truth <= hi)
        rows.append({"level": lv, "coverage": float(inside[ok].mean()) if ok.any() else np.nan, "n": int(ok.sum()),
                     "log_width": float(np.mean(np.log(hi[ok] / lo[ok]))) if ok.any() else np.nan})
    return pd.DataFrame(rows)


def calibration_study(law: Law | str, priors: Mapping[str, Any], *, x_fit: np.ndarray, x_test: np.ndarray,
                      n_tasks: int, key: jax.Array, method: Literal["nuts", "svi"] = "nuts",
                      levels: Sequence[float] = (0.5, 0.8, 0.95), likelihood: M.Likelihood = "normal",
                      df: float = 4.0, **fit_kwargs: Any) -> dict[str, Any]:
    """Simulate `n_tasks` tasks from the prior at ``x_fit`` and ``x_test`` (shared ``[P]`` /
    ``[Q]`` or per task ``[T, P]``), fit on ``x_fit`` with the same priors, and measure the
    coverage of the held-out points by the observation intervals (against the noisy simulated y)
    and by the mean-curve intervals (against the noiseless law).

    Returns ``{"table": coverage rows (kind, level, coverage, n, log_width), "posterior": ...,
    "sim": the simulation}``.
    """
    from jaxscale.bayes.inference import fit_nuts, fit_svi

    law = get_law(law) if isinstance(law, str) else law
    k_sim, k_fit, k_obs = jax.random.split(key, 3)
    xf = np.broadcast_to(np.asarray(x_fit, float), (n_tasks, np.shape(x_fit)[-1]))
    xt = np.broadcast_to(np.asarray(x_test, float), (n_tasks, np.shape(x_test)[-1]))
    x_all = np.concatenate([xf, xt], axis=1)
    sim = simulate(law, priors, x_all, key=k_sim, likelihood=likelihood, df=df)
    p = xf.shape[1]
    data = Dataset.from_arrays(xf, sim["y"][:, :p])
    fitter = fit_nuts if method == "nuts" else fit_svi
    post = fitter(data, law, key=k_fit, priors=priors, likelihood=likelihood, df=df, **fit_kwargs)
    q = xt.shape[1]
    rows = pd.DataFrame({"task": np.repeat(np.arange(n_tasks), q), "x": xt.reshape(-1)})
    qs = interval_levels(levels)
    tab_obs = post.forecast(rows, levels=qs, kind="observation", key=k_obs)
    tab_mean = post.forecast(rows, levels=qs, kind="mean")
    cov_obs = coverage(tab_obs, sim["y"][:, p:].reshape(-1), levels).assign(kind="observation")
    cov_mean = coverage(tab_mean, sim["y_mean"][:, p:].reshape(-1), levels).assign(kind="mean")
    table = pd.concat([cov_obs, cov_mean], ignore_index=True)[["kind", "level", "coverage", "n", "log_width"]]
    return {"table": table, "posterior": post, "sim": sim}
