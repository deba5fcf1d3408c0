"""NeuNeu accuracy on the OLMo ladder, against the logistic-of-loss baseline (Hu et al. 2026).

    python -m benchmarks.neuneu                       # held-out runs and held-out tasks
    python -m benchmarks.neuneu --splits runs --steps 600 --no-write
    python -m benchmarks.neuneu --model paper --batch-size 256 --steps 1000 --learning-rate 6e-4 --n-models 1  # GPU

With ``--model paper`` (the ~19M-parameter architecture, width 512, 6 blocks; for a GPU) the
sections written are "NeuNeu `paper` config ..." beside the small config's, and the speed table
adds the accelerator's peak memory.

For each split the `small` NeuNeu is trained on the training trajectories (CPU, a few minutes),
every target of the test trajectories is forecast under the paper's protocol (first 20 % of each
trajectory's checkpoints as context, every later checkpoint a target), and the baselines run on
the same rows (`jaxscale.neuneu.protocol.neuneu_backtest`). Writes the section
"NeuNeu on the OLMo ladder" of ``benchmarks/ACCURACY.md`` and the training-speed section of
``benchmarks/RESULTS.md`` (each benchmark replaces only its own section).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmarks import _common as C

ACCURACY = Path(__file__).resolve().parent / "ACCURACY.md"
ACCURACY_TITLE = "NeuNeu on the OLMo ladder (Hu et al. 2026): accuracy trajectories"
SPEED_TITLE = "9. NeuNeu training speed (small config, OLMo ladder trajectories)"
#: The issue's targets: NeuNeu MAE <= 0.62 x the logistic baseline's; 80 % coverage within 10 points.
MAE_RATIO_TARGET, COVERAGE_TOL = 0.62, 0.10
TEST_GROUPS = ("arc_challenge", "hellaswag", "piqa")
#: Loss features loaded per checkpoint: the task's loss in bits per byte, the run's log average
#: validation loss, and the task's soft score (probability on the correct choice, normalised over choices).
LOAD_FEATURES = ("bpb", "log_avg_loss", "soft")
#: The prior variant's logistic laws: one per loss feature, fitted on the baseline's runs, averaged.
PRIOR_LOSSES = ("log_avg_loss", "bpb", "soft")
#: The splits the issue's must-show targets are for (the held-out family is reported beside them).
TARGET_SPLITS = ("runs", "tasks")
PAPER_ACCURACY_TITLE = "NeuNeu `paper` config on the OLMo ladder (GPU run)"
PAPER_SPEED_TITLE = "10. NeuNeu training speed, `paper` config (OLMo ladder trajectories)"
METHOD_LABELS = {"neuneu": "NeuNeu (small)", "neuneu_prior": "NeuNeu (small) + logistic priors", "logistic": "logistic of log avg. val. loss (paper baseline)",
                 "context_law": "best of M1/M2/M3 on the context", "last_value": "last observed value"}


def _fmt(v: float, digits: int = 4) -> str:
    return "—" if not np.isfinite(v) else f"{v:.{digits}f}"


def _steps_per_second(history: pd.DataFrame) -> tuple[float, float]:
    """(steady steps/s after the first logged row, i.e. without compilation; overall steps/s)."""
    h = history.dropna(subset=["seconds"])
    overall = float(h["step"].iloc[-1] / h["seconds"].iloc[-1])
    if len(h) < 2:
        return overall, overall
    steady = float((h["step"].iloc[-1] - h["step"].iloc[0]) / (h["seconds"].iloc[-1] - h["seconds"].iloc[0]))
    return steady, overall


def _oracle_diagnostics(forecasts: pd.DataFrame) -> dict[str, float]:
    """MAE ratios (to the logistic baseline) of two references that read the test targets: the baseline
    plus each (run, task)'s median error, and a centred 7-point running mean of the targets."""
    f = forecasts[forecasts["method"] == "logistic"].copy()
    key = [f["run"], f["task"]]
    err = f["y"] - f["prediction"]
    base = (err.abs().groupby(key).mean()).mean()
    offset = ((err - err.groupby(key).transform("median")).abs().groupby(key).mean()).mean()
    smooth = f.groupby(["run", "task"])["y"].transform(lambda v: v.rolling(7, center=True, min_periods=1).mean())
    noise = ((f["y"] - smooth).abs().groupby(key).mean()).mean()
    return {"offset": float(offset / base), "smooth": float(noise / base)}


