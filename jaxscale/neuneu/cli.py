"""The ``jaxscale neuneu`` subcommand: train, evaluate and apply NeuNeu on accuracy trajectories.

    jaxscale neuneu train --data olmo --split runs --steps 800 --out neuneu_model/
    jaxscale neuneu train --data olmo --split tasks --logistic-prior --out neuneu_prior/
    jaxscale neuneu eval neuneu_model/ --data olmo --split runs --out scores.csv
    jaxscale neuneu predict neuneu_model/ --data runs.csv --y acc --x D --features bpb --out forecast.csv

``--data olmo`` reads the OLMo ladder (``--data-dir`` or ``$JAXSCALE_DATA``); any other value is a
CSV/TSV/Parquet long table with one row per (run, task, checkpoint) (columns named by ``--run``,
``--task``, ``--x``, ``--y`` and ``--features``). ``--split`` picks what is held out: ``runs``
(OLMo: train on 190M-760M, test 1.3B/3.2B; a table: ``--test-runs``), ``xc`` (OLMo: 5 and 10 xC),
``tasks`` (whole benchmarks, ``--test-groups``; a table: ``--test-tasks`` and ``--test-runs``),
``family`` (OLMo: train on the ladder, test on the OLMo-2 7B/13B runs; a table: the runs whose
``family`` column is ``--test-family``), or ``none`` (train on / evaluate every trajectory; no
logistic baseline then). `train` fits on the training part, `eval` scores the test part against
the baselines (the score table per method, run and task is written to ``--out``; the summary is
printed), `predict` writes the protocol's forecasts (first ``--context-fraction`` of each
trajectory as context, every later checkpoint predicted, quantiles q0.1..q0.9) of the test part.

`main(argv)` returns the exit code: 0 on success, 2 on bad input (``error: ...``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from jaxscale.cli import comma_names, int_at_least, read_table, run_command

__all__ = ["main", "build_parser"]


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {v}")
    return v


# --------------------------------------------------------------------------- data and splits
def _trajectories(args: argparse.Namespace):
    from jaxscale.neuneu.samples import Trajectories

    if args.data == "olmo":
        features = () if args.features == ["none"] else tuple(args.features or ("bpb", "log_avg_loss"))
        from jaxscale.neuneu.samples import OLMO2_RUNS, OLMO_LADDER_RUNS

        family = getattr(args, "split", None) == "family"  # the ladder and the OLMo-2 runs with trajectories
        return Trajectories.from_olmo(args.data_dir, runs=[*OLMO_LADDER_RUNS, *OLMO2_RUNS] if family else None,
                                      features=features)
    frame = read_table(args.data)
    features = [] if args.features in (None, ["none"]) else args.features
    x = None if args.x == "none" else args.x
    if x is not None and x in frame.columns:
        frame = frame.sort_values([args.run, args.task, x], kind="stable") if args.run in frame and args.task in frame \
            else frame
    # a per-run "size" column, when the table has one, lets the logistic priors be cross-fitted across sizes
    return Trajectories.from_frame(frame, run=args.run, task=args.task, x=x, y=args.y, features=features,
                                   x_unit=args.x_unit,
                                   run_columns=[c for c in ("size", "family") if c in frame.columns])


def _split(traj, args: argparse.Namespace):
    from jaxscale.neuneu.protocol import NeuNeuSplit, held_out_family, held_out_runs, held_out_tasks

    kind = args.split
    runs = sorted(traj.runs.index)
    tasks = sorted(traj.keys["task"].unique())
    if kind == "none":
        return None
    if kind == "runs":
        if args.test_runs:
            unknown = sorted(set(args.test_runs) - set(runs))
            if unknown:
                raise ValueError(f"--test-runs names unknown run(s) {unknown}; runs are {runs[:10]}")
            train = tuple(r for r in runs if r not in set(args.test_runs))
            return NeuNeuSplit("held-out runs", train, tuple(tasks), tuple(sorted(args.test_runs)), tuple(tasks),
                               train).check()
        if args.data != "olmo":
            raise ValueError("--split runs on a table needs --test-runs")
        return held_out_runs(traj)
    if kind == "xc":
        if args.data != "olmo":
            raise ValueError("--split xc needs --data olmo")
        return held_out_runs(traj, by="xC")
    if kind == "family":
        return held_out_family(traj, test=args.test_family or "olmo2")
    if kind == "tasks":
        if args.data == "olmo" and not args.test_tasks:
            return held_out_tasks(traj, test_groups=args.test_groups or ["arc_challenge", "hellaswag", "piqa"],
                                  test_runs=args.test_runs)
        if not args.test_tasks or not args.test_runs:
            raise ValueError("--split tasks on a table needs --test-tasks and --test-runs")
        unknown = sorted(set(args.test_tasks) - set(tasks)) + sorted(set(args.test_runs) - set(runs))
        if unknown:
            raise ValueError(f"--test-tasks/--test-runs name unknown task(s)/run(s) {unknown}")
        base = tuple(r for r in runs if r not in set(args.test_runs))
        return NeuNeuSplit("held-out tasks", tuple(runs), tuple(t for t in tasks if t not in set(args.test_tasks)),
                           tuple(sorted(args.test_runs)), tuple(sorted(args.test_tasks)), base,
                           held_out=("tasks",)).check()
    raise ValueError(f"unknown --split {kind!r}")


def _parts(args: argparse.Namespace):
    traj = _trajectories(args)
    split = _split(traj, args)
    if split is None:
        return traj, traj, None, None
    train, test, base = split.parts(traj)
    return train, test, base, split


def _print(frame: pd.DataFrame) -> None:
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from jaxscale.neuneu.protocol import train_forecaster
    from jaxscale.neuneu.train import TrainConfig

    train, _, _, split = _parts(args)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       seed=args.seed, log_every=max(1, min(50, args.steps)))
    residual = None
    if args.logistic_prior:
        from jaxscale.neuneu.baselines import with_loss_priors

        sizes = train.runs["size"].nunique() if "size" in train.runs.columns else 0
        train = with_loss_priors(train, train, loss_features=tuple(args.prior_losses),
                                 cross_fit="size" if sizes > 1 else None, combine=args.prior_combine)
        residual = "logistic_prior"
    fc = train_forecaster(train, model=args.config, train_config=tcfg, context_length=args.context_length,
                          seed=args.seed, progress=not args.quiet, residual=residual)
    fc.info.update({"split": split.to_dict() if split else None, "data": args.data})
    if args.logistic_prior:
        fc.info["prior_combine"] = args.prior_combine
    out = fc.save(args.out)
    last = fc.trained.history.iloc[-1]
    print(f"trained NeuNeu ({args.config}) on {train.n_trajectories} trajectories for {args.steps} steps "
          f"in {fc.info['train_seconds']:.1f} s (final pinball loss {last['loss']:.4g})"
          + (f"; split: {split.name}" if split else ""))
    print(f"wrote {out}")
    return 0


def _load(args: argparse.Namespace):
    from jaxscale.neuneu.protocol import NeuNeuForecaster

    path = Path(args.model)
    if not path.is_dir():
        raise FileNotFoundError(f"no such model directory: {str(path)!r}")
    return NeuNeuForecaster.load(path)


def cmd_eval(args: argparse.Namespace) -> int:
    from jaxscale.neuneu.protocol import neuneu_backtest, summarize

    fc = _load(args)
    traj = _trajectories(args)
    split = _split(traj, args)
    baselines = args.baselines
    if split is None:
        from jaxscale.neuneu.baselines import context_law_baseline, last_value_baseline

        if fc.residual is not None:
            raise ValueError("a model trained with --logistic-prior needs a split (the prior of the test part is "
                             "fitted on the other runs)")

        if "logistic" in baselines:
            print("note: --split none: no held-out runs to fit the logistic baseline on; it is skipped", file=sys.stderr)
            baselines = [b for b in baselines if b != "logistic"]
        fc.check_compatible(traj)
        from jaxscale.neuneu.samples import evaluation_batch

        split_name = "none (every trajectory)"

        batch, index = evaluation_batch(traj, context_length=fc.context_length,
                                        context_fraction=args.context_fraction, normalizer=fc.normalizer,
                                        deltas=fc.deltas, ctx_features=fc.ctx_features)
        tables = [fc.predict_batch(batch, index)]
        rows = index[["run", "task", "x", "y"]].reset_index(drop=True)
        for name in baselines:
            out = (last_value_baseline(index) if name == "last_value"
                   else context_law_baseline(traj, index, context_fraction=args.context_fraction))
            tables.append(rows.assign(method=name, prediction=out["prediction"].to_numpy(float)))
        scores, summary = summarize(pd.concat(tables, ignore_index=True))
    else:
        res = neuneu_backtest(traj, split, forecaster=fc, context_fraction=args.context_fraction,
                              baselines=baselines, logistic_prior=fc.residual == "logistic_prior")
        scores, summary = res.scores, res.summary
        split_name = split.name
    print(f"split: {split_name}; {int(summary['n_targets'].iloc[0])} targets in "
          f"{int(summary['n_trajectories'].iloc[0])} trajectories")
    _print(summary)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(out, index=False)
        print(f"wrote {len(scores)} score rows to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    fc = _load(args)
    _, test, base, split = _parts(args)
    if fc.residual == "logistic_prior":
        from jaxscale.neuneu.baselines import with_loss_priors

        if split is None:
            raise ValueError("a model trained with --logistic-prior needs a split (the prior of the test part is "
                             "fitted on the other runs)")
        losses = tuple(f.removeprefix("logistic_prior_") for f in fc.feature_names
                       if f.startswith("logistic_prior_")) or ("log_avg_loss",)
        test = with_loss_priors(test, base, loss_features=losses, combine=fc.info.get("prior_combine", "mean"))
    table = fc.forecast(test, context_fraction=args.context_fraction)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {len(table)} forecast(s) of {test.n_trajectories} trajectories to {out}"
          + (f" ({split.name}: test part)" if split else ""))
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The parser of ``jaxscale neuneu``."""
    parser = argparse.ArgumentParser(prog="jaxscale neuneu", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, metavar="SRC", help="'olmo' (the OLMo ladder) or a CSV/TSV/Parquet table")
        p.add_argument("--data-dir", default=None, metavar="DIR", help="data directory for --data olmo")
        p.add_argument("--run", default="run", metavar="COL", help="run column of a table (default: %(default)s)")
        p.add_argument("--task", default="task", metavar="COL", help="task column of a table (default: %(default)s)")
        p.add_argument("--x", default="D", metavar="COL",
                       help="tokens/FLOPs column of a table, or 'none' (checkpoint order; default: %(default)s)")
        p.add_argument("--x-unit", default="tokens", choices=("tokens", "flops", "x"), help="unit of --x")
        p.add_argument("--y", default="acc", metavar="COL", help="accuracy column of a table (default: %(default)s)")
        p.add_argument("--features", type=comma_names, default=None, metavar="COLS",
                       help="loss-feature columns ('none' for none; olmo default: bpb,log_avg_loss)")
        p.add_argument("--split", default="runs", choices=("runs", "xc", "tasks", "family", "none"),
                       help="what is held out (default: %(default)s)")
        p.add_argument("--test-family", default=None, metavar="NAME",
                       help="with --split family: the held-out value of the runs' family column (default olmo2)")
        p.add_argument("--test-runs", type=comma_names, default=None, metavar="IDS", help="held-out runs")
        p.add_argument("--test-tasks", type=comma_names, default=None, metavar="IDS", help="held-out tasks (a table)")
        p.add_argument("--test-groups", type=comma_names, default=None, metavar="NAMES",
                       help="held-out OLMo benchmarks (default arc_challenge,hellaswag,piqa)")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    t = add("train", cmd_train, "train NeuNeu on the training part and save the model directory")
    data_options(t)
    t.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    t.add_argument("--config", default="small", help="named model config (default: %(default)s)")
    t.add_argument("--steps", type=int_at_least(1), default=800, help="training steps (default: %(default)s)")
    t.add_argument("--batch-size", type=int_at_least(1), default=64, help="rows per step (default: %(default)s)")
    t.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate (default: %(default)s)")
    t.add_argument("--context-length", type=int_at_least(1), default=32, help="context bucket (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="seed of the sampler and model (default: %(default)s)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--logistic-prior", action="store_true",
                   help="the NeuNeu + logistic prior variant: also read the per-task logistic law of the log "
                        "average validation loss and predict the deviation from it (needs feature log_avg_loss)")
    t.add_argument("--prior-losses", type=comma_names, default=["log_avg_loss"], metavar="COLS",
                   help="with --logistic-prior: one logistic law per listed loss feature, averaged "
                        "(e.g. log_avg_loss,bpb,soft; default: log_avg_loss)")
    t.add_argument("--prior-combine", choices=["mean", "stack"], default="mean",
                   help="with several --prior-losses: their plain mean, or per-task convex weights chosen on "
                        "priors cross-fitted across sizes (default: %(default)s)")

    e = add("eval", cmd_eval, "score a saved model on the test part against the baselines")
    e.add_argument("model", metavar="MODEL", help="directory written by `jaxscale neuneu train`")
    data_options(e)
    e.add_argument("--baselines", type=comma_names, default=["logistic", "context_law", "last_value"], metavar="NAMES",
                   help="baselines to run (default: logistic,context_law,last_value)")
    e.add_argument("--context-fraction", type=_fraction, default=0.2, help="context share (default: %(default)s)")
    e.add_argument("--out", metavar="CSV", help="write the per-(method, run, task) scores here")

    p = add("predict", cmd_predict, "write the protocol forecasts of the test part (quantiles q0.1..q0.9)")
    p.add_argument("model", metavar="MODEL", help="directory written by `jaxscale neuneu train`")
    data_options(p)
    p.add_argument("--context-fraction", type=_fraction, default=0.2, help="context share (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="CSV", help="forecast CSV to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxscale neuneu`` with ``argv``; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help or a usage error
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "baselines", None):
        from jaxscale.neuneu.protocol import BASELINES

        unknown = [b for b in args.baselines if b not in BASELINES]
        if unknown:
            print(f"error: unknown baseline(s) {unknown}; choose from {list(BASELINES)}", file=sys.stderr)
            return 2
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
