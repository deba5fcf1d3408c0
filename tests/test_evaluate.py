"""jaxscale.evaluate: splits, metrics, the backtest harness, law selection, plots, the notebook, and
the published extrapolation results reproduced on ../shared/data (they fail if a number regresses).

The reproductions share module-scoped fixtures: the 92-curve Revisiting run (7 laws, selection,
ensemble) is fitted once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxscale import evaluate as ev
from jaxscale.evaluate import reproductions as R
from jaxscale.forecast import forecast_frame

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- synthetic data
def _curves(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Two power-law curves and two saturating ones, 16 log-spaced points each."""
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e7, 16)
    true = {"p1": 4.0 * x ** -0.2, "p2": 9.0 * x ** -0.3, "s1": 0.5 + 30 * x ** -0.4, "s2": 1.0 + 60 * x ** -0.5}
    rows = [pd.DataFrame({"kind": k[0], "task": k, "x": x, "y": v * np.exp(noise * rng.normal(size=x.size))})
            for k, v in true.items()]
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------- splits
def test_last_points_by_count_fraction_and_threshold():
    df = _curves()
    f = ev.LastPoints(n=3)(df, x="x", by="task")[0]
    assert f.test.sum() == 12 and not (f.train & f.test).any()
    largest = df[f.test].groupby("task").x.min()
    assert (largest >= df[f.train].groupby("task").x.max()).all()
    f = ev.LastPoints(frac=0.25)(df, x="x", by="task")[0]
    assert f.test.sum() == 16  # ceil(0.25 * 16) = 4 per task
    f = ev.LastPoints(threshold=1e6)(df, x="x", by="task")[0]
    assert (df.x[f.test] > 1e6).all() and (df.x[f.train] <= 1e6).all()
    with pytest.raises(ValueError):
        ev.LastPoints(n=2, frac=0.5)


def test_holdout_runs_and_given():
    df = pd.DataFrame({"run": list("aabbcc"), "N": [1e8, 1e8, 4e8, 4e8, 1e9, 1e9], "D": np.arange(1, 7) * 1e9,
                       "task": ["t", "u"] * 3, "y": 3.0, "split": ["fit"] * 4 + ["held"] * 2})
    f = ev.HoldoutRuns("N", largest=1)(df, x=["N", "D"], by="task")[0]
    assert f.test.tolist() == [False] * 4 + [True] * 2
    f = ev.HoldoutRuns("run", ids=["a"])(df)[0]
    assert f.test.tolist() == [True, True] + [False] * 4
    f = ev.Given("split", "fit", "held")(df)[0]
    assert f.train.sum() == 4 and f.test.sum() == 2


def test_rolling_origin_modes():
    df = _curves()
    folds = ev.RollingOrigin(fractions=(0.5, 0.75))(df, x="x", by="task")
    assert [f.name for f in folds] == ["origin=0.5", "origin=0.75"]
    assert [int(f.train.sum()) for f in folds] == [32, 48]
    for f in folds:
        assert (f.train ^ f.test).all()  # every point is in one side
    fx = ev.RollingOrigin(fractions=(0.5,), mode="x", horizon=1.5)(df, x="x", by="task")[0]
    assert (df.x[fx.train] <= 0.5e7).all()
    assert (df.x[fx.test] > 0.5e7).all() and (df.x[fx.test] <= 0.75e7).all()
    fl = ev.RollingOrigin(fractions=(0.5,), mode="logx")(df, x="x", by="task")[0]
    assert int(fl.train.sum()) == 32  # log-spaced points: half of the log range is half of the points


# --------------------------------------------------------------------------- metrics
def test_point_metrics():
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.1, 2.0, 3.6])
    assert ev.rmsle(y, p) == pytest.approx(np.sqrt(np.mean(np.log(p / y) ** 2)))
    assert ev.mae(y, p) == pytest.approx(0.5 / 3)
    assert ev.rel_error(y, p) == pytest.approx((0.1 + 0 + 0.1) / 3)
    assert ev.rmsle(y, np.array([1.0, -1.0, 4.0])) == np.inf


