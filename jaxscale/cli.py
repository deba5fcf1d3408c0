"""The ``jaxscale`` command line: fit, predict, list laws, run the demo.

    jaxscale fit runs.csv --law chinchilla --x N,D --y loss --loss huber_log --out fits/
    jaxscale predict fits/ --at "N=7e10,1e11;D=1.4e12,2e12"
    jaxscale laws
    jaxscale demo --out jaxscale_demo

Exit codes: 0 on success, 2 on bad input or usage (the message is printed as ``error: ...``),
1 on an unexpected error.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

import jaxscale
from jaxscale import laws
from jaxscale.data import TASK, DataError

LOSSES = ("mse_log", "huber_log", "mse", "msle")
"""Loss names the CLI accepts."""

USER_ERRORS = (DataError, ValueError, KeyError, OSError)
"""Exceptions reported as bad input (exit code 2, no traceback); OSError covers missing files."""

_FIT_DEFAULTS = {k: p.default for k, p in inspect.signature(jaxscale.fit).parameters.items()}
_MAX_ROWS_SHOWN = 20
IMPLICIT_TASK = "all"
"""The key `Dataset.from_frame` gives the single task of a table fitted without `by`."""


# --------------------------------------------------------------------------- helpers
def comma_names(text: str) -> list[str]:
    """Parse a comma-separated list of names (columns, tasks, runs; an argparse type)."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `lo`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value

    return parse


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file into a DataFrame (by extension; CSV otherwise)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise ValueError(f"cannot read {str(path)!r}: Parquet needs pyarrow or fastparquet ({e})") from e
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")


def parse_points(spec: str, x_names: Sequence[str]) -> np.ndarray:
    """Parse an inline ``--at`` spec into ``[Q, k]`` x values in the order of `x_names`.

    Forms: ``N=7e10,1e11;D=1.4e12,2e12`` (one list per x column, zipped, so every list has the
    same length), or for a one-input law a bare list ``1e6,1e7``.
    """
    parts = [p.strip() for p in spec.split(";") if p.strip()]
    if not parts:
        raise ValueError("--at is empty")
    if len(parts) == 1 and "=" not in parts[0]:
        if len(x_names) != 1:
            raise ValueError(f"the fit takes {len(x_names)} inputs {list(x_names)}: write --at like "
                             + ";".join(f"{n}=v1,v2" for n in x_names))
        parts = [f"{x_names[0]}={parts[0]}"]
    values: dict[str, list[float]] = {}
    for part in parts:
        name, sep, vals = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--at part {part!r} is not NAME=v1,v2,...")
        if name not in x_names:
            raise ValueError(f"--at names column {name!r}, but the fit's x columns are {list(x_names)}")
        if name in values:
            raise ValueError(f"--at gives column {name!r} twice")
        try:
            values[name] = [float(v) for v in vals.split(",") if v.strip()]
        except ValueError as e:
            raise ValueError(f"--at column {name!r}: {e}") from e
        if not values[name]:
            raise ValueError(f"--at column {name!r} has no values")
    missing = [n for n in x_names if n not in values]
    if missing:
        raise ValueError(f"--at lacks x column(s) {missing}; the fit's x columns are {list(x_names)}")
    lengths = {n: len(v) for n, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"--at columns are zipped, so they need the same number of values; got {lengths}")
    return np.array([values[n] for n in x_names], dtype=float).T


def _looks_like_path(spec: str) -> bool:
    return Path(spec).exists() or spec.lower().endswith((".csv", ".tsv", ".parquet", ".pq"))


def _print_table(frame: pd.DataFrame, max_rows: int = _MAX_ROWS_SHOWN) -> None:
    print(frame.to_string(index=False, max_rows=max_rows, float_format=lambda v: f"{v:.6g}"))


