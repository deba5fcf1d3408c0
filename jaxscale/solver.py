"""The batched fit engine: screen every start in one batched evaluation, polish the best few.

Pure functions only. `solve` takes padded task arrays and returns a `Solution` whose `result`
holds one code per task (as optimistix does) instead of raising for a bad lane.

Polishing is Levenberg-Marquardt: Gauss-Newton steps on the residuals for least-squares losses,
exact-Hessian Newton steps otherwise (the small parameter counts of scaling laws make both
cheap), with Nielsen's gain-ratio damping update and MINPACK-style scaling, both restarted every
`restart_iter` iterations, run for a bounded number of iterations; each lane (task, start)
carries its own convergence flag and stops updating once converged. The starts kept for
polishing are the best screened ones that are mutually distinct (`diverse_top_k`). Laws with
`Law.limits` get a last stage: candidates on the edges of the domain that the local solver only
creeps towards (an offset -> 0, a sharpness -> its bound), built from each task's best start and
polished for at most `limit_iter` iterations; a candidate replaces the best where it is lower.
"""

from __future__ import annotations

import concurrent.futures
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
      first_iter: iterations every kept start runs before `prune` applies.
      chunk_iter: iterations per pass over the lanes (task, start) not yet converged.
      ftol: relative decrease of the objective below which a step counts as converged.
      xtol: relative step size below which a step counts as converged.
      gtol: gradient infinity-norm below which a point counts as converged.
      batch_size: tasks screened at once (bounds screening memory), and the lanes (task, start)
        iterated per compiled call. None (default) picks by the devices' platform: 256 for both
        on CPU; on GPU/TPU 4,096 tasks screened at once and 65,536 lanes per call, since an
        accelerator needs wide calls to be busy (see `batch_sizes`).
      max_tasks: tasks per screening call; larger batches are screened in chunks of this size.
      min_distance: kept starts differ by at least this much in some unconstrained coordinate
        (0 keeps the plain best `polish`).
      prune: after `first_iter`, a start whose objective exceeds its task's best by more than this
        relative margin stops (inf: continue every start).
      restart_iter: the damping and scaling of a start restart every this many iterations.
      limit_iter: bound on the iterations of each limit candidate (`Law.limits`) polished from a
        task's best start after the main run.
    """

    polish: int = 8
    max_iter: int = 800
    first_iter: int = 200
    chunk_iter: int = 30
    ftol: float = 1e-13
    xtol: float = 1e-10
    gtol: float = 1e-12
    batch_size: int | None = None
    max_tasks: int = 32768
    min_distance: float = 2.0
    prune: float = 0.3
    restart_iter: int = 400
    limit_iter: int = 200


#: Default (screening tasks, lanes per call) by platform when `SolverConfig.batch_size` is None.
DEFAULT_BATCH = {"cpu": (256, 256), "accelerator": (4096, 65536)}


def batch_sizes(cfg: SolverConfig, devices=None) -> tuple[int, int]:
    """(tasks screened at once, lanes per compiled call) for `cfg` on `devices` (default all).

    Example:
        >>> batch_sizes(SolverConfig(batch_size=64))
        (64, 64)
    """
    if cfg.batch_size is not None:
        if cfg.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {cfg.batch_size}")
        return cfg.batch_size, cfg.batch_size
    devices = list(devices) if devices is not None else jax.devices()
    cpu = all(d.platform == "cpu" for d in devices)
    return DEFAULT_BATCH["cpu" if cpu else "accelerator"]


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


_UNROLL_MAX = 10  # up to this many parameters the Cholesky solve is unrolled into elementwise ops


def _spd_solve(a: Array, b: Array) -> Array:
    """Solve ``a x = b`` for a symmetric positive definite ``a [n, n]`` by Cholesky (NaN if not PD).

    For the few parameters of a scaling law the factorisation is unrolled into scalar operations,
    which vectorise across lanes (a batched LAPACK call costs several times more here).
    """
    n = a.shape[-1]
    if n > _UNROLL_MAX:
        return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), b)
    low = [[None] * n for _ in range(n)]
    for j in range(n):
        low[j][j] = jnp.sqrt(a[j, j] - sum(low[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            low[i][j] = (a[i, j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    z = []
    for i in range(n):  # forward substitution: low z = b
        z.append((b[i] - sum(low[i][k] * z[k] for k in range(i))) / low[i][i])
    x = [None] * n
    for i in reversed(range(n)):  # back substitution: low^T x = z
        x[i] = (z[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return jnp.stack(x)


class Lane(NamedTuple):
    """Where one start's Levenberg-Marquardt run stands between passes (leading axis: lanes)."""

    u: Array  # [n] unconstrained parameters
    f: Array  # objective at u
    done: Array  # converged
    it: Array  # iterations used so far
    gn: Array  # gradient inf-norm at u
    lam: Array  # damping factor
    nu: Array  # growth factor of lam after a rejected step
    d: Array  # [n] scaling: the largest curvature seen since the last restart