def test_interval_metrics_and_crps():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    table = pd.DataFrame({"task": "a", "y": y, "prediction": y,
                          "q0.05": y - np.array([1, 1, 1, -0.5]), "q0.95": y + 1.0})
    s = ev.score(table, y="y", by="task").iloc[0]
    assert s.coverage_90 == pytest.approx(0.75)
    assert s.width_90 == pytest.approx(np.mean([2, 2, 2, 0.5]))
    # pinball of each level, CRPS = 2 x their mean
    p05 = ev.pinball(y, table["q0.05"], 0.05)
    p95 = ev.pinball(y, table["q0.95"], 0.95)
    assert s.pinball == pytest.approx((p05 + p95) / 2)
    assert s.crps == pytest.approx(p05 + p95)
    # CRPS from many quantiles of N(0, 1) at y = 0 approaches the closed form 2 phi(0) - 1 / sqrt(pi)
    from scipy.stats import norm
    levels = np.linspace(0.005, 0.995, 199)
    q = {t: np.array([norm.ppf(t)]) for t in levels}
    assert ev.crps(np.array([0.0]), q) == pytest.approx(2 * norm.pdf(0) - 1 / np.sqrt(np.pi), rel=0.02)


def test_truncation_and_win_rates():
    assert ev.truncate(np.array([0.0419, 0.0411, np.nan])).tolist() == [0.041, 0.041, np.inf]
    s = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "method": list("abcabc"),
                      "rmsle": [0.0419, 0.0411, 0.05, 0.2, np.nan, 0.1]})
    w = ev.win_rates(s).set_index("method").win_rate
    assert w.to_dict() == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5})
    assert w.sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- harness
def test_backtest_recovers_the_true_law_and_ranks_it_first():
    df = _curves()
    methods = [ev.LawMethod("power_law", name="M1"), ev.LawMethod("saturating_power_law", name="M2")]
    scores = ev.backtest(df, methods, ev.LastPoints(n=4), x="x", y="y", by=["kind", "task"])
    assert len(scores) == 8 and set(scores.columns) >= {"fold", "method", "task", "rmsle", "mae", "rel_error",
                                                          "n_train", "n_test", "status"}
    assert (scores.n_train == 12).all() and (scores.n_test == 4).all()
    m2 = scores[scores.method == "M2"].set_index("task").rmsle
    assert (m2 < 1e-6).all()  # M2 contains both families: exact extrapolation
    m1 = scores[scores.method == "M1"].set_index("task").rmsle
    assert (m1[["p1", "p2"]] < 1e-6).all() and (m1[["s1", "s2"]] > 1e-3).all()
    board = ev.leaderboard(scores, group="kind")
    top = board[board["rank"] == 1].set_index("kind").method
    assert top["s"] == "M2" and top["all"] == "M2"
    p = board[board.kind == "p"].set_index("method").win_rate
    assert p.to_dict() == pytest.approx({"M1": 0.5, "M2": 0.5})  # exact ties are split
    assert board.groupby("kind").win_rate.sum().to_numpy() == pytest.approx(1.0)


def test_forecast_folds_grid_rows_and_single_task():
    x = np.geomspace(10, 1e4, 10)
    df = pd.DataFrame({"x": x, "y": 2 * x ** -0.5})
    fc = ev.forecast_folds(df, [ev.LawMethod("power_law")], ev.LastPoints(n=3), x="x", y="y", grid=7)
    assert (fc.role == "test").sum() == 3 and (fc.role == "grid").sum() == 7
    g = fc[fc.role == "grid"]
    assert g.x.min() == pytest.approx(10) and g.x.max() == pytest.approx(1e4)
    np.testing.assert_allclose(g.prediction, 2 * g.x ** -0.5, rtol=1e-8)
    s = ev.score_folds(fc, y="y", by="task")
    assert len(s) == 1 and s.rmsle[0] < 1e-8


