"""The NumPyro model of a law: priors per task, a log-space likelihood, optional partial pooling.

`make_model(law, priors=..., likelihood=..., hierarchical=...)` returns a plain NumPyro model
function ``model(x, y, mask, weight=None)`` over T tasks at once:

- ``x[T, P, k]`` (or ``[T, P]`` for one input), ``y[T, P]`` (None to simulate), ``mask[T, P]``
  (False on padding), ``weight[T, P]`` optional point weights (a likelihood power).
- Per-task latent sites inside ``numpyro.plate("tasks", T)``: one per law parameter (see
  `priors.sites`) and the noise scale ``sigma`` (log space, learned per task).
- Likelihood: ``log y[t, p] ~ Normal(log law(theta_t, x[t, p]), sigma_t)`` (or Student-t with
  `df` degrees of freedom) inside ``numpyro.plate("points", P)`` x the tasks plate, masked with
  ``numpyro.handlers.mask``; the site is ``obs`` with shape ``[P, T]`` (points first).
- ``hierarchical=("alpha", ...)``: those parameters are drawn from a population per parameter,
  non-centred on the unconstrained scale of the parameter's prior support:
  ``u_t = alpha_mu + alpha_tau * alpha_z[t]``, ``alpha_t = transform(u_t)`` with sites
  ``alpha_mu ~ Normal``, ``alpha_tau ~ HalfNormal`` (global) and ``alpha_z ~ Normal(0, 1)``
  (per task); the prior given for ``alpha`` then only sets the support.

The model is an ordinary NumPyro model: use it with any kernel, guide or handler. Its
`priors` (a dict) and `law` are attributes of the returned function.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from jaxscale.laws.base import Law
from jaxscale.bayes import priors as P

Likelihood = Literal["normal", "student_t"]
_LOG_TINY = -690.0  # log of ~1e-300: where the law is not positive, the point is all but impossible


def generic_priors(law: Law) -> dict[str, P.Prior]:
    """Data-free weak priors (used by `make_model` when no priors are given): each constraint's
    default centred at 1 (Positive) or 0 (Real), and ``sigma ~ LogNormal(log 0.05, 1)``."""
    out: dict[str, P.PriorLike] = {}
    for s in P.sites(law):
        if s.kind == "u":
            out[s.name] = P.Prior("mvnormal", loc=np.zeros(law.n_params), scale=np.full(law.n_params, P.U_SCALE))
        elif s.kind == "ratio":
            out[s.name] = P.constraint_prior(P.Positive(), np.array(1.0))
        else:
            c = law.constraints[law.param_names.index(s.param)]
            centre = 0.0 if isinstance(c, P.Real) else (c.lo + 1.0 if isinstance(c, P.GreaterThan) else 1.0)
            out[s.name] = P.constraint_prior(c, np.array(centre))
    out[P.SIGMA] = P.Prior("lognormal", loc=np.log(0.05), scale=1.0)
    return out


def population_priors(priors: Mapping[str, P.PriorLike], names: Sequence[str]) -> dict[str, P.PriorLike]:
    """Default population priors for hierarchical parameters: ``{name}_mu ~ Normal(m, 1 + sd)``,
    ``{name}_tau ~ HalfNormal(max(sd, 0.25))`` with m, sd the median and spread of the per-task
    prior centres on the unconstrained scale."""
    out = {}
    for n in names:
        centre = unconstrained_centre(priors[n])
        m, sd = float(np.median(centre)), float(np.std(centre))
        out[f"{n}_mu"] = dist.Normal(m, 1.0 + sd)
        out[f"{n}_tau"] = dist.HalfNormal(max(sd, 0.25))
    return out


def unconstrained_centre(p: P.PriorLike) -> np.ndarray:
    """A prior's centre on the unconstrained scale of its support (per task where batched)."""
    if isinstance(p, P.Prior):
        if "loc" in p.params:
            return np.atleast_1d(np.asarray(p.params["loc"], float))
        if p.family in ("uniform", "loguniform", "halfnormal"):
            d = p.dist()
            return np.atleast_1d(np.asarray(biject_to(d.support).inv(d.mean if p.family != "loguniform"
                                                                     else jnp.sqrt(d.low * d.high))))
    d = P.as_dist(p)
    with jax.ensure_compile_time_eval():
        v = np.asarray(biject_to(d.support).inv(d.mean))
    return np.atleast_1d(np.where(np.isfinite(v), v, 0.0))


