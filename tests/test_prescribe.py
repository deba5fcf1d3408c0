"""Tests of `jaxscale.prescribe`: allocation, capability boundaries, temporal validation, budgeted
design, attainable accuracy, the ``allocate`` / ``frontier`` subcommands and the notebook.

The Proteus-2k and Chinchilla checks assert the measured numbers (so a regression fails) next to the
references of the issue: in-sample per-bin coverage error of the tau = 0.98 boundaries, z* per task,
the objective of the SciPy SLSQP reference, the advancing math boundary, the 20 %-budget design, and
N_opt / D_opt at C = 1e24 with bootstrap intervals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import datasets, laws, losses
from jaxscale import prescribe as P
from jaxscale.prescribe import allocation as A
from jaxscale.prescribe import boundary as B
from jaxscale.prescribe import design as D
from jaxscale.prescribe.cli import allocate_main, frontier_main

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


# =========================================================================== pieces
def test_continuation_schedule_is_the_reference():
    assert P.continuation_schedule(0.98) == ((0.9, 10.0), (0.9, 25.0), (0.9, 50.0), (0.95, 50.0), (0.98, 50.0))
    assert P.continuation_schedule(0.95) == ((0.9, 10.0), (0.9, 25.0), (0.9, 50.0), (0.95, 50.0))
    assert P.continuation_schedule(0.5, kappa=25.0) == ((0.5, 10.0), (0.5, 25.0))


def test_staged_pinball_equals_the_plain_loss_per_stage():
    table = ((0.5, 10.0), (0.9, 25.0), (0.98, 50.0))
    loss = B.staged_pinball(table)
    assert B.staged_pinball(table) is loss  # cached: one compiled fit per schedule
    rng = np.random.default_rng(0)
    y, pred = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    y[:3] = [0.0, 1.0, 0.5]
    for code, (tau, kappa) in enumerate(table):
        got = np.asarray(loss.penalty(pred, y + 2.0 * code))
        want = np.asarray(losses.pinball(tau, kappa).penalty(pred, y))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_equal_mass_bins_keep_ties_together_and_merge_small_bins():
    z = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], [40, 5, 30, 30, 45])
    edges = P.equal_mass_edges(z, n_bins=5)
    bins = np.searchsorted(edges, z, side="right")  # ties share a bin by construction
    for v in np.unique(z):
        assert len(set(bins[z == v])) == 1
    e30 = P.equal_mass_edges(z, n_bins=5, min_bin=30)
    tab = P.bin_coverage(z, np.zeros_like(z), np.ones_like(z), 0.9, e30)
    assert (tab["n"] >= 30).all() and tab["n"].sum() == z.size
    # coverage: y <= yhat everywhere -> coverage 1, error |1 - tau|
    np.testing.assert_allclose(tab["coverage"], 1.0)
    assert P.coverage_error(z, np.zeros_like(z), np.ones_like(z), 0.9, e30) == pytest.approx(0.1)


# =========================================================================== allocation
def test_chinchilla_optimum_is_the_constrained_minimum():
    n, d, loss = A.chinchilla_optimum(**BESIROGLU, C=1e24)
    grid = np.geomspace(1e9, 1e13, 400_001)
    p = BESIROGLU
    lgrid = p["E"] + p["A"] / grid ** p["alpha"] + p["B"] / (1e24 / 6 / grid) ** p["beta"]
    assert float(n) == pytest.approx(grid[np.argmin(lgrid)], rel=1e-4)
    assert float(n) * float(d) * 6 == pytest.approx(1e24)
    assert float(loss) == pytest.approx(lgrid.min(), rel=1e-10)
    # published replication: ~ 9.6e10 parameters and ~ 18 tokens per parameter at 1e24
    assert 9.5e10 < float(n) < 9.7e10 and 18.0 < float(d / n) < 18.3
    # at a multiplier M the budget is kept and the loss is higher
    n20, d20, l20 = A.chinchilla_at_multiplier(**BESIROGLU, C=1e24, M=200.0)
    assert float(d20 / n20) == pytest.approx(200.0) and 6 * n20 * d20 == pytest.approx(1e24) and l20 > loss


def test_overtraining_optimum_is_the_best_multiplier():
    p = {"E": 1.9, "a": 60.0, "b": 600.0, "eta": 0.25}
    n, d, loss = A.overtraining_optimum(**p, C=1e22)
    m_star = float(d / n)
    assert m_star == pytest.approx((600.0 / 60.0) ** 2.0)
    ms = np.geomspace(1, 1e4, 20001)
    _, _, lm = A.overtraining_at_multiplier(**p, C=1e22, M=ms)
    assert m_star == pytest.approx(ms[np.argmin(lm)], rel=1e-3)
    tab = P.allocate(p, [1e22, 1e23], M=[20.0, 200.0], law="overtraining")
    assert list(tab["M"].unique()) == [20.0, 200.0]


def test_allocation_intervals_from_a_samples_table():
    rng = np.random.default_rng(1)
    rows = []
    for task, scale in (("a", 1.0), ("b", 2.0)):
        for r in range(400):
            rows.append({"run": task, "replicate": r, **{k: v for k, v in BESIROGLU.items()},
                         "alpha": BESIROGLU["alpha"] + 0.01 * rng.standard_normal(), "A": BESIROGLU["A"] * scale})
    samples = pd.DataFrame(rows)
    tab = P.allocate(samples, 1e24, levels=(0.05, 0.5, 0.95), law="chinchilla")
    assert set(tab["run"]) == {"a", "b"} and (tab["n_draws"] == 400).all()
    for task, g in tab.groupby("run"):
        sub = samples[samples.run == task]
        n, _, _ = A.chinchilla_optimum(sub.E, sub.A, sub.B, sub.alpha, sub.beta, 1e24)
        row = g.set_index("quantity").loc["N"]
        np.testing.assert_allclose([row["q0.05"], row["q0.5"], row["q0.95"]], np.quantile(n, [0.05, 0.5, 0.95]),
                                   rtol=1e-12)
        assert row["q0.05"] < row["prediction"] < row["q0.95"]


def test_allocation_from_posterior_draws():
    """Anything with a posterior's interface (`bayes.Posterior`: law, data keys, ``samples`` [T, S, n]
    and the least-squares fit ``ls``) gives intervals the same way."""
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    names = laws.chinchilla.param_names
    point = np.array([[BESIROGLU[n] for n in names]])
    draws = point[:, None, :] * (1 + 0.01 * rng.standard_normal((1, 500, 5)))
    post = SimpleNamespace(law=laws.chinchilla, draws={}, samples=draws, ls=SimpleNamespace(param_array=point),
                           data=SimpleNamespace(keys=pd.DataFrame({"task": ["all"]})))
    tab = P.allocate(post, [1e23, 1e24], levels=(0.1, 0.9)).set_index(["C", "quantity"])
    n_draw, _, _ = A.chinchilla_optimum(*[draws[0, :, i] for i in range(5)], C=1e24)
    np.testing.assert_allclose(tab.loc[(1e24, "N"), ["q0.1", "q0.9"]].to_numpy(float),
                               np.quantile(n_draw, [0.1, 0.9]), rtol=1e-12)
    assert tab.loc[(1e24, "N"), "prediction"] == pytest.approx(float(A.chinchilla_optimum(**BESIROGLU, C=1e24)[0]))


def test_allocation_besiroglu_bootstrap_at_1e24(data_dir):
    df = datasets.load_chinchilla(data_dir=data_dir)
    boot = jaxscale.bootstrap(df, "chinchilla", x=["N", "D"], y="loss", loss="huber_log", n=200,
                              key=jax.random.PRNGKey(0))
    tab = P.allocate(boot, 1e24, levels=(0.025, 0.975)).set_index("quantity")
    assert (tab["n_draws"] == 200).all()
    n, d = tab.loc["N"], tab.loc["D"]
    # point: the jaxscale fit (E 1.8172, A 477.8, B 2143, alpha 0.3473, beta 0.3672)
    assert n.prediction == pytest.approx(9.718e10, rel=2e-3) and d.prediction == pytest.approx(1.715e12, rel=2e-3)
    # bootstrap 95 % intervals (n = 200, key 0): N 7.1e10 .. 1.5e11, D 1.1e12 .. 2.3e12
    assert 6.5e10 < n["q0.025"] < 7.8e10 and 1.4e11 < n["q0.975"] < 1.65e11
    assert 1.0e12 < d["q0.025"] < 1.2e12 and 2.2e12 < d["q0.975"] < 2.5e12
    assert tab.loc["loss", "q0.025"] < tab.loc["loss", "prediction"] < tab.loc["loss", "q0.975"]


def test_iso_flop_profiles_approach_2(data_dir):
    # synthetic iso-FLOP ladders of a known law: the parabola minima follow N_opt ~ C^(beta/(alpha+beta))
    p = {"E": 1.7, "A": 400.0, "B": 1200.0, "alpha": 0.30, "beta": 0.36}
    budgets = np.geomspace(1e18, 1e21, 4)
    n_opt, _, _ = A.chinchilla_optimum(**p, C=budgets)
    rows = [(k * n, c) for n, c in zip(n_opt, budgets) for k in np.geomspace(0.4, 2.5, 9)]
    df = pd.DataFrame(rows, columns=["N", "C"])
    df["loss"] = p["E"] + p["A"] / df.N ** p["alpha"] + p["B"] / (df.C / 6 / df.N) ** p["beta"]
    res = P.iso_flop_profiles(df, band="C")
    assert res.profiles["ok"].all()
    assert res.exponents["a"] == pytest.approx(0.36 / 0.66, abs=0.01)
    np.testing.assert_allclose(res.profiles["N_opt"], n_opt, rtol=0.05)
    # the Besiroglu points, banded by compute: Approach 2 gives a ~ 0.47 (Hoffmann et al.: 0.49)
    real = P.iso_flop_profiles(datasets.load_chinchilla(data_dir=data_dir), n_bands=6)
    assert real.exponents["n_bands_used"] == 6
    assert real.exponents["a"] == pytest.approx(0.471, abs=0.005)
    assert real.exponents["a"] + real.exponents["b"] == pytest.approx(1.0, abs=1e-9)


# =========================================================================== design
def test_rank_one_design_within_budget_and_better_than_random():
    rng = np.random.default_rng(0)
    z = np.round(rng.uniform(21, 25, 400), 1)
    cost = 10 ** (z - 21) * rng.uniform(0.5, 2.0, 400)
    budget = 0.2 * cost.sum()
    theta = D.default_theta(z)
    sel = P.greedy_design(z, cost, budget, objective="i_optimal")
    assert cost[sel].sum() <= budget and len(set(sel.tolist())) == len(sel)

    def i_criterion(idx):
        J = D.jacobian(z[idx], theta)
        edges = P.equal_mass_edges(z, 10)
        Jg = D.jacobian(0.5 * (edges[:-1] + edges[1:]), theta)
        return np.trace(Jg.T @ Jg / len(Jg) @ np.linalg.inv(J.T @ J + 1e-9 * np.eye(4)))

    rand = [i_criterion(P.random_design(cost, budget, s)) for s in range(10)]
    assert i_criterion(sel) < min(rand)
    # the balance bonus spreads the picks over more compute bins
    bal = P.greedy_design(z, cost, budget, objective="i_optimal_balanced", balance_lambda=1.0)
    edges = P.equal_mass_edges(z, 10)
    occupied = lambda idx: len(set(np.searchsorted(edges, z[idx], side="right")))  # noqa: E731
    assert occupied(bal) >= occupied(sel)
    assert cost[bal].sum() <= budget


# =========================================================================== boundary (synthetic)
def test_boundary_recovers_a_synthetic_quantile_and_forecasts():
    rng = np.random.default_rng(3)
    z = np.repeat(np.linspace(21, 25, 40), 30)
    top = 0.1 + 0.7 / (1 + np.exp(-2.0 * (z - 23.0)))
    df = pd.DataFrame({"task": "t", "log10_flops": z, "score": top * rng.uniform(0, 1, z.size)})
    # kappa 400: little smoothing bias, so the fitted quantile is the true one (top * tau)
    fit = P.fit_boundary(df, taus=(0.9, 0.98), lambda_b=0.0, kappa=400.0)
    assert (fit.params["status"] == "converged").all()
    cov = fit.coverage(n_bins=10)
    np.testing.assert_allclose(cov["coverage"], [0.9, 0.98], atol=0.005)
    assert (cov["coverage_error"] < 0.015).all()
    par = fit.params.set_index("tau")
    for tau in (0.9, 0.98):
        np.testing.assert_allclose(par.loc[tau, ["y0", "L"]].to_numpy(float), [0.1 * tau, 0.7 * tau], atol=0.06)
        assert par.loc[tau, "z_star"] == pytest.approx(23.0, abs=0.15)
        assert par.loc[tau, "b"] == pytest.approx(2.0, rel=0.15)
    fc = fit.forecast([22.0, 24.0])
    assert list(fc.columns) == ["task", "log10_flops", "prediction", "q0.9", "q0.98"]
    assert (fc["q0.9"] < fc["q0.98"]).all() and np.allclose(fc["prediction"], fc["q0.98"])
    att = P.attainable_from_boundary(fit, [1e22, 1e24], n_boot=8, key=jax.random.PRNGKey(0))
    assert att.shape[0] == 4 and (att["q0.05"] <= att["q0.95"]).all()
    np.testing.assert_allclose(att["prediction"].to_numpy(), fit.predict([22.0, 24.0]).ravel())


def test_attainable_combines_loss_and_downstream_laws():
    acc = {"law": laws.logistic, "params": {"a": 0.7, "k": -6.0, "x0": 2.3, "b": 0.25}}
    tab = P.attainable_accuracy([1e22, 1e24], loss=BESIROGLU, metric=acc)
    _, _, loss = A.chinchilla_optimum(**BESIROGLU, C=np.array([1e22, 1e24]))
    np.testing.assert_allclose(tab["loss"], loss)
    np.testing.assert_allclose(tab["prediction"], 0.7 / (1 + np.exp(6.0 * (loss - 2.3))) + 0.25)
    # draws of the loss law widen the interval around the point
    rows = [{"replicate": r, **BESIROGLU, "E": BESIROGLU["E"] + 0.02 * z}
            for r, z in enumerate(np.random.default_rng(0).standard_normal(300))]
    tab2 = P.attainable_accuracy([1e24], loss=pd.DataFrame(rows), metric=acc, law="chinchilla", levels=(0.05, 0.95))
    r = tab2.iloc[0]
    assert r["q0.05"] < r["prediction"] < r["q0.95"] and r["loss_q0.05"] < r["loss"] < r["loss_q0.95"]


# =========================================================================== Proteus-2k
@pytest.fixture(scope="module")
def proteus(data_dir) -> pd.DataFrame:
    return datasets.load_proteus(data_dir=data_dir)


@pytest.fixture(scope="module")
def proteus_fit(proteus) -> B.BoundaryFit:
    return P.fit_boundary(proteus, taus=(0.98,))


# measured (this implementation): z* and in-sample per-bin coverage error (10 equal-mass bins)
Z_STAR = {"BBH": 22.256, "GPQA": 25.749, "IFEval": 21.017, "MATH_Lvl5": 23.999, "MMLU_PRO": 23.699, "MUSR": 22.275}
SCIPY_Z_STAR = {"IFEval": 21.2, "BBH": 22.3, "GPQA": 23.2, "MMLU_PRO": 23.8, "MATH_Lvl5": 24.0}  # the issue's
IS_ERROR = {"BBH": 0.0166, "GPQA": 0.0190, "IFEval": 0.0320, "MATH_Lvl5": 0.0186, "MMLU_PRO": 0.0160, "MUSR": 0.0178}


def test_proteus_boundaries_z_star_and_in_sample_coverage(proteus_fit):
    par = proteus_fit.params.set_index("task")
    assert (par["status"] == "converged").all() and (par["n_points"] == 2450).all()
    assert len(proteus_fit.trace) == 5 and (proteus_fit.trace["tasks"] == 12).all()  # one call per stage
    for task, z in Z_STAR.items():
        assert par.loc[task, "z_star"] == pytest.approx(z, abs=0.01), task
    # against the SciPy numbers: close where z* is identified; GPQA's boundary is nearly
    # linear (b = 0.18 per decade) so z* is weakly identified (z* = 23.2 costs +0.9 % objective) and
    # the reference clips z* to the data range (<= 24.82)
    for task in ("BBH", "MATH_Lvl5", "IFEval", "MMLU_PRO"):
        assert abs(par.loc[task, "z_star"] - SCIPY_Z_STAR[task]) < 0.2, task
    cov = proteus_fit.coverage(n_bins=10).set_index("task")
    for task, err in IS_ERROR.items():
        assert cov.loc[task, "coverage_error"] == pytest.approx(err, abs=5e-4), task
    ok = cov["coverage_error"] <= 0.02
    # IFEval misses the target (<= 0.02): one bin (23.65 .. 23.86) covers only 83 %, and no
    # fit of the reference objective can meet it (the next test shows why)
    assert ok.sum() == 5 and not ok["IFEval"]
    assert (cov["n_bins"] == 9).all()  # ties of compute (fine-tunes of one base) merge two bins


# IFEval, tau 0.98: the sigmoid of least objective with in-sample coverage error <= 0.02 on a fine
# (z*, b) grid (benchmarks/boundary.py `cheapest_covering`), as (y0, L, b, z*); the feasible set is
# thin: rounded to (b 0.463, z* 21.27) the error is 0.021
IFEVAL_COVERING = (0.0, 1.0, 0.4630, 21.2668)


def test_proteus_ifeval_target_is_excluded_by_the_slope_ridge(proteus_fit):
    """Why IFEval misses the coverage target: not the evaluation, not the optimiser, the ridge."""
    from scipy.optimize import minimize

    from benchmarks.boundary import _objective
    from jaxscale.prescribe.coverage import assign_bins

    lanes = proteus_fit.lanes
    i = list(lanes.keys["task"]).index("IFEval")
    m = lanes.w[i] > 0
    z, y = lanes.z[i][m], lanes.y[i][m]
    p_fit = proteus_fit.params_array[i]
    f_fit = P.objective_value(p_fit, z, y, None, 0.98)
    # (1) the reference's evaluation variants give the same numbers: bins of >= 30 models, and `y < yhat`
    cov30 = proteus_fit.coverage(min_bin=30).set_index("task")
    for task, err in IS_ERROR.items():
        assert cov30.loc[task, "coverage_error"] == pytest.approx(err, abs=5e-4), task
    bins = assign_bins(z, P.equal_mass_edges(z))
    q = B.boundary_value(p_fit, z)
    strict = np.mean([abs(np.mean(y[bins == k] < q[bins == k]) - 0.98) for k in range(bins.max() + 1)])
    assert strict == pytest.approx(IS_ERROR["IFEval"], abs=5e-4)
    # (2) the fit is the global minimum: SLSQP without the reference's bounds on z* and b, from the
    # covering sigmoid below, a step at 23.5 and two other shapes, finds nothing lower
    cons = [{"type": "ineq", "fun": lambda v: 1 - v[0] - v[1], "jac": lambda v: np.array([-1.0, -1.0, 0, 0])}]
    bounds = [(0, 1), (0, 1), (15, 30), (np.log(1e-3), np.log(1e3))]
    for y0, L, b, zs in (IFEVAL_COVERING, (0.3, 0.5, 2.0, 23.5), (0.1, 0.8, 1.0, 22.5), (0.0, 0.9, 5.0, 24.0)):
        res = minimize(_objective, [y0, L, zs, np.log(b)], args=(z, y, 0.98, 50.0, 1e-3), jac=True,
                       method="SLSQP", bounds=bounds, constraints=cons, options={"maxiter": 2000, "ftol": 1e-14})
        assert res.fun >= f_fit * (1 - 1e-9)
        assert res.x[2] == pytest.approx(p_fit[3], abs=0.01)  # the same z*
    # (3) a sigmoid meeting the target exists and fits the data BETTER (mean smoothed pinball
    # 0.0070923 vs 0.0071061), but its steeper slope costs more ridge (2.14e-4 vs 1.52e-4): objective
    # +0.67 %. The ridge alone excludes it (lambda_b 0: error 0.018, but a step, b 22.6 at z 23.5)
    cover = np.array(IFEVAL_COVERING)
    assert P.coverage_error(z, y, B.boundary_value(cover, z), 0.98) == pytest.approx(0.0196, abs=2e-4)
    pin_fit, pin = (P.objective_value(p, z, y, None, 0.98, lambda_b=0.0) for p in (p_fit, cover))
    assert pin < pin_fit
    assert pin == pytest.approx(0.0070923, rel=1e-4) and pin_fit == pytest.approx(0.0071061, rel=1e-4)
    assert P.objective_value(cover, z, y, None, 0.98) / f_fit - 1 == pytest.approx(0.0067, abs=2e-4)


def test_proteus_objective_matches_scipy_slsqp_reference(proteus_fit):
    from benchmarks.boundary import scipy_reference

    lanes = proteus_fit.lanes
    for task in ("BBH", "MATH_Lvl5", "GPQA"):
        i = list(lanes.keys["task"]).index(task)
        m = lanes.w[i] > 0
        _, f_ref = scipy_reference(lanes.z[i][m], lanes.y[i][m], 0.98, n_random=20, n_keep=4)
        f = P.objective_value(proteus_fit.params_array[i], lanes.z[i], lanes.y[i], lanes.w[i], 0.98)
        assert f == pytest.approx(proteus_fit.objective[i], rel=1e-9)
        assert f <= f_ref * (1 + 1e-6), task  # never worse; GPQA better (the reference bounds z*)


def test_temporal_validation_shows_the_advancing_math_boundary(proteus):
    opts = {"n_starts": 1, "min_points": 1536}  # the two fits share one compiled shape
    tv = P.temporal_validation(proteus, **opts)
    t = tv.table.set_index(["task", "split"])
    assert list(tv.table["n_train"].unique()) == [513, 947, 1533]
    assert list(tv.table["n_test"].unique()) == [434, 586, 917]
    # math: later models beat the earlier boundary in every split (coverage 0.79, 0.81, 0.96 < 0.98)
    math = t.loc["MATH_Lvl5"]
    np.testing.assert_allclose(math["oos_coverage"], [0.793, 0.811, 0.962], atol=0.005)
    assert (math["shortfall"] > 0.015).all()
    # the stable boundaries: BBH, GPQA, MMLU-Pro, MUSR covered out of period after the first split
    for task in ("BBH", "GPQA", "MMLU_PRO", "MUSR"):
        assert (t.loc[task, "oos_coverage"].iloc[1:] > 0.985).all(), task
        assert (t.loc[task, "oos_error"].iloc[1:] < 0.025).all(), task
    assert (tv.table["is_error"] < 0.041).all()
    per, _ = P.boundary_by_period(proteus, z_ref=(24.0,), **opts)
    q = per.pivot(index="task", columns="period", values="q@24")
    # the math boundary at 1e24 FLOPs rises from 0.20 (< 2024-07) to 0.52 (2025); others move < 0.06
    np.testing.assert_allclose(q.loc["MATH_Lvl5"], [0.203, 0.385, 0.522, 0.518], atol=0.01)
    for task in ("BBH", "GPQA", "MMLU_PRO", "MUSR"):
        assert np.ptp(q.loc[task]) < 0.065, task


def test_budget_design_20_percent(proteus):
    sweep = P.budget_sweep(proteus, budgets=(0.2, 1.0), n_random=1, n_starts=1)
    s = sweep.summary.set_index(["task", "method"])
    design = s.xs("i_optimal_balanced", level="method")
    assert (design["cost_share"] <= 0.2).all() and (design["cost_share"] > 0.19).all()
    diff = design["oos_vs_full"]
    # within 0.02 of the full-data fit (not worse by more) for every task, and better for math
    assert (diff <= 0.02).sum() >= 5
    assert diff["MATH_Lvl5"] < -0.05
    rand = s.xs("random", level="method")["oos_vs_full"]
    assert rand["MATH_Lvl5"] > diff["MATH_Lvl5"] + 0.05  # the random subsets do not get the math gain
    sel = sweep.selections
    assert all(len(v) > 0 for v in sel.values())


# =========================================================================== CLI
def test_cli_allocate(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("JAXSCALE_DATA", str(data_dir))
    out = tmp_path / "alloc.csv"
    assert allocate_main(["chinchilla", "--C", "1e22,1e24", "--bootstrap", "200", "--out", str(out)]) == 0
    tab = pd.read_csv(out)
    assert set(tab["quantity"]) == {"N", "D", "tokens_per_param", "loss"}
    assert {"prediction", "q0.025", "q0.975"} <= set(tab.columns)
    n = tab[(tab.C == 1e24) & (tab.quantity == "N")].iloc[0]
    assert n.prediction == pytest.approx(9.718e10, rel=2e-3)
    # a saved fit, at a multiplier
    fit = jaxscale.fit(datasets.load_chinchilla(data_dir=data_dir), "chinchilla", x=["N", "D"], y="loss",
                       loss="huber_log")
    fit.save(tmp_path / "fit")
    capsys.readouterr()
    assert allocate_main([str(tmp_path / "fit"), "--C", "1e24", "--M", "200"]) == 0
    assert "200" in capsys.readouterr().out
    assert allocate_main([str(tmp_path / "missing.csv"), "--C", "1e24"]) == 2
    assert "error:" in capsys.readouterr().err
    assert allocate_main(["chinchilla", "--C", "x"]) == 2


def test_cli_frontier(tmp_path, capsys):
    rng = np.random.default_rng(0)
    z = np.tile(np.linspace(21, 25, 40), 40)  # 1,600 models, 1,200 before the split: the shapes of the
    dates = pd.date_range("2022-01-01", periods=z.size, freq="D").astype(str)  # synthetic test above
    df = pd.concat([pd.DataFrame({"task": t, "flops": 10 ** z, "date": dates,
                                  "score": (0.2 + s / (1 + np.exp(-1.5 * (z - 23)))) * rng.uniform(0.3, 1, z.size)})
                    for t, s in (("a", 0.6), ("b", 0.3))])
    path = tmp_path / "scores.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "frontier"
    code = frontier_main([str(path), "--flops", "flops", "--tau", "0.98", "--kappa", "400", "--split-date", dates[1200],
                          "--at", "22,24", "--out", str(out), "--plot", str(tmp_path / "f.png")])
    assert code == 0, capsys.readouterr().err
    params = pd.read_csv(out / "params.csv")
    assert list(params["task"]) == ["a", "b"] and {"coverage_error", "oos_error", "n_test"} <= set(params.columns)
    assert (params["n_points"] == 1200).all() and (params["n_test"] == 400).all()
    assert pd.read_csv(out / "forecast.csv").shape[0] == 4 and (tmp_path / "f.png").exists()
    assert frontier_main([str(path), "--y", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert frontier_main([str(path), "--flops", "flops", "--tau", "1.5"]) == 2


# =========================================================================== notebook
def test_notebook_runs(run_notebook):
    text = run_notebook("prescriptive.ipynb", REPO / "notebooks")
    assert "small run" in text and "Approach 2: N_opt ~ C^0.471" in text and "calls per stage: 1" in text
