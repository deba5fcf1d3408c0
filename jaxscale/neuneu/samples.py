"""Real accuracy trajectories for NeuNeu: tables of per-checkpoint evaluations -> `Batch` es.

- `Trajectories`: one accuracy trajectory per (run, task), padded to a common number of
  checkpoints, with its x (tokens, FLOPs, or nothing) and per-checkpoint loss features (the task's
  loss in bits per byte, the run's average validation loss, a token-loss histogram...). Built from
  any long table (`Trajectories.from_frame`), the OLMo ladder (`Trajectories.from_olmo`) or
  lm-evaluation-harness result files (`Trajectories.from_lm_eval`). Input is validated with errors
  that name the column, run and task.
- `FeatureNormalizer`: per-feature mean and standard deviation, fitted on *training* checkpoints
  only and carried to evaluation.
- `TrajectorySampler`: ``sampler(step) -> Batch``, a pure function of (seed, step): random (run,
  task, context end, target), context points dropped at random (never the last), the latest
  ``context_length`` kept, gaps in log x (or checkpoint index), loss features of the target.
- `evaluation_batch`: the paper's protocol, the first 20 % of each trajectory's checkpoints as
  context and every later checkpoint a target, nothing dropped.

Example:
    >>> traj = Trajectories.from_olmo(data_dir="../shared/data")            # doctest: +SKIP
    >>> train, test = traj.subset(runs=small_runs), traj.subset(runs=big_runs)  # doctest: +SKIP
    >>> sampler = TrajectorySampler(train, batch_size=64, context_length=32, seed=0)  # doctest: +SKIP
    >>> batch = sampler(0)                                                  # doctest: +SKIP
    >>> test_batch, index = evaluation_batch(test, context_length=32, normalizer=sampler.normalizer)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from jaxscale.datasets.olmo import OLMO_RUN_FILES
from jaxscale.neuneu.batch import Batch, SampleIndex

__all__ = [
    "Trajectories", "FeatureNormalizer", "TrajectorySampler", "evaluation_batch", "lm_loss_features",
    "histogram_features", "olmo_task_group", "OLMO_RC_TASKS", "OLMO_LADDER_RUNS", "OLMO2_RUNS", "GAP_UNITS",
]

#: The 20 ranked-classification task splits of the OLMo ladder (MMLU averages excluded).
OLMO_RC_TASKS: tuple[str, ...] = (
    "arc_challenge_test_5shot", "arc_challenge_val_5shot", "arc_easy_test_5shot", "arc_easy_val_5shot",
    "boolq_val_5shot", "csqa_val_5shot", "hellaswag_val_5shot",
    "mmlu_humanities_test_5shot", "mmlu_humanities_val_5shot", "mmlu_other_test_5shot", "mmlu_other_val_5shot",
    "mmlu_social_sciences_test_5shot", "mmlu_social_sciences_val_5shot", "mmlu_stem_test_5shot",
    "mmlu_stem_val_5shot", "openbookqa_test_5shot", "openbookqa_val_5shot", "piqa_val_5shot",
    "socialiqa_val_5shot", "winogrande_val_5shot",
)
#: The 30 OLMo ladder runs (190M..3B x 0.5..10 xC and the 1xC re-runs), `Trajectories.from_olmo`'s default.
OLMO_LADDER_RUNS: tuple[str, ...] = tuple(r for r in OLMO_RUN_FILES if not r.startswith("peteish"))
#: The OLMo-2 runs with intermediate checkpoints (a second family beside the ladder; ``peteish7-anneal``
#: has a single checkpoint, so no trajectory).
OLMO2_RUNS: tuple[str, ...] = ("peteish7", "peteish7-medlr", "peteish13")
#: x unit -> gap unit of the batches (natural-log units when x is known).
GAP_UNITS = {"tokens": "log_tokens", "flops": "log_flops", "x": "log_x", None: "index"}


def olmo_task_group(task: str) -> str:
    """The benchmark a task split belongs to (val/test splits and MMLU subjects share one group).

    Held-out-task splits hold out whole groups, so no test split's sibling is seen in training.

    Example:
        >>> olmo_task_group("arc_easy_val_5shot"), olmo_task_group("mmlu_stem_test_5shot")
        ('arc_easy', 'mmlu')
    """
    base = task.removesuffix("_5shot").removesuffix("_val").removesuffix("_test")
    return "mmlu" if base.startswith("mmlu") else base


# --------------------------------------------------------------------------- feature helpers
def lm_loss_features(lm: pd.DataFrame, *, run: str = "run", x: str = "D", dataset: str = "dataset",
                     loss: str = "loss") -> pd.DataFrame:
    """Per-checkpoint average validation loss over LM sets (a frame like ``load_olmo_ladder("lm")``).

    Returns one row per (run, x) with ``avg_loss`` (mean cross-entropy over the sets present at
    every checkpoint) and ``log_avg_loss``; merge it into a checkpoint table (``run_features=``).

    Example:
        >>> lm = pd.DataFrame({"run": "a", "D": [1.0, 1.0, 2.0, 2.0], "dataset": ["c4", "pile"] * 2,
        ...                    "loss": [4.0, 6.0, 3.0, 5.0]})
        >>> lm_loss_features(lm)["avg_loss"].tolist()
        [5.0, 4.0]
    """
    for col in (run, x, dataset, loss):
        if col not in lm.columns:
            raise KeyError(f"LM loss table lacks column {col!r}; it has {list(lm.columns)}")
    wide = lm.pivot_table(index=[run, x], columns=dataset, values=loss, aggfunc="mean")
    wide = wide.dropna(axis=1, how="any") if wide.notna().all(axis=1).sum() < len(wide) else wide
    if wide.shape[1] == 0:
        raise ValueError("LM loss table: no validation set has a loss at every checkpoint")
    avg = wide.mean(axis=1)
    return pd.DataFrame({"avg_loss": avg, "log_avg_loss": np.log(avg)}).reset_index()


def histogram_features(hist: pd.DataFrame, *, run: str = "run", x: str = "step", bin: str = "bin",
                       value: str = "mass", prefix: str = "h") -> pd.DataFrame:
    """Pivot a long token-loss histogram table (like ``load_neuneu_histograms()``) to one vector per
    checkpoint: columns ``run``, ``x`` and ``h0 .. h{B-1}``.

    Example:
        >>> h = pd.DataFrame({"run": "r", "step": [0, 0, 10, 10], "bin": [0, 1, 0, 1], "mass": [0.9, 0.1, 0.4, 0.6]})
        >>> histogram_features(h).columns.tolist()
        ['run', 'step', 'h0', 'h1']
    """
    for col in (run, x, bin, value):
        if col not in hist.columns:
            raise KeyError(f"histogram table lacks column {col!r}; it has {list(hist.columns)}")
    wide = hist.pivot_table(index=[run, x], columns=bin, values=value, aggfunc="sum")
    if wide.isna().any().any():
        raise ValueError("histogram table: some checkpoints lack some bins")
    wide.columns = [f"{prefix}{int(b)}" for b in wide.columns]
    return wide.reset_index()


# --------------------------------------------------------------------------- normaliser
@dataclasses.dataclass(frozen=True)
class FeatureNormalizer:
    """Per-feature (value - mean) / std, with statistics from training checkpoints only.

    Example:
        >>> norm = FeatureNormalizer.fit(np.array([[1.0], [3.0]]), ("bpb",))
        >>> norm.apply(np.array([[2.0]])).tolist()
        [[0.0]]
    """

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray, names: Sequence[str]) -> "FeatureNormalizer":
        """Statistics of ``values`` [n, F] (NaN rows ignored); a constant feature gets std 1."""
        if not len(names):
            return cls((), (), ())
        values = np.asarray(values, float).reshape(-1, len(names))
        ok = np.isfinite(values).all(axis=1)
        if len(names) and not ok.any():
            raise ValueError("cannot fit the feature normaliser: no checkpoint has finite features")
        v = values[ok]
        mean = v.mean(axis=0) if len(v) else np.zeros(len(names))
        std = v.std(axis=0) if len(v) else np.ones(len(names))
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(names), tuple(map(float, mean)), tuple(map(float, std)))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Normalised copy of ``values`` [..., F] (float32)."""
        if np.shape(values)[-1] != len(self.names):
            raise ValueError(f"normaliser has {len(self.names)} features {self.names}, values have {np.shape(values)[-1]}")
        return ((np.asarray(values, float) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureNormalizer":
        return cls(tuple(d["names"]), tuple(d["mean"]), tuple(d["std"]))


# --------------------------------------------------------------------------- trajectories
@dataclasses.dataclass(frozen=True, eq=False)
class Trajectories:
    """Accuracy trajectories per (run, task), padded to C checkpoints.

    Attributes:
        keys: one row per trajectory: ``run``, ``task`` (the original column names are kept in
            ``run_column``/``task_column`` for output tables).
        runs: one row per run with run-level columns (e.g. ``size``, ``xC``, ``role``), indexed by run.
        x: [T, C] x of each checkpoint (tokens or FLOPs; the checkpoint index when x is unknown), NaN padded.
        pos: [T, C] the coordinate gaps are measured in: ln(x), or the checkpoint index.
        y: [T, C] accuracy, NaN padded.
        length: [T] checkpoints per trajectory.
        features: [T, C, F] raw (un-normalised) loss features, NaN padded.
        feature_names: the F feature names.
        gap_unit: ``"log_tokens"``, ``"log_flops"``, ``"log_x"`` or ``"index"``.
        x_name, y_name: column names of x and y in the source table.
    """

    keys: pd.DataFrame
    runs: pd.DataFrame
    x: np.ndarray
    pos: np.ndarray
    y: np.ndarray
    length: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    gap_unit: str
    x_name: str = "x"
    y_name: str = "y"

    # ------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        run: str = "run",
        task: str = "task",
        x: str | None = "D",
        y: str = "acc",
        features: Sequence[str] = (),
        run_features: pd.DataFrame | None = None,
        x_unit: str | None = "tokens",
        run_columns: Sequence[str] = (),
        min_checkpoints: int = 2,
    ) -> "Trajectories":
        """Build trajectories from a long table with one row per (run, task, checkpoint).

        Args:
            df: the table.
            run, task: the run and task columns.
            x: the checkpoint's tokens (or FLOPs) column; None: checkpoints are in row order and
                gaps are counted in checkpoints (``gap_unit="index"``).
            y: the accuracy column.
            features: per-(run, task, checkpoint) loss-feature columns of ``df`` (e.g. ``"bpb"``).
            run_features: per-(run, checkpoint) features (e.g. `lm_loss_features`,
                `histogram_features`): a frame with the ``run`` column, the ``x`` column and
                feature columns, merged on (run, x); every checkpoint must have them.
            x_unit: ``"tokens"``, ``"flops"`` or ``"x"`` (sets ``gap_unit``; ignored when x is None).
            run_columns: run-level columns of ``df`` kept in ``runs`` (for splits).
            min_checkpoints: fewest checkpoints a trajectory may have (default 2: one context point and one target).

        Raises:
            KeyError: a named column is missing.
            ValueError: NaN accuracy, x or feature; non-positive x; x unsorted or duplicated
                within a (run, task); too few checkpoints. The message names the run and task.

        Example:
            >>> df = pd.DataFrame({"run": "r", "task": "t", "D": [1e9, 2e9, 4e9], "acc": [0.3, 0.4, 0.5]})
            >>> traj = Trajectories.from_frame(df, x="D", y="acc")
            >>> traj.gap_unit, traj.length.tolist()
            ('log_tokens', [3])
        """
        cols = [run, task, y] + ([x] if x is not None else []) + list(features) + list(run_columns)
        for col in cols:
            if col not in df.columns:
                raise KeyError(f"column {col!r} not in the table; it has {list(df.columns)}")
        if x is not None and x_unit not in GAP_UNITS:
            raise ValueError(f"x_unit must be one of 'tokens', 'flops', 'x', got {x_unit!r}")
        if min_checkpoints < 1:
            raise ValueError(f"min_checkpoints must be >= 1, got {min_checkpoints}")
        frame = df[list(dict.fromkeys(cols))].copy()
        feature_names = list(features)
        if run_features is not None:
            if x is None:
                raise ValueError("run_features are merged on (run, x): give x=")
            for col in (run, x):
                if col not in run_features.columns:
                    raise KeyError(f"run_features lacks column {col!r}; it has {list(run_features.columns)}")
            extra = [c for c in run_features.columns if c not in (run, x)]
            clash = [c for c in extra if c in frame.columns]
            if clash:
                raise ValueError(f"run_features column(s) {clash} also in the table")
            frame = frame.merge(run_features, on=[run, x], how="left", validate="many_to_one")
            feature_names += extra
        frame = frame.reset_index(drop=True)
        frame["_order"] = np.arange(len(frame))

        def where(mask: pd.Series) -> str:
            i = int(np.argmax(mask.to_numpy()))
            return f"run {frame[run].iloc[i]!r}, task {frame[task].iloc[i]!r}"

        for col in [y] + ([x] if x is not None else []) + feature_names:
            vals = pd.to_numeric(frame[col], errors="coerce")
            bad = vals.isna() | ~np.isfinite(vals.to_numpy(float))
            if bad.any():
                what = "a missing value"
                raw = frame[col].iloc[int(np.argmax(bad.to_numpy()))]
                if pd.notna(raw):
                    what = f"the non-finite or non-numeric value {raw!r}"
                kind = "feature column" if col in feature_names else "column"
                raise ValueError(f"{kind} {col!r} has {what} ({where(bad)}; {int(bad.sum())} row(s) in all)")
            frame[col] = vals.astype(float)
        if x is not None and (frame[x] <= 0).any():
            bad = frame[x] <= 0
            raise ValueError(f"column {x!r} must be > 0 (gaps are in log units), got {frame[x][bad].iloc[0]!r} "
                             f"({where(bad)}); drop those checkpoints first")
        if frame.empty:
            raise ValueError("the table has no rows")

        groups = frame.groupby([run, task], sort=True)
        sizes = groups.size()
        short = sizes[sizes < min_checkpoints]
        if len(short):
            (r0, t0), n0 = short.index[0], short.iloc[0]
            raise ValueError(f"run {r0!r}, task {t0!r} has {n0} checkpoint(s); at least {min_checkpoints} needed "
                             f"({len(short)} trajectory(ies) too short)")
        if x is not None:
            dx = groups[x].diff()
            dup = dx == 0
            if dup.any():
                raise ValueError(f"column {x!r} has a duplicate value {frame[x][dup].iloc[0]!r} ({where(dup)}): "
                                 "average or drop repeated checkpoints first")
            down = dx < 0
            if down.any():
                raise ValueError(f"column {x!r} is not sorted within {where(down)}: sort the table by "
                                 f"({run!r}, {task!r}, {x!r}) first")

        n_traj, n_ckpt, n_feat = len(sizes), int(sizes.max()), len(feature_names)
        xs = np.full((n_traj, n_ckpt), np.nan)
        ys = np.full((n_traj, n_ckpt), np.nan)
        fs = np.full((n_traj, n_ckpt, n_feat), np.nan)
        for i, (_, g) in enumerate(groups):
            n = len(g)
            xs[i, :n] = g[x].to_numpy(float) if x is not None else np.arange(n, dtype=float)
            ys[i, :n] = g[y].to_numpy(float)
            if n_feat:
                fs[i, :n] = g[feature_names].to_numpy(float)
        length = sizes.to_numpy(int)
        if x is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                pos = np.log(xs)
        else:
            pos = xs.copy()
        keys = sizes.index.to_frame(index=False).rename(columns={run: "run", task: "task"})
        run_cols = list(dict.fromkeys(c for c in run_columns if c not in (run, task)))
        runs = frame.groupby(run, sort=True)[run_cols].first() if run_cols else pd.DataFrame(
            index=pd.Index(sorted(frame[run].unique()), name=run))
        runs.index.name = "run"
        return cls(keys=keys, runs=runs, x=xs, pos=pos, y=ys, length=length, features=fs,
                   feature_names=tuple(feature_names), gap_unit=GAP_UNITS[x_unit if x is not None else None],
                   x_name=x if x is not None else "checkpoint", y_name=y)

    @classmethod
    def from_olmo(
        cls,
        data_dir: Any = None,
        *,
        tasks: Iterable[str] | None = None,
        runs: Iterable[str] | None = None,
        mmlu_average: bool = False,
        features: Sequence[str] = ("bpb", "log_avg_loss"),
        x: str = "D",
    ) -> "Trajectories":
        """The OLMo ladder (Bhagia et al. 2024): accuracy ``acc`` per checkpoint for the 20 RC task splits.

        Args:
            data_dir: the data directory (see `jaxscale.datasets`).
            tasks: task splits (default `OLMO_RC_TASKS`); ``mmlu_average`` adds ``mmlu_avg_{val,test}_5shot``.
            runs: run ids (default `OLMO_LADDER_RUNS`: 190M..3B x 0.5..10 xC and the 1xC re-runs;
                the OLMo-2 runs `OLMO2_RUNS` can be added).
            features: any of ``"bpb"`` (the task's loss, bits per byte), ``"soft_log"``,
                ``"avg_loss"`` / ``"log_avg_loss"`` (the run's mean validation loss over the 11 LM
                sets); ``()`` for none.
            x: ``"D"`` (tokens; gaps in log tokens) or ``"C"`` (FLOPs).

        Checkpoints with x = 0 (the OLMo-2 runs' step 0) are dropped. ``runs`` keeps the columns
        size, N, xC, rerun, role and ``family`` (``"ladder"`` or ``"olmo2"``).

        Example:
            >>> traj = Trajectories.from_olmo(data_dir="../shared/data")  # doctest: +SKIP
            >>> traj.keys.shape, traj.feature_names                         # doctest: +SKIP
            ((600, 2), ('bpb', 'log_avg_loss'))
        """
        from jaxscale.datasets import load_olmo_ladder

        if x not in ("D", "C"):
            raise ValueError(f"x must be 'D' (tokens) or 'C' (FLOPs), got {x!r}")
        ckpt = load_olmo_ladder("checkpoints", data_dir=data_dir)
        task_list = list(OLMO_RC_TASKS if tasks is None else tasks)
        if mmlu_average:
            task_list += ["mmlu_avg_val_5shot", "mmlu_avg_test_5shot"]
        run_list = list(OLMO_LADDER_RUNS if runs is None else runs)
        for name, wanted, known in (("task", task_list, set(ckpt["task"])), ("run", run_list, set(ckpt["run"]))):
            unknown = [v for v in wanted if v not in known]
            if unknown:
                raise ValueError(f"unknown OLMo {name}(s) {unknown}; known: {sorted(known)}")
        ckpt = ckpt[ckpt["task"].isin(task_list) & ckpt["run"].isin(run_list) & (ckpt[x] > 0)]
        ckpt = ckpt.assign(family=np.where(ckpt["run"].str.startswith("peteish"), "olmo2", "ladder"))
        row_feats = [f for f in features if f not in ("avg_loss", "log_avg_loss")]
        run_feats = [f for f in features if f in ("avg_loss", "log_avg_loss")]
        unknown = [f for f in row_feats if f not in ckpt.columns]
        if unknown:
            raise ValueError(f"unknown OLMo feature(s) {unknown}; use bpb, soft, soft_log, avg_loss, log_avg_loss")
        extra = None
        if run_feats:
            lm = load_olmo_ladder("lm", data_dir=data_dir)
            lm = lm[lm["run"].isin(run_list) & (lm[x] > 0)]
            extra = lm_loss_features(lm, x=x)[["run", x] + run_feats]
        ckpt = ckpt.sort_values(["run", "task", x], kind="stable")
        traj = cls.from_frame(ckpt, run="run", task="task", x=x, y="acc", features=row_feats, run_features=extra,
                              x_unit="tokens" if x == "D" else "flops",
                              run_columns=["size", "N", "xC", "rerun", "role", "family"])
        # keep the requested feature order
        order = [traj.feature_names.index(f) for f in features]
        return dataclasses.replace(traj, features=traj.features[:, :, order], feature_names=tuple(features))

    @classmethod
    def from_lm_eval(
        cls,
        paths: Any,
        *,
        metric: str = "acc",
        x: str = "tokens",
        run: str = "model",
        min_checkpoints: int = 2,
    ) -> "Trajectories":
        """Trajectories from lm-evaluation-harness result JSONs (via `jaxscale.datasets.read_lm_eval`).

        One run per ``model`` (or another column of the `read_lm_eval` table); checkpoints are the
        files, placed by ``tokens`` (gaps in log tokens) or, with ``x="step"``, by step (gaps in log
        steps, ``gap_unit="log_x"``). No loss features.

        Example:
            >>> traj = Trajectories.from_lm_eval("results/", metric="acc_norm")  # doctest: +SKIP
        """
        from jaxscale.datasets import read_lm_eval

        table = read_lm_eval(paths)
        table = table[table["metric"] == metric]
        if table.empty:
            raise ValueError(f"no lm-eval results with metric {metric!r}")
        if x not in ("tokens", "step"):
            raise ValueError(f"x must be 'tokens' or 'step', got {x!r}")
        if table[x].isna().any():
            bad = table[table[x].isna()].iloc[0]
            raise ValueError(f"lm-eval file {bad['file']} has no {x} (put it in the revision, e.g. "
                             f"'step1000' / 'tokens4B', or in model_args)")
        table = table.sort_values([run, "task", x], kind="stable")
        return cls.from_frame(table, run=run, task="task", x=x, y="value",
                              x_unit="tokens" if x == "tokens" else "x", min_checkpoints=min_checkpoints)

    # ------------------------------------------------------------ views
    @property
    def n_trajectories(self) -> int:
        return int(len(self.keys))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def subset(self, *, runs: Iterable[str] | None = None, tasks: Iterable[str] | None = None) -> "Trajectories":
        """The trajectories whose run is in ``runs`` and task in ``tasks`` (None: all).

        Example:
            >>> small = traj.subset(runs=["190M-1xC"], tasks=["piqa_val_5shot"])  # doctest: +SKIP
        """
        keep = np.ones(self.n_trajectories, bool)
        for col, wanted in (("run", runs), ("task", tasks)):
            if wanted is not None:
                wanted = list(wanted)
                unknown = sorted(set(wanted) - set(self.keys[col]))
                if unknown:
                    raise ValueError(f"unknown {col}(s) {unknown[:5]}")
                keep &= self.keys[col].isin(wanted).to_numpy()
        if not keep.any():
            raise ValueError("the subset is empty")
        idx = np.nonzero(keep)[0]
        n = int(self.length[idx].max())
        kept_runs = self.keys["run"].iloc[idx].unique()
        return dataclasses.replace(
            self, keys=self.keys.iloc[idx].reset_index(drop=True), runs=self.runs.loc[kept_runs],
            x=self.x[idx, :n], pos=self.pos[idx, :n], y=self.y[idx, :n], length=self.length[idx],
            features=self.features[idx, :n])

    def select_features(self, names: Sequence[str]) -> "Trajectories":
        """The same trajectories with only the loss features ``names`` (in that order; ``()`` for none).

        Example:
            >>> traj.select_features(["bpb"]).feature_names  # doctest: +SKIP
            ('bpb',)
        """
        names = tuple(names)
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; these trajectories have {list(self.feature_names)}")
        order = [self.feature_names.index(n) for n in names]
        return dataclasses.replace(self, features=self.features[:, :, order], feature_names=names)

    def to_frame(self) -> pd.DataFrame:
        """The long table: run, task, checkpoint index, x, y and the raw features.

        Example:
            >>> traj.to_frame().columns[:5].tolist()  # doctest: +SKIP
            ['run', 'task', 'checkpoint', 'D', 'acc']
        """
        t, c = np.nonzero(np.arange(self.x.shape[1]) < self.length[:, None])
        out = self.keys.iloc[t].reset_index(drop=True)
        out["checkpoint"] = c
        out[self.x_name] = self.x[t, c]
        out[self.y_name] = self.y[t, c]
        for k, name in enumerate(self.feature_names):
            out[name] = self.features[t, c, k]
        return out

    def fit_normalizer(self) -> FeatureNormalizer:
        """Feature statistics over all checkpoints of these trajectories (call it on training data)."""
        valid = np.arange(self.x.shape[1]) < self.length[:, None]
        return FeatureNormalizer.fit(self.features[valid], self.feature_names)


# --------------------------------------------------------------------------- batches
#: With ``residual=feature``, accuracies enter the batch as y - feature + RESIDUAL_SHIFT (kept in [0, 1]).
RESIDUAL_SHIFT = 0.5


def _values(traj: Trajectories, residual: str | None) -> np.ndarray:
    """[T, C] the values the model reads and predicts: accuracy, or its residual from a raw feature."""
    if residual is None:
        return traj.y
    if residual not in traj.feature_names:
        raise ValueError(f"residual feature {residual!r} not among {list(traj.feature_names)}")
    return traj.y - traj.features[:, :, traj.feature_names.index(residual)] + RESIDUAL_SHIFT


def _check_ctx_features(traj: Trajectories, names: Sequence[str]) -> tuple[str, ...]:
    """The per-context-point feature names, validated against ``traj``'s features."""
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in traj.feature_names]
    if unknown:
        raise ValueError(f"per-context-point feature(s) {unknown} not among {list(traj.feature_names)}")
    return names


