"""NeuNeu's evaluation protocol: generalisation splits, the backtest against the baselines, scores.

- Splits (`NeuNeuSplit`): which (run, task) trajectories NeuNeu trains on, which it is scored on,
  and which runs the logistic baseline is fitted on; `check` proves they never leak.
  `held_out_runs` (by model size, e.g. train on 190M-760M and test on 1.3B/3.2B, or by token
  budget xC), `held_out_tasks` (whole benchmarks held out: no split of a test benchmark, val or
  test, and no MMLU subject when MMLU is tested, is seen in training) and `held_out_family`
  (train on the ladder, test on the OLMo-2 7B/13B runs, a different family).
- `neuneu_backtest`: trains NeuNeu (`jaxscale.neuneu.train`) on the training trajectories,
  predicts every target of the test trajectories under the paper's protocol (first 20 % of each
  trajectory's checkpoints as context, every later checkpoint a target), runs the baselines on the
  same rows and returns one tidy forecast table (run, task, x, y, method, prediction, q0.1..q0.9)
  with the scores: MAE per (run, task) averaged over runs and tasks (the paper's metric), the 80 %
  central interval (q0.1-q0.9) coverage and width, via `jaxscale.evaluate.metrics`.
- `NeuNeuForecaster`: a trained model together with the feature normaliser and sampling settings
  it was trained with (save / load as one directory).
- `NeuNeuMethod`: an adapter that runs NeuNeu inside `jaxscale.evaluate.backtest`.

Example:
    >>> traj = Trajectories.from_olmo(data_dir="../shared/data")                    # doctest: +SKIP
    >>> res = neuneu_backtest(traj, held_out_runs(traj), train_config=TrainConfig(steps=400, batch_size=64))  # doctest: +SKIP
    >>> res.summary[["method", "mae", "coverage_80", "width_80"]]                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jaxscale.evaluate.harness import Forecast
from jaxscale.evaluate.metrics import score
from jaxscale.forecast import PREDICTION, quantile_column
from jaxscale.neuneu.baselines import context_law_baseline, last_value_baseline, logistic_baseline
from jaxscale.neuneu.batch import Batch
from jaxscale.neuneu.samples import (
    RESIDUAL_SHIFT, FeatureNormalizer, Trajectories, TrajectorySampler, evaluation_batch, olmo_task_group,
)

__all__ = [
    "NeuNeuSplit", "held_out_runs", "held_out_tasks", "held_out_family", "NeuNeuForecaster", "NeuNeuBacktest",
    "neuneu_backtest", "train_forecaster", "summarize", "NeuNeuMethod", "BASELINES", "METHOD_NAMES",
    "calibration_split", "calibrate_interval_scale",
]

#: Baseline name -> what it is (the ``method`` value in the tables).
BASELINES = {
    "logistic": "4-parameter logistic of log average validation loss, fitted per task on the training runs, "
                "applied to the true future loss (the paper's baseline)",
    "context_law": "best of M1/M2/M3 on error = 1 - acc vs tokens, fitted to each trajectory's context alone",
    "last_value": "last observed accuracy",
}
METHOD_NAMES = ("neuneu", *BASELINES)


# --------------------------------------------------------------------------- splits
@dataclasses.dataclass(frozen=True)
class NeuNeuSplit:
    """Which trajectories NeuNeu trains on and is scored on.

    NeuNeu trains on ``train_runs`` x ``train_tasks`` and is scored on ``test_runs`` x
    ``test_tasks``; the logistic baseline is fitted on ``baseline_runs`` x ``test_tasks``.

    Attributes:
        name: label (``"held-out runs (size)"``...).
        train_runs, train_tasks, test_runs, test_tasks, baseline_runs: sorted tuples of ids.
        held_out: what must be disjoint between training and test: ``"runs"``, ``"tasks"`` or both.
        task_groups: task -> benchmark (with held-out tasks, no test group is seen in training).
    """

    name: str
    train_runs: tuple[str, ...]
    train_tasks: tuple[str, ...]
    test_runs: tuple[str, ...]
    test_tasks: tuple[str, ...]
    baseline_runs: tuple[str, ...]
    held_out: tuple[str, ...] = ("runs",)
    task_groups: Mapping[str, str] | None = None

    def check(self) -> "NeuNeuSplit":
        """Raise ValueError if the split leaks: a held-out run or task (group) in NeuNeu's training
        data, a test run in the baseline's fit, or an empty part. Returns self.

        Example:
            >>> held_out_runs(traj).check()  # doctest: +SKIP
        """
        for part in ("train_runs", "train_tasks", "test_runs", "test_tasks", "baseline_runs"):
            if not getattr(self, part):
                raise ValueError(f"split {self.name!r}: {part} is empty")
        if "runs" in self.held_out and set(self.train_runs) & set(self.test_runs):
            raise ValueError(f"split {self.name!r} leaks runs: {sorted(set(self.train_runs) & set(self.test_runs))}")
        if "tasks" in self.held_out:
            groups = self.task_groups or {}
            train_g = {groups.get(t, t) for t in self.train_tasks}
            leak = sorted(t for t in self.test_tasks if groups.get(t, t) in train_g)
            if leak:
                raise ValueError(f"split {self.name!r} leaks tasks (or their benchmark): {leak}")
        if set(self.baseline_runs) & set(self.test_runs):
            raise ValueError(f"split {self.name!r}: the baseline would be fitted on test runs "
                             f"{sorted(set(self.baseline_runs) & set(self.test_runs))}")
        return self

    def parts(self, trajectories: Trajectories) -> tuple[Trajectories, Trajectories, Trajectories]:
        """(NeuNeu training, test, baseline training) trajectories."""
        self.check()
        return (trajectories.subset(runs=self.train_runs, tasks=self.train_tasks),
                trajectories.subset(runs=self.test_runs, tasks=self.test_tasks),
                trajectories.subset(runs=self.baseline_runs, tasks=self.test_tasks))

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v))
                for k, v in dataclasses.asdict(self).items()}


def _sorted(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted(map(str, values)))


def _olmo_sizes(traj: Trajectories) -> pd.Series:
    if "size" in traj.runs.columns:
        return traj.runs["size"].astype(str)
    return pd.Series([r.split("-")[0] for r in traj.runs.index], index=traj.runs.index)


def held_out_runs(trajectories: Trajectories, *, by: str = "size", test: Sequence[Any] | None = None,
                  runs: Sequence[str] | None = None) -> NeuNeuSplit:
    """Hold out whole runs: those whose ``by`` column (of ``trajectories.runs``) is in ``test``.

    Defaults: ``by="size"`` holds out 1.3B and 3.2B (train on 190M-760M); ``by="xC"`` holds out
    5 and 10 x Chinchilla tokens (train on 0.5-2 xC). ``runs`` limits the runs used (default all).
    Every task is used on both sides; the logistic baseline is fitted on the training runs.

    Example:
        >>> split = held_out_runs(traj, by="xC", test=[5.0, 10.0])  # doctest: +SKIP
    """
    table = trajectories.runs if runs is None else trajectories.runs.loc[list(runs)]
    if by == "size":
        values = _olmo_sizes(trajectories).loc[table.index]
        test = ("1.3B", "3.2B") if test is None else tuple(map(str, test))
    else:
        if by not in table.columns:
            raise KeyError(f"runs have no column {by!r}; they have {list(table.columns)}")
        values = table[by]
        if test is None:
            if by != "xC":
                raise ValueError(f"give test= values of {by!r}")
            test = (5.0, 10.0)
    held = values.isin(list(test))
    if not held.any() or held.all():
        raise ValueError(f"held-out {by} values {list(test)} leave no test or no training runs "
                         f"(values: {sorted(map(str, values.unique()))})")
    tasks = _sorted(trajectories.keys["task"].unique())
    train_runs = _sorted(values.index[~held])
    return NeuNeuSplit(name=f"held-out runs ({by} {', '.join(map(str, test))})", train_runs=train_runs,
                       train_tasks=tasks, test_runs=_sorted(values.index[held]), test_tasks=tasks,
                       baseline_runs=train_runs, held_out=("runs",)).check()


def held_out_tasks(trajectories: Trajectories, *, test_groups: Sequence[str] | None = None, n_test: int = 3,
                   seed: int = 0, test_runs: Sequence[str] | None = None, group_of=olmo_task_group) -> NeuNeuSplit:
    """Hold out whole benchmarks: NeuNeu never sees any split of a test benchmark.

    Tasks are grouped by ``group_of`` (default `olmo_task_group`: ``arc_easy_val``/``arc_easy_test``
    -> ``arc_easy``, every MMLU subject -> ``mmlu``). ``test_groups`` (default: ``n_test`` groups
    drawn with ``seed``) are held out. NeuNeu trains on the other tasks of *every* run (tasks are
    the held-out factor). Scores are on ``test_runs`` (default: 1.3B and 3.2B runs), and the
    logistic baseline is fitted per test task on the remaining runs, so it never sees a test target.

    Example:
        >>> split = held_out_tasks(traj, test_groups=["hellaswag", "arc_challenge", "piqa"])  # doctest: +SKIP
    """
    tasks = sorted(trajectories.keys["task"].unique())
    groups = {t: group_of(t) for t in tasks}
    names = sorted(set(groups.values()))
    if test_groups is None:
        rng = np.random.default_rng(seed)
        test_groups = sorted(rng.choice(names, size=min(n_test, len(names) - 1), replace=False).tolist())
    unknown = sorted(set(test_groups) - set(names))
    if unknown:
        raise ValueError(f"unknown task group(s) {unknown}; groups: {names}")
    if test_runs is None:
        sizes = _olmo_sizes(trajectories)
        test_runs = sizes.index[sizes.isin(["1.3B", "3.2B"])].tolist()
    all_runs = _sorted(trajectories.runs.index)
    baseline_runs = tuple(r for r in all_runs if r not in set(test_runs))
    return NeuNeuSplit(
        name=f"held-out tasks ({', '.join(test_groups)})", train_runs=all_runs,
        train_tasks=tuple(t for t in tasks if groups[t] not in test_groups), test_runs=_sorted(test_runs),
        test_tasks=tuple(t for t in tasks if groups[t] in test_groups), baseline_runs=baseline_runs,
        held_out=("tasks",), task_groups=groups).check()


def held_out_family(trajectories: Trajectories, *, column: str = "family", test: str = "olmo2") -> NeuNeuSplit:
    """Train on one model family, test on another: by default the OLMo ladder vs the OLMo-2 7B/13B
    runs (load them with ``Trajectories.from_olmo(runs=[*OLMO_LADDER_RUNS, *OLMO2_RUNS])``).

    Example:
        >>> split = held_out_family(traj)  # doctest: +SKIP
    """
    if column not in trajectories.runs.columns:
        raise KeyError(f"runs have no column {column!r}")
    fam = trajectories.runs[column].astype(str)
    if not (fam == test).any():
        raise ValueError(f"no run of family {test!r}: add the OLMo-2 runs (e.g. runs=[..., 'peteish13'])")
    tasks = _sorted(trajectories.keys["task"].unique())
    train = _sorted(fam.index[fam != test])
    return NeuNeuSplit(name=f"held-out family ({test})", train_runs=train, train_tasks=tasks,
                       test_runs=_sorted(fam.index[fam == test]), test_tasks=tasks, baseline_runs=train,
                       held_out=("runs",)).check()


# --------------------------------------------------------------------------- the forecaster
@dataclasses.dataclass
class NeuNeuForecaster:
    """A trained NeuNeu model with the data settings it was trained with.

    Attributes:
        trained: the `jaxscale.neuneu.train.Trained` model.
        normalizer: feature statistics of the training checkpoints (None without features).
        context_length: context bucket L of the batches.
        deltas: whether features include their change since the context end.
        gap_unit: the unit of the gaps it was trained on.
        feature_names: the raw loss features it expects (e.g. ``("bpb", "log_avg_loss")``).
        info: free-form metadata (split, sampler settings, training time).
        interval_scale: every quantile's distance from the median is multiplied by this (1 = as
            trained; `calibrate_interval_scale` sets it from held-out training data).
        residual: the raw feature the model predicts the accuracy's residual from (None: it
            predicts the accuracy); its value at the target is added back.
        ctx_features: the features given per context point (`TrajectorySampler`).

    Example:
        >>> fc = train_forecaster(train_traj, train_config=TrainConfig(steps=300, batch_size=64))  # doctest: +SKIP
        >>> table = fc.forecast(test_traj)  # doctest: +SKIP
        >>> fc.save("model/"); NeuNeuForecaster.load("model/")    # doctest: +SKIP
    """

    trained: Any
    normalizer: FeatureNormalizer | None
    context_length: int
    deltas: bool
    gap_unit: str
    feature_names: tuple[str, ...]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    interval_scale: float = 1.0
    residual: str | None = None
    ctx_features: tuple[str, ...] = ()

    @property
    def quantiles(self) -> tuple[float, ...]:
        return tuple(self.trained.model_config.quantiles)

    def check_compatible(self, trajectories: Trajectories) -> None:
        """Raise ValueError when ``trajectories`` do not carry the features/gap unit of training."""
        if tuple(trajectories.feature_names) != tuple(self.feature_names):
            raise ValueError(f"the model was trained with features {list(self.feature_names)}, the data has "
                             f"{list(trajectories.feature_names)}")
        if trajectories.gap_unit != self.gap_unit:
            raise ValueError(f"the model was trained with gaps in {self.gap_unit}, the data has {trajectories.gap_unit}")

    def predict_batch(self, batch: Batch, index: pd.DataFrame, *, method: str = "neuneu") -> pd.DataFrame:
        """Forecast table for a batch and its index frame: run, task, x, y, method, prediction (the
        median), q0.1 .. q0.9."""
        q = self.trained.predict(batch)
        out = index[["run", "task", "x", "y"]].reset_index(drop=True).copy()
        out.insert(4, "method", method)
        levels = self.quantiles
        mid = min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))
        q = q[:, mid : mid + 1] + self.interval_scale * (q - q[:, mid : mid + 1])
        if self.residual is not None:
            if self.residual not in index.columns:
                raise KeyError(f"the model predicts residuals from {self.residual!r}: the index needs that column")
            q = q + (index[self.residual].to_numpy(float) - RESIDUAL_SHIFT)[:, None]
        out[PREDICTION] = q[:, mid]
        for i, level in enumerate(levels):
            out[quantile_column(level)] = q[:, i]
        return out

    def forecast(self, trajectories: Trajectories, *, context_fraction: float = 0.2,
                 method: str = "neuneu") -> pd.DataFrame:
        """Forecast every target of ``trajectories`` under the protocol (see `evaluation_batch`).

        Example:
            >>> fc.forecast(test_traj).head()  # doctest: +SKIP
        """
        self.check_compatible(trajectories)
        batch, index = evaluation_batch(trajectories, context_length=self.context_length,
                                        context_fraction=context_fraction, normalizer=self.normalizer,
                                        deltas=self.deltas, residual=self.residual, ctx_features=self.ctx_features)
        return self.predict_batch(batch, index, method=method)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (``Trained.save``) and ``neuneu_data.json`` to directory ``path``."""
        path = Path(path)
        self.trained.save(path)
        meta = {"normalizer": self.normalizer.to_dict() if self.normalizer else None,
                "context_length": self.context_length, "deltas": self.deltas, "gap_unit": self.gap_unit,
                "feature_names": list(self.feature_names), "info": self.info,
                "interval_scale": self.interval_scale, "residual": self.residual,
                "ctx_features": list(self.ctx_features)}
        (path / "neuneu_data.json").write_text(json.dumps(meta, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuNeuForecaster":
        """Read a directory written by `save` (computes in float32)."""
        from jaxscale.neuneu.train import load_trained

        path = Path(path)
        meta_path = path / "neuneu_data.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{str(path)!r} is not a NeuNeu model directory (no neuneu_data.json)")
        meta = json.loads(meta_path.read_text())
        trained = load_trained(path, dtype="float32")
        norm = FeatureNormalizer.from_dict(meta["normalizer"]) if meta["normalizer"] else None
        return cls(trained, norm, int(meta["context_length"]), bool(meta["deltas"]), meta["gap_unit"],
                   tuple(meta["feature_names"]), meta.get("info", {}), float(meta.get("interval_scale", 1.0)), meta.get("residual"),
                   tuple(meta.get("ctx_features", ())))


#: Defaults of the sampler used by `train_forecaster` (tuned on the OLMo ladder, see benchmarks/neuneu.py).
SAMPLER_DEFAULTS: dict[str, Any] = {"drop_prob": 0.4, "min_context": 1, "max_query_gap": None,
                                    "max_context_fraction": 0.6, "deltas": True}


def train_forecaster(
    train: Trajectories,
    *,
    model: str = "small",
    model_overrides: Mapping[str, Any] | None = None,
    train_config: Any = None,
    context_length: int = 32,
    seed: int = 0,
    sampler_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    residual: str | None = None,
    n_models: int = 1,
) -> NeuNeuForecaster:
    """Train NeuNeu on ``train`` trajectories with a `TrajectorySampler` and wrap it.

    Args:
        train: training trajectories (their features are normalised with their own statistics).
        model: a named config of `jaxscale.neuneu.model.CONFIGS`; ``model_overrides`` replace fields
            (``n_features`` is set from the sampler).
        train_config: a `TrainConfig` (default: 400 steps of 64 rows).
        context_length: the context bucket L.
        seed: sampler seed (the model seed is ``train_config.seed``).
        sampler_options: `TrajectorySampler` options over `SAMPLER_DEFAULTS`.
        residual: predict the accuracy's residual from this raw feature (see `TrajectorySampler`).
        n_models: an ensemble of this many models (model seeds ``train_config.seed + i``, sampler
            seeds ``seed + i``) whose quantiles are averaged (`TrainedEnsemble`); 1: one model.

    Example:
        >>> fc = train_forecaster(train_traj, train_config=TrainConfig(steps=300, batch_size=64))  # doctest: +SKIP
    """
    from jaxscale.neuneu.model import model_config
    from jaxscale.neuneu.train import TrainConfig, TrainedEnsemble, train as train_model

    opts = {**SAMPLER_DEFAULTS, **dict(sampler_options or {})}
    tcfg = train_config if train_config is not None else TrainConfig(steps=400, batch_size=64, log_every=50)
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    if n_models > 1 and checkpoint_dir is not None:
        raise ValueError("checkpoint_dir is for one model (n_models=1)")
    samplers = [TrajectorySampler(train, batch_size=tcfg.batch_size, context_length=context_length, seed=seed + i,
                                  residual=residual, **opts) for i in range(n_models)]
    sampler = samplers[0]
    mcfg = model_config(model, **{**dict(model_overrides or {}), "n_features": sampler.n_features,
                                  "n_ctx_features": sampler.n_ctx_features})
    t0 = time.perf_counter()
    members = [train_model(s, mcfg, dataclasses.replace(tcfg, seed=tcfg.seed + i), progress=progress,
                           checkpoint_dir=checkpoint_dir) for i, s in enumerate(samplers)]
    trained = members[0] if n_models == 1 else TrainedEnsemble(members)
    seconds = time.perf_counter() - t0
    info = {"train_seconds": seconds, "steps": tcfg.steps, "batch_size": tcfg.batch_size, "n_models": n_models,
            "sampler": {k: v for k, v in sampler.config().items() if k != "normalizer"},
            "n_train_trajectories": train.n_trajectories}
    return NeuNeuForecaster(trained, sampler.normalizer if train.n_features else None, context_length,
                            sampler.deltas, train.gap_unit, train.feature_names, info, residual=residual,
                            ctx_features=sampler.ctx_features)


# --------------------------------------------------------------------------- interval calibration
def calibration_split(split: NeuNeuSplit, trajectories: Trajectories, *, seed: int = 0) -> NeuNeuSplit:
    """A split of ``split``'s *training* part that mimics it, for calibrating intervals:
    held-out runs -> the largest training size (or the last quarter of the training runs) is held
    out; held-out tasks -> a third of the training task groups (at least 2) is held out. No test
    run or task is involved.

    Example:
        >>> calibration_split(held_out_runs(traj), traj).test_runs[:2]  # doctest: +SKIP
        ('760M-0.5xC', '760M-10xC')
    """
    runs = list(split.train_runs)
    tasks = list(split.train_tasks)
    if "tasks" in split.held_out:
        groups = dict(split.task_groups or {t: t for t in tasks})
        names = sorted({groups.get(t, t) for t in tasks})
        rng = np.random.default_rng(seed)
        k = min(len(names) - 1, max(2, round(len(names) / 3)))
        held = set(rng.choice(names, size=k, replace=False).tolist())
        cal_test_tasks = tuple(t for t in tasks if groups.get(t, t) in held)
        test_runs = tuple(r for r in runs if r in set(split.test_runs)) or tuple(runs)
        # the baseline is not run during calibration; any runs outside the test runs will do
        base = tuple(r for r in runs if r not in set(test_runs)) or test_runs
        cal = NeuNeuSplit(f"calibration of {split.name}", tuple(runs),
                          tuple(t for t in tasks if t not in set(cal_test_tasks)), test_runs, cal_test_tasks,
                          base, held_out=("tasks",), task_groups=groups)
        return cal.check() if base != test_runs else cal
    sizes = trajectories.runs.loc[runs, "N"] if "N" in trajectories.runs.columns else None
    if sizes is not None and sizes.nunique() > 1:
        held_runs = tuple(sorted(sizes.index[sizes == sizes.max()]))
    else:
        held_runs = tuple(runs[-max(1, len(runs) // 4):])
    rest = tuple(r for r in runs if r not in set(held_runs))
    return NeuNeuSplit(f"calibration of {split.name}", rest, tuple(tasks), held_runs, tuple(tasks), rest,
                       held_out=("runs",)).check()


def calibrate_interval_scale(forecasts: pd.DataFrame, *, coverage: float = 0.8, lo: str = "q0.1",
                             hi: str = "q0.9") -> float:
    """The factor s such that scaling every quantile's distance from the median by s makes the
    [lo, hi] interval cover ``coverage`` of the targets of ``forecasts`` (split-conformal style).

    Example:
        >>> t = pd.DataFrame({"y": [1.0, 2.0], "prediction": [0.0, 0.0], "q0.1": [-1.0, -1.0], "q0.9": [1.0, 1.0]})
        >>> calibrate_interval_scale(t, coverage=1.0)
        2.0
    """
    y, med = forecasts["y"].to_numpy(float), forecasts[PREDICTION].to_numpy(float)
    up = np.maximum(forecasts[hi].to_numpy(float) - med, 1e-9)
    down = np.maximum(med - forecasts[lo].to_numpy(float), 1e-9)
    need = np.where(y >= med, (y - med) / up, (med - y) / down)
    need = need[np.isfinite(need)]
    if not len(need):
        return 1.0
    return float(np.quantile(need, coverage))


# --------------------------------------------------------------------------- the backtest
@dataclasses.dataclass
class NeuNeuBacktest:
    """Result of `neuneu_backtest`.

    Attributes:
        forecasts: one row per (method, target): run, task, x, y, method, prediction, q0.1..q0.9
            (NaN quantiles for the point baselines).
        scores: one row per (method, run, task): `jaxscale.evaluate.metrics.score` columns
            (``mae``, ``coverage_80``, ``width_80``, ``coverage_50``, ``pinball``, ``crps``...).
        summary: one row per method: ``mae`` (mean over runs and tasks of the per-(run, task) MAE,
            the paper's metric), ``mae_ratio_logistic``, ``coverage_80``, ``width_80`` (means over
            (run, task)), ``n_targets``, ``n_trajectories``.
        split: the split used; forecaster: the trained model; seconds: time per stage.
    """

    forecasts: pd.DataFrame
    scores: pd.DataFrame
    summary: pd.DataFrame
    split: NeuNeuSplit
    forecaster: NeuNeuForecaster
    seconds: dict[str, float]


def summarize(forecasts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-(method, run, task) scores and the per-method summary of a forecast table.

    Example:
        >>> scores, summary = summarize(res.forecasts)  # doctest: +SKIP
    """
    scores = score(forecasts, y="y", by=["method", "run", "task"])
    agg = {"mae": ("mae", "mean"), "n_trajectories": ("mae", "size"), "n_targets": ("n_test", "sum")}
    for col in ("coverage_80", "width_80", "coverage_50", "width_50", "crps"):
        if col in scores.columns:
            agg[col] = (col, "mean")
    summary = scores.groupby("method", sort=False).agg(**agg).reset_index()
    if "logistic" in set(summary["method"]):
        ref = float(summary.loc[summary["method"] == "logistic", "mae"].iloc[0])
        summary.insert(2, "mae_ratio_logistic", summary["mae"] / ref)
    return scores, summary


def neuneu_backtest(
    trajectories: Trajectories,
    split: NeuNeuSplit,
    *,
    model: str = "small",
    model_overrides: Mapping[str, Any] | None = None,
    train_config: Any = None,
    context_length: int = 32,
    context_fraction: float = 0.2,
    sampler_options: Mapping[str, Any] | None = None,
    baselines: Sequence[str] = tuple(BASELINES),
    loss_feature: str = "log_avg_loss",
    features: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    forecaster: NeuNeuForecaster | None = None,
    calibrate: bool = False,
    logistic_prior: bool = False,
    residual_prior: bool = True,
    prior_cross_fit: str | None = None,
    prior_cross_fit_from: str = "others",
    prior_losses: Sequence[str] | None = None,
    prior_combine: str = "mean",
    n_models: int = 1,
    method_name: str = "neuneu",
) -> NeuNeuBacktest:
    """Train NeuNeu on the split's training part, forecast its test part under the protocol and
    compare with the baselines on the same target rows.

    Args:
        trajectories: all trajectories (e.g. `Trajectories.from_olmo`).
        split: a `NeuNeuSplit` (`held_out_runs`, `held_out_tasks`, `held_out_family`).
        model, model_overrides, train_config, context_length, sampler_options, seed: see `train_forecaster`.
        context_fraction: share of each test trajectory's checkpoints given as context (paper: 0.2).
        baselines: any of ``"logistic"``, ``"context_law"``, ``"last_value"`` (see `BASELINES`).
        loss_feature: the logistic baseline's input (the log average validation loss).
        features: the loss features NeuNeu reads (default: all of the trajectories'; the baselines
            still see every feature).
        forecaster: an already trained model (skips training).
        calibrate: calibrate the intervals without touching the test part: train a second model
            on `calibration_split` (a held-out size or task groups *inside* the training part),
            forecast its held-out part and set ``interval_scale`` so that its 80 % interval covers
            80 % there (`calibrate_interval_scale`). Doubles the training time.
        logistic_prior: also give NeuNeu the logistic baseline's prediction at each checkpoint as a
            loss feature (`baselines.with_logistic_prior`: fitted on the training part for the
            training trajectories, on the baseline runs for the test ones; the *NeuNeu + logistic
            prior* variant). With ``residual_prior`` (default) NeuNeu then reads and predicts the
            accuracy's residual from that prior (the residual at the context end is the starting point).
        prior_cross_fit: a run column (e.g. ``"size"``): the training trajectories' prior is
            fitted out-of-group (`with_logistic_prior` ``cross_fit``), like the test prior.
        prior_cross_fit_from: ``"others"`` (every other group) or ``"below"`` (only groups with a
            smaller value, e.g. smaller ``"N"``: upward extrapolation, as for held-out larger runs).
        prior_losses: the loss features the logistic prior is a law of (`baselines.with_loss_priors`):
            the default is the baseline's own (``loss_feature``); with several (e.g.
            ``("log_avg_loss", "bpb")``) the prior is the mean of one logistic law per loss,
            each fitted on the same runs as the baseline.
        prior_combine: how several priors make the residual base (`baselines.with_loss_priors`
            ``combine``): ``"mean"``, or ``"stack"`` (per-task convex weights chosen on priors
            cross-fitted across the sizes of the runs the priors are fitted on).
        n_models: train this many models (seeds ``train_config.seed + i``, sampler ``seed + i``) and
            average their quantiles (`train.TrainedEnsemble`); the calibration model likewise.
        method_name: the ``method`` label of NeuNeu's rows.

    Returns:
        A `NeuNeuBacktest` (forecasts, scores, summary).

    Example:
        >>> res = neuneu_backtest(traj, held_out_runs(traj))  # doctest: +SKIP
        >>> res.summary.set_index("method").loc["neuneu", "mae_ratio_logistic"]  # doctest: +SKIP
    """
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    train, test, base = split.parts(trajectories)
    prior_test = None
    prior_losses = (loss_feature,) if prior_losses is None else tuple(prior_losses)
    if logistic_prior and forecaster is not None:  # the priors the model was trained with
        prior_losses = tuple(f.removeprefix("logistic_prior_") for f in forecaster.feature_names
                             if f.startswith("logistic_prior_")) or (loss_feature,)
        prior_combine = forecaster.info.get("prior_combine", prior_combine)
    if logistic_prior:
        from jaxscale.neuneu.baselines import with_loss_priors

        train = with_loss_priors(train, train, loss_features=prior_losses, cross_fit=prior_cross_fit,
                                 cross_fit_from=prior_cross_fit_from, combine=prior_combine)
        prior_test = with_loss_priors(test, base, loss_features=prior_losses, combine=prior_combine)
        if features is not None:
            features = tuple(features) + tuple(f for f in prior_test.feature_names if f.startswith("logistic_prior"))
    if forecaster is not None and features is None:
        features = forecaster.feature_names
        available = set((prior_test if prior_test is not None else test).feature_names)
        if not set(features) <= available:
            raise ValueError(f"the model was trained with features {list(features)}, the data has "
                             f"{list(test.feature_names)}")
    nn_test = prior_test if prior_test is not None else test
    if features is not None:
        train, nn_test = train.select_features(features), nn_test.select_features(features)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    residual = "logistic_prior" if logistic_prior and residual_prior else None
    if forecaster is None:
        forecaster = train_forecaster(train, model=model, model_overrides=model_overrides, train_config=train_config,
                                      context_length=context_length, seed=seed, sampler_options=sampler_options,
                                      progress=progress, residual=residual, n_models=n_models)
    forecaster.info["split"] = split.name
    if logistic_prior:
        forecaster.info["prior_combine"] = prior_combine
    seconds["train"] = time.perf_counter() - t0
    if calibrate:
        t0 = time.perf_counter()
        cal = calibration_split(split, trajectories, seed=seed)
        cal_train, cal_test, _ = cal.parts(trajectories)
        if logistic_prior:
            from jaxscale.neuneu.baselines import with_loss_priors

            cal_train = with_loss_priors(cal_train, cal_train, loss_features=prior_losses, cross_fit=prior_cross_fit,
                                         cross_fit_from=prior_cross_fit_from, combine=prior_combine)
            cal_base = trajectories.subset(runs=cal.baseline_runs, tasks=cal.test_tasks)
            cal_test = with_loss_priors(cal_test, cal_base, loss_features=prior_losses, combine=prior_combine)
        if features is not None:
            cal_train, cal_test = cal_train.select_features(features), cal_test.select_features(features)
        cal_fc = train_forecaster(cal_train, model=model, model_overrides=model_overrides, train_config=train_config,
                                  context_length=forecaster.context_length, seed=seed,
                                  sampler_options=sampler_options, progress=progress, residual=residual,
                                  n_models=n_models)
        scale = calibrate_interval_scale(cal_fc.forecast(cal_test, context_fraction=context_fraction))
        forecaster.interval_scale = scale
        forecaster.info["calibration"] = {"split": cal.name, "test_runs": list(cal.test_runs),
                                          "test_tasks": list(cal.test_tasks), "interval_scale": scale}
        seconds["calibrate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    forecaster.check_compatible(nn_test)
    batch, _ = evaluation_batch(nn_test, context_length=forecaster.context_length, context_fraction=context_fraction,
                                normalizer=forecaster.normalizer, deltas=forecaster.deltas,
                                residual=forecaster.residual, ctx_features=forecaster.ctx_features)
    # the same rows with every raw feature (the baselines need the true future loss)
    _, index = evaluation_batch(test.select_features(()), context_length=1, context_fraction=context_fraction)
    index = index.join(_target_features(prior_test if prior_test is not None else test, index))
    tables = [forecaster.predict_batch(batch, index, method=method_name)]
    seconds["predict"] = time.perf_counter() - t0
    rows = index[["run", "task", "x", "y"]].reset_index(drop=True)
    runners = {
        "logistic": lambda: logistic_baseline(base, index, loss_feature=loss_feature),
        "context_law": lambda: context_law_baseline(test, index, context_fraction=context_fraction),
        "last_value": lambda: last_value_baseline(index),
    }
    for name in baselines:
        t0 = time.perf_counter()
        out = runners[name]()
        seconds[name] = time.perf_counter() - t0
        tables.append(rows.assign(method=name, **{PREDICTION: out[PREDICTION].to_numpy(float)}))
    forecasts = pd.concat(tables, ignore_index=True)
    forecasts.attrs["split"] = split.name
    scores, summary = summarize(forecasts)
    return NeuNeuBacktest(forecasts, scores, summary, split, forecaster, seconds)


def _target_features(traj: Trajectories, index: pd.DataFrame) -> pd.DataFrame:
    """Raw loss features of each index row's target checkpoint."""
    t = pd.MultiIndex.from_frame(traj.keys).get_indexer(pd.MultiIndex.from_frame(index[["run", "task"]]))
    j = index["target_index"].to_numpy(int)
    return pd.DataFrame({name: traj.features[t, j, k] for k, name in enumerate(traj.feature_names)},
                        index=index.index)


# --------------------------------------------------------------------------- backtest-harness adapter
def _query_batch(traj: Trajectories, tid: np.ndarray, xq: np.ndarray, context_length: int) -> tuple[Batch, np.ndarray]:
    """Batch rows predicting x = ``xq`` of trajectory ``tid`` from every point of it before xq."""
    size = len(tid)
    ok = tid >= 0
    t = np.maximum(tid, 0)
    pos_q = np.log(xq) if traj.gap_unit != "index" else xq
    pos = traj.pos[t]
    valid = (np.arange(traj.x.shape[1]) < traj.length[t][:, None]) & (pos < pos_q[:, None])
    ok &= valid.any(axis=1)
    valid[~ok, 0] = True  # placeholder rows (predictions set to NaN)
    keep = valid & (np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] <= context_length)
    n_kept = keep.sum(1)
    order = np.argsort(~keep, axis=1, kind="stable")
    if order.shape[1] < context_length:
        order = np.pad(order, ((0, 0), (0, context_length - order.shape[1])))
    order = order[:, :context_length]
    slot = np.arange(context_length)
    mask = slot < n_kept[:, None]
    nxt_pos = np.where(slot + 1 < n_kept[:, None], np.take_along_axis(pos, np.roll(order, -1, axis=1), 1),
                       pos_q[:, None])
    gap = nxt_pos - np.take_along_axis(pos, order, 1)
    batch = Batch(ctx_y=np.where(mask, np.take_along_axis(traj.y[t], order, 1), 0.0).astype(np.float32),
                  ctx_gap=np.where(mask, gap, 0.0).astype(np.float32), ctx_mask=mask,
                  features=np.zeros((size, 0), np.float32), target=np.full(size, np.nan, np.float32),
                  weight=np.ones(size, np.float32), ctx_features=np.zeros((size, context_length, 0), np.float32))
    return batch, ok


@dataclasses.dataclass(frozen=True, eq=False)
class NeuNeuMethod:
    """NeuNeu as a `jaxscale.evaluate` method: ``NeuNeuMethod(...)(train_dataset) -> Forecast``.

    What it needs: a Dataset whose task keys are (run, task) (two columns, run first), one x column
    (tokens or FLOPs, > 0; gaps in log x) and y = accuracy. Each query row (run, task, x) is
    predicted from *all* training points of that (run, task) before x (the latest
    ``context_length``); a query whose (run, task) has no earlier training point gets NaN. The
    forecast has ``prediction`` (the median) and the quantile columns ``q0.1`` ... ``q0.9``.

    Loss features of future checkpoints are not part of a backtest query, so the model must be
    trained without features: pass a ``forecaster`` trained on feature-less trajectories, or leave
    it None to train one per fold on the fold's training curves (``train_config``, ``model``...).

    Example:
        >>> from jaxscale.evaluate import backtest, LastPoints
        >>> m = NeuNeuMethod(train_config=TrainConfig(steps=200, batch_size=32))        # doctest: +SKIP
        >>> backtest(df, [m], LastPoints(frac=0.5), x="D", y="acc", by=["run", "task"])  # doctest: +SKIP
    """

    forecaster: NeuNeuForecaster | None = None
    train_config: Any = None
    model: str = "small"
    model_overrides: Mapping[str, Any] | None = None
    context_length: int = 32
    sampler_options: Mapping[str, Any] | None = None
    seed: int = 0
    name: str = "neuneu"

    def __call__(self, train: Any) -> Forecast:
        by, xs = list(train.by), list(train.x_names)
        if len(by) != 2 or len(xs) != 1:
            raise ValueError(f"NeuNeuMethod needs task keys (run, task) and one x column; got by={by}, x={xs}")
        frame = train.to_frame().sort_values(by + xs, kind="stable")
        traj = Trajectories.from_frame(frame, run=by[0], task=by[1], x=xs[0], y=train.y_name, x_unit="x",
                                       min_checkpoints=1 if self.forecaster is not None else 2)
        fc = self.forecaster
        if fc is None:
            fc = train_forecaster(traj, model=self.model, model_overrides=self.model_overrides,
                                  train_config=self.train_config, context_length=self.context_length,
                                  seed=self.seed, sampler_options={**(self.sampler_options or {}), "deltas": False})
        if fc.feature_names:
            raise ValueError(f"NeuNeuMethod needs a model trained without loss features (backtest queries carry no "
                             f"future losses); this one uses {list(fc.feature_names)}")
        lookup = {key: i for i, key in enumerate(zip(traj.keys["run"], traj.keys["task"]))}

        def predict(query: pd.DataFrame) -> pd.DataFrame:
            tid = np.array([lookup.get(k, -1) for k in zip(query[by[0]], query[by[1]])], int)
            batch, ok = _query_batch(traj, tid, query[xs[0]].to_numpy(float), fc.context_length)
            q = fc.trained.predict(batch) if len(query) else np.zeros((0, len(fc.quantiles)))
            q = np.where(ok[:, None], q, np.nan)
            out = query[by + xs].reset_index(drop=True).copy()
            levels = fc.quantiles
            out[PREDICTION] = q[:, min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))]
            for i, level in enumerate(levels):
                out[quantile_column(level)] = q[:, i]
            return out

        return Forecast(predict)