def fresh_lane(u0: Array, f0: Array) -> Lane:
    """A lane about to start at `u0` (objective `f0`): nothing run yet, damping to be restarted."""
    zero = jnp.zeros_like(f0)
    return Lane(u0, f0, ~jnp.isfinite(f0), jnp.zeros(f0.shape, jnp.int32), jnp.full_like(f0, jnp.inf),
                zero + 1e-3, zero + 2.0, jnp.zeros_like(u0))


def _newton_lane(objective, lane: Lane, x, y, w, cfg: SolverConfig, budget):
    """At most `budget` more damped-Newton iterations of one lane; per-lane convergence flag.

    The damping (lam, nu) and the MINPACK scaling restart every `cfg.restart_iter` iterations
    (counted over the lane's whole run), so a lane's path does not depend on how its iterations
    are split into passes. Returns the updated `Lane`.
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

    f0, g0, h0 = evaluate(lane.u)
    stop = lane.it + budget

    def cond(s):
        return (s["it"] < stop) & ~s["done"]

    def body(s):
        u, f, g, h = s["u"], s["f"], s["g"], s["h"]
        # restart: a damping grown during a slow stretch (a walk towards a saturated transform,
        # where the scaling's memory of early curvature freezes the step) is dropped
        restart = s["it"] % cfg.restart_iter == 0
        lam = jnp.where(restart, 1e-3, s["lam"])
        nu = jnp.where(restart, 2.0, s["nu"])
        # scaling as MINPACK: the largest curvature seen (since the last restart) per parameter
        d = jnp.maximum(jnp.where(restart, 0.0, s["d"]), jnp.abs(jnp.diag(h)))
        d = jnp.maximum(d, 1e-10 * jnp.max(d) + 1e-300)
        step = -_spd_solve(h + lam * jnp.diag(d), g)
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

    init = {"u": lane.u, "f": f0, "g": g0, "h": h0, "lam": lane.lam, "nu": lane.nu, "d": lane.d, "it": lane.it,
            "done": lane.done | ~jnp.isfinite(f0) | (jnp.max(jnp.abs(g0)) <= cfg.gtol)}
    s = jax.lax.while_loop(cond, body, init)
    return Lane(s["u"], s["f"], s["done"], s["it"], jnp.max(jnp.abs(s["g"])), s["lam"], s["nu"], s["d"])


def make_starts(law: Law, grid: Array | None = None):
    """starts_fn(x, y, w) -> [S, n] unconstrained starts for one task: `grid` if given, else the law's."""
    x_arg = (lambda x: x[..., 0]) if law.n_inputs == 1 else (lambda x: x)
    if grid is not None:
        return lambda x, y, w: grid
    return lambda x, y, w: law.starts(x_arg(x), y, w > 0)


def make_limits(law: Law):
    """limits_fn(u, x, y, w) -> [R, n] unconstrained limit candidates from one task's optimum `u`
    (`Law.limits`), or None when the law has none."""
    if law.limits is None:
        return None
    x_arg = (lambda x: x[..., 0]) if law.n_inputs == 1 else (lambda x: x)

    def limits_fn(u, x, y, w):
        p = law.to_params(u)
        cand = law.limits(law._full(p), x_arg(x), y, w > 0)  # fixed parameters included
        unknown = set(cand) - set(law.param_names) - set(law.fixed)
        if unknown:
            raise ValueError(f"{law.name}: limits name unknown parameter(s) {sorted(unknown)}; "
                             f"parameters: {law.param_names}")
        r = max(jnp.shape(v)[0] for v in cand.values())
        full = {n: jnp.broadcast_to(cand[n] if n in cand else p[n], (r,)) for n in law.param_names}
        return law.to_unconstrained(full)

    return limits_fn


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
    return jax.lax.map(one, xs, batch_size=min(batch_sizes(cfg)[0], x.shape[0]))


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


def best_start(u, f, done, it, gn):
    """Per task, the start with the lowest objective: arrays [T, k, ...] -> [T, ...] (`it` summed)."""
    best = np.argmin(np.where(np.isfinite(f), f, np.inf), axis=1)
    take = lambda a: np.take_along_axis(a, best[:, None, *([None] * (a.ndim - 2))], axis=1)[:, 0]  # noqa: E731
    return take(u), take(f), take(done), np.sum(it, axis=1), take(gn)


