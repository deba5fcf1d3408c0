"""Bayesian scaling-law fits with NumPyro: priors from a law's spec, NUTS / SVI over many tasks,
posterior predictive forecasts, chained forecasts, calibration and plots.

    >>> import jax
    >>> from jaxscale import bayes
    >>> post = bayes.fit_nuts(df, "saturating_power_law", x="N", y="loss", by="run",
    ...                       key=jax.random.PRNGKey(0))  # doctest: +SKIP
    >>> post.diagnostics                                  # r_hat, ess, divergences, flag  # doctest: +SKIP
    >>> post.forecast([1e10, 1e11], kind="observation", key=jax.random.PRNGKey(1))  # doctest: +SKIP
"""

from jaxscale.bayes.priors import Prior, default_priors, site_names
from jaxscale.bayes.models import generic_priors, make_model
from jaxscale.bayes.inference import Posterior, fit_nuts, fit_svi, importance_ess, psis_khat
from jaxscale.bayes.chain import chain_forecast, chain_draws
from jaxscale.bayes.calibration import coverage, simulate, calibration_study

__all__ = [
    "Prior", "default_priors", "site_names", "generic_priors", "make_model", "Posterior", "fit_nuts", "fit_svi",
    "importance_ess", "psis_khat", "chain_forecast", "chain_draws", "coverage", "simulate", "calibration_study",
]
