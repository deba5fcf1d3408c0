"""The M1-M4 power-law family of Alabdulmohsin et al. (NeurIPS 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxscale.laws._grid import cartesian, log_linear_fit, masked_max, masked_min
from jaxscale.laws.base import Law, Positive, Real

Array = jax.Array


# --------------------------------------------------------------------------- M1
def _m1(p, x):
    return p["beta"] * x ** p["c"]


def _m1_log(p, x):
    return jnp.log(p["beta"]) + p["c"] * jnp.log(x)


def _m1_init(x, y, mask):
    lb, c = log_linear_fit(jnp.log(x), jnp.log(y), mask)
    shifts = jnp.array([0.0, -0.5, 0.5])
    return {"beta": jnp.exp(lb) * jnp.ones(3), "c": c + shifts * jnp.maximum(jnp.abs(c), 0.1)}


power_law = Law(
    name="power_law",
    fn=_m1,
    log_fn=_m1_log,
    param_names=("beta", "c"),
    constraints=(Positive(), Real()),
    formula="y = beta * x^c",
    latex=r"y = \beta x^{c}",
    init=_m1_init,
    spec=("power_law", {}),
)


# --------------------------------------------------------------------------- M2
def _m2(p, x):
    return p["eps_inf"] + p["beta"] * x ** p["c"]


def _m2_log(p, x):
    return jnp.logaddexp(jnp.log(p["eps_inf"]), jnp.log(p["beta"]) + p["c"] * jnp.log(x))


_M2_FRACTIONS = jnp.array([0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.995])


def _m2_init(x, y, mask):
    ymin = masked_min(y, mask)
    eps = ymin * _M2_FRACTIONS

    def one(e):
        return log_linear_fit(jnp.log(x), jnp.log(jnp.maximum(y - e, 1e-12)), mask)

    lb, c = jax.vmap(one)(eps)
    return {"eps_inf": eps, "beta": jnp.exp(lb), "c": c}


saturating_power_law = Law(
    name="saturating_power_law",
    fn=_m2,
    log_fn=_m2_log,
    param_names=("eps_inf", "beta", "c"),
    constraints=(Positive(), Positive(), Real()),
    formula="y = eps_inf + beta * x^c",
    latex=r"y = \varepsilon_\infty + \beta x^{c}",
    init=_m2_init,
    spec=("saturating_power_law", {}),
)


# --------------------------------------------------------------------------- M3
def _m3(p, x):
    return p["beta"] * (1.0 / x + p["gamma"]) ** p["c"]


def _m3_log(p, x):
    return jnp.log(p["beta"]) + p["c"] * jnp.log(1.0 / x + p["gamma"])


def _m3_init(x, y, mask):
    xmax = masked_max(x, mask)
    gamma = jnp.array([1e-6, 0.03, 0.1, 0.3, 1.0, 3.0]) / xmax

    def one(g):
        return log_linear_fit(jnp.log(1.0 / x + g), jnp.log(y), mask)

    lb, c = jax.vmap(one)(gamma)
    return {"beta": jnp.exp(lb), "gamma": gamma, "c": jnp.maximum(c, 1e-3)}


m3 = Law(
    name="m3",
    fn=_m3,
    log_fn=_m3_log,
    param_names=("beta", "gamma", "c"),
    constraints=(Positive(), Positive(), Positive()),
    formula="y = beta * (1/x + gamma)^c",
    latex=r"y = \beta (x^{-1} + \gamma)^{c}",
    init=_m3_init,
    spec=("m3", {}),
)


# --------------------------------------------------------------------------- M4 (implicit)
def _phi(s, alpha):
    """log t - alpha log(1 - t) with t = sigmoid(s); increasing in s."""
    return -jax.nn.softplus(-s) + alpha * jax.nn.softplus(s)


def _phi_prime(s, alpha):
    return jax.nn.sigmoid(-s) + alpha * jax.nn.sigmoid(s)


# Enough for machine precision over eps_inf in [0, 0.9), beta in [1e-3, 1e6], c in [-2, 0.5],
# alpha in [0.01, 10], x in [1, 1e12] (tests/test_laws.py checks the residual).
_BISECT_STEPS = 4
_NEWTON_STEPS = 6


@jax.custom_jvp
def _m4_solve(r: Array, alpha: Array) -> Array:
    """Root s of phi(s; alpha) = r: bracketed by the asymptotes, then safeguarded Newton."""
    k = jnp.abs(alpha - 1.0) * jnp.log(2.0) + 1e-3

    def asym_inv(v):
        return jnp.where(v < 0, v, v / alpha)

    lo, hi = asym_inv(r - k), asym_inv(r + k)

    def bisect(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        above = _phi(mid, alpha) > r
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECT_STEPS, bisect, (lo, hi))

    def newton(_, s):
        s = s - (_phi(s, alpha) - r) / _phi_prime(s, alpha)
        return jnp.clip(s, lo, hi)

    return jax.lax.fori_loop(0, _NEWTON_STEPS, newton, 0.5 * (lo + hi))


@_m4_solve.defjvp
def _m4_solve_jvp(primals, tangents):
    r, alpha = primals
    dr, dalpha = tangents
    s = _m4_solve(r, alpha)
    ds = (dr - jax.nn.softplus(s) * dalpha) / _phi_prime(s, alpha)
    return s, ds


def _m4_parts(p, x):
    delta = p["eps_0"] - p["eps_inf"]
    safe_delta = jnp.where(delta > 0, delta, 1.0)
    r = jnp.log(p["beta"]) + p["c"] * jnp.log(x) + (p["alpha"] - 1.0) * jnp.log(safe_delta)
    s = _m4_solve(r, p["alpha"] * jnp.ones_like(r))
    return delta, safe_delta, s


def _m4(p, x):
    delta, safe_delta, s = _m4_parts(p, x)
    y = p["eps_inf"] + safe_delta * jax.nn.sigmoid(s)
    return jnp.where(delta > 0, y, jnp.nan)


def _m4_init(x, y, mask):
    ymin, ymax = masked_min(y, mask), masked_max(y, mask)
    eps0 = jnp.maximum(1.0, ymax * 1.001)
    einf = ymin * jnp.array([0.0, 0.5, 0.8, 0.95])
    alpha = jnp.array([0.25, 0.5, 1.0, 2.0])
    e, a = cartesian(einf, alpha)

    def one(e, a):
        t = jnp.clip((y - e) / (eps0 - e), 1e-6, 1 - 1e-6)
        lhs = jnp.log(t) - a * jnp.log1p(-t) + (1.0 - a) * jnp.log(eps0 - e)
        lb, c = log_linear_fit(jnp.log(x), lhs, mask)
        return lb, c

    lb, c = jax.vmap(one)(e, a)
    return {"eps_inf": e, "eps_0": eps0 * jnp.ones_like(e), "beta": jnp.exp(lb), "c": c, "alpha": a}


m4 = Law(
    name="m4",
    fn=_m4,
    param_names=("eps_inf", "eps_0", "beta", "c", "alpha"),
    constraints=(Positive(), Positive(), Positive(), Real(), Positive()),
    ordered=("eps_inf", "eps_0"),
    formula="(y - eps_inf) / (eps_0 - y)^alpha = beta * x^c   (implicit in y)",
    latex=r"\frac{y - \varepsilon_\infty}{(\varepsilon_0 - y)^{\alpha}} = \beta x^{c}",
    init=_m4_init,
    spec=("m4", {}),
)
