"""Default priors for a law's parameters, derived from its constraint spec and scaled by the data.

Every prior is on the *constrained* scale (the value the law sees). The defaults, per constraint
of `jaxscale.laws`:

============================  ===============================================================
constraint                    default prior (per task; ``p_hat`` = least-squares estimate)
============================  ===============================================================
``Real``                      ``Normal(p_hat, REAL_SCALE * max(median_t |p_hat|, REAL_FLOOR))``
``Positive``                  ``LogNormal(log p_hat, LOG_SCALE)``
``GreaterThan(lo)``           ``lo + LogNormal(log(p_hat - lo), LOG_SCALE)``
``Interval(lo, hi)``          ``Uniform(lo, hi)``
``LogInterval(lo, hi)``       ``LogUniform(lo, hi)``
ordered follower ``d_k``      site ``d_k_ratio = d_k / d_(k-1) - 1 ~ LogNormal(log ratio_hat, LOG_SCALE)``
law with ``reparam``          site ``u`` (the law's unconstrained vector) ``~ Normal(u_hat, U_SCALE)``
noise ``sigma`` (log space)   ``LogNormal(log s0, SIGMA_LOG_SCALE)``, ``s0 = max(s_hat, s_med / 2, 1e-4)``
============================  ===============================================================

``p_hat`` is the task's least-squares fit in log space (``jaxscale.fit(..., loss="mse_log")``), so
the prior is centred on the data's own scale (an amplitude ``A`` of 400 gets a LogNormal around
400, not around 1) and is broad: ``LOG_SCALE = 2`` puts 95 % of the mass within a factor
``e^4 ~ 55`` of ``p_hat``; a Real exponent of 0.3 gets ``Normal(0.3, 1)``. A task whose fit failed, or
whose Positive parameter sits at its lower bound (``p_hat`` < 1e-8 of the cross-task median), is
centred on the median of the other tasks (or 1) with a wider scale, and so is a Real estimate
more than ``5 * REAL_SCALE * max(|median|, REAL_FLOOR)`` away from the tasks' median (a parameter
the data leave unidentified, like the slope change of a break beyond the last point). The scale
of a Real parameter uses the median magnitude over tasks, so one runaway task cannot widen it. ``s_hat`` is the task's
least-squares residual standard deviation in log space (``s_med`` the median over tasks), so a
task with as many points as parameters still gets a sensible noise scale.

This is weakly informative empirical Bayes: the centre comes from the data, the width does not.
For simulation-based calibration (draw from the prior, simulate, fit) pass data-independent
priors for every site with ``priors={...}``; any site may be overridden by a NumPyro distribution
(shared by all tasks, or with batch shape ``[T]``) or a `Prior` (per-task arrays, usable by the
per-task vectorised samplers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import AffineTransform

from jaxscale.laws.base import GreaterThan, Interval, Law, LogInterval, Positive, Real

REAL_SCALE = 2.0
REAL_FLOOR = 0.5
LOG_SCALE = 2.0
U_SCALE = 2.0
SIGMA_LOG_SCALE = 1.0
SIGMA_FLOOR = 1e-4
SIGMA = "sigma"


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Prior:
    """A prior family with (possibly per-task) array parameters; a pytree, so per-task samplers can
    slice it. ``Prior("lognormal", loc=..., scale=...)``; `dist` builds the NumPyro distribution.

    Families: ``normal(loc, scale)``, ``lognormal(loc, scale)`` (loc = log median),
    ``shifted_lognormal(shift, loc, scale)`` (shift + LogNormal), ``uniform(low, high)``,
    ``loguniform(low, high)``, ``halfnormal(scale)``, ``truncnormal(loc, scale, low)``,
    ``mvnormal(loc, scale)`` (independent normals over a last axis, an event of size n).
    """

    family: str
    params: Mapping[str, Any]

    def __init__(self, family: str, params: Mapping[str, Any] | None = None, **kw: Any):
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "params", {**(params or {}), **kw})

    def tree_flatten(self):
        keys = tuple(sorted(self.params))
        return tuple(self.params[k] for k in keys), (self.family, keys)

    @classmethod
    def tree_unflatten(cls, aux, leaves):
        family, keys = aux
        return cls(family, dict(zip(keys, leaves)))

    def dist(self) -> dist.Distribution:
        p = {k: jnp.asarray(v) for k, v in self.params.items()}
        f = self.family
        if f == "normal":
            return dist.Normal(p["loc"], p["scale"])
        if f == "lognormal":
            return dist.LogNormal(p["loc"], p["scale"])
        if f == "shifted_lognormal":
            return dist.TransformedDistribution(dist.LogNormal(p["loc"], p["scale"]), AffineTransform(p["shift"], 1.0))
        if f == "uniform":
            return dist.Uniform(p["low"], p["high"])
        if f == "loguniform":
            return dist.LogUniform(p["low"], p["high"])
        if f == "halfnormal":
            return dist.HalfNormal(p["scale"])
        if f == "truncnormal":
            return dist.TruncatedNormal(p["loc"], p["scale"], low=p["low"])
        if f == "mvnormal":
            return dist.Normal(p["loc"], p["scale"]).to_event(1)
        raise ValueError(f"unknown prior family {f!r}")

    def __repr__(self) -> str:
        def short(v):
            a = np.asarray(v)
            return f"{float(a):.4g}" if a.ndim == 0 else f"[{a.shape[0]} values, median {np.median(a):.4g}]"

        return f"Prior({self.family}, " + ", ".join(f"{k}={short(v)}" for k, v in self.params.items()) + ")"


PriorLike = Prior | dist.Distribution


def as_dist(p: PriorLike) -> dist.Distribution:
    """A NumPyro distribution from a `Prior` or a distribution."""
    return p.dist() if isinstance(p, Prior) else p


# --------------------------------------------------------------------------- sites
@dataclasses.dataclass(frozen=True)
class Site:
    """A latent per-task site of the model: how it maps to the law's parameters.

    kind: ``"param"`` (the site is parameter `name`), ``"ratio"`` (ordered follower:
    ``param = previous * (1 + site)``) or ``"u"`` (the law's whole unconstrained vector).
    """

    name: str
    kind: str
    param: str | None = None
    size: int = 1


def sites(law: Law) -> list[Site]:
    """The per-task latent sites of `law` (the noise site ``sigma`` excluded)."""
    if law.reparam is not None:
        return [Site("u", "u", None, law.n_params)]
    out = []
    for n in law.param_names:
        if n in law.ordered[1:]:
            out.append(Site(f"{n}_ratio", "ratio", n))
        else:
            out.append(Site(n, "param", n))
    return out


def site_names(law: Law) -> list[str]:
    """Names of the per-task sites (`sites`) plus ``sigma``: the keys `priors=` accepts."""
    return [s.name for s in sites(law)] + [SIGMA]


# --------------------------------------------------------------------------- defaults
def constraint_prior(c: Any, centre: np.ndarray, wide: np.ndarray | None = None) -> Prior:
    """The default prior of a parameter of constraint `c` centred on `centre` ([T] values)."""
    centre = np.asarray(centre, dtype=float)
    t = centre.shape
    widen = np.ones(t) if wide is None else np.where(wide, 1.5, 1.0)
    if isinstance(c, Real):
        scale = REAL_SCALE * max(float(np.median(np.abs(centre))), REAL_FLOOR) if centre.ndim else \
            REAL_SCALE * max(abs(float(centre)), REAL_FLOOR)
        return Prior("normal", loc=centre, scale=np.full(t, scale) * widen)
    if isinstance(c, Positive):
        return Prior("lognormal", loc=np.log(centre), scale=LOG_SCALE * widen)
    if isinstance(c, GreaterThan):
        return Prior("shifted_lognormal", shift=np.full(t, c.lo), loc=np.log(centre - c.lo), scale=LOG_SCALE * widen)
    if isinstance(c, Interval):
        return Prior("uniform", low=np.full(t, c.lo), high=np.full(t, c.hi))
    if isinstance(c, LogInterval):
        return Prior("loguniform", low=np.full(t, c.lo), high=np.full(t, c.hi))
    raise TypeError(f"no default prior for constraint {c!r}")


def _robust_centre(values: np.ndarray, ok: np.ndarray, c: Any) -> tuple[np.ndarray, np.ndarray]:
    """Replace failed / at-bound estimates by the median of the good ones; flag them (wide)."""
    v = np.asarray(values, float).copy()
    good = ok & np.isfinite(v)
    if isinstance(c, Positive):
        med = np.exp(np.median(np.log(v[good & (v > 0)]))) if (good & (v > 0)).any() else 1.0
        good &= v > 1e-8 * med
    elif isinstance(c, GreaterThan):
        pos = good & (v > c.lo)
        med = c.lo + (np.exp(np.median(np.log(v[pos] - c.lo))) if pos.any() else 1.0)
        good &= v - c.lo > 1e-8 * (med - c.lo)
    else:
        med = np.median(v[good]) if good.any() else 0.0
        # an estimate far outside the other tasks' (a parameter left unidentified by the data, e.g.
        # a break beyond the last point) is replaced by their median
        spread = REAL_SCALE * max(abs(med), REAL_FLOOR) * 5.0
        good &= np.abs(v - med) <= spread
    return np.where(good, v, med), ~good


def default_priors(law: Law, p_hat: np.ndarray, ok: np.ndarray, s_hat: np.ndarray,
                   u_hat: np.ndarray | None = None) -> dict[str, Prior]:
    """The default priors of every site (`site_names`) for T tasks.

    Args:
      law: the law.
      p_hat: ``[T, n]`` least-squares parameter estimates (constrained).
      ok: ``[T]`` whether the estimate is usable.
      s_hat: ``[T]`` least-squares residual standard deviation in log space.
      u_hat: ``[T, n]`` the law's unconstrained estimates (needed for laws with `reparam`).
    """
    p_hat = np.asarray(p_hat, float)
    ok = np.asarray(ok, bool)
    t = p_hat.shape[0]
    out: dict[str, Prior] = {}
    for s in sites(law):
        if s.kind == "u":
            u = np.where(ok[:, None] & np.isfinite(u_hat), u_hat, np.nanmedian(np.where(ok[:, None], u_hat, np.nan), 0))
            u = np.nan_to_num(u)
            out[s.name] = Prior("mvnormal", loc=u, scale=np.full(u.shape, U_SCALE))
            continue
        i = law.param_names.index(s.param)
        c = law.constraints[i]
        if s.kind == "ratio":
            prev = law.ordered[law.ordered.index(s.param) - 1]
            r = p_hat[:, i] / p_hat[:, law.param_names.index(prev)] - 1.0
            centre, wide = _robust_centre(r, ok, Positive())
            out[s.name] = constraint_prior(Positive(), centre, wide)
        else:
            centre, wide = _robust_centre(p_hat[:, i], ok, c)
            out[s.name] = constraint_prior(c, centre, wide)
    s_hat = np.asarray(s_hat, float)
    good = np.isfinite(s_hat) & ok
    med = float(np.median(s_hat[good])) if good.any() else 0.05
    s0 = np.maximum(np.where(good, s_hat, med), max(0.5 * med, SIGMA_FLOOR))
    out[SIGMA] = Prior("lognormal", loc=np.log(s0), scale=np.full(t, SIGMA_LOG_SCALE))
    return out


def merge(defaults: Mapping[str, PriorLike], overrides: Mapping[str, PriorLike] | None, law: Law,
          extra: tuple[str, ...] = ()) -> dict[str, PriorLike]:
    """Defaults with user overrides; unknown names are an error naming the valid ones."""
    out = dict(defaults)
    valid = set(site_names(law)) | set(extra)
    for k, v in (overrides or {}).items():
        if k not in valid:
            raise ValueError(f"priors: unknown site {k!r}; sites of {law.name!r} are {sorted(valid)}")
        if not isinstance(v, (Prior, dist.Distribution)):
            raise TypeError(f"priors[{k!r}] must be a numpyro Distribution or a jaxscale.bayes.Prior, got {type(v).__name__}")
        out[k] = v
    return out
