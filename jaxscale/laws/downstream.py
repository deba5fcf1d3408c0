"""Downstream laws: loss -> error, loss -> accuracy, and the quantile capability boundary."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxscale.laws._grid import cartesian, masked_max, masked_mean, masked_min
from jaxscale.laws.base import Law, Positive, Real

Array = jax.Array


def _linear_2(g1: Array, g2: Array, y: Array, mask: Array) -> tuple[Array, Array]:
    """Masked least squares for y = p1 g1 + p2 g2."""
    g1, g2, y = (jnp.where(mask, v, 0.0) for v in (g1, g2, y))
    s11, s12, s22 = jnp.sum(g1 * g1), jnp.sum(g1 * g2), jnp.sum(g2 * g2)
    t1, t2 = jnp.sum(g1 * y), jnp.sum(g2 * y)
    det = s11 * s22 - s12 * s12
    det = jnp.where(jnp.abs(det) > 1e-300, det, 1e-300)
    return (s22 * t1 - s12 * t2) / det, (s11 * t2 - s12 * t1) / det


# --------------------------------------------------------------------------- Err(L)
def _exp_error(p, x):
    return p["eps"] - p["k"] * jnp.exp(-p["gamma"] * x)


def _exp_error_init(x, y, mask):
    gamma = jnp.geomspace(0.05, 10.0, 16)

    def one(g):
        eps, negk = _linear_2(jnp.ones_like(x), jnp.exp(-g * x), y, mask)
        return eps, jnp.maximum(-negk, 1e-6)

    eps, k = jax.vmap(one)(gamma)
    return {"eps": eps, "k": k, "gamma": gamma}


exp_error = Law(
    name="exp_error",
    fn=_exp_error,
    param_names=("eps", "k", "gamma"),
    constraints=(Real(), Positive(), Positive()),
    inputs=("L",),
    formula="Err = eps - k * exp(-gamma * L)",
    latex=r"\mathrm{Err}(L) = \epsilon - k e^{-\gamma L}",
    init=_exp_error_init,
    positive_x=False,
    spec=("exp_error", {}),
)


# --------------------------------------------------------------------------- logistic
def _logistic(p, x):
    return p["a"] / (1.0 + jnp.exp(-p["k"] * (x - p["x0"]))) + p["b"]


def _logistic_init(x, y, mask):
    lo, hi = masked_min(x, mask), masked_max(x, mask)
    span = jnp.maximum(hi - lo, 1e-6)
    k, q = cartesian(jnp.array([-30.0, -10.0, -4.0, -1.5, 1.5, 4.0, 10.0, 30.0]) / span, jnp.linspace(-0.5, 1.5, 9))
    x0 = lo + q * span

    def one(k, x0):
        return _linear_2(jax.nn.sigmoid(k * (x - x0)), jnp.ones_like(x), y, mask)

    a, b = jax.vmap(one)(k, x0)
    # a < 0 is the same curve as (-a, -k, b + a): keep a > 0 (the law's constraint).
    flip = a < 0
    return {"a": jnp.abs(a), "k": jnp.where(flip, -k, k), "x0": x0, "b": jnp.where(flip, b + a, b)}


logistic = Law(
    name="logistic",
    fn=_logistic,
    param_names=("a", "k", "x0", "b"),
    constraints=(Positive(), Real(), Real(), Real()),
    inputs=("x",),
    formula="y = a / (1 + exp(-k * (x - x0))) + b",
    latex=r"y = \frac{a}{1 + e^{-k (x - x_0)}} + b",
    init=_logistic_init,
    positive_x=False,
    spec=("logistic", {}),
)


# --------------------------------------------------------------------------- boundary
def _boundary(p, z):
    return p["y0"] + p["L"] * jax.nn.sigmoid(p["b"] * (z - p["z_star"]))


def _boundary_forward(u):
    y0 = jax.nn.sigmoid(u[..., 0])
    return {"y0": y0, "L": (1.0 - y0) * jax.nn.sigmoid(u[..., 1]), "b": jnp.exp(u[..., 2]), "z_star": u[..., 3]}


def _boundary_inverse(p):
    def logit(t):
        t = jnp.clip(t, 1e-6, 1 - 1e-6)
        return jnp.log(t) - jnp.log1p(-t)

    y0 = jnp.clip(jnp.asarray(p["y0"], dtype=float), 1e-6, 1 - 1e-6)
    frac = jnp.asarray(p["L"]) / (1.0 - y0)
    b = jnp.maximum(jnp.asarray(p["b"], dtype=float), 1e-8)
    return jnp.stack(jnp.broadcast_arrays(logit(y0), logit(frac), jnp.log(b), jnp.asarray(p["z_star"], dtype=float)), -1)


def _boundary_init(z, y, mask):
    lo, hi = masked_min(z, mask), masked_max(z, mask)
    ymin, ymax = masked_min(y, mask), masked_max(y, mask)
    b, q = cartesian(jnp.array([0.3, 1.0, 3.0]) / jnp.maximum((hi - lo) / 4.0, 1e-3), jnp.linspace(0.0, 1.0, 5))
    y0 = jnp.clip(ymin, 0.0, 0.95) * jnp.ones_like(b)
    return {"y0": y0, "L": jnp.clip(ymax - y0, 0.01, 1.0 - y0), "b": b, "z_star": lo + q * (hi - lo)}


sigmoid_boundary = Law(
    name="sigmoid_boundary",
    fn=_boundary,
    param_names=("y0", "L", "b", "z_star"),
    constraints=(Real(), Real(), Positive(), Real()),
    inputs=("z",),
    formula="q(z) = y0 + L * sigmoid(b * (z - z_star)),  b > 0, y0, L in [0, 1], y0 + L <= 1",
    latex=r"q_\tau(z) = y_0 + L\,\sigma\!\left(b (z - z^*)\right)",
    init=_boundary_init,
    reparam=(_boundary_forward, _boundary_inverse),
    positive_x=False,
    spec=("sigmoid_boundary", {}),
)
