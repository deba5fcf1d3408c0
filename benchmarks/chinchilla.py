"""Benchmark 1: Chinchilla approach 3 on the 240 Besiroglu et al. points, 4,500-start grid.

jaxscale: ``jaxscale.fit(data, laws.chinchilla, loss="huber_log")`` with the law's default
4,500-start grid (all starts scored in one batched evaluation, the best 8 polished).

Baseline (the replication's procedure): SciPy ``minimize(method="L-BFGS-B")`` with default
options from every one of the 4,500 starts, the objective and its gradient given by a jitted JAX
``value_and_grad`` of exactly jaxscale's objective (``solver.make_objective(laws.chinchilla,
losses.get("huber_log"))``: the SUM of Huber_1e-3 of the log residuals) in the same unconstrained
parameters (log E, log A, log B, alpha, beta); the best final objective over all starts is kept.

Targets: the same best objective (reference 1.01827e-3), >= 20x faster (steady state).

    python -m benchmarks.chinchilla                 # full size: all 4,500 starts
    python -m benchmarks.chinchilla --scale 0.1     # quick: an evenly spaced 450-start subset
"""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

import jaxscale
from jaxscale import datasets, laws, losses
from jaxscale.data import Dataset
from jaxscale.solver import make_objective

from benchmarks import _common as C

TITLE = "1. Chinchilla approach 3 (240 Besiroglu points, 4,500-start grid)"
N_GRID = 4500
REFERENCE_OBJECTIVE = 1.01827e-3
LAW = laws.chinchilla


def load_data() -> Dataset:
    """The 240 points (the 5 highest losses dropped) as a one-task Dataset."""
    df = datasets.load_chinchilla(data_dir=C.data_dir())
    return Dataset.from_frame(df, x=["N", "D"], y="loss")


def grid_starts(n_starts: int | None = None) -> np.ndarray:
    """Unconstrained starts ``[S, 5]``: the 4,500-point grid, or an evenly spaced subset of it."""
    grid = LAW.grid_array()
    if n_starts is None or n_starts >= len(grid):
        return grid
    idx = np.unique(np.linspace(0, len(grid) - 1, max(int(n_starts), 1)).round().astype(int))
    return grid[idx]


def to_constrained(u: np.ndarray) -> np.ndarray:
    """Unconstrained ``[S, 5]`` -> constrained ``[S, 5]`` in `LAW.param_names` order (for ``starts=``)."""
    p = LAW.to_params(jnp.asarray(u))
    return np.stack([np.asarray(p[n]) for n in LAW.param_names], axis=-1)


def run_jaxscale(data: Dataset, starts_u: np.ndarray | None = None) -> jaxscale.FitResult:
    """jaxscale's fit; `starts_u` None means the law's default 4,500-start grid."""
    starts = None if starts_u is None else to_constrained(starts_u)
    return jaxscale.fit(data, LAW, loss="huber_log", starts=starts)