def _law_log(law: Law, params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
    """log law(params, x), finite everywhere (points where the law is not positive get ~log 1e-300)."""
    if law.log_fn is not None:
        out = law.log(params, x)
        return jnp.where(jnp.isfinite(out), out, _LOG_TINY)
    f = law(params, x)
    ok = jnp.isfinite(f) & (f > 0)
    return jnp.where(ok, jnp.log(jnp.where(ok, f, 1.0)), _LOG_TINY)


def site_values_to_params(law: Law, values: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-task site values -> the law's parameter dict (ratio and ``u`` sites resolved)."""
    out: dict[str, jax.Array] = {}
    for s in P.sites(law):
        if s.kind == "u":
            return dict(law.to_params(values["u"]))
        if s.kind == "ratio":
            prev = law.ordered[law.ordered.index(s.param) - 1]
            out[s.param] = out[prev] * (1.0 + values[s.name])
        else:
            out[s.param] = values[s.name]
    return out


def noise_dist(likelihood: str, loc: jax.Array, scale: jax.Array, df: float) -> dist.Distribution:
    if likelihood == "normal":
        return dist.Normal(loc, scale)
    if likelihood == "student_t":
        return dist.StudentT(df, loc, scale)
    raise ValueError(f"likelihood must be 'normal' or 'student_t', got {likelihood!r}")


def model_core(x, y, mask, weight=None, priors=None, *, law: Law, likelihood: str = "normal", df: float = 4.0,
               hierarchical: tuple[str, ...] = ()):
    """The model with its priors as an argument (what `make_model` closes over)."""
    x = jnp.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    t, p = x.shape[0], x.shape[1]
    mask = jnp.ones((t, p), bool) if mask is None else jnp.asarray(mask, bool)
    tasks = numpyro.plate("tasks", t, dim=-1)
    values: dict[str, jax.Array] = {}
    glob = {}
    for n in hierarchical:
        glob[n] = (numpyro.sample(f"{n}_mu", P.as_dist(priors[f"{n}_mu"])),
                   numpyro.sample(f"{n}_tau", P.as_dist(priors[f"{n}_tau"])))
    with tasks:
        for s in P.sites(law):
            if s.name in hierarchical:
                mu, tau = glob[s.name]
                z = numpyro.sample(f"{s.name}_z", dist.Normal(0.0, 1.0))
                support = P.as_dist(priors[s.name]).support
                values[s.name] = numpyro.deterministic(s.name, biject_to(support)(mu + tau * z))
            else:
                values[s.name] = numpyro.sample(s.name, P.as_dist(priors[s.name]))
        sigma = numpyro.sample(P.SIGMA, P.as_dist(priors[P.SIGMA]))
    params = site_values_to_params(law, values)
    for name, v in params.items():
        if name not in values:
            numpyro.deterministic(name, v)
    xt = jnp.swapaxes(x, 0, 1)  # [P, T, k]
    xa = xt[..., 0] if law.n_inputs == 1 else xt
    loc = _law_log(law, params, xa)  # [P, T]
    obs = None if y is None else jnp.log(jnp.swapaxes(jnp.asarray(y), 0, 1))
    m = jnp.swapaxes(mask, 0, 1)
    if weight is not None:
        m = m & (jnp.swapaxes(jnp.asarray(weight), 0, 1) > 0)
    with numpyro.plate("points", p, dim=-2), tasks:
        with numpyro.handlers.mask(mask=m):
            if weight is None:
                numpyro.sample("obs", noise_dist(likelihood, loc, sigma, df), obs=obs)
            else:
                w = jnp.swapaxes(jnp.asarray(weight), 0, 1)
                with numpyro.handlers.scale(scale=jnp.where(w > 0, w, 1.0)):
                    numpyro.sample("obs", noise_dist(likelihood, loc, sigma, df), obs=obs)


def make_model(law: Law, priors: Mapping[str, P.PriorLike] | None = None, *, likelihood: Likelihood = "normal",
               df: float = 4.0, hierarchical: Sequence[str] = ()) -> Callable[..., None]:
    """A NumPyro model ``model(x, y, mask, weight=None)`` of `law` over many tasks.

    Args:
      law: any `jaxscale.laws.Law`.
      priors: ``{site: Prior or numpyro Distribution}``; sites are `priors.site_names(law)` (the
        law's parameters, ``d2_ratio`` for ordered break locations, ``u`` for reparameterised
        laws, and ``sigma``) plus ``{name}_mu`` / ``{name}_tau`` for hierarchical parameters.
        Missing sites get data-free weak priors (`generic_priors`); `fit_nuts` / `fit_svi` use
        the data-scaled `priors.default_priors` instead.
      likelihood: ``"normal"`` or ``"student_t"`` (robust; `df` degrees of freedom) on log y.
      hierarchical: law parameters drawn from a shared population (partial pooling).

    Example:
      >>> import numpyro.distributions as dist
      >>> from jaxscale import laws
      >>> model = make_model(laws.saturating_power_law, priors={"c": dist.Normal(-0.3, 0.2)})
      >>> sorted(model.priors)
      ['beta', 'c', 'eps_inf', 'sigma']
    """
    hierarchical = tuple(hierarchical)
    names = {s.name for s in P.sites(law)}
    for n in hierarchical:
        if n not in names or n == "u":
            raise ValueError(f"hierarchical: {n!r} is not a per-task parameter site of {law.name!r} ({sorted(names)})")
    base = generic_priors(law)
    base.update(population_priors(base, hierarchical))
    pri = P.merge(base, priors, law, extra=tuple(f"{n}_{s}" for n in hierarchical for s in ("mu", "tau")))
    fn = functools.partial(model_core, law=law, likelihood=likelihood, df=df, hierarchical=hierarchical)

    def model(x, y, mask=None, weight=None):
        return fn(x, y, mask, weight, pri)

    model.priors = pri
    model.law = law
    model.likelihood = likelihood
    model.df = df
    model.hierarchical = hierarchical
    model.core = fn
    return model
