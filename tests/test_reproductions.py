"""The published numbers of ../shared/docs/reference.md, reproduced on ../shared/data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import jaxscale
from jaxscale import datasets, laws
from jaxscale.solver import make_objective


def test_chinchilla_approach3_besiroglu(data_dir):
    df = datasets.load_chinchilla(data_dir=data_dir)
    assert len(df) == 240
    res = jaxscale.fit(df, laws.chinchilla, x=["N", "D"], y="loss", loss="huber_log", loss_options={"delta": 1e-3})
    p = res.params.iloc[0]
    # reference: 1.01827e-3, given to 6 significant digits (so +-5e-9)
    assert abs(res.objective[0] - 1.01827e-3) <= 5e-9
    # and no local refinement by SciPy's L-BFGS-B improves on it by more than 1e-9 relative
    obj = jax.jit(make_objective(laws.chinchilla, res.loss))
    args = [jnp.asarray(a[0]) for a in (res.data.x, res.data.y, res.data.weight)]
    f = lambda u: float(obj(jnp.asarray(u), *args))  # noqa: E731
    g = jax.jit(jax.grad(obj))
    polished = minimize(f, res.u[0], jac=lambda u: np.asarray(g(jnp.asarray(u), *args)), method="L-BFGS-B",
                        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
    assert polished.fun >= res.objective[0] * (1 - 1e-9)
    assert p.E == pytest.approx(1.817, abs=0.01)
    assert p.alpha == pytest.approx(0.347, abs=0.01)
    assert p.beta == pytest.approx(0.367, abs=0.01)
    assert res.to_frame().status[0] == "converged"


def test_bnsl_four_digit_addition(data_dir):
    df = datasets.load_bnsl_addition(data_dir=data_dir)
    train, held = df[df.split == "fit"], df[df.split == "heldout"]
    assert len(train) == 14 and len(held) == 3
    res = jaxscale.fit(train, laws.bnsl(1), x="x", y="y", loss="msle")
    pred = res.predict(held.x.to_numpy())[0]
    rmsle = np.sqrt(np.mean((np.log(pred) - np.log(held.y.to_numpy())) ** 2))
    assert rmsle <= 0.0110, rmsle
    fit_pred = res.predict(train.x.to_numpy())[0]
    assert np.sqrt(np.mean((np.log(fit_pred) - np.log(train.y.to_numpy())) ** 2)) < 0.0007
    assert res.params.d1[0] == pytest.approx(612.58, rel=0.01)


@pytest.mark.parametrize("dataset, loss_errs", [("rpj", (0.7103, 0.7320))])
def test_gadre_overtraining_loss_forecast(data_dir, dataset, loss_errs):
    df = datasets.load_gadre(data_dir=data_dir)
    d = df[df.dataset == dataset]
    res = jaxscale.fit(d[d.fit_loss], laws.overtraining, x=["C", "M"], y="loss_c4_val", loss="mse")
    assert res.ok.all()
    targets = d[d.target].sort_values("N")
    pred = res.predict(targets[["C", "M"]].to_numpy())[0]
    rel = 100 * np.abs(pred - targets.loss_c4_val.to_numpy()) / targets.loss_c4_val.to_numpy()
    assert len(rel) == 2
    assert np.all(rel <= 0.75), rel
    np.testing.assert_allclose(rel, loss_errs, atol=0.01)  # the reference fit itself
