"""Benchmark 4: the 92-curve extrapolation benchmark, every law on every curve.

jaxscale: M1 (`power_law`), M2, M3, M4 (eps_0 fixed per domain as the reference: 1.001 for BB,
1.0 otherwise) and BNSL with 0, 1 and 2 breaks, each fitted to all 92 curves' training points in
one batched call per law (two for M4, one per eps_0) with ``loss="mse_log"``; the total time of the 8 calls is
reported (first call with compilation, and steady state), with the mean extrapolation RMSLE per
law and domain.

Baseline: the BNSL reference procedure (Caballero et al.'s 1-break script): `scipy.optimize.brute`
over its 163,840-point grid of the log(1 + y) squared error, then one unbounded `curve_fit` from
the best grid point, timed on a few curves (default 2) and scaled to 92 curves x 7 laws (the
reference.md figure for M4 is similar, ~13.6 s per curve).

Target: all 7 laws on all 92 curves in under 30 s.

    python -m benchmarks.curves92
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from scipy.optimize import brute, curve_fit

import jaxscale
from jaxscale import datasets, laws

from benchmarks import _common as C

TITLE = "4. The 92-curve extrapolation benchmark: M1-M4 and BNSL 0/1/2 on every curve"
EPS0 = {"IC": 1.0, "NMT": 1.0, "LM": 1.0, "BB": 1.001}


LAWS = {"M1": laws.power_law, "M2": laws.saturating_power_law, "M3": laws.m3, "M4": laws.m4,
        "BNSL0": laws.bnsl(0), "BNSL1": laws.bnsl(1), "BNSL2": laws.bnsl(2)}


def fit_all(df) -> dict[tuple[str, str], jaxscale.FitResult]:
    """One batched call per law over all 92 curves (M4: one per eps_0 value, i.e. two)."""
    train = df[df.split == "train"]
    out = {}
    for name, law in LAWS.items():
        groups = {e: sorted(d for d in EPS0 if EPS0[d] == e) for e in set(EPS0.values())} if name == "M4" else {
            None: sorted(EPS0)}
        for eps0, domains in groups.items():
            part = train[train.domain.isin(domains)]
            res = jaxscale.fit(part, law if eps0 is None else law.fix(eps_0=eps0), x="x", y="y", by="task",
                               loss="mse_log", on_invalid="report")
            for d in domains:
                out[name, d] = res
    return out


def rmsle(df, fits) -> dict[tuple[str, str], np.ndarray]:
    """Per (law, domain): extrapolation RMSLE per curve (NaN where the fit failed)."""
    out = {}
    for (name, domain), res in fits.items():
        test = df[(df.domain == domain) & (df.split == "extrapolate")]
        pred = res.predict(test[["task", "x"]])
        err = (np.log(np.where(pred > 0, pred, np.nan)) - np.log(test.y.to_numpy())) ** 2
        per = test.assign(se=err).groupby("task", sort=True)["se"].mean()
        out[name, domain] = np.sqrt(per.to_numpy())
    return out


def _bnsl1_log1p(x, a, b, c0, c1, d1, f1):
    return np.log(a + b * x ** (-c0) * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1) + 1)


def _grid_objective(p, x, y):
    a, b, c0, c1, d1, f1 = p
    b, d1 = 1.25**b - 0.9, 1.25**d1 - 0.9
    yhat = a + b * x ** (-c0) * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)
    return np.mean((np.log(yhat + 1) - np.log(y + 1)) ** 2)


def reference_bnsl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The reference 1-break BNSL fit: brute grid, then one unbounded curve_fit on log(1 + y)."""
    grid = (slice(0.0, 1.0, 0.1), slice(0, 40, 2.5), slice(0, 1, 0.25), slice(0, 1, 0.25), slice(0, 40, 2.5),
            slice(0, 1, 0.25))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = brute(_grid_objective, grid, args=(x, y), finish=None)
        p[1], p[4] = 1.25 ** p[1] - 0.9, 1.25 ** p[4] - 0.9
        try:
            p, _ = curve_fit(_bnsl1_log1p, x, np.log(y + 1), p0=p, maxfev=100000)
        except RuntimeError:
            pass
    return p


def main(argv: list[str] | None = None) -> int:
    p = C.make_parser(__doc__.split("\n")[0], None, repeats=2, baseline_repeats=0, seed=False)
    p.add_argument("--baseline-curves", type=int, default=2, help="curves the reference BNSL fit runs on")
    args = p.parse_args(argv)
    df = datasets.load_revisiting(data_dir=C.data_dir())
    n_curves = df.task.nunique()

    tj = C.time_calls(lambda: fit_all(df), repeats=args.repeats)
    fits = tj.result
    scores = rmsle(df, fits)
    print(f"  jaxscale: first {tj.first_s:.1f} s, steady {tj.steady_s:.1f} s for 7 laws x {n_curves} curves",
          flush=True)

    curves = sorted(df.task.unique())[: args.baseline_curves]
    t0 = time.perf_counter()
    for c in curves:
        d = df[(df.task == c) & (df.split == "train")]
        reference_bnsl(d.x.to_numpy(), d.y.to_numpy())
    per_curve = (time.perf_counter() - t0) / len(curves)
    ref_total = per_curve * n_curves * 7
    print(f"  reference BNSL fit: {per_curve:.1f} s per curve", flush=True)

    domains = ["IC", "NMT", "LM", "BB"]
    rows = ["| law | " + " | ".join(f"{d} mean RMSLE" for d in domains) + " | curves > 0.2 or NaN | not ok |",
            "|---|" + "---:|" * (len(domains) + 2)]
    for name in LAWS:
        cells, blow, bad = [], 0, 0
        for d in domains:
            v = scores[name, d]
            cells.append(f"{np.nanmean(v):.4f}")
            blow += int(np.sum(~np.isfinite(v) | (v > 0.2)))
            bad += int((~fits[name, d].ok[fits[name, d].data.keys.task.str.startswith(d + "/")]).sum())
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {blow} | {bad} |")
    body = [
        f"Scale: full ({n_curves} curves, 7 laws). Command: `{C.command_line()}`.",
        "",
        f"Machine: {C.machine_line()}.",
        "",
        *C.timing_table([(f"jaxscale, 7 laws x {n_curves} curves (8 batched calls)", tj, n_curves * 7)]),
        "",
        f"Reference BNSL-1 procedure (brute 163,840-point grid + curve_fit), measured on {len(curves)} "
        f"curve(s): {per_curve:.1f} s per curve; scaled to 7 laws x {n_curves} curves: {ref_total / 60:.0f} min "
        f"({C.fmt_x(ref_total / tj.steady_s)} the jaxscale steady state, "
        f"{C.fmt_x(ref_total / tj.first_s)} its first call).",
        "",
        "Extrapolation RMSLE (log y) on the held-out points, mean over each domain's curves:",
        "",
        *rows,
        "",
        f"Target: under 30 s in total: steady state {C.check(tj.steady_s < 30)} ({tj.steady_s:.1f} s); first call "
        f"with the 8 compilations {C.check(tj.first_s < 30)} ({tj.first_s:.1f} s).",
    ]
    C.emit(args, TITLE, "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
