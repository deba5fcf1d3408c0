"""Loaders for the over-training testbed of Gadre et al. (2024): 104 models."""

from __future__ import annotations

import pandas as pd

from ._tables import DataDir, read_csv

__all__ = [
    "GADRE_ERROR_FIT_POINTS",
    "GADRE_LOSS_FIT_POINTS",
    "GADRE_LOSS_SPLITS",
    "GADRE_SIZES",
    "GADRE_SUBSET17",
    "GADRE_TARGET_POINTS",
    "gadre_task_table",
    "load_gadre",
]

GADRE_FILE = "gadre-overtraining/derived_flat_104models.csv"
GADRE_METADATA_FILE = "gadre-overtraining/exp_data/eval_metadata.csv"

#: Size name (file column ``model``) -> the paper's label (``scaling/constants.py``).
GADRE_SIZES: dict[str, str] = {
    "d=96_l=8_h=4": "0.011B",
    "d=512_l=8_h=4": "0.079B",
    "d=576_l=24_h=8": "0.154B",
    "d=1024_l=24_h=8": "0.411B",
    "open_lm_1b": "1.4B",
    "open_lm_7b": "6.9B",
}

#: The 8 validation-loss splits (suffixes of the ``loss_*`` columns); ``c4_val`` is the default.
GADRE_LOSS_SPLITS: tuple[str, ...] = (
    "openlm",
    "c4_val",
    "paloma_c4_en",
    "paloma_dolma_100_programing_languages",
    "paloma_falcon-refinedweb",
    "paloma_ptb",
    "paloma_redpajama",
    "val_de-en_100",
)

#: The paper's 17-task subset (``scaling/constants.py::SUBSET``); ``err_avg17`` averages it.
GADRE_SUBSET17: tuple[str, ...] = (
    "bigbench_operators",
    "pubmed_qa_labeled",
    "hellaswag_zeroshot",
    "boolq",
    "arc_easy",
    "coqa",
    "bigbench_dyck_languages",
    "lambada_openai",
    "bigbench_novel_concepts",
    "winograd",
    "bigbench_cs_algorithms",
    "commonsense_qa",
    "bigbench_qa_wikidata",
    "hellaswag",
    "copa",
    "squad",
    "piqa",
)

#: Table-1 fit set of the loss law L(C, M), per dataset: ``(model, M)`` pairs.
GADRE_LOSS_FIT_POINTS: tuple[tuple[str, float], ...] = (
    ("d=96_l=8_h=4", 20.0),
    ("d=512_l=8_h=4", 20.0),
    ("d=576_l=24_h=8", 20.0),
    ("d=1024_l=24_h=8", 20.0),
    ("d=96_l=8_h=4", 320.0),
)

#: Table-1 fit set of the error law Err(L): the loss points plus 1.4B at M = 20.
GADRE_ERROR_FIT_POINTS: tuple[tuple[str, float], ...] = GADRE_LOSS_FIT_POINTS + (
    ("open_lm_1b", 20.0),
)

#: Table-1 targets per dataset: 1.4B at the largest M trained, 6.9B at M = 20.
GADRE_TARGET_POINTS: dict[str, tuple[tuple[str, float], ...]] = {
    "c4_original": (("open_lm_1b", 80.0), ("open_lm_7b", 20.0)),
    "rpj": (("open_lm_1b", 640.0), ("open_lm_7b", 20.0)),
    "rw_original": (("open_lm_1b", 320.0), ("open_lm_7b", 20.0)),
}

_ID_COLUMNS = ["name", "dataset", "model", "N", "N_no_embed", "D", "cc_mult", "M", "flops"]


def _in_points(frame: pd.DataFrame, points: tuple[tuple[str, float], ...]) -> pd.Series:
    keys = set(points)
    return pd.Series(
        [(m, float(x)) in keys for m, x in zip(frame["model"], frame["M"])], index=frame.index
    )


def _is_target(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            (m, float(x)) in GADRE_TARGET_POINTS.get(d, ())
            for d, m, x in zip(frame["dataset"], frame["model"], frame["M"])
        ],
        index=frame.index,
    )


