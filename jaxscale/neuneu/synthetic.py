"""A synthetic, learnable family of accuracy trajectories for testing NeuNeu end to end.

Each (run, task) pair has a logistic accuracy curve in log tokens,

    acc = floor_k + (ceil_k - floor_k) * sigmoid(slope_rk * (x - mid_r - shift_k)) + noise,

on ``n_checkpoints`` checkpoints evenly spaced in x = ln(tokens) over [ln 1e8, ln 1e11]. Runs differ
in their midpoint (how fast they learn), tasks in chance level, ceiling, difficulty and steepness.
The loss features of a checkpoint are a run-level ``n_features``-bin histogram whose centre moves
with the run's progress sigmoid(x - mid_r), so they are informative of the curve's level at the
target (the task-level part must come from the context). Gaps are in natural-log tokens.

    >>> sampler = synthetic_sampler(n_runs=32, n_tasks=8, batch_size=64, context_length=32, n_features=16, seed=0)
    >>> batch = sampler(0)                     # a Batch of 64 rows; sampler(k) is a pure function of k
    >>> test = synthetic_eval_batch(sampler, 512, seed=1)   # fresh runs of the same family
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxscale.neuneu.batch import Batch

__all__ = ["SyntheticSampler", "synthetic_sampler", "synthetic_eval_batch"]

_X_LO, _X_HI = np.log(1e8), np.log(1e11)


def _curves(rng: np.random.Generator, n_runs: int, n_tasks: int, x: np.ndarray,
            noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Noisy accuracies [runs, tasks, C] and run progress [runs, C] of a fresh draw from the family."""
    mid = rng.uniform(_X_LO + 1.5, _X_HI - 1.5, n_runs)
    floor = rng.uniform(0.2, 0.3, n_tasks)
    ceil = rng.uniform(0.55, 0.9, n_tasks)
    shift = rng.normal(0.0, 0.8, n_tasks)
    slope = rng.uniform(0.6, 1.5, n_tasks) * rng.uniform(0.8, 1.2, (n_runs, n_tasks))
    z = slope[..., None] * (x - mid[:, None, None] - shift[None, :, None])
    acc = floor[:, None] + (ceil - floor)[:, None] / (1 + np.exp(-z))
    acc = np.clip(acc + noise * rng.standard_normal(acc.shape), 0.0, 1.0)
    progress = 1 / (1 + np.exp(-(x - mid[:, None])))
    return acc.astype(np.float32), progress


def _histograms(progress: np.ndarray, n_features: int) -> np.ndarray:
    """Normalised Gaussian-bump histograms [..., F] centred at 0.2 + 0.6 * progress, scaled to mean 0."""
    centres = (np.arange(n_features) + 0.5) / n_features
    h = np.exp(-0.5 * ((centres - (0.2 + 0.6 * progress[..., None])) / 0.1) ** 2)
    h /= h.sum(-1, keepdims=True)
    return (h * n_features - 1.0).astype(np.float32)


