"""Bayesian fits: speed of NUTS / SVI over many tasks vs the same fit task by task in a loop, the
calibration-on-simulation figures, and the real-data backtests against the bootstrap.

- ``svi``: 1,000 generated BNSL (1 break) tasks (`benchmarks.bnsl_tasks.generate`, 20 points,
  1-2 % noise); ``jaxscale.bayes.fit_svi(guide="mvn", num_steps=1000)``: least-squares fit,
  per-task MAP + Laplace, 1,000 Adam steps of the block-diagonal Gaussian guide, 1,000 draws per
  task with Pareto k-hat. Target: < 60 s including compilation.
- ``nuts``: 200 simulated tasks of the 3-parameter saturating power law (M2, 12 points, 2 %
  noise); ``fit_nuts`` (per-task vectorised NUTS, 4 chains x (300 warm-up + 300 draws), tree
  depth <= 6) with the default data-scaled priors. Target: < 60 s including compilation.
- Both against a loop: the same call on a one-task Dataset for each task (`--loop-tasks` of them
  after one warm-up call, so the loop reuses compiled code where it can), extrapolated linearly.
- ``calibration``: `bayes.calibration_study` (M2, priors drawn from / fitted with fixed priors,
  8 fit points to x = 1e3, 4 held-out points to 1e5): coverage of 50/80/95 % intervals.
- ``backtest``: `jaxscale.bayes.backtest` on the 92 curves, the OLMo ladder and Gadre: coverage
  and width of the 90 % intervals, Bayes vs bootstrap.

    python -m benchmarks.bayes_speed                 # svi + nuts + calibration -> RESULTS.md section 8
    python -m benchmarks.bayes_speed backtest        # real-data tables
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np
import pandas as pd

import jaxscale
from jaxscale import bayes, laws
from jaxscale.bayes import backtest as BT
from jaxscale.data import Dataset

from benchmarks import _common as C
from benchmarks.bnsl_tasks import generate

M2 = laws.saturating_power_law


def m2_tasks(n: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    truth = np.stack([rng.uniform(0.5, 2.0, n), rng.uniform(3, 8, n), rng.uniform(-0.5, -0.3, n)], 1)
    x = np.broadcast_to(np.geomspace(10, 1e4, 12), (n, 12))
    y = (truth[:, :1] + truth[:, 1:2] * x ** truth[:, 2:3]) * np.exp(0.02 * rng.standard_normal(x.shape))
    return Dataset.from_arrays(x, y)


def _one(data: Dataset, i: int) -> Dataset:
    m = data.mask[i]
    return Dataset.from_arrays(data.x[i:i + 1, m], data.y[i:i + 1, m])


def _loop(fn, data: Dataset, n_loop: int) -> float:
    """Seconds per task of `fn` on one-task datasets (after a warm-up call)."""
    fn(_one(data, 0))
    t0 = time.perf_counter()
    for i in range(1, n_loop + 1):
        fn(_one(data, i))
    return (time.perf_counter() - t0) / n_loop


def bench(kind: str, n_tasks: int, n_loop: int) -> dict:
    key = jax.random.PRNGKey(0)
    if kind == "svi":
        data = Dataset.from_arrays(generate(n_tasks, seed=0)["x"], generate(n_tasks, seed=0)["y"])
        law = laws.bnsl(1)
        kw = dict(guide="mvn", num_steps=1000, num_samples=1000)
        run = lambda d: bayes.fit_svi(d, law, key=key, **kw)  # noqa: E731
    else:
        data = m2_tasks(n_tasks)
        law = M2
        kw = dict(num_warmup=300, num_samples=300, num_chains=4, max_tree_depth=6)
        run = lambda d: bayes.fit_nuts(d, law, key=key, **kw)  # noqa: E731
    t0 = time.perf_counter()
    post = run(data)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(data)
    steady = time.perf_counter() - t0
    per_task = _loop(run, data, n_loop)
    d = post.diagnostics
    out = {"kind": kind, "law": law.name, "tasks": n_tasks, "settings": kw, "first_s": first, "steady_s": steady,
           "loop_per_task_s": per_task, "loop_total_s": per_task * n_tasks, "flagged": int(d["flag"].sum())}
    if kind == "svi":
        out["pareto_k_median"] = float(np.nanmedian(d["pareto_k"]))
        out["pareto_k_le_0.7"] = float((d["pareto_k"] <= 0.7).mean())
    else:
        out["r_hat_le_1.05"] = float((d["r_hat"] <= 1.05).mean())
        out["ess_median"] = float(np.median(d["ess"]))
        out["divergent_tasks"] = int((d["divergences"] > 0).sum())
    return out


def calibration(n_tasks: int = 500, seed: int = 0) -> pd.DataFrame:
    import numpyro.distributions as dist

    pri = {"eps_inf": dist.LogNormal(0.0, 0.3), "beta": dist.LogNormal(np.log(5.0), 0.3),
           "c": dist.Normal(-0.4, 0.1), "sigma": dist.LogNormal(np.log(0.02), 0.3)}
    rows = []
    for method, kw in (("nuts", dict(num_warmup=300, num_samples=300, num_chains=4, max_tree_depth=6)),
                       ("svi", dict(num_steps=1000))):
        out = bayes.calibration_study(M2, pri, x_fit=np.geomspace(10, 1e3, 8), x_test=np.geomspace(3e3, 1e5, 4),
                                      n_tasks=n_tasks, key=jax.random.PRNGKey(seed), method=method, **kw)
        rows.append(out["table"].assign(method=method))
    return pd.concat(rows, ignore_index=True)


def backtests(n_boot: int = 200) -> dict[str, pd.DataFrame]:
    dd = C.data_dir()
    key = jax.random.PRNGKey(0)
    rev = BT.revisiting(key=key, data_dir=dd, n_boot=n_boot)
    ol = BT.olmo(key=key, data_dir=dd, n_boot=n_boot)
    ga = BT.gadre(key=key, data_dir=dd, n_boot=n_boot)
    return {"revisiting_rows": rev, "olmo_rows": ol, "gadre_rows": ga,
            "revisiting": pd.concat([BT.summarise(rev, ["domain"]), BT.summarise(rev).assign(domain="all")]),
            "olmo": BT.summarise(ol, ["quantity", "size"]), "gadre": BT.summarise(ga, ["quantity", "size"])}


TITLE = "8. Bayesian inference: SVI over 1,000 BNSL tasks, NUTS over 200 M2 tasks"


def _speed_rows(r: dict) -> list[str]:
    kind = "SVI (`fit_svi`, guide mvn)" if r["kind"] == "svi" else "NUTS (`fit_nuts`, vectorised chains)"
    total = r["loop_total_s"]
    return [f"| {kind} | {r['law']} | {r['tasks']:,} | {r['first_s']:.1f} | {r['steady_s']:.1f} | "
            f"{r['loop_per_task_s']:.2f} | {total:.0f} | {total / r['first_s']:.1f}x | {total / r['steady_s']:.1f}x | "
            f"{C.check(r['first_s'] < 60)} |"]


def _quality(r: dict) -> str:
    if r["kind"] == "svi":
        return (f"SVI: Pareto k-hat median {r['pareto_k_median']:.2f}, k-hat <= 0.7 on "
                f"{100 * r['pareto_k_le_0.7']:.1f} % of tasks; {r['flagged']} of {r['tasks']} tasks flagged "
                "(k-hat > 0.7: the Gaussian guide is a poor proposal there; use NUTS for those tasks).")
    return (f"NUTS: r-hat <= 1.05 on {100 * r['r_hat_le_1.05']:.1f} % of tasks, median ESS "
            f"{r['ess_median']:.0f}, {r['divergent_tasks']} task(s) with divergences, {r['flagged']} flagged.")


def section(results: list[dict], calib: pd.DataFrame | None, n_loop: int) -> str:
    body = [f"Command: `{C.command_line()}`.", "", f"Machine: {C.machine_line()}.", "",
            "| method | law | tasks | first call (s) | steady (s) | loop (s/task) | loop total (s) | "
            "ratio vs first | ratio vs steady | < 60 s incl. compile |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        body += _speed_rows(r)
    body += ["", f"The loop fits each task alone with the same call on a one-task Dataset ({n_loop} tasks after "
             "one warm-up call, so it reuses compiled code; time extrapolated linearly to all tasks).",
             "Settings: " + "; ".join(f"{r['kind']} {r['settings']}" for r in results) + ".", ""]
    body += [_quality(r) for r in results]
    if calib is not None:
        body += ["", "Calibration on simulation (`bayes.calibration_study`: M2, parameters drawn from the priors, "
                 "fitted with the same priors on 8 points up to x = 1e3, 4 held-out points from 3e3 to 1e5): "
                 "coverage of the central intervals of a new observation and of the mean curve.", "",
                 "| method | kind | 50 % | 80 % | 95 % | within 5 points |", "|---|---|---:|---:|---:|---|"]
        for (method, kind), g in calib.groupby(["method", "kind"], sort=False):
            cov = g.set_index("level")["coverage"]
            ok = all(abs(cov[lv] - lv) <= 0.05 for lv in cov.index)
            body.append(f"| {method} | {kind} | " + " | ".join(f"{100 * cov[lv]:.1f} %" for lv in sorted(cov.index))
                        + f" | {C.check(ok)} |")
    return "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="*", help="parts to run: svi, nuts, calibration, backtest "
                                             "(default: svi nuts calibration)")
    ap.add_argument("--svi-tasks", type=int, default=1000)
    ap.add_argument("--nuts-tasks", type=int, default=200)
    ap.add_argument("--loop-tasks", type=int, default=3)
    ap.add_argument("--calibration-tasks", type=int, default=500)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--results", default=str(C.RESULTS), help="results file")
    ap.add_argument("--no-write", action="store_true", help="print, do not write the results file")
    args = ap.parse_args(argv)
    bad = set(args.what) - {"svi", "nuts", "calibration", "backtest"}
    if bad:
        ap.error(f"unknown part(s) {sorted(bad)}")
    pd.set_option("display.width", 200)
    results, calib = [], None
    for what in args.what or ["svi", "nuts", "calibration"]:
        if what in ("svi", "nuts"):
            r = bench(what, args.svi_tasks if what == "svi" else args.nuts_tasks, args.loop_tasks)
            results.append(r)
            print(f"## {what}: {r['tasks']} {r['law']} tasks: first {r['first_s']:.1f} s, steady {r['steady_s']:.1f} s, "
                  f"loop {r['loop_total_s']:.0f} s", flush=True)
        elif what == "calibration":
            calib = calibration(args.calibration_tasks)
            print("## calibration on simulation (M2)")
            print(calib.to_string(index=False), flush=True)
        else:
            out = backtests(args.boot)
            for k in ("revisiting", "olmo", "gadre"):
                print(f"## {k}")
                print(out[k].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        sys.stdout.flush()
    full = args.svi_tasks == 1000 and args.nuts_tasks == 200 and args.calibration_tasks == 500
    if results:
        text = section(results, calib, args.loop_tasks)
        if not full:
            text = "SMALL-SCALE run; not the benchmark's figures.\n\n" + text
        print(f"\n## {TITLE}\n\n{text}")
        if not args.no_write:
            print(f"[written to {C.write_section(TITLE, text, args.results)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