def _assemble(traj: Trajectories, t: np.ndarray, c: np.ndarray, j: np.ndarray, keep: np.ndarray,
              context_length: int, normalizer: FeatureNormalizer | None, deltas: bool,
              residual: str | None = None, ctx_features: Sequence[str] = ()) -> Batch:
    """Batch rows for trajectories ``t``, context end ``c``, target ``j`` and kept points ``keep`` [B, C]."""
    values = _values(traj, residual)
    size, n_ckpt = keep.shape
    keep = keep & (np.cumsum(keep[:, ::-1], axis=1)[:, ::-1] <= context_length)  # the latest `context_length`
    n_kept = keep.sum(1)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept indices first, in time order
    if n_ckpt < context_length:
        order = np.pad(order, ((0, 0), (0, context_length - n_ckpt)))
    order = order[:, :context_length]
    slot = np.arange(context_length)
    mask = slot < n_kept[:, None]
    nxt = np.where(slot + 1 < n_kept[:, None], np.roll(order, -1, axis=1), j[:, None])
    pos = traj.pos[t]
    gap = np.take_along_axis(pos, nxt, 1) - np.take_along_axis(pos, order, 1)
    ctx_y = np.take_along_axis(values[t], order, 1)
    if traj.n_features:
        if normalizer is None:
            raise ValueError("trajectories with loss features need a FeatureNormalizer (fit on training data)")
        target_f = normalizer.apply(traj.features[t, j])
        feats = [target_f]
        if deltas:
            end_f = normalizer.apply(traj.features[t, c])
            first = np.argmax(keep, axis=1)  # the oldest kept context point
            feats += [target_f - end_f, end_f - normalizer.apply(traj.features[t, first])]
        features = np.concatenate(feats, axis=1)
    else:
        features = np.zeros((size, 0), np.float32)
    per_point = np.zeros((size, context_length, 0), np.float32)
    if len(ctx_features):
        # the named features at each context point minus at the target, normalised (0 at padding)
        k = [traj.feature_names.index(name) for name in ctx_features]
        at = normalizer.apply(np.take_along_axis(traj.features[t], order[:, :, None], 1))[..., k]
        per_point = np.where(mask[:, :, None], at - target_f[:, None, k], 0.0)
    return Batch(
        ctx_y=np.where(mask, ctx_y, 0.0).astype(np.float32),
        ctx_gap=np.where(mask, gap, 0.0).astype(np.float32),
        ctx_mask=mask,
        features=features.astype(np.float32),
        target=values[t, j].astype(np.float32),
        weight=np.ones(size, np.float32),
        ctx_features=per_point.astype(np.float32),
    )


