"""Benchmark 7: capability boundaries, 6 Proteus-2k tasks x 5 quantile levels, vs a SciPy SLSQP reference.

jaxscale: `jaxscale.prescribe.fit_boundary(df, taus=TAUS)`: the sigmoid boundary
``q(z) = y0 + L sigmoid(b (z - z*))`` of every (task, tau) lane, mean smoothed pinball loss plus the
ridge ``1e-3 b^2``, through the reference continuation (tau 0.90 -> 0.95 -> tau, kappa 10 -> 25 -> 50),
all 30 lanes (x their starts) in ONE batched `jaxscale.fit` call per stage.

Baseline: the reference procedure of Zhang et al. (2026) re-implemented with SciPy, one lane at a time:
a (z*, b) grid (10 x 10 plus 5 z* quantiles) and 100 random (z*, b) draws, the levels (y0, L) of each
solved by SLSQP at the first stage, the 10 best carried through every stage of the continuation by
SLSQP with bounds y0, L in [0, 1], y0 + L <= 1, z* in the data range, b in [0.05, 50]; the best final
objective wins.

Targets: the same objective within 1e-6 relative on every lane (jaxscale no worse), and the time ratio.

    python -m benchmarks.boundary                 # full size (30 lanes)
    python -m benchmarks.boundary --tasks 6 --no-write   # 6 lanes (tau = 0.98 only)
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from jaxscale import datasets
from jaxscale.prescribe import boundary as B

from benchmarks import _common as C

TITLE = "7. Capability boundaries: 6 Proteus-2k tasks x 5 quantile levels vs SciPy SLSQP"
TAUS = (0.5, 0.75, 0.9, 0.95, 0.98)
LAMBDA_B = 1e-3
B_RANGE = (0.05, 50.0)


# --------------------------------------------------------------------------- the SciPy reference
def _objective(p: np.ndarray, z: np.ndarray, y: np.ndarray, tau: float, kappa: float,
               lambda_b: float) -> tuple[float, np.ndarray]:
    """Mean smoothed pinball + ridge and its gradient in (y0, L, z*, log b)."""
    y0, L, zs, lb = p
    b = np.exp(lb)
    s = expit(b * (z - zs))
    u = y - y0 - L * s
    f = np.mean(np.logaddexp(0.0, kappa * u) / kappa + (tau - 1.0) * u) + lambda_b * b * b
    r = expit(kappa * u) + tau - 1.0
    ds = L * s * (1.0 - s)
    g = np.array([-np.mean(r), -np.mean(r * s), np.mean(r * ds * b), -np.mean(r * ds * b * (z - zs))
                  + 2.0 * lambda_b * b * b])
    return float(f), g


def _levels(z, y, s, tau, kappa):
    """SLSQP for (y0, L) at a fixed shape s (convex)."""

    def fun(v):
        u = y - v[0] - v[1] * s
        r = expit(kappa * u) + tau - 1.0
        return (float(np.mean(np.logaddexp(0.0, kappa * u) / kappa + (tau - 1.0) * u)),
                np.array([-np.mean(r), -np.mean(r * s)]))

    a0 = float(np.clip(np.quantile(y, 0.1), 0, 1))
    l0 = float(np.clip(np.quantile(y, tau) - a0, 0, 1 - a0))
    res = minimize(fun, [a0, l0], jac=True, method="SLSQP", bounds=[(0, 1), (0, 1)],
                   constraints=[{"type": "ineq", "fun": lambda v: 1 - v[0] - v[1], "jac": lambda v: -np.ones(2)}],
                   options={"maxiter": 250, "ftol": 1e-9})
    y0 = float(np.clip(res.x[0], 0, 1))
    return y0, float(np.clip(res.x[1], 0, 1 - y0))


def scipy_reference(z: np.ndarray, y: np.ndarray, tau: float, kappa: float = 50.0, lambda_b: float = LAMBDA_B,
                    n_random: int = 100, n_keep: int = 10, seed: int = 0) -> tuple[np.ndarray, float]:
    """The reference multi-start continuation for one lane: (y0, L, b, z*) and the final objective."""
    rng = np.random.default_rng(seed)
    zmin, zmax = float(z.min()), float(z.max())
    stages = B.continuation_schedule(tau, kappa)
    zgrid = np.unique(np.concatenate([np.linspace(zmin, zmax, 10), np.quantile(z, [0.15, 0.35, 0.5, 0.65, 0.85])]))
    bgrid = np.geomspace(*B_RANGE, 10)
    cands = [(zs, b) for zs in zgrid for b in bgrid]
    cands += list(zip(rng.uniform(zmin, zmax, n_random), np.exp(rng.uniform(*np.log(B_RANGE), n_random))))
    t0, k0 = stages[0]
    scored = []
    for zs, b in cands:
        y0, L = _levels(z, y, expit(b * (z - zs)), t0, k0)
        p = np.array([y0, L, zs, np.log(b)])
        scored.append((_objective(p, z, y, t0, k0, lambda_b)[0], p))
    scored.sort(key=lambda c: c[0])
    bounds = [(0, 1), (0, 1), (zmin, zmax), tuple(np.log(B_RANGE))]
    cons = [{"type": "ineq", "fun": lambda p: 1 - p[0] - p[1], "jac": lambda p: np.array([-1.0, -1.0, 0, 0])}]
    best, best_f = None, np.inf
    for _, p in scored[:n_keep]:
        for t, k in stages:
            res = minimize(_objective, p, args=(z, y, t, k, lambda_b), jac=True, method="SLSQP", bounds=bounds,
                           constraints=cons, options={"maxiter": 700, "ftol": 1e-9})
            p = np.array([np.clip(res.x[0], 0, 1), 0.0, np.clip(res.x[2], zmin, zmax),
                          np.clip(res.x[3], *bounds[3])])
            p[1] = np.clip(res.x[1], 0, 1 - p[0])
        f = _objective(p, z, y, tau, kappa, lambda_b)[0]
        if f < best_f:
            best, best_f = p, f
    return np.array([best[0], best[1], np.exp(best[3]), best[2]]), float(best_f)


def run_scipy(lanes: B.Lanes) -> tuple[np.ndarray, np.ndarray]:
    params = np.full((lanes.n, 4), np.nan)
    obj = np.full(lanes.n, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for i in range(lanes.n):
            m = lanes.w[i] > 0
            params[i], obj[i] = scipy_reference(lanes.z[i][m], lanes.y[i][m], float(lanes.tau[i]))
    return params, obj


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], 30, tasks_help="lanes: 6 = tau 0.98 only, 30 = 6 tasks x 5 levels",
                      repeats=1, baseline_repeats=0, seed=False, baseline_tasks=0)
    args = p.parse_args(argv)
    n, full = C.resolve_tasks(args, 30)
    taus = TAUS if n > 6 else (0.98,)
    df = datasets.load_proteus(data_dir=C.data_dir())
    lanes = B.lanes_from_frame(df, taus=taus)
    print(f"Boundary: {lanes.n} lanes of {int((lanes.w[0] > 0).sum())} models", flush=True)

    tj = C.time_calls(lambda: B.fit_lanes(lanes), repeats=args.repeats)
    fit = tj.result
    print(f"  jaxscale: first {tj.first_s:.1f} s, steady {tj.steady_s:.1f} s", flush=True)
    tb = C.time_calls(lambda: run_scipy(lanes), repeats=max(args.baseline_repeats, 0))
    ref_params, ref_obj = tb.result
    print(f"  SciPy: {tb.first_s:.1f} s", flush=True)
    # jaxscale's objective re-evaluated in NumPy, so both sides use the same arithmetic
    f_jax = np.array([B.objective_value(fit.params_array[i], lanes.z[i], lanes.y[i], lanes.w[i], lanes.tau[i])
                      for i in range(lanes.n)])
    q = C.compare_objectives(f_jax, ref_obj)
    tab = fit.params.assign(objective=f_jax, z_star_scipy=ref_params[:, 3], b_scipy=ref_params[:, 2],
                            objective_scipy=ref_obj, rel_diff=(f_jax - ref_obj) / ref_obj)
    cov = fit.coverage()
    tab["coverage_error"] = cov["coverage_error"].to_numpy()
    rows = ["| task | tau | z* | b | y0 | L | objective | z* (SciPy) | b (SciPy) | objective (SciPy) | rel. diff | "
            "coverage error |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in tab.itertuples():
        rows.append(f"| {r.task} | {r.tau:g} | {r.z_star:.3f} | {r.b:.4f} | {r.y0:.3g} | {r.L:.4f} | "
                    f"{r.objective:.8g} | "
                    f"{r.z_star_scipy:.3f} | {r.b_scipy:.4f} | {r.objective_scipy:.8g} | {r.rel_diff:+.1e} | "
                    f"{r.coverage_error:.4f} |")
    ratio_first, ratio_steady = tb.first_s / tj.first_s, tb.first_s / tj.steady_s
    body = [
        f"Scale: {C.scale_label(full, f'{n} lanes')}. Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        *C.timing_table([(f"jaxscale `fit_lanes`, {lanes.n} lanes, one batched call per stage", tj, lanes.n),
                         ("SciPy SLSQP multi-start continuation, lane by lane", tb, lanes.n)]),
        "",
        f"Speed-up (SciPy / jaxscale): first call {C.fmt_x(ratio_first)}, steady state {C.fmt_x(ratio_steady)}.",
        "",
        f"Calls per stage: {fit.trace.groupby('stage').size().max()} ({len(fit.trace)} `jaxscale.fit` calls, "
        f"{int(fit.trace['tasks'].iloc[0])} tasks each).",
        "",
        f"Quality: {q.line()}. Target: no lane worse than SciPy by > 1e-6 relative {C.check(q.share_worse == 0)}.",
        "",
        *rows,
    ]
    C.emit(args, TITLE, "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
