"""Constrained variants of the library's laws used by the benchmarks.

`monotone_bnsl(n)` is BNSL with every segment non-increasing: the log-log slope before the first
break, c0, and after each break, c0 + c1 + ... + ci, are all >= 0. Learning curves and error-vs-data
curves without double descent satisfy it, and it rules out the rising-then-falling fits that
make a plain BNSL explode when extrapolated. (`Law.with_bounds` bounds one parameter at a time;
the partial sums need a re-parameterisation, so this law's parameters are the slopes ``s0``...``sn``
and ``c_i = s_i - s_{i-1}`` is derived.)

Example:
    >>> from jaxscale.evaluate.constrained import monotone_bnsl, bnsl_params
    >>> law = monotone_bnsl(1)
    >>> law.param_names
    ('a', 'b', 's0', 's1', 'd1', 'f1')
    >>> bnsl_params({"a": 1.0, "b": 2.0, "s0": 0.1, "s1": 0.4, "d1": 1e3, "f1": 0.5}, 1)["c1"]
    0.30000000000000004
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax.numpy as jnp

from jaxscale import laws
from jaxscale.laws.base import Law, Positive

__all__ = ["monotone_bnsl", "bnsl_params"]


def bnsl_params(p: Mapping[str, float], n_breaks: int) -> dict:
    """The plain BNSL parameters (a, b, c0, c_i, d_i, f_i) of a `monotone_bnsl` parameter set."""
    out = {"a": p["a"], "b": p["b"], "c0": p["s0"]}
    for i in range(1, n_breaks + 1):
        out[f"c{i}"] = p[f"s{i}"] - p[f"s{i - 1}"]
        out[f"d{i}"], out[f"f{i}"] = p[f"d{i}"], p[f"f{i}"]
    return out


@functools.lru_cache(maxsize=None)
def monotone_bnsl(n_breaks: int = 1) -> Law:
    """BNSL with non-increasing segments: slopes s_i = c0 + ... + c_i >= 0 (see the module doc)."""
    base = laws.bnsl(n_breaks)
    names = ["a", "b", "s0"]
    for i in range(1, n_breaks + 1):
        names += [f"s{i}", f"d{i}", f"f{i}"]

    def to_base(p):
        return bnsl_params(p, n_breaks)

    def fn(p, x):
        return base.fn(to_base(p), x)

    def log_fn(p, x):
        return base.log_fn(to_base(p), x)

    def init(x, y, mask):
        g = base.init(x, y, mask)
        out = {"a": g["a"], "b": g["b"], "s0": jnp.maximum(g["c0"], 1e-3)}
        s = out["s0"]
        for i in range(1, n_breaks + 1):
            s = jnp.maximum(s + g[f"c{i}"], 1e-3)
            out[f"s{i}"], out[f"d{i}"], out[f"f{i}"] = s, g[f"d{i}"], g[f"f{i}"]
        return out

    # the sharpness keeps BNSL's own bounds; everything else is positive
    cons = [base.constraints[base.param_names.index(n)] if n.startswith("f") else Positive() for n in names]
    return Law(
        name=f"monotone_bnsl{n_breaks}", fn=fn, log_fn=log_fn, param_names=tuple(names), constraints=tuple(cons),
        ordered=tuple(f"d{i}" for i in range(1, n_breaks + 1)) if n_breaks > 1 else (),
        formula=base.formula + "  with c0 + ... + c_i >= 0 for every i (s_i parameters)",
        latex=base.latex, init=init,
    )
