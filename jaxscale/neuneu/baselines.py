"""Baselines NeuNeu is compared with, each returning the shared forecast table for the target rows.

All take the target rows of `evaluation_batch` (its index frame: ``run``, ``task``, ``x`` of the
target, ``y_ctx_end``, the raw loss features of the target...) and return a frame with ``run``,
``task``, ``x`` and ``prediction``, one row per target row, in order.

- `logistic_baseline`: the paper's baseline, acc = a / (1 + exp(-k (log L - x0))) + b of the log
  average validation loss L, fitted per task (one batched `jaxscale.fit`, one task per curve) on
  the *training* runs' checkpoints and applied to the true future loss of the target checkpoint.
- `context_law_baseline`: the best parametric law of accuracy vs tokens fitted to each (run,
  task)'s context alone: error = 1 - acc is fitted with M1, M2 and M3 (`jaxscale.laws`), the law
  chosen per trajectory by rolling-origin validation *inside the context* (`SelectLaw`); the last
  observed accuracy where the fit fails or leaves [0, 1].
- `last_value_baseline`: the last observed accuracy (persistence), a sanity row.

Example:
    >>> batch, index = evaluation_batch(test, context_length=32, normalizer=norm)  # doctest: +SKIP
    >>> logistic_baseline(train, index)                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

import jaxscale
from jaxscale.forecast import PREDICTION, forecast_frame
from jaxscale.neuneu.samples import Trajectories, context_size

__all__ = ["logistic_baseline", "fit_logistic_baseline", "context_law_baseline", "last_value_baseline",
           "with_logistic_prior", "with_loss_priors", "stacking_weights", "simplex_least_squares"]

_ROWS = ["run", "task", "x"]


def _check_index(index: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in index.columns]
    if missing:
        raise KeyError(f"target rows lack column(s) {missing}; pass the index frame of evaluation_batch")


def last_value_baseline(index: pd.DataFrame) -> pd.DataFrame:
    """Predict the last observed (context-end) accuracy for every target.

    Example:
        >>> idx = pd.DataFrame({"run": "r", "task": "t", "x": [2.0, 3.0], "y_ctx_end": 0.4})
        >>> last_value_baseline(idx)["prediction"].tolist()
        [0.4, 0.4]
    """
    _check_index(index, _ROWS + ["y_ctx_end"])
    return forecast_frame(index[_ROWS], index["y_ctx_end"].to_numpy(float))


def fit_logistic_baseline(train: Trajectories, *, tasks: list[str] | None = None, loss_feature: str = "log_avg_loss",
                          skip_fraction: float = 0.1) -> jaxscale.FitResult:
    """The per-task logistic law acc(loss feature), fitted on every checkpoint of ``train``'s runs
    (the first ``skip_fraction`` of each trajectory's checkpoints dropped, as in Bhagia et al.).

    One batched `jaxscale.fit` of the ``logistic`` law with ``by="task"`` (mean squared error);
    tasks that cannot be fitted are reported, not raised.

    Example:
        >>> res = fit_logistic_baseline(train, loss_feature="log_avg_loss")  # doctest: +SKIP
        >>> res.params[["task", "a", "k", "x0", "b"]]                          # doctest: +SKIP
    """
    if loss_feature not in train.feature_names:
        raise KeyError(f"the logistic baseline needs the loss feature {loss_feature!r}; the training trajectories "
                       f"have {list(train.feature_names)}")
    if tasks is not None:
        train = train.subset(tasks=[t for t in tasks if t in set(train.keys["task"])] or tasks)
    frame = train.to_frame()
    n = frame.groupby(["run", "task"])["checkpoint"].transform("size")
    frame = frame[frame["checkpoint"] >= np.floor(skip_fraction * n)]
    # one row per (task, loss value): repeated losses (e.g. checkpoints of different runs) are averaged
    return jaxscale.fit(frame, "logistic", x=loss_feature, y=train.y_name, by="task", loss="mse",
                        duplicates="mean", on_invalid="report")


def logistic_baseline(train: Trajectories, index: pd.DataFrame, *, loss_feature: str = "log_avg_loss",
                      skip_fraction: float = 0.1) -> pd.DataFrame:
    """The paper's baseline: per task, acc = logistic(loss feature) fitted on the training runs
    (`fit_logistic_baseline`), evaluated at each target checkpoint's true loss.

    Tasks absent from ``train`` or whose fit failed fall back to the last observed accuracy
    (column ``fallback`` says where).

    Example:
        >>> logistic_baseline(train, index)[["run", "task", "x", "prediction"]]  # doctest: +SKIP
    """
    _check_index(index, _ROWS + [loss_feature, "y_ctx_end"])
    known = set(train.keys["task"])
    tasks = sorted(set(index["task"]) & known)
    pred = np.full(len(index), np.nan)
    if tasks:
        res = fit_logistic_baseline(train, tasks=tasks, loss_feature=loss_feature, skip_fraction=skip_fraction)
        pred = res.predict(index[["task", loss_feature]])
    fallback = ~np.isfinite(pred)
    pred = np.where(fallback, index["y_ctx_end"].to_numpy(float), pred)
    out = forecast_frame(index[_ROWS], pred)
    out["fallback"] = fallback
    return out


def context_law_baseline(test: Trajectories, index: pd.DataFrame, *, context_fraction: float = 0.2,
                         laws: tuple[str, ...] = ("power_law", "saturating_power_law", "m3")) -> pd.DataFrame:
    """Per (run, task): the best of ``laws`` fitted to error = 1 - accuracy vs x on the context
    points alone (the first ``context_fraction`` of the checkpoints, as in `evaluation_batch`),
    chosen by rolling-origin validation inside the context (`jaxscale.evaluate.SelectLaw`).

    x is the checkpoint's tokens (FLOPs), or index + 1 when the trajectories have no x. Where the
    chosen fit fails, is non-finite or leaves [0, 1], the last observed accuracy is used
    (column ``fallback``); column ``choice`` names the law used.

    Example:
        >>> context_law_baseline(test, index)["choice"].value_counts()  # doctest: +SKIP
    """
    from jaxscale.evaluate import LawMethod, RollingOrigin, SelectLaw

    _check_index(index, _ROWS + ["y_ctx_end"])
    n_ctx = context_size(test.length, context_fraction)
    t, c = np.nonzero(np.arange(test.x.shape[1]) < n_ctx[:, None])
    ctx = test.keys.iloc[t].reset_index(drop=True)
    use_index = test.gap_unit == "index"
    ctx["x_fit"] = c + 1.0 if use_index else test.x[t, c]
    ctx["err"] = np.clip(1.0 - test.y[t, c], 1e-6, None)
    candidates = [LawMethod(name, name=name) for name in laws]
    select = SelectLaw(candidates, validation=RollingOrigin(fractions=(0.6, 0.8), mode="count", min_train=3),
                       name="selected")
    data = jaxscale.Dataset.from_frame(ctx, x="x_fit", y="err", by=["run", "task"], on_invalid="report")
    forecast = select(data)["selected"]
    query = index[["run", "task"]].copy()
    query["x_fit"] = index["target_index"].to_numpy(float) + 1.0 if use_index else index["x"].to_numpy(float)
    table = forecast(query)
    pred = 1.0 - table[PREDICTION].to_numpy(float)
    fallback = ~(np.isfinite(pred) & (pred >= 0.0) & (pred <= 1.0))
    pred = np.where(fallback, index["y_ctx_end"].to_numpy(float), pred)
    out = forecast_frame(index[_ROWS], pred)
    choice = forecast.info.set_index(["run", "task"])["choice"] if forecast.info is not None else None
    if choice is not None:
        out["choice"] = choice.reindex(pd.MultiIndex.from_frame(index[["run", "task"]])).to_numpy()
        out.loc[fallback, "choice"] = "last_value"
    out["fallback"] = fallback
    return out


def with_logistic_prior(trajectories: Trajectories, fit_on: Trajectories, *, loss_feature: str = "log_avg_loss",
                        name: str = "logistic_prior", skip_fraction: float = 0.1,
                        cross_fit: str | None = None, cross_fit_from: str = "others") -> Trajectories:
    """``trajectories`` with one more raw feature: the per-task logistic law of `fit_logistic_baseline`,
    fitted on ``fit_on`` (training runs only), evaluated at every checkpoint's loss.

    Gives NeuNeu the baseline's loss -> accuracy curve as an input, so it can learn the correction
    the context implies (the *NeuNeu + logistic prior* variant). Every task of ``trajectories``
    must be in ``fit_on``; a task whose fit failed gets the prior of the mean over fitted tasks.

    ``cross_fit`` (a column of ``runs``, e.g. ``"size"``): the prior of a trajectory is fitted on
    the runs of ``fit_on`` whose value differs from its own run's (out-of-group), so the training
    residuals look like the extrapolation errors met on held-out runs, not in-sample errors.
    ``cross_fit_from="below"``: fit only on the runs whose value is smaller (e.g. ``cross_fit="N"``:
    the prior extrapolates upwards, like the prior of held-out larger runs); the smallest group
    falls back to every other group.

    Example:
        >>> train = with_logistic_prior(train, train)          # doctest: +SKIP
        >>> test = with_logistic_prior(test, baseline_runs)    # doctest: +SKIP
    """
    if cross_fit_from not in ("others", "below"):
        raise ValueError(f"cross_fit_from must be 'others' or 'below', got {cross_fit_from!r}")
    missing = sorted(set(trajectories.keys["task"]) - set(fit_on.keys["task"]))
    if missing:
        raise ValueError(f"no data to fit the logistic prior of task(s) {missing[:5]}")
    k = trajectories.feature_names.index(loss_feature) if loss_feature in trajectories.feature_names else None
    if k is None:
        raise KeyError(f"the logistic prior needs the loss feature {loss_feature!r}")
    tasks = sorted(set(trajectories.keys["task"]))
    t, c = np.nonzero(np.arange(trajectories.x.shape[1]) < trajectories.length[:, None])
    query = pd.DataFrame({"task": trajectories.keys["task"].to_numpy()[t], loss_feature: trajectories.features[t, c, k]})
    if cross_fit is None:
        pred = fit_logistic_baseline(fit_on, tasks=tasks, loss_feature=loss_feature,
                                     skip_fraction=skip_fraction).predict(query)
    else:
        group = trajectories.runs[cross_fit].reindex(trajectories.keys["run"]).to_numpy()[t]
        fit_group = fit_on.runs[cross_fit]
        pred = np.full(len(query), np.nan)
        for g in pd.unique(group):
            others = fit_group.index[fit_group != g].tolist()
            if cross_fit_from == "below" and (fit_group < g).any():
                others = fit_group.index[fit_group < g].tolist()
            if not others:
                raise ValueError(f"cross-fitting the prior: no run with {cross_fit} != {g!r} to fit on")
            rows = group == g
            res = fit_logistic_baseline(fit_on.subset(runs=others), tasks=tasks, loss_feature=loss_feature,
                                        skip_fraction=skip_fraction)
            pred[rows] = res.predict(query[rows])
    if not np.isfinite(pred).all():  # a failed task: the mean prior over the others at that loss
        mean = pd.Series(pred).groupby(np.round(query[loss_feature].to_numpy(), 6)).transform("mean").to_numpy()
        pred = np.where(np.isfinite(pred), pred, mean)
    extra = np.full(trajectories.features.shape[:2] + (1,), np.nan)
    extra[t, c, 0] = pred
    return dataclasses.replace(trajectories, features=np.concatenate([trajectories.features, extra], axis=2),
                               feature_names=trajectories.feature_names + (name,))


def with_loss_priors(trajectories: Trajectories, fit_on: Trajectories, *,
                     loss_features: tuple[str, ...] = ("log_avg_loss",), name: str = "logistic_prior",
                     skip_fraction: float = 0.1, cross_fit: str | None = None,
                     cross_fit_from: str = "others", combine: str = "mean",
                     stack_by: str = "size") -> Trajectories:
    """``trajectories`` with one logistic prior per loss feature (`with_logistic_prior`) and their combination.

    With one loss feature this is `with_logistic_prior` (one feature ``name``). With several (e.g.
    ``("log_avg_loss", "bpb")``: the run's average validation loss and the task's own loss) each
    prior becomes a feature ``f"{name}_{loss}"`` and ``name`` holds their combination; every prior
    is fitted on ``fit_on`` only.

    ``combine``:
        - ``"mean"``: the plain mean, a steadier prior than either (its errors partly cancel).
        - ``"stack"``: a weighted mean per task, weights >= 0 summing to 1 (`stacking_weights`),
          chosen by least squares on ``fit_on``'s *out-of-group* priors (each run's priors fitted
          on the runs of ``fit_on`` with another ``stack_by`` value), so a prior that extrapolates
          well across sizes gets the weight. Falls back to the mean where ``fit_on`` has a single
          ``stack_by`` group. The weights are in ``result.runs.attrs["prior_weights"]``.

    Example:
        >>> train = with_loss_priors(train, train, loss_features=("log_avg_loss", "bpb"))  # doctest: +SKIP
        >>> train.feature_names[-3:]                                                       # doctest: +SKIP
        ('logistic_prior_log_avg_loss', 'logistic_prior_bpb', 'logistic_prior')
    """
    loss_features = tuple(loss_features)
    if not loss_features:
        raise ValueError("give at least one loss feature")
    if combine not in ("mean", "stack"):
        raise ValueError(f"combine must be 'mean' or 'stack', got {combine!r}")
    if len(loss_features) == 1:
        return with_logistic_prior(trajectories, fit_on, loss_feature=loss_features[0], name=name,
                                   skip_fraction=skip_fraction, cross_fit=cross_fit, cross_fit_from=cross_fit_from)
    out = trajectories
    for loss in loss_features:
        out = with_logistic_prior(out, fit_on, loss_feature=loss, name=f"{name}_{loss}", skip_fraction=skip_fraction,
                                  cross_fit=cross_fit, cross_fit_from=cross_fit_from)
    k = [out.feature_names.index(f"{name}_{loss}") for loss in loss_features]
    priors = out.features[:, :, k]
    if combine == "stack" and stack_by not in fit_on.runs.columns:
        raise ValueError(f"combine='stack' cross-fits the priors across the run column {stack_by!r}, which the runs "
                         f"table lacks (it has {list(fit_on.runs.columns)})")
    if combine == "mean" or fit_on.runs[stack_by].reindex(sorted(set(fit_on.keys["run"]))).nunique() < 2:
        weights = pd.DataFrame(1.0 / len(k), index=sorted(set(trajectories.keys["task"])), columns=list(loss_features))
    elif cross_fit == stack_by and cross_fit_from == "others" and trajectories is fit_on:
        weights = _stacking_weights(out, name, loss_features, skip_fraction)  # priors already cross-fitted
    else:
        weights = stacking_weights(fit_on, loss_features=loss_features, skip_fraction=skip_fraction, by=stack_by)
        missing = sorted(set(trajectories.keys["task"]) - set(weights.index))
        if missing:
            raise ValueError(f"no stacking weights for task(s) {missing[:5]}")
    w = weights.reindex(trajectories.keys["task"]).to_numpy(float)  # [T, K]
    combined = (priors * w[:, None, :]).sum(axis=2, keepdims=True)
    runs = out.runs.copy()
    runs.attrs["prior_weights"] = weights
    return dataclasses.replace(out, runs=runs, features=np.concatenate([out.features, combined], axis=2),
                               feature_names=out.feature_names + (name,))


def simplex_least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_w ||X w - y||^2 subject to w >= 0 and sum(w) = 1, exactly (every active set; K is small).

    Example:
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> simplex_least_squares(X, X @ np.array([0.25, 0.75])).round(6).tolist()
        [0.25, 0.75]
    """
    X, y = np.asarray(X, float), np.asarray(y, float)
    K = X.shape[1]
    if K > 12:
        raise ValueError(f"simplex_least_squares enumerates active sets; K = {K} is too many")
    best, best_loss = np.full(K, 1.0 / K), np.inf
    for mask in range(1, 2 ** K):
        s = [i for i in range(K) if mask >> i & 1]
        A = X[:, s]
        # KKT of min ||A v - y||^2 s.t. 1'v = 1
        m = len(s)
        kkt = np.zeros((m + 1, m + 1))
        kkt[:m, :m] = 2.0 * A.T @ A
        kkt[:m, m] = kkt[m, :m] = 1.0
        rhs = np.concatenate([2.0 * A.T @ y, [1.0]])
        v = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:m]
        if (v < -1e-12).any():
            continue
        w = np.zeros(K)
        w[s] = np.clip(v, 0.0, None)
        w /= w.sum()
        loss = float(np.sum((X @ w - y) ** 2))
        if loss < best_loss - 1e-15:
            best, best_loss = w, loss
    return best


