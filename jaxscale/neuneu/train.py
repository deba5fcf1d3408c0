"""Training NeuNeu: Optax AdamW, data parallel over local devices, Orbax checkpoints, exact resume.

One step = pinball loss on ``sampler(step)``, gradient clipped to ``max_grad_norm``, AdamW on a
linear-warmup + cosine-decay schedule (weight decay on matrices only, not on biases, norms and the
BOS vector). Design:

- **Jit.** The model and optimizer are split once into a graph definition and a state pytree
  (``nnx.split``); the step is a pure ``jax.jit`` function of (state, batch, step) that merges,
  differentiates, updates and splits again. Unlike ``nnx.jit`` this does no Python graph traversal
  per call (it matters for small models on CPU) and takes explicit ``in_shardings``/``out_shardings``.
- **Data parallel.** A 1-D ``Mesh`` over the devices (axis ``"data"``): the batch is placed with
  ``NamedSharding(mesh, P("data"))`` (split along rows), the state replicated (``P()``); XLA inserts
  the gradient all-reduce. ``batch_size`` must be divisible by the device count.
- **Precision.** Params and optimizer state are float32; with ``bf16`` (default: on GPU/TPU, not
  on CPU) the encoder computes in bfloat16 (the readout and the loss stay float32).
- **Determinism.** Dropout keys are ``fold_in(key(seed), step)`` and batches are ``sampler(step)``,
  so a run resumed from a checkpoint at step k reproduces the uninterrupted run exactly.
- **Checkpoints.** An Orbax ``CheckpointManager`` in ``checkpoint_dir`` saves model + optimizer
  state (the step counter included) and, as JSON, the step, the history and both configs, every
  ``checkpoint_every`` steps, at ``stop_after`` and at the end; `train` resumes from the latest.

    >>> from jaxscale.neuneu import model_config, synthetic_sampler
    >>> sampler = synthetic_sampler(64, 8, batch_size=64, context_length=32, n_features=16, seed=0)
    >>> trained = train(sampler, model_config("small", n_features=16), TrainConfig(steps=300, batch_size=64))
    >>> trained.predict(sampler(10**6)).shape
    (64, 5)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pandas as pd
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from jaxscale.neuneu.batch import Batch
from jaxscale.neuneu.model import ModelConfig, NeuNeu, pinball_loss

__all__ = ["TrainConfig", "Trained", "TrainedEnsemble", "load_trained", "train", "make_optimizer", "device_batch"]

_HISTORY_COLUMNS = ["step", "loss", "learning_rate", "grad_norm", "seconds"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: the paper's AdamW 6e-4, wd 0.033, warmup 10 %, clip 1.0).

    Attributes:
        steps: total optimizer steps; batch ``sampler(i)`` feeds step i (0-based).
        batch_size: rows per step (divisible by the number of devices).
        learning_rate, weight_decay, warmup_ratio, max_grad_norm: AdamW on warmup + cosine decay to 0.
        seed: parameter init and dropout keys.
        bf16: bfloat16 compute; None = auto (on GPU/TPU, not on CPU).
        checkpoint_every: steps between checkpoints (when a ``checkpoint_dir`` is given).
        log_every: steps between history rows (and progress-bar updates of the loss).
        eval_every: steps between calls of ``eval_fn``; None = at checkpoints and at the end.
        keep_checkpoints: how many recent checkpoints Orbax keeps.

    Example:
        >>> TrainConfig(steps=1000, batch_size=128, log_every=50)
    """

    steps: int
    batch_size: int
    learning_rate: float = 6e-4
    weight_decay: float = 0.033
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    bf16: bool | None = None
    checkpoint_every: int = 1000
    log_every: int = 10
    eval_every: int | None = None
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError(f"steps, batch_size, log_every and checkpoint_every must be >= 1: {self}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`."""
        return cls(**d)


def make_optimizer(config: TrainConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping then AdamW (decay on >= 2-D params) on warmup + cosine decay; and the schedule.

    Example:
        >>> tx, schedule = make_optimizer(TrainConfig(steps=100, batch_size=8))
        >>> float(schedule(10))  # peak after 10 % warmup
        0.0006
    """
    c = config
    return _optimizer(c.steps, c.learning_rate, c.weight_decay, c.warmup_ratio, c.max_grad_norm)


@functools.lru_cache(maxsize=16)
def _optimizer(steps: int, learning_rate: float, weight_decay: float, warmup_ratio: float,
               max_grad_norm: float) -> tuple[optax.GradientTransformation, optax.Schedule]:
    # Cached: equal settings give the same `tx` object, hence an equal graphdef and a cached compiled step.
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=learning_rate, warmup_steps=int(warmup_ratio * steps), decay_steps=steps,
        end_value=0.0)
    tx = optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(schedule, weight_decay=weight_decay, mask=_decay_mask),
    )
    return tx, schedule


def _decay_mask(params: Any) -> Any:
    """Weight decay on matrices and kernels only (not on biases, norm scales, the BOS vector)."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def device_batch(batch: Batch, sharding: jax.sharding.Sharding | None = None) -> Batch:
    """A `Batch` as device arrays with explicit dtypes (float32, mask bool), optionally sharded.

    Example:
        >>> from jaxscale.neuneu.batch import empty_batch
        >>> device_batch(empty_batch(8, 16, 0)).ctx_y.dtype
        dtype('float32')
    """
    host = Batch(*(np.asarray(v, bool if name == "ctx_mask" else np.float32) for name, v in zip(Batch._fields, batch)))
    return jax.device_put(host, sharding) if sharding is not None else Batch(*(jnp.asarray(v) for v in host))


@dataclasses.dataclass
class Trained:
    """A trained NeuNeu model with its configs, step count and training history.

    ``model_config`` is the configuration the model was built with (``dtype`` bfloat16 if it was
    trained with bf16). ``history`` has a row every ``log_every`` steps and at the last step: step,
    loss (of that step's batch), learning_rate, grad_norm (before clipping), seconds (cumulative
    training time), plus the columns returned by ``eval_fn``.

    Example:
        >>> trained.save("/tmp/neuneu")
        >>> Trained.load("/tmp/neuneu").predict(batch)   # [B, 5] float64, ordered
    """

    model: NeuNeu
    model_config: ModelConfig
    train_config: TrainConfig
    step: int
    history: pd.DataFrame

    def predict(self, batch: Batch, *, batch_size: int = 1024) -> np.ndarray:
        """Quantile predictions [B, n_quantiles] float64, non-decreasing along axis 1.

        Rows are processed in chunks of ``batch_size`` (the last one padded), so at most one
        compilation per chunk size.

        Example:
            >>> trained.predict(batch)[:, trained.model_config.median_index]   # the point forecast
        """
        n = len(batch.ctx_y)
        chunk = max(1, min(batch_size, n))
        graphdef, state = nnx.split(self.model)
        out = []
        for start in range(0, n, chunk):
            part = Batch(*(np.asarray(v)[start : start + chunk] for v in batch))
            pad = chunk - len(part.ctx_y)
            if pad:
                part = Batch(*(np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for v in part))
            out.append(np.asarray(_forward(graphdef, state, device_batch(part)))[: chunk - pad])
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.model_config.quantiles)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters (Orbax) and ``trained.json`` (configs, step, history) to directory ``path``.

        Example:
            >>> trained.save("/tmp/neuneu")
        """
        path = Path(path).absolute()
        path.mkdir(parents=True, exist_ok=True)
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(path / "params", nnx.state(self.model, nnx.Param), force=True)
            ckptr.wait_until_finished()
        meta = _meta(self.model_config, self.train_config, self.step, self.history)
        (path / "trained.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: str | None = None) -> "Trained":
        """Read a model written by `save`; ``dtype`` overrides the compute dtype (e.g. float32 on CPU).

        Example:
            >>> Trained.load("/tmp/neuneu", dtype="float32")
        """
        path = Path(path).absolute()
        meta = json.loads((path / "trained.json").read_text())
        mcfg = ModelConfig.from_dict(meta["model_config"])
        if dtype is not None:
            mcfg = dataclasses.replace(mcfg, dtype=dtype)
        abstract = nnx.eval_shape(lambda: NeuNeu(mcfg, rngs=nnx.Rngs(0)))
        graphdef, abstract_state = nnx.split(abstract)
        with ocp.StandardCheckpointer() as ckptr:
            state = ckptr.restore(path / "params", abstract_state)
        return cls(nnx.merge(graphdef, state), mcfg, TrainConfig.from_dict(meta["train_config"]), meta["step"],
                   _history_frame(meta["history"]))


@dataclasses.dataclass
class TrainedEnsemble:
    """Several `Trained` models of one architecture whose quantiles are averaged.

    The average of non-decreasing quantile vectors is non-decreasing, so the ensemble's output
    keeps the ordering; averaging seeds mostly removes the variance of one short training run.
    ``model``, ``model_config``, ``train_config``, ``step`` and ``history`` are the first member's.

    Example:
        >>> ens = TrainedEnsemble([train(s0, cfg, tc0), train(s1, cfg, tc1)])   # doctest: +SKIP
        >>> ens.predict(batch).shape                                           # doctest: +SKIP
        (64, 5)
    """

    members: list[Trained]

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one model")

    model = property(lambda self: self.members[0].model)
    model_config = property(lambda self: self.members[0].model_config)
    train_config = property(lambda self: self.members[0].train_config)
    step = property(lambda self: self.members[0].step)
    history = property(lambda self: self.members[0].history)

    def predict(self, batch: Batch, *, batch_size: int = 1024) -> np.ndarray:
        """Mean over members of `Trained.predict` ([B, n_quantiles], ordered)."""
        return np.mean([m.predict(batch, batch_size=batch_size) for m in self.members], axis=0)

    def save(self, path: str | os.PathLike) -> None:
        """Each member in ``path/member{i}`` and ``ensemble.json`` (the member count)."""
        path = Path(path).absolute()
        path.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(self.members):
            m.save(path / f"member{i}")
        (path / "ensemble.json").write_text(json.dumps({"members": len(self.members)}))

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: str | None = None) -> "TrainedEnsemble":
        """Read a directory written by `save`."""
        path = Path(path).absolute()
        n = int(json.loads((path / "ensemble.json").read_text())["members"])
        return cls([Trained.load(path / f"member{i}", dtype=dtype) for i in range(n)])


def load_trained(path: str | os.PathLike, *, dtype: str | None = None) -> Trained | TrainedEnsemble:
    """`TrainedEnsemble.load` when ``path`` holds an ensemble, `Trained.load` otherwise."""
    if (Path(path) / "ensemble.json").exists():
        return TrainedEnsemble.load(path, dtype=dtype)
    return Trained.load(path, dtype=dtype)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch) -> jax.Array:
    return nnx.merge(graphdef, state)(batch)


def _meta(mcfg: ModelConfig, tcfg: TrainConfig, step: int, history: pd.DataFrame | list[dict],
          seconds: float | None = None) -> dict[str, Any]:
    rows = history.to_dict("records") if isinstance(history, pd.DataFrame) else history
    return {"step": step, "seconds": seconds, "model_config": mcfg.to_dict(), "train_config": tcfg.to_dict(),
            "history": rows}


def _history_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(_HISTORY_COLUMNS + [k for r in rows for k in r])))
    return frame.astype({"step": int})


def _use_bf16(flag: bool | None) -> bool:
    return jax.default_backend() != "cpu" if flag is None else flag


@functools.lru_cache(maxsize=16)
def _make_step(graphdef: nnx.GraphDef, quantiles: tuple[float, ...], mesh: Mesh) -> Callable:
    """The jitted train step (state, batch, seed, step) -> (state, loss, grad_norm), sharded over ``mesh``.

    Cached, and the seed is an argument, so runs that differ only in seed share one compilation.
    """
    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    def step_fn(state: nnx.State, batch: Batch, seed: jax.Array,
                step: jax.Array) -> tuple[nnx.State, jax.Array, jax.Array]:
        model, optimizer = nnx.merge(graphdef, state)
        key = jax.random.fold_in(jax.random.key(seed), step)

        def loss_fn(model: NeuNeu) -> jax.Array:
            pred = model(batch, deterministic=False, rngs=nnx.Rngs(dropout=key))
            return pinball_loss(pred, batch.target, batch.weight, quantiles)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss, optax.tree.norm(grads)

    return jax.jit(step_fn, in_shardings=(replicated, rows, replicated, replicated),
                   out_shardings=replicated)


def train(sampler: Callable[[int], Batch], model_config: ModelConfig, train_config: TrainConfig, *,
          checkpoint_dir: str | os.PathLike | None = None, progress: bool = True, stop_after: int | None = None,
          eval_fn: Callable[[Trained], Mapping[str, float]] | None = None,
          devices: Sequence[jax.Device] | None = None) -> Trained:
    """Train NeuNeu on ``sampler(0), sampler(1), ...`` for ``train_config.steps`` steps.

    Args:
        sampler: pure function of the step number returning a `Batch` of ``batch_size`` rows
            (fixed shapes); its ``n_features`` must match ``model_config.n_features``.
        model_config: the architecture (its ``dtype`` is set from ``train_config.bf16``).
        train_config: optimisation settings.
        checkpoint_dir: Orbax checkpoint directory; if it holds checkpoints, training resumes from
            the latest (model, optimizer, step, history) and continues to ``steps``.
        progress: show a tqdm progress bar.
        stop_after: stop (saving a checkpoint) once this many steps are done, e.g. to simulate an
            interruption; the result is the model at that step.
        eval_fn: called with the current `Trained` every ``eval_every`` steps and at the end; the
            returned mapping becomes columns of the history.
        devices: devices of the data-parallel mesh (default: all local devices); single process only.

    Returns:
        The `Trained` model.

    Example:
        >>> trained = train(sampler, model_config("small", n_features=16), TrainConfig(steps=300, batch_size=64),
        ...                 checkpoint_dir="/tmp/ckpt", progress=False)
        >>> trained.history.tail(1)
    """
    tcfg = train_config
    devices = list(jax.local_devices() if devices is None else devices)
    if any(d.process_index != jax.process_index() for d in devices):
        raise ValueError("train() is single-process: pass devices of this process only (jax.local_devices())")
    if tcfg.batch_size % len(devices):
        raise ValueError(f"batch_size {tcfg.batch_size} is not divisible by the number of devices ({len(devices)}); "
                         f"use a multiple of {len(devices)} or pass devices=")
    if getattr(sampler, "n_ctx_features", model_config.n_ctx_features) != model_config.n_ctx_features:
        raise ValueError(f"sampler gives {sampler.n_ctx_features} per-context-point features, "
                         f"model_config.n_ctx_features={model_config.n_ctx_features}")
    if getattr(sampler, "n_features", model_config.n_features) != model_config.n_features:
        raise ValueError(f"sampler gives {sampler.n_features} features, "
                         f"model_config.n_features={model_config.n_features}")
    mcfg = dataclasses.replace(model_config, dtype="bfloat16" if _use_bf16(tcfg.bf16) else "float32")
    mesh = Mesh(np.array(devices), ("data",))
    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    model = NeuNeu(mcfg, rngs=nnx.Rngs(params=tcfg.seed))
    tx, schedule = make_optimizer(tcfg)
    graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
    state = jax.device_put(state, replicated)
    step_fn = _make_step(graphdef, mcfg.quantiles, mesh)

    start, history, seconds = 0, [], 0.0
    manager = None
    if checkpoint_dir is not None:
        manager = ocp.CheckpointManager(
            Path(checkpoint_dir).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=tcfg.keep_checkpoints, create=True))
        if manager.latest_step() is not None:
            restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state), meta=ocp.args.JsonRestore()))
            meta = restored.meta
            if dataclasses.replace(ModelConfig.from_dict(meta["model_config"]), dtype=mcfg.dtype) != mcfg:
                raise ValueError(f"checkpoint in {checkpoint_dir} is of another model: {meta['model_config']}")
            state, start, history = restored.state, int(meta["step"]), list(meta["history"])
            seconds = float(meta["seconds"])

    end = tcfg.steps if stop_after is None else min(tcfg.steps, stop_after)
    eval_every = tcfg.eval_every or tcfg.checkpoint_every

    def snapshot(done: int) -> Trained:
        return Trained(nnx.merge(graphdef, state)[0], mcfg, tcfg, done, _history_frame(history))

    def save(done: int) -> None:
        if manager is not None:
            meta = _meta(mcfg, tcfg, done, history, time.perf_counter() - t0)
            manager.save(done, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    bar = tqdm(total=tcfg.steps, initial=start, disable=not progress, desc="neuneu", unit="step")
    t0 = time.perf_counter() - seconds
    try:
        for step in range(start, end):
            host = sampler(step)
            if len(host.ctx_y) != tcfg.batch_size:
                raise ValueError(f"sampler({step}) gave {len(host.ctx_y)} rows, batch_size is {tcfg.batch_size}")
            batch = device_batch(host, rows)
            state, loss, grad_norm = step_fn(state, batch, np.int32(tcfg.seed), np.int32(step))
            done = step + 1
            bar.update(1)
            do_log = done % tcfg.log_every == 0 or done == tcfg.steps
            do_eval = eval_fn is not None and (done % eval_every == 0 or done == tcfg.steps)
            if do_log or do_eval:
                row = {"step": done, "loss": float(loss), "learning_rate": float(schedule(step)),
                       "grad_norm": float(grad_norm), "seconds": time.perf_counter() - t0}
                if do_eval:
                    row.update({k: float(v) for k, v in eval_fn(snapshot(done)).items()})
                history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}")
            if done % tcfg.checkpoint_every == 0 or done == end:
                save(done)
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return snapshot(max(start, end))
