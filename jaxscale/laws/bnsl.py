"""Broken Neural Scaling Laws (Caballero et al., ICLR 2023) with any number of breaks.

`bnsl(n)` is the plain law. `monotone_bnsl(n)` is BNSL with every segment non-increasing: the
log-log slope of y - a before the first break, c0, and after each break, c0 + c1 + ... + ci, are all
>= 0 (learning curves and error-vs-data curves without double descent satisfy it, and it rules out
the rising-then-falling fits that make a plain BNSL explode when extrapolated). Its parameters are
the slopes ``s0``...``sn`` (``c_i = s_i - s_{i-1}`` is derived, `bnsl_params`), because
`Law.with_bounds` bounds one parameter at a time and the partial sums need a re-parameterisation.

`monotone_bnsl(n, max_slope=1.0)` (``laws.get("bnsl1_bounded")``) also bounds every slope above:
the reducible part y - a decays no faster than x^-1 in any segment. 1/x is the parametric rate of
the excess error in the amount of data and the variance-limited exponent of Bahri et al. 2021
("Explaining neural scaling laws"); published exponents of loss and error in data, model size or
compute are mostly well below it. Without it, a noisy curve that flattens at its last points is
fitted with the limit a just below them and a final slope of 5-12 (the reducible error vanishing
within a fraction of a decade): the blow-ups of the 92-curve benchmark. Curves with an emergent,
sharp drop (4-digit addition: c0 + c1 = 5.7) need the unbounded law. With one break the local slope
moves monotonically from s0 to s1, so both bounds hold at every x; with more breaks they hold on each
segment, and the local slope can leave them only where a broad break overlaps the one before it.

Example:
    >>> from jaxscale import laws
    >>> laws.monotone_bnsl(1).param_names
    ('a', 'b', 's0', 's1', 'd1', 'f1')
    >>> laws.bnsl_params({"a": 1.0, "b": 2.0, "s0": 0.1, "s1": 0.4, "d1": 1e3, "f1": 0.5}, 1)["c1"]
    0.30000000000000004
    >>> laws.get("bnsl1_bounded").constraints[3]
    Interval(lo=0.0, hi=1.0)
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from typing import Mapping

from jaxscale.laws._grid import masked_max, masked_mean, masked_min
from jaxscale.laws.base import Interval, Law, LogInterval, Positive, Real

Array = jax.Array


SHARPNESS_RANGE = (1e-3, 1e2)


def _names(n_breaks: int) -> tuple[str, ...]:
    names = ["a", "b", "c0"]
    for i in range(1, n_breaks + 1):
        names += [f"c{i}", f"d{i}", f"f{i}"]
    return tuple(names)


def _log_term(p, x, n_breaks):
    """log(b x^-c0 prod_i (1 + (x/d_i)^(1/f_i))^(-c_i f_i)), stable for large x."""
    lx = jnp.log(x)
    out = jnp.log(p["b"]) - p["c0"] * lx
    for i in range(1, n_breaks + 1):
        f = p[f"f{i}"]
        out = out - p[f"c{i}"] * f * jax.nn.softplus((lx - jnp.log(p[f"d{i}"])) / f)
    return out


def _shape_log_term(c0, cs, ds, fs, lx):
    """Same as `_log_term` without b, vectorised over a grid of shapes: [S] params, [P] lx -> [S, P]."""
    out = -c0[:, None] * lx[None, :]
    for c, d, f in zip(cs, ds, fs):
        out = out - (c * f)[:, None] * jax.nn.softplus((lx[None, :] - jnp.log(d)[:, None]) / f[:, None])
    return out


def _shape_grid(n_breaks: int, lo: Array, hi: Array) -> tuple[Array, list, list, list]:
    """Grid over the nonlinear parameters (c0, c_i, d_i, f_i); break locations span log x range."""
    if n_breaks == 0:
        return jnp.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5]), [], [], []
    if n_breaks == 1:
        c0 = np.array([0.0, 0.05, 0.2, 0.5, 1.0])
        c1 = np.array([-0.5, 0.1, 0.5, 1.0, 2.5, 6.0])
        dq = np.linspace(-0.1, 1.1, 9)
        f1 = np.array([0.05, 0.2, 0.6, 1.5])
        g = np.array(np.meshgrid(c0, c1, dq, f1, indexing="ij")).reshape(4, -1)
        d1 = jnp.exp(lo + (hi - lo) * g[2])
        return jnp.asarray(g[0]), [jnp.asarray(g[1])], [d1], [jnp.asarray(g[3])]
    # n >= 2: ordered break locations from a coarse set, shared sharpness per start.
    c0 = np.array([0.0, 0.2, 0.6])
    cvals = np.array([-0.5, 0.5, 2.0])
    dq = np.linspace(0.0, 1.0, 5)
    pairs = [tuple(sorted(np.random.default_rng(i).choice(dq, n_breaks, replace=False))) for i in range(12)]
    pairs = sorted(set(pairs))
    fvals = np.array([0.1, 1.0])
    rows = []
    for c in c0:
        for cs in itertools.product(cvals, repeat=n_breaks):
            for ds in pairs:
                for f in fvals:
                    rows.append((c, *cs, *ds, f))
    g = np.array(rows).T
    cs = [jnp.asarray(g[1 + i]) for i in range(n_breaks)]
    ds = [jnp.exp(lo + (hi - lo) * g[1 + n_breaks + i]) for i in range(n_breaks)]
    fs = [jnp.asarray(g[-1]) for _ in range(n_breaks)]
    return jnp.asarray(g[0]), cs, ds, fs


def _bnsl_init(x, y, mask, n_breaks):
    lx = jnp.log(x)
    lo, hi = masked_min(lx, mask), masked_max(lx, mask)
    c0, cs, ds, fs = _shape_grid(n_breaks, lo, hi)
    g = jnp.exp(_shape_log_term(c0, cs, ds, fs, lx))  # [S, P]
    # Project the linear parameters (a, b) of y = a + b g by masked least squares per start.
    m = mask[None, :]
    gm = masked_mean_rows(g, m)
    ym = masked_mean(y, mask)
    dg = jnp.where(m, g - gm[:, None], 0.0)
    dy = jnp.where(mask, y - ym, 0.0)
    b = jnp.sum(dg * dy[None, :], axis=1) / jnp.maximum(jnp.sum(dg * dg, axis=1), 1e-300)
    ymin = masked_min(y, mask)
    a = jnp.clip(ym - b * gm, 0.0, 0.999 * ymin)
    b = jnp.where(b > 0, b, 1e-3 * ymin)
    # Refit b in log space given a: log(y - a) = log b + log g.
    lres = jnp.log(jnp.maximum(y[None, :] - a[:, None], 1e-12)) - jnp.log(jnp.maximum(g, 1e-300))
    b = jnp.exp(masked_mean_rows(lres, m))
    out = {"a": a, "b": b, "c0": c0}
    for i in range(n_breaks):
        out[f"c{i + 1}"], out[f"d{i + 1}"], out[f"f{i + 1}"] = cs[i], ds[i], fs[i]
    return out


def masked_mean_rows(v: Array, m: Array) -> Array:
    return jnp.sum(jnp.where(m, v, 0.0), axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)


@functools.lru_cache(maxsize=None)
def bnsl(n_breaks: int = 1) -> Law:
    """Broken Neural Scaling Law with `n_breaks` breaks.

    y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1/f_i))^(-c_i f_i), evaluated in log space.
    Constraints: a, b, d_i > 0; break locations ordered d_1 < d_2 < ...; the sharpness f_i lies in
    `SHARPNESS_RANGE` (1e-3, 1e2): below 1e-3 a break is a kink already, and without the bound
    fits drift along the flat valley f -> 0.

    Example:
      >>> from jaxscale import laws
      >>> laws.bnsl(n_breaks=1).param_names
      ('a', 'b', 'c0', 'c1', 'd1', 'f1')
    """
    if n_breaks < 0:
        raise ValueError(f"n_breaks must be >= 0, got {n_breaks}")
    names = _names(n_breaks)
    cons = []
    for n in names:
        if n.startswith("c"):
            cons.append(Real())
        elif n.startswith("f"):
            cons.append(LogInterval(*SHARPNESS_RANGE))
        else:
            cons.append(Positive())

    def fn(p, x):
        return p["a"] + jnp.exp(_log_term(p, x, n_breaks))

    def log_fn(p, x):
        return jnp.logaddexp(jnp.log(p["a"]), _log_term(p, x, n_breaks))

    formula = "y = a + b * x^(-c0)" + "".join(
        f" * (1 + (x/d{i})^(1/f{i}))^(-c{i}*f{i})" for i in range(1, n_breaks + 1)
    )
    latex = r"y = a + b x^{-c_0}" + "".join(
        rf"\left(1 + (x/d_{i})^{{1/f_{i}}}\right)^{{-c_{i} f_{i}}}" for i in range(1, n_breaks + 1)
    )
    return Law(
        name=f"bnsl{n_breaks}",
        fn=fn,
        log_fn=log_fn,
        param_names=names,
        constraints=tuple(cons),
        ordered=tuple(f"d{i}" for i in range(1, n_breaks + 1)) if n_breaks > 1 else (),
        formula=formula,
        latex=latex,
        init=functools.partial(_bnsl_init, n_breaks=n_breaks),
        spec=("bnsl", {"n_breaks": n_breaks}),
        limits=functools.partial(_bnsl_limits, n_breaks=n_breaks),
    )


def _bnsl_limits(p, x, y, mask, n_breaks):
    """Edges a local solver only creeps towards (its coordinate -> -inf), from a fitted optimum:
    a -> 0 (a pure broken power law, often best when the data show no floor) and each sharpness
    f_i -> its lower bound (a kink). Returns R = 1 + n_breaks candidates."""
    y_min = jnp.min(jnp.where(mask, y, jnp.inf))
    r = 1 + n_breaks
    out = {"a": jnp.full(r, p["a"]).at[0].set(1e-12 * y_min)}
    for i in range(1, n_breaks + 1):
        out[f"f{i}"] = jnp.full(r, p[f"f{i}"]).at[i].set(SHARPNESS_RANGE[0] * (1 + 1e-9))
    return out


# ---- constrained BNSL: slopes per segment in [0, max_slope] (see the module doc)


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
    base = bnsl(n_breaks)
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
