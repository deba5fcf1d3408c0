"""The batched fit engine: screen every start in one batched evaluation, polish the best few.

Pure functions only. `solve` takes padded task arrays and returns a `Solution` whose `result`
holds one code per task (as optimistix does) instead of raising for a bad lane.

Polishing is a damped Newton method (Levenberg-Marquardt damping of the exact Hessian, which
the small parameter counts of scaling laws make cheap) run for a bounded number of iterations;
each lane carries its own convergence flag and stops updating once converged.
"""

from __future__ import annotations

import enum
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxscale.laws.base import Law
from jaxscale.losses import Loss

Array = jax.Array


class Status(enum.IntEnum):
    """Per-task outcome of a fit."""

    CONVERGED = 0
    MAX_ITER = 1
    HIT_BOUND = 2
    NONFINITE = 3
    TOO_FEW_POINTS = 4
    INVALID_DATA = 5

    @property
    def ok(self) -> bool:
        return self in (Status.CONVERGED, Status.HIT_BOUND, Status.MAX_ITER)


class SolverConfig(NamedTuple):
    """Options of the fit engine (configuration as data).

    Attributes:
      polish: starts kept per task after screening, then polished.
      max_iter: bound on damped-Newton iterations per start.
      ftol: relative decrease of the objective below which a step counts as converged.
      xtol: relative step size below which a step counts as converged.
      gtol: gradient infinity-norm below which a point counts as converged.
      batch_size: tasks screened at once (bounds screening memory).
    """

    polish: int = 8
    max_iter: int = 200
    ftol: float = 1e-13
    xtol: float = 1e-10
    gtol: float = 1e-12
    batch_size: int = 256


class Solution(NamedTuple):
    """Best polished start per task."""

    u: Array  # [T, n] unconstrained parameters
    value: Array  # [T] objective
    result: Array  # [T] Status code
    n_iter: Array  # [T]
    grad_norm: Array  # [T]


def make_objective(law: Law, loss: Loss, penalty_fn: Callable[[Array], Array] | None = None):
    """objective(u, x, y, w) for one task: the reduced loss of the law at unconstrained `u`.

    `x` is ``[P, k]``, `y` the raw target ``[P]``, `w` the weight times the mask ``[P]``.
    """
    x_arg = (lambda x: x[..., 0]) if law.n_inputs == 1 else (lambda x: x)

    def predict(u, x):
        p = law.to_params(u)
        xx = x_arg(x)
        if loss.scale == "log":
            return law.log(p, xx)
        y = law(p, xx)
        return jnp.log1p(y) if loss.scale == "log1p" else y

    def objective(u, x, y, w):
        pred = predict(u, x)
        r = loss.penalty(pred, loss.transform_target(y))
        r = jnp.where(w > 0, r, 0.0)  # padded points never produce NaN
        val = loss.reduce(r, w)
        if penalty_fn is not None:
            val = val + penalty_fn(law.to_params(u))
        return jnp.where(jnp.isfinite(val), val, jnp.inf)

    return objective