class TrajectorySampler:
    """``sampler(step) -> Batch`` of random training samples from `Trajectories`.

    Each row: a trajectory drawn uniformly, a context end c (at least ``min_context`` points, at
    most ``max_context_fraction`` of the trajectory when given), a target j after c (at most
    ``max_query_gap`` checkpoints later when given), context points 0..c each dropped with
    probability ``drop_prob`` except the last, the latest ``context_length`` kept points
    left-aligned. Features: the target checkpoint's loss features normalised with ``normalizer``
    (fitted on these trajectories when None), plus, with ``deltas``, their change from the context
    end to the target and from the oldest kept context point to the context end (so the model can
    relate the accuracy change seen in the context to the loss change; 3 F features in all).
    With ``residual`` (a feature name, e.g. ``"logistic_prior"``) the batch holds the accuracy's
    residual from that feature, y - feature + 0.5 (context and target), so the model predicts how
    the deviation from a prior curve evolves. ``ctx_features`` (feature names): each context point
    also carries those normalised features minus the target's (``Batch.ctx_features``), e.g. the
    logistic priors, so the model sees how far each observed point is from the target on each prior.
    A batch is a pure function of (seed, step): resumed training sees the same data.

    Attributes:
        context_length, n_features, batch_size, gap_unit, normalizer, feature_names.

    Example:
        >>> df = pd.DataFrame({"run": "r", "task": "t", "D": np.geomspace(1e9, 1e11, 12),
        ...                    "acc": np.linspace(0.3, 0.6, 12)})
        >>> sampler = TrajectorySampler(Trajectories.from_frame(df), batch_size=8, context_length=4, seed=0)
        >>> sampler(0).ctx_y.shape
        (8, 4)
    """

    def __init__(self, trajectories: Trajectories, *, batch_size: int, context_length: int, seed: int,
                 drop_prob: float = 0.4, min_context: int = 1, max_query_gap: int | None = None,
                 max_context_fraction: float | None = None, normalizer: FeatureNormalizer | None = None,
                 deltas: bool = True, residual: str | None = None, ctx_features: Sequence[str] = ()):
        if batch_size < 1 or context_length < 1 or min_context < 1:
            raise ValueError("batch_size, context_length and min_context must be >= 1")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if max_query_gap is not None and max_query_gap < 1:
            raise ValueError(f"max_query_gap must be >= 1 or None, got {max_query_gap}")
        usable = trajectories.length > min_context
        if not usable.any():
            raise ValueError(f"no trajectory has more than min_context={min_context} checkpoints")
        self.trajectories = trajectories
        self.batch_size, self.context_length, self.seed = batch_size, context_length, seed
        self.drop_prob, self.min_context, self.max_query_gap = drop_prob, min_context, max_query_gap
        self.max_context_fraction, self.deltas, self.residual = max_context_fraction, deltas, residual
        _values(trajectories, residual)  # validates the residual feature
        self.gap_unit = trajectories.gap_unit
        self.feature_names = trajectories.feature_names
        self.normalizer = normalizer if normalizer is not None else trajectories.fit_normalizer()
        self.n_features = trajectories.n_features * (3 if deltas else 1)
        self.ctx_features = _check_ctx_features(trajectories, ctx_features)
        self.n_ctx_features = len(self.ctx_features)
        self._usable = np.nonzero(usable)[0]

    def __call__(self, step: int) -> Batch:
        """The batch of training step ``step`` (deterministic in (seed, step))."""
        rng = np.random.default_rng([self.seed, int(step)])
        traj, size = self.trajectories, self.batch_size
        t = self._usable[rng.integers(0, len(self._usable), size)]
        n = traj.length[t]
        hi = n - 2  # the last context end leaving one target
        if self.max_context_fraction is not None:
            hi = np.minimum(hi, np.maximum(self.min_context - 1, np.floor(self.max_context_fraction * n).astype(int) - 1))
        lo = self.min_context - 1
        c = lo + (rng.random(size) * (hi - lo + 1)).astype(int)
        room = n - 1 - c
        if self.max_query_gap is not None:
            room = np.minimum(room, self.max_query_gap)
        j = c + 1 + (rng.random(size) * room).astype(int)
        idx = np.arange(traj.x.shape[1])
        keep = (rng.random((size, len(idx))) >= self.drop_prob) & (idx <= c[:, None])
        keep[np.arange(size), c] = True
        return _assemble(traj, t, c, j, keep, self.context_length, self.normalizer, self.deltas, self.residual,
                         self.ctx_features)

    def config(self) -> dict[str, Any]:
        """The settings needed to rebuild evaluation batches (JSON-serialisable)."""
        return {"context_length": self.context_length, "gap_unit": self.gap_unit, "deltas": self.deltas,
                "normalizer": self.normalizer.to_dict(), "drop_prob": self.drop_prob,
                "min_context": self.min_context, "max_query_gap": self.max_query_gap,
                "max_context_fraction": self.max_context_fraction, "seed": self.seed, "residual": self.residual,
                "batch_size": self.batch_size, "ctx_features": list(self.ctx_features)}


