"""Loader for Proteus-2k (Zhang et al. 2026, "Prescriptive Scaling")."""

from __future__ import annotations

import pandas as pd

from ._tables import DataDir, read_csv

__all__ = ["PROTEUS_TASKS", "load_proteus"]

PROTEUS_FILE = "prescriptive-scaling/derived_proteus_2k_main6_with_compute.csv"

#: The paper's 6 main tasks (columns of the curated file) and their lm-eval source metric.
PROTEUS_TASKS: dict[str, str] = {
    "IFEval": "leaderboard_ifeval_inst_level_strict_acc_none",
    "BBH": "leaderboard_bbh_acc_norm_none",
    "MATH_Lvl5": "leaderboard_math_hard_exact_match_none",
    "GPQA": "leaderboard_gpqa_acc_norm_none",
    "MUSR": "leaderboard_musr_acc_norm_none",
    "MMLU_PRO": "leaderboard_mmlu_pro_acc_none",
}

_COLUMNS = {
    "model_id": "model",
    "mapped_base_model": "base_model",
    "family_hint": "family",
    "last_modified": "date",
    "pretrain_flops": "flops",
    "log10_flops": "log10_flops",
    "num_params_B": "params",
    "compute_source": "compute_source",
    "downloads": "downloads",
}


def load_proteus(*, data_dir: DataDir = None) -> pd.DataFrame:
    """Proteus-2k: 2,450 Hugging Face models x 6 leaderboard tasks (14,700 rows).

    One row per (model, task), from the curated
    ``derived_proteus_2k_main6_with_compute.csv``.

    Columns:
        model: Hugging Face model id.
        base_model: the pretrained base model whose compute is used (51 bases).
        family: family hint (missing for the 40 newer models).
        date: HF ``last_modified`` timestamp (pandas datetime, UTC), 2022-09 .. 2026-01.
        flops: pretraining FLOPs of the base model (1.2e21 .. 6.6e24; 4 significant digits).
        log10_flops: log10 of the FLOPs as given in the file (3 decimals).
        params: parameters (count, from ``num_params_B`` x 1e9).
        compute_source: where the FLOPs come from (``new_eval_leaderboard.csv``
            for 2,410 models, ``6*T*B`` from token and parameter counts for 40).
        downloads: HF downloads (missing for the 40 newer models).
        task: one of :data:`PROTEUS_TASKS` (``"IFEval"``, ``"BBH"``, ``"MATH_Lvl5"``,
            ``"GPQA"``, ``"MUSR"``, ``"MMLU_PRO"``).
        score: the task score in [0, 1] (lm-eval Open LLM Leaderboard v2 metric).

    Example:
        >>> df = load_proteus()  # doctest: +SKIP
        >>> df[df.task == "BBH"].plot.scatter("log10_flops", "score")  # doctest: +SKIP
    """
    raw = read_csv(PROTEUS_FILE, data_dir, [*_COLUMNS, *PROTEUS_TASKS])
    wide = raw[[*_COLUMNS, *PROTEUS_TASKS]].rename(columns=_COLUMNS)
    wide["date"] = pd.to_datetime(wide["date"], utc=True, format="ISO8601")
    wide["params"] = wide["params"].astype(float) * 1e9
    long = wide.melt(
        id_vars=list(_COLUMNS.values()), value_vars=list(PROTEUS_TASKS),
        var_name="task", value_name="score",
    )
    return long.reset_index(drop=True)
