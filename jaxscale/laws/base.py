"""The `Law` spec: a pure function of a parameter dict plus everything a fitter needs.

A law is `fn(params, x) -> y` where `params` maps parameter names to arrays and `x` has shape
`[..., k]` for a law of `k` inputs, or `[...]` when `k == 1`. Constraints are implemented by
transforms between an unconstrained vector `u` (what the optimiser sees) and the constrained
parameter values (what the law sees).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = dict[str, Array]

_TINY = 1e-12


# --------------------------------------------------------------------------- constraints
@dataclasses.dataclass(frozen=True)
class Real:
    """No constraint: the optimiser sees the value itself."""

    def forward(self, u: Array) -> Array:
        return u

    def inverse(self, p: Array) -> Array:
        return p

    def clip(self, p: np.ndarray) -> np.ndarray:
        return p

    def bounds(self) -> tuple[float, float]:
        return (-np.inf, np.inf)


@dataclasses.dataclass(frozen=True)
class Positive:
    """p > 0 through p = exp(u): the optimiser works in log space."""

    def forward(self, u: Array) -> Array:
        return jnp.exp(u)

    def inverse(self, p: Array) -> Array:
        return jnp.log(p)

    def clip(self, p: np.ndarray) -> np.ndarray:
        return np.maximum(p, 1e-8)

    def bounds(self) -> tuple[float, float]:
        return (0.0, np.inf)


@dataclasses.dataclass(frozen=True)
class Interval:
    """lo < p < hi through a scaled sigmoid."""

    lo: float
    hi: float

    def forward(self, u: Array) -> Array:
        return self.lo + (self.hi - self.lo) * jax.nn.sigmoid(u)

    def inverse(self, p: Array) -> Array:
        t = (p - self.lo) / (self.hi - self.lo)
        return jnp.log(t) - jnp.log1p(-t)

    def clip(self, p: np.ndarray) -> np.ndarray:
        w = self.hi - self.lo
        return np.clip(p, self.lo + 1e-6 * w, self.hi - 1e-6 * w)

    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi)


@dataclasses.dataclass(frozen=True)
class LogInterval:
    """lo < p < hi (lo > 0) through log p = log lo + (log hi - log lo) sigmoid(u)."""

    lo: float
    hi: float

    def forward(self, u: Array) -> Array:
        llo, lhi = np.log(self.lo), np.log(self.hi)
        return jnp.exp(llo + (lhi - llo) * jax.nn.sigmoid(u))

    def inverse(self, p: Array) -> Array:
        llo, lhi = np.log(self.lo), np.log(self.hi)
        t = (jnp.log(p) - llo) / (lhi - llo)
        return jnp.log(t) - jnp.log1p(-t)

    def clip(self, p: np.ndarray) -> np.ndarray:
        return np.clip(p, self.lo * (1 + 1e-6), self.hi * (1 - 1e-6))

    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi)


@dataclasses.dataclass(frozen=True)
class GreaterThan:
    """p > lo through p = lo + exp(u)."""

    lo: float

    def forward(self, u: Array) -> Array:
        return self.lo + jnp.exp(u)

    def inverse(self, p: Array) -> Array:
        return jnp.log(p - self.lo)

    def clip(self, p: np.ndarray) -> np.ndarray:
        return np.maximum(p, self.lo + 1e-8)

    def bounds(self) -> tuple[float, float]:
        return (self.lo, np.inf)


Constraint = Real | Positive | Interval | LogInterval | GreaterThan


def constraint_from_bounds(lo: float | None, hi: float | None) -> Constraint:
    """The constraint for `lo < p < hi` where either side may be None (unbounded)."""
    if lo is None and hi is None:
        return Real()
    if hi is None:
        return Positive() if lo == 0 else GreaterThan(float(lo))
    if lo is None:
        raise ValueError("an upper bound needs a lower bound too (use Interval(lo, hi))")
    if not hi > lo:
        raise ValueError(f"empty interval ({lo}, {hi})")
    return Interval(float(lo), float(hi))


# --------------------------------------------------------------------------- law
InitFn = Callable[[Array, Array, Array], Mapping[str, Array]]


@dataclasses.dataclass(frozen=True, eq=False)
class Law:
    """A scaling law: a pure function plus its parameter spec.

    Attributes:
      name: short identifier (``"chinchilla"``).
      fn: ``fn(params, x) -> y``; pure and jit-able.
      param_names: names of the free parameters, in vector order.
      constraints: one constraint per free parameter.
      inputs: names of the covariates (``("N", "D")``); their count is the law's input arity.
      formula: a plain-text formula.
      latex: the formula in LaTeX.
      init: ``init(x, y, mask) -> {name: [S] array}``, a data-driven grid of starts for one task
        (constrained values); may be None (then `default_grid` is used).
      default_grid: ``{name: values}``, a Cartesian grid of starts used when `init` is None.
      log_fn: optional ``log_fn(params, x) -> log y``, a numerically stable log of `fn`.
      fixed: parameters held at a constant value (``Law.fix``).
      ordered: names of Positive parameters constrained to increase in this order.
      positive_x: whether the law takes logs of x (so x must be > 0).
      spec: how to rebuild this law by name (for saving): ``(factory_name, kwargs)``.
      reparam: optional ``(forward, inverse)`` pair replacing the per-parameter transforms for
        laws whose constraints couple parameters (``y0 + L <= 1``); `inverse` must clip into the
        domain.
      limits: optional ``limits(params, x, y, mask) -> {name: [R] array}``: candidates on an edge
        of the domain derived from one task's fitted optimum (an offset -> 0, say), which a local
        solver only approaches asymptotically (the unconstrained coordinate -> -inf). The fit
        engine polishes each briefly after the main run; one wins where its objective is lower.
    """

    name: str
    fn: Callable[[Params, Array], Array]
    param_names: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    inputs: tuple[str, ...] = ("x",)
    formula: str = ""
    latex: str = ""
    init: InitFn | None = None
    default_grid: Mapping[str, Sequence[float]] | None = None
    log_fn: Callable[[Params, Array], Array] | None = None
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    ordered: tuple[str, ...] = ()
    positive_x: bool = True
    spec: tuple[str, Mapping[str, Any]] | None = None
    reparam: tuple[Callable[[Array], Params], Callable[[Mapping[str, Array]], Array]] | None = None
    limits: Callable[[Params, Array, Array, Array], Mapping[str, Array]] | None = None

    # ---- basic info
    @property
    def n_params(self) -> int:
        """Number of free parameters."""
        return len(self.param_names)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        fixed = f", fixed={dict(self.fixed)}" if self.fixed else ""
        return f"Law({self.name}: {self.formula}{fixed})"

    # ---- evaluation
    def __call__(self, params: Mapping[str, Any], x: Any) -> Array:
        """Evaluate the law: ``law(params, x)``."""
        return self.fn(self._full(params), jnp.asarray(x))

    def log(self, params: Mapping[str, Any], x: Any) -> Array:
        """log of the law, through `log_fn` when the law has one."""
        full = self._full(params)
        if self.log_fn is not None:
            return self.log_fn(full, jnp.asarray(x))
        return jnp.log(self.fn(full, jnp.asarray(x)))

    def _full(self, params: Mapping[str, Any]) -> Params:
        full = {k: jnp.asarray(v) for k, v in self.fixed.items()}
        full.update({k: jnp.asarray(v) for k, v in params.items()})
        return full

    # ---- transforms between unconstrained vectors and parameter dicts
    def to_params(self, u: Array) -> Params:
        """Unconstrained vector ``[..., n]`` -> dict of constrained values."""
        if self.reparam is not None:
            return self.reparam[0](u)
        out = {name: c.forward(u[..., i]) for i, (name, c) in enumerate(zip(self.param_names, self.constraints))}
        for prev, name in zip(self.ordered, self.ordered[1:]):
            i = self.param_names.index(name)
            out[name] = out[prev] * (1.0 + jnp.exp(u[..., i]))
        return out

    def to_unconstrained(self, params: Mapping[str, Any]) -> Array:
        """Dict of constrained values -> unconstrained vector ``[..., n]`` (inverse of `to_params`)."""
        if self.reparam is not None:
            return self.reparam[1](params)
        cols = []
        for name, c in zip(self.param_names, self.constraints):
            p = jnp.asarray(params[name])
            if name in self.ordered[1:]:
                prev = jnp.asarray(params[self.ordered[self.ordered.index(name) - 1]])
                cols.append(jnp.log(jnp.maximum(p / prev - 1.0, _TINY)))
            else:
                cols.append(c.inverse(p))
        return jnp.stack(cols, axis=-1)

    def clip_to_domain(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Move grid values into the interior of each parameter's domain."""
        out = {n: c.clip(np.asarray(params[n], dtype=float)) for n, c in zip(self.param_names, self.constraints)}
        for prev, name in zip(self.ordered, self.ordered[1:]):
            out[name] = np.maximum(out[name], out[prev] * (1 + 1e-6))
        return out

    def bounds(self) -> dict[str, tuple[float, float]]:
        """The (lo, hi) bounds of each free parameter."""
        return {n: c.bounds() for n, c in zip(self.param_names, self.constraints)}

    # ---- derived laws
    def fix(self, **values: float) -> "Law":
        """A law with some parameters held constant.

        Example:
          >>> from jaxscale import laws
          >>> m4 = laws.m4.fix(eps_0=1.0)
          >>> m4.param_names
          ('eps_inf', 'beta', 'c', 'alpha')
        """
        return _fixed(self, tuple(sorted((k, float(v)) for k, v in values.items())))

    def _fix(self, **values: float) -> "Law":
        if self.reparam is not None:
            raise ValueError(f"{self.name}: parameters of a reparameterised law cannot be fixed")
        unknown = set(values) - set(self.param_names)
        if unknown:
            raise ValueError(f"{self.name}: cannot fix unknown parameter(s) {sorted(unknown)}; free: {self.param_names}")
        keep = [i for i, n in enumerate(self.param_names) if n not in values]
        names = tuple(self.param_names[i] for i in keep)
        grid = None if self.default_grid is None else {k: v for k, v in self.default_grid.items() if k in names}
        init = self.init
        if init is not None:
            base_init = init

            def init(x, y, mask):  # noqa: F811 - drop fixed names from the data-driven grid
                g = base_init(x, y, mask)
                return {k: v for k, v in g.items() if k in names}

        spec = None
        if self.spec is not None:
            spec = (self.spec[0], {**self.spec[1], "fixed": {**dict(self.fixed), **values}})
        return dataclasses.replace(
            self,
            param_names=names,
            constraints=tuple(self.constraints[i] for i in keep),
            fixed={**dict(self.fixed), **{k: float(v) for k, v in values.items()}},
            default_grid=grid,
            init=init,
            ordered=tuple(n for n in self.ordered if n in names),
            spec=spec,
        )

    def with_bounds(self, **bounds: tuple[float | None, float | None]) -> "Law":
        """A law with new bounds on some parameters, e.g. ``law.with_bounds(alpha=(0, 2))``."""
        return _bounded(self, tuple(sorted((k, tuple(v)) for k, v in bounds.items())))

    def _with_bounds(self, **bounds: tuple[float | None, float | None]) -> "Law":
        cons = list(self.constraints)
        for name, (lo, hi) in bounds.items():
            if name not in self.param_names:
                raise ValueError(f"{self.name}: unknown parameter {name!r}; free: {self.param_names}")
            cons[self.param_names.index(name)] = constraint_from_bounds(lo, hi)
        spec = None
        if self.spec is not None:
            spec = (self.spec[0], {**self.spec[1], "bounds": {**self.spec[1].get("bounds", {}), **bounds}})
        return dataclasses.replace(self, constraints=tuple(cons), spec=spec)

    # ---- starts
    def starts(self, x: Array, y: Array, mask: Array) -> Array:
        """Grid of unconstrained starts ``[S, n]`` for one task (jit-able)."""
        if self.init is not None:
            grid = self.init(x, y, mask)
            cols = [jnp.asarray(grid[n], dtype=x.dtype) for n in self.param_names]
            cols = jnp.broadcast_arrays(*cols)
            return self._safe_unconstrained({n: c for n, c in zip(self.param_names, cols)})
        return jnp.asarray(self.grid_array(), dtype=x.dtype)

    def _safe_unconstrained(self, params: Mapping[str, Array]) -> Array:
        """Clip a jax grid into the domain, then transform."""
        if self.reparam is not None:
            return self.reparam[1](params)
        clipped = {}
        for n, c in zip(self.param_names, self.constraints):
            p = params[n]
            if isinstance(c, Positive):
                p = jnp.maximum(p, 1e-8)
            elif isinstance(c, GreaterThan):
                p = jnp.maximum(p, c.lo + 1e-8)
            elif isinstance(c, Interval):
                w = c.hi - c.lo
                p = jnp.clip(p, c.lo + 1e-6 * w, c.hi - 1e-6 * w)
            elif isinstance(c, LogInterval):
                p = jnp.clip(p, c.lo * (1 + 1e-6), c.hi * (1 - 1e-6))
            clipped[n] = p
        for prev, name in zip(self.ordered, self.ordered[1:]):
            clipped[name] = jnp.maximum(clipped[name], clipped[prev] * (1 + 1e-6))
        return self.to_unconstrained(clipped)

    def grid_array(self, grid: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
        """Cartesian product of a ``{name: values}`` grid as unconstrained starts ``[S, n]``."""
        grid = grid if grid is not None else self.default_grid
        if grid is None:
            raise ValueError(f"law {self.name!r} has neither an init function nor a default grid")
        missing = [n for n in self.param_names if n not in grid]
        if missing:
            raise ValueError(f"start grid for {self.name!r} lacks parameter(s) {missing}")
        combos = np.array(list(itertools.product(*[np.atleast_1d(grid[n]) for n in self.param_names])), dtype=float)
        if self.reparam is not None:
            with jax.ensure_compile_time_eval():
                return np.asarray(self.reparam[1]({n: combos[:, i] for i, n in enumerate(self.param_names)}))
        clipped = self.clip_to_domain({n: combos[:, i] for i, n in enumerate(self.param_names)})
        with jax.ensure_compile_time_eval():
            return np.asarray(self.to_unconstrained(clipped))


@functools.lru_cache(maxsize=256)
def _fixed(law: Law, values: tuple) -> Law:
    """`Law.fix`, memoised: the same request returns the same Law, so compiled fits are reused."""
    return law._fix(**dict(values))


@functools.lru_cache(maxsize=256)
def _bounded(law: Law, bounds: tuple) -> Law:
    return law._with_bounds(**dict(bounds))


# --------------------------------------------------------------------------- user laws
def law(
    *,
    params: Mapping[str, Constraint | tuple[float | None, float | None] | None],
    inputs: Sequence[str] = ("x",),
    grid: Mapping[str, Sequence[float]] | None = None,
    init: InitFn | None = None,
    formula: str = "",
    latex: str = "",
    name: str | None = None,
    positive_x: bool = True,
) -> Callable[[Callable[[Params, Array], Array]], Law]:
    """Decorator that turns ``fn(params, x)`` into a `Law`.

    `params` maps each parameter name to a constraint: a `Constraint`, a ``(lo, hi)`` pair
    (None for unbounded), or None (unconstrained). Give a start `grid` (Cartesian) or an
    `init` function of the data.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxscale.laws import law
      >>> @law(params={"a": (0, None), "b": None}, grid={"a": [0.1, 1.0], "b": [-1.0, -0.1]})
      ... def my_power(p, x):
      ...     return p["a"] * x ** p["b"]
      >>> my_power.param_names
      ('a', 'b')
    """

    def wrap(fn: Callable[[Params, Array], Array]) -> Law:
        cons = []
        for c in params.values():
            if c is None:
                cons.append(Real())
            elif isinstance(c, tuple):
                cons.append(constraint_from_bounds(*c))
            else:
                cons.append(c)
        if init is None and grid is None:
            raise ValueError("a user law needs a start `grid` or an `init` function")
        return Law(
            name=name or fn.__name__,
            fn=fn,
            param_names=tuple(params),
            constraints=tuple(cons),
            inputs=tuple(inputs),
            formula=formula,
            latex=latex,
            init=init,
            default_grid=grid,
            positive_x=positive_x,
        )

    return wrap