def _newton_lane(objective, u0, x, yt, w, cfg: SolverConfig):
    """Damped Newton from one start; bounded loop, per-lane convergence."""
    vg = jax.value_and_grad(objective)
    hess = jax.hessian(objective)
    n = u0.shape[0]

    def evaluate(u):
        f, g = vg(u, x, yt, w)
        return f, g, hess(u, x, yt, w)

    f0, g0, h0 = evaluate(u0)
    bad0 = ~jnp.isfinite(f0)

    def cond(s):
        return (s["it"] < cfg.max_iter) & ~s["done"]

    def body(s):
        u, f, g, h, lam = s["u"], s["f"], s["g"], s["h"], s["lam"]
        d = jnp.abs(jnp.diag(h))
        d = jnp.maximum(d, 1e-10 * jnp.max(d) + 1e-300)
        a = h + lam * jnp.diag(d)
        chol = jnp.linalg.cholesky(a)
        step = -jax.scipy.linalg.cho_solve((chol, True), g)
        ok = jnp.all(jnp.isfinite(step))
        step = jnp.where(ok, step, 0.0)
        u_new = u + step
        f_new, g_new, h_new = evaluate(u_new)
        g_new = jnp.where(jnp.isfinite(g_new), g_new, 0.0)
        h_new = jnp.where(jnp.isfinite(h_new), h_new, 0.0)
        accept = ok & jnp.isfinite(f_new) & (f_new <= f)
        small_f = (f - f_new) <= cfg.ftol * jnp.maximum(jnp.abs(f_new), 1e-300)
        small_x = jnp.max(jnp.abs(step)) <= cfg.xtol * (1.0 + jnp.max(jnp.abs(u)))
        conv = accept & ((small_f & small_x) | (jnp.max(jnp.abs(g_new)) <= cfg.gtol))
        stuck = lam > 1e16
        return {
            "u": jnp.where(accept, u_new, u),
            "f": jnp.where(accept, f_new, f),
            "g": jnp.where(accept, g_new, g),
            "h": jnp.where(accept, h_new, h),
            "lam": jnp.where(accept, jnp.maximum(lam / 3.0, 1e-12), lam * 4.0),
            "it": s["it"] + 1,
            "done": conv | stuck,
        }

    init = {
        "u": u0, "f": f0, "g": jnp.where(jnp.isfinite(g0), g0, 0.0), "h": jnp.where(jnp.isfinite(h0), h0, 0.0),
        "lam": jnp.asarray(1e-3, u0.dtype), "it": jnp.asarray(0), "done": bad0,
    }
    s = jax.lax.while_loop(cond, body, init) if cfg.max_iter > 0 else init
    gnorm = jnp.max(jnp.abs(s["g"])) if n else jnp.asarray(0.0)
    result = jnp.where(
        ~jnp.isfinite(s["f"]), Status.NONFINITE, jnp.where(s["done"], Status.CONVERGED, Status.MAX_ITER)
    )
    return s["u"], s["f"], result, s["it"], gnorm


def make_starts(law: Law, grid: Array | None = None):
    """starts_fn(x, y, w) -> [S, n] unconstrained starts for one task: `grid` if given, else the law's."""
    x_arg = (lambda x: x[..., 0]) if law.n_inputs == 1 else (lambda x: x)
    if grid is not None:
        return lambda x, y, w: grid
    return lambda x, y, w: law.starts(x_arg(x), y, w > 0)


def screen(objective, starts_fn, x, yt, w, cfg: SolverConfig):
    """Objective at every start of every task; keep the `polish` best per task.

    `starts_fn(x, yt, w) -> [S, n]` gives one task's starts. Returns ([T, k, n], [T, k]).
    """

    def one(args):
        x1, y1, w1 = args
        starts = starts_fn(x1, y1, w1)
        vals = jax.vmap(objective, in_axes=(0, None, None, None))(starts, x1, y1, w1)
        vals = jnp.where(jnp.isnan(vals), jnp.inf, vals)
        k = min(cfg.polish, starts.shape[0])
        neg, idx = jax.lax.top_k(-vals, k)
        return starts[idx], -neg

    return jax.lax.map(one, (x, yt, w), batch_size=min(cfg.batch_size, x.shape[0]))


def polish(objective, u0, x, yt, w, cfg: SolverConfig) -> Solution:
    """Damped Newton from every kept start ([T, k, n]); return the best per task."""
    lane = lambda u, x1, y1, w1: _newton_lane(objective, u, x1, y1, w1, cfg)  # noqa: E731
    per_start = jax.vmap(lane, in_axes=(0, None, None, None))
    u, f, res, it, gn = jax.vmap(per_start)(u0, x, yt, w)
    f_rank = jnp.where(jnp.isfinite(f), f, jnp.inf)
    best = jnp.argmin(f_rank, axis=1)
    take = lambda a: jnp.take_along_axis(a, best[:, None, *([None] * (a.ndim - 2))], axis=1)[:, 0]  # noqa: E731
    return Solution(u=take(u), value=take(f), result=take(res), n_iter=jnp.sum(it, axis=1), grad_norm=take(gn))


def solve(objective, starts_fn, x, yt, w, cfg: SolverConfig) -> Solution:
    """Screen all starts, then polish the best `cfg.polish` per task."""
    u0, _ = screen(objective, starts_fn, x, yt, w, cfg)
    return polish(objective, u0, x, yt, w, cfg)
