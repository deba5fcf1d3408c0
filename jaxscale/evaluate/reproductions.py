"""The published extrapolation results, re-run with jaxscale on ``../shared/data``.

Each function returns tidy tables; ``benchmarks/accuracy.py`` renders them into
``benchmarks/ACCURACY.md`` and ``tests/test_evaluate.py`` asserts the numbers.

- `revisiting`: the 92-curve benchmark of Alabdulmohsin et al. (M1-M4, BNSL 0/1/2 breaks, law
  selection and a validation-weighted ensemble), scored on the extrapolation points by RMSLE.
- `gadre_chained`: Gadre et al.'s (N, M) -> loss -> average top-1 error forecast.
- `olmo_two_step`: Bhagia et al.'s (N, D) -> task bpb -> accuracy ladder forecast.
- `colpret`: learning-curve extrapolation on the 192 ColPret curves (fit on the first half of the
  tokens, predict the rest).

Example:
    >>> from jaxscale.evaluate import reproductions
    >>> out = reproductions.gadre_chained(data_dir="../shared/data")  # doctest: +SKIP
    >>> out[["dataset", "target", "error_rel_pct"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

import jaxscale
from jaxscale import datasets, laws
from jaxscale.evaluate.harness import ByGroup, LawMethod, backtest, forecast_folds, leaderboard, score_folds
from jaxscale.evaluate.selection import SelectLaw, selection_report
from jaxscale.evaluate.splits import Given, RollingOrigin, as_list

__all__ = [
    "REVISITING_REFERENCE_M4", "REVISITING_REFERENCE_BNSL_BLOWUPS", "GADRE_REFERENCE", "OLMO_PUBLISHED_13B",
    "OLMO_TASKS", "revisiting_methods", "revisiting", "gadre_chained", "olmo_two_step", "olmo_sigmoid",
    "colpret", "colpret_family", "colpret_methods", "thin_points", "BNSL_MAX_ITER", "BNSL_MAX_SLOPE",
    "bnsl_shapes",
]

# ---------------------------------------------------------------------------------------------
# Revisiting neural scaling laws: 92 curves
#: Mean extrapolation RMSLE of the reference M4 fits per domain (reference.md section 2).
REVISITING_REFERENCE_M4 = {"IC": 0.0415, "NMT": 0.0208, "LM": 0.0009, "BB": 0.0123}
#: Curves where the reference 1-break BNSL grid fit blows up (RMSLE > 0.2 or NaN).
REVISITING_REFERENCE_BNSL_BLOWUPS = 10
REVISITING_BY = ["domain", "task"]
#: Newton iterations per start for the BNSL fits (1000 by default): the lanes that run longer sit
#: in flat valleys and change no extrapolation; capping them saves most of BNSL2's time.
BNSL_MAX_ITER = 300
#: Upper bound on the log-log slope of every segment of the constrained BNSL fits
#: (`laws.monotone_bnsl`): the reducible error decays no faster than 1/x, the parametric rate.
BNSL_MAX_SLOPE = 1.0


def revisiting_methods(*, fixed_m4: bool = True, ablations: bool = True, validation: Any = None) -> list:
    """The methods of the 92-curve leaderboard.

    One `SelectLaw` run scores the seven candidate laws (M1, M2, M3, M4 with a learnable eps_0 as
    in the reference code, BNSL with 0 breaks, and the constrained BNSL with 1 and 2 breaks,
    ``"BNSL1 bounded"`` and ``"BNSL2 bounded"``: every segment's log-log slope in [0, 1],
    `laws.monotone_bnsl` with `BNSL_MAX_SLOPE`), the law selected per task by
    rolling-origin validation inside the training points (fit on x <= 0.5 and 0.7 of the largest
    training x, predict the rest of the training points), the number of BNSL breaks selected the
    same way, and a validation-weighted ensemble. The plain 1-break law (``"BNSL1"``, the
    reference's form) is scored as a separate method. `ablations` adds the plain 2-break law and
    BNSL1 with non-increasing segments only (``"BNSL1 monotone"``: the lower bound without the
    upper one); `fixed_m4` adds M4 with eps_0 fixed (1.0, and 1.001 on BIG-bench). BNSL fits with
    breaks are capped at `BNSL_MAX_ITER` Newton iterations per start.
    """
    capped = {"max_iter": BNSL_MAX_ITER}
    candidates = [
        LawMethod(laws.power_law, name="M1"),
        LawMethod(laws.saturating_power_law, name="M2"),
        LawMethod(laws.m3, name="M3"),
        LawMethod(laws.m4, name="M4"),
        LawMethod(laws.bnsl(0), name="BNSL0"),
        LawMethod(laws.monotone_bnsl(1, BNSL_MAX_SLOPE), name="BNSL1 bounded", fit_options=capped),
        LawMethod(laws.monotone_bnsl(2, BNSL_MAX_SLOPE), name="BNSL2 bounded", fit_options=capped),
    ]
    select = SelectLaw(
        candidates,
        validation=validation if validation is not None else RollingOrigin(fractions=(0.5, 0.7), mode="x"),
        name="selected", ensemble="ensemble", keep_candidates=True,
        subsets={"BNSL selected breaks": ["BNSL0", "BNSL1 bounded", "BNSL2 bounded"]},
    )
    methods: list = [select, LawMethod(laws.bnsl(1), name="BNSL1", fit_options=capped)]
    if ablations:
        methods += [LawMethod(laws.bnsl(2), name="BNSL2", fit_options=capped),
                    LawMethod(laws.monotone_bnsl(1), name="BNSL1 monotone", fit_options=capped)]
    if fixed_m4:
        methods.append(ByGroup("domain", {"BB": LawMethod(laws.m4.fix(eps_0=1.001))},
                               default=LawMethod(laws.m4.fix(eps_0=1.0)), name="M4 fixed eps_0"))
    return methods


@dataclasses.dataclass(frozen=True)
class RevisitingResult:
    """Scores (one row per method and curve), the leaderboard per domain and the selection report."""

    scores: pd.DataFrame
    leaderboard: pd.DataFrame
    selection: pd.DataFrame
    bnsl_selection: pd.DataFrame
    forecasts: pd.DataFrame


def revisiting(*, data_dir: Any = None, methods: Sequence | None = None, domains: Sequence[str] | None = None,
               grid: int = 0) -> RevisitingResult:
    """Fit on the training points (``Training == 1``) of the 92 curves and score the extrapolation
    points by RMSLE on log(y); every law is fitted to all curves in one batched call.

    The selection reports cover the first `SelectLaw` of `methods` (all its candidates, and its
    ``"BNSL selected breaks"`` subset when it has one)."""
    df = datasets.load_revisiting(data_dir=data_dir)
    if domains is not None:
        df = df[df.domain.isin(domains)]
    methods = revisiting_methods() if methods is None else list(methods)
    fc = forecast_folds(df, methods, Given("split", "train", "extrapolate"), x="x", y="y", by=REVISITING_BY,
                        grid=grid)
    scores = score_folds(fc, y="y", by=REVISITING_BY)
    board = leaderboard(scores, group="domain", task=REVISITING_BY)
    select = next((m for m in methods if isinstance(m, SelectLaw)), None)
    sel = bsel = pd.DataFrame()
    if select is not None and select.name in set(scores.method):
        sel = selection_report(scores, selected=select.name, candidates=[c.name for c in select.candidates],
                               group="domain", task=REVISITING_BY)
        breaks = (select.subsets or {}).get("BNSL selected breaks")
        if breaks and "BNSL selected breaks" in set(scores.method):
            bsel = selection_report(scores, selected="BNSL selected breaks", candidates=list(breaks),
                                    group="domain", task=REVISITING_BY)
    return RevisitingResult(scores, board, sel, bsel, fc)


def bnsl_shapes(tasks: Sequence[str], *, data_dir: Any = None, max_slope: float = BNSL_MAX_SLOPE) -> pd.DataFrame:
    """What a 1-break BNSL fit says about the training points of some Revisiting curves: the plain
    law (``"BNSL1"``) and the constrained one (``"BNSL1 bounded"``, slopes in [0, `max_slope`]).

    Returns one row per (task, method): the limit relative to the smallest training y
    (``a_over_ymin``), the log-log slope of y - a before and after the break (``slope_0``,
    ``slope_1``), the break location on the training range's log-x scale (``break_at``: 0 at the
    smallest training x, 1 at the largest), the sharpness ``f1``, the training objective and the
    extrapolation RMSLE.
    """
    df = datasets.load_revisiting(data_dir=data_dir)
    df = df[df.task.isin(tasks)]
    train, test = df[df.split == "train"], df[df.split == "extrapolate"]
    lx = np.log(train.groupby("task").x.agg(["min", "max"]))
    ymin = train.groupby("task").y.min()
    rows = []
    for name, law in (("BNSL1", laws.bnsl(1)), ("BNSL1 bounded", laws.monotone_bnsl(1, max_slope))):
        res = jaxscale.fit(train, law, x="x", y="y", by="task", max_iter=BNSL_MAX_ITER)
        p = res.params.set_index("task")
        if "s0" in p:  # the bounded law's slopes -> plain BNSL parameters
            p = p.assign(**laws.bnsl_params(p, 1))
        pred = res.predict(test[["task", "x"]])
        err = pd.Series((np.log(pred) - np.log(test.y.to_numpy())) ** 2).groupby(test.task.to_numpy()).mean() ** 0.5
        obj = pd.Series(res.objective, index=res.params.task)
        for t in p.index:
            rows.append({"task": t, "method": name, "a_over_ymin": p.a[t] / ymin[t], "slope_0": p.c0[t],
                         "slope_1": p.c0[t] + p.c1[t],
                         "break_at": (np.log(p.d1[t]) - lx["min"][t]) / (lx["max"][t] - lx["min"][t]),
                         "f1": p.f1[t], "objective": obj[t], "rmsle": err[t]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Gadre et al. 2024: chained (C, M) -> loss -> average top-1 error
#: Relative errors (%) of the reference fit, RedPajama, 17-task average top-1 error (reference.md section 4).
GADRE_REFERENCE = {("rpj", "1.4B"): 3.6365, ("rpj", "6.9B"): 0.0464}
GADRE_LOSS_REFERENCE = {("rpj", "1.4B"): 0.7103, ("rpj", "6.9B"): 0.7320}
GADRE_DATASETS = {"c4_original": "C4", "rpj": "RedPajama", "rw_original": "RefinedWeb"}


def gadre_chained(*, data_dir: Any = None, loss_column: str = "loss_c4_val", error_column: str = "err_avg17",
                  loss: str = "mse") -> pd.DataFrame:
    """The Table-1 forecast of Gadre et al. for C4, RedPajama and RefinedWeb at once.

    The loss law L(C, M) is fitted on the 5 Table-1 points of each dataset, the error law
    Err(L) on the 6 points (observed losses), both on the raw scale (``loss="mse"``, as the
    reference's curve_fit), each in one batched fit over the three datasets. The error forecast
    chains them: Err(L_hat(C, M)).

    Returns one row per (dataset, target): sizes, true and predicted loss and error, relative
    errors in percent, and the fitted coefficients.
    """
    df = datasets.load_gadre(data_dir=data_dir)
    loss_fit = jaxscale.fit(df[df.fit_loss], laws.overtraining, x=["C", "M"], y=loss_column, by="dataset", loss=loss)
    err_fit = jaxscale.fit(df[df.fit_error], laws.exp_error, x=loss_column, y=error_column, by="dataset", loss=loss)
    tg = df[df.target].sort_values(["dataset", "N"]).reset_index(drop=True)
    l_hat = loss_fit.predict(tg[["dataset", "C", "M"]])
    e_hat = err_fit.predict(tg[["dataset"]].assign(**{loss_column: l_hat}))
    out = pd.DataFrame({
        "dataset": tg.dataset, "name": tg.dataset.map(GADRE_DATASETS), "target": tg["size"], "M": tg.M,
        "loss": tg[loss_column], "loss_pred": l_hat, "loss_rel_pct": 100 * np.abs(l_hat - tg[loss_column]) / tg[loss_column],
        "error": tg[error_column], "error_pred": e_hat,
        "error_rel_pct": 100 * np.abs(e_hat - tg[error_column]) / tg[error_column],
    })
    coef = loss_fit.params.merge(err_fit.params, on="dataset")
    return out.merge(coef, on="dataset")


# ---------------------------------------------------------------------------------------------
# OLMo ladder two-step (Bhagia et al. 2024)
#: The 8 tasks of the paper's main table: task split -> display name.
OLMO_TASKS = {
    "mmlu_avg_test_5shot": "MMLU", "hellaswag_val_5shot": "HellaSwag", "piqa_val_5shot": "PIQA",
    "socialiqa_val_5shot": "SocialIQA", "csqa_val_5shot": "CSQA", "openbookqa_test_5shot": "OpenBookQA",
    "arc_easy_test_5shot": "ARC-Easy", "arc_challenge_test_5shot": "ARC-Challenge",
}
#: Published chained 13B-5T errors, predicted minus actual accuracy in points (reference.md section 5).
OLMO_PUBLISHED_13B = {"MMLU": -0.3, "HellaSwag": 2.1, "PIQA": -0.9, "SocialIQA": -1.6, "CSQA": 3.5,
                      "OpenBookQA": -3.8, "ARC-Easy": -9.9, "ARC-Challenge": -11.1}


def _olmo_sigmoid_init(x, y, mask):
    """Starts: a grid over the slope k and the midpoint x0 across the data's x range."""
    lo, hi = jnp.min(jnp.where(mask, x, jnp.inf)), jnp.max(jnp.where(mask, x, -jnp.inf))
    span = jnp.maximum(hi - lo, 1e-6)
    k, q = (m.reshape(-1) for m in jnp.meshgrid(jnp.array([1.0, 3.0, 6.0, 12.0, 30.0]) / span,
                                                  jnp.linspace(0.0, 1.2, 7), indexing="ij"))
    return {"a": -0.7 * jnp.ones_like(k), "x0": lo + q * span, "k": k, "b": 0.95 * jnp.ones_like(k)}


#: The OLMo step-2 sigmoid with the reference's bounds: acc = a / (1 + exp(-k (x - x0))) + b with
#: a in (-1, 0), x0 > 0, k > 0, b in (0, 1) (``laws.logistic`` is the same curve without bounds).
olmo_sigmoid = laws.law(
    params={"a": (-1.0, 0.0), "x0": (0.0, None), "k": (0.0, None), "b": (0.0, 1.0)},
    init=_olmo_sigmoid_init, formula="acc = a / (1 + exp(-k (x - x0))) + b, a in (-1, 0), b in (0, 1)",
    name="olmo_sigmoid", positive_x=False,
)(lambda p, x: p["a"] / (1.0 + jnp.exp(-p["k"] * (x - p["x0"]))) + p["b"])


def _step2_points(ck: pd.DataFrame, skip: float, window: int) -> pd.DataFrame:
    """Per (task, run): drop the first ceil(skip * n) checkpoints, then a trailing `window`-point
    moving average of bpb and accuracy, the first window - 1 points averaging what precedes them
    (the reference's ``--skip_perc 0.1 --moving_avg 5``)."""
    ck = ck.sort_values(["task", "run", "D"], kind="stable")
    pos = ck.groupby(["task", "run"], sort=False).cumcount()
    n = ck.groupby(["task", "run"], sort=False)["D"].transform("size")
    kept = ck[pos >= np.ceil(skip * n)]
    g = kept.groupby(["task", "run"], sort=False)
    smooth = g[["bpb", "acc"]].rolling(window, min_periods=1).mean().reset_index(level=[0, 1])
    return smooth.dropna(subset=["bpb", "acc"])[["task", "run", "bpb", "acc"]].reset_index(drop=True)


OLMO_VARIANTS = {
    "reference": "step 1 Chinchilla, Huber (delta 1e-3) in log space, alpha, beta >= 0; step 2 sigmoid with the reference bounds",
    "unbounded step 2": "step 2 with laws.logistic (no bounds on the asymptotes)",
    "step 1 ridge": "step 1 with a ridge 1e-3 ((alpha - beta)^2) pulling the two exponents together",
    "step 1 E >= 0.3": "step 1 with the irreducible loss bounded below, E >= 0.3",
}


def olmo_two_step(*, data_dir: Any = None, variant: str = "reference", skip: float = 0.1, window: int = 5) -> pd.DataFrame:
    """Fit step 1 on the 16 ladder runs of ``final.json`` and step 2 on their checkpoints, predict the
    7B-4T and 13B-5T targets. All 8 tasks are fitted in one batched call per step.

    Variants (`OLMO_VARIANTS`): ``"reference"`` (the paper's choices), ``"unbounded step 2"``,
    ``"step 1 ridge"``, ``"step 1 E >= 0.3"``.

    Returns one row per (target, task): true and predicted bpb, true and predicted accuracy,
    ``error_pts`` (predicted minus actual accuracy, in points), ``step2_error_pts`` (step 2 alone,
    from the true bpb) and, for 13B, the published error.
    """
    if variant not in OLMO_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {list(OLMO_VARIANTS)}")
    fin = datasets.load_olmo_ladder("final", data_dir=data_dir)
    fin = fin[fin.task.isin(OLMO_TASKS)]
    step1_law = laws.chinchilla.with_bounds(alpha=(0, None), beta=(0, None))
    penalty = None
    if variant == "step 1 E >= 0.3":
        step1_law = step1_law.with_bounds(E=(0.3, None))
    if variant == "step 1 ridge":
        penalty = _ridge_alpha_beta
    s1 = jaxscale.fit(fin[fin.role == "train"], step1_law, x=["N", "D"], y="bpb", by="task", loss="huber_log",
                      loss_options={"delta": 1e-3}, penalty=penalty)
    ck = datasets.load_olmo_ladder("checkpoints", data_dir=data_dir)
    ck = ck[(ck.role == "train") & ck.task.isin(OLMO_TASKS)]
    pts = _step2_points(ck, skip, window)
    ideal = pd.DataFrame({"task": list(OLMO_TASKS), "run": "ideal", "bpb": 0.0, "acc": 1.0})
    pts = pd.concat([pts, ideal], ignore_index=True)
    step2_law = laws.logistic if variant == "unbounded step 2" else olmo_sigmoid
    s2 = jaxscale.fit(pts, step2_law, x="bpb", y="acc", by="task", loss="mse", duplicates="mean")
    tg = fin[fin.role == "target"].copy()
    tg["bpb_pred"] = s1.predict(tg[["task", "N", "D"]])
    tg["acc_pred"] = s2.predict(tg[["task"]].assign(bpb=tg.bpb_pred.to_numpy()))
    step2_only = s2.predict(tg[["task", "bpb"]])
    out = pd.DataFrame({
        "target": tg["size"].map({"7B": "7B-4T", "13B": "13B-5T"}).to_numpy(), "task": tg.task.map(OLMO_TASKS).to_numpy(),
        "bpb": tg.bpb.to_numpy(), "bpb_pred": tg.bpb_pred.to_numpy(), "acc": tg.acc.to_numpy(),
        "acc_pred": tg.acc_pred.to_numpy(), "error_pts": 100 * (tg.acc_pred - tg.acc).to_numpy(),
        "step2_error_pts": 100 * (step2_only - tg.acc.to_numpy()),
    })
    out["published_pts"] = np.where(out.target == "13B-5T", out.task.map(OLMO_PUBLISHED_13B), np.nan)
    out["variant"] = variant
    order = {n: i for i, n in enumerate(OLMO_TASKS.values())}
    return out.sort_values(["target", "task"], key=lambda s: s.map(order) if s.name == "task" else s).reset_index(drop=True)


def _ridge_alpha_beta(p: dict) -> Any:
    return 1e-3 * (p["alpha"] - p["beta"]) ** 2


# ---------------------------------------------------------------------------------------------
# ColPret learning curves
COLPRET_FAMILIES = [
    ("GPT-3", "GPT-3"), ("GPT2-", "datablations"), ("pythia", "Pythia"), ("OPT", "OPT"), ("OLMo", "OLMo"),
    ("Amber", "Amber"), ("chin", "Chinchilla"), ("lambda", "Revisiting LM"), ("pile-t5", "Pile-T5"),
    ("redPajama", "RedPajama"), ("c4_original", "Gadre sweep"), ("rpj", "Gadre sweep"), ("rw_original", "Gadre sweep"),
    ("Pile", "data mixes"), ("SlimPajama", "data mixes"),
]


def colpret_family(curve: str) -> str:
    """A coarse source family of a ColPret curve name (``"GPT-3 13B"`` -> ``"GPT-3"``)."""
    for prefix, fam in COLPRET_FAMILIES:
        if curve.startswith(prefix):
            return fam
    return "other"


def colpret_methods() -> list:
    """M1-M4, BNSL with 1 break, and BNSL with 1 break and non-increasing segments."""
    return [
        LawMethod(laws.power_law, name="M1"),
        LawMethod(laws.saturating_power_law, name="M2"),
        LawMethod(laws.m3, name="M3"),
        LawMethod(laws.m4, name="M4"),
        LawMethod(laws.bnsl(1), name="BNSL1", fit_options={"max_iter": BNSL_MAX_ITER}),
        LawMethod(laws.monotone_bnsl(1), name="BNSL1 monotone", fit_options={"max_iter": BNSL_MAX_ITER}),
    ]


def thin_points(frame: pd.DataFrame, by: str | Sequence[str], x: str, max_points: int) -> pd.DataFrame:
    """At most `max_points` rows per group: the last one (largest x) and evenly spaced ones (by index)
    before it. Learning curves are logged every k steps, so index spacing keeps their weighting."""
    keys = as_list(by)
    f = frame.sort_values([*keys, x], kind="stable")
    pos = f.groupby(keys, sort=False).cumcount().to_numpy()
    n = f.groupby(keys, sort=False)[x].transform("size").to_numpy()
    back = n - 1 - pos  # 0 for the last point
    step = np.maximum(n / max_points, 1.0)
    keep = (np.floor(back / step) != np.floor((back + 1) / step)) | (back == 0)
    keep &= back < max_points * step
    out = f[keep]
    sizes = out.groupby(keys, sort=False).size()
    if (sizes > max_points).any():
        out = out.groupby(keys, sort=False, group_keys=False).tail(max_points)
    return out.sort_index()


def colpret(*, data_dir: Any = None, methods: Sequence | None = None, fraction: float = 0.5,
            max_train_points: int | None = 64, min_train_points: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each curve on the points with tokens <= `fraction` x its last tokens, predict the rest.

    Repeated (curve, tokens) rows are averaged. Curves with fewer than `min_train_points` training
    points are skipped (6: every law of `colpret_methods` can be fitted). `max_train_points` thins
    long training parts to evenly spaced points (`thin_points`) so that the batch stays small;
    scoring uses every held-out point.

    Returns (scores, leaderboard by source family with an ``"all"`` row).
    """
    df = datasets.load_colpret(drop_duplicates=True, data_dir=data_dir)
    df = df.groupby(["curve", "tokens"], as_index=False, sort=False)["loss"].mean()
    df["family"] = df.curve.map(colpret_family)
    last = df.groupby("curve").tokens.transform("max")
    df["part"] = np.where(df.tokens <= fraction * last, "train", "test")
    n_train = (df.part == "train").groupby(df.curve).transform("sum")
    df = df[n_train >= min_train_points]
    if max_train_points:
        train = thin_points(df[df.part == "train"], "curve", "tokens", max_train_points)
        df = pd.concat([train, df[df.part == "test"]]).sort_index()
    methods = colpret_methods() if methods is None else list(methods)
    scores = backtest(df, methods, Given("part", "train", "test"), x="tokens", y="loss", by=["family", "curve"])
    return scores, leaderboard(scores, group="family", task=["family", "curve"])