def test_rolling_origin_backtest_reuses_one_shape():
    df = _curves(noise=0.01)
    m = ev.LawMethod("saturating_power_law", name="M2")
    seen = []

    class Spy:
        name = "spy"

        def __call__(self, train):
            seen.append(train.x.shape)
            return m(train)

    scores = ev.backtest(df, [Spy()], ev.RollingOrigin(fractions=(0.25, 0.5, 0.75)), x="x", y="y", by="task")
    assert len(set(seen)) == 1  # padded to one shape: one compilation for all folds
    assert scores.groupby("fold").rmsle.mean().is_monotonic_decreasing  # more data, better forecasts


def test_by_group_uses_one_method_per_group():
    df = _curves()
    m = ev.ByGroup("kind", {"p": ev.LawMethod("power_law")}, default=ev.LawMethod("saturating_power_law"),
                   name="by kind")
    scores = ev.backtest(df, [m], ev.LastPoints(n=4), x="x", y="y", by=["kind", "task"])
    assert (scores.rmsle < 1e-6).all()
    assert scores.status.notna().all()  # the per-group fits' diagnostics reach the scores


class _QuantileMethod:
    """A method with quantiles: M2 with +-2 % (q0.05/q0.95) bands, to check probabilistic scoring."""

    name = "banded"

    def __call__(self, train):
        fc = ev.LawMethod("saturating_power_law")(train)

        def predict(query):
            t = fc(query)
            return forecast_frame(t.drop(columns="prediction"), t.prediction,
                                  {0.05: t.prediction * 0.98, 0.5: t.prediction, 0.95: t.prediction * 1.02})

        return ev.Forecast(predict, fc.info)


def test_quantile_forecasts_are_scored_for_coverage_and_crps():
    df = _curves(noise=0.05, seed=1)
    scores = ev.backtest(df, [_QuantileMethod()], ev.LastPoints(n=4), x="x", y="y", by="task")
    assert {"coverage_90", "width_90", "pinball", "crps"} <= set(scores.columns)
    assert ((scores.coverage_90 >= 0) & (scores.coverage_90 <= 1)).all()
    assert (scores.crps > 0).all() and (scores.width_90 > 0).all()


def test_failed_fits_count_as_losses():
    df = _curves()
    df.loc[df.task == "p1", "y"] *= np.where(df.loc[df.task == "p1", "x"] < 1e4, -1, 1)  # invalid for log losses
    scores = ev.backtest(df, [ev.LawMethod("power_law")], ev.LastPoints(n=4), x="x", y="y", by="task")
    bad = scores.set_index("task").loc["p1"]
    assert bad.failed and np.isnan(bad.rmsle) and bad.status == "invalid_data"
    board = ev.leaderboard(scores)
    assert board.n_failed.iloc[0] == 1 and board.n_blowup.iloc[0] >= 1
    assert board["mean"].iloc[0] == pytest.approx(scores.rmsle.mean())  # mean over the fitted tasks


