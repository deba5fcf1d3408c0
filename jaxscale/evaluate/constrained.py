"""Constrained variants of the library's laws used by the benchmarks.

`monotone_bnsl(n)` is BNSL with every segment non-increasing: the log-log slope before the first
break, c0, and after each break, c0 + c1 + ... + ci, are all >= 0. Learning curves and error-vs-data
curves without double descent satisfy it, and it rules out the rising-then-falling fits that
make a plain BNSL explode when extrapolated. (`Law.with_bounds` bounds one parameter at a time;
the partial sums need a re-parameterisation, so this law's parameters are the slopes ``s0``...``sn``
and ``c_i = s_i - s_{i-1}`` is derived.)

`monotone_bnsl(n, max_slope=1.0)` also bounds every slope above: the reducible part y - a decays no
faster than x^-1 in any segment: 1/x is the parametric rate of the excess error in the amount of
data, and the variance-limited exponent of Bahri et al. 2021 ("Explaining neural scaling laws");
published exponents of loss and error in data, model size or compute are mostly well below it.
Without it a noisy curve that flattens at its last points is fitted with the limit a just below them
and a final slope of 5-12 (the reducible error vanishing within a fraction of a decade), which is
what blows up on the 92-curve benchmark. Curves with an emergent, sharp drop (4-digit addition:
c0 + c1 = 5.7) need the unbounded law. With one break the local slope moves monotonically from s0 to s1,
so both bounds hold at every x; with more breaks they hold on each segment, and the local slope can
leave them only where a broad break overlaps the one before it.

Example:
    >>> from jaxscale.evaluate.constrained import monotone_bnsl, bnsl_params
    >>> law = monotone_bnsl(1)
    >>> law.param_names
    ('a', 'b', 's0', 's1', 'd1', 'f1')
    >>> bnsl_params({"a": 1.0, "b": 2.0, "s0": 0.1, "s1": 0.4, "d1": 1e3, "f1": 0.5}, 1)["c1"]
    0.30000000000000004
    >>> monotone_bnsl(1, max_slope=1.0).constraints[3]
    Interval(lo=0.0, hi=1.0)
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax.numpy as jnp

from jaxscale import laws
from jaxscale.laws.base import Interval, Law, Positive

__all__ = ["monotone_bnsl", "bnsl_params"]


def bnsl_params(p: Mapping[str, float], n_breaks: int) -> dict:
    """The plain BNSL parameters (a, b, c0, c_i, d_i, f_i) of a `monotone_bnsl` parameter set."""
    out = {"a": p["a"], "b": p["b"], "c0": p["s0"]}
    for i in range(1, n_breaks + 1):
        out[f"c{i}"] = p[f"s{i}"] - p[f"s{i - 1}"]
        out[f"d{i}"], out[f"f{i}"] = p[f"d{i}"], p[f"f{i}"]
    return out


def monotone_bnsl(n_breaks: int = 1, max_slope: float | None = None) -> Law:
    """BNSL with non-increasing segments: slopes s_i = c0 + ... + c_i >= 0 (see the module doc),
    and s_i < `max_slope` for every segment when given (the reducible error decays no faster than
    x^-max_slope). One `Law` object per (n_breaks, max_slope), so fits reuse their compilation."""
    if max_slope is not None and not max_slope > 0:
        raise ValueError(f"max_slope must be > 0, got {max_slope}")
    return _monotone_bnsl(int(n_breaks), None if max_slope is None else float(max_slope))


@functools.lru_cache(maxsize=None)
def _monotone_bnsl(n_breaks: int, max_slope: float | None) -> Law:
    base = laws.bnsl(n_breaks)
    names = ["a", "b", "s0"]
    for i in range(1, n_breaks + 1):
        names += [f"s{i}", f"d{i}", f"f{i}"]
    # starts stay well inside the slope interval (a start at the bound has no gradient)
    s_hi = jnp.inf if max_slope is None else 0.9 * max_slope

    def to_base(p):
        return bnsl_params(p, n_breaks)

    def fn(p, x):
        return base.fn(to_base(p), x)

    def log_fn(p, x):
        return base.log_fn(to_base(p), x)

    def init(x, y, mask):
        g = base.init(x, y, mask)
        s = jnp.maximum(g["c0"], 1e-3)
        out = {"a": g["a"], "b": g["b"], "s0": jnp.minimum(s, s_hi)}
        for i in range(1, n_breaks + 1):
            s = jnp.maximum(s + g[f"c{i}"], 1e-3)
            out[f"s{i}"], out[f"d{i}"], out[f"f{i}"] = jnp.minimum(s, s_hi), g[f"d{i}"], g[f"f{i}"]
        return out

    # the sharpness keeps BNSL's own bounds; the slopes lie in (0, max_slope); the rest is positive
    slope = Positive() if max_slope is None else Interval(0.0, float(max_slope))
    cons = [base.constraints[base.param_names.index(n)] if n.startswith("f") else slope if n.startswith("s")
            else Positive() for n in names]
    bound = "" if max_slope is None else f" <= {max_slope:g}"
    return Law(
        name=f"monotone_bnsl{n_breaks}" + ("" if max_slope is None else f"_max{max_slope:g}"), fn=fn,
        log_fn=log_fn, param_names=tuple(names), constraints=tuple(cons),
        ordered=tuple(f"d{i}" for i in range(1, n_breaks + 1)) if n_breaks > 1 else (),
        formula=base.formula + f"  with 0 <= c0 + ... + c_i{bound} for every i (s_i parameters)",
        latex=base.latex, init=init,
    )