def context_size(n: int | np.ndarray, fraction: float) -> np.ndarray:
    """Context points of a trajectory of ``n`` checkpoints: ceil(fraction * n), in [1, n - 1]."""
    n = np.asarray(n)
    return np.clip(np.ceil(fraction * n - 1e-9).astype(int), 1, n - 1)


def evaluation_batch(
    trajectories: Trajectories,
    *,
    context_length: int,
    context_fraction: float = 0.2,
    normalizer: FeatureNormalizer | None = None,
    deltas: bool = True,
    residual: str | None = None,
    ctx_features: Sequence[str] = (),
) -> tuple[Batch, SampleIndex]:
    """The paper's protocol: the first ``context_fraction`` of each trajectory's checkpoints
    (ceil, at least one, leaving one target) are the context, every later checkpoint is a target;
    nothing is dropped (the latest ``context_length`` context points are kept).

    ``residual`` (a feature name) makes the batch hold y - feature + `RESIDUAL_SHIFT` instead of y
    (the sampler's option of the same name); add the feature back to the predictions.
    ``ctx_features``: per-context-point features (names), as the sampler's option.

    Returns the batch and its index frame (``run``, ``task``, ``ctx_end``, ``target_index``, ``x``
    of the target, ``y`` of the target, ``x_ctx_end``, and the raw loss features of the target).

    Example:
        >>> df = pd.DataFrame({"run": "r", "task": "t", "D": np.geomspace(1e9, 1e11, 10), "acc": 0.5})
        >>> batch, index = evaluation_batch(Trajectories.from_frame(df), context_length=8)
        >>> len(index), int(index.ctx_end.iloc[0])   # 2 context points, 8 targets
        (8, 1)
    """
    if not 0.0 < context_fraction < 1.0:
        raise ValueError(f"context_fraction must be in (0, 1), got {context_fraction}")
    if trajectories.n_features and normalizer is None:
        raise ValueError("trajectories with loss features need the training normaliser (normalizer=sampler.normalizer)")
    n = trajectories.length
    n_ctx = context_size(n, context_fraction)
    t = np.repeat(np.arange(len(n)), n - n_ctx)
    c = np.repeat(n_ctx - 1, n - n_ctx)
    start = np.repeat(np.cumsum(n - n_ctx) - (n - n_ctx), n - n_ctx)
    j = c + 1 + (np.arange(len(t)) - start)
    idx = np.arange(trajectories.x.shape[1])
    keep = idx[None, :] <= c[:, None]
    batch = _assemble(trajectories, t, c, j, keep, context_length, normalizer, deltas, residual,
                      _check_ctx_features(trajectories, ctx_features))
    index = trajectories.keys.iloc[t].reset_index(drop=True)
    index["ctx_end"] = c
    index["target_index"] = j
    index["x"] = trajectories.x[t, j]
    index["y"] = trajectories.y[t, j]
    index["x_ctx_end"] = trajectories.x[t, c]
    index["y_ctx_end"] = trajectories.y[t, c]
    for k, name in enumerate(trajectories.feature_names):
        index[name] = trajectories.features[t, j, k]
    return batch, index
