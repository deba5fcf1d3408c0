"""Fitting losses. Each is a `Loss`: a per-point penalty plus how points are reduced.

A loss compares predictions with targets either on the raw scale or in log space; log-space
losses receive ``log yhat`` (computed through the law's stable `log_fn`) and ``log y``.

- ``"mse_log"``: mean of (log yhat - log y)^2
- ``"huber_log"``: SUM of Huber_delta(log yhat - log y), delta = 1e-3 (Hoffmann et al. / Besiroglu et al.)
- ``"mse"``: mean of (yhat - y)^2
- ``"msle"``: mean of (log(1 + yhat) - log(1 + y))^2 (the BNSL reference objective)
- ``"pinball"``: smoothed pinball (quantile) loss, mean over points

Weights multiply each point's penalty; "mean" divides by the sum of weights.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
    """A fitting loss.

    Attributes:
      name: identifier.
      penalty: ``penalty(pred, target) -> per-point loss`` on the chosen scale.
      scale: ``"log"`` (pred/target are log values), ``"log1p"`` or ``"raw"``.
      reduction: ``"sum"`` or ``"mean"`` (weighted).
      needs_positive_y: whether targets must be > 0.
      least_squares: whether the penalty is (pred - target)^2, so the fit engine may use
        Gauss-Newton steps on the residuals.
    """

    name: str
    penalty: Callable[[Array, Array], Array]
    scale: str = "raw"
    reduction: str = "mean"
    needs_positive_y: bool = False
    options: tuple = ()
    least_squares: bool = False

    def transform_target(self, y: Array) -> Array:
        if self.scale == "log":
            return jnp.log(jnp.where(y > 0, y, 1.0))
        if self.scale == "log1p":
            return jnp.log1p(y)
        return y

    def reduce(self, per_point: Array, weight: Array) -> Array:
        total = jnp.sum(per_point * weight, axis=-1)
        if self.reduction == "sum":
            return total
        return total / jnp.maximum(jnp.sum(weight, axis=-1), 1e-300)


def huber(r: Array, delta: float) -> Array:
    """Huber function: r^2/2 inside |r| <= delta, delta (|r| - delta/2) outside."""
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def smoothed_pinball(u: Array, tau: float, kappa: float) -> Array:
    """softplus(kappa u)/kappa + (tau - 1) u with u = y - yhat (tends to the pinball loss as kappa grows)."""
    return jax.nn.softplus(kappa * u) / kappa + (tau - 1.0) * u


@functools.lru_cache(maxsize=None)
def mse_log() -> Loss:
    return Loss("mse_log", lambda p, t: (p - t) ** 2, scale="log", reduction="mean", needs_positive_y=True,
                least_squares=True)


@functools.lru_cache(maxsize=None)
def huber_log(delta: float = 1e-3) -> Loss:
    if not delta > 0:
        raise ValueError(f"huber_log needs delta > 0, got {delta}")
    return Loss("huber_log", lambda p, t: huber(p - t, delta), scale="log", reduction="sum",
                needs_positive_y=True, options=(("delta", delta),))


@functools.lru_cache(maxsize=None)
def mse() -> Loss:
    return Loss("mse", lambda p, t: (p - t) ** 2, scale="raw", reduction="mean", least_squares=True)


@functools.lru_cache(maxsize=None)
def msle() -> Loss:
    return Loss("msle", lambda p, t: (p - t) ** 2, scale="log1p", reduction="mean", least_squares=True)


@functools.lru_cache(maxsize=None)
def pinball(tau: float = 0.5, kappa: float = 50.0) -> Loss:
    """Smoothed pinball loss for the tau-quantile (u = y - yhat)."""
    if not (0 < tau < 1 and kappa > 0):
        raise ValueError(f"pinball needs 0 < tau < 1 and kappa > 0, got tau={tau}, kappa={kappa}")
    return Loss("pinball", lambda p, t: smoothed_pinball(t - p, tau, kappa), scale="raw", reduction="mean",
                options=(("tau", tau), ("kappa", kappa)))


_REGISTRY = {"mse_log": mse_log, "huber_log": huber_log, "mse": mse, "msle": msle, "pinball": pinball}


def get(loss: str | Loss, **options: float) -> Loss:
    """A loss by name (``get("huber_log", delta=1e-3)``) or a `Loss` passed through."""
    if isinstance(loss, Loss):
        return loss
    if loss not in _REGISTRY:
        raise ValueError(f"unknown loss {loss!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[loss](**options)
