"""jaxscale.bayes: models, priors, NUTS / SVI recovery, calibration on simulation, forecast and
chained tables, diagnostics, the notebook. Small settings: the whole file runs in a few minutes on
a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import jaxscale
from jaxscale import bayes, laws
from jaxscale.bayes import inference as I
from jaxscale.bayes import priors as P
from jaxscale.data import Dataset

REPO = Path(__file__).resolve().parents[1]
M2 = laws.saturating_power_law
# data-independent priors: used to simulate AND to fit (simulation-based calibration)
M2_PRIORS = {"eps_inf": dist.LogNormal(0.0, 0.3), "beta": dist.LogNormal(np.log(5.0), 0.3),
             "c": dist.Normal(-0.4, 0.1), "sigma": dist.LogNormal(np.log(0.02), 0.3)}
X_FIT = np.geomspace(10, 1e3, 8)
X_TEST = np.geomspace(3e3, 1e5, 4)
NUTS_SMALL = dict(num_warmup=200, num_samples=200, num_chains=2, max_tree_depth=5)


@pytest.fixture(scope="module")
def m2_sim():
    """12 M2 tasks simulated from known parameters, 2 % noise."""
    rng = np.random.default_rng(0)
    t = 12
    truth = np.stack([rng.uniform(0.5, 2.0, t), rng.uniform(3, 8, t), rng.uniform(-0.5, -0.3, t)], 1)
    x = np.broadcast_to(np.geomspace(10, 1e4, 12), (t, 12))
    y = (truth[:, :1] + truth[:, 1:2] * x ** truth[:, 2:3]) * np.exp(0.02 * rng.standard_normal(x.shape))
    return Dataset.from_arrays(x, y), truth


@pytest.fixture(scope="module")
def m2_nuts(m2_sim):
    data, _ = m2_sim
    return bayes.fit_nuts(data, M2, key=jax.random.PRNGKey(1), **NUTS_SMALL)


# --------------------------------------------------------------------------- models and priors
@pytest.mark.parametrize("law", [laws.power_law, M2, laws.m3, laws.chinchilla, laws.bnsl(1), laws.bnsl(2),
                                 laws.logistic, laws.exp_error, laws.sigmoid_boundary, laws.m4.fix(eps_0=1.0)],
                         ids=lambda l: l.name)
def test_model_builds_and_simulates(law):
    model = bayes.make_model(law)
    assert set(model.priors) == set(bayes.site_names(law))
    t, p = 3, 5
    x = np.broadcast_to(np.geomspace(1e6, 1e9, p)[:, None] * np.ones(law.n_inputs), (t, p, law.n_inputs))
    if not law.positive_x:
        x = np.broadcast_to(np.linspace(0.5, 2.0, p)[:, None] * np.ones(law.n_inputs), (t, p, law.n_inputs))
    s = numpyro.infer.Predictive(model, num_samples=2)(jax.random.PRNGKey(0), jnp.asarray(x), None, jnp.ones((t, p), bool))
    assert s["obs"].shape == (2, p, t)  # points plate x tasks plate
    for n in law.param_names:
        assert s[n].shape[:2] == (2, t), n  # every law parameter is a site or a deterministic
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(jnp.asarray(x), None, None)
    assert tr["obs"]["cond_indep_stack"][-1].name in ("tasks", "points")


def test_priors_override_and_unknown_site(m2_sim):
    data, _ = m2_sim
    alpha = dist.Normal(-0.3, 0.05)
    model = bayes.make_model(M2, priors={"c": alpha})
    assert model.priors["c"] is alpha
    prob = I.prepare(data, M2, priors={"c": alpha})
    assert prob.priors["c"] is alpha and isinstance(prob.priors["beta"], P.Prior)
    with pytest.raises(ValueError, match="unknown site"):
        bayes.make_model(M2, priors={"alpah": alpha})
    with pytest.raises(ValueError, match="hierarchical"):
        bayes.make_model(M2, hierarchical=("nope",))


def test_default_priors_are_data_scaled(m2_sim):
    data, truth = m2_sim
    prob = I.prepare(data, M2)
    beta = prob.priors["beta"]  # Positive -> LogNormal centred on the least-squares estimate
    assert beta.family == "lognormal"
    np.testing.assert_allclose(np.exp(beta.params["loc"]), prob.ls.param_array[:, 1])
    assert prob.priors["c"].family == "normal" and prob.priors["sigma"].family == "lognormal"
    assert np.all(np.exp(prob.priors["sigma"].params["loc"]) < 0.1)  # noise scale from the residuals
    # ordered break locations get a ratio site; the sharpness its LogUniform(1e-3, 1e2)
    names = bayes.site_names(laws.bnsl(2))
    assert "d2_ratio" in names and "d2" not in names


@pytest.mark.parametrize("law,weighted", [(M2, False), (M2, True), (laws.bnsl(2), False), (laws.sigmoid_boundary, False)],
                         ids=["m2", "m2-weighted", "bnsl2-ordered", "boundary-reparam"])
def test_direct_potential_matches_numpyro(law, weighted):
    rng = np.random.default_rng(1)
    t, p = 3, 10
    if law.positive_x:
        x = np.broadcast_to(np.geomspace(10, 1e4, p), (t, p))
    else:
        x = np.broadcast_to(np.linspace(-2, 2, p), (t, p))
    sim = bayes.simulate(law, bayes.generic_priors(law), x, key=jax.random.PRNGKey(2))
    y = np.clip(sim["y"], 1e-6, None)
    w = rng.uniform(0.5, 2.0, (t, p)) if weighted else None
    data = Dataset.from_arrays(x, y, weight=w)
    prob = I.prepare(data, law)
    fast, _, args, in_axes = I._task_fns(prob)
    ref = I._numpyro_potential(prob)
    z = jnp.asarray(I._init_flat(prob)) + 0.05 * rng.standard_normal((t, prob.dim))
    for i in range(t):
        a = jax.tree_util.tree_map(lambda ax, leaf: leaf if ax is None else leaf[i], in_axes, args,
                                   is_leaf=lambda v: v is None)
        np.testing.assert_allclose(float(fast(z[i], *a)), float(ref(z[i], *a)), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- inference
def test_nuts_recovers_parameters(m2_nuts, m2_sim):
    post = m2_nuts
    _, truth = m2_sim
    s = post.samples  # [T, S, n]
    assert s.shape == (12, 400, 3) and post.sigma.shape == (12, 400)
    lo, hi = np.quantile(s, 0.025, axis=1), np.quantile(s, 0.975, axis=1)
    inside = (truth >= lo) & (truth <= hi)
    assert inside.mean() >= 0.85, inside
    np.testing.assert_allclose(np.median(s[:, :, 2], 1), truth[:, 2], atol=0.06)
    d = post.diagnostics
    assert {"r_hat", "ess", "divergences", "flag", "reason"} <= set(d.columns)
    assert (d["r_hat"] < 1.1).mean() >= 0.9 and d["fitted"].all()
    assert np.all(np.median(post.sigma, 1) < 0.05)


def test_nuts_joint_and_hierarchical(m2_sim):
    data, truth = m2_sim
    post = bayes.fit_nuts(data, M2, key=jax.random.PRNGKey(3), hierarchical=("c",), num_warmup=150, num_samples=100,
                          num_chains=2)
    assert post.method == "nuts-joint" and post.samples.shape == (12, 200, 3)
    # short chains (a smoke test of the joint path): diagnostics exist per task; mixing is not asserted
    assert np.isfinite(post.diagnostics["r_hat"]).all() and (post.diagnostics["ess"] > 0).all()
    assert post.extra["hyper"]["c_mu"].shape == (2, 100)
    assert abs(np.median(post.extra["hyper"]["c_mu"]) - truth[:, 2].mean()) < 0.1
    with pytest.raises(ValueError, match="joint"):
        bayes.fit_nuts(data, M2, key=jax.random.PRNGKey(0), hierarchical=("c",), method="vmap")


def test_svi_larger_set():
    rng = np.random.default_rng(4)
    t = 96
    truth = np.stack([rng.uniform(0.5, 2.0, t), rng.uniform(3, 8, t), rng.uniform(-0.5, -0.3, t)], 1)
    x = np.broadcast_to(np.geomspace(10, 1e4, 10), (t, 10))
    y = (truth[:, :1] + truth[:, 1:2] * x ** truth[:, 2:3]) * np.exp(0.02 * rng.standard_normal(x.shape))
    post = bayes.fit_svi(Dataset.from_arrays(x, y), M2, key=jax.random.PRNGKey(5), num_steps=150, num_samples=400)
    assert post.method == "svi-mvn" and post.samples.shape == (t, 400, 3)
    med = np.median(post.samples, axis=1)
    assert np.median(np.abs(med[:, 2] - truth[:, 2])) < 0.03
    d = post.diagnostics
    assert (d["pareto_k"] < 0.7).mean() > 0.8  # the Gaussian per task is adequate for most tasks
    assert post.extra["losses"].shape == (150,)


def test_svi_hierarchical_autonormal(m2_sim):
    data, _ = m2_sim
    post = bayes.fit_svi(data, M2, key=jax.random.PRNGKey(6), hierarchical=("c",), guide="normal", num_steps=200,
                         num_samples=100)
    assert post.samples.shape == (12, 100, 3) and np.isfinite(post.samples).all()


def test_calibration_on_simulation():
    """Draw parameters from the prior, simulate 100 tasks (8 fit points up to x=1e3, 4 held-out
    extrapolations to 1e5), fit with NUTS: central 50/80/95 % intervals of the held-out points
    cover within +-5 points of nominal (400 held-out points; fixed seed)."""
    out = bayes.calibration_study(M2, M2_PRIORS, x_fit=X_FIT, x_test=X_TEST, n_tasks=100, key=jax.random.PRNGKey(0),
                                  method="nuts", **NUTS_SMALL)
    tab = out["table"]
    print(tab.to_string())
    obs = tab[tab.kind == "observation"]
    assert (obs["n"] == 400).all()
    np.testing.assert_allclose(obs["coverage"], obs["level"], atol=0.05)
    mean = tab[tab.kind == "mean"]
    np.testing.assert_allclose(mean["coverage"], mean["level"], atol=0.08)
    assert np.all(np.diff(obs["log_width"]) > 0)


def test_calibration_on_simulation_svi():
    """The same study with SVI (1,000 draws per task importance-resampled from a widened Student-t
    proposal), 300 tasks: 50/80/95 % observation and mean-curve intervals within +-5 points."""
    out = bayes.calibration_study(M2, M2_PRIORS, x_fit=X_FIT, x_test=X_TEST, n_tasks=300, key=jax.random.PRNGKey(0),
                                  method="svi", num_steps=500)
    tab = out["table"]
    print(tab.to_string())
    assert (tab["n"] == 1200).all()
    np.testing.assert_allclose(tab["coverage"], tab["level"], atol=0.05)
    assert out["posterior"].diagnostics["flag"].mean() < 0.1


# --------------------------------------------------------------------------- forecasts
def test_forecast_table(m2_nuts):
    post = m2_nuts
    tab = post.forecast([1e5, 1e6])
    assert list(tab.columns) == ["task", "x", "prediction", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95"]
    assert len(tab) == 12 * 2
    q = tab[["q0.05", "q0.25", "q0.5", "q0.75", "q0.95"]].to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    np.testing.assert_allclose(tab["prediction"], tab["q0.5"])
    obs = post.forecast([1e5, 1e6], kind="observation", key=jax.random.PRNGKey(0), levels=(0.05, 0.95))
    # the observation noise widens the intervals; where the parameter uncertainty dominates (far
    # extrapolations) the two agree up to the Monte Carlo error of 400 draws' 5 % / 95 % quantiles
    wider = (obs["q0.95"] - obs["q0.05"]).to_numpy() / (tab["q0.95"] - tab["q0.05"]).to_numpy()
    assert np.all(wider > 0.97) and np.median(wider) > 1.1
    rows = pd.DataFrame({"task": [3, 0, 99], "x": [1e5, 1e4, 1e4]})
    by_row = post.forecast(rows, levels=(0.1, 0.9))
    assert len(by_row) == 3 and np.isnan(by_row["prediction"].iloc[2])
    np.testing.assert_allclose(by_row["prediction"].iloc[0], tab["prediction"].iloc[6], rtol=1e-12)
    with pytest.raises(ValueError, match="key"):
        post.forecast([1e5], kind="observation")
    s = post.summary()
    assert len(s) == 12 * 4 and {"mean", "sd", "q0.05"} <= set(s.columns)


def test_invalid_tasks_are_reported():
    x = np.broadcast_to(np.geomspace(10, 1e4, 8), (3, 8)).copy()
    y = 1.0 + 5 * x ** -0.4
    y[1, 2] = -1.0  # not positive: cannot be fitted in log space
    post = bayes.fit_svi(Dataset.from_arrays(x, y), M2, key=jax.random.PRNGKey(0), num_steps=0, num_samples=50)
    assert post.method == "laplace"
    d = post.diagnostics
    assert list(d["fitted"]) == [True, False, True] and d["flag"].iloc[1] and "non-positive" in d["reason"].iloc[1]
    assert np.isnan(post.samples[1]).all() and np.isfinite(post.samples[0]).all()


def test_chained_forecast_shape(m2_nuts):
    # step 2: z = k * y^g on one task (a loss -> metric law), fitted by Laplace
    rng = np.random.default_rng(7)
    yv = np.linspace(1.0, 3.0, 10)
    z = 0.5 * yv ** 1.5 * np.exp(0.01 * rng.standard_normal(10))
    step2 = bayes.fit_svi(pd.DataFrame({"y": yv, "z": z}), laws.power_law, x="y", y="z", key=jax.random.PRNGKey(1),
                          num_steps=0)
    tab = bayes.chain_forecast([m2_nuts, step2], [1e5, 1e6, 1e7], key=jax.random.PRNGKey(2))
    assert len(tab) == 12 * 3
    assert {"task", "x", "prediction", "q0.05", "q0.95", "y_median"} <= set(tab.columns)
    direct = m2_nuts.forecast([1e5, 1e6, 1e7])["prediction"].to_numpy()
    np.testing.assert_allclose(tab["y_median"], direct, rtol=1e-9)
    np.testing.assert_allclose(tab["prediction"], 0.5 * direct ** 1.5, rtol=0.05)
    # chained intervals are at least as wide as step 2 alone at the median input
    obs = bayes.chain_forecast([m2_nuts, step2], [1e5], key=jax.random.PRNGKey(3), kind="observation")
    assert np.all(obs["q0.95"] > obs["q0.05"])


def test_psis_khat_separates_light_and_heavy_tails():
    rng = np.random.default_rng(0)
    light = -0.5 * rng.standard_normal((1, 2000)) ** 2  # bounded weights
    heavy = np.log(rng.pareto(1.0, (1, 2000)) + 1.0)  # weights with a tail of index 1 (k = 1)
    assert bayes.psis_khat(light)[0] < 0.5
    assert bayes.psis_khat(heavy)[0] > 0.7
    assert 0.0 < bayes.importance_ess(light)[0] <= 1.0


def test_to_arviz(m2_nuts):
    try:
        import arviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="arviz"):
            m2_nuts.to_arviz()
        return
    idata = m2_nuts.to_arviz()
    assert idata.posterior["c"].shape == (2, 200, 12)


def test_plot_forecast(m2_nuts):
    import matplotlib

    matplotlib.use("Agg")
    from jaxscale.bayes import plots

    ax = plots.plot_forecast(m2_nuts, 0, levels=(0.5, 0.9))
    assert len(ax.collections) >= 3  # two bands and the data
    ax2 = plots.plot_intervals(m2_nuts.forecast([1e5]), truth=np.ones(12))
    assert ax2 is not None


def test_notebook_runs(run_notebook):
    outputs = run_notebook("bayesian_forecast.ipynb", REPO)
    assert "coverage" in outputs
