"""The one batch format shared by NeuNeu's sampler, model, trainer and evaluation.

A *sample* is (run, task, context end, target checkpoint): the accuracies observed up to the
context end, and the target checkpoint whose accuracy is predicted. A `Batch` holds B samples
padded to a fixed context length L (a bucket, so shapes never change between steps):

- ``ctx_y``     [B, L] float32: observed accuracy at each kept context checkpoint, oldest first.
- ``ctx_gap``   [B, L] float32: gap from this context point to the next kept one; for the last
  kept point, the gap to the target checkpoint. Measured in natural-log tokens (or log FLOPs)
  when known, checkpoint-index units otherwise (``gap_unit`` of the sampler says which).
- ``ctx_mask``  [B, L] bool: True where a context point is present (False = padding or dropped).
- ``features``  [B, F] float32: loss features of the target checkpoint (e.g. a 64-bin histogram
  of word-level inverse perplexity, or the run's validation losses and the task's loss), already
  normalised by the sampler. F may be 0 (no loss features).
- ``target``    [B] float32: the accuracy to predict (NaN at prediction time).
- ``weight``    [B] float32: sample weight (0 for batch padding rows).
- ``ctx_features`` [B, L, G] float32: per-context-point features (G may be 0), e.g. each context
  checkpoint's normalised loss features minus the target's, so the model can relate the accuracy
  it sees at each point to how far that point's loss is from the target's.

`Batch` is a NamedTuple of arrays, hence a JAX pytree: it can be sharded along axis 0 with
`jax.sharding.NamedSharding` and passed straight to a jitted step. Per-sample identification
(run, task, indices, x of the target) travels separately as a pandas frame (`SampleIndex`), never
into the model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Batch", "SampleIndex", "QUANTILES", "empty_batch"]

#: Quantile levels NeuNeu predicts, in order (the paper's).
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)

#: Columns of the per-sample index frame that travels beside a batch.
SampleIndex = pd.DataFrame  # columns: run, task, ctx_end, target_index, x (target), y (target)


class Batch(NamedTuple):
    """B padded samples; see the module docstring for the meaning of each field."""

    ctx_y: np.ndarray
    ctx_gap: np.ndarray
    ctx_mask: np.ndarray
    features: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    ctx_features: np.ndarray

    @property
    def size(self) -> int:
        return int(self.ctx_y.shape[0])

    @property
    def context_length(self) -> int:
        return int(self.ctx_y.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_ctx_features(self) -> int:
        return int(self.ctx_features.shape[2])


def empty_batch(batch_size: int, context_length: int, n_features: int, n_ctx_features: int = 0) -> Batch:
    """A zero batch of the given shape (all rows padding): for model initialisation and tracing."""
    return Batch(
        ctx_y=np.zeros((batch_size, context_length), np.float32),
        ctx_gap=np.zeros((batch_size, context_length), np.float32),
        ctx_mask=np.zeros((batch_size, context_length), bool),
        features=np.zeros((batch_size, n_features), np.float32),
        target=np.full((batch_size,), np.nan, np.float32),
        weight=np.zeros((batch_size,), np.float32),
        ctx_features=np.zeros((batch_size, context_length, n_ctx_features), np.float32),
    )
