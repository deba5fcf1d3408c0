"""Bootstrap as one batched warm-started solve: resampling, intervals, forecasts."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import datasets, laws
from jaxscale.bootstrap import resample_weights


def test_resample_weights_are_multinomial_counts():
    x = np.geomspace(1, 100, 7)
    ds = jaxscale.Dataset.from_arrays(np.stack([x, x]), np.ones((2, 7)), mask=np.array([[1] * 7, [1] * 5 + [0] * 2]))
    w = resample_weights(ds, 500, jax.random.PRNGKey(1))
    assert w.shape == (2, 500, 8)
    np.testing.assert_array_equal(w.sum(-1), [[7] * 500, [5] * 500])
    assert w[1, :, 5:].sum() == 0  # never draws padding or masked points
    # each point is drawn with probability 1/m: mean count 1
    np.testing.assert_allclose(w[0, :, :7].mean(0), 1.0, atol=0.15)
    np.testing.assert_array_equal(w, resample_weights(ds, 500, jax.random.PRNGKey(1)))


def test_chinchilla_bootstrap_standard_errors(data_dir):
    df = datasets.load_chinchilla(data_dir=data_dir)
    bs = jaxscale.bootstrap(df, laws.chinchilla, x=["N", "D"], y="loss", loss="huber_log", n=400,
                            key=jax.random.PRNGKey(0))
    assert bs.replicates.ok.all()
    iv = bs.intervals().set_index("param")
    # published bootstrap SEs (Besiroglu et al.): E 0.03, alpha 0.02, beta 0.02
    assert 0.015 < iv.loc["E", "se"] < 0.04
    assert 0.008 < iv.loc["alpha", "se"] < 0.03
    assert 0.01 < iv.loc["beta", "se"] < 0.03
    assert iv.loc["E", "q0.025"] < 1.8172 < iv.loc["E", "q0.975"]
    fc = bs.forecast({"N": [7e10], "D": [1.4e12]})
    assert list(fc.columns) == ["task", "N", "D", "prediction", "q0.05", "q0.5", "q0.95"]
    row = fc.iloc[0]
    assert row["q0.05"] < row.prediction < row["q0.95"]
    assert len(bs.samples) == 400 and bs.param_array.shape == (1, 400, 5)


def test_bootstrap_many_tasks_reproducible():
    x = np.geomspace(1e6, 1e9, 10)
    rng = np.random.default_rng(0)
    y = np.stack([2.0 + 30 * x**-0.3, 1.0 + 10 * x**-0.2]) * np.exp(0.01 * rng.standard_normal((2, 10)))
    ds = jaxscale.Dataset.from_arrays(np.stack([x, x]), y)
    a = jaxscale.bootstrap(ds, laws.saturating_power_law, n=50, key=jax.random.PRNGKey(3))
    b = jaxscale.bootstrap(ds, laws.saturating_power_law, n=50, key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a.param_array, b.param_array)
    assert a.param_array.shape == (2, 50, 3)
    with pytest.raises(ValueError, match="n must be >= 2"):
        jaxscale.bootstrap(ds, laws.saturating_power_law, n=1, key=jax.random.PRNGKey(3))


def test_predict_rows_per_task_and_chained_inputs():
    x = np.geomspace(1e6, 1e9, 10)
    y = np.stack([2.0 + 30 * x**-0.3, 1.0 + 10 * x**-0.2])
    ds = jaxscale.Dataset.from_arrays(np.stack([x, x]), y)
    bs = jaxscale.bootstrap(ds, laws.saturating_power_law, n=20, key=jax.random.PRNGKey(0))
    rows = pd.DataFrame({"task": [1, 0, 7], "x": [1e10, 1e10, 1e10]})
    pred = bs.predict_rows(rows)
    assert pred.shape == (3, 20) and np.isnan(pred[2]).all()
    np.testing.assert_allclose(pred[0], bs.predict([1e10])[1, :, 0])
    np.testing.assert_allclose(pred[1], bs.predict([1e10])[0, :, 0])
    # per-replicate inputs: replicate b of row r is evaluated at x[r, b]
    xs = np.tile(np.geomspace(1e9, 1e11, 20), (3, 1))
    chained = bs.predict_rows(rows, x=xs)
    p = bs.param_array[0, 5]
    assert chained[1, 5] == pytest.approx(p[0] + p[1] * xs[1, 5] ** p[2], rel=1e-12)
