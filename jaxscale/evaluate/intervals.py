"""Forecast intervals for the backtest harness, and their calibration on extrapolation.

- `BootstrapMethod`: a least-squares fit plus bootstrap quantiles (`jaxscale.bootstrap`) as a
  harness method, so its intervals are scored next to the other methods.
- `BayesMethod`: NumPyro NUTS (or SVI) per task (`jaxscale.bayes`), posterior-predictive
  quantiles of a new observation (or of the mean curve) as a harness method.
- `Calibrated`: wraps any method whose forecasts carry quantile columns and resets every quantile
  so that it holds its level *on extrapolation*. It learns inside the training part only: a
  rolling-origin backtest of the wrapped method on the training points (fit on the early points,
  forecast the later ones; `forecast_folds`) gives the errors e = y - centre (in log space for
  positive data); level tau becomes centre + Q_tau(e) (split-conformal, pooled over tasks or per
  group of tasks). With ``score="relative"`` the method's own quantile distances are scaled
  instead, by the quantiles of r = (y - centre) / (quantile - centre); with ``horizon`` the
  correction grows linearly with h = log(x / largest training x) (quantile regression on (1, h)).
  Held-out points of the outer backtest are never seen.

Bootstrap and posterior intervals describe the uncertainty of the parameters of a law that is
assumed right; beyond the fitted range the law's misspecification dominates, and such intervals
cover far less than their nominal level (``benchmarks/ACCURACY.md``). `Calibrated` measures that
error where it can be measured (extrapolations inside the training data) and widens accordingly.

Example:
    >>> from jaxscale.evaluate import LastPoints, backtest
    >>> boot = BootstrapMethod("saturating_power_law", n_boot=100, levels=(0.05, 0.95), seed=0)
    >>> methods = [boot, Calibrated(boot, name="m2_calibrated")]
    >>> scores = backtest(df, methods, LastPoints(n=3), x="x", y="y", by="task")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
import pandas as pd

import jaxscale
from jaxscale.data import Dataset
from jaxscale.evaluate.harness import FOLD, Forecast, Forecaster, Method, forecast_folds
from jaxscale.evaluate.splits import RollingOrigin, Split
from jaxscale.forecast import PREDICTION, forecast_frame, quantile_column, quantile_levels
from jaxscale.laws import Law
from jaxscale.laws import get as get_law

__all__ = ["BootstrapMethod", "BayesMethod", "Calibrated", "interval_scales", "apply_scales"]


def _resolve(method: Any, suffix: str) -> None:
    """Shared checks of the interval methods: the law from its name, levels in (0, 1), the default name."""
    law = get_law(method.law) if isinstance(method.law, str) else method.law
    object.__setattr__(method, "law", law)
    object.__setattr__(method, "levels", tuple(float(q) for q in method.levels))
    if not method.levels or not all(0 < q < 1 for q in method.levels):
        raise ValueError(f"levels must lie in (0, 1), got {method.levels}")
    if method.name is None:
        object.__setattr__(method, "name", f"{law.name}_{suffix}")


@dataclasses.dataclass(frozen=True, eq=False)
class BootstrapMethod:
    """Least-squares fit of a law plus ``n_boot`` bootstrap refits: the point forecast and its
    bootstrap quantiles at ``levels`` (the interval of the mean curve under resampling).

    Attributes:
      law: a `Law` or its name.
      n_boot: replicates per task.
      levels: quantile levels of the forecast table (columns ``q0.05``...).
      seed: the bootstrap's `jax.random` seed.
      loss, loss_options, fit_options: passed to `jaxscale.fit` / `jaxscale.bootstrap`.
      name: label in the scores (default: ``"<law>_bootstrap"``).

    Example:
      >>> BootstrapMethod("power_law", n_boot=50).name
      'power_law_bootstrap'
    """

    law: Law | str
    n_boot: int = 200
    levels: tuple[float, ...] = (0.05, 0.25, 0.75, 0.95)
    seed: int = 0
    loss: str = "mse_log"
    loss_options: Mapping[str, float] | None = None
    fit_options: Mapping[str, Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _resolve(self, "bootstrap")

    def __call__(self, train: Dataset) -> Forecast:
        opts = {"on_invalid": "report", **dict(self.fit_options or {})}
        kw = dict(loss=self.loss, loss_options=self.loss_options)
        fit = jaxscale.fit(train, self.law, **kw, **opts)
        boot = jaxscale.bootstrap(train, self.law, n=self.n_boot, key=jax.random.key(self.seed), fit=fit, **kw,
                                  **{k: v for k, v in opts.items() if k not in ("starts", "polish", "on_invalid")})

        def predict(query: pd.DataFrame) -> pd.DataFrame:
            point = fit.forecast(query)[PREDICTION].to_numpy(float)
            reps = boot.predict_rows(query)  # [R, B]
            ok = np.isfinite(reps).any(axis=1)
            quant = {}
            for q in self.levels:
                v = np.full(len(query), np.nan)
                if ok.any():
                    v[ok] = np.nanquantile(reps[ok], q, axis=1)
                quant[q] = v
            return forecast_frame(query, point, quant)

        info = fit.to_frame()[list(train.by) + ["status", "objective"]]
        return Forecast(predict, info, fit)


@dataclasses.dataclass(frozen=True, eq=False)
class BayesMethod:
    """Bayesian fit of a law per task (`jaxscale.bayes.fit_nuts` or `fit_svi`, initialised from
    the least-squares fit) and its posterior-predictive quantiles at ``levels``.

    Attributes:
      law: a `Law` or its name.
      inference: ``"nuts"`` or ``"svi"``.
      kind: ``"observation"`` (a new observation, with the task's noise) or ``"mean"`` (the curve).
      levels: quantile levels of the forecast table; ``prediction`` is the posterior median.
      seed: the `jax.random` seed of inference and predictive noise.
      options: keyword arguments of the inference function (``num_warmup``, ``priors``...).
      name: label (default ``"<law>_<inference>"``).

    Example:
      >>> BayesMethod("power_law", options={"num_warmup": 200, "num_samples": 200}).name
      'power_law_nuts'
    """

    law: Law | str
    inference: str = "nuts"
    kind: str = "observation"
    levels: tuple[float, ...] = (0.05, 0.25, 0.75, 0.95)
    seed: int = 0
    options: Mapping[str, Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.inference not in ("nuts", "svi"):
            raise ValueError(f"inference must be 'nuts' or 'svi', got {self.inference!r}")
        if self.kind not in ("observation", "mean"):
            raise ValueError(f"kind must be 'observation' or 'mean', got {self.kind!r}")
        _resolve(self, self.inference)

    def __call__(self, train: Dataset) -> Forecast:
        from jaxscale.bayes import fit_nuts, fit_svi

        k_fit, k_pred = jax.random.split(jax.random.key(self.seed))
        fit = jaxscale.fit(train, self.law, loss="mse_log", on_invalid="report")
        infer = fit_nuts if self.inference == "nuts" else fit_svi
        post = infer(train, self.law, key=k_fit, fit=fit, **dict(self.options or {}))

        def predict(query: pd.DataFrame) -> pd.DataFrame:
            return post.forecast(query, levels=self.levels, kind=self.kind, key=k_pred)

        info = post.diagnostics.copy() if getattr(post, "diagnostics", None) is not None else None
        return Forecast(predict, info, fit)


# --------------------------------------------------------------------------- calibration
_SCALE_COLUMNS = ["group", "level", "a", "b", "n", "space", "kind"]


def _space(y: np.ndarray, centre: np.ndarray, qs: np.ndarray, space: str) -> str:
    if space != "auto":
        return space
    finite = np.isfinite(qs)
    positive = (y[np.isfinite(y)] > 0).all() and (centre[np.isfinite(centre)] > 0).all() and (qs[finite] > 0).all()
    return "log" if positive else "linear"


def _to(v: np.ndarray, space: str) -> np.ndarray:
    if space != "log":
        return np.asarray(v, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(v, float) > 0, np.log(v), np.nan)


def _from(v: np.ndarray, space: str) -> np.ndarray:
    return np.exp(v) if space == "log" else v


def _quantile_line(r: np.ndarray, h: np.ndarray, p: float, n_slopes: int = 101,
                   signed: bool = False) -> tuple[float, float]:
    """(a, b) minimising the pinball loss at level p of r - (a + b h); b >= 0 unless ``signed``;
    b on a grid, a exact given b."""
    def pinball(res: np.ndarray) -> float:
        return float(np.mean(np.maximum(p * res, (p - 1) * res)))

    span = float(np.ptp(h)) if len(h) else 0.0
    if span <= 0:
        return float(np.quantile(r, p, method="higher")), 0.0
    top = 4.0 * max(float(np.quantile(np.abs(r), 0.9)), 1e-12) / span
    best = (np.inf, 0.0, 0.0)
    for b in np.linspace(-top if signed else 0.0, top, n_slopes):
        a = float(np.quantile(r - b * h, p, method="higher"))
        loss = pinball(r - a - b * h)
        if loss < best[0] - 1e-15:
            best = (loss, a, float(b))
    return best[1], best[2]


def interval_scales(table: pd.DataFrame, *, y: str, horizon: str | None = "horizon", space: str = "auto",
                    group: str | None = None, min_scores: int = 20, score: str = "absolute") -> pd.DataFrame:
    """Per quantile level (and group): how to reset it so that it holds its level on ``table``
    (forecast rows with the truth ``y`` and quantile columns; the centre is ``q0.5`` when present,
    else ``prediction``).

    ``score="absolute"`` (default) ignores the method's own quantiles: level tau becomes
    centre + Q_tau(e) of the errors e = y - centre (in the space), a + b h with either sign of b
    when ``horizon`` is given. Use it when the method's spread says little about its extrapolation
    error (a bootstrap of a misspecified law).

    ``score="relative"`` scales the level's distance from the centre: level tau < 0.5 needs
    s = Q_{1-tau}(r) and tau > 0.5 needs s = Q_tau(r) of r = (y - centre) / (q_tau - centre)
    (a finite-sample conformal correction raises the level to (1 + 1/n) of it, capped at 1). With
    ``horizon`` (a column, e.g. the log extrapolation ratio) the scale is a + b h, b >= 0, by
    quantile regression. Levels (or groups) with fewer than ``min_scores`` usable rows are left as
    they are (a relative scale of 1).

    Returns one row per (group, level): ``level``, ``a``, ``b``, ``n``, ``space``, ``kind``.
    """
    if score not in ("relative", "absolute"):
        raise ValueError(f"score must be 'relative' or 'absolute', got {score!r}")
    levels = [q for q in quantile_levels(table) if q != 0.5]
    centre_col = quantile_column(0.5) if quantile_column(0.5) in table.columns else PREDICTION
    groups = [(None, table)] if group is None else list(table.groupby(group, sort=True))
    rows = []
    for g, part in groups:
        yv = part[y].to_numpy(float)
        c = part[centre_col].to_numpy(float)
        qs = part[[quantile_column(q) for q in levels]].to_numpy(float) if levels else np.zeros((len(part), 0))
        sp = _space(yv, c, qs, space)
        ty, tc = _to(yv, sp), _to(c, sp)
        h = part[horizon].to_numpy(float) if horizon is not None else np.zeros(len(part))
        for k, q in enumerate(levels):
            if score == "absolute":
                r = ty - tc
                p = q
            else:
                d = _to(qs[:, k], sp) - tc
                d = d if q > 0.5 else -d
                r = (ty - tc) / np.where(d > 0, d, np.nan) * (1.0 if q > 0.5 else -1.0)
                p = max(q, 1.0 - q)
            ok = np.isfinite(r) & np.isfinite(h) & (np.isfinite(qs[:, k]) if score == "absolute" else True)
            n = int(ok.sum())
            if n < min_scores:
                a, b, kind = 1.0, 0.0, "relative"  # too few scores: leave the level as it is
            else:
                p = float(np.clip(0.5 + (p - 0.5) * (1.0 + 1.0 / n), 0.0, 1.0))  # finite-sample correction
                a, b = _quantile_line(r[ok], h[ok], p, signed=score == "absolute") if horizon is not None else (
                    float(np.quantile(r[ok], p, method="higher" if p >= 0.5 else "lower")), 0.0)
                kind = score
            rows.append({"group": g, "level": q, "a": a, "b": b, "n": n, "space": sp, "kind": kind})
    out = pd.DataFrame(rows, columns=_SCALE_COLUMNS)
    return out if group is not None else out.drop(columns="group")


def apply_scales(table: pd.DataFrame, scales: pd.DataFrame, *, horizon: np.ndarray | None = None,
                 group: np.ndarray | None = None) -> pd.DataFrame:
    """``table`` with every quantile column reset by `interval_scales` (in the space they were
    learned in), with s = a + b h per level (and group): centre + s for ``kind == "absolute"``,
    centre + s (quantile - centre) for ``"relative"``; then sorted across levels so that the
    quantiles stay ordered. Levels (or groups) without a scale are left as they are."""
    out = table.copy()
    levels = [q for q in quantile_levels(table) if q != 0.5]
    if not levels or len(out) == 0:
        return out
    centre_col = quantile_column(0.5) if quantile_column(0.5) in table.columns else PREDICTION
    h = np.zeros(len(out)) if horizon is None else np.asarray(horizon, float)
    h = np.where(np.isfinite(h), h, 0.0)
    g = np.full(len(out), None, dtype=object) if group is None else np.asarray(group, dtype=object)
    has_group = "group" in scales.columns
    new = out[[quantile_column(q) for q in levels]].to_numpy(float).copy()
    centre = out[centre_col].to_numpy(float)
    for gv in pd.unique(g):
        rows = g == gv
        sc = scales[scales["group"] == gv] if has_group else scales
        if has_group and sc.empty:
            continue
        for k, q in enumerate(levels):
            s_row = sc[np.isclose(sc["level"], q)]
            if s_row.empty:
                continue
            a, b, sp = float(s_row["a"].iloc[0]), float(s_row["b"].iloc[0]), s_row["space"].iloc[0]
            s = a + b * h[rows]
            tc = _to(centre[rows], sp)
            if s_row["kind"].iloc[0] == "absolute":
                new[rows, k] = _from(tc + s, sp)
            else:
                new[rows, k] = _from(tc + s * (_to(new[rows, k], sp) - tc), sp)
    new = np.sort(new, axis=1)  # a negative scale may move a level past the centre (a biased law)
    for k, q in enumerate(levels):
        out[quantile_column(q)] = new[:, k]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Calibrated:
    """A method whose forecast quantiles are rescaled to hold their levels on extrapolation.

    Attributes:
      method: a harness method whose forecasts carry quantile columns (e.g. `BootstrapMethod`,
        a Bayesian method); a method returning several forecasters has each calibrated.
      validation: the split applied to the *training* points only (default: rolling origin,
        fit on the first 50 % / 75 % of each task's points and forecast the rest).
      horizon: let the scale grow linearly with h = log(x / largest training x) of the task
        (one x column), fitted by quantile regression; default off: a constant per level, which
        covered better on the 92 curves (``benchmarks/ACCURACY.md``).
      space: ``"log"``, ``"linear"`` or ``"auto"`` (log when the targets and quantiles are positive).
      group: a task-key column to calibrate separately (e.g. a domain); None pools every task.
      min_scores: fewer usable validation rows than this for a level (or group) keep scale 1.
      score: ``"absolute"`` (default: the quantiles of the validation errors themselves, around the
        centre) or ``"relative"`` (scale the method's own quantile distances); see `interval_scales`.
      name: label (default ``"<method>_calibrated"``).

    The forecaster's ``info`` gains the learned scales as ``Forecast.info.attrs["scales"]``.

    Example:
      >>> Calibrated(BootstrapMethod("power_law", n_boot=50)).name
      'power_law_bootstrap_calibrated'
    """

    method: Method
    validation: Split = dataclasses.field(default_factory=lambda: RollingOrigin(fractions=(0.5, 0.75)))
    horizon: bool = False
    space: str = "auto"
    group: str | None = None
    min_scores: int = 20
    score: str = "absolute"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.score not in ("relative", "absolute"):
            raise ValueError(f"score must be 'relative' or 'absolute', got {self.score!r}")
        if self.space not in ("auto", "log", "linear"):
            raise ValueError(f"space must be 'auto', 'log' or 'linear', got {self.space!r}")
        if self.name is None:
            object.__setattr__(self, "name", f"{self.method.name}_calibrated")

    def scales(self, train: Dataset) -> dict[str, pd.DataFrame]:
        """The learned scales per forecaster name (rows: level, a, b, n, space, kind [, group])."""
        return self._fit(train)[1]

    def _fit(self, train: Dataset) -> tuple[Mapping[str, Forecaster], dict[str, pd.DataFrame]]:
        if self.group is not None and self.group not in train.by:
            raise KeyError(f"Calibrated group {self.group!r} must be one of the task keys {list(train.by)}")
        keys, xs, y = list(train.by), list(train.x_names), train.y_name
        frame = train.to_frame()
        use_h = self.horizon and len(xs) == 1
        try:
            inner = forecast_folds(frame, [self.method], self.validation, x=xs, y=y, by=keys,
                                   n_points=train.mask.shape[1])
        except ValueError:  # no validation fold: too few points everywhere
            inner = None
        if inner is not None and use_h:
            xmax = []
            for fold in self.validation(frame, x=xs, by=keys):
                m = frame[fold.train].groupby(keys, sort=False)[xs[0]].max().rename("_xmax").reset_index()
                xmax.append(m.assign(**{FOLD: fold.name}))
            inner = inner.merge(pd.concat(xmax, ignore_index=True), on=[FOLD] + keys, how="left")
            inner["horizon"] = np.log(inner[xs[0]].to_numpy(float) / inner["_xmax"].to_numpy(float))
        produced = self.method(train)
        forecasters = produced if isinstance(produced, Mapping) else {self.method.name: produced}
        scales = {}
        for name in forecasters:
            part = None if inner is None else inner[(inner["method"] == name) & (inner["role"] == "test")]
            if part is None or part.empty:
                scales[name] = pd.DataFrame(columns=_SCALE_COLUMNS)  # nothing learned: left as they are
                continue
            scales[name] = interval_scales(part, y=y, horizon="horizon" if use_h else None, space=self.space,
                                           group=self.group, min_scores=self.min_scores, score=self.score)
        return forecasters, scales

    def __call__(self, train: Dataset) -> Forecast | dict[str, Forecast]:
        forecasters, scales = self._fit(train)
        keys, xs = list(train.by), list(train.x_names)
        xmax = train.to_frame().groupby(keys, sort=False)[xs[0]].max() if self.horizon and len(xs) == 1 else None

        def wrap(fc: Forecaster, sc: pd.DataFrame) -> Forecast:
            def predict(query: pd.DataFrame) -> pd.DataFrame:
                table = fc(query)
                h = None
                if xmax is not None:
                    idx = pd.MultiIndex.from_frame(query[keys]) if len(keys) > 1 else pd.Index(query[keys[0]])
                    h = np.log(query[xs[0]].to_numpy(float) / xmax.reindex(idx).to_numpy(float))
                g = query[self.group].to_numpy() if self.group is not None else None
                return apply_scales(table, sc, horizon=h, group=g)

            info = getattr(fc, "info", None)
            info = info.copy() if info is not None else None
            if info is not None:
                info.attrs["scales"] = sc
            return Forecast(predict, info, getattr(fc, "fit", None))

        out = {(self.name if len(forecasters) == 1 else f"{name}_calibrated"): wrap(fc, scales[name])
               for name, fc in forecasters.items()}
        return next(iter(out.values())) if len(out) == 1 else out
