"""The law library: pure, jit-able scaling laws with their parameter specs.

Every law is a `Law`: call it as ``law(params, x)``. Public laws:

- `power_law` (M1), `saturating_power_law` (M2), `m3`, `m4` (implicit)
- `bnsl(n_breaks=...)` (Broken Neural Scaling Law), `monotone_bnsl(n_breaks, max_slope=...)` (every
  segment's log-log slope in [0, max_slope]; ``"bnsl1_bounded"``: one break, max_slope 1)
- `chinchilla` (L(N, D)), `overtraining` (L(C, M))
- `exp_error` (Err(L)), `logistic` (4-parameter accuracy law), `sigmoid_boundary`

Define your own with the `law` decorator.
"""

from __future__ import annotations

from typing import Any, Mapping

from jaxscale.laws.base import GreaterThan, Interval, Law, LogInterval, Positive, Real, law
from jaxscale.laws.bnsl import bnsl, bnsl_params, monotone_bnsl
from jaxscale.laws.chinchilla import CHINCHILLA_GRID, chinchilla, overtraining
from jaxscale.laws.downstream import exp_error, logistic, sigmoid_boundary
from jaxscale.laws.power import m3, m4, power_law, saturating_power_law

_FIXED = {
    "power_law": power_law,
    "m1": power_law,
    "saturating_power_law": saturating_power_law,
    "m2": saturating_power_law,
    "m3": m3,
    "m4": m4,
    "chinchilla": chinchilla,
    "overtraining": overtraining,
    "exp_error": exp_error,
    "logistic": logistic,
    "sigmoid_boundary": sigmoid_boundary,
}


def get(name: str, **kwargs: Any) -> Law:
    """A law by name: ``get("bnsl", n_breaks=2)``; ``"bnsl2"`` also works.

    `fixed` ({name: value}) and `bounds` ({name: (lo, hi)}) keyword arguments apply `Law.fix` and
    `Law.with_bounds`.
    """
    fixed: Mapping[str, float] = kwargs.pop("fixed", None) or {}
    bounds: Mapping[str, tuple] = kwargs.pop("bounds", None) or {}
    key = name.lower()
    if key.startswith("bnsl") and key.endswith("_bounded"):
        out = monotone_bnsl(int(key[4:-8] or 1), max_slope=kwargs.pop("max_slope", 1.0), **kwargs)
    elif key.startswith("bnsl"):
        if key[4:]:
            kwargs.setdefault("n_breaks", int(key[4:]))
        out = bnsl(**kwargs)
    elif key in _FIXED:
        if kwargs:
            raise ValueError(f"law {name!r} takes no options, got {sorted(kwargs)}")
        out = _FIXED[key]
    else:
        raise ValueError(f"unknown law {name!r}; available: {', '.join(available())}")
    if bounds:
        out = out.with_bounds(**{k: tuple(v) for k, v in bounds.items()})
    if fixed:
        out = out.fix(**fixed)
    return out


def available() -> list[str]:
    """Names accepted by `get`."""
    return ["power_law", "saturating_power_law", "m3", "m4", "bnsl0", "bnsl1", "bnsl2", "bnsl1_bounded",
            "bnsl2_bounded", "chinchilla",
            "overtraining", "exp_error", "logistic", "sigmoid_boundary"]


__all__ = [
    "Law", "law", "Real", "Positive", "Interval", "LogInterval", "GreaterThan", "get", "available",
    "power_law", "saturating_power_law", "m3", "m4", "bnsl", "monotone_bnsl", "bnsl_params", "chinchilla", "overtraining",
    "exp_error", "logistic", "sigmoid_boundary", "CHINCHILLA_GRID",
]