# --------------------------------------------------------------------------- selection
def test_select_law_picks_the_generating_law_without_seeing_the_test_points():
    df = _curves(noise=0.002, seed=3)
    cands = [ev.LawMethod("power_law", name="M1"), ev.LawMethod("saturating_power_law", name="M2"),
             ev.LawMethod("m3", name="M3")]
    sel = ev.SelectLaw(cands, validation=ev.RollingOrigin((0.5, 0.7), mode="x"), ensemble="ens",
                       keep_candidates=True)
    split = ev.LastPoints(n=4)
    scores = ev.backtest(df, [sel], split, x="x", y="y", by="task")
    choice = scores[scores.method == "selected"].set_index("task").choice
    assert choice[["s1", "s2"]].tolist() == ["M2", "M2"]
    assert set(choice[["p1", "p2"]]) <= {"M1", "M2", "M3"}  # M2/M3 contain the pure power law
    # no peeking: scrambling the held-out targets changes no choice
    fold = split(df, x="x", by="task")[0]
    moved = df.copy()
    moved.loc[fold.test, "y"] *= 3.0
    again = ev.backtest(moved, [sel], split, x="x", y="y", by="task")
    assert again[again.method == "selected"].set_index("task").choice.equals(choice)
    ens = scores[scores.method == "ens"]
    assert ens.weights.str.len().gt(0).all()
    rep = ev.selection_report(scores, candidates=["M1", "M2", "M3"])
    assert rep.iloc[-1].n_tasks == 4 and rep.iloc[-1].right >= 0.75


