"""`FitResult`: per-task parameters and diagnostics, prediction, forecasts, save and load."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale import losses as losses_mod
from jaxscale.data import DataError, Dataset
from jaxscale.forecast import forecast_frame
from jaxscale.laws import Law
from jaxscale.laws import get as get_law
from jaxscale.solver import Status

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """The outcome of `jaxscale.fit`: one row per task.

    Attributes:
      data: the fitted `Dataset`.
      law: the fitted `Law`.
      loss: the `Loss` minimised.
      u: ``[T, n]`` best unconstrained parameters.
      objective: ``[T]`` loss at the optimum.
      status: ``[T]`` `Status` codes; `reasons` explains every non-converged task.
      n_iter: ``[T]`` Newton iterations summed over polished starts.
      grad_norm: ``[T]`` infinity-norm of the gradient at the optimum (unconstrained scale).
    """

    data: Dataset
    law: Law
    loss: losses_mod.Loss
    u: np.ndarray
    objective: np.ndarray
    status: np.ndarray
    reasons: list[str]
    n_iter: np.ndarray
    grad_norm: np.ndarray

    # ---------------------------------------------------------------- tables
    @property
    def param_array(self) -> np.ndarray:
        """``[T, n]`` constrained parameter values (NaN for tasks that were not fitted)."""
        p = self.law.to_params(jnp.asarray(self.u))
        arr = np.stack([np.asarray(p[n]) for n in self.law.param_names], axis=-1)
        return np.where(self.ok[:, None], arr, np.nan)

    @property
    def ok(self) -> np.ndarray:
        """``[T]`` True where the task has a usable fit."""
        return np.array([Status(int(s)).ok for s in self.status], dtype=bool)

    @property
    def params(self) -> pd.DataFrame:
        """One row per task: the task keys and each parameter (fixed ones included)."""
        out = self.data.keys.copy()
        arr = self.param_array
        for i, name in enumerate(self.law.param_names):
            out[name] = arr[:, i]
        for name, v in self.law.fixed.items():
            out[name] = v
        return out

    def to_frame(self) -> pd.DataFrame:
        """Parameters plus diagnostics: objective, status, reason, iterations, gradient norm, points."""
        out = self.params
        out["objective"] = np.where(self.ok, self.objective, np.nan)
        out["status"] = [Status(int(s)).name.lower() for s in self.status]
        out["reason"] = self.reasons
        out["n_points"] = self.data.n_points
        out["n_iter"] = self.n_iter
        out["grad_norm"] = self.grad_norm
        return out

    # ---------------------------------------------------------------- prediction
    def predict(self, new_x: Any) -> np.ndarray:
        """Predictions of every task's fitted law.

        `new_x` is either values shared by all tasks (``[Q]`` or ``[Q, k]``; returns ``[T, Q]``) or a
        DataFrame with the x columns and the task key columns (returns one value per row).
        """
        if isinstance(new_x, pd.DataFrame):
            tid, xq = self._rows(new_x)
            p = self.param_array[np.maximum(tid, 0)]
            out = np.asarray(_eval_rows(self.law, jnp.asarray(p), jnp.asarray(xq)))
            return np.where(tid >= 0, out, np.nan)
        xq = _as_x(new_x, self.law.n_inputs)
        return np.asarray(_eval_grid(self.law, jnp.asarray(self.param_array), jnp.asarray(xq)))

    def forecast(self, new_x: Any) -> pd.DataFrame:
        """The shared forecast table: task keys, x columns and ``prediction`` for each point.

        Least-squares fits give point predictions only; methods with uncertainty add quantile
        columns ``q0.05``, ``q0.5``, ... of the same table shape.
        """
        if isinstance(new_x, pd.DataFrame):
            cols = [c for c in (*self.data.by, *self.data.x_names) if c in new_x.columns]
            return forecast_frame(new_x[cols].reset_index(drop=True), self.predict(new_x))
        xq = _as_x(new_x, self.law.n_inputs)
        pred = self.predict(xq)  # [T, Q]
        t, q = pred.shape
        rows = self.data.keys.iloc[np.repeat(np.arange(t), q)].reset_index(drop=True)
        for i, name in enumerate(self.data.x_names):
            rows[name] = np.tile(xq[:, i], t)
        return forecast_frame(rows, pred.reshape(-1))

    def _rows(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        missing = [c for c in self.data.x_names if c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {missing} (the x of the fit) not in the table")
        tid = self.data.task_index(frame)
        return tid, frame[list(self.data.x_names)].to_numpy(dtype=float)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write a directory artifact: ``meta.json`` (law, loss, columns, keys) and ``arrays.npz``.

        A user-defined law is recorded by name; `load` then needs the law passed in.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "jaxscale.FitResult", "version": FORMAT_VERSION,
            "law": ({"name": self.law.spec[0], **{k: _jsonable(v) for k, v in self.law.spec[1].items()}}
                    if self.law.spec is not None else {"name": self.law.name, "user_defined": True}),
            "loss": {"name": self.loss.name, **dict(self.loss.options)},
            "x_names": list(self.data.x_names), "y_name": self.data.y_name, "by": list(self.data.by),
            "keys": json.loads(self.data.keys.to_json(orient="split", index=False)),
            "invalid": list(self.data.invalid), "reasons": list(self.reasons),
        }
        (path / "meta.json").write_text(json.dumps(meta, indent=1))
        np.savez(path / "arrays.npz", x=self.data.x, y=self.data.y, mask=self.data.mask, weight=self.data.weight,
                 u=self.u, objective=self.objective, status=self.status, n_iter=self.n_iter, grad_norm=self.grad_norm)
        return path


def load(path: str | Path, law: Law | None = None) -> FitResult:
    """Read a `FitResult` written by `FitResult.save` (pass `law` for user-defined laws)."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not a saved fit (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != "jaxscale.FitResult":
        raise ValueError(f"{meta_file} is not a jaxscale fit artifact")
    arrays = np.load(path / "arrays.npz")
    lspec = dict(meta["law"])
    if law is None and lspec.get("user_defined"):
        raise ValueError(f"{path} holds a fit of the user-defined law {lspec['name']!r}: pass law=... to load it")
    law = law or get_law(lspec.pop("name"), **lspec)
    lossspec = dict(meta["loss"])
    loss = losses_mod.get(lossspec.pop("name"), **lossspec)
    k = meta["keys"]
    keys = pd.DataFrame(k["data"], columns=k["columns"])
    data = Dataset(arrays["x"], arrays["y"], arrays["mask"], arrays["weight"], keys, tuple(meta["x_names"]),
                   meta["y_name"], tuple(meta["by"]), tuple(meta["invalid"]), len(keys))
    return FitResult(data, law, loss, arrays["u"], arrays["objective"], arrays["status"], list(meta["reasons"]),
                     arrays["n_iter"], arrays["grad_norm"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _as_x(new_x: Any, k: int) -> np.ndarray:
    if isinstance(new_x, Mapping):
        new_x = np.stack([np.asarray(v, float) for v in new_x.values()], axis=-1)
    arr = np.asarray(new_x, dtype=float)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim == 1:
        arr = arr[:, None] if k == 1 else arr[None, :]
    if arr.shape[-1] != k:
        raise DataError(f"new x has {arr.shape[-1]} column(s); the law takes {k}")
    return arr


def _x_arg(law: Law, x):
    return x[..., 0] if law.n_inputs == 1 else x


@functools.partial(jax.jit, static_argnums=0)
def _eval_grid(law: Law, params: jax.Array, xq: jax.Array) -> jax.Array:
    """[T, n] params at shared [Q, k] x -> [T, Q]."""
    return jax.vmap(lambda p: law(_as_dict(law, p), _x_arg(law, xq)))(params)


@functools.partial(jax.jit, static_argnums=0)
def _eval_rows(law: Law, params: jax.Array, xq: jax.Array) -> jax.Array:
    """[R, n] params at [R, k] x -> [R]."""
    return jax.vmap(lambda p, x: law(_as_dict(law, p), _x_arg(law, x)))(params, xq)


def _as_dict(law: Law, p: jax.Array) -> dict:
    return {n: p[..., i] for i, n in enumerate(law.param_names)}
