"""Loader for the OLMo model-ladder runs of Bhagia et al. (2024).

The data are W&B exports of in-loop evaluations (``data/ladder-runs/*.csv``),
one row per evaluated checkpoint, for 30 ladder runs (5 sizes x 0.5/1/2/5/10 xC,
plus a re-run of each 1xC) and the OLMo-2 target models. The paper's split
(``configs/final.json``) fits on 16 ladder runs (190M/370M/760M/1.3B at
1/2/5/10 xC) and predicts 7B-4T and 13B-5T.

Runs (one file is read per run; the upstream step-range files are subsets of these):

* ``190M-1xC`` .. ``3B-10xC`` and ``<size>-1xC-rerun``: the 30 ladder runs, file of
  the same name. Role ``train`` for the 16 runs of ``final.json``, else ``other``.
* ``peteish7-anneal`` (``peteish7_eval_anneal.csv``, 1 checkpoint): target 7B-4T.
* ``peteish13`` (``peteish13_eval_full.csv``): target 13B-5T; ``final.json`` reads
  ``peteish13_eval_final.csv``, which is the last 12 rows of this file.
* ``peteish7`` (``peteish7_eval_full.csv``): 7B checkpoints before the anneal, ``other``.
* ``peteish7-medlr`` (``peteish7_medlr_eval_full.csv``): 7B at a medium learning rate, ``other``.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from ._tables import DataDir, read_csv, read_json

__all__ = ["OLMO_MMLU_WEIGHTS", "OLMO_RUN_FILES", "OLMO_SIZES", "load_olmo_ladder"]

OLMO_DIR = "olmo-ladder/src/scripts/paper"
OLMO_FINAL_CONFIG = f"{OLMO_DIR}/configs/final.json"
_RUNS_DIR = f"{OLMO_DIR}/data/ladder-runs"

#: File-name size prefix -> (size label, non-embedding N, FLOPs per token),
#: from ``src/scaling/utils.py`` (MODEL_PARAMS, MODEL_FLOPS) and ``final.json``.
OLMO_SIZES: dict[str, tuple[str, int, int]] = {
    "190M": ("190M", 190_354_176, 1_903_391_232),
    "370M": ("370M", 371_262_464, 3_443_922_944),
    "760M": ("760M", 758_220_288, 6_373_843_968),
    "1B": ("1.3B", 1_279_395_840, 10_109_071_360),
    "3B": ("3.2B", 3_169_537_280, 22_970_355_200),
    "peteish7": ("7B", 6_887_575_552, 49_412_071_424),
    "peteish13": ("13B", 13_202_396_160, 91_335_915_520),
}

#: MMLU subject weights (``task_utils.WEIGHT_BY_KEY``) for the ``mmlu_avg_*`` tasks.
OLMO_MMLU_WEIGHTS: dict[str, float] = {
    "stem": 0.215,
    "humanities": 0.335,
    "social_sciences": 0.219,
    "other": 0.231,
}

_MULTIPLIERS = ("0.5", "1", "2", "5", "10")
_LADDER_RUNS = [
    f"{size}-{k}xC{suffix}"
    for size in ("190M", "370M", "760M", "1B", "3B")
    for k, suffix in [(k, "") for k in _MULTIPLIERS] + [("1", "-rerun")]
]
#: run id -> file stem read for it.
OLMO_RUN_FILES: dict[str, str] = {
    **{run: run for run in _LADDER_RUNS},
    "peteish7": "peteish7_eval_full",
    "peteish7-anneal": "peteish7_eval_anneal",
    "peteish7-medlr": "peteish7_medlr_eval_full",
    "peteish13": "peteish13_eval_full",
}

_LADDER_RE = re.compile(r"^(?P<size>[^-]+)-(?P<xc>[\d.]+)xC(?P<rerun>-rerun)?$")
_PETEISH_RE = re.compile(r"^(?P<size>peteish\d+)(?P<medlr>_medlr)?_eval_(?P<part>.+)$")
_TASK_RE = re.compile(
    r"^eval/(?P<group>downstream|downstream_bpb|downstream_soft|downstream_soft_log)/"
    r"(?P<task>.+)_(?P<fmt>rc|mc)_5shot_(?:bpb|len_norm|acc|soft|soft_log)$"
)
_LM_RE = re.compile(r"^eval/(?P<dataset>.+)-validation/CrossEntropyLoss$")
_RC_METRICS = {"downstream_bpb": "bpb", "downstream": "acc", "downstream_soft": "soft",
               "downstream_soft_log": "soft_log"}
_METRICS = ("bpb", "acc", "soft", "soft_log", "acc_mc")
_RUN_COLUMNS = ["run", "size", "N", "flops_per_token", "xC", "rerun", "role", "D_final"]
_ROW_COLUMNS = ["step", "D", "C", "lr", "lr_peak", "batch_tokens"]


def _run_of_file(stem: str) -> str:
    """Map a ladder-runs file stem (any upstream file) to its run id."""
    match = _PETEISH_RE.match(stem)
    if match is None:
        return stem
    suffix = "-medlr" if match["medlr"] else ""
    suffix += "-anneal" if match["part"] == "anneal" else ""
    return match["size"] + suffix


def _roles(data_dir: DataDir) -> dict[str, str]:
    """run id -> ``"train"``/``"target"`` from ``final.json`` (other runs are absent)."""
    config = read_json(OLMO_FINAL_CONFIG, data_dir)
    roles = {}
    for entry in config.values():
        role = "train" if entry["mode"] == "train" else "target"
        for path in entry["paths"]:
            roles[_run_of_file(path.rsplit("/", 1)[-1].removesuffix(".csv"))] = role
    return roles


def _run_info(run: str, role: str) -> dict[str, object]:
    match = _LADDER_RE.match(run)
    prefix = match["size"] if match else run.split("-")[0]
    size, n, flops = OLMO_SIZES[prefix]
    return {
        "run": run, "size": size, "N": n, "flops_per_token": flops,
        "xC": float(match["xc"]) if match else np.nan,
        "rerun": bool(match and match["rerun"]), "role": role,
    }


def _read_run(run: str, data_dir: DataDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read one run's CSV: the raw wide table and its per-row ``step``, ``D``, lr, batch."""
    relpath = f"{_RUNS_DIR}/{OLMO_RUN_FILES[run]}.csv"
    wide = read_csv(relpath, data_dir, ["batch_size_in_tokens", "learning_rate_peak"])
    if "_step" not in wide and "throughput/total_tokens" not in wide:
        raise ValueError(f"{relpath} has neither '_step' nor 'throughput/total_tokens'")
    nan = pd.Series(np.nan, index=wide.index)
    step = wide.get("_step", nan).astype(float)
    batch = wide["batch_size_in_tokens"].astype(float)
    rows = pd.DataFrame(
        {
            "_row": wide.index,
            "step": step,
            "D": wide.get("throughput/total_tokens", step * batch).astype(float),
            "lr": wide.get("optim/learning_rate_group0", nan).astype(float),
            "lr_peak": wide["learning_rate_peak"].astype(float),
            "batch_tokens": batch,
        }
    )
    return wide, rows


