"""The batched fit engine: screen every start in one batched evaluation, polish the best few.

Pure functions only. `solve` takes padded task arrays and returns a `Solution` whose `result`
holds one code per task (as optimistix does) instead of raising for a bad lane.

Polishing is Levenberg-Marquardt: Gauss-Newton steps on the residuals for least-squares losses,
exact-Hessian Newton steps otherwise (the small parameter counts of scaling laws make both
cheap), with Nielsen's gain-ratio damping update and MINPACK-style scaling, run for a bounded
number of iterations; each lane carries its own convergence flag and stops updating once
converged. The starts kept for polishing are the best screened ones that are mutually distinct
(`diverse_top_k`).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

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
      first_iter: iterations run from every kept start before the best one per task is chosen.
      chunk_iter: iterations per round for the lanes still not converged after that.
      ftol: relative decrease of the objective below which a step counts as converged.
      xtol: relative step size below which a step counts as converged.
      gtol: gradient infinity-norm below which a point counts as converged.
      batch_size: tasks screened at once (bounds screening memory), and the lane count of each
        continuation round.
      max_tasks: tasks per compiled call; larger batches are solved in chunks of this size.
      min_distance: kept starts differ by at least this much in some unconstrained coordinate
        (0 keeps the plain best `polish`).
      prune: after `first_iter`, a start whose objective exceeds its task's best by more than this
        relative margin stops (inf: continue every start).
    """

    polish: int = 8
    max_iter: int = 1000
    first_iter: int = 30
    chunk_iter: int = 30
    ftol: float = 1e-13
    xtol: float = 1e-10
    gtol: float = 1e-12
    batch_size: int = 256
    max_tasks: int = 32768
    min_distance: float = 2.0
    prune: float = 0.3


class Solution(NamedTuple):
    """Best polished start per task."""

    u: Array  # [T, n] unconstrained parameters
    value: Array  # [T] objective
    result: Array  # [T] Status code
    n_iter: Array  # [T]
    grad_norm: Array  # [T]


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """One task's objective and, for least-squares losses, its residuals.

    `value(u, x, y, w)` is the reduced loss (plus penalty) at unconstrained `u`; `residuals(u, x,
    y, w)` (or None) gives r with ``value = scale(w) * sum(r^2) + penalty(u)``, letting the engine
    take Gauss-Newton steps; `penalty(u)` is the penalty alone (or None).
    """

    value: Callable
    residuals: Callable | None
    scale: Callable
    penalty: Callable | None

    def __call__(self, u, x, y, w):
        return self.value(u, x, y, w)