class Engine:
    """Compiled screening + Levenberg-Marquardt lanes for one (law, loss, config), sharded over lanes.

    `solve` screens every start of every task, then treats each kept (task, start) pair as a lane
    and runs passes of `cfg.chunk_iter` iterations on the lanes not yet converged and below
    `cfg.max_iter`, until none is left; after `cfg.first_iter` iterations only lanes still
    competitive with their task's best (`cfg.prune`) go on. The best start per task wins. Every
    pass runs through one compiled function on fixed-size batches of lanes (`batch_sizes`), so a
    law compiles twice in all (the screening and the lane step), converged lanes stop costing work
    at the next pass, and no lane can stall the rest.

    With several devices (all of `jax.devices()` by default, hosts included after
    `jax.distributed.initialize()`: every process then calls `fit` on the same data and gets the
    gathered result), tasks (screening) and lanes (iterations) are split over a 1-D `Mesh` with
    `jax.shard_map`; every lane's computation is local, so results do not depend on the device
    count. Screening handles at most `cfg.max_tasks` tasks per call.
    """

    def __init__(self, objective, starts_fn, cfg: SolverConfig, start_mode: str = "law", devices=None,
                 limits_fn=None):
        devices = list(devices) if devices is not None else jax.devices()
        screen_batch, self._lane_batch = batch_sizes(cfg, devices)
        cfg = cfg._replace(batch_size=screen_batch)  # what `screen` reads
        self.cfg = cfg
        self._first = min(cfg.first_iter, cfg.max_iter)
        self.n_devices = len(devices)

        if start_mode not in ("law", "shared", "task"):
            raise ValueError(f"start_mode must be 'law', 'shared' or 'task', got {start_mode!r}")

        def screen_tasks(x, y, w, grid):
            fn = (lambda *_: grid) if start_mode == "shared" else starts_fn
            return screen(objective, fn, x, y, w, cfg, task_starts=grid if start_mode == "task" else None)

        def advance(lanes, budget, x, y, w):
            step = lambda lane, b, x1, y1, w1: _newton_lane(objective, lane, x1, y1, w1, cfg, b)  # noqa: E731
            return jax.vmap(step)(lanes, budget, x, y, w)

        if self.n_devices > 1:
            mesh = Mesh(np.array(devices), ("tasks",))
            t, rep = PartitionSpec("tasks"), PartitionSpec()
            g = t if start_mode == "task" else rep
            screen_tasks = jax.shard_map(screen_tasks, mesh=mesh, in_specs=(t, t, t, g), out_specs=t, check_vma=False)
            advance = jax.shard_map(advance, mesh=mesh, in_specs=(t, t, t, t, t), out_specs=t, check_vma=False)
        self._limits = None
        if limits_fn is not None:
            def limits(u, x, y, w):
                return jax.vmap(limits_fn)(u, x, y, w)

            if self.n_devices > 1:
                limits = jax.shard_map(limits, mesh=mesh, in_specs=(t,) * 4, out_specs=t, check_vma=False)
            self._limits = jax.jit(limits)
        self._screen = jax.jit(screen_tasks)
        self._task_starts = start_mode == "task"
        self._start_mode = start_mode
        self._advance = jax.jit(advance)
        self._starts_fn = starts_fn
        self._compiled = {}  # (lane count, data shapes) -> future of the compiled lane step

    def _advance_compiled(self, size: int, n: int, x, y, w) -> concurrent.futures.Future:
        """The lane step for `size` lanes of `n` parameters, compiled in a background thread, so
        that on a first call its compilation overlaps the screening's."""
        key = (size, n, x.shape[1:], y.shape[1:], w.shape[1:], x.dtype, y.dtype, w.dtype)
        if key not in self._compiled:
            spec = lambda a, *shape: jax.ShapeDtypeStruct((size, *shape), a)  # noqa: E731
            f = x.dtype
            lanes = Lane(spec(f, n), spec(f), spec(bool), spec(np.int32), spec(f), spec(f), spec(f), spec(f, n))
            args = (lanes, spec(np.int32), spec(x.dtype, *x.shape[1:]), spec(y.dtype, *y.shape[1:]),
                    spec(w.dtype, *w.shape[1:]))
            self._compiled[key] = _COMPILER.submit(lambda: self._advance.lower(*args).compile())
        return self._compiled[key]

    def _polish(self, advance, lanes: Lane, task: np.ndarray, size: int, data, max_iter: int, prune: float):
        """Run passes of the compiled lane step over `lanes` (numpy, updated in place) until every
        lane has converged, reached `max_iter` or, after `first_iter`, fallen more than `prune`
        (relative) behind its task's best lane."""
        cfg = self.cfg
        x, y, w = data
        total = int(task.max()) + 1 if task.size else 0
        first = min(self._first, max_iter)
        todo = np.arange(task.size)  # the first pass runs every lane (max_iter = 0 too: it evaluates)
        while todo.size:
            pending = []  # every batch of the pass is dispatched before any result is read back,
            for start in range(0, todo.size, size):  # so the host gathers while XLA computes
                sel = todo[start:start + size]
                idx = np.concatenate([sel, np.full(size - sel.size, sel[0])])  # one lane count: one compilation
                it = lanes.it[idx]
                # passes of chunk_iter iterations, one ending at first_iter (where pruning starts)
                budget = np.minimum(cfg.chunk_iter, max_iter - it)
                budget = np.where(it < first, np.minimum(budget, first - it), budget).astype(np.int32)
                ti = task[idx]
                pending.append((sel, advance(Lane(*(a[idx] for a in lanes)), budget, x[ti], y[ti], w[ti])))
            for sel, out in pending:  # batches hold disjoint lanes: writing back after all is the same
                for a, new in zip(lanes, out):
                    a[sel] = _to_host(new)[:sel.size]
            # lanes well above their task's best so far are abandoned: they would rarely overtake it
            f = np.where(np.isfinite(lanes.f), lanes.f, np.inf)
            best = np.full(total, np.inf)
            np.minimum.at(best, task, f)
            margin = prune * np.abs(best[task]) if np.isfinite(prune) else np.inf
            hopeful = (lanes.it < first) | (f <= best[task] + margin)
            todo = np.nonzero(~lanes.done & np.isfinite(f) & (lanes.it < max_iter) & hopeful)[0]

    def solve(self, x, y, w, grid=None) -> Solution:
        """Solve every task of padded arrays ``x[T, P, k]``, ``y[T, P]``, ``w[T, P]``.

        `grid` is the shared ``[S, n]`` or per-task ``[T, S, n]`` unconstrained starts, as the
        engine's `start_mode` says (unused for "law").
        """
        cfg = self.cfg
        x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
        t = len(y)
        chunk = _round_up(min(t, cfg.max_tasks), self.n_devices)
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

        n_starts, n = grid.shape[-2:] if self._start_mode != "law" else jax.eval_shape(
            self._starts_fn, x[0], y[0], w[0]).shape
        size = _round_up(min(total * min(cfg.polish, n_starts), self._lane_batch), self.n_devices)
        # one device: compile the lane step while screening runs (several: the plain jit's dispatch)
        advance = self._advance_compiled(size, n, x, y, w) if self.n_devices == 1 else None
        parts = [self._screen(x[i:i + chunk], y[i:i + chunk], w[i:i + chunk], grid_part(i))
                 for i in range(0, total, chunk)]
        u0, f0 = (np.concatenate([_to_host(p[j]) for p in parts]) for j in range(2))
        k = f0.shape[1]
        # lanes = (task, start) pairs, flattened
        lanes = Lane(*(np.array(a) for a in fresh_lane(u0.reshape(total * k, -1), f0.ravel())))
        task = np.repeat(np.arange(total), k)
        advance = self._advance if advance is None else advance.result()
        self._polish(advance, lanes, task, size, (x, y, w), cfg.max_iter, cfg.prune)
        u, f, done, it, gn = best_start(lanes.u.reshape(total, k, -1), *(a.reshape(total, k) for a in
                                        (lanes.f, lanes.done, lanes.it, lanes.gn)))
        if self._limits is not None:  # limit candidates from each task's best, polished briefly
            u_lim = np.concatenate([_to_host(self._limits(u[i:i + chunk], x[i:i + chunk], y[i:i + chunk],
                                                          w[i:i + chunk])) for i in range(0, total, chunk)])
            r = u_lim.shape[1]
            # the lane step evaluates each candidate itself on its first pass (non-finite: done)
            extra = Lane(*(np.array(a) for a in fresh_lane(u_lim.reshape(total * r, -1), np.zeros(total * r))))
            self._polish(advance, extra, np.repeat(np.arange(total), r), size, (x, y, w),
                         min(cfg.limit_iter, cfg.max_iter), np.inf)
            u2, f2, done2, it2, gn2 = best_start(extra.u.reshape(total, r, -1), *(a.reshape(total, r) for a in
                                                 (extra.f, extra.done, extra.it, extra.gn)))
            win = np.isfinite(f2) & (f2 < f)
            u, f, done, gn = (np.where(win[:, None], u2, u), np.where(win, f2, f), np.where(win, done2, done),
                              np.where(win, gn2, gn))
            it = it + it2
        result = np.where(~np.isfinite(f), Status.NONFINITE, np.where(done, Status.CONVERGED, Status.MAX_ITER))
        return Solution(u=u[:t], value=f[:t], result=result[:t], n_iter=it[:t], grad_norm=gn[:t])


_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxscale-compile")


def _to_host(a) -> np.ndarray:
    """A (possibly multi-host) result as a full numpy array on this process."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m
