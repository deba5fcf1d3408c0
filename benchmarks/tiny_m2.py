"""Benchmark 3: 20,000 tiny saturating power-law (M2) fits, 3 parameters, 10 points each.

Problem (seeded numpy RNG, ``generate``): per task 10 log-spaced x over 1.5-3 decades starting at
10..1e4; truth eps_inf ~ U(0.5, 3), c ~ U(-0.8, -0.1), beta set so that the power-law term at the
smallest x is r ~ logU(0.3, 10) times eps_inf; y = truth times (1 + sigma eps) with
sigma ~ U(0.005, 0.02) per task.

jaxscale: ``jaxscale.fit(data, laws.saturating_power_law, loss="mse", polish=1)``: its own
data-driven starts are screened and only the best is polished, as the baseline polishes its one
guess (jaxscale never sees the truth).

Baseline: a loop of ``scipy.optimize.curve_fit`` (Levenberg-Marquardt, analytic Jacobian) on raw y
from a good initial guess: the truth perturbed by about 10 % (eps_inf and beta multiplied by
exp(0.1 N(0,1)), c + 0.05 N(0,1), seeded). The objective compared is jaxscale's: mean squared error
on raw y. curve_fit is unconstrained, so it may end with eps_inf < 0 or beta < 0 (outside
jaxscale's domain eps_inf, beta > 0); such tasks are counted, and the quality target is judged on the
others. ``--bounded`` gives curve_fit the bounds eps_inf, beta >= 0 instead (TRF, slower, but the
same feasible set on every task).

Targets: >= 3x faster than the curve_fit loop; no worse on >= 99.5 % of tasks.

    python -m benchmarks.tiny_m2                  # full size: 20,000 tasks
    python -m benchmarks.tiny_m2 --tasks 500      # quick
    python -m benchmarks.tiny_m2 --bounded        # curve_fit with bounds (TRF)
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

import jaxscale
from jaxscale import laws
from jaxscale.data import Dataset

from benchmarks import _common as C

TITLE = "3. Tiny saturating power-law (M2) fits: 20,000 tasks of 10 points"
DEFAULT_TASKS = 20_000
N_POINTS = 10
LAW = laws.saturating_power_law
LOSS = "mse"
POLISH = 1


def generate(n_tasks: int, seed: int = 0, n_points: int = N_POINTS) -> dict[str, np.ndarray]:
    """``x[T, P]``, noisy ``y``, ``truth[T, 3]`` (eps_inf, beta, c) and the initial ``guess[T, 3]``."""
    rng = np.random.default_rng(seed)
    t, p = n_tasks, n_points
    lx0 = rng.uniform(np.log(10.0), np.log(1e4), t)
    span = rng.uniform(np.log(10**1.5), np.log(1e3), t)
    x = np.exp(lx0[:, None] + span[:, None] * np.linspace(0.0, 1.0, p)[None, :])
    eps = rng.uniform(0.5, 3.0, t)
    c = rng.uniform(-0.8, -0.1, t)
    ratio = np.exp(rng.uniform(np.log(0.3), np.log(10.0), t))
    beta = ratio * eps / x[:, 0] ** c
    y_true = eps[:, None] + beta[:, None] * x**c[:, None]
    sigma = rng.uniform(0.005, 0.02, t)
    y = y_true * (1.0 + sigma[:, None] * rng.standard_normal((t, p)))
    truth = np.stack([eps, beta, c], axis=1)
    guess = np.stack([eps * np.exp(0.1 * rng.standard_normal(t)), beta * np.exp(0.1 * rng.standard_normal(t)),
                      c + 0.05 * rng.standard_normal(t)], axis=1)
    return {"x": x, "y": y, "y_true": y_true, "truth": truth, "guess": guess}


def to_dataset(prob: dict[str, np.ndarray]) -> Dataset:
    return Dataset.from_arrays(prob["x"], prob["y"])


def run_jaxscale(data: Dataset) -> jaxscale.FitResult:
    return jaxscale.fit(data, LAW, loss=LOSS, polish=POLISH)


def m2(x: np.ndarray, eps: float, beta: float, c: float) -> np.ndarray:
    return eps + beta * x**c


def m2_jac(x: np.ndarray, eps: float, beta: float, c: float) -> np.ndarray:
    xc = x**c
    return np.stack([np.ones_like(x), xc, beta * xc * np.log(x)], axis=1)


def mse(x: np.ndarray, y: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Mean squared error per task of ``params[T, 3]`` on ``x, y [T, P]``."""
    with np.errstate(all="ignore"):
        pred = params[:, 0:1] + params[:, 1:2] * x ** params[:, 2:3]
        return np.mean((pred - y) ** 2, axis=1)


