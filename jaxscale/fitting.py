"""`fit`: every task of a Dataset in one jit-compiled, batched computation."""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale import losses as losses_mod
from jaxscale.data import DataError, Dataset
from jaxscale.laws import Law
from jaxscale.laws import get as get_law
from jaxscale.result import FitResult
from jaxscale.solver import Engine, Solution, SolverConfig, Status, make_limits, make_objective, make_starts

Starts = Mapping[str, Sequence[float]] | np.ndarray | None


@functools.lru_cache(maxsize=64)
def engine(law: Law, loss: losses_mod.Loss, cfg: SolverConfig, start_mode: str = "law",
           devices: tuple | None = None, penalty: Callable | None = None) -> Engine:
    """The compiled fit engine for (law, loss, config); cached so repeated fits reuse compilations."""
    return Engine(make_objective(law, loss, penalty), make_starts(law), cfg, start_mode=start_mode, devices=devices,
                  limits_fn=make_limits(law))


def check_tasks(data: Dataset, law: Law, loss: losses_mod.Loss) -> list[str]:
    """Per-task reasons (or '') why `law` cannot be fitted with `loss` on `data`."""
    if data.n_inputs != law.n_inputs:
        raise DataError(
            f"law {law.name!r} takes {law.n_inputs} input(s) {law.inputs}, but the data has x = {data.x_names}"
        )
    reasons = list(data.invalid)
    t = data.n_tasks
    m = data.mask[:t]
    for i in range(t):
        if reasons[i]:
            continue
        key = ", ".join(f"{c}={data.keys.iloc[i][c]!r}" for c in data.by)
        if law.positive_x:
            bad = m[i] & ~(data.x[i] > 0).all(-1)
            if bad.any():
                j = int(np.argmax(bad))
                col = data.x_names[int(np.argmax(data.x[i, j] <= 0))]
                reasons[i] = (f"task {key}: law {law.name!r} takes log of x but column {col!r} has "
                              f"non-positive value {float(data.x[i, j].min())!r}")
                continue
        if loss.needs_positive_y:
            bad = m[i] & ~(data.y[i] > 0)
            if bad.any():
                reasons[i] = (f"task {key}: loss {loss.name!r} takes log of {data.y_name!r} but it has "
                              f"non-positive value {float(data.y[i][bad].min())!r}")
                continue
        if m[i].sum() < law.n_params:
            reasons[i] = (f"task {key}: {int(m[i].sum())} point(s) for {law.n_params} free parameters "
                          f"of {law.name!r}")
    return reasons


def fit(
    data: Dataset | pd.DataFrame,
    law: Law | str,
    *,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    by: str | Sequence[str] | None = None,
    weight: str | None = None,
    duplicates: Literal["error", "mean"] = "error",
    loss: str | losses_mod.Loss = "mse_log",
    loss_options: Mapping[str, float] | None = None,
    starts: Starts = None,
    polish: int = 8,
    max_iter: int = 800,
    on_invalid: Literal["raise", "report"] = "raise",
    key: jax.Array | None = None,
    devices: Sequence[jax.Device] | None = None,
    penalty: Callable[[dict], jax.Array] | None = None,
    **solver_options: Any,
) -> FitResult:
    """Fit `law` to every task of `data` at once.

    Args:
      data: a `Dataset`, or a long DataFrame together with `x`, `y` and optionally `by`/`weight`
        (and `duplicates`, see `Dataset.from_frame`).
      law: a `Law` or its name (``"chinchilla"``, ``"bnsl1"``...).
      loss: ``"mse_log"``, ``"huber_log"`` (SUM of Huber in log space; ``loss_options={"delta": 1e-3}``),
        ``"mse"``, ``"msle"``, ``"pinball"`` or a `losses.Loss`.
      starts: None for the law's data-driven grid, a ``{param: values}`` Cartesian grid, an
        array ``[S, n_params]`` of constrained starts shared by all tasks, or an array
        ``[T, S, n_params]`` of starts per task (e.g. warm starts from an earlier fit).
      polish: how many of the best screened starts per task are polished.
      max_iter: bound on the damped-Newton iterations per start.
      on_invalid: ``"raise"`` (default) raises `DataError` on a task that cannot be fitted;
        ``"report"`` fits the rest and reports those tasks with a status and reason.
      key: optional `jax.random` key; when given, random jitter is added to extra starts
        (reproducible for a fixed key).
      devices: devices to shard the task axis over (default: all of `jax.devices()`).
      penalty: optional ``penalty(params) -> scalar`` added to every task's objective (a ridge
        on a parameter, say); pass the same function object to reuse the compilation.
      solver_options: other `SolverConfig` fields (``ftol``, ``xtol``, ``gtol``, ``batch_size``,
        ``max_tasks``, ``first_iter``, ``chunk_iter``, ``prune``, ``restart_iter``, ``limit_iter``).

    Returns:
      A `FitResult` with per-task parameters, objective, status and reason.

    Example:
      >>> import jaxscale, pandas as pd, numpy as np
      >>> n = np.geomspace(1e6, 1e9, 8)
      >>> df = pd.DataFrame({"N": n, "loss": 2.0 + 30 * n ** -0.3})
      >>> res = jaxscale.fit(df, "saturating_power_law", x="N", y="loss")
      >>> round(float(res.params["c"][0]), 3)
      -0.3
    """
    law = get_law(law) if isinstance(law, str) else law
    loss_obj = losses_mod.get(loss, **(loss_options or {}))
    if polish < 1 or max_iter < 0:
        raise ValueError(f"polish must be >= 1 and max_iter >= 0, got polish={polish}, max_iter={max_iter}")
    if isinstance(data, pd.DataFrame):
        if x is None or y is None:
            raise DataError("fitting a DataFrame needs x=... and y=... column names")
        xs = [x] if isinstance(x, str) else list(x)
        if len(xs) != law.n_inputs:
            raise DataError(f"law {law.name!r} takes {law.n_inputs} input(s) {law.inputs}, but x = {xs}")
        data = Dataset.from_frame(data, x=x, y=y, by=by, weight=weight, duplicates=duplicates, on_invalid=on_invalid)
    elif not isinstance(data, Dataset):
        raise DataError(f"data must be a Dataset or a DataFrame, got {type(data).__name__}")

    reasons = check_tasks(data, law, loss_obj)
    if on_invalid == "raise" and any(reasons):
        bad = [r for r in reasons if r]
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError("cannot fit:\n  " + "\n  ".join(bad[:5]) + more + "\n(pass on_invalid='report' to fit the rest)")

    cfg = SolverConfig(polish=polish, max_iter=max_iter, **solver_options)
    grid = _user_grid(law, starts, key, data)
    w = np.array(data.weight)
    for i, r in enumerate(reasons):
        if r:
            w[i] = 0.0
    devs = None if devices is None else tuple(devices)
    mode = "law" if grid is None else ("task" if grid.ndim == 3 else "shared")
    sol = engine(law, loss_obj, cfg, mode, devs, penalty).solve(jnp.asarray(data.x), jnp.asarray(data.y), jnp.asarray(w),
                                           None if grid is None else jnp.asarray(grid))
    status, reason_text = _statuses(law, sol, reasons, data.n_tasks)
    return FitResult(
        data=data, law=law, loss=loss_obj, u=sol.u[: data.n_tasks], objective=sol.value[: data.n_tasks],
        status=status, reasons=reason_text, n_iter=sol.n_iter[: data.n_tasks], grad_norm=sol.grad_norm[: data.n_tasks],
    )


