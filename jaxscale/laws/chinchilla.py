"""Chinchilla L(N, D) (Hoffmann et al. 2022) and the over-training law L(C, M) (Gadre et al. 2024)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.laws._grid import cartesian, masked_mean, masked_min
from jaxscale.laws.base import Law, Positive, Real

Array = jax.Array

# The 4,500-start grid of Hoffmann et al. / Besiroglu et al. (e = log E, a = log A, b = log B).
CHINCHILLA_GRID = {
    "E": np.exp(np.arange(-1.0, 1.0 + 1e-9, 0.5)),
    "A": np.exp(np.arange(0.0, 25.0 + 1e-9, 5.0)),
    "B": np.exp(np.arange(0.0, 25.0 + 1e-9, 5.0)),
    "alpha": np.arange(0.0, 2.0 + 1e-9, 0.5),
    "beta": np.arange(0.0, 2.0 + 1e-9, 0.5),
}


def _chinchilla(p, x):
    n, d = x[..., 0], x[..., 1]
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def _chinchilla_log(p, x):
    ln, ld = jnp.log(x[..., 0]), jnp.log(x[..., 1])
    terms = jnp.stack(
        jnp.broadcast_arrays(
            jnp.log(p["A"]) - p["alpha"] * ln, jnp.log(p["B"]) - p["beta"] * ld, jnp.log(p["E"]) * jnp.ones_like(ln)
        ),
        axis=-1,
    )
    return jax.nn.logsumexp(terms, axis=-1)


chinchilla = Law(
    name="chinchilla",
    fn=_chinchilla,
    log_fn=_chinchilla_log,
    param_names=("E", "A", "B", "alpha", "beta"),
    constraints=(Positive(), Positive(), Positive(), Real(), Real()),
    inputs=("N", "D"),
    formula="L = E + A / N^alpha + B / D^beta",
    latex=r"L(N, D) = E + \frac{A}{N^{\alpha}} + \frac{B}{D^{\beta}}",
    default_grid=CHINCHILLA_GRID,
    spec=("chinchilla", {}),
)


def _overtraining(p, x):
    c, m = x[..., 0], x[..., 1]
    eta = p["eta"]
    return p["E"] + (p["a"] * m**eta + p["b"] * m ** (-eta)) * c ** (-eta)


def _overtraining_init(x, y, mask):
    c, m = x[..., 0], x[..., 1]
    ymin = masked_min(y, mask)
    e, eta = cartesian(ymin * jnp.linspace(0.0, 0.97, 12), jnp.geomspace(0.02, 0.8, 12))

    def project(e, eta):
        # y - E = a g1 + b g2 with g1 = M^eta C^-eta, g2 = M^-eta C^-eta: 2x2 least squares.
        g1 = jnp.where(mask, (m / c) ** eta, 0.0)
        g2 = jnp.where(mask, (1.0 / (m * c)) ** eta, 0.0)
        r = jnp.where(mask, y - e, 0.0)
        s11, s12, s22 = jnp.sum(g1 * g1), jnp.sum(g1 * g2), jnp.sum(g2 * g2)
        t1, t2 = jnp.sum(g1 * r), jnp.sum(g2 * r)
        det = s11 * s22 - s12 * s12
        a = (s22 * t1 - s12 * t2) / det
        b = (s11 * t2 - s12 * t1) / det
        scale = masked_mean(r, mask) / jnp.maximum(masked_mean(g1 + g2, mask), 1e-300)
        ok = jnp.isfinite(a) & jnp.isfinite(b) & (a > 0) & (b > 0)
        return jnp.where(ok, a, scale), jnp.where(ok, b, scale)

    a, b = jax.vmap(project)(e, eta)
    return {"E": e, "a": a, "b": b, "eta": eta}


overtraining = Law(
    name="overtraining",
    fn=_overtraining,
    param_names=("E", "a", "b", "eta"),
    constraints=(Positive(), Positive(), Positive(), Positive()),
    inputs=("C", "M"),
    formula="L = E + (a * M^eta + b * M^-eta) * C^-eta",
    latex=r"L(C, M) = E + \left(a M^{\eta} + b M^{-\eta}\right) C^{-\eta}",
    init=_overtraining_init,
    spec=("overtraining", {}),
)
