"""Benchmark 6: time per task as the number of tasks grows, T = 1e2 .. 1e5 (CPU).

Problem: the tiny saturating power-law (M2) tasks of ``benchmarks.tiny_m2`` (10 points, MSE on raw
y); ``--law bnsl1`` uses the BNSL-1 tasks of ``benchmarks.bnsl_tasks`` instead (mse_log). For each T
a fresh problem of T tasks is fitted with ``jaxscale.fit``: the first call (a new padded shape, so it
includes compilation) and the steady state (best of ``--repeats``). Cost should grow linearly: the
table gives time per task and the log-log slope of steady time against T over T >= 1e3.
For reference the per-task time of the SciPy baseline (curve_fit loop, resp. least_squares loop from
jaxscale's screened starts) is measured on ``--baseline-tasks`` tasks.

    python -m benchmarks.scaling                     # M2, T = 100, 1,000, 10,000, 100,000
    python -m benchmarks.scaling --tasks 1000        # quick: T = 100, 1,000
    python -m benchmarks.scaling --law bnsl1 --tasks 10000
"""

from __future__ import annotations

import sys

import numpy as np

from jaxscale.data import bucket_tasks

from benchmarks import _common as C
from benchmarks import bnsl_tasks, tiny_m2

DEFAULT_MAX = 100_000
TITLES = {"m2": "6. Scaling: time per task for T = 1e2 .. 1e5 (M2 tiny tasks)",
          "bnsl1": "6b. Scaling: time per task (BNSL-1 tasks)"}
#: Sections of runs on an accelerator (tasks/s and peak device memory added), kept beside the CPU ones.
GPU_TITLES = {"m2": "6c. Scaling on GPU: time per task (M2 tiny tasks)",
              "bnsl1": "6d. Scaling on GPU: time per task (BNSL-1 tasks, up to 1e6)"}


def sizes_up_to(t_max: int) -> list[int]:
    """Powers of ten from 100 up to `t_max`, plus `t_max` itself."""
    out = [10**k for k in range(2, 12) if 10**k <= t_max]
    if not out or out[-1] != t_max:
        out.append(t_max)
    return out


def loglog_slope(ts: list[int], secs: list[float], t_min: int = 1000) -> float:
    pts = [(t, s) for t, s in zip(ts, secs) if t >= t_min and s > 0]
    if len(pts) < 2:
        return float("nan")
    lt, ls = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lt, ls, 1)[0])


def baseline_per_task(law: str, n: int, seed: int) -> float:
    """Steady per-task time of the SciPy baseline on `n` tasks (one warm-up run, then one timed)."""
    if law == "m2":
        prob = tiny_m2.generate(n, seed)
        t = C.time_calls(lambda: tiny_m2.run_scipy(prob["x"], prob["y"], prob["guess"]), repeats=1)
    else:
        prob = bnsl_tasks.generate(n, seed)
        starts = bnsl_tasks.screened_starts(bnsl_tasks.to_dataset(prob))
        t = C.time_calls(lambda: bnsl_tasks.run_scipy(prob["x"], prob["y"], starts), repeats=1)
    return t.steady_s / n


def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], DEFAULT_MAX, tasks_help="largest T (sizes are powers of ten up to it)",
                      baseline_tasks=None, repeats=2, baseline_repeats=1,
                      baseline_tasks_help="tasks on which the SciPy baseline's per-task time is measured "
                                          "(default 1,000 for m2, 100 for bnsl1)")
    p.add_argument("--law", default="m2", choices=["m2", "bnsl1"], help="task family (default m2)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="the task counts T to time (default: powers of ten up to --tasks)")
    args = p.parse_args(argv)
    t_max, full = C.resolve_tasks(args, DEFAULT_MAX)
    n_base = args.baseline_tasks if args.baseline_tasks and args.baseline_tasks > 0 else None
    n_base = n_base or (1000 if args.law == "m2" else 100)
    mod = tiny_m2 if args.law == "m2" else bnsl_tasks

    import jax

    accel = jax.default_backend() != "cpu"
    rows, ts, steady = [], [], []
    for t in (sorted(args.sizes) if args.sizes else sizes_up_to(t_max)):
        data = mod.to_dataset(mod.generate(t, args.seed))
        tm = C.time_calls(lambda: mod.run_jaxscale(data), repeats=args.repeats)
        ok = float(np.mean(tm.result.ok[:t]))
        peak = C.fmt_gib(C.device_peak_bytes()) if accel else None
        print(f"  T={t:>7,}: first {tm.first_s:.3f} s, steady {tm.steady_s:.3f} s "
              f"({tm.steady_s / t * 1e6:.1f} us/task)" + (f", peak device {peak} GiB" if accel else ""), flush=True)
        ts.append(t)
        steady.append(tm.steady_s)
        gpu = (f" {t / tm.steady_s:,.0f} | {peak} |" if accel else "")
        rows.append(f"| {t:,} | {bucket_tasks(t):,} | {C.fmt_s(tm.first_s)} | {C.fmt_s(tm.steady_s)} | "
                    f"{tm.first_s / t * 1e6:.1f} | {tm.steady_s / t * 1e6:.1f} | {C.fmt_mib(tm.peak_extra_bytes)} | "
                    f"{ok:.1%} |" + gpu)
    base = baseline_per_task(args.law, n_base, args.seed)
    print(f"  baseline: {base * 1e6:.1f} us/task on {n_base} tasks", flush=True)
    slope = loglog_slope(ts, steady)
    per_task = dict(zip(ts, (s / t for s, t in zip(steady, ts))))
    ref_t = 1000 if 1000 in per_task else ts[0]
    baseline_name = ("curve_fit loop (LM, analytic Jacobian, perturbed-truth guess)" if args.law == "m2"
                     else "least_squares (lm) loop from jaxscale's 8 screened starts")

    body = [
        f"Scale: {C.scale_label(full, f'T up to {t_max:,}')}. Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        "| T | padded T | first call (s) | steady (s) | first per task (us) | steady per task (us) | "
        "peak RSS + (MiB) | ok fits |" + (" tasks/s steady | peak device memory (GiB) |" if accel else ""),
        "|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if accel else ""),
        *rows,
        "",
        f"Log-log slope of steady time against T over T >= 1,000: {slope:.3f} (1 = linear, < 1 while fixed "
        f"overheads are still being amortised). Steady time per task at T = {ts[-1]:,} is "
        f"{per_task[ts[-1]] / per_task[ref_t]:.2f}x that at T = {ref_t:,}.",
        "",
        f"Baseline for reference, {baseline_name}: {base * 1e6:.1f} us/task (measured on {n_base:,} tasks).",
        "",
        f"Each T is a fresh problem (seed {args.seed}); the first call compiles for the new padded shape. "
        f"Steady state = best of {args.repeats} calls. Process peak RSS {C.fmt_mib(C.max_rss())} MiB."
        + (" Peak device memory: the device's peak bytes in use since the process started, read after each T "
           "(T grows, so it is that T's peak). The SciPy baseline runs on the host's CPU, one task at a time."
           if accel else ""),
    ]
    C.emit(args, (GPU_TITLES if accel else TITLES)[args.law], "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
