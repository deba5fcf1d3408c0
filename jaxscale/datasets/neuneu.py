"""Loader for the NeuNeu token-loss histograms (Hu et al. 2026)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ._tables import DataDir, read_npz

__all__ = ["load_neuneu_histograms"]

_RUN = "DataDecide-c4-300M"
#: kind -> (file, value range of the binned quantity).
_HISTOGRAMS: dict[str, tuple[str, tuple[float, float]]] = {
    "invp": (f"neuneu/data/{_RUN}/histograms_by_step_invp.npz", (0.0, 1.0)),
    "loss": (f"neuneu/data/{_RUN}/histograms_by_step.npz", (0.0, 15.0)),
}


def load_neuneu_histograms(
    kind: Literal["invp", "loss"] = "invp", *, data_dir: DataDir = None
) -> pd.DataFrame:
    """Per-checkpoint histograms of word-level validation losses of one DataDecide run.

    The run is DataDecide C4 300M (38 checkpoints, steps 0 .. 45,787); words are
    whitespace words of WebOrganizer shard 00000141.

    Args:
        kind: ``"invp"`` (default, the paper's input): 64 equal bins of the
            inverse perplexity ``p = exp(-loss)`` over [0, 1);
            ``"loss"``: 32 equal bins of the word loss (nats) clipped to [0, 15).

    Columns:
        run: ``"DataDecide-c4-300M"``.
        step: checkpoint step.
        bin: bin index (0-based). lo, hi: bin edges in the binned quantity.
        mass: fraction of words in the bin (sums to 1 per step).

    Example:
        >>> h = load_neuneu_histograms()  # doctest: +SKIP
        >>> h.pivot(index="step", columns="bin", values="mass").shape  # doctest: +SKIP
        (38, 64)
    """
    if kind not in _HISTOGRAMS:
        raise ValueError(f"kind must be one of {sorted(_HISTOGRAMS)}, not {kind!r}")
    relpath, (low, high) = _HISTOGRAMS[kind]
    arrays = read_npz(relpath, data_dir, ["steps", "histograms"])
    steps, hist = arrays["steps"], arrays["histograms"]
    if hist.ndim != 2 or hist.shape[0] != steps.shape[0]:
        raise ValueError(f"{relpath}: histograms {hist.shape} do not match steps {steps.shape}")
    n_steps, n_bins = hist.shape
    edges = np.linspace(low, high, n_bins + 1)
    return pd.DataFrame(
        {
            "run": _RUN,
            "step": np.repeat(steps.astype(np.int64), n_bins),
            "bin": np.tile(np.arange(n_bins), n_steps),
            "lo": np.tile(edges[:-1], n_steps),
            "hi": np.tile(edges[1:], n_steps),
            "mass": hist.astype(np.float64).ravel(),
        }
    )