def _user_grid(law: Law, starts: Starts, key: jax.Array | None, data: Dataset) -> np.ndarray | None:
    if starts is None and key is None:
        return None
    if starts is None:
        if law.default_grid is None:
            raise ValueError(f"a random key adds jitter to a start grid; law {law.name!r} has a data-driven "
                             "init, so pass starts=... together with key=...")
        grid = law.grid_array()
    elif isinstance(starts, Mapping):
        grid = law.grid_array(starts)
    else:
        arr = np.asarray(starts, dtype=float)
        arr = arr if arr.ndim == 3 else np.atleast_2d(arr)
        if arr.shape[-1] != law.n_params:
            raise ValueError(f"starts has {arr.shape[-1]} columns; law {law.name!r} has {law.n_params} "
                             f"parameters {law.param_names}")
        if arr.ndim == 3:
            if len(arr) != data.n_tasks:
                raise ValueError(f"per-task starts have {len(arr)} tasks; the data has {data.n_tasks}")
            pad = len(data.y) - len(arr)
            arr = np.concatenate([arr, np.repeat(arr[:1], pad, axis=0)]) if pad else arr
        cols = law.clip_to_domain({n: arr[..., i] for i, n in enumerate(law.param_names)})
        with jax.ensure_compile_time_eval():
            grid = np.asarray(law.to_unconstrained(cols))
    if key is not None:
        jitter = np.asarray(jax.random.normal(key, grid.shape, dtype=jnp.float64)) * 0.1
        grid = np.concatenate([grid, grid + jitter], axis=-2)
    return grid


def _statuses(law: Law, sol: Solution, reasons: list[str], n_tasks: int) -> tuple[np.ndarray, list[str]]:
    status = np.asarray(sol.result[:n_tasks]).astype(int).copy()
    texts = []
    u = sol.u[:n_tasks]
    for i in range(n_tasks):
        if reasons[i]:
            status[i] = Status.TOO_FEW_POINTS if "free parameters" in reasons[i] else Status.INVALID_DATA
            texts.append(reasons[i])
            continue
        if status[i] == Status.NONFINITE:
            texts.append("objective is not finite at every start (check the data's scale or give starts)")
            continue
        hit = _at_bound(law, u[i])
        if hit and status[i] == Status.CONVERGED:
            status[i] = Status.HIT_BOUND
            texts.append(f"parameter(s) {hit} at a bound")
        elif status[i] == Status.MAX_ITER:
            texts.append(f"not converged within max_iter iterations (gradient {float(sol.grad_norm[i]):.2e})")
        else:
            texts.append("")
    return status, texts


def _at_bound(law: Law, u: np.ndarray) -> list[str]:
    """Parameters whose unconstrained value sits at a saturated transform (a bound in practice)."""
    if law.reparam is not None:
        return []
    from jaxscale.laws.base import GreaterThan, Interval, LogInterval, Positive

    out = []
    for i, (name, c) in enumerate(zip(law.param_names, law.constraints)):
        if isinstance(c, (Interval, LogInterval)) and abs(u[i]) > 18:
            out.append(name)
        elif isinstance(c, (Positive, GreaterThan)) and u[i] < -25 and name not in law.ordered[1:]:
            out.append(name)
    return out
