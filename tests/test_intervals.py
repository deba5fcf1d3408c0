"""Bootstrap forecast intervals in the harness and their calibration on extrapolation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jaxscale.evaluate import (
    BootstrapMethod, Calibrated, LastPoints, apply_scales, forecast_folds, interval_scales,
)


def _table(rng: np.random.Generator, n: int, spread: float, error: float, bias: float = 0.0,
           h: np.ndarray | None = None) -> pd.DataFrame:
    """Forecast rows in log space: centre c, quantiles at c +- z * spread, truth c + bias + error * N(0, 1) (* h)."""
    c = rng.uniform(0.5, 2.0, n)
    z = rng.standard_normal(n) * (1.0 if h is None else h)
    y = np.exp(c + bias + error * z)
    t = pd.DataFrame({"task": "t", "x": 1.0, "y": y, "prediction": np.exp(c)})
    for q, k in ((0.05, -1.645), (0.25, -0.674), (0.75, 0.674), (0.95, 1.645)):
        t[f"q{q:g}"] = np.exp(c + k * spread)
    if h is not None:
        t["horizon"] = h
    return t


def test_relative_scales_recover_the_spread_ratio():
    rng = np.random.default_rng(0)
    t = _table(rng, 20_000, spread=0.1, error=0.2)
    s = interval_scales(t, y="y", horizon=None, score="relative").set_index("level")
    assert (s["space"] == "log").all() and (s["kind"] == "relative").all()
    np.testing.assert_allclose(s["a"], 2.0, rtol=0.05)  # the errors are twice the stated spread
    out = apply_scales(t, s.reset_index())
    inside = (out.y >= out["q0.05"]) & (out.y <= out["q0.95"])
    assert abs(inside.mean() - 0.9) < 0.01
    assert abs(((out.y >= out["q0.25"]) & (out.y <= out["q0.75"])).mean() - 0.5) < 0.02


def test_absolute_scores_follow_a_biased_error_and_its_horizon():
    rng = np.random.default_rng(1)
    t = _table(rng, 20_000, spread=0.01, error=0.2, bias=0.1)
    s = interval_scales(t, y="y", horizon=None, score="absolute").set_index("level")
    np.testing.assert_allclose(s.loc[0.95, "a"], 0.1 + 1.645 * 0.2, atol=0.01)
    np.testing.assert_allclose(s.loc[0.05, "a"], 0.1 - 1.645 * 0.2, atol=0.01)
    # errors growing in proportion to the horizon: the quantile line's slope is the quantile of z
    h = rng.uniform(0.1, 1.0, 20_000)
    th = _table(rng, 20_000, spread=0.01, error=0.3, h=h)
    sh = interval_scales(th, y="y", horizon="horizon", score="absolute").set_index("level")
    np.testing.assert_allclose(sh.loc[0.95, "b"], 1.645 * 0.3, rtol=0.1)
    np.testing.assert_allclose(sh.loc[0.05, "b"], -1.645 * 0.3, rtol=0.1)
    out = apply_scales(th, sh.reset_index(), horizon=h)
    far = h > 0.7
    inside = (out.y >= out["q0.05"]) & (out.y <= out["q0.95"])
    assert abs(inside[far].mean() - 0.9) < 0.03  # holds at long horizons, not only on average


def test_apply_scales_keeps_quantiles_ordered_and_skips_unknown_levels():
    t = pd.DataFrame({"prediction": [1.0, 2.0], "q0.05": [0.9, 1.8], "q0.95": [1.1, 2.2], "q0.25": [0.95, 1.9]})
    scales = pd.DataFrame({"level": [0.05, 0.95], "a": [-0.5, 0.3], "b": [0.0, 0.0], "n": [50, 50],
                           "space": ["linear", "linear"], "kind": ["absolute", "absolute"]})
    out = apply_scales(t, scales)
    np.testing.assert_allclose(out["q0.05"], [0.5, 1.5])
    np.testing.assert_allclose(out["q0.95"], [1.3, 2.3])
    np.testing.assert_allclose(out["q0.25"], [0.95, 1.9])  # no scale learned: unchanged
    crossed = apply_scales(t, scales.assign(a=[0.5, -0.5]))  # an upper level pushed below a lower one
    q = crossed[["q0.05", "q0.25", "q0.95"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()


def test_too_few_scores_leave_the_level_alone_and_bad_options_raise():
    rng = np.random.default_rng(2)
    t = _table(rng, 10, spread=0.1, error=0.2)
    s = interval_scales(t, y="y", horizon=None, min_scores=20)
    assert (s["a"] == 1.0).all() and (s["kind"] == "relative").all()
    with pytest.raises(ValueError, match="score"):
        interval_scales(t, y="y", horizon=None, score="mad")
    with pytest.raises(ValueError, match="space"):
        Calibrated(BootstrapMethod("power_law"), space="sqrt")


def _curves(n_tasks: int = 40, n_points: int = 14, seed: int = 0) -> pd.DataFrame:
    """Saturating curves y = e + a x^-alpha with 3 % noise, fitted below by a pure power law (misspecified)."""
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e2, 1e6, n_points)
    rows = []
    for k in range(n_tasks):
        a, alpha, e = rng.uniform(5, 20), rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.5)
        y = (e + a * x ** -alpha) * np.exp(0.03 * rng.standard_normal(n_points))
        rows.append(pd.DataFrame({"task": f"t{k}", "x": x, "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_calibration_widens_misspecified_bootstrap_intervals_towards_nominal():
    df = _curves()
    boot = BootstrapMethod("power_law", n_boot=50, levels=(0.05, 0.95), seed=0)
    assert boot.name == "power_law_bootstrap"
    methods = [boot, Calibrated(boot, name="calibrated")]
    fc = forecast_folds(df, methods, LastPoints(n=3), x="x", y="y", by="task")
    fc = fc[fc.role == "test"]
    cover = {m: float(((g.y >= g["q0.05"]) & (g.y <= g["q0.95"])).mean()) for m, g in fc.groupby("method")}
    raw, cal = fc[fc.method == boot.name], fc[fc.method == "calibrated"]
    assert (raw["q0.05"] <= raw["q0.95"]).all() and (cal["q0.05"] <= cal["q0.95"]).all()
    np.testing.assert_allclose(cal["prediction"], raw["prediction"])  # the centre is untouched
    assert cover[boot.name] < 0.5, cover  # parameter uncertainty alone misses the misspecification
    assert cover["calibrated"] >= 0.7, cover
    assert cover["calibrated"] > cover[boot.name] + 0.3, cover


def test_calibrated_scales_come_from_the_rolling_origin_backtest_of_the_training_part():
    from jaxscale.data import Dataset
    from jaxscale.evaluate import RollingOrigin

    df = _curves(n_tasks=30)
    boot = BootstrapMethod("power_law", n_boot=30, levels=(0.05, 0.95), seed=0)
    cal = Calibrated(boot, group="task", min_scores=3)
    train = Dataset.from_frame(df[df.x <= 1e5], x="x", y="y", by="task")
    s = cal.scales(train)[boot.name]
    inner = forecast_folds(train.to_frame(), [boot], RollingOrigin(fractions=(0.5, 0.75)), x="x", y="y",
                           by="task", n_points=train.mask.shape[1])
    want = interval_scales(inner[inner.role == "test"], y="y", horizon=None, group="task", min_scores=3,
                           score="absolute")
    pd.testing.assert_frame_equal(s.reset_index(drop=True), want.reset_index(drop=True))
    assert set(s["group"]) == set(df.task) and (s["n"] > 0).all()
    with pytest.raises(KeyError, match="group"):
        Calibrated(boot, group="domain").scales(train)


def test_bayes_method_gives_posterior_quantiles_that_calibration_widens():
    from jaxscale.evaluate import BayesMethod

    df = _curves(n_tasks=12, n_points=12, seed=3)
    bayes = BayesMethod("power_law", levels=(0.05, 0.95), seed=0,
                        options={"num_warmup": 150, "num_samples": 150, "num_chains": 2})
    assert bayes.name == "power_law_nuts"
    fc = forecast_folds(df, [bayes, Calibrated(bayes, name="calibrated", min_scores=10)], LastPoints(n=3),
                        x="x", y="y", by="task")
    fc = fc[fc.role == "test"]
    assert {"r_hat", "flag"} <= set(fc.columns)  # the sampler's per-task diagnostics
    raw, cal = fc[fc.method == bayes.name], fc[fc.method == "calibrated"]
    assert (raw["q0.05"] <= raw["prediction"]).all() and (raw["prediction"] <= raw["q0.95"]).all()
    width = lambda g: float(np.median(np.log(g["q0.95"] / g["q0.05"])))  # noqa: E731
    cover = lambda g: float(((g.y >= g["q0.05"]) & (g.y <= g["q0.95"])).mean())  # noqa: E731
    assert width(cal) > width(raw) and cover(cal) >= cover(raw), (cover(raw), cover(cal))
    with pytest.raises(ValueError, match="inference"):
        BayesMethod("power_law", inference="mcmc")


def test_calibrating_a_method_without_quantiles_passes_its_forecasts_through():
    from jaxscale.evaluate import LawMethod

    df = _curves(n_tasks=6)
    fc = forecast_folds(df, [LawMethod("power_law"), Calibrated(LawMethod("power_law"), name="calibrated")],
                        LastPoints(n=3), x="x", y="y", by="task")
    raw, cal = fc[fc.method == "power_law"], fc[fc.method == "calibrated"]
    np.testing.assert_allclose(cal["prediction"].to_numpy(), raw["prediction"].to_numpy())
    assert not [c for c in cal.columns if c.startswith("q0")]


def test_calibration_on_the_real_92_curve_benchmark(data_dir):
    """Language, BIG-bench and translation curves of the 92-curve benchmark: bootstrap intervals of
    M2 miss about half of the extrapolation points; calibrated on the training points they cover."""
    from jaxscale import datasets
    from jaxscale.evaluate import Given

    df = datasets.load_revisiting(data_dir=data_dir)
    df = df[(df.y > 0) & df.domain.isin(["LM", "BB", "NMT"])]
    boot = BootstrapMethod("saturating_power_law", n_boot=50, levels=(0.05, 0.95), seed=0)
    fc = forecast_folds(df, [boot, Calibrated(boot, name="calibrated")],
                        Given("split", train="train", test="extrapolate"), x="x", y="y", by=["domain", "task"])
    fc = fc[fc.role == "test"]
    cover = {m: float(((g.y >= g["q0.05"]) & (g.y <= g["q0.95"])).mean()) for m, g in fc.groupby("method")}
    assert cover[boot.name] < 0.6, cover
    assert cover["calibrated"] >= 0.85, cover
