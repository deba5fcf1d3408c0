"""Compute-optimal allocation: N_opt(C), D_opt(C) and the loss there, with intervals.

For Chinchilla ``L(N, D) = E + A / N^alpha + B / D^beta`` and a budget ``C = 6 N D``
(Hoffmann et al. 2022, Approach 3):

    N_opt = G (C/6)^(beta/(alpha+beta)),  D_opt = G^-1 (C/6)^(alpha/(alpha+beta)),
    G = (alpha A / (beta B))^(1/(alpha+beta)).

For the over-training law ``L(C, M) = E + (a M^eta + b M^-eta) C^-eta`` (Gadre et al. 2024) with
M = D / N tokens per parameter, the loss-optimal multiplier is ``M* = (b / a)^(1/(2 eta))`` and
``N = sqrt(C / (6 M))``, ``D = M N``. Either law also gives the allocation at a chosen token multiplier
M (over-training).

Intervals come from parameter draws: a `jaxscale.BootstrapResult`, a `jaxscale.bayes.Posterior`, or
a samples table (task keys, ``replicate``, one column per parameter). Each draw gives its own
optimum; the table reports the point estimate (``prediction``, from the fit) and quantiles of the
draws (``q0.025``, ...).

Approach 2 (iso-FLOP profiles) works from data instead: within each band of nearly equal compute, a
parabola of loss against log N gives the best model size of that budget; a power law through those
minima gives N_opt ∝ C^a and D_opt ∝ C^b.

Example:
  >>> p = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
  >>> n, d, loss = chinchilla_optimum(**p, C=1e24)
  >>> f"{float(n):.3g} {float(d):.3g} {float(loss):.4f}"
  '9.59e+10 1.74e+12 1.9597'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale.forecast import quantile_column

__all__ = [
    "chinchilla_optimum", "chinchilla_at_multiplier", "overtraining_optimum", "overtraining_at_multiplier",
    "draws_of", "allocate", "IsoFlopResult", "iso_flop_profiles", "plot_iso_flop", "plot_allocation",
]

QUANTITIES = ("N", "D", "tokens_per_param", "loss")


# --------------------------------------------------------------------------- closed forms
def chinchilla_optimum(E: Any, A: Any, B: Any, alpha: Any, beta: Any, C: Any
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N_opt, D_opt, loss at the optimum) for budget(s) C = 6 N D; NaN where alpha or beta <= 0.

    All arguments broadcast (e.g. parameter draws ``[S, 1]`` against budgets ``[Q]``).
    """
    E, A, B, alpha, beta, C = (np.asarray(v, dtype=float) for v in (E, A, B, alpha, beta, C))
    ok = (alpha > 0) & (beta > 0) & (A > 0) & (B > 0)
    s = np.where(ok, alpha + beta, 1.0)
    with np.errstate(all="ignore"):
        g = (np.where(ok, alpha * A, 1.0) / np.where(ok, beta * B, 1.0)) ** (1.0 / s)
        n = g * (C / 6.0) ** (np.where(ok, beta, 0.5) / s)
        d = (C / 6.0) / n
        loss = E + A / n ** alpha + B / d ** beta
    return tuple(np.where(ok, v, np.nan) for v in (n, d, loss))  # type: ignore[return-value]


def chinchilla_at_multiplier(E: Any, A: Any, B: Any, alpha: Any, beta: Any, C: Any, M: Any
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) of the Chinchilla law at budget C with D = M N (M tokens per parameter)."""
    E, A, B, alpha, beta, C, M = (np.asarray(v, dtype=float) for v in (E, A, B, alpha, beta, C, M))
    n = np.sqrt(C / (6.0 * M))
    d = M * n
    with np.errstate(all="ignore"):
        return n, d, E + A / n ** alpha + B / d ** beta


def overtraining_optimum(E: Any, a: Any, b: Any, eta: Any, C: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N_opt, D_opt, loss) of the over-training law at budget C: M* = (b / a)^(1 / (2 eta))."""
    E, a, b, eta, C = (np.asarray(v, dtype=float) for v in (E, a, b, eta, C))
    with np.errstate(all="ignore"):
        m = (b / a) ** (1.0 / (2.0 * eta))
    return overtraining_at_multiplier(E, a, b, eta, C, m)


