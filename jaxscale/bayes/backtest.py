"""Real-data backtests of the Bayesian forecasts against the bootstrap: coverage and width of
90 % intervals on held-out targets.

- `revisiting`: the 92-curve benchmark (fit on the ``train`` split, targets = every
  ``extrapolate`` point), per domain.
- `olmo`: the OLMo ladder two-step chain (N, D) -> task bpb -> accuracy for the 8 paper tasks,
  targets 7B-4T and 13B-5T.
- `gadre`: the (C, M) -> C4-eval loss -> 17-task average error chain, 3 training sets x 2 targets.

Bayes: `fit_nuts` with the default (data-scaled) priors; intervals of a new observation
(``kind="observation"``) and of the mean curve. Bootstrap: `jaxscale.bootstrap` of the
least-squares fit with the same law (the interval of the mean curve: it has no noise model);
chains are carried through replicate by replicate. Every function returns one row per target with
the interval bounds; `summarise` turns them into coverage / width tables.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

import jaxscale
from jaxscale import datasets, laws
from jaxscale.bayes import models as M
from jaxscale.bayes.chain import chain_draws
from jaxscale.bayes.inference import fit_nuts

NUTS = dict(num_warmup=500, num_samples=500, num_chains=4, max_tree_depth=6)
OLMO_TASKS = ("mmlu_avg_test_5shot", "hellaswag_val_5shot", "piqa_val_5shot", "socialiqa_val_5shot", "csqa_val_5shot",
              "openbookqa_test_5shot", "arc_easy_test_5shot", "arc_challenge_test_5shot")


def _q(draws: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return np.nanquantile(draws, lo, axis=-1), np.nanquantile(draws, hi, axis=-1)


def _interval_table(targets: pd.DataFrame, keys: Sequence[str], quantities) -> pd.DataFrame:
    """One row per (target, quantity): the truth and each method's 90 % interval and median.

    `quantities` is a sequence of (name, truth, {method: draws [R, D]}).
    """
    out = []
    for name, truth, draws in quantities:
        o = targets[list(keys)].copy()
        o["quantity"], o["target"] = name, truth.to_numpy()
        for m, d in draws.items():
            o[f"{m}_lo"], o[f"{m}_hi"] = _q(d)
            o[f"{m}_median"] = np.nanmedian(d, axis=-1)
        out.append(o)
    return pd.concat(out, ignore_index=True)


def revisiting(law: str = "saturating_power_law", *, key: jax.Array, data_dir: Any = None, n_boot: int = 200,
               nuts: dict | None = None, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """The 92-curve benchmark: per extrapolation point, 90 % intervals of Bayes (observation and
    mean) and of the bootstrap."""
    df = datasets.load_revisiting(data_dir=data_dir)
    if tasks is not None:
        df = df[df.task.isin(tasks)]
    df = df[df.y > 0]
    train, test = df[df.split == "train"], df[df.split == "extrapolate"].reset_index(drop=True)
    k1, k2, k3 = jax.random.split(key, 3)
    lawo = laws.get(law)
    ls = jaxscale.fit(train, lawo, x="x", y="y", by="task", loss="mse_log", on_invalid="report")
    post = fit_nuts(ls.data, lawo, key=k1, fit=ls, **(nuts or NUTS))
    obs = post.predict(test, kind="observation", key=k2)
    mean = post.predict(test, kind="mean")
    bs = jaxscale.bootstrap(ls.data, lawo, n=n_boot, key=k3, fit=ls, loss="mse_log")
    boot = bs.predict_rows(test)
    out = test[["domain", "task", "x", "y"]].copy()
    out["target"] = out["y"]
    for name, d in (("bayes_obs", obs), ("bayes_mean", mean), ("bootstrap", boot)):
        out[f"{name}_lo"], out[f"{name}_hi"] = _q(d)
    flagged = post.diagnostics.set_index("task")["flag"]
    out["bayes_flag"] = out["task"].map(flagged).fillna(True).to_numpy(bool)
    return out


def _olmo_step2_table(ckpt: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Intermediate checkpoints of the train runs: first 10 % dropped, 5-point moving average."""
    rows = []
    for (run, task), g in ckpt[(ckpt.role == "train") & ckpt.task.isin(tasks)].groupby(["run", "task"]):
        g = g.sort_values("D").dropna(subset=["bpb", "acc"])
        g = g.iloc[int(0.1 * len(g)):]
        sm = g[["bpb", "acc"]].rolling(5).mean().dropna()
        rows.append(pd.DataFrame({"run": run, "task": task, "bpb": sm.bpb.to_numpy(), "acc": sm.acc.to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    return out.groupby(["task", "bpb"], as_index=False).acc.mean()


def olmo(*, key: jax.Array, data_dir: Any = None, n_boot: int = 200, nuts: dict | None = None,
         tasks: Sequence[str] = OLMO_TASKS) -> pd.DataFrame:
    """OLMo ladder chain (N, D) -> bpb -> acc: 90 % intervals for 7B-4T and 13B-5T per task."""
    fin = datasets.load_olmo_ladder("final", data_dir=data_dir)
    fin = fin[fin.task.isin(tasks)]
    ckpt = datasets.load_olmo_ladder("checkpoints", data_dir=data_dir)
    s1 = fin[fin.role == "train"]
    s2 = _olmo_step2_table(ckpt, tasks)
    targets = fin[fin.role == "target"][["task", "size", "N", "D", "bpb", "acc"]].reset_index(drop=True)
    keys = jax.random.split(key, 6)
    ls1 = jaxscale.fit(s1, "chinchilla", x=["N", "D"], y="bpb", by="task", loss="huber_log",
                       loss_options={"delta": 1e-3})
    ls2 = jaxscale.fit(s2, "logistic", x="bpb", y="acc", by="task", loss="mse_log")
    p1 = fit_nuts(ls1.data, ls1.law, key=keys[0], fit=ls1, **(nuts or NUTS))
    p2 = fit_nuts(ls2.data, ls2.law, key=keys[1], fit=ls2, **(nuts or NUTS))
    rows, (bpb_obs, acc_obs) = chain_draws([p1, p2], targets[["task", "N", "D"]], key=keys[2], kind="observation")
    _, (bpb_mean, acc_mean) = chain_draws([p1, p2], targets[["task", "N", "D"]], key=keys[3], kind="mean")
    b1 = jaxscale.bootstrap(ls1.data, ls1.law, n=n_boot, key=keys[4], fit=ls1, loss="huber_log",
                            loss_options={"delta": 1e-3})
    b2 = jaxscale.bootstrap(ls2.data, ls2.law, n=n_boot, key=keys[5], fit=ls2, loss="mse_log")
    bpb_b = b1.predict_rows(targets)  # [R, B]
    acc_b = b2.predict_rows(targets, x=bpb_b)  # each replicate's step 2 at its own step-1 draw
    return _interval_table(targets, ["task", "size"], (
        ("bpb", targets.bpb, {"bayes_obs": bpb_obs, "bayes_mean": bpb_mean, "bootstrap": bpb_b}),
        ("acc", targets.acc, {"bayes_obs": acc_obs, "bayes_mean": acc_mean, "bootstrap": acc_b})))


def gadre(*, key: jax.Array, data_dir: Any = None, n_boot: int = 200, nuts: dict | None = None) -> pd.DataFrame:
    """Gadre chain (C, M) -> C4-eval loss -> 17-task error per training set: 90 % intervals."""
    g = datasets.load_gadre(data_dir=data_dir)
    keys = jax.random.split(key, 6)
    s1 = g[g.fit_loss][["dataset", "C", "M", "loss_c4_val"]]
    s2 = g[g.fit_error][["dataset", "loss_c4_val", "err_avg17"]]
    targets = g[g.target][["dataset", "size", "C", "M", "loss_c4_val", "err_avg17"]].reset_index(drop=True)
    ls1 = jaxscale.fit(s1, "overtraining", x=["C", "M"], y="loss_c4_val", by="dataset", loss="mse_log")
    ls2 = jaxscale.fit(s2, "exp_error", x="loss_c4_val", y="err_avg17", by="dataset", loss="mse_log")
    p1 = fit_nuts(ls1.data, ls1.law, key=keys[0], fit=ls1, **(nuts or NUTS))
    p2 = fit_nuts(ls2.data, ls2.law, key=keys[1], fit=ls2, **(nuts or NUTS))
    q = targets[["dataset", "C", "M"]]
    _, (l_obs, e_obs) = chain_draws([p1, p2], q, key=keys[2], kind="observation")
    _, (l_mean, e_mean) = chain_draws([p1, p2], q, key=keys[3], kind="mean")
    b1 = jaxscale.bootstrap(ls1.data, ls1.law, n=n_boot, key=keys[4], fit=ls1, loss="mse_log")
    b2 = jaxscale.bootstrap(ls2.data, ls2.law, n=n_boot, key=keys[5], fit=ls2, loss="mse_log")
    l_b = b1.predict_rows(targets)
    e_b = b2.predict_rows(targets, x=l_b)
    return _interval_table(targets, ["dataset", "size"], (
        ("loss", targets.loss_c4_val, {"bayes_obs": l_obs, "bayes_mean": l_mean, "bootstrap": l_b}),
        ("error", targets.err_avg17, {"bayes_obs": e_obs, "bayes_mean": e_mean, "bootstrap": e_b})))


def summarise(rows: pd.DataFrame, by: Sequence[str] = (), methods: Sequence[str] = ("bayes_obs", "bayes_mean", "bootstrap")
              ) -> pd.DataFrame:
    """Coverage of the targets by each method's 90 % interval, and the interval's width: median
    ``log(hi / lo)`` (relative width) and median ``hi - lo`` (absolute)."""
    out = []
    groups = rows.groupby(list(by)) if by else [((), rows)]
    for k, g in groups:
        rec = dict(zip(by, k if isinstance(k, tuple) else (k,))) if by else {}
        rec["n"] = len(g)
        for m in methods:
            lo, hi, t = g[f"{m}_lo"].to_numpy(), g[f"{m}_hi"].to_numpy(), g["target"].to_numpy()
            ok = np.isfinite(lo) & np.isfinite(hi)
            rec[f"{m}_coverage"] = float(((t >= lo) & (t <= hi))[ok].mean()) if ok.any() else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                rec[f"{m}_logwidth"] = float(np.nanmedian(np.log(hi[ok] / lo[ok]))) if ok.any() else np.nan
            rec[f"{m}_width"] = float(np.nanmedian((hi - lo)[ok])) if ok.any() else np.nan
        out.append(rec)
    return pd.DataFrame(out)