class SyntheticSampler:
    """Callable ``(step) -> Batch`` over a fixed draw of synthetic curves; see the module docstring.

    Attributes ``context_length``, ``n_features``, ``batch_size`` and ``gap_unit`` describe its
    batches. Rows: a random (run, task), context end c, target j in (c, c + max_gap]; the context
    is checkpoints 0..c with intermediate points dropped with probability ``drop_prob`` (the last is
    always kept), the most recent ``context_length`` kept points left-aligned and padded on the right.
    """

    gap_unit = "log_tokens"

    def __init__(self, n_runs: int, n_tasks: int, batch_size: int, context_length: int, n_features: int, seed: int,
                 *, n_checkpoints: int = 40, noise: float = 0.01, drop_prob: float = 0.4, max_gap: int = 10):
        self.n_runs, self.n_tasks, self.batch_size = n_runs, n_tasks, batch_size
        self.context_length, self.n_features, self.seed = context_length, n_features, seed
        self.noise, self.drop_prob, self.max_gap = noise, drop_prob, max_gap
        self.x = np.linspace(_X_LO, _X_HI, n_checkpoints)
        self.acc, self.progress = _curves(np.random.default_rng([seed, 0]), n_runs, n_tasks, self.x, noise)

    def __call__(self, step: int) -> Batch:
        """The training batch of ``step`` (a pure function of (seed, step))."""
        rng = np.random.default_rng([self.seed, 1, step])
        return self._sample(rng, self.acc, self.progress, self.batch_size, self.drop_prob)

    def _sample(self, rng: np.random.Generator, acc: np.ndarray, progress: np.ndarray, size: int,
                drop_prob: float) -> Batch:
        n_runs, n_tasks, n_ckpt = acc.shape
        length = self.context_length
        r, k = rng.integers(0, n_runs, size), rng.integers(0, n_tasks, size)
        c = rng.integers(0, n_ckpt - 1, size)
        j = c + 1 + (rng.random(size) * np.minimum(self.max_gap, n_ckpt - 1 - c)).astype(int)
        idx = np.arange(n_ckpt)
        keep = (rng.random((size, n_ckpt)) >= drop_prob) & (idx <= c[:, None])
        keep[np.arange(size), c] = True
        keep &= np.cumsum(keep[:, ::-1], axis=1)[:, ::-1] <= length  # the most recent `length` kept
        n_kept = keep.sum(1)
        order = np.argsort(~keep, axis=1, kind="stable")  # kept indices first, in time order
        order = np.pad(order, ((0, 0), (0, max(0, length - n_ckpt))))[:, :length]
        mask = np.arange(length) < n_kept[:, None]
        nxt = np.where(np.arange(length) + 1 < n_kept[:, None], np.roll(order, -1, axis=1), j[:, None])
        features = (_histograms(progress[r, j], self.n_features) if self.n_features
                    else np.zeros((size, 0), np.float32))
        return Batch(
            ctx_y=np.where(mask, acc[r[:, None], k[:, None], order], 0.0).astype(np.float32),
            ctx_gap=np.where(mask, self.x[nxt] - self.x[order], 0.0).astype(np.float32),
            ctx_mask=mask,
            features=features,
            target=acc[r, k, j].astype(np.float32),
            weight=np.ones(size, np.float32),
            ctx_features=np.zeros((size, length, 0), np.float32),
        )

    def eval_batch(self, n: int, *, seed: int, fresh_runs: bool = True) -> Batch:
        """``n`` evaluation rows with known targets and no dropped context points.

        With ``fresh_runs`` the curves are a new draw of runs from the same family (same tasks'
        distribution, unseen runs), so the batch measures generalisation, not memorisation.
        """
        rng = np.random.default_rng([self.seed, 2, seed])
        if fresh_runs:
            acc, progress = _curves(rng, self.n_runs, self.n_tasks, self.x, self.noise)
        else:
            acc, progress = self.acc, self.progress
        return self._sample(rng, acc, progress, n, 0.0)


def synthetic_sampler(n_runs: int, n_tasks: int, batch_size: int, context_length: int, n_features: int, seed: int,
                      **kwargs: Any) -> SyntheticSampler:
    """A `SyntheticSampler` (``kwargs``: n_checkpoints, noise, drop_prob, max_gap).

    Example:
        >>> s = synthetic_sampler(32, 8, batch_size=64, context_length=32, n_features=16, seed=0)
        >>> s(3).ctx_y.shape, s.context_length, s.n_features
        ((64, 32), 32, 16)
    """
    return SyntheticSampler(n_runs, n_tasks, batch_size, context_length, n_features, seed, **kwargs)


def synthetic_eval_batch(sampler: SyntheticSampler, n: int, *, seed: int = 0, fresh_runs: bool = True) -> Batch:
    """An evaluation batch of ``n`` rows with known targets from ``sampler``'s family
    (see `SyntheticSampler.eval_batch`).

    Example:
        >>> test = synthetic_eval_batch(synthetic_sampler(8, 4, 16, 16, 0, seed=0), 100)
        >>> test.target.shape
        (100,)
    """
    return sampler.eval_batch(n, seed=seed, fresh_runs=fresh_runs)
