"""`jaxscale.evaluate`: backtest scaling-law methods on the same held-out points.

Fit on small scales, predict large ones, score every method on the same points:

- splits (`LastPoints`, `HoldoutRuns`, `RollingOrigin`, `Given`) say what a method may see;
- methods (`LawMethod` wrapping `jaxscale.fit`, `ByGroup`, `SelectLaw` for law selection without
  peeking, with an optional validation-weighted ensemble, `BootstrapMethod` and `BayesMethod` with
  forecast quantiles) map training data to a forecaster that returns the shared forecast table;
- `Calibrated` resets any method's quantiles from a rolling-origin backtest inside the training
  part, so its intervals hold their level on extrapolation (split-conformal);
- `backtest` returns a tidy table of scores (RMSLE, MAE, relative error, and coverage, width,
  pinball loss and CRPS for quantile forecasts); `leaderboard` ranks methods per group with win
  rates; `plots` draws per-task fits and the leaderboard;
- `reproductions` re-runs the published extrapolation results (``python -m benchmarks.accuracy``).

Example:
    >>> from jaxscale import evaluate, laws, datasets
    >>> df = datasets.load_revisiting()  # doctest: +SKIP
    >>> methods = [evaluate.LawMethod(laws.m4), evaluate.LawMethod(laws.bnsl(1))]
    >>> scores = evaluate.backtest(df, methods, evaluate.Given("split", "train"), x="x", y="y",
    ...                            by=["domain", "task"])  # doctest: +SKIP
    >>> evaluate.leaderboard(scores, group="domain")  # doctest: +SKIP
"""

from jaxscale.evaluate.harness import (
    ByGroup, Forecast, Forecaster, LawMethod, Method, backtest, forecast_folds, leaderboard, pad_points,
    score_folds, subset_tasks,
)
from jaxscale.evaluate.metrics import (
    coverage, crps, interval_width, mae, pinball, rel_error, rmsle, score, truncate, win_rates,
)
from jaxscale.evaluate.intervals import BayesMethod, BootstrapMethod, Calibrated, apply_scales, interval_scales
from jaxscale.evaluate.selection import SelectLaw, selection_report
from jaxscale.evaluate.splits import Fold, Given, HoldoutRuns, LastPoints, RollingOrigin
from jaxscale.evaluate import plots, reproductions  # noqa: E402

__all__ = [
    "ByGroup", "Forecast", "Forecaster", "LawMethod", "Method", "backtest", "forecast_folds", "leaderboard",
    "pad_points", "score_folds", "subset_tasks", "coverage", "crps", "interval_width", "mae", "pinball",
    "rel_error", "rmsle", "score", "truncate", "win_rates", "SelectLaw", "selection_report", "Fold", "Given",
    "HoldoutRuns", "LastPoints", "RollingOrigin", "plots", "reproductions", "BayesMethod", "BootstrapMethod", "Calibrated",
    "apply_scales", "interval_scales",
]