def load_gadre(*, data_dir: DataDir = None) -> pd.DataFrame:
    """One row per model of the Gadre et al. over-training testbed (104 rows).

    Reads the curated ``derived_flat_104models.csv`` (built from the repo's
    ``exp_data/models`` and ``exp_data/evals`` JSONs).

    Columns:
        name: model id ``"<dataset>-<model>-<cc_mult>"`` (the upstream JSON stem).
        dataset: training set as in the file: ``"c4_original"`` (C4, 34 models),
            ``"rpj"`` (RedPajama, 35), ``"rw_original"`` (RefinedWeb, 35).
        model: size name (``"d=96_l=8_h=4"`` .. ``"open_lm_7b"``); ``size`` is the
            paper's label (``"0.011B"`` .. ``"6.9B"``, see :data:`GADRE_SIZES`).
        N: parameters, embeddings included. N_no_embed: without embeddings.
        D: training tokens (= M N exactly). cc_mult: Chinchilla multiplier;
            M: tokens per parameter, 20 cc_mult (5 .. 640).
        C: training FLOPs, 6 N D (the file's ``flops``).
        loss_<split>, loss_lo95_<split>, loss_hi95_<split>: mean token
            cross-entropy (nats) and its 95 % CI on the 8 splits of
            :data:`GADRE_LOSS_SPLITS` (``loss_c4_val`` is the paper's default).
        acc_<task>: accuracy in [0, 1] on the 46 LLM-Foundry tasks.
        err_avg46, err_avg17: mean top-1 error (1 - acc) over the 46 tasks and
            over :data:`GADRE_SUBSET17` (the paper's default).
        fit_loss, fit_error: in the Table-1 fit set of the loss law
            (:data:`GADRE_LOSS_FIT_POINTS`) / the error law
            (:data:`GADRE_ERROR_FIT_POINTS`), per dataset.
        target: a Table-1 target (:data:`GADRE_TARGET_POINTS`).

    Example:
        >>> df = load_gadre()  # doctest: +SKIP
        >>> df[df.dataset.eq("rpj") & df.fit_loss][["size", "M", "loss_c4_val"]]  # doctest: +SKIP
    """
    loss_columns = [f"loss_{s}" for s in GADRE_LOSS_SPLITS]
    raw = read_csv(GADRE_FILE, data_dir, _ID_COLUMNS + loss_columns + ["err_avg46", "err_avg17"])
    out = raw.rename(columns={"flops": "C"})
    out["C"] = 6.0 * out["N"].astype(float) * out["D"].astype(float)
    out.insert(out.columns.get_loc("model") + 1, "size", out["model"].map(GADRE_SIZES))
    out["fit_loss"] = _in_points(out, GADRE_LOSS_FIT_POINTS)
    out["fit_error"] = _in_points(out, GADRE_ERROR_FIT_POINTS)
    out["target"] = _is_target(out)
    return out


def gadre_task_table(*, data_dir: DataDir = None) -> pd.DataFrame:
    """Long table of the 46 task accuracies: one row per (model, task), 4,784 rows.

    Columns:
        name, dataset, model, size, N, D, M, C: as in :func:`load_gadre`.
        task: LLM-Foundry task name (``acc_<task>`` in :func:`load_gadre`).
        accuracy: in [0, 1]. error: ``1 - accuracy``.
        category, task_type, shots: from ``exp_data/eval_metadata.csv``.
        random_baseline: chance accuracy as a fraction (the metadata's percent / 100).
        in_subset17: the task is in :data:`GADRE_SUBSET17`.

    Example:
        >>> t = gadre_task_table()  # doctest: +SKIP
        >>> t[t.in_subset17].groupby("name").error.mean()  # equals load_gadre().err_avg17  # doctest: +SKIP
    """
    models = load_gadre(data_dir=data_dir)
    acc_columns = [c for c in models.columns if c.startswith("acc_")]
    ids = ["name", "dataset", "model", "size", "N", "D", "M", "C"]
    long = models[ids + acc_columns].melt(id_vars=ids, var_name="task", value_name="accuracy")
    long["task"] = long["task"].str.removeprefix("acc_")
    long["error"] = 1.0 - long["accuracy"]
    meta = _task_metadata(data_dir)
    missing = sorted(set(long["task"]) - set(meta["task"]))
    if missing:
        raise ValueError(f"{GADRE_METADATA_FILE} has no rows for task(s) {missing}")
    long = long.merge(meta, on="task", how="left", validate="many_to_one")
    long["in_subset17"] = long["task"].isin(GADRE_SUBSET17)
    return long.sort_values(["name", "task"], kind="stable").reset_index(drop=True)


def _task_metadata(data_dir: DataDir) -> pd.DataFrame:
    columns = {
        "Eval Task": "task",
        "Task Category": "category",
        "Task Type": "task_type",
        "#shots": "shots",
        "Random baseline": "random_baseline",
    }
    meta = read_csv(GADRE_METADATA_FILE, data_dir, list(columns))
    meta = meta[list(columns)].rename(columns=columns)
    meta["random_baseline"] = meta["random_baseline"].astype(float) / 100.0
    return meta
