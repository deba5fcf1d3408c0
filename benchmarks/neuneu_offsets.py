"""Where NeuNeu's remaining error on the OLMo ladder is: priors, offsets and noise (validation splits).

    python -m benchmarks.neuneu_offsets                # writes its section of benchmarks/ACCURACY.md
    python -m benchmarks.neuneu_offsets --no-write

No model is trained: this measures, on the validation splits of `benchmarks.neuneu_ablation`
(built from the training part of each test split only, `calibration_split`), how far the logistic
priors NeuNeu starts from are from the accuracy, and how much of that error a per-trajectory
offset could remove, whether the context (the first 20 % of a trajectory's checkpoints) carries
it, and whether sibling runs (the other token budgets of the same model size) share it. It is the
evidence behind the reading of "NeuNeu on the OLMo ladder": which part of the error is noise,
which part is a per-trajectory offset, and what the context can tell about it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from benchmarks import _common as C
from benchmarks.neuneu import ACCURACY, LOAD_FEATURES, PRIOR_LOSSES, TEST_GROUPS

TITLE = "NeuNeu error anatomy: priors, per-trajectory offsets and noise (validation splits)"
CONTEXT_FRACTION = 0.2
#: the context offset is the mean deviation over the last few context points
CTX_POINTS = 5
WEIGHT_GRID = np.linspace(0.0, 1.0, 21)


def _prior_names() -> list[str]:
    return [f"logistic_prior_{loss}" for loss in PRIOR_LOSSES] + ["logistic_prior", "stacked"]


def _with_priors(traj: Any, fit_on: Any, *, cross_fit: str | None) -> Any:
    """Trajectories with the three logistic priors, their mean (``logistic_prior``, NeuNeu's base)
    and their stacked combination (``stacked``)."""
    import dataclasses

    from jaxscale.neuneu.baselines import with_loss_priors

    out = with_loss_priors(traj, fit_on, loss_features=PRIOR_LOSSES, cross_fit=cross_fit, combine="stack")
    k = [out.feature_names.index(f"logistic_prior_{loss}") for loss in PRIOR_LOSSES]
    mean = out.features[:, :, k].mean(axis=2, keepdims=True)
    names = out.feature_names[:-1] + ("stacked", "logistic_prior")
    return dataclasses.replace(out, features=np.concatenate([out.features, mean], axis=2), feature_names=names)


def _trajectory_rows(traj: Any, prior: str) -> pd.DataFrame:
    """One row per trajectory: its deviations y - prior at the targets (after the context), the mean
    deviation over the last context points, the targets' position, and a 7-point running mean of y."""
    from jaxscale.neuneu.samples import context_size

    pr = traj.features[:, :, traj.feature_names.index(prior)]
    n_ctx = context_size(traj.length, CONTEXT_FRACTION)
    size = traj.runs["size"].reindex(traj.keys["run"]).to_numpy()
    rows = []
    for t in range(traj.n_trajectories):
        n, k = int(traj.length[t]), int(n_ctx[t])
        y = traj.y[t, :n]
        d = y - pr[t, :n]
        smooth = pd.Series(y).rolling(7, center=True, min_periods=1).mean().to_numpy()
        rows.append({"run": traj.keys["run"].iloc[t], "task": traj.keys["task"].iloc[t], "size": size[t],
                     "ctx": float(np.mean(d[max(0, k - CTX_POINTS):k])), "dev": d[k:], "noise": (y - smooth)[k:],
                     "pos": np.arange(k, n) / n})
    return _with_siblings(pd.DataFrame(rows))


def _with_siblings(df: pd.DataFrame) -> pd.DataFrame:
    """Column ``sib``: the mean context offset of the *other* runs of the same size and task (the
    trajectory's own where it is alone)."""
    grp = df.groupby(["task", "size"])["ctx"]
    count = grp.transform("count")
    return df.assign(sib=np.where(count > 1, (grp.transform("sum") - df["ctx"]) / (count - 1).clip(lower=1), df["ctx"]))


def _padded(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The trajectories' target deviations as a NaN-padded [T, C] array and its mask."""
    width = max(len(d) for d in df["dev"])
    dev = np.full((len(df), width), np.nan)
    for i, d in enumerate(df["dev"]):
        dev[i, :len(d)] = d
    return dev, np.isfinite(dev)


def _mae(df: pd.DataFrame, w_own: float = 0.0, w_sib: float = 0.0, shift: pd.Series | None = None) -> float:
    """MAE per trajectory of y - (prior + w_own ctx + w_sib sib [+ shift]), averaged over trajectories."""
    return float(_mae_grid(df, np.array([[w_own, w_sib]]), shift)[0])


def _mae_grid(df: pd.DataFrame, weights: np.ndarray, shift: pd.Series | None = None) -> np.ndarray:
    """`_mae` for every row (w_own, w_sib) of ``weights`` at once."""
    dev, ok = _padded(df)
    corr = weights[:, :1] * df["ctx"].to_numpy()[None] + weights[:, 1:] * df["sib"].to_numpy()[None]  # [G, T]
    if shift is not None:
        corr = corr + shift.to_numpy(float)[None]
    err = np.abs(dev[None] - corr[:, :, None])
    per = np.where(ok[None], err, 0.0).sum(axis=2) / ok.sum(axis=1)[None]
    return per.mean(axis=1)


def _oracle_shift(df: pd.DataFrame, by: list[str]) -> pd.Series:
    """The median future deviation per group (reads the targets: a bound, not a forecast)."""
    flat = df.explode("dev").assign(dev=lambda d: d["dev"].astype(float))
    med = flat.groupby(by)["dev"].median()
    return pd.Series(med.reindex(pd.MultiIndex.from_frame(df[by])).to_numpy() if len(by) > 1
                     else med.reindex(df[by[0]]).to_numpy())


def analyse(traj: Any, split: Any) -> dict[str, Any]:
    """Every number of one validation split (see the module docstring)."""
    train, test, base = split.parts(traj)
    test_p = _with_priors(test, base, cross_fit=None)
    train_p = _with_priors(train, train, cross_fit="size")  # out-of-size, as NeuNeu's training priors
    ref = _mae(_trajectory_rows(test_p, "logistic_prior_log_avg_loss"))  # = the logistic baseline
    out: dict[str, Any] = {"baseline_mae": ref, "priors": {}}
    for prior in _prior_names():
        te, tr = _trajectory_rows(test_p, prior), _trajectory_rows(train_p, prior)
        # offset weights learned on the training part only
        grid_own = np.stack([WEIGHT_GRID, np.zeros_like(WEIGHT_GRID)], axis=1)
        own = float(grid_own[np.argmin(_mae_grid(tr, grid_own)), 0])
        grid = np.array([(a, b) for a in WEIGHT_GRID for b in WEIGHT_GRID])
        both = tuple(float(v) for v in grid[np.argmin(_mae_grid(tr, grid))])
        noise = float(np.mean([np.abs(r.noise).mean() for r in te.itertuples()]))
        out["priors"][prior] = {
            "prior": _mae(te) / ref, "own": (own, _mae(te, own) / ref), "sib": (both, _mae(te, *both) / ref),
            "oracle_traj": _mae(te, shift=_oracle_shift(te, ["run", "task"])) / ref,
            "oracle_task_size": _mae(te, shift=_oracle_shift(te, ["task", "size"])) / ref,
            "oracle_run": _mae(te, shift=_oracle_shift(te, ["run"])) / ref,
            "noise": noise / ref,
        }
    te = _trajectory_rows(test_p, "logistic_prior")
    flat = te.explode(["dev", "pos"]).astype({"dev": float, "pos": float})
    bins = pd.cut(flat["pos"], [0.0, 0.4, 0.6, 0.8, 1.0])
    out["by_position"] = flat["dev"].abs().groupby(bins, observed=True).mean()
    fut = te.assign(fut=[float(np.median(d)) for d in te["dev"]])
    out["corr_ctx_future"] = float(np.corrcoef(fut["fut"], fut["ctx"])[0, 1])
    budget = fut["run"].str.split("-", n=1).str[1]
    piv = fut.assign(budget=budget).pivot_table(index=["task", "size"], columns="budget", values="fut")
    out["budget_corr"] = piv.corr()
    out["n_trajectories"] = len(te)
    return out


def run(args: argparse.Namespace) -> str:
    from jaxscale.neuneu import Trajectories, held_out_runs, held_out_tasks
    from jaxscale.neuneu.protocol import calibration_split

    t0 = time.perf_counter()
    traj = Trajectories.from_olmo(C.data_dir(), features=LOAD_FEATURES)
    outer = {"runs": held_out_runs(traj), "tasks": held_out_tasks(traj, test_groups=list(TEST_GROUPS))}
    val = {k: calibration_split(s, traj) for k, s in outer.items()}
    res = {k: analyse(traj, s) for k, s in val.items()}
    wall = time.perf_counter() - t0
    labels = {f"logistic_prior_{loss}": f"logistic of {loss}" for loss in PRIOR_LOSSES}
    labels |= {"logistic_prior": "mean of the three (NeuNeu's base)", "stacked": "stacked (per-task convex weights)"}
    lines = [
        f"Generated by `{C.command_line()}`; wall time {wall:.0f} s (no model trained).", "",
        f"Machine: {C.machine_line()}.", "",
        "Validation splits of `benchmarks.neuneu_ablation` (never the test splits): *runs* = "
        f"{', '.join(val['runs'].test_runs[:2])}, ... ({len(val['runs'].test_runs)} runs of the largest training size) "
        f"held out, priors fitted on {len(val['runs'].baseline_runs)} smaller runs; *tasks* = "
        f"{', '.join(val['tasks'].test_tasks)} on {len(val['tasks'].test_runs)} runs (1B, 3B), priors fitted on "
        f"their other {len(val['tasks'].baseline_runs)} runs. Under the protocol (first {CONTEXT_FRACTION:.0%} of each "
        "trajectory's checkpoints as context, every later checkpoint a target) every number is an MAE per (run, "
        "task) averaged over trajectories, divided by the logistic baseline's (the logistic of log_avg_loss), so 0.62 "
        "is the issue's target. Columns: *prior* alone (no context); *+ own offset*: plus w x the trajectory's mean "
        f"deviation from the prior over its last {CTX_POINTS} context points, w chosen on the training part (priors "
        "cross-fitted across sizes there); *+ sibling offsets*: plus also w' x the mean context offset of the other "
        "runs of the same size and task (the other token budgets; under the protocol each has its own first 20 % "
        "as context), both weights chosen on the training part. The remaining columns read the targets (bounds, "
        "not forecasts): the prior shifted by each trajectory's own median future deviation, by the median per "
        "(task, size), per run; and the MAE of y around its centred 7-checkpoint running mean (checkpoint-to-checkpoint "
        "noise no forecast of a smooth curve can remove).", ""]
    for key, r in res.items():
        lines += [f"**{key}** ({r['n_trajectories']} trajectories; logistic baseline MAE {r['baseline_mae']:.4f})", "",
                  "| prior | prior | + own offset (w) | + sibling offsets (w, w') | oracle: own offset | "
                  "oracle: (task, size) offset | oracle: run offset | noise floor |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for prior, p in r["priors"].items():
            lines.append(f"| {labels[prior]} | {p['prior']:.3f} | {p['own'][1]:.3f} ({p['own'][0]:.2f}) | "
                         f"{p['sib'][1]:.3f} ({p['sib'][0][0]:.2f}, {p['sib'][0][1]:.2f}) | {p['oracle_traj']:.3f} | "
                         f"{p['oracle_task_size']:.3f} | {p['oracle_run']:.3f} | {p['noise']:.3f} |")
        pos = r["by_position"]
        lines += ["", "Mean |deviation| from the mean prior by the target's position in its trajectory: "
                  + ", ".join(f"{iv.left:.0%}-{iv.right:.0%}: {v:.4f}" for iv, v in pos.items())
                  + f". Correlation across trajectories of the context offset with the median future deviation: "
                  f"{r['corr_ctx_future']:.2f}.", ""]
        bc = r["budget_corr"]
        if bc.shape[0] > 1:
            lines += ["Correlation, over (task, size), of the median future deviation between token budgets of the "
                      "same size:", "", "| | " + " | ".join(bc.columns) + " |", "|---" + "|---:" * bc.shape[1] + "|"]
            lines += [f"| {i} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for i, row in bc.iterrows()]
            lines.append("")
    rt, rk = res["runs"]["priors"], res["tasks"]["priors"]
    offdiag = np.concatenate([r["budget_corr"].to_numpy()[~np.eye(len(r["budget_corr"]), dtype=bool)]
                              for r in res.values()])
    m = "logistic_prior"
    lines += [
        f"Reading: the mean prior alone scores {rt[m]['prior']:.3f} / {rk[m]['prior']:.3f} (runs / tasks); the best "
        f"single prior is the soft score's ({rt['logistic_prior_soft']['prior']:.3f} / "
        f"{rk['logistic_prior_soft']['prior']:.3f}) and stacking the three with per-task weights gives "
        f"{rt['stacked']['prior']:.3f} / {rk['stacked']['prior']:.3f}. A per-trajectory constant offset that knew the "
        f"future would bring the mean prior to {rt[m]['oracle_traj']:.3f} / {rk[m]['oracle_traj']:.3f}. The context "
        f"recovers part of it: the offset read from its last points gives {rt[m]['own'][1]:.3f} / {rk[m]['own'][1]:.3f}, "
        f"and adding the sibling runs' context offsets {rt[m]['sib'][1]:.3f} / {rk[m]['sib'][1]:.3f}. Between token "
        f"budgets of one size the future offsets correlate from {np.nanmin(offdiag):.2f} to {np.nanmax(offdiag):.2f}, "
        "so they partly belong to the (task, model size) pair; but even the exact median offset of each (task, size) "
        f"pair only reaches {rt[m]['oracle_task_size']:.3f} / {rk[m]['oracle_task_size']:.3f}, so the issue's 0.62 "
        "needs each run's own future offset, which neither its early context nor its siblings reveal. The offsets grow "
        "along the trajectory, and checkpoint-to-checkpoint noise alone is "
        f"{rt[m]['noise']:.3f} / {rk[m]['noise']:.3f} of the baseline's error. NeuNeu's ratios on the same splits are "
        "in the section `NeuNeu design ablation`.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    return C.accuracy_main(p, argv, ACCURACY, TITLE, run)


if __name__ == "__main__":
    sys.exit(main())
