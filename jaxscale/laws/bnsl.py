"""Broken Neural Scaling Laws (Caballero et al., ICLR 2023) with any number of breaks."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.laws._grid import masked_max, masked_mean, masked_min
from jaxscale.laws.base import Law, LogInterval, Positive, Real

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
    )
