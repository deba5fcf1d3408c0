"""Loaders for the classic curve benchmarks: Revisiting, BNSL, Chinchilla, ColPret."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._tables import DataDir, read_csv, read_npz

__all__ = ["load_bnsl_addition", "load_chinchilla", "load_colpret", "load_revisiting"]

REVISITING_FILES = (
    "revisiting_neural_scaling_laws/data/benchmark.lang.csv",
    "revisiting_neural_scaling_laws/data/benchmark.vision.csv",
)
BNSL_FILE = "broken_neural_scaling_laws/four_digit_addition__dataset_size_vs_test_cross_entropy.csv"
CHINCHILLA_FILE = "chinchilla-besiroglu/data/svg_extracted_data.csv"
COLPRET_FILE = "nslpfn/data/colpret.npz"

_REVISITING_COLUMNS = ["Domain", "Task", "Model", "Seen Examples", "Loss", "Training"]


def load_revisiting(*, data_dir: DataDir = None) -> pd.DataFrame:
    """The 92-curve extrapolation benchmark of Alabdulmohsin et al. (NeurIPS 2022).

    Reads ``benchmark.lang.csv`` and ``benchmark.vision.csv``, drops exact
    duplicate rows (every LM row of the lang file is stored 4 times: 687
    duplicates) and sorts by ``(task, x)`` (IC curves store their smallest x
    last). One row per observation, 19,595 rows.

    Columns:
        domain: ``"IC"`` (image classification, 72 curves), ``"NMT"`` (5),
            ``"LM"`` (5) or ``"BB"`` (BIG-bench, 10), as in the file's ``Domain``.
        task: unique curve id ``"<domain>/<source_task>/<model>"``.
        source_task: the file's ``Task`` (e.g. ``"bird_5"``, ``"log_perplexity"``,
            ``"val_loss"``, ``"('date', '1-shot')"``).
        model: the file's ``Model`` (e.g. ``"ViT/B/16"``, ``"6 Enc, 6 Dec"``, ``"262M"``).
        x: ``Seen Examples``, examples (IC, NMT) or tokens (LM, BB) seen.
        y: ``Loss``, lower is better: few-shot error rate (IC), log-perplexity
            (NMT), rescaled validation log-loss (LM, first point 0.999),
            normalised BIG-bench metric (BB); all in [0, 1].
        split: ``"train"`` (file ``Training == 1``) or ``"extrapolate"`` (0);
            every extrapolation x exceeds every train x of its curve.

    Example:
        >>> df = load_revisiting()  # doctest: +SKIP
        >>> df.groupby("domain").task.nunique().to_dict()  # doctest: +SKIP
        {'BB': 10, 'IC': 72, 'LM': 5, 'NMT': 5}
    """
    raw = pd.concat(
        [read_csv(f, data_dir, _REVISITING_COLUMNS) for f in REVISITING_FILES], ignore_index=True
    ).drop_duplicates()
    out = pd.DataFrame(
        {
            "domain": raw["Domain"],
            "task": raw["Domain"] + "/" + raw["Task"] + "/" + raw["Model"],
            "source_task": raw["Task"],
            "model": raw["Model"],
            "x": raw["Seen Examples"].astype(float),
            "y": raw["Loss"].astype(float),
            "split": np.where(raw["Training"] == 1, "train", "extrapolate"),
        }
    )
    return out.sort_values(["task", "x"], kind="stable").reset_index(drop=True)


def load_bnsl_addition(*, data_dir: DataDir = None) -> pd.DataFrame:
    """The 17-point 4-digit-addition curve of Caballero et al. (BNSL, ICLR 2023).

    Columns:
        x: training-set size (examples), 160 to 928.
        y: test cross-entropy (nats), 2.138 down to 0.557, sharp break near x = 600.
        split: ``"fit"`` for the first 14 points, ``"heldout"`` for the last 3
            (x = 800, 864, 928), as in the reference script.

    Example:
        >>> load_bnsl_addition().query("split == 'heldout'").x.tolist()  # doctest: +SKIP
        [800.0, 864.0, 928.0]
    """
    raw = read_csv(BNSL_FILE, data_dir, ["train_dataset_size", "test_cross_entropy", "split"])
    return pd.DataFrame(
        {
            "x": raw["train_dataset_size"].astype(float),
            "y": raw["test_cross_entropy"].astype(float),
            "split": raw["split"].astype(str),
        }
    )


def load_chinchilla(drop_highest: int = 5, *, data_dir: DataDir = None) -> pd.DataFrame:
    """Chinchilla Figure-4 points as extracted by Besiroglu et al. (2024).

    Args:
        drop_highest: drop the highest losses exactly as the replication does:
            keep rows whose loss is strictly below the ``drop_highest``-th
            largest loss (245 rows -> 240 with the default 5; 0 keeps all).

    Columns:
        N: model parameters (read off a log axis, 5.7e7 .. 1.6e10).
        C: training FLOPs (1.4e18 .. 1.3e22).
        D: training tokens, ``C / (6 N)`` (2.4e8 .. 3.2e11).
        loss: final training loss (nats/token) decoded from the point colour
            (2.08 .. 5.01, quantised to about 0.015).

    Example:
        >>> len(load_chinchilla()), len(load_chinchilla(drop_highest=0))  # doctest: +SKIP
        (240, 245)
    """
    raw = read_csv(CHINCHILLA_FILE, data_dir, ["Model Size", "Training FLOP", "loss"])
    n = raw["Model Size"].astype(float)
    c = raw["Training FLOP"].astype(float)
    out = pd.DataFrame({"N": n, "C": c, "D": c / (6.0 * n), "loss": raw["loss"].astype(float)})
    if drop_highest > 0:
        threshold = np.sort(out["loss"].to_numpy())[-drop_highest]
        out = out[out["loss"] < threshold]
    return out.reset_index(drop=True)


def load_colpret(*, drop_duplicates: bool = False, data_dir: DataDir = None) -> pd.DataFrame:
    """The 192 pretraining loss curves of NSL-PFN's ``colpret.npz`` (35,876 rows).

    Args:
        drop_duplicates: drop repeated (curve, tokens, loss) rows. The raw file
            repeats points: the ``lambda-*`` curves (the Revisiting LM curves)
            hold each point 4 times, and 16 curves have repeated ``tokens``.

    Columns:
        curve: model name, the npz key (e.g. ``"GPT-3 13B"``, ``"pythia-160m"``).
        tokens: tokens seen (1e8 .. 3e12), non-decreasing within a curve.
        loss: the curve's y. Units differ by family: OPT curves are perplexity,
            the rest cross-entropy (nats).

    Rows keep the file order within a curve (NSL-PFN splits each curve into its
    first ``max(3, min(int(0.5 n + 0.5), n - 1))`` points as context).

    Example:
        >>> load_colpret().curve.nunique()  # doctest: +SKIP
        192
    """
    arrays = read_npz(COLPRET_FILE, data_dir)
    for name, arr in arrays.items():
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise ValueError(f"{COLPRET_FILE}: curve {name!r} has shape {arr.shape}, expected (2, n)")
    frames = [
        pd.DataFrame({"curve": name, "tokens": arr[0].astype(float), "loss": arr[1].astype(float)})
        for name, arr in arrays.items()
    ]
    out = pd.concat(frames, ignore_index=True)
    if drop_duplicates:
        out = out.drop_duplicates(ignore_index=True)
    return out