def run_scipy(x: np.ndarray, y: np.ndarray, guess: np.ndarray, bounded: bool = False
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """curve_fit per task from `guess`: (objective [T] (inf where it failed), params [T, 3], failures).

    ``bounded=True`` passes bounds eps_inf, beta >= 0 (jaxscale's domain; curve_fit then uses TRF).
    """
    t = len(x)
    popt = np.full((t, 3), np.nan)
    failed = 0
    kw = {"bounds": ([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf])} if bounded else {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(t):
            try:
                popt[i], _ = curve_fit(m2, x[i], y[i], p0=guess[i], jac=m2_jac, **kw)
            except (RuntimeError, ValueError):
                failed += 1
    f = mse(x, y, popt)
    return np.where(np.isfinite(f), f, np.inf), popt, failed


def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], DEFAULT_TASKS, baseline_tasks=0, repeats=3, baseline_repeats=1)
    p.add_argument("--bounded", action="store_true",
                   help="give curve_fit the bounds eps_inf, beta >= 0 (jaxscale's domain; TRF instead of LM)")
    args = p.parse_args(argv)
    n_tasks, full = C.resolve_tasks(args, DEFAULT_TASKS)
    n_base = C.baseline_count(args, n_tasks)

    prob = generate(n_tasks, args.seed)
    data = to_dataset(prob)
    print(f"M2: {n_tasks:,} tasks x {N_POINTS} points; curve_fit on {n_base:,} tasks", flush=True)

    tj = C.time_calls(lambda: run_jaxscale(data), repeats=args.repeats)
    res = tj.result
    print(f"  jaxscale: first {tj.first_s:.3f} s, steady {tj.steady_s:.3f} s", flush=True)

    xs, ys, gs = prob["x"][:n_base], prob["y"][:n_base], prob["guess"][:n_base]
    tb = C.time_calls(lambda: run_scipy(xs, ys, gs, bounded=args.bounded), repeats=args.baseline_repeats)
    fb, pb, n_failed = tb.result
    factor = n_tasks / n_base
    tb_all = tb.scaled(factor)
    print(f"  curve_fit ({n_base:,} tasks): first {tb.first_s:.2f} s, steady {tb.steady_s:.2f} s", flush=True)

    n_mem = min(200, n_base)
    mem_b = C.tracemalloc_peak(lambda: run_scipy(xs[:n_mem], ys[:n_mem], gs[:n_mem], bounded=args.bounded))
    fj = np.asarray(res.objective[:n_tasks], dtype=float)
    q = C.compare_objectives(fj[:n_base], fb)
    outside = ((pb[:, 0] < 0) | (pb[:, 1] < 0)) & np.isfinite(fb)
    q_in = C.compare_objectives(fj[:n_base][~outside], fb[~outside])
    status = {jaxscale.Status(int(s)).name.lower(): int(c) for s, c in zip(*np.unique(res.status, return_counts=True))}
    sp_first, sp_steady = tb_all.first_s / tj.first_s, tb_all.steady_s / tj.steady_s
    extrap = n_base < n_tasks
    how = "TRF, bounds eps_inf, beta >= 0" if args.bounded else "LM"
    base_name = f"curve_fit loop ({how}, analytic Jacobian, perturbed-truth guess)" + (
        f", measured on {n_base:,} tasks x {factor:.1f} (extrapolated)" if extrap else "")

    body = [
        f"Scale: {C.scale_label(full, f'{n_tasks:,} tasks')}. Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        *C.timing_table([(f"jaxscale `fit(loss='mse')`, {n_tasks:,} tasks", tj, n_tasks),
                         (base_name, tb_all, n_tasks)]),
        "",
        f"Speed-up (baseline / jaxscale): first call {C.fmt_x(sp_first)}, steady state {C.fmt_x(sp_steady)}. "
        f"Process peak RSS {C.fmt_mib(C.max_rss())} MiB. " + C.memory_note("curve_fit loop", mem_b, f"{n_mem} tasks"),
        "",
        f"Quality, all tasks: {q.line()}.",
        "",
        f"curve_fit raised (no convergence) on {n_failed} task(s) (counted as jaxscale better) and ended outside "
        f"jaxscale's domain (eps_inf < 0 or beta < 0, a lower objective jaxscale cannot reach) on "
        f"{int(outside.sum())} task(s). Quality on the {q_in.n:,} tasks where curve_fit's answer is in jaxscale's "
        f"domain: worse on {q_in.share_worse:.2%} ({round(q_in.share_worse * q_in.n)}), median ratio "
        f"{q_in.median_ratio:.6f}. jaxscale statuses: {status}.",
        "",
        f"Targets: >= 3x faster {C.check(sp_steady >= 3)} (steady {C.fmt_x(sp_steady)}, first call "
        f"{C.fmt_x(sp_first)}); no worse on >= 99.5 % of tasks {C.check(q_in.share_no_worse >= 0.995)} "
        f"({q_in.share_no_worse:.2%} of the tasks with a feasible curve_fit answer; {q.share_no_worse:.2%} of all).",
        "",
        f"jaxscale steady state = best of {args.repeats} calls; curve_fit = "
        + (f"best of {args.baseline_repeats} further run(s)." if args.baseline_repeats else "its single run.")
        + " Run with `--bounded` to give curve_fit jaxscale's domain (then all tasks are comparable).",
    ]
    C.emit(args, TITLE, "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