# --------------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    """``jaxscale fit``: fit a law to every task of a table and save the artifact."""
    if args.delta is not None and args.loss != "huber_log":
        raise ValueError(f"--delta only applies to --loss huber_log (got --loss {args.loss})")
    law = laws.get(args.law)
    if len(args.x) != law.n_inputs:
        raise ValueError(f"law {law.name!r} takes {law.n_inputs} input(s) {list(law.inputs)}, "
                         f"but --x gives {len(args.x)}: {args.x}")
    frame = read_table(args.data)
    data = jaxscale.Dataset.from_frame(frame, x=args.x, y=args.y, by=args.by, weight=args.weight,
                                       duplicates=args.duplicates, on_invalid=args.on_invalid)
    res = jaxscale.fit(data, law, loss=args.loss,
                       loss_options=None if args.delta is None else {"delta": args.delta},
                       polish=args.polish, max_iter=args.max_iter, on_invalid=args.on_invalid)
    out = res.save(args.out)
    table = res.to_frame()
    table.to_csv(out / "fits.csv", index=False)

    counts = table["status"].value_counts()
    print(f"fitted {res.law.name} ({res.law.formula}) with loss {res.loss.name} "
          f"to {len(table)} task(s): {int(counts.get('converged', 0))} converged"
          + "".join(f", {n} {s}" for s, n in counts.items() if s != "converged"))
    _print_table(table[[*res.data.by, *res.law.param_names, *res.law.fixed, "objective", "status"]])
    keys = table[list(res.data.by)].astype(str).agg(", ".join, axis=1)
    for key, status, reason in zip(keys, table["status"], table["reason"]):
        if status != "converged":
            print(f"  {key}: {status}: {reason}")
    print(f"wrote {out} (meta.json, arrays.npz, fits.csv)")
    return 0


def _task_columns(res: jaxscale.FitResult) -> list[str]:
    """The task key columns of a fit; none when it was fitted without ``--by`` (one implicit task)."""
    implicit = res.data.by == (TASK,) and res.data.keys[TASK].tolist() == [IMPLICIT_TASK]
    return [] if implicit else list(res.data.by)


def cmd_predict(args: argparse.Namespace) -> int:
    """``jaxscale predict``: forecast a saved fit at new x values."""
    res = jaxscale.load(args.fits)
    x_names, by = list(res.data.x_names), _task_columns(res)
    if _looks_like_path(args.at):
        table = read_table(args.at)
        missing = [c for c in x_names if c not in table.columns]
        if missing:
            raise DataError(f"--at table {args.at!r} lacks x column(s) {missing}; it has {list(table.columns)}")
        present = [c for c in by if c in table.columns]
        if present and len(present) < len(by):
            raise DataError(f"--at table {args.at!r} has task column(s) {present} but lacks "
                            f"{[c for c in by if c not in present]}; give all of {by} or none")
        if present:  # one prediction per row, each with its own task
            unknown = int((res.data.task_index(table) < 0).sum())
            if unknown:
                print(f"warning: {unknown} row(s) of {args.at!r} match no fitted task (prediction NaN)",
                      file=sys.stderr)
            forecast = res.forecast(table)
        else:  # every row for every task
            forecast = res.forecast(table[x_names].to_numpy(dtype=float))
    else:
        forecast = res.forecast(parse_points(args.at, x_names))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        forecast.to_csv(out, index=False)
        print(f"wrote {len(forecast)} prediction(s) to {out}")
    else:
        _print_table(forecast, max_rows=None)
    return 0


def _bound_text(name: str, lo: float, hi: float) -> str:
    if np.isinf(lo) and np.isinf(hi):
        return name
    if np.isinf(hi):
        return f"{name} > {lo:g}"
    return f"{lo:g} < {name} < {hi:g}"