def make_baseline(data: Dataset):
    """The SciPy loop: ``run(starts_u) -> (best objective, best u, final objective per start)``.

    A fresh jitted value-and-grad each time this is called, so the first `run` includes its
    compilation.
    """
    objective = make_objective(LAW, losses.get("huber_log"))
    vg = jax.jit(jax.value_and_grad(objective))
    x, y, w = (jnp.asarray(a[0]) for a in (data.x, data.y, data.weight))

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = vg(jnp.asarray(u), x, y, w)
        return float(f), np.asarray(g, dtype=float)

    def run(starts_u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        finals = np.full(len(starts_u), np.inf)
        best, best_u = np.inf, np.asarray(starts_u[0], dtype=float)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for i, u0 in enumerate(starts_u):
                r = minimize(fun, np.asarray(u0, dtype=float), jac=True, method="L-BFGS-B")
                finals[i] = r.fun if np.isfinite(r.fun) else np.inf
                if finals[i] < best:
                    best, best_u = finals[i], r.x
        return float(np.min(finals)), best_u, finals

    return run


def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], None, repeats=5, baseline_repeats=1, seed=False)
    p.add_argument("--starts", type=int, default=None, help=f"number of grid starts (default all {N_GRID:,})")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the 4,500 starts (ignored with --starts)")
    args = p.parse_args(argv)
    n_starts = args.starts if args.starts is not None else max(1, int(round(N_GRID * args.scale)))
    n_starts = min(n_starts, N_GRID)
    full = n_starts == N_GRID

    data = load_data()
    starts = grid_starts(n_starts)
    print(f"Chinchilla: {data.n_points[0]} points, {len(starts)} starts", flush=True)

    # jaxscale first (fresh process: its first call includes compilation)
    tj = C.time_calls(lambda: run_jaxscale(data, None if full else starts), repeats=args.repeats)
    res = tj.result
    fj = float(res.objective[0])
    print(f"  jaxscale: first {tj.first_s:.3f} s, steady {tj.steady_s:.4f} s, objective {fj:.9e}", flush=True)

    run = make_baseline(data)
    tb = C.time_calls(lambda: run(starts), repeats=args.baseline_repeats)
    fb, ub, finals = tb.result
    print(f"  SciPy L-BFGS-B loop: first {tb.first_s:.2f} s, steady {tb.steady_s:.2f} s, best {fb:.9e}", flush=True)

    n_mem = min(20, len(starts))
    mem_b = C.tracemalloc_peak(lambda: run(starts[:n_mem]))
    q = C.compare_objectives([fj], [fb])
    n_reach = int(np.sum(finals <= fb * (1 + C.REL_TOL)))
    pj = dict(zip(LAW.param_names, res.param_array[0]))
    pb = {k: float(np.asarray(v)) for k, v in LAW.to_params(jnp.asarray(ub)).items()}
    speed_first, speed_steady = tb.first_s / tj.first_s, tb.steady_s / tj.steady_s
    same = fj <= fb * (1 + C.REL_TOL)

    body = [
        f"Scale: {C.scale_label(full, f'{len(starts)} of the {N_GRID:,} grid starts')}. "
        f"Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        *C.timing_table([("jaxscale `fit(loss='huber_log')`", tj, 1),
                         (f"SciPy L-BFGS-B + jitted JAX value_and_grad, {len(starts):,} starts", tb, 1)]),
        "",
        f"Speed-up (baseline / jaxscale): first call {C.fmt_x(speed_first)}, steady state "
        f"{C.fmt_x(speed_steady)}. Process peak RSS {C.fmt_mib(C.max_rss())} MiB. "
        + C.memory_note("SciPy loop", mem_b, f"{n_mem} starts"),
        "",
        f"Best objective: jaxscale {fj:.9e}, SciPy {fb:.9e} (relative difference {(fj - fb) / fb:+.2e}; "
        f"published {REFERENCE_OBJECTIVE:.5e}); {n_reach:,} of {len(starts):,} SciPy starts end within "
        f"1e-6 of the SciPy best; jaxscale status `{jaxscale.Status(int(res.status[0])).name.lower()}`.",
        "",
        "| params | E | A | B | alpha | beta |",
        "|---|---:|---:|---:|---:|---:|",
        "| jaxscale | " + " | ".join(f"{pj[n]:.6g}" for n in LAW.param_names) + " |",
        "| SciPy | " + " | ".join(f"{pb[n]:.6g}" for n in LAW.param_names) + " |",
        "",
        f"Quality: {q.line()}.",
        "",
        f"Targets: same best objective {C.check(same)}; >= 20x faster (steady state) "
        f"{C.check(speed_steady >= 20)} ({C.fmt_x(speed_steady)}).",
        "",
        f"Timing: jaxscale steady state = best of {args.repeats} calls; SciPy steady state = "
        + (f"best of {args.baseline_repeats} further run(s)" if args.baseline_repeats else "its single run")
        + "; its first call includes jitting the value-and-grad. Both use the same 240 points (padded "
        "to 256, padding weighted 0) and the same objective function.",
    ]
    C.emit(args, TITLE, "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