def test_ensemble_combines_in_log_space():
    from jaxscale.evaluate.selection import _combine, _weights

    w = _weights(np.array([[0.01, 0.02, np.inf], [np.inf, np.inf, np.inf]]), top_k=3)
    np.testing.assert_allclose(w[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(w[1], [1.0, 0.0, 0.0])  # nothing valid: the first candidate
    out = _combine(np.array([[1.0, 4.0, np.nan]]), np.array([[0.5, 0.5, 0.0]]))
    assert out[0] == pytest.approx(2.0)  # geometric mean


# --------------------------------------------------------------------------- plots
def test_bounded_bnsl_slopes_stay_in_range():
    """`monotone_bnsl(n, max_slope)`: y - a falls with a log-log slope in [0, max_slope] before the
    first and after the last break, whatever the unconstrained vector (everywhere for one break),
    and the data-driven starts lie inside the bounds."""
    import jax
    import jax.numpy as jnp

    from jaxscale.laws import bnsl_params, monotone_bnsl

    assert monotone_bnsl(2, max_slope=1.0) is monotone_bnsl(2, 1.0)
    x = np.geomspace(1e-30, 1e30, 600)
    for n in (1, 2):
        law = monotone_bnsl(n, max_slope=1.0)
        assert law.name == f"monotone_bnsl{n}_max1"
        u = np.random.default_rng(n).normal(scale=3.0, size=(32, law.n_params))
        u[:, law.param_names.index("d1")] = 0.0  # breaks near x = 1 and sharp enough (f < 0.3) that
        for j in range(1, n + 1):  # both ends of the x range are past them
            u[:, law.param_names.index(f"f{j}")] = np.linspace(-4.0, 0.0, len(u))
        q = {k: np.asarray(v)[:, None] for k, v in jax.jit(law.to_params)(jnp.asarray(u)).items()}
        assert all(((q[f"s{j}"] >= 0) & (q[f"s{j}"] <= 1)).all() for j in range(n + 1))
        np.testing.assert_allclose(bnsl_params(q, n)[f"c{n}"], q[f"s{n}"] - q[f"s{n - 1}"])
        reducible = np.asarray(jax.jit(law.log)({**q, "a": np.full_like(q["a"], 1e-300)}, x))  # log(y - a), [32, 600]
        slope = -np.diff(reducible, axis=1) / np.diff(np.log(x))
        ends = slope if n == 1 else slope[:, [0, -1]]
        assert ends.min() >= -1e-6 and ends.max() <= 1.0 + 1e-6, n
    xs = np.geomspace(1.0, 100.0, 9)
    u0 = jax.jit(law.starts)(jnp.asarray(xs), jnp.asarray(2.0 + xs ** -3.0), jnp.ones(9, bool))
    starts = jax.jit(law.to_params)(u0)
    assert np.isfinite(np.asarray(starts["s2"])).all() and float(np.max(starts["s2"])) <= 0.9 + 1e-9
    with pytest.raises(ValueError):
        monotone_bnsl(1, max_slope=0.0)


def test_plots_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    df = _curves(noise=0.01)
    methods = [ev.LawMethod("power_law", name="M1"), ev.LawMethod("saturating_power_law", name="M2")]
    fc = ev.forecast_folds(df, methods, ev.LastPoints(n=4), x="x", y="y", by="task", grid=20)
    ax = ev.plots.plot_task(df, fc, {"task": "s1"})
    assert len(ax.lines) >= 2 and len(ax.collections) >= 2  # two curves, fitted and held-out points
    fig = ev.plots.plot_leaderboard(ev.leaderboard(ev.score_folds(fc, y="y", by="task")))
    fig.savefig(tmp_path / "board.png")
    assert (tmp_path / "board.png").stat().st_size > 1000


# --------------------------------------------------------------------------- the notebook
def test_backtest_notebook_runs(tmp_path, monkeypatch, run_notebook):
    for var in ("JAXSCALE_BACKTEST_CSV", "JAXSCALE_BACKTEST_X", "JAXSCALE_BACKTEST_Y", "JAXSCALE_BACKTEST_BY"):
        monkeypatch.delenv(var, raising=False)
    text = run_notebook("backtest.ipynb", tmp_path)
    # the kernel is this interpreter ("python" in the kernel spec resolves to sys.executable)
    assert f"python {sys.executable}" in text
    scores = pd.read_csv(tmp_path / "backtest_scores.csv")
    assert set(scores.method) == {"selected", "ensemble", "power_law", "saturating_power_law", "bnsl1"}
    assert scores.rmsle.notna().all() and len(scores[scores.method == "selected"]) == 6
    # the example's saturating curves are extrapolated well by the selected law
    sel = scores[scores.method == "selected"].set_index("task").rmsle
    assert sel[["saturating-a", "saturating-b"]].max() < 0.02
    intervals = pd.read_csv(tmp_path / "interval_scores.csv")
    assert set(intervals.method) == {"saturating_power_law_bootstrap", "calibrated"}
    cover = intervals.groupby("method").coverage_90.mean()
    assert cover.notna().all() and cover["calibrated"] >= cover["saturating_power_law_bootstrap"]


# --------------------------------------------------------------------------- reproductions
def test_bnsl_shapes_explain_a_blow_up(data_dir):
    """`bnsl_shapes` on a curve where the plain 1-break BNSL blows up: the plain fit puts the limit
    just under the training points with a steep final segment; the bounded fit keeps slopes in
    [0, 1] and extrapolates without blowing up."""
    shapes = R.bnsl_shapes(["IC/cal_25/MiX/B/16"], data_dir=data_dir).set_index("method")
    plain, bounded = shapes.loc["BNSL1"], shapes.loc["BNSL1 bounded"]
    assert plain.a_over_ymin > 0.9 and plain.slope_1 > 2 and plain.rmsle > 0.2
    assert 0 <= bounded.slope_0 <= 1 + 1e-9 and 0 <= bounded.slope_1 <= 1 + 1e-9 and bounded.rmsle < 0.1
    assert bounded.objective > plain.objective  # the bound costs training fit: the prior decides here


@pytest.fixture(scope="module")
def revisiting(data_dir):
    return R.revisiting(data_dir=data_dir, methods=R.revisiting_methods(fixed_m4=False, ablations=False))


def _board(res, domain):
    return res.leaderboard[res.leaderboard.domain == domain].set_index("method")


@pytest.mark.parametrize("domain", ["IC", "NMT", "LM", "BB"])
def test_revisiting_m4_no_worse_than_reference(revisiting, domain):
    ref = R.REVISITING_REFERENCE_M4[domain]
    b = _board(revisiting, domain)
    assert b.loc["M4", "n_failed"] == 0
    assert b.loc["M4", "mean"] <= 1.05 * ref, (domain, b.loc["M4", "mean"], ref)


@pytest.mark.parametrize("domain", ["IC", "NMT", "LM", "BB"])
def test_revisiting_selected_law_beats_reference_m4(revisiting, domain):
    b = _board(revisiting, domain)
    for m in ("selected", "ensemble", "BNSL1 bounded"):
        assert b.loc[m, "mean"] < R.REVISITING_REFERENCE_M4[domain], (m, domain)


def test_revisiting_bnsl_does_not_blow_up(revisiting):
    """Reference 1-break grid fit: 10 of 92 curves above RMSLE 0.2 or NaN. jaxscale's BNSL with
    constraints (every segment's log-log slope in [0, 1]) and multi-start: none with 1 or 2 breaks,
    nor the selections built on them. The plain 1-break law keeps 2: curves that level off at their
    last training points, where M4 is above 0.2 too."""
    s = revisiting.scores
    worst = {"BNSL1 bounded": 0.14, "BNSL2 bounded": 0.18, "BNSL selected breaks": 0.15, "selected": 0.15,
             "ensemble": 0.17}  # measured 0.127, 0.166, 0.138, 0.138, 0.156
    for m, limit in worst.items():
        r = s[s.method == m].set_index("task").rmsle
        assert len(r) == 92 and r.notna().all()
        assert (r > 0.2).sum() == 0 and r.max() < limit, (m, r.max())
    plain = s[s.method == "BNSL1"].set_index("task").rmsle
    m4 = s[s.method == "M4"].set_index("task").rmsle
    assert plain.notna().all() and (plain > 0.2).sum() <= 2 and plain.max() < 0.235
    assert (m4[plain.index[plain > 0.2]] > 0.2).all()  # the same curves defeat M4


def test_revisiting_leaderboard_regression(revisiting):
    allb = _board(revisiting, "all")
    ic = _board(revisiting, "IC")
    # measured (2 s.f. margins over the numbers in benchmarks/ACCURACY.md)
    assert ic.loc["BNSL1", "mean"] <= 0.0406
    assert ic.loc["BNSL1 bounded", "mean"] <= 0.0328
    assert ic.loc["BNSL2 bounded", "mean"] <= 0.0331
    assert ic.loc["selected", "mean"] <= 0.0371
    assert ic.loc["ensemble", "mean"] <= 0.0394
    assert _board(revisiting, "NMT").loc["BNSL1 bounded", "mean"] <= 0.0106
    assert allb.loc["M1", "mean"] > allb.loc["M4", "mean"]  # the paper's ordering of M1 vs M4
    for dom, g in revisiting.leaderboard.groupby("domain"):
        assert g.win_rate.sum() == pytest.approx(1.0)
    rep = revisiting.selection.set_index("domain")
    assert rep.loc["all", "right"] >= 0.33
    # the bounded BNSL1 alone (0.0273) beats the per-curve choice: validation errors are noisy
    assert rep.loc["all", "oracle"] < rep.loc["all", "selected"] <= 0.0311
    assert rep.loc["all", "best_single_name"] == "BNSL1 bounded"


def test_gadre_chained_forecast(data_dir):
    out = R.gadre_chained(data_dir=data_dir).set_index(["dataset", "target"])
    assert out.loc[("rpj", "1.4B"), "error_rel_pct"] <= 3.7
    assert out.loc[("rpj", "6.9B"), "error_rel_pct"] <= 0.1
    for key, ref in R.GADRE_REFERENCE.items():
        assert out.loc[key, "error_rel_pct"] == pytest.approx(ref, abs=5e-4)
    for key, ref in R.GADRE_LOSS_REFERENCE.items():
        assert out.loc[key, "loss_rel_pct"] == pytest.approx(ref, abs=5e-4)
    # the C4 and RefinedWeb rows of the same table (measured; coefficients as in reference.md)
    measured = {("c4_original", "1.4B"): 9.5818, ("c4_original", "6.9B"): 0.1370,
                ("rw_original", "1.4B"): 5.6167, ("rw_original", "6.9B"): 2.9388}
    for key, v in measured.items():
        assert out.loc[key, "error_rel_pct"] == pytest.approx(v, abs=2e-3)
    coef = out.groupby(level=0)[["E", "eta", "eps", "gamma"]].first()
    np.testing.assert_allclose(coef.loc["c4_original"], [1.51, 0.121, 0.850, 0.756], atol=6e-3)
    np.testing.assert_allclose(coef.loc["rw_original"], [1.73, 0.127, 0.865, 0.707], atol=6e-3)


@pytest.fixture(scope="module")
def olmo(data_dir):
    return {v: R.olmo_two_step(data_dir=data_dir, variant=v) for v in ("reference", "step 1 ridge")}


def test_olmo_two_step_matches_published(olmo, data_dir):
    ref = olmo["reference"]
    r13 = ref[ref.target == "13B-5T"].set_index("task")
    assert len(r13) == 8 and len(ref) == 16
    for task, pub in R.OLMO_PUBLISHED_13B.items():
        # no worse than the published error (given to 0.1 point)
        assert abs(r13.loc[task, "error_pts"]) <= abs(pub) + 0.05, (task, r13.loc[task, "error_pts"], pub)
    # and the same as the paper's own chained table to 0.01 point
    paper = pd.read_csv(Path(data_dir) / "olmo-ladder/src/scripts/paper/figures/chained_main.csv")
    paper["task"] = paper.Task.map(R.OLMO_TASKS)
    for _, row in paper.iterrows():
        assert r13.loc[row.task, "error_pts"] == pytest.approx(100 * (row.Pred - row.Actual), abs=0.01)


def test_olmo_regularised_step1_beats_published_on_arc(olmo):
    ridge = olmo["step 1 ridge"]
    r13 = ridge[ridge.target == "13B-5T"].set_index("task")
    assert abs(r13.loc["ARC-Challenge", "error_pts"]) < abs(R.OLMO_PUBLISHED_13B["ARC-Challenge"]) - 3
    assert abs(r13.loc["OpenBookQA", "error_pts"]) < abs(R.OLMO_PUBLISHED_13B["OpenBookQA"])
    base = olmo["reference"]
    assert ridge.error_pts.abs().mean() < base.error_pts.abs().mean()


def test_colpret_learning_curves(data_dir):
    # the benchmark's laws minus M4 (the slowest fit here; its numbers are in benchmarks/ACCURACY.md)
    methods = [m for m in R.colpret_methods() if m.name != "M4"]
    scores, board = R.colpret(data_dir=data_dir, methods=methods)
    allb = board[board.family == "all"].set_index("method")
    assert (allb.n_tasks == 182).all()
    # every curve forecast, except that the plain BNSL's blow-up fit of one Gadre curve (c1 -> -650,
    # a kink beyond the data: 1e197 at the last test point) may overflow to inf; the monotone
    # (bounded) BNSL is the remedy and must forecast every curve
    assert (allb.drop(index="BNSL1").n_failed == 0).all() and allb.loc["BNSL1", "n_failed"] <= 1
    # regression thresholds: the measured numbers of benchmarks/ACCURACY.md plus ~3 %
    mean_limits = {"M1": 0.0715, "M2": 0.0429, "M3": 0.0365, "BNSL1 monotone": 0.0302}
    for m, lim in mean_limits.items():
        assert allb.loc[m, "mean"] <= lim, (m, allb.loc[m, "mean"])
    # the best median, but unconstrained BNSL explodes on a few curves. 0.0189 since the solver rework
    # (BNSL capped at 300 iterations here: 50 curves reach a lower objective, 29 a higher one)
    assert allb.loc["BNSL1", "median"] <= 0.0195
    assert allb.loc["BNSL1", "n_blowup"] >= 1 and allb.loc["BNSL1 monotone", "n_blowup"] == 0
    assert allb.loc["BNSL1 monotone", "max"] < 0.17
