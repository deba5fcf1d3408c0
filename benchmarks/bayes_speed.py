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

    python -m benchmarks.bayes_speed                 # svi + nuts + calibration
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="*", default=["svi", "nuts", "calibration"],
                    choices=["svi", "nuts", "calibration", "backtest"])
    ap.add_argument("--svi-tasks", type=int, default=1000)
    ap.add_argument("--nuts-tasks", type=int, default=200)
    ap.add_argument("--loop-tasks", type=int, default=3)
    ap.add_argument("--calibration-tasks", type=int, default=500)
    ap.add_argument("--boot", type=int, default=200)
    args = ap.parse_args(argv)
    pd.set_option("display.width", 200)
    for what in args.what:
        if what in ("svi", "nuts"):
            r = bench(what, args.svi_tasks if what == "svi" else args.nuts_tasks, args.loop_tasks)
            print(f"## {what}: {r['tasks']} {r['law']} tasks ({r['settings']})")
            print(f"first call {r['first_s']:.1f} s, steady {r['steady_s']:.1f} s; loop of one-task calls "
                  f"{r['loop_per_task_s']:.2f} s/task -> {r['loop_total_s']:.0f} s for all "
                  f"(ratio {r['loop_total_s'] / r['first_s']:.1f}x first call, {r['loop_total_s'] / r['steady_s']:.1f}x steady)")
            print({k: v for k, v in r.items() if k not in ("settings",)})
        elif what == "calibration":
            print("## calibration on simulation (M2)")
            print(calibration(args.calibration_tasks).to_string(index=False))
        else:
            out = backtests(args.boot)
            for k in ("revisiting", "olmo", "gadre"):
                print(f"## {k}")
                print(out[k].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