def make_objective(law: Law, loss: Loss, penalty_fn: Callable[[Array], Array] | None = None) -> Objective:
    """The objective of one task: `objective(u, x, y, w)` is the reduced loss at unconstrained `u`.

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

    penalty = None if penalty_fn is None else (lambda u: penalty_fn(law.to_params(u)))

    def value(u, x, y, w):
        pred = predict(u, x)
        r = loss.penalty(pred, loss.transform_target(y))
        r = jnp.where(w > 0, r, 0.0)  # padded points never produce NaN
        val = loss.reduce(r, w)
        if penalty is not None:
            val = val + penalty(u)
        return jnp.where(jnp.isfinite(val), val, jnp.inf)

    def residuals(u, x, y, w):
        r = jnp.sqrt(w) * (predict(u, x) - loss.transform_target(y))
        return jnp.where(w > 0, r, 0.0)

    def scale(w):
        return 1.0 if loss.reduction == "sum" else 1.0 / jnp.maximum(jnp.sum(w), 1e-300)

    return Objective(value, residuals if loss.least_squares else None, scale, penalty)


def _newton_lane(objective, u0, x, y, w, cfg: SolverConfig, iters: int):
    """Damped Newton from one start for at most `iters` iterations; per-lane convergence flag.

    Returns (u, f, done, iterations used, gradient inf-norm).
    """
    if objective.residuals is None:  # exact Hessian
        vg = jax.value_and_grad(objective.value)
        hess = jax.hessian(objective.value)

        def derivatives(u):
            f, g = vg(u, x, y, w)
            return f, g, hess(u, x, y, w)
    else:  # Gauss-Newton on the residuals (plus the penalty's exact derivatives)
        s = objective.scale(w)

        def derivatives(u):
            r = objective.residuals(u, x, y, w)
            jac = jax.jacfwd(objective.residuals)(u, x, y, w)
            f, g, h = s * jnp.sum(r * r), 2 * s * (jac.T @ r), 2 * s * (jac.T @ jac)
            if objective.penalty is not None:
                f = f + objective.penalty(u)
                g = g + jax.grad(objective.penalty)(u)
                h = h + jax.hessian(objective.penalty)(u)
            return jnp.where(jnp.isfinite(f), f, jnp.inf), g, h

    def evaluate(u):
        f, g, h = derivatives(u)
        return f, jnp.where(jnp.isfinite(g), g, 0.0), jnp.where(jnp.isfinite(h), h, 0.0)

    f0, g0, h0 = evaluate(u0)

    def cond(s):
        return (s["it"] < iters) & ~s["done"]

    def body(s):
        u, f, g, h, lam, nu = s["u"], s["f"], s["g"], s["h"], s["lam"], s["nu"]
        # scaling as MINPACK: the largest curvature seen so far per parameter
        d = jnp.maximum(s["d"], jnp.abs(jnp.diag(h)))
        d = jnp.maximum(d, 1e-10 * jnp.max(d) + 1e-300)
        chol = jnp.linalg.cholesky(h + lam * jnp.diag(d))
        step = -jax.scipy.linalg.cho_solve((chol, True), g)
        ok = jnp.all(jnp.isfinite(step))
        step = jnp.where(ok, step, 0.0)
        u_new = u + step
        f_new, g_new, h_new = evaluate(u_new)
        accept = ok & jnp.isfinite(f_new) & (f_new <= f)
        # Nielsen's damping update from the gain ratio of actual to predicted decrease
        predicted = -(g @ step + 0.5 * step @ (h @ step))
        rho = (f - f_new) / jnp.where(predicted > 0, predicted, jnp.inf)
        lam_acc = lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        small_f = (f - f_new) <= cfg.ftol * jnp.maximum(jnp.abs(f_new), 1e-300)
        small_x = jnp.max(jnp.abs(step)) <= cfg.xtol * (1.0 + jnp.max(jnp.abs(u)))
        conv = accept & ((small_f & small_x) | (jnp.max(jnp.abs(g_new)) <= cfg.gtol))
        return {
            "u": jnp.where(accept, u_new, u),
            "f": jnp.where(accept, f_new, f),
            "g": jnp.where(accept, g_new, g),
            "h": jnp.where(accept, h_new, h),
            "lam": jnp.where(accept, jnp.maximum(lam_acc, 1e-12), lam * nu),
            "nu": jnp.where(accept, 2.0, nu * 2.0),
            "d": d,
            "it": s["it"] + 1,
            "done": conv | (lam > 1e16),  # no descent step left: a minimum to numerical precision
        }

    init = {"u": u0, "f": f0, "g": g0, "h": h0, "lam": jnp.asarray(1e-3, u0.dtype), "nu": jnp.asarray(2.0, u0.dtype), "d": jnp.abs(jnp.diag(h0)),
            "it": jnp.asarray(0), "done": ~jnp.isfinite(f0) | (jnp.max(jnp.abs(g0)) <= cfg.gtol)}
    s = jax.lax.while_loop(cond, body, init)
    return s["u"], s["f"], s["done"], s["it"], jnp.max(jnp.abs(s["g"]))


def make_starts(law: Law, grid: Array | None = None):
    """starts_fn(x, y, w) -> [S, n] unconstrained starts for one task: `grid` if given, else the law's."""
    x_arg = (lambda x: x[..., 0]) if law.n_inputs == 1 else (lambda x: x)
    if grid is not None:
        return lambda x, y, w: grid
    return lambda x, y, w: law.starts(x_arg(x), y, w > 0)