def _long(wide: pd.DataFrame, parsed: dict[str, tuple[str, str]], key: str) -> pd.DataFrame:
    """Melt ``parsed`` columns ``{column: (key value, metric)}`` and pivot metrics to columns."""
    long = wide[list(parsed)].melt(var_name="column", ignore_index=False)
    long = long.rename_axis("_row").reset_index()
    long[key] = long["column"].map(lambda c: parsed[c][0])
    long["metric"] = long["column"].map(lambda c: parsed[c][1])
    return long.pivot(index=["_row", key], columns="metric", values="value").reset_index()


def _task_columns(columns: pd.Index) -> dict[str, tuple[str, str]]:
    parsed = {}
    for column in columns:
        match = _TASK_RE.match(column)
        if match:
            metric = "acc_mc" if match["fmt"] == "mc" else _RC_METRICS[match["group"]]
            parsed[column] = (f"{match['task']}_5shot", metric)
    return parsed


def _with_mmlu_average(tasks: pd.DataFrame) -> pd.DataFrame:
    """Append ``mmlu_avg_{val,test}_5shot``: subject-weighted means of every metric.

    A metric is NaN in the average unless all four subjects have it.
    """
    parts = tasks["task"].str.extract(r"^mmlu_(?P<subject>.+)_(?P<split>val|test)_5shot$")
    weights = parts["subject"].map(OLMO_MMLU_WEIGHTS).dropna()
    if weights.empty:
        return tasks
    subset = tasks.loc[weights.index]
    metrics = [m for m in _METRICS if m in tasks]
    keys = [subset["_row"], "mmlu_avg_" + parts.loc[weights.index, "split"] + "_5shot"]
    weighted = subset[metrics].mul(weights, axis=0).groupby(keys)
    average = weighted.sum(min_count=len(OLMO_MMLU_WEIGHTS)) / sum(OLMO_MMLU_WEIGHTS.values())
    return pd.concat([tasks, average.rename_axis(["_row", "task"]).reset_index()], ignore_index=True)


def _checkpoints(run: str, role: str, data_dir: DataDir, kind: str) -> pd.DataFrame:
    wide, rows = _read_run(run, data_dir)
    if kind == "lm":
        parsed = {c: (m["dataset"], "loss") for c in wide if (m := _LM_RE.match(c))}
        long = _long(wide, parsed, "dataset")
    else:
        long = _with_mmlu_average(_long(wide, _task_columns(wide.columns), "task"))
    out = long.merge(rows, on="_row").drop(columns="_row")
    info = _run_info(run, role)
    return out.assign(**info, C=out["D"] * info["flops_per_token"], D_final=rows["D"].max())


