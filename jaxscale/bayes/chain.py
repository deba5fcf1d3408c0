"""Chained forecasts: the output of one law is the input of the next, with every step's posterior
carried through (the OLMo ladder's (N, D) -> task loss -> accuracy, Gadre's (N, M) -> loss -> error).

Each step is a `Posterior`. Draw s of the final prediction at a new x is obtained by taking draw
s of step 1 at x, feeding it to an independently drawn posterior sample of step 2's parameters,
and so on (the steps were fitted separately, so their posteriors are independent). Later steps
must take one input. Tasks are matched across steps by the key columns they share (a step with a
single task serves every row).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.data import DataError
from jaxscale.result import _as_x
from jaxscale.bayes import models as M
from jaxscale.bayes.inference import DEFAULT_LEVELS, Posterior, _quantile_table

Kind = Literal["mean", "observation"]


def _rows_and_first(step: Posterior, new_x: Any, kind: Kind, key) -> tuple[pd.DataFrame, np.ndarray]:
    draws = step.predict(new_x, kind=kind, key=key)
    if isinstance(new_x, pd.DataFrame):
        cols = [c for c in (*step.data.by, *step.data.x_names) if c in new_x.columns]
        return new_x[cols].reset_index(drop=True), draws
    xq = _as_x(new_x, step.law.n_inputs)
    t, s, q = draws.shape
    rows = step.data.keys.iloc[np.repeat(np.arange(t), q)].reset_index(drop=True)
    for i, name in enumerate(step.data.x_names):
        rows[name] = np.tile(xq[:, i], t)
    return rows, np.moveaxis(draws, 1, 2).reshape(t * q, s)


def _match(step: Posterior, rows: pd.DataFrame) -> np.ndarray:
    if step.data.n_tasks == 1:
        return np.zeros(len(rows), dtype=int)
    missing = [c for c in step.data.by if c not in rows.columns]
    if missing:
        raise DataError(f"chained step of {step.law.name!r} has tasks keyed by {list(step.data.by)}; "
                        f"the rows lack {missing}")
    return step.data.task_index(rows)


def chain_draws(steps: Sequence[Posterior], new_x: Any, *, key: jax.Array, kind: Kind = "mean",
                intermediate: Kind | None = None) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Draws of every step of a chain at the first step's `new_x`.

    Args:
      steps: posteriors, first step first.
      new_x: inputs of the first step: values shared by its tasks or a DataFrame with task keys.
      key: `jax.random` key (pairing of draws across steps, observation noise).
      kind: ``"mean"`` or ``"observation"`` for the final step.
      intermediate: the same for earlier steps (default: `kind`). With ``"observation"`` the next
        step is fed a noisy new observation of the intermediate quantity, as a real target model
        has its own realised loss.

    Returns:
      ``(rows, [draws_1, ..., draws_K])``: the table rows (task keys, x) and ``[R, S]`` draws per step
      (NaN where a row's task is missing from a step).
    """
    if len(steps) < 1:
        raise ValueError("a chain needs at least one step")
    intermediate = intermediate or kind
    keys = jax.random.split(key, 2 * len(steps))
    k0 = kind if len(steps) == 1 else intermediate
    rows, v = _rows_and_first(steps[0], new_x, k0, keys[0] if k0 == "observation" else None)
    out = [v]
    for j, step in enumerate(steps[1:], start=1):
        if step.law.n_inputs != 1:
            raise ValueError(f"step {j + 1} ({step.law.name!r}) takes {step.law.n_inputs} inputs; later steps take one")
        kj = kind if j == len(steps) - 1 else intermediate
        tid = _match(step, rows)
        th = step.samples  # [T, S, n]
        sig = step.sigma
        r, s = v.shape
        pick = np.asarray(jax.random.randint(keys[2 * j], (r, s), 0, th.shape[1]))
        tt = np.maximum(tid, 0)[:, None]
        thr = th[tt, pick]  # [R, S, n]
        p = {n: jnp.asarray(thr[..., i]) for i, n in enumerate(step.law.param_names)}
        logf = np.asarray(M._law_log(step.law, p, jnp.asarray(v)))
        if kj == "observation":
            eps = (jax.random.normal(keys[2 * j + 1], logf.shape) if step.likelihood == "normal"
                   else jax.random.t(keys[2 * j + 1], step.df, logf.shape))
            logf = logf + sig[tt, pick] * np.asarray(eps)
        v = np.where((tid >= 0)[:, None] & np.isfinite(v), np.exp(logf), np.nan)
        out.append(v)
    return rows, out


def chain_forecast(steps: Sequence[Posterior], new_x: Any, *, key: jax.Array, levels: Sequence[float] = DEFAULT_LEVELS,
                   kind: Kind = "mean", intermediate: Kind | None = None) -> pd.DataFrame:
    """The shared forecast table of a chain: the first step's task keys and x, ``prediction``
    (posterior median of the final quantity) and its quantiles, plus ``<y>_median`` columns with
    the median of every intermediate quantity (named by each step's y column).

    Example (OLMo two-step):
      >>> rows = pd.DataFrame({"task": ["hellaswag"], "N": [6.9e9], "D": [4.05e12]})  # doctest: +SKIP
      >>> chain_forecast([bpb_post, acc_post], rows, key=jax.random.PRNGKey(0))        # doctest: +SKIP
    """
    rows, draws = chain_draws(steps, new_x, key=key, kind=kind, intermediate=intermediate)
    table = _quantile_table(rows, draws[-1], levels)
    for step, d in zip(steps[:-1], draws[:-1]):
        ok = np.isfinite(d).all(-1)
        table[f"{step.data.y_name}_median"] = np.where(ok, np.median(np.where(ok[:, None], d, 0.0), axis=-1), np.nan)
    return table