def overtraining_at_multiplier(E: Any, a: Any, b: Any, eta: Any, C: Any, M: Any
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) of the over-training law at budget C and multiplier M = D / N."""
    E, a, b, eta, C, M = (np.asarray(v, dtype=float) for v in (E, a, b, eta, C, M))
    n = np.sqrt(C / (6.0 * M))
    with np.errstate(all="ignore"):
        loss = E + (a * M ** eta + b * M ** (-eta)) * C ** (-eta)
    return n, M * n, loss


_FORMS = {
    "chinchilla": (("E", "A", "B", "alpha", "beta"), chinchilla_optimum, chinchilla_at_multiplier),
    "overtraining": (("E", "a", "b", "eta"), overtraining_optimum, overtraining_at_multiplier),
}


def _solve(law: str, params: Mapping[str, np.ndarray], C: np.ndarray, M: np.ndarray | None):
    names, opt, at_m = _FORMS[law]
    args = [params[n] for n in names]
    return opt(*args, C) if M is None else at_m(*args, C, M)


# --------------------------------------------------------------------------- draws
def draws_of(source: Any, law: str | None = None) -> tuple[pd.DataFrame, str, dict[str, np.ndarray],
                                                             dict[str, np.ndarray] | None]:
    """Normalise a parameter source into (task keys, law name, point params ``{name: [T]}``,
    draws ``{name: [T, S]}`` or None).

    `source` is a `FitResult`, a `BootstrapResult`, a `bayes.Posterior`, a samples DataFrame (task
    key columns, optional ``replicate``, one column per parameter; give `law`), or a mapping of
    parameter values (one task; give `law` unless it is evident from the names).
    """
    from jaxscale.bootstrap import BootstrapResult
    from jaxscale.result import FitResult

    def law_name(obj_law) -> str:
        return obj_law.spec[0] if obj_law.spec else obj_law.name

    if isinstance(source, BootstrapResult):
        fit = source.fit
        name = law_name(fit.law)
        arr = source.param_array
        point = {n: fit.param_array[:, i] for i, n in enumerate(fit.law.param_names)}
        draws = {n: arr[..., i] for i, n in enumerate(fit.law.param_names)}
        return fit.data.keys.copy(), name, point, draws
    if isinstance(source, FitResult):
        name = law_name(source.law)
        return source.data.keys.copy(), name, {n: source.param_array[:, i]
                                                 for i, n in enumerate(source.law.param_names)}, None
    if hasattr(source, "draws") and hasattr(source, "ls") and hasattr(source, "law"):  # bayes.Posterior
        name = law_name(source.law)
        arr = np.asarray(source.samples)
        point = {n: source.ls.param_array[:, i] for i, n in enumerate(source.law.param_names)}
        return source.data.keys.copy(), name, point, {n: arr[..., i] for i, n in enumerate(source.law.param_names)}
    if isinstance(source, pd.DataFrame):
        name = law or _guess_law(source.columns)
        names = _FORMS[name][0]
        keys = [c for c in source.columns if c not in (*names, "replicate")]
        groups = source.groupby(keys, sort=False) if keys else [((), source)]
        rows, draws = [], {n: [] for n in names}
        for key, g in groups:
            rows.append(dict(zip(keys, key if isinstance(key, tuple) else (key,))))
            for n in names:
                draws[n].append(g[n].to_numpy(dtype=float))
        s = max(len(v) for v in draws[names[0]])
        arr = {n: np.stack([np.pad(v, (0, s - len(v)), constant_values=np.nan) for v in draws[n]]) for n in names}
        point = {n: np.nanmedian(arr[n], axis=1) for n in names}
        return pd.DataFrame(rows) if keys else pd.DataFrame({"task": ["all"]}), name, point, arr
    if isinstance(source, Mapping):
        name = law or _guess_law(source.keys())
        point = {n: np.atleast_1d(np.asarray(source[n], dtype=float)) for n in _FORMS[name][0]}
        return pd.DataFrame({"task": [f"{i}" for i in range(len(point[_FORMS[name][0][0]]))]}), name, point, None
    raise TypeError(f"cannot read parameters from a {type(source).__name__}")


def _guess_law(names: Any) -> str:
    names = set(names)
    for law, (params, _, _) in _FORMS.items():
        if set(params) <= names:
            return law
    raise ValueError(f"cannot tell the law from the parameter names {sorted(names)}; pass law=...")


# --------------------------------------------------------------------------- allocation table
def allocate(source: Any, C: float | Sequence[float], *, M: float | Sequence[float] | None = None,
               levels: Sequence[float] = (0.025, 0.975), law: str | None = None) -> pd.DataFrame:
    """Compute-optimal (or multiplier-M) allocation of every task at budgets `C`, with intervals.

    Args:
      source: a `FitResult` / `BootstrapResult` / `bayes.Posterior` of ``chinchilla`` or
        ``overtraining``, a samples DataFrame, or a parameter mapping (see `draws_of`).
      C: training FLOPs budget(s).
      M: tokens per parameter; None for the compute-optimal allocation.
      levels: quantile levels of the draws (ignored without draws).
      law: ``"chinchilla"`` or ``"overtraining"`` when `source` does not say.

    Returns:
      A long table: task keys, ``C`` (and ``M``), ``quantity`` (``N``, ``D``, ``tokens_per_param``,
      ``loss``), ``prediction`` (from the point fit) and ``q{level}`` columns (from the draws), plus
      ``n_draws`` (finite draws used).

    Example:
      >>> tab = allocate({"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}, 1e24)
      >>> tab.set_index("quantity")["prediction"].round(3).to_dict()["tokens_per_param"]
      18.137
    """
    keys, name, point, draws = draws_of(source, law)
    C = np.atleast_1d(np.asarray(C, dtype=float))
    Mv = None
    if M is not None:  # budgets and multipliers are zipped (one broadcasts against the other)
        C, Mv = (np.array(a) for a in np.broadcast_arrays(C, np.atleast_1d(np.asarray(M, dtype=float))))
    n, d, loss = _solve(name, {k: v[:, None] for k, v in point.items()}, C[None, :],
                        None if Mv is None else Mv[None, :])
    vals = {"N": n, "D": d, "tokens_per_param": d / n, "loss": loss}
    qs: dict[str, dict[float, np.ndarray]] = {}
    nd = None
    if draws is not None:
        dn, dd, dl = _solve(name, {k: v[:, :, None] for k, v in draws.items()}, C[None, None, :],
                            None if Mv is None else Mv[None, None, :])
        dvals = {"N": dn, "D": dd, "tokens_per_param": dd / dn, "loss": dl}
        nd = np.isfinite(dl).sum(1)
        with np.errstate(all="ignore"):
            qs = {k: {q: np.nanquantile(np.where(np.isfinite(v), v, np.nan), q, axis=1) for q in levels}
                  for k, v in dvals.items()}
    rows = []
    for t in range(len(keys)):
        base = keys.iloc[t].to_dict()
        for j, c in enumerate(C):
            for qty in QUANTITIES:
                row = {**base, "C": c, **({} if Mv is None else {"M": Mv[j]}), "quantity": qty,
                       "prediction": float(vals[qty][t, j])}
                for q in (levels if qs else ()):
                    row[quantile_column(q)] = float(qs[qty][q][t, j])
                if nd is not None:
                    row["n_draws"] = int(nd[t, j])
                rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Approach 2
@dataclasses.dataclass(frozen=True)
class IsoFlopResult:
    """Iso-FLOP profiles (Approach 2).

    Attributes:
      points: the input points with their ``band`` (-1: unused).
      profiles: one row per band: ``C`` (geometric mean of the band), ``n_points``, the parabola
        ``loss = c0 + c1 x + c2 x^2`` in x = log10 N, ``N_opt``, ``D_opt = C / (6 N_opt)``,
        ``loss_opt`` and ``ok`` (a convex parabola whose minimum lies inside the band's N range).
      exponents: the power laws through the usable minima: ``a`` (N_opt ∝ C^a), ``b``
        (D_opt ∝ C^b) and their prefactors ``N0``, ``D0`` (at C = 1).
    """

    points: pd.DataFrame
    profiles: pd.DataFrame
    exponents: dict[str, float]

    def predict(self, C: float | Sequence[float]) -> pd.DataFrame:
        """N_opt and D_opt extrapolated to budgets C with the fitted power laws."""
        C = np.atleast_1d(np.asarray(C, dtype=float))
        e = self.exponents
        return pd.DataFrame({"C": C, "N_opt": e["N0"] * C ** e["a"], "D_opt": e["D0"] * C ** e["b"]})


def iso_flop_profiles(frame: pd.DataFrame, *, N: str = "N", C: str = "C", loss: str = "loss",
                      band: str | None = None, n_bands: int = 8, width: float | None = None,
                      min_points: int = 5) -> IsoFlopResult:
    """Approach 2 of Hoffmann et al.: the loss-minimising N within bands of (nearly) equal compute.

    Args:
      frame: one row per trained model with N (parameters), C (FLOPs) and the final loss.
      band: a column naming each point's iso-FLOP group; else points are grouped by compute:
        `width` (in decades) around equally spaced centres, or `n_bands` equal-width bins of log10 C.
      min_points: smallest band that gets a parabola.

    Example:
      >>> rows = [(k * (c / 6) ** 0.5, c) for c in (1e18, 1e19, 1e20) for k in np.geomspace(0.3, 3, 9)]
      >>> df = pd.DataFrame(rows, columns=["N", "C"])
      >>> df["loss"] = 1.7 + 400 / df.N ** 0.34 + 400 / (df.C / 6 / df.N) ** 0.34
      >>> res = iso_flop_profiles(df, band="C")
      >>> round(res.exponents["a"], 2)
      0.5
    """
    df = frame.copy()
    ok = (df[N] > 0) & (df[C] > 0) & np.isfinite(df[loss])
    lc = np.log10(df[C].where(ok))
    if band is not None:
        codes, _ = pd.factorize(df[band])
        df["band"] = np.where(ok, codes, -1)
    elif width is not None:
        centres = np.arange(np.floor(lc.min() / width) * width, lc.max() + width, width)
        idx = np.argmin(np.abs(lc.to_numpy()[:, None] - centres[None, :]), axis=1)
        df["band"] = np.where(ok, idx, -1)
    else:
        edges = np.linspace(lc.min(), lc.max() + 1e-9, n_bands + 1)
        df["band"] = np.where(ok, np.clip(np.searchsorted(edges, lc, side="right") - 1, 0, n_bands - 1), -1)
    rows = []
    for b, g in df[df["band"] >= 0].groupby("band"):
        x = np.log10(g[N].to_numpy(dtype=float))
        y = g[loss].to_numpy(dtype=float)
        c_mean = float(10 ** np.mean(np.log10(g[C].to_numpy(dtype=float))))
        row = {"band": int(b), "C": c_mean, "n_points": len(g), "c0": np.nan, "c1": np.nan, "c2": np.nan,
               "N_opt": np.nan, "D_opt": np.nan, "loss_opt": np.nan, "ok": False}
        if len(g) >= min_points and np.ptp(x) > 0:
            c2, c1, c0 = np.polyfit(x, y, 2)
            row.update(c0=c0, c1=c1, c2=c2)
            if c2 > 0:
                xo = -c1 / (2 * c2)
                row.update(N_opt=10 ** xo, D_opt=c_mean / (6 * 10 ** xo), loss_opt=c0 - c1 * c1 / (4 * c2),
                           ok=bool(x.min() <= xo <= x.max()))
        rows.append(row)
    prof = pd.DataFrame(rows)
    use = prof[prof["ok"]] if len(prof) else prof
    exps = {"a": np.nan, "b": np.nan, "N0": np.nan, "D0": np.nan, "n_bands_used": int(len(use))}
    if len(use) >= 2:
        lcx = np.log10(use["C"].to_numpy())
        a, n0 = np.polyfit(lcx, np.log10(use["N_opt"].to_numpy()), 1)
        b_, d0 = np.polyfit(lcx, np.log10(use["D_opt"].to_numpy()), 1)
        exps.update(a=float(a), b=float(b_), N0=float(10 ** n0), D0=float(10 ** d0))
    return IsoFlopResult(df, prof, exps)


def plot_iso_flop(res: IsoFlopResult, *, N: str = "N", loss: str = "loss", ax: Any = None):
    """Loss against N per band with each band's parabola and minimum; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    cmap = plt.get_cmap("viridis")
    prof = res.profiles
    for i, r in enumerate(prof.itertuples()):
        g = res.points[res.points["band"] == r.band]
        col = cmap(i / max(len(prof) - 1, 1))
        ax.scatter(g[N], g[loss], s=10, color=col, label=f"C ~ {r.C:.1e}")
        if np.isfinite(r.c2):
            x = np.linspace(np.log10(g[N]).min(), np.log10(g[N]).max(), 50)
            ax.plot(10 ** x, r.c0 + r.c1 * x + r.c2 * x * x, color=col, lw=1)
        if r.ok:
            ax.plot(r.N_opt, r.loss_opt, "k*", ms=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel(loss)
    ax.set_title("iso-FLOP profiles (Approach 2)")
    ax.legend(fontsize=7)
    return ax


def plot_allocation(table: pd.DataFrame, *, quantity: str = "N", ax: Any = None):
    """N_opt (or D_opt, loss...) against C from an `allocate` table, with its interval band."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 4))[1]
    t = table[table["quantity"] == quantity].sort_values("C")
    qcols = [c for c in t.columns if isinstance(c, str) and c.startswith("q") and c[1:2].isdigit()]
    ax.plot(t["C"], t["prediction"], "-o", ms=3, label=f"{quantity} (fit)")
    if len(qcols) >= 2:
        ax.fill_between(t["C"], t[qcols[0]], t[qcols[-1]], alpha=0.3, label=f"{qcols[0]}..{qcols[-1]}")
    ax.set_xscale("log")
    ax.set_yscale("log" if quantity != "loss" else "linear")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel(quantity)
    ax.legend(fontsize=8)
    return ax