def _final_points(ckpt: pd.DataFrame, moving_avg: int) -> pd.DataFrame:
    """Step-1 points: per (run, task) the mean of the last ``moving_avg`` checkpoints."""
    ordered = ckpt.sort_values(["run", "task", "D"], kind="stable")
    tail = ordered.groupby(["run", "task"], sort=False).tail(moving_avg)
    grouped = tail.groupby(["run", "task"], sort=False)
    out = grouped[[m for m in _METRICS if m in tail]].mean()
    last = grouped[["step", "D", "C"]].last()
    out = out.join(last).assign(n_avg=grouped.size()).reset_index()
    runs = ckpt.drop_duplicates("run")[_RUN_COLUMNS]
    return runs.merge(out, on="run")


def load_olmo_ladder(
    kind: Literal["checkpoints", "final", "lm"] = "checkpoints",
    *,
    moving_avg: int = 5,
    data_dir: DataDir = None,
) -> pd.DataFrame:
    """OLMo model-ladder evaluations (Bhagia et al. 2024) as a long table.

    Args:
        kind: ``"checkpoints"``: one row per (run, checkpoint, task), 22 tasks;
            ``"final"``: one row per (run, task), the paper's step-1 point
            (mean over the last ``moving_avg`` checkpoints, ``D`` of the last
            one); ``"lm"``: one row per (run, checkpoint, LM validation set).
        moving_avg: checkpoints averaged by ``kind="final"`` (paper: 5).

    Run columns (all kinds):
        run: run id (see the module docstring), e.g. ``"190M-1xC"``, ``"peteish13"``.
        size: ``"190M"``, ``"370M"``, ``"760M"``, ``"1.3B"``, ``"3.2B"``, ``"7B"``, ``"13B"``.
        N: non-embedding parameters (as in ``final.json``).
        flops_per_token: training FLOPs per token (``final.json``); ``C = D * flops_per_token``.
        xC: token multiple of Chinchilla-optimal (about 20 N); NaN for OLMo-2 runs.
        rerun: the ``*-1xC-rerun`` re-runs (denser evals, used for variance).
        role: ``"train"`` (the 16 fit runs of ``final.json``), ``"target"``
            (7B-4T = ``peteish7-anneal``, 13B-5T = ``peteish13``), or ``"other"``.
        D_final: tokens at the run's last checkpoint.

    Checkpoint columns:
        step: optimizer step (NaN for ``peteish7-anneal``, which has none).
        D: tokens seen (``throughput/total_tokens``, else ``step * batch_tokens``).
        C: FLOPs, ``D * flops_per_token``.
        lr: learning rate at the checkpoint (NaN for OLMo-2 runs); lr_peak; batch_tokens.

    Task columns (``checkpoints``/``final``):
        task: e.g. ``"hellaswag_val_5shot"``, ``"mmlu_stem_test_5shot"`` (20 splits,
            all 5-shot ranked classification), plus ``"mmlu_avg_val_5shot"`` and
            ``"mmlu_avg_test_5shot"``, the subject-weighted means
            (:data:`OLMO_MMLU_WEIGHTS`) the paper uses.
        bpb: task loss, bits per byte of the correct continuation (step-1 target).
        acc: accuracy (length-normalised; plain accuracy for BoolQ).
        soft: probability on the correct choice normalised over choices.
        soft_log: its log (TaskCE = ``-soft_log``).
        acc_mc: multiple-choice-format accuracy (OLMo-2 runs only, else NaN).
        n_avg: (``final`` only) checkpoints averaged.

    LM columns (``lm``): dataset (e.g. ``"c4_en"``, ``"pile"``; 11 sets) and
    loss (cross-entropy, nats/token).

    Example:
        >>> fin = load_olmo_ladder("final")  # doctest: +SKIP
        >>> fin.query("role == 'target' and task == 'mmlu_avg_test_5shot'")[["size", "bpb", "acc"]]  # doctest: +SKIP
    """
    if kind not in ("checkpoints", "final", "lm"):
        raise ValueError(f"kind must be 'checkpoints', 'final' or 'lm', not {kind!r}")
    if moving_avg < 1:
        raise ValueError(f"moving_avg must be >= 1, got {moving_avg}")
    roles = _roles(data_dir)
    frames = [
        _checkpoints(run, roles.get(run, "other"), data_dir, "lm" if kind == "lm" else "tasks")
        for run in OLMO_RUN_FILES
    ]
    ckpt = pd.concat(frames, ignore_index=True)
    if kind == "final":
        return _final_points(ckpt, moving_avg)
    key = "dataset" if kind == "lm" else "task"
    values = ["loss"] if kind == "lm" else [m for m in _METRICS if m in ckpt]
    ordered = _RUN_COLUMNS + _ROW_COLUMNS + [key] + values
    return ckpt[ordered].sort_values(["run", "D", key], kind="stable").reset_index(drop=True)
