"""fit -> FitResult: forecast table, per-row prediction, save/load, starts and keys."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import laws


@pytest.fixture(scope="module")
def two_tasks():
    rows = []
    for t, (e, c) in {"small": (2.0, -0.3), "big": (1.5, -0.25)}.items():
        for x in np.geomspace(1e6, 1e9, 8):
            rows.append({"run": t, "N": x, "loss": e + 30 * x**c})
    df = pd.DataFrame(rows)
    return df, jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="run")


def test_params_and_diagnostics(two_tasks):
    _, res = two_tasks
    table = res.to_frame().set_index("run")
    assert table.loc["small", "eps_inf"] == pytest.approx(2.0, rel=1e-6)
    assert table.loc["big", "c"] == pytest.approx(-0.25, rel=1e-6)
    assert set(table["status"]) == {"converged"}
    assert {"objective", "reason", "n_points", "n_iter", "grad_norm"} <= set(table.columns)


def test_forecast_table_shape(two_tasks):
    _, res = two_tasks
    fc = res.forecast([1e10, 1e11])
    assert list(fc.columns) == ["run", "N", "prediction"]
    assert len(fc) == 4
    row = fc[(fc.run == "small") & (fc.N == 1e11)].iloc[0]
    assert row.prediction == pytest.approx(2.0 + 30 * 1e11**-0.3, rel=1e-6)


def test_predict_rows_by_task_key(two_tasks):
    _, res = two_tasks
    q = pd.DataFrame({"run": ["big", "small", "unknown"], "N": [1e10, 1e10, 1e10]})
    pred = res.predict(q)
    assert pred[0] == pytest.approx(1.5 + 30 * 1e10**-0.25, rel=1e-6)
    assert pred[1] == pytest.approx(2.0 + 30 * 1e10**-0.3, rel=1e-6)
    assert np.isnan(pred[2])
    fc = res.forecast(q)
    assert list(fc.columns) == ["run", "N", "prediction"]


def test_save_and_load_round_trip(two_tasks, tmp_path):
    _, res = two_tasks
    res.save(tmp_path / "fit")
    back = jaxscale.load(tmp_path / "fit")
    pd.testing.assert_frame_equal(back.to_frame(), res.to_frame(), check_column_type=False)
    np.testing.assert_allclose(back.predict([1e12]), res.predict([1e12]))
    assert back.loss.name == "mse_log" and back.law is laws.saturating_power_law


def test_save_load_keeps_law_options(tmp_path):
    x = np.geomspace(1e3, 1e8, 12)
    law = laws.m4.fix(eps_0=1.0)
    y = np.asarray(law({"eps_inf": 0.2, "beta": 3e3, "c": -0.6, "alpha": 0.7}, x))
    res = jaxscale.fit(jaxscale.Dataset.from_arrays(x[None], y[None]), law, loss="huber_log",
                       loss_options={"delta": 0.01})
    back = jaxscale.load(res.save(tmp_path / "m4"))
    assert back.law.fixed == {"eps_0": 1.0} and dict(back.loss.options) == {"delta": 0.01}
    np.testing.assert_allclose(back.predict(x), res.predict(x))


def test_user_starts_grid_and_array_and_key():
    x = np.geomspace(1e6, 1e9, 8)
    ds = jaxscale.Dataset.from_arrays(x[None], (2.0 + 30 * x**-0.3)[None])
    grid = {"eps_inf": [1.0, 1.9], "beta": [10.0, 50.0], "c": [-0.5, -0.1]}
    a = jaxscale.fit(ds, laws.saturating_power_law, starts=grid)
    b = jaxscale.fit(ds, laws.saturating_power_law, starts=np.array([[1.9, 30.0, -0.3]]))
    c1 = jaxscale.fit(ds, laws.saturating_power_law, starts=grid, key=jax.random.PRNGKey(0))
    c2 = jaxscale.fit(ds, laws.saturating_power_law, starts=grid, key=jax.random.PRNGKey(0))
    for r in (a, b, c1):
        assert r.params["c"][0] == pytest.approx(-0.3, rel=1e-6)
    np.testing.assert_array_equal(c1.u, c2.u)  # same key, same result
    with pytest.raises(ValueError, match="3 parameters"):
        jaxscale.fit(ds, laws.saturating_power_law, starts=np.ones((2, 2)))


def test_failed_task_reported_not_nan_silently():
    """A task whose objective is non-finite everywhere is reported with a reason."""
    x = np.geomspace(1e6, 1e9, 8)
    y = np.stack([2.0 + 30 * x**-0.3, 1e308 * np.ones(8)])
    res = jaxscale.fit(jaxscale.Dataset.from_arrays(np.stack([x, x]), y), laws.saturating_power_law, loss="mse")
    assert res.ok[0] and res.status[0] == jaxscale.Status.CONVERGED
    assert not res.ok[1] and res.status[1] == jaxscale.Status.NONFINITE and "not finite" in res.reasons[1]
    assert np.isnan(res.params["c"][1])


def test_per_task_starts_and_penalty():
    x = np.geomspace(1e6, 1e9, 8)
    y = np.stack([2.0 + 30 * x**-0.3, 1.0 + 10 * x**-0.2])
    ds = jaxscale.Dataset.from_arrays(np.stack([x, x]), y)
    warm = np.array([[[2.0, 30.0, -0.3]], [[1.0, 10.0, -0.2]]])  # [T, S, n]: each task its own start
    res = jaxscale.fit(ds, laws.saturating_power_law, starts=warm, polish=1)
    np.testing.assert_allclose(res.params["c"], [-0.3, -0.2], rtol=1e-8)
    with pytest.raises(ValueError, match="per-task starts have 1 tasks"):
        jaxscale.fit(ds, laws.saturating_power_law, starts=warm[:1])

    def ridge(p):  # pulls eps_inf towards 0: the optimum must move
        return 1e-3 * p["eps_inf"] ** 2

    pen = jaxscale.fit(ds, laws.saturating_power_law, penalty=ridge)
    assert np.all(pen.params["eps_inf"] < res.params["eps_inf"] - 1e-3)
    assert np.all(pen.ok)


def test_limit_stage_with_fixed_and_bounded_offset():
    # bnsl's limit candidates (a -> 0, f1 -> its bound) must respect a fixed or bounded a
    x = np.geomspace(1e2, 1e6, 16)
    law = laws.bnsl(1)
    true = {"a": 0.3, "b": 5.0, "c0": 0.2, "c1": 0.4, "d1": 1e4, "f1": 0.3}
    y = np.asarray(law(true, x)) * np.exp(0.01 * np.random.default_rng(0).standard_normal(16))
    df = pd.DataFrame({"x": x, "y": y})
    free = jaxscale.fit(df, law, x="x", y="y")
    fixed = jaxscale.fit(df, law.fix(a=0.3), x="x", y="y")
    bounded = jaxscale.fit(df, law.with_bounds(a=(0.2, 0.5)), x="x", y="y")
    for r in (free, fixed, bounded):
        assert r.ok.all() and np.isfinite(r.objective).all()
    assert "a" not in fixed.law.param_names
    assert 0.2 <= float(bounded.params["a"][0]) <= 0.5
    # the free fit is at least as good as either restricted one
    assert free.objective[0] <= min(fixed.objective[0], bounded.objective[0]) * (1 + 1e-9)


def test_limits_naming_an_unknown_parameter_is_an_error():
    import dataclasses

    law = dataclasses.replace(laws.bnsl(1), limits=lambda p, x, y, m: {"offset": p["a"][None] * 0})
    df = pd.DataFrame({"x": np.geomspace(1e2, 1e6, 12), "y": np.geomspace(2.0, 1.0, 12)})
    with pytest.raises(ValueError, match="offset"):
        jaxscale.fit(df, law, x="x", y="y")


def test_batch_sizes_by_platform_and_results_independent_of_them():
    from jaxscale.solver import DEFAULT_BATCH, SolverConfig, batch_sizes

    assert batch_sizes(SolverConfig()) == DEFAULT_BATCH["cpu"] == (256, 256)  # tests run on CPU
    assert batch_sizes(SolverConfig(batch_size=32)) == (32, 32)
    from types import SimpleNamespace

    gpu = [SimpleNamespace(platform="gpu")]
    assert batch_sizes(SolverConfig(), devices=gpu) == DEFAULT_BATCH["accelerator"] == (4096, 65536)
    assert batch_sizes(SolverConfig(batch_size=512), devices=gpu) == (512, 512)
    with pytest.raises(ValueError, match="batch_size"):
        batch_sizes(SolverConfig(batch_size=0))
    rng = np.random.default_rng(3)
    n = np.geomspace(1e6, 1e9, 10)
    df = pd.concat([pd.DataFrame({"task": t, "N": n, "loss": (1.5 + t % 3) + 40 * n ** -(0.2 + 0.02 * t)
                                  * np.exp(rng.normal(0, 0.01, n.size))}) for t in range(12)])
    a = jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="task")
    b = jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="task", batch_size=8)
    assert np.all(a.ok) and np.all(b.ok)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9, atol=1e-14)
