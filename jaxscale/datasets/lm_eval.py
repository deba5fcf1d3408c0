"""Reader for lm-evaluation-harness result files."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["read_lm_eval"]

PathLike = str | os.PathLike[str]

COLUMNS = [
    "file", "model", "task", "metric", "filter", "value", "stderr", "n_shot",
    "revision", "step", "tokens", "params",
]
_STEP_RE = re.compile(r"step[_-]?(\d+)", re.IGNORECASE)
_TOKENS_RE = re.compile(r"tokens?[_-]?(\d+(?:\.\d+)?)([kmbt]?)", re.IGNORECASE)
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def read_lm_eval(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """Read lm-evaluation-harness result JSONs into one long table.

    Accepts a file, a directory (all ``*.json`` below it, recursively) or a list
    of either. Both formats are understood: the older one (``"acc"``,
    ``"acc_stderr"``, ``config.num_fewshot``) and the 0.4+ one
    (``"acc,none"``, ``"acc_stderr,none"``, ``n-shot``, ``model_name``,
    ``config.model_num_parameters``).

    Columns (one row per file, task and metric):
        file: the JSON path.
        model: ``model_name``, else ``pretrained=`` of ``model_args``, else ``config.model``.
        task: the ``results`` key (groups included, e.g. ``"mmlu"``).
        metric: e.g. ``"acc"``, ``"acc_norm"``, ``"exact_match"``.
        filter: the filter after the comma (``"none"``, ``"strict-match"``);
            missing for the old format.
        value: the metric value (as reported; accuracies in [0, 1]).
        stderr: its standard error (NaN when absent or ``"N/A"``).
        n_shot: few-shot count (``n-shot`` per task, else ``config.num_fewshot``).
        revision: ``revision=`` of ``model_args`` or ``config.model_revision``.
        step: training step parsed from the revision (``"step1000"``) or ``step=``.
        tokens: tokens parsed from the revision (``"tokens4B"`` -> 4e9) or ``tokens=``.
        params: ``config.model_num_parameters``.

    Example:
        >>> df = read_lm_eval("results/")  # doctest: +SKIP
        >>> df.query("metric == 'acc_norm'").pivot(index="step", columns="task", values="value")  # doctest: +SKIP
    """
    rows = [row for path in _expand(paths) for row in _file_rows(path)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _expand(paths: PathLike | Iterable[PathLike]) -> Iterator[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for item in map(Path, items):
        if item.is_dir():
            yield from sorted(item.rglob("*.json"))
        elif item.is_file():
            yield item
        else:
            raise FileNotFoundError(f"lm-eval result file or directory not found: {item}")


def _file_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f"{path} is not an lm-eval result file: it has no 'results' object")
    meta = _metadata(doc, path)
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: results[{task!r}] is not an object")
        n_shot = _n_shot(doc, task)
        for metric, filt, value, stderr in _metric_values(metrics):
            yield {**meta, "task": task, "metric": metric, "filter": filt, "value": value,
                   "stderr": stderr, "n_shot": n_shot}


def _metric_values(metrics: dict[str, Any]) -> Iterator[tuple[str, str | None, float, float]]:
    """Yield ``(metric, filter, value, stderr)`` for each numeric, non-stderr entry."""
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if name.endswith("_stderr") or _number(value) is None:
            continue
        stderr_key = f"{name}_stderr,{filt}" if filt else f"{name}_stderr"
        stderr = _number(metrics.get(stderr_key))
        yield name, filt or None, float(value), math.nan if stderr is None else stderr


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _model_args(config: dict[str, Any]) -> dict[str, Any]:
    """Parse ``model_args``: a dict, or a ``"k=v,k=v"`` string."""
    args = config.get("model_args") or {}
    if isinstance(args, dict):
        return args
    pairs = (part.split("=", 1) for part in str(args).split(",") if "=" in part)
    return {key.strip(): val.strip() for key, val in pairs}


def _metadata(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    config = doc.get("config") or {}
    args = _model_args(config)
    revision = args.get("revision") or config.get("model_revision")
    revision = None if revision in (None, "", "main") else str(revision)
    params = _number(config.get("model_num_parameters"))
    return {
        "file": str(path),
        "model": doc.get("model_name") or args.get("pretrained") or config.get("model")
        or path.stem,
        "revision": revision,
        "step": _parse_step(revision, args),
        "tokens": _parse_tokens(revision, args),
        "params": math.nan if params is None else params,
    }


def _parse_step(revision: str | None, args: dict[str, Any]) -> float:
    if "step" in args:
        return float(args["step"])
    match = _STEP_RE.search(revision or "")
    return float(match[1]) if match else math.nan


def _parse_tokens(revision: str | None, args: dict[str, Any]) -> float:
    text = f"tokens{args['tokens']}" if "tokens" in args else (revision or "")
    match = _TOKENS_RE.search(text)
    return float(match[1]) * _SCALE[match[2].lower()] if match else math.nan


def _n_shot(doc: dict[str, Any], task: str) -> float:
    """Few-shot count: ``n-shot[task]`` (0.4+ format), else ``config.num_fewshot``."""
    shots = doc.get("n-shot")
    value = shots.get(task) if isinstance(shots, dict) else None
    if value is None:
        value = (doc.get("config") or {}).get("num_fewshot")
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