def screen(objective, starts_fn, x, y, w, cfg: SolverConfig, task_starts=None):
    """Objective at every start of every task; keep the `cfg.polish` best per task.

    `starts_fn(x, y, w) -> [S, n]` gives one task's starts, or `task_starts[T, S, n]` gives them
    for every task. Returns ([T, k, n], [T, k]).
    """

    def one(args):
        x1, y1, w1 = args[:3]
        starts = args[3] if task_starts is not None else starts_fn(x1, y1, w1)
        vals = jax.vmap(objective, in_axes=(0, None, None, None))(starts, x1, y1, w1)
        vals = jnp.where(jnp.isnan(vals), jnp.inf, vals)
        idx = diverse_top_k(starts, vals, min(cfg.polish, starts.shape[0]), cfg.min_distance)
        return starts[idx], vals[idx]

    xs = (x, y, w) if task_starts is None else (x, y, w, task_starts)
    return jax.lax.map(one, xs, batch_size=min(cfg.batch_size, x.shape[0]))


def diverse_top_k(starts: Array, vals: Array, k: int, min_distance: float) -> Array:
    """Indices of `k` low-objective starts, greedily skipping any within `min_distance` (max-norm,
    unconstrained scale) of one already kept, so the polished starts explore distinct basins.
    Falls back to the next best when fewer than `k` distinct starts exist."""
    if min_distance <= 0:
        return jax.lax.top_k(-vals, k)[1]

    def pick(i, carry):
        chosen, score = carry
        j = jnp.argmin(score)
        near = jnp.max(jnp.abs(starts - starts[j]), axis=-1) < min_distance
        # near neighbours wait behind every distinct start; the chosen one never returns
        score = jnp.where(near, score + 1e300, score).at[j].set(jnp.inf)
        return chosen.at[i].set(j), score

    chosen = jnp.zeros(k, dtype=jnp.argmin(vals).dtype)
    score = jnp.where(jnp.isfinite(vals), vals, 1e300)
    chosen, _ = jax.lax.fori_loop(0, k, pick, (chosen, score))
    return chosen


def polish(objective, u0, x, y, w, cfg: SolverConfig, iters: int):
    """`iters` damped-Newton iterations from every start ``u0[T, k, n]`` (task data shared by its k starts).

    Returns per-start (u, f, done, it, grad_norm), each with leading axes [T, k].
    """
    lane = lambda u, x1, y1, w1: _newton_lane(objective, u, x1, y1, w1, cfg, iters)  # noqa: E731
    return jax.vmap(jax.vmap(lane, in_axes=(0, None, None, None)))(u0, x, y, w)


def best_start(u, f, done, it, gn):
    """Per task, the start with the lowest objective: arrays [T, k, ...] -> [T, ...]."""
    best = jnp.argmin(jnp.where(jnp.isfinite(f), f, jnp.inf), axis=1)
    take = lambda a: jnp.take_along_axis(a, best[:, None, *([None] * (a.ndim - 2))], axis=1)[:, 0]  # noqa: E731
    return take(u), take(f), take(done), jnp.sum(it, axis=1), take(gn)


