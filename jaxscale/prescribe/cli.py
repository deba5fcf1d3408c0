"""The ``jaxscale allocate`` and ``jaxscale frontier`` subcommands.

    jaxscale allocate chinchilla --C 1e22,1e24 --bootstrap 400       # Besiroglu et al. data
    jaxscale allocate fits/ --C 1e24 --M 20                           # a saved chinchilla fit
    jaxscale allocate runs.csv --x N,D --y loss --C 1e24 --iso-flop   # fit a table, + Approach 2
    jaxscale frontier proteus --tau 0.98 --at 23,24,25                # Proteus-2k boundaries
    jaxscale frontier scores.csv --x log10_flops --y score --by task --split-date 2025-01-01

`allocate_main(argv)` and `frontier_main(argv)` return the exit code: 0 on success, 2 on bad input
(printed as ``error: ...``), 1 on an unexpected error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np
import pandas as pd

import jaxscale
from jaxscale import datasets
from jaxscale.cli import comma_names, read_table, run_command

__all__ = ["allocate_main", "frontier_main", "allocate_parser", "frontier_parser"]


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def _run(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int], argv: Sequence[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return run_command(func, args)


def _show(frame: pd.DataFrame) -> None:
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.6g}"))


# --------------------------------------------------------------------------- allocate
def allocate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxscale allocate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="compute-optimal N_opt(C), D_opt(C) and loss from a Chinchilla or over-training fit",
        epilog="examples:\n  jaxscale allocate chinchilla --C 1e22,1e24 --bootstrap 400\n"
               "  jaxscale allocate fits/ --C 1e24 --M 20\n"
               "  jaxscale allocate runs.csv --x N,D --y loss --C 1e24 --iso-flop")
    p.add_argument("source", metavar="SOURCE",
                   help="a saved fit directory (`jaxscale fit --out`), a table to fit, or 'chinchilla' "
                        "(the Besiroglu et al. data)")
    p.add_argument("--C", required=True, type=_floats, metavar="F,F", help="training FLOPs budgets")
    p.add_argument("--M", type=_floats, metavar="F[,F]", help="tokens per parameter (default: compute-optimal)")
    p.add_argument("--law", choices=("chinchilla", "overtraining"), default="chinchilla",
                   help="law to fit a table with (default: %(default)s)")
    p.add_argument("--x", type=comma_names, default=None, metavar="COLS", help="x columns of a table (default N,D / C,M)")
    p.add_argument("--y", default="loss", metavar="COL", help="loss column of a table (default: %(default)s)")
    p.add_argument("--loss", default="huber_log", choices=("huber_log", "mse_log", "mse"),
                   help="fitting loss for a table (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap replicates for intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--levels", type=_floats, default=[0.025, 0.975], metavar="Q,Q",
                   help="interval quantile levels (default: 0.025,0.975)")
    p.add_argument("--iso-flop", action="store_true",
                   help="also print iso-FLOP profiles (Approach 2) of the table (columns N, C and --y)")
    p.add_argument("--n-bands", type=int, default=8, help="compute bands for --iso-flop (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="data directory for 'chinchilla' (default: $JAXSCALE_DATA)")
    p.add_argument("--out", metavar="CSV", help="write the allocation table here")
    p.add_argument("--plot", metavar="PNG", help="plot N_opt(C) (and the iso-FLOP profiles) here")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    return p


def _allocate(args: argparse.Namespace) -> int:
    from jaxscale.prescribe.allocation import allocate, iso_flop_profiles, plot_allocation, plot_iso_flop

    table = None
    src = Path(args.source)
    if args.source == "chinchilla":
        table = datasets.load_chinchilla(data_dir=args.data_dir)
        x = ["N", "D"]
        law = "chinchilla"
    elif src.is_dir():
        fit = jaxscale.load(src)
        law = fit.law.spec[0] if fit.law.spec else fit.law.name
        if law not in ("chinchilla", "overtraining"):
            raise ValueError(f"{src} holds a fit of {law!r}; allocation needs 'chinchilla' or 'overtraining'")
    else:
        table = read_table(src)
        law = args.law
        x = args.x or (["N", "D"] if law == "chinchilla" else ["C", "M"])
        missing = [c for c in [*x, args.y] if c not in table.columns]
        if missing:
            raise KeyError(f"column(s) {missing} not in {str(src)!r}; it has {list(table.columns)}")
    if table is not None:
        fit = jaxscale.fit(table, law, x=x, y=args.y, loss=args.loss)
    source = fit
    if args.bootstrap:
        if args.bootstrap < 2:
            raise ValueError("--bootstrap needs at least 2 replicates")
        source = jaxscale.bootstrap(fit.data, fit.law, n=args.bootstrap, key=jax.random.PRNGKey(args.seed), fit=fit,
                                    loss=fit.loss)
    tab = allocate(source, args.C, M=args.M, levels=args.levels if args.bootstrap else ())
    print(f"{law} fit: " + ", ".join(f"{n} {v:.6g}" for n, v in zip(fit.law.param_names, fit.param_array[0])))
    wide = tab.pivot_table(index=[c for c in tab.columns if c in ("C", "M")], columns="quantity",
                           values="prediction", sort=False).reset_index()
    _show(tab if args.bootstrap else wide)
    iso = None
    if args.iso_flop:
        if table is None or not {"N", "C"} <= set(table.columns):
            raise ValueError("--iso-flop needs a table with columns N and C")
        iso = iso_flop_profiles(table, loss=args.y, n_bands=args.n_bands)
        print("\niso-FLOP profiles (Approach 2):")
        _show(iso.profiles[["C", "n_points", "N_opt", "D_opt", "loss_opt", "ok"]])
        e = iso.exponents
        print(f"N_opt ~ C^{e['a']:.3f}, D_opt ~ C^{e['b']:.3f} ({e['n_bands_used']} bands)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tab.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2 if iso is not None else 1, figsize=(10 if iso is not None else 5, 4))
        axes = np.atleast_1d(axes)
        plot_allocation(tab, ax=axes[0])
        if iso is not None:
            plot_iso_flop(iso, loss=args.y, ax=axes[1])
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


def allocate_main(argv: Sequence[str] | None = None) -> int:
    """``jaxscale allocate``: compute-optimal allocation with optional bootstrap intervals."""
    return _run(allocate_parser(), _allocate, argv)


# --------------------------------------------------------------------------- frontier
def frontier_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxscale frontier", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="capability boundaries: the tau-quantile of a score as a sigmoid of log10 FLOPs",
        epilog="examples:\n  jaxscale frontier proteus --tau 0.98 --at 23,24,25\n"
               "  jaxscale frontier scores.csv --x log10_flops --y score --by task --split-date 2025-01-01")
    p.add_argument("source", metavar="SOURCE", help="a long table (one row per model and task) or 'proteus'")
    p.add_argument("--x", default="log10_flops", metavar="COL", help="log10 compute column (default: %(default)s)")
    p.add_argument("--flops", default=None, metavar="COL", help="a FLOPs column to take log10 of instead of --x")
    p.add_argument("--y", default="score", metavar="COL", help="score column (default: %(default)s)")
    p.add_argument("--by", type=comma_names, default=["task"], metavar="COLS", help="task column(s) (default: task)")
    p.add_argument("--tasks", type=comma_names, default=None, metavar="NAMES",
                   help="only these values of the first --by column")
    p.add_argument("--tau", type=_floats, default=[0.98], metavar="Q[,Q]", help="quantile level(s) (default: 0.98)")
    p.add_argument("--kappa", type=float, default=50.0, help="final pinball smoothing (default: %(default)s)")
    p.add_argument("--lambda-b", type=float, default=1e-3, help="ridge on the slope (default: %(default)s)")
    p.add_argument("--bins", type=int, default=10, help="equal-mass bins of the coverage error (default: %(default)s)")
    p.add_argument("--min-bin", type=int, default=30, help="smallest bin (default: %(default)s)")
    p.add_argument("--split-date", default=None, metavar="DATE",
                   help="fit on rows dated before DATE, score coverage on the rest")
    p.add_argument("--date", default="date", metavar="COL", help="date column for --split-date (default: %(default)s)")
    p.add_argument("--at", type=_floats, default=None, metavar="Z,Z",
                   help="log10 FLOPs at which to report the boundary")
    p.add_argument("--data-dir", default=None, help="data directory for 'proteus' (default: $JAXSCALE_DATA)")
    p.add_argument("--out", metavar="DIR", help="write params.csv, coverage.csv (and forecast.csv) here")
    p.add_argument("--plot", metavar="PNG", help="plot the data and boundaries here")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    return p


def _frontier(args: argparse.Namespace) -> int:
    from jaxscale.prescribe.boundary import fit_lanes, lanes_from_frame
    from jaxscale.prescribe.temporal import assign_periods

    if args.source == "proteus":
        frame = datasets.load_proteus(data_dir=args.data_dir)
    else:
        frame = read_table(args.source)
    x = args.x
    if args.flops:
        if args.flops not in frame.columns:
            raise KeyError(f"column {args.flops!r} not in the table; it has {list(frame.columns)}")
        frame = frame.assign(log10_flops=np.log10(frame[args.flops].astype(float)))
        x = "log10_flops"
    missing = [c for c in [x, args.y, *args.by] if c not in frame.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the table; it has {list(frame.columns)}")
    if args.tasks:
        frame = frame[frame[args.by[0]].astype(str).isin(args.tasks)]
        if frame.empty:
            raise ValueError(f"no rows with {args.by[0]} in {args.tasks}")
    if not all(0 < t < 1 for t in args.tau):
        raise ValueError(f"--tau levels must lie in (0, 1), got {args.tau}")
    frame = frame.reset_index(drop=True)
    lanes = lanes_from_frame(frame, x=x, y=args.y, by=args.by, taus=args.tau)
    w_test = None
    if args.split_date:
        if args.date not in frame.columns:
            raise KeyError(f"column {args.date!r} (for --split-date) not in the table")
        after = assign_periods(frame[args.date], [args.split_date]) == 1
        row_after = np.where(lanes.row >= 0, after[np.maximum(lanes.row, 0)], False)
        w_test = np.where(row_after, lanes.w, 0.0)
        lanes = lanes.with_weights(np.where(row_after, 0.0, lanes.w))
    fit = fit_lanes(lanes, kappa=args.kappa, lambda_b=args.lambda_b)
    params = fit.params
    cov = fit.coverage(n_bins=args.bins, min_bin=args.min_bin)
    params["coverage"] = cov["coverage"].to_numpy()
    params["coverage_error"] = cov["coverage_error"].to_numpy()
    if w_test is not None:
        oos = fit.coverage(w_test, n_bins=args.bins, min_bin=args.min_bin)
        params["n_test"] = oos["n"].to_numpy()
        params["oos_coverage"] = oos["coverage"].to_numpy()
        params["oos_error"] = oos["coverage_error"].to_numpy()
    print(f"sigmoid boundaries q(z) = y0 + L sigmoid(b (z - z*)), kappa {args.kappa:g}, lambda_b {args.lambda_b:g}; "
          f"coverage error over {args.bins} equal-mass bins"
          + (f"; fitted before {args.split_date}" if w_test is not None else ""))
    _show(params.drop(columns=["status"]) if (params["status"] == "converged").all() else params)
    forecast = fit.forecast(args.at, x=x) if args.at else None
    if forecast is not None:
        print()
        _show(forecast)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        params.to_csv(out / "params.csv", index=False)
        fit.coverage(n_bins=args.bins, min_bin=args.min_bin, by_bin=True).to_csv(out / "coverage.csv", index=False)
        if forecast is not None:
            forecast.to_csv(out / "forecast.csv", index=False)
        print(f"wrote {out} (params.csv, coverage.csv{', forecast.csv' if forecast is not None else ''})")
    if args.plot:
        _plot_frontier(fit, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot_frontier(fit, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = fit.lanes.keys
    group = [c for c in keys.columns if c != "tau"]
    gids = keys.groupby(group, sort=False).ngroup().to_numpy() if group else np.zeros(len(keys), int)
    n = int(gids.max()) + 1
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for g in range(n):
        ax = axes[g // cols][g % cols]
        lanes_g = np.nonzero(gids == g)[0]
        i0 = lanes_g[0]
        m = fit.lanes.w[i0] > 0
        ax.scatter(fit.lanes.z[i0][m], fit.lanes.y[i0][m], s=3, alpha=0.3, color="0.4")
        zz = np.linspace(fit.lanes.z[i0][m].min(), fit.lanes.z[i0][m].max(), 200)
        for i in lanes_g:
            ax.plot(zz, fit.predict(zz)[i], label=f"tau {fit.lanes.tau[i]:g}")
        ax.set_title(", ".join(str(keys[c].iloc[i0]) for c in group))
        ax.set_xlabel("log10 FLOPs")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def frontier_main(argv: Sequence[str] | None = None) -> int:
    """``jaxscale frontier``: fit capability boundaries and report their coverage."""
    return _run(frontier_parser(), _frontier, argv)