def stacking_weights(fit_on: Trajectories, *, loss_features: tuple[str, ...], skip_fraction: float = 0.1,
                     by: str = "size") -> pd.DataFrame:
    """Per task, the convex weights of the logistic priors (one per loss feature) that best predict
    the accuracy of ``fit_on``'s runs from priors fitted on its *other* ``by`` groups (cross-fitted,
    `with_logistic_prior` ``cross_fit``), the first ``skip_fraction`` of each trajectory dropped.

    Returns a frame indexed by task, one column per loss feature, rows summing to 1.

    Example:
        >>> stacking_weights(base, loss_features=("log_avg_loss", "bpb", "soft"))  # doctest: +SKIP
    """
    cross = with_loss_priors(fit_on, fit_on, loss_features=loss_features, name="_stack", skip_fraction=skip_fraction,
                             cross_fit=by, combine="mean")
    return _stacking_weights(cross, "_stack", loss_features, skip_fraction)


def _stacking_weights(cross: Trajectories, name: str, loss_features: tuple[str, ...],
                      skip_fraction: float) -> pd.DataFrame:
    """`stacking_weights` from trajectories that already hold the cross-fitted priors ``f"{name}_{loss}"``."""
    k = [cross.feature_names.index(f"{name}_{loss}") for loss in loss_features]
    rows = {}
    tasks = cross.keys["task"].to_numpy()
    for task in sorted(set(tasks)):
        X, y = [], []
        for t in np.nonzero(tasks == task)[0]:
            n = int(cross.length[t])
            c0 = int(np.floor(skip_fraction * n))
            X.append(cross.features[t, c0:n][:, k])
            y.append(cross.y[t, c0:n])
        X, y = np.concatenate(X), np.concatenate(y)
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
        rows[task] = simplex_least_squares(X[ok], y[ok]) if ok.sum() > len(k) else np.full(len(k), 1.0 / len(k))
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(loss_features))