class Engine:
    """Compiled screen + polish for one (law, loss, config), sharded over the task axis.

    `solve` screens every start, runs `cfg.first_iter` iterations from the `cfg.polish` best
    starts per task, then continues only the lanes (task, start) that have not converged,
    gathered into batches of one fixed size, `cfg.chunk_iter` iterations at a time until all
    converge or reach `cfg.max_iter`; the best start per task wins. No lane can stall the batch,
    and the continuation compiles once.

    With several devices (all of `jax.devices()` by default, hosts included after
    `jax.distributed.initialize()`: every process then calls `fit` on the same data and gets the
    gathered result), tasks are split over a 1-D `Mesh` with `jax.shard_map`;
    every task's computation is local, so results do not depend on the device count. Batches
    larger than `cfg.max_tasks` are solved in chunks of that size.
    """

    def __init__(self, objective, starts_fn, cfg: SolverConfig, start_mode: str = "law", devices=None):
        self.cfg = cfg
        self._first = min(cfg.first_iter, cfg.max_iter)
        devices = list(devices) if devices is not None else jax.devices()
        self.n_devices = len(devices)

        if start_mode not in ("law", "shared", "task"):
            raise ValueError(f"start_mode must be 'law', 'shared' or 'task', got {start_mode!r}")

        def phase_a(x, y, w, grid):
            fn = (lambda *_: grid) if start_mode == "shared" else starts_fn
            u0, _ = screen(objective, fn, x, y, w, cfg, task_starts=grid if start_mode == "task" else None)
            return polish(objective, u0, x, y, w, cfg, self._first)

        def phase_b(u, x, y, w):
            out = polish(objective, u[:, None], x, y, w, cfg, cfg.chunk_iter)
            return jax.tree.map(lambda a: a[:, 0], out)

        if self.n_devices > 1:
            mesh = Mesh(np.array(devices), ("tasks",))
            t, rep = PartitionSpec("tasks"), PartitionSpec()
            g = t if start_mode == "task" else rep
            phase_a = jax.shard_map(phase_a, mesh=mesh, in_specs=(t, t, t, g), out_specs=t, check_vma=False)
            phase_b = jax.shard_map(phase_b, mesh=mesh, in_specs=(t, t, t, t), out_specs=t, check_vma=False)
        self._phase_a = jax.jit(phase_a)
        self._task_starts = start_mode == "task"
        self._phase_b = jax.jit(phase_b)

    def solve(self, x, y, w, grid=None) -> Solution:
        """Solve every task of padded arrays ``x[T, P, k]``, ``y[T, P]``, ``w[T, P]``.

        `grid` is the shared ``[S, n]`` or per-task ``[T, S, n]`` unconstrained starts, as the
        engine's `start_mode` says (unused for "law").
        """
        x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
        t = len(y)
        chunk = _round_up(min(t, self.cfg.max_tasks), self.n_devices)
        total = _round_up(t, chunk)
        grid = np.zeros((1, 1)) if grid is None else np.asarray(grid)
        if total != t:  # pad with weightless copies of task 0 (dropped below)
            extra = np.zeros(total - t, dtype=int)
            x, y = np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
            w = np.concatenate([w, np.zeros_like(w[extra])])
            if self._task_starts:
                grid = np.concatenate([grid, grid[extra]])

        def grid_part(i):
            return grid[i:i + chunk] if self._task_starts else grid

        parts = [self._phase_a(x[i:i + chunk], y[i:i + chunk], w[i:i + chunk], grid_part(i))
                 for i in range(0, total, chunk)]
        # lanes = (task, start) pairs, flattened
        u, f, done, it, gn = (np.concatenate([_to_host(p[j]) for p in parts]) for j in range(5))
        k = f.shape[1]
        u, f, done, it, gn = u.reshape(total * k, -1), f.ravel(), done.ravel(), it.ravel(), gn.ravel()
        task = np.repeat(np.arange(total), k)
        last = np.full(done.shape, self._first)  # iterations used by each lane
        size = _round_up(min(total, self.cfg.batch_size), self.n_devices)
        while True:
            # lanes well above their task's best so far are abandoned: they would rarely overtake it
            best = np.min(np.where(np.isfinite(f), f, np.inf).reshape(total, k), axis=1)[task]
            margin = self.cfg.prune * np.abs(best) if np.isfinite(self.cfg.prune) else np.inf
            hopeful = f <= best + margin
            todo = np.nonzero(~done & np.isfinite(f) & (last < self.cfg.max_iter) & hopeful)[0]
            if todo.size == 0:
                break
            todo = todo[:size]  # one fixed lane count: a single compilation serves every round
            idx = np.concatenate([todo, np.full(size - todo.size, todo[0])])
            ti = task[idx]
            out = [_to_host(a) for a in self._phase_b(u[idx], x[ti], y[ti], w[ti])]
            keep = slice(0, todo.size)
            u[todo], f[todo], done[todo], gn[todo] = out[0][keep], out[1][keep], out[2][keep], out[4][keep]
            it[todo] += out[3][keep]
            last[todo] += self.cfg.chunk_iter
        u, f, done, it, gn = (np.asarray(a) for a in best_start(
            u.reshape(total, k, -1), f.reshape(total, k), done.reshape(total, k), it.reshape(total, k),
            gn.reshape(total, k)))
        result = np.where(~np.isfinite(f), Status.NONFINITE, np.where(done, Status.CONVERGED, Status.MAX_ITER))
        return Solution(u=u[:t], value=f[:t], result=result[:t], n_iter=it[:t], grad_norm=gn[:t])


def _to_host(a) -> np.ndarray:
    """A (possibly multi-host) result as a full numpy array on this process."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m