def cmd_laws(args: argparse.Namespace) -> int:
    """``jaxscale laws``: list every available law."""
    for name in laws.available():
        law = laws.get(name)
        print(name)
        print(f"  inputs:  {', '.join(law.inputs)}")
        print(f"  params:  {', '.join(_bound_text(n, *b) for n, b in law.bounds().items())}")
        print(f"  formula: {law.formula}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``jaxscale demo``: the end-to-end synthetic demo."""
    from jaxscale import demo

    demo.run(args.out, args.seed)
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxscale`` command."""
    parser = argparse.ArgumentParser(prog="jaxscale", description="Fit and forecast neural scaling laws.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {jaxscale.__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter,
                           **kw)
        p.set_defaults(func=func)
        return p

    f = add("fit", cmd_fit, "fit a law to every task of a long table and save the fit",
            epilog="example: jaxscale fit runs.csv --law chinchilla --x N,D --y loss --loss huber_log --out fits/")
    f.add_argument("data", metavar="DATA", help="CSV, TSV or Parquet file, one row per observation")
    f.add_argument("--law", required=True, help=f"law name, one of: {', '.join(laws.available())}")
    f.add_argument("--x", required=True, type=comma_names, metavar="COLS",
                   help="covariate column(s), comma-separated, in the order the law takes them")
    f.add_argument("--y", required=True, metavar="COL", help="target column")
    f.add_argument("--by", type=comma_names, metavar="COLS", help="task column(s), comma-separated (default: one task)")
    f.add_argument("--weight", metavar="COL", help="non-negative point-weight column")
    f.add_argument("--loss", choices=LOSSES, default=_FIT_DEFAULTS["loss"], help="fitting loss (default: %(default)s)")
    f.add_argument("--delta", type=float, metavar="F", help="Huber delta for --loss huber_log (default 1e-3)")
    f.add_argument("--polish", type=int_at_least(1), default=_FIT_DEFAULTS["polish"], metavar="K",
                   help="best starts polished per task (default: %(default)s)")
    f.add_argument("--max-iter", type=int_at_least(0), default=_FIT_DEFAULTS["max_iter"], metavar="N",
                   help="Newton iterations per start (default: %(default)s)")
    f.add_argument("--on-invalid", choices=("raise", "report"), default=_FIT_DEFAULTS["on_invalid"],
                   help="on a task that cannot be fitted: fail, or fit the rest and report it (default: %(default)s)")
    f.add_argument("--duplicates", choices=("error", "mean"), default="error",
                   help="repeated (task, x) rows: reject or average (default: %(default)s)")
    f.add_argument("--out", required=True, metavar="FITS", help="output directory of the fit artifact")

    p = add("predict", cmd_predict, "forecast a saved fit at new x values",
            epilog='examples: --at "N=7e10,1e11;D=1.4e12,2e12"  |  --at 1e6,1e7  |  --at points.csv')
    p.add_argument("fits", metavar="FITS", help="directory written by `jaxscale fit --out`")
    p.add_argument("--at", required=True, metavar="SPEC",
                   help="a CSV with the x columns (plus all task columns to predict per row, else every task "
                        "is predicted at every row), or inline NAME=v1,v2;NAME=... (zipped), or v1,v2 for one input")
    p.add_argument("--out", metavar="CSV", help="write the forecast table here instead of printing it")

    add("laws", cmd_laws, "list the available laws with their parameters, inputs and formulas")

    for name, help in DELEGATED_HELP.items():  # parsed by their own modules (see `main`)
        sub.add_parser(name, help=help, add_help=False)

    d = add("demo", cmd_demo, "run the synthetic end-to-end demo (writes report.md and fits.png)")
    d.add_argument("--out", default="jaxscale_demo", metavar="DIR", help="output directory (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, metavar="N", help="noise seed (default: %(default)s)")
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (captured)
        pass


DELEGATED_HELP = {
    "allocate": "compute-optimal N, D for a FLOP budget from a Chinchilla fit (see `jaxscale allocate --help`)",
    "frontier": "capability boundaries: high-quantile score vs log10 FLOPs (see `jaxscale frontier --help`)",
    "neuneu": "NeuNeu: train, evaluate and apply the neural accuracy forecaster (see `jaxscale neuneu --help`)",
}


def _delegated(name: str) -> Callable[[Sequence[str]], int]:
    if name == "neuneu":
        from jaxscale.neuneu import cli as neuneu_cli

        return neuneu_cli.main
    from jaxscale.prescribe import cli as prescribe_cli

    return {"allocate": prescribe_cli.allocate_main, "frontier": prescribe_cli.frontier_main}[name]


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: its exit code; bad input (`USER_ERRORS`) prints ``error: ...`` and gives 2,
    anything else gives 1 (``--traceback`` prints the traceback); a closed pipe ends quietly."""
    try:
        return func(args)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        _silence_stdout()
        return 0
    except USER_ERRORS as e:
        if args.traceback:
            traceback.print_exc()
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the last resort: report, exit 1
        if args.traceback:
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --traceback for details)", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED_HELP:
        return _delegated(argv[0])(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return run_command(args.func, args)

if __name__ == "__main__":
    sys.exit(main())