def run(args: argparse.Namespace) -> tuple[str, str, dict]:
    from jaxscale.neuneu import (
        Trajectories, TrainConfig, count_params, held_out_family, held_out_runs, held_out_tasks, neuneu_backtest,
        summarize,
    )
    from jaxscale.neuneu.samples import OLMO2_RUNS, OLMO_LADDER_RUNS

    data = C.data_dir()
    t_all = time.perf_counter()
    traj = Trajectories.from_olmo(data, features=tuple(args.load_features))
    splits = {"runs": held_out_runs(traj), "tasks": held_out_tasks(traj, test_groups=list(args.test_groups))}
    data_of = {"runs": traj, "tasks": traj}
    if "family" in args.splits:  # the ladder plus the OLMo-2 runs with intermediate checkpoints
        data_of["family"] = Trajectories.from_olmo(data, runs=[*OLMO_LADDER_RUNS, *OLMO2_RUNS],
                                                   features=tuple(args.load_features))
        splits["family"] = held_out_family(data_of["family"])
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       seed=args.seed, log_every=50)
    results, peaks = {}, {}
    labels = {**METHOD_LABELS, "neuneu": f"NeuNeu ({args.model})", "neuneu_prior": f"NeuNeu ({args.model}) + logistic priors"}
    for key in args.splits:
        t0 = time.perf_counter()
        common = dict(model=args.model, train_config=tcfg, context_length=args.context_length, seed=args.seed,
                      model_overrides={"dropout": args.dropout}, calibrate=not args.no_calibrate,
                      features=args.features)
        res = neuneu_backtest(data_of[key], splits[key], **common)
        if not args.no_prior:
            res.variant = neuneu_backtest(data_of[key], splits[key], baselines=(), logistic_prior=True,
                                          prior_cross_fit="size", prior_losses=tuple(args.prior_losses),
                                          n_models=args.n_models, method_name="neuneu_prior", **common)
            forecasts = pd.concat([res.forecasts, res.variant.forecasts], ignore_index=True)
            order = {m: i for i, m in enumerate(["neuneu", "neuneu_prior", "logistic", "context_law", "last_value"])}
            res.scores, res.summary = summarize(forecasts)
            res.summary = res.summary.sort_values("method", key=lambda c: c.map(order)).reset_index(drop=True)
            res.forecasts = forecasts
        results[key] = res
        peaks[key] = C.device_peak_bytes()  # the process's peak so far (every split trains the same model)
        print(f"{key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(res.summary.to_string(), file=sys.stderr)
    wall = time.perf_counter() - t_all

    m = C.machine()
    first = next(iter(results.values())).forecaster.trained
    mc = first.model_config
    lines = [
        f"Generated by `{C.command_line()}`; wall time {wall:.0f} s ({' and '.join(args.splits)} split(s), all "
        "models and baselines).", "",
        f"Machine: {C.machine_line(m)}.", "",
        "Data: the OLMo ladder (`Trajectories.from_olmo`): 30 runs (190M-3.2B x 0.5-10 xC, plus the 1xC re-runs) "
        "x 20 ranked-classification task splits, accuracy per checkpoint, x = tokens (gaps in log tokens)"
        + (f"; for the held-out family also the OLMo-2 runs {', '.join(OLMO2_RUNS)} (7B and 13B, "
           "intermediate checkpoints)" if "family" in args.splits else "") + ". "
        f"Loss features of the target checkpoint ({', '.join(args.load_features)}; bpb = the task's loss in bits per "
        "byte, log_avg_loss = the run's log average validation loss over the 11 LM sets, soft = the task's "
        "probability on the correct choice normalised over the choices, i.e. exp(-task CE)), normalised with "
        "training statistics, plus their change from the context end to the target and over the context. "
        "Protocol (paper): the first 20 % of each test "
        "trajectory's checkpoints are the context, every later checkpoint is a target, nothing dropped; MAE per "
        "(run, task) averaged over runs and tasks; 80 % interval = q0.1-q0.9. "
        f"NeuNeu: `{args.model}` config (width {mc.width}, {mc.depth} blocks, {mc.heads} heads, "
        f"{count_params(first.model):,} parameters, {mc.dtype} compute), {args.steps} AdamW steps of {args.batch_size} samples, peak lr {args.learning_rate:g}, "
        f"dropout {args.dropout:g}, context length {args.context_length}, sampler drop p = 0.4, context end at most "
        "60 % into a trajectory. Baselines on the same rows: the paper's logistic acc = a / (1 + exp(-k (log L - x0))) "
        "+ b of the log average validation loss L, fitted per task (one batched `jaxscale.fit`) on the training runs' "
        "checkpoints (first 10 % dropped) and applied to the true future loss (unchanged: it reads only L); the best of "
        "M1/M2/M3 on error = 1 - acc vs tokens fitted to each trajectory's context alone (chosen by rolling-origin "
        "validation inside the context); the last observed accuracy. *NeuNeu + logistic priors* reads and predicts "
        "the accuracy's deviation from a prior curve and starts from the deviation seen at the context end: the "
        f"prior is the mean of one logistic law per loss feature ({', '.join(args.prior_losses)}), each of the "
        "baseline's form and fitted per task on the same runs as the baseline (on NeuNeu's training part for the "
        "training trajectories, cross-fitted there on the other model sizes so that training deviations look like "
        "the extrapolation errors met at test time); every prior is also a loss feature"
        + (f"; it is an ensemble of {args.n_models} models (seeds 0..{args.n_models - 1}, quantiles averaged)"
           if args.n_models > 1 else "") + ". With held-out tasks the priors of a test task are fitted on that "
        "task's other (non-test) runs, exactly the data the baseline is fitted on; NeuNeu's weights never see a "
        "test task. Intervals: unless `--no-calibrate`, a second model (or ensemble) trained "
        "without a held-out part of the *training* data (the largest training size, or a third of the training "
        "task groups) sets a factor on every quantile's distance from the median so that its 80 % interval "
        "covers 80 % there (split-conformal; the test part is never used).", "",
    ]
    checks = {}
    for key, res in results.items():
        s = res.summary.set_index("method")
        variants = [m for m in ("neuneu", "neuneu_prior") if m in s.index]
        for v in variants:
            nn = s.loc[v]
            checks[f"{key}/{v}"] = {
                "mae": float(nn["mae"]), "ratio": float(nn["mae_ratio_logistic"]),
                "coverage_80": float(nn["coverage_80"]), "width_80": float(nn["width_80"]),
                "logistic_mae": float(s.loc["logistic", "mae"]),
                "ratio_ok": bool(nn["mae_ratio_logistic"] <= MAE_RATIO_TARGET),
                "cov_ok": bool(abs(nn["coverage_80"] - 0.8) <= COVERAGE_TOL)}
        nn = s.loc["neuneu"]
        split = res.split
        lines += [f"### {split.name}", "",
                  f"NeuNeu trains on {len(split.train_runs)} runs x {len(split.train_tasks)} tasks; scored on "
                  f"{len(split.test_runs)} runs ({', '.join(split.test_runs)}) x {len(split.test_tasks)} tasks, "
                  f"{int(nn['n_targets']):,} targets in {int(nn['n_trajectories'])} trajectories; the logistic "
                  f"baseline is fitted on {len(split.baseline_runs)} runs"
                  + (" (the test tasks on the runs that are not test runs; NeuNeu never sees a test task)"
                     if "tasks" in split.held_out else "") + f". Training {res.seconds['train']:.0f} s, "
                  f"prediction {res.seconds['predict']:.1f} s."
                  + (f" Interval calibration ({res.seconds['calibrate']:.0f} s): a second model trained without "
                     f"the held-out part {', '.join(cal['test_runs'] if 'runs' in split.held_out else cal['test_tasks'])} "
                     f"of the training data sets the interval scale to {cal['interval_scale']:.2f} (80 % coverage "
                     "there)." if (cal := res.forecaster.info.get("calibration")) else "")
                  + (f" The prior variant ({res.variant.forecaster.info.get('n_models', 1)} model(s)): training "
                     f"{res.variant.seconds['train']:.0f} s, prediction {res.variant.seconds['predict']:.1f} s"
                     + (f", calibration {res.variant.seconds['calibrate']:.0f} s (interval scale {vcal['interval_scale']:.2f})"
                        if (vcal := res.variant.forecaster.info.get("calibration")) else "") + "."
                     if getattr(res, "variant", None) is not None else ""), "",
                  "| method | MAE | MAE / logistic | 80 % coverage | 80 % width |", "|---|---:|---:|---:|---:|"]
        for method, row in s.iterrows():
            lines.append(f"| {labels.get(method, method)} | {_fmt(row['mae'])} | "
                         f"{_fmt(row['mae_ratio_logistic'], 3)} | {_fmt(row['coverage_80'], 3)} | "
                         f"{_fmt(row['width_80'], 4)} |")
        lines.append("")
        for v in variants:
            c = checks[f"{key}/{v}"]
            lines.append(f"Targets for {labels[v]}: MAE ratio <= {MAE_RATIO_TARGET} -> "
                         f"{'met' if c['ratio_ok'] else '**not met**'} ({c['ratio']:.3f}); 80 % coverage within "
                         f"{COVERAGE_TOL * 100:.0f} points of nominal -> {'met' if c['cov_ok'] else '**not met**'} "
                         f"({c['coverage_80']:.3f}).  ")
        diag = _oracle_diagnostics(res.forecasts)
        checks[f"{key}/oracle"] = diag
        lines += ["", f"Diagnostic (uses the test targets; not a forecast): the logistic baseline shifted by each "
                  f"trajectory's own median error would score MAE ratio {diag['offset']:.3f}, and a centred 7-checkpoint "
                  f"running mean of the targets themselves {diag['smooth']:.3f} (checkpoint-to-checkpoint noise).  "]
        lines.append("")
        per_task = res.scores.pivot_table(index="task", columns="method", values="mae")
        per_task = per_task[[c for c in ("neuneu", "neuneu_prior", "logistic", "context_law", "last_value")
                             if c in per_task]]
        lines += ["<details><summary>MAE per task (mean over test runs)</summary>", "",
                  "| task | " + " | ".join(per_task.columns) + " |", "|---" + "|---:" * per_task.shape[1] + "|"]
        for task, row in per_task.iterrows():
            lines.append(f"| {task} | " + " | ".join(_fmt(v) for v in row) + " |")
        lines += ["", "</details>", ""]
    oracle = {k.split("/")[0]: checks.pop(k) for k in [k for k in checks if k.endswith("/oracle")]}
    targeted = {k: c for k, c in checks.items() if k.split("/")[0] in TARGET_SPLITS}
    met = [k for k, c in targeted.items() if c["ratio_ok"] and c["cov_ok"]]
    best = min(targeted, key=lambda k: targeted[k]["ratio"]) if targeted else None
    family = {k: c for k, c in checks.items() if k.startswith("family/")}
    lines += [
        "Reading: the issue's must-show targets are NeuNeu MAE <= 0.62 x the logistic baseline and 80 % coverage "
        "within 10 points, on held-out runs and on held-out tasks. Measured: both targets met by "
        f"{', '.join(met) if met else 'no variant on these splits'}"
        + (f"; the best MAE ratio there is {targeted[best]['ratio']:.3f} ({best}), so the MAE target is "
           f"{'met' if targeted[best]['ratio_ok'] else 'not met'} here. " if best else ". ")
        + ("On the held-out family (trained on the ladder, tested on the OLMo-2 7B/13B runs, which the issue lists as "
           "a split but sets no target for) the ratios are "
           + ", ".join(f"{c['ratio']:.3f} ({k.split('/')[1]}, coverage {c['coverage_80']:.3f})" for k, c in family.items())
           + (": there the ladder's logistic law transfers poorly to another family, trained on other data, and "
              "NeuNeu's context corrects it. " if all(c["ratio"] < 1 for c in family.values()) else ". ")
           if family else "") +
        "The plain NeuNeu reads the trajectory and the loss features and predicts the change from the last observed "
        "accuracy; the prior variant predicts the change of the deviation from the averaged logistic priors, so it "
        "inherits their loss -> accuracy curves and uses the context to correct them per run. Its design was "
        "chosen on validation splits inside the training data, never on these test splits: see the section "
        "\"NeuNeu design ablation\" (`python -m benchmarks.neuneu_ablation`): three priors beat one prior and no "
        "prior, the 3-model ensemble has the best mean of the variants tried, and no other change (a smoothed "
        "base, shorter training contexts, no context dropping, a wider model, priors extrapolated from smaller "
        "models, priors stacked with per-task weights) improves on the single default model by more than the "
        "seed-to-seed spread. For scale: shifting "
        "the baseline by each test trajectory's own median error (an oracle that knows the future) gives "
        + ", ".join(f"{o['offset']:.2f} ({k})" for k, o in oracle.items()) + ", so a 0.62 ratio needs more than a "
        "per-trajectory constant correction. The section \"NeuNeu error anatomy\" (`python -m "
        "benchmarks.neuneu_offsets`, validation splits) locates the rest: the priors' error is mostly a "
        "per-trajectory offset that grows along the run; the early context and the sibling runs of the same size "
        "recover only part of it, and even the exact offset of each (task, model size) pair would not bring the "
        "priors to 0.62. The paper's 38 % gain was measured with "
        "~19M-parameter models trained for 3 epochs on DataDecide (many more runs and 66 tasks) and "
        "token-level loss histograms; here a " + (f"~{count_params(first.model) / 1e6:.1f}M-parameter model is "
        f"trained for {args.steps} steps" if args.model != "small" else "~0.1M-parameter model is trained for a few "
        "CPU minutes") + " on 18-30 ladder runs with three scalar loss features, and the logistic baseline is given "
        "the true future loss.", ""]
    accuracy = "\n".join(lines)

    accel = m["backend"] != "cpu"
    speed = [f"Command: `{C.command_line()}`.", "", f"Machine: {C.machine_line(m)}.", "",
             "| split | params | steps | batch | context | train time (s) | steps/s steady | steps/s incl. compile | "
             "samples/s steady |" + (" peak device memory (GiB) |" if accel else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if accel else "")]
    for key, res in results.items():
        tr = res.forecaster.trained
        st, ov = _steps_per_second(tr.history)
        speed.append(f"| {res.split.name} | {count_params(tr.model):,} | {tr.step} | {tr.train_config.batch_size} | "
                     f"{res.forecaster.context_length} | {res.seconds['train']:.1f} | {st:.1f} | {ov:.1f} | "
                     f"{st * tr.train_config.batch_size:,.0f} |" + (f" {C.fmt_gib(peaks[key])} |" if accel else ""))
    speed += ["", f"Device: {m['device']} (JAX backend {m['backend']}); {mc.dtype} compute (bf16 on accelerators, "
              "float32 on CPU; parameters and optimizer state float32). Train time and steps/s are the first "
              "(plain) model's; batches are drawn on the host by the numpy sampler."
              + (" Peak device memory: the device's peak bytes in use in the process up to the end of that split "
                 "(all its models, predictions and baseline fits)." if accel else
                 " The machine is shared, so times vary by about 2x between runs."), ""]
    return accuracy, "\n".join(speed), checks


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", nargs="+", choices=("runs", "tasks", "family"), default=["runs", "tasks", "family"])
    p.add_argument("--model", choices=("small", "paper"), default="small",
                   help="NeuNeu config (paper: ~19M parameters, for a GPU; its own sections)")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--context-length", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-groups", nargs="+", default=list(TEST_GROUPS))
    p.add_argument("--load-features", nargs="+", default=list(LOAD_FEATURES),
                   help="per-checkpoint loss features loaded from the ladder (default: bpb log_avg_loss soft)")
    p.add_argument("--features", nargs="+", default=None, help="NeuNeu's loss features (default: all loaded)")
    p.add_argument("--prior-losses", nargs="+", default=list(PRIOR_LOSSES),
                   help="loss features of the logistic priors of the prior variant (their mean is its base)")
    p.add_argument("--n-models", type=int, default=3, help="ensemble size of the prior variant (seeds averaged)")
    p.add_argument("--no-prior", action="store_true", help="skip the NeuNeu + logistic prior variant")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the interval calibration on a held-out part of the training data")
    p.add_argument("--accuracy", type=Path, default=ACCURACY, help="accuracy file (default benchmarks/ACCURACY.md)")
    p.add_argument("--results", type=Path, default=C.RESULTS, help="results file (default benchmarks/RESULTS.md)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    accuracy, speed, checks = run(args)
    acc_title, speed_title = (ACCURACY_TITLE, SPEED_TITLE) if args.model == "small" else (PAPER_ACCURACY_TITLE,
                                                                                          PAPER_SPEED_TITLE)
    print(f"\n## {acc_title}\n\n{accuracy}\n\n## {speed_title}\n\n{speed}")
    if not args.no_write:
        print(f"[written to {C.write_section(acc_title, accuracy, args.accuracy)}]")
        print(f"[written to {C.write_section(speed_title, speed, args.results)}]")
    for key, c in checks.items():
        print(f"{key}: MAE {c['mae']:.4f} vs logistic {c['logistic_mae']:.4f} (ratio {c['ratio']:.3f}, target "
              f"{MAE_RATIO_TARGET}: {'met' if c['ratio_ok'] else 'NOT met'}); coverage_80 {c['coverage_80']:.3f} "
              f"({'met' if c['cov_ok'] else 'NOT met'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
