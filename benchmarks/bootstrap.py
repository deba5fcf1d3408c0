"""Benchmark 5: 4,000 bootstrap refits of Chinchilla approach 3 as one batched, warm-started solve.

jaxscale: ``jaxscale.bootstrap(data, laws.chinchilla, n=4000, key=PRNGKey(seed), fit=base,
loss="huber_log")``: every replicate is the 240 points with multinomial resampling counts as
weights, all replicates fitted in one call, each warm-started from the original optimum.

Baseline: a loop of SciPy L-BFGS-B with a jitted JAX value-and-grad of the same (weighted)
objective, one minimisation per replicate from the same warm start, on the same resampling
weights. By default it runs on the first 200 replicates and its time is scaled to 4,000
(labelled); quality is compared on the replicates both ran.

Targets: 4,000 fits in under 60 s on CPU; standard errors close to the published ones
(E 0.03, alpha 0.02, beta 0.02; Besiroglu et al. 2024).

    python -m benchmarks.bootstrap            # full size
    python -m benchmarks.bootstrap --tasks 400 --baseline-tasks 50 --no-write
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
from jaxscale.bootstrap import resample_weights
from jaxscale.data import Dataset
from jaxscale.solver import make_objective

from benchmarks import _common as C

TITLE = "5. Bootstrap: 4,000 resampled Chinchilla fits"
N_DEFAULT = 4000
PUBLISHED_SE = {"E": 0.03, "A": 124.58, "B": 1293.23, "alpha": 0.02, "beta": 0.02}
LAW = laws.chinchilla


def load_data() -> Dataset:
    df = datasets.load_chinchilla(data_dir=C.data_dir())
    return Dataset.from_frame(df, x=["N", "D"], y="loss")


def run_scipy(data: Dataset, weights: np.ndarray, u0: np.ndarray) -> np.ndarray:
    """L-BFGS-B per replicate (weights ``[B, P]``) from `u0`; returns the objective per replicate."""
    vg = jax.jit(jax.value_and_grad(make_objective(LAW, losses.get("huber_log")).value))
    x, y = jnp.asarray(data.x[0]), jnp.asarray(data.y[0])
    out = np.full(len(weights), np.inf)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for i, w in enumerate(weights):
            wj = jnp.asarray(w)

            def fun(u, wj=wj):
                f, g = vg(jnp.asarray(u), x, y, wj)
                return float(f), np.asarray(g, dtype=float)

            out[i] = minimize(fun, u0, jac=True, method="L-BFGS-B").fun
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], N_DEFAULT, tasks_help="bootstrap replicates", repeats=2,
                      baseline_repeats=0, seed=True, baseline_tasks=200)
    args = p.parse_args(argv)
    n, full = C.resolve_tasks(args, N_DEFAULT)
    data = load_data()
    base = jaxscale.fit(data, LAW, loss="huber_log")
    key = jax.random.PRNGKey(args.seed)
    print(f"Bootstrap: {n} replicates of {data.n_points[0]} points", flush=True)

    tj = C.time_calls(lambda: jaxscale.bootstrap(data, LAW, n=n, key=key, fit=base, loss="huber_log"),
                      repeats=args.repeats)
    bs = tj.result
    iv = bs.intervals().set_index("param")
    print(f"  jaxscale: first {tj.first_s:.2f} s, steady {tj.steady_s:.2f} s", flush=True)

    nb = C.baseline_count(args, n)
    weights = resample_weights(data, n, key)[0, :nb]
    tb = C.time_calls(lambda: run_scipy(data, weights, base.u[0]), repeats=max(args.baseline_repeats, 0))
    fb = tb.result
    scale = n / nb
    print(f"  SciPy on {nb}: first {tb.first_s:.2f} s (x{scale:g} -> {tb.first_s * scale:.1f} s)", flush=True)
    q = C.compare_objectives(bs.replicates.objective[:nb], fb)
    ratio_first = tb.first_s * scale / tj.first_s
    ratio_steady = tb.steady_s * scale / tj.steady_s

    rows = ["| parameter | estimate | bootstrap SE (jaxscale) | published SE | 95 % interval |",
            "|---|---:|---:|---:|---|"]
    for name in LAW.param_names:
        r = iv.loc[name]
        rows.append(f"| {name} | {r.estimate:.5g} | {r.se:.4g} | {PUBLISHED_SE[name]:g} | "
                    f"[{r['q0.025']:.5g}, {r['q0.975']:.5g}] |")
    body = [
        f"Scale: {C.scale_label(full, f'{n} replicates')}. Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        *C.timing_table([(f"jaxscale `bootstrap(n={n})`, one batched solve", tj, n),
                         (f"SciPy L-BFGS-B loop, {nb} replicates (time x{scale:g} below)", tb, nb)]),
        "",
        f"Speed-up (SciPy scaled to {n} / jaxscale): first call {C.fmt_x(ratio_first)}, steady state "
        f"{C.fmt_x(ratio_steady)}. Process peak RSS {C.fmt_mib(C.max_rss())} MiB. "
        f"Replicates converged: {int(bs.replicates.ok.sum())} of {n}.",
        "",
        f"Quality (replicate objectives, on the {nb} both ran): {q.line()}.",
        "",
        *rows,
        "",
        f"Targets: {n} fits under 60 s {C.check(tj.first_s < 60)} (first call {tj.first_s:.1f} s incl. "
        f"compile); SEs close to published: E {iv.loc['E', 'se']:.3f} vs 0.03, alpha "
        f"{iv.loc['alpha', 'se']:.3f} vs 0.02, beta {iv.loc['beta', 'se']:.3f} vs 0.02.",
    ]
    C.emit(args, TITLE, "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
