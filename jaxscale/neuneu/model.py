"""The NeuNeu predictor: a bidirectional RoPE transformer over an accuracy trajectory (Flax NNX).

Hu et al. 2026 (arXiv 2601.19831), with the unordered-quantile flaw fixed. The token sequence is

    [BOS, soft prompt (from the loss features; absent if ``soft_prompt="none"``), context...]

- a context token embeds (y, signed-log gap, y - y_last, and the point's ``Batch.ctx_features``
  when ``n_ctx_features`` > 0) through a 2-layer GELU MLP; padding and
  dropped points (``ctx_mask`` False) are zeroed and masked out of attention as keys, so they
  cannot change the output;
- the soft prompt comes from ``Batch.features``: an MLP (histograms, feature vectors) or a
  1-D strided CNN (long raw word-probability vectors, the paper's 256k-long input);
- pre-LayerNorm encoder blocks with multi-head self-attention and rotary position embeddings
  (RoPE) over token positions, exact GELU MLP, dropout; the last block computes only the BOS
  query (the one output read), which saves about half the work of a 2-block model;
- the learned BOS token is read out into the quantiles, **ordered by construction**:
  ``q = base + output_scale * (m, m ± cumulative softplus offsets)``, where ``base`` is the last
  observed accuracy (0.5 for rows without context). The model thus predicts the *change* from the
  last observation, which starts from the persistence forecast and trains well (``base="constant"``
  offsets them from a fixed value instead, e.g. the prior itself in residual mode); outputs are not
  clipped to [0, 1] (clipping would zero the gradients outside).

Inputs are sanitised (NaN -> 0, accuracies clipped to [0, 1], gaps and features clipped), so the
output is finite and ordered for any input. Parameters are float32 always; ``dtype`` sets the
compute dtype of the encoder (bfloat16 on accelerators), while the readout runs in float32.

    >>> from jaxscale.neuneu.batch import empty_batch
    >>> cfg = model_config("small", n_features=64)
    >>> model = NeuNeu(cfg, rngs=nnx.Rngs(0))
    >>> q = model(empty_batch(8, 16, 64))   # [8, 5], ordered along axis 1
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxscale.neuneu.batch import QUANTILES, Batch

__all__ = ["ModelConfig", "CONFIGS", "model_config", "NeuNeu", "count_params", "pinball_loss"]

_SOFT_PROMPTS = ("mlp", "cnn", "none")
_BASES = ("last", "recent", "constant")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_GAP_BOUND = 1e6  # gaps are clipped to +-this before the signed log
_FEATURE_BOUND = 1e4  # features are clipped to +-this
_CNN_MIN_FEATURES = 1024  # `model_config` gives shorter feature vectors an MLP soft prompt
_NEG = -1e30  # attention logit of masked keys (finite: no NaN even if a row were fully masked)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a NeuNeu model, as plain data (JSON round-trips via `to_dict`/`from_dict`).

    Attributes:
        width, depth, heads, ff: transformer width, number of blocks, attention heads, MLP width.
        dropout: dropout rate on attention weights, residual branches and the MLP hidden layer.
        n_features: F of ``Batch.features`` (0 = no loss features).
        soft_prompt: ``"mlp"`` (histogram / feature vector), ``"cnn"`` (1-D CNN over a long raw
            vector) or ``"none"`` (features ignored; no soft-prompt token).
        quantiles: predicted quantile levels, strictly increasing in (0, 1).
        cnn_channels, cnn_kernel, cnn_stride: the CNN (each layer: conv with padding kernel//2,
            GroupNorm, GELU), the paper's 8-16-32-64, 64, 16 by default.
        rope_base: RoPE frequency base.
        output_scale: scale of the readout (accuracy units per unit of head output).
        dtype: compute dtype, ``"float32"``, ``"bfloat16"`` or ``"float16"``; params are float32.
        base: what the quantiles are offsets from: ``"last"`` (the last observed value, default),
            ``"recent"`` (the mean of the last ``base_window`` observed values: a steadier anchor
            when checkpoint-to-checkpoint noise is large) or ``"constant"`` (``base_value``; in
            residual mode, where values are deviations from a prior curve shifted by 0.5,
            ``base_value=0.5`` starts every forecast at the prior's value at the target, and the
            model learns how much of the context's deviation persists).
        base_value: the constant base.
        base_window: observed values averaged by ``base="recent"``.
        n_ctx_features: G of ``Batch.ctx_features`` (per-context-point features appended to each
            context token's input; 0 = none).

    Example:
        >>> ModelConfig(width=64, depth=2, heads=4, ff=256, dropout=0.0, n_features=0, soft_prompt="none")
    """

    width: int
    depth: int
    heads: int
    ff: int
    dropout: float
    n_features: int
    soft_prompt: str
    quantiles: tuple[float, ...] = QUANTILES
    cnn_channels: tuple[int, ...] = (8, 16, 32, 64)
    cnn_kernel: int = 64
    cnn_stride: int = 16
    rope_base: float = 10000.0
    output_scale: float = 0.1
    dtype: str = "float32"
    base: str = "last"
    base_value: float = 0.5
    base_window: int = 5
    n_ctx_features: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        object.__setattr__(self, "cnn_channels", tuple(int(c) for c in self.cnn_channels))
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of even size (RoPE)")
        if self.soft_prompt not in _SOFT_PROMPTS:
            raise ValueError(f"soft_prompt must be one of {_SOFT_PROMPTS}, got {self.soft_prompt!r}")
        if self.soft_prompt != "none" and self.n_features <= 0:
            raise ValueError(f"soft_prompt={self.soft_prompt!r} needs n_features > 0")
        if self.base not in _BASES:
            raise ValueError(f"base must be one of {_BASES}, got {self.base!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {self.dtype!r}")
        q = self.quantiles
        if not q or not all(0 < a < 1 for a in q) or any(b <= a for a, b in zip(q, q[1:])):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {q}")
        if self.base_window < 1:
            raise ValueError(f"base_window must be >= 1, got {self.base_window}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def median_index(self) -> int:
        """Index of the quantile closest to 0.5 (the point forecast)."""
        return min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`."""
        return cls(**d)


#: Named configurations. ``small`` trains on a 2-core CPU in well under 5 minutes; ``paper`` is the
#: released model's architecture (6 x 512, 8 heads, ff 2048, CNN over 256k word probabilities).
CONFIGS: dict[str, ModelConfig] = {
    "small": ModelConfig(width=64, depth=2, heads=4, ff=128, dropout=0.0, n_features=64, soft_prompt="mlp"),
    "paper": ModelConfig(width=512, depth=6, heads=8, ff=2048, dropout=0.0, n_features=256_000, soft_prompt="cnn"),
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration from `CONFIGS` with fields replaced.

    Overriding ``n_features`` without naming ``soft_prompt`` picks a fitting soft prompt: 0 switches
    it off, and a short vector (fewer than 1024 features, e.g. a histogram) given to a CNN config
    (``paper``) gets the MLP soft prompt instead (the paper's histogram variant).

    Example:
        >>> model_config("small", n_features=32, dropout=0.1).width
        64
    """
    if name not in CONFIGS:
        raise KeyError(f"unknown NeuNeu config {name!r}; known: {sorted(CONFIGS)}")
    if "n_features" in overrides and "soft_prompt" not in overrides:
        f = overrides["n_features"]
        if f == 0:
            overrides["soft_prompt"] = "none"
        elif CONFIGS[name].soft_prompt == "cnn" and f < _CNN_MIN_FEATURES:
            overrides["soft_prompt"] = "mlp"
    return dataclasses.replace(CONFIGS[name], **overrides)


def _gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch's default."""
    return jax.nn.gelu(x, approximate=False)


def _mlp(d_in: int, d_hidden: int, d_out: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Sequential:
    """Linear -> GELU -> Linear, float32 params."""
    return nnx.Sequential(
        nnx.Linear(d_in, d_hidden, dtype=dtype, param_dtype=jnp.float32, rngs=rngs),
        _gelu,
        nnx.Linear(d_hidden, d_out, dtype=dtype, param_dtype=jnp.float32, rngs=rngs),
    )


def _sanitise(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """float32, NaN -> 0, clipped to [lo, hi] (also maps +-inf to the bounds)."""
    return jnp.clip(jnp.nan_to_num(jnp.asarray(x, jnp.float32), nan=0.0), lo, hi)


def rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding of ``x`` [B, T, H, D] at integer ``positions`` [T] (rotate-half form)."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions.astype(jnp.float32)[:, None] * inv_freq  # [T, D/2]
    cos, sin = jnp.cos(angle)[:, None, :], jnp.sin(angle)[:, None, :]  # broadcast over heads
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class RoPEAttention(nnx.Module):
    """Bidirectional multi-head self-attention with RoPE on queries and keys and a key mask."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt = _DTYPES[cfg.dtype]
        self.heads, self.rope_base = cfg.heads, cfg.rope_base
        self.qkv = nnx.Linear(cfg.width, 3 * cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.out = nnx.Linear(cfg.width, cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)

    def __call__(self, x: jax.Array, key_mask: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None,
                 n_query: int | None = None) -> jax.Array:
        """Attention of the first ``n_query`` tokens (default: all) to all unmasked tokens."""
        b, t, w = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, self.heads, w // self.heads), 3, axis=2)
        q, k, v = q[:, :n_query, 0], k[:, :, 0], v[:, :, 0]
        q, k = rope(q, jnp.arange(q.shape[1]), self.rope_base), rope(k, jnp.arange(t), self.rope_base)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(w // self.heads)
        logits = jnp.where(key_mask[:, None, None, :], logits, _NEG)
        attn = self.drop(jax.nn.softmax(logits, axis=-1), deterministic=deterministic, rngs=rngs)
        o = jnp.einsum("bhqk,bkhd->bqhd", attn.astype(v.dtype), v).reshape(b, q.shape[1], w)
        return self.out(o)


class Block(nnx.Module):
    """Pre-LayerNorm encoder block: x + Drop(Attn(LN(x))), then x + Drop(MLP(LN(x)))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt = _DTYPES[cfg.dtype]
        self.ln1 = nnx.LayerNorm(cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.attn = RoPEAttention(cfg, rngs=rngs)
        self.ln2 = nnx.LayerNorm(cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.ff1 = nnx.Linear(cfg.width, cfg.ff, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.ff2 = nnx.Linear(cfg.ff, cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)

    def __call__(self, x: jax.Array, key_mask: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None,
                 n_query: int | None = None) -> jax.Array:
        """Updated tokens; only the first ``n_query`` (default: all) are computed and returned."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        x = x[:, :n_query] + self.drop(self.attn(self.ln1(x), key_mask, n_query=n_query, **kw), **kw)
        h = self.drop(_gelu(self.ff1(self.ln2(x))), **kw)
        return x + self.drop(self.ff2(h), **kw)


class CNNPrompt(nnx.Module):
    """1-D strided CNN over a long raw vector [B, F] -> one soft-prompt token [B, width]."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt, k, s = _DTYPES[cfg.dtype], cfg.cnn_kernel, cfg.cnn_stride
        layers: list[Any] = []
        length, c_in = cfg.n_features, 1
        for c_out in cfg.cnn_channels:
            layers += [
                nnx.Conv(c_in, c_out, (k,), (s,), padding=[(k // 2, k // 2)], dtype=dt, param_dtype=jnp.float32,
                         rngs=rngs),
                nnx.GroupNorm(c_out, num_groups=min(8, c_out), dtype=dt, param_dtype=jnp.float32, rngs=rngs),
                _gelu,
            ]
            length, c_in = (length + 2 * (k // 2) - k) // s + 1, c_out
        self.conv = nnx.Sequential(*layers)
        self.proj = nnx.Linear(length * c_in, cfg.width, dtype=dt, param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        h = self.conv(features[:, :, None])  # [B, L', C]
        return self.proj(h.reshape(h.shape[0], -1))


def _ordered(raw: jax.Array, mid: int) -> jax.Array:
    """[B, Q] raw head outputs -> non-decreasing values: the median, +- cumulative softplus offsets."""
    sp = jax.nn.softplus(raw)
    m = raw[:, mid : mid + 1]
    below = m - jnp.cumsum(sp[:, :mid][:, ::-1], axis=1)[:, ::-1]
    above = m + jnp.cumsum(sp[:, mid + 1 :], axis=1)
    return jnp.concatenate([below, m, above], axis=1)


class NeuNeu(nnx.Module):
    """The NeuNeu quantile predictor (see the module docstring for the architecture).

    Example:
        >>> from jaxscale.neuneu.batch import empty_batch
        >>> model = NeuNeu(model_config("small", n_features=0), rngs=nnx.Rngs(0))
        >>> model(empty_batch(4, 32, 0)).shape
        (4, 5)
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        cfg, dt = config, _DTYPES[config.dtype]
        self.config = config
        self.token = _mlp(3 + cfg.n_ctx_features, cfg.width, cfg.width, dt, rngs)
        self.bos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.width,), jnp.float32))
        if cfg.soft_prompt == "mlp":
            self.prompt = _mlp(cfg.n_features, cfg.width, cfg.width, dt, rngs)
        elif cfg.soft_prompt == "cnn":
            self.prompt = CNNPrompt(cfg, rngs=rngs)
        else:
            self.prompt = None
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        # Readout in float32.
        self.ln_f = nnx.LayerNorm(cfg.width, dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)
        self.head = nnx.Linear(cfg.width, len(cfg.quantiles), dtype=jnp.float32, param_dtype=jnp.float32,
                               kernel_init=nnx.initializers.normal(0.02), rngs=rngs)

    def __call__(self, batch: Batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Quantiles [B, len(quantiles)] float32, non-decreasing along axis 1.

        ``rngs`` (a ``dropout`` stream) is needed only when ``deterministic=False`` and dropout > 0.
        """
        cfg, dt = self.config, _DTYPES[self.config.dtype]
        mask = jnp.asarray(batch.ctx_mask, bool)
        y = _sanitise(batch.ctx_y, 0.0, 1.0)
        gap = _sanitise(batch.ctx_gap, -_GAP_BOUND, _GAP_BOUND)
        b, n = y.shape
        # Last observed accuracy: the base the quantiles are offsets from.
        has = mask.any(axis=1)
        last = jnp.argmax(jnp.where(mask, jnp.arange(n), -1), axis=1)
        last_y = jnp.where(has, jnp.take_along_axis(y, last[:, None], axis=1)[:, 0], 0.5)
        if cfg.base == "recent":  # mean of the last `base_window` observed values
            pos = jnp.arange(n)[None, :]
            win = mask & (pos > last[:, None] - cfg.base_window)
            k = jnp.maximum(win.sum(axis=1), 1)
            base = jnp.where(has, jnp.where(win, y, 0.0).sum(axis=1) / k, 0.5)
        elif cfg.base == "last":
            base = last_y
        else:
            base = jnp.full((b,), cfg.base_value, jnp.float32)
        tok = jnp.stack([y, jnp.sign(gap) * jnp.log1p(jnp.abs(gap)), y - last_y[:, None]], axis=-1)
        if cfg.n_ctx_features:
            cf = _sanitise(batch.ctx_features, -_FEATURE_BOUND, _FEATURE_BOUND)[..., : cfg.n_ctx_features]
            tok = jnp.concatenate([tok, cf], axis=-1)
        tok = jnp.where(mask[..., None], tok, 0.0)
        parts = [jnp.broadcast_to(self.bos[...].astype(dt), (b, 1, cfg.width))]
        if self.prompt is not None:
            feats = _sanitise(batch.features, -_FEATURE_BOUND, _FEATURE_BOUND).astype(dt)
            parts.append(self.prompt(feats)[:, None, :])
        key_mask = jnp.concatenate([jnp.ones((b, len(parts)), bool), mask], axis=1)
        x = jnp.concatenate(parts + [self.token(tok.astype(dt))], axis=1)
        for i, block in enumerate(self.blocks):  # the last block only needs the BOS query
            x = block(x, key_mask, deterministic=deterministic, rngs=rngs, n_query=1 if i == cfg.depth - 1 else None)
        raw = self.head(self.ln_f(x[:, 0].astype(jnp.float32)))
        return base[:, None] + cfg.output_scale * _ordered(raw, cfg.median_index)


def pinball_loss(pred: jax.Array, target: jax.Array, weight: jax.Array, quantiles: tuple[float, ...]) -> jax.Array:
    """Weighted pinball (quantile) loss averaged over quantiles: sum_i w_i mean_q rho_q / sum_i w_i.

    Rows of weight 0 contribute nothing (their target may be NaN).

    Example:
        >>> pinball_loss(jnp.zeros((2, 1)), jnp.array([1.0, jnp.nan]), jnp.array([1.0, 0.0]), (0.5,))
        Array(0.5, dtype=float32)
    """
    w = jnp.asarray(weight, jnp.float32)
    t = jnp.where(w > 0, jnp.asarray(target, jnp.float32), 0.0)
    r = t[:, None] - pred.astype(jnp.float32)
    q = jnp.asarray(quantiles, jnp.float32)
    per_row = jnp.mean(jnp.maximum(q * r, (q - 1.0) * r), axis=1)
    return jnp.sum(jnp.where(w > 0, w * per_row, 0.0)) / jnp.maximum(jnp.sum(w), 1e-12)


def count_params(model: NeuNeu | ModelConfig) -> int:
    """Number of trainable parameters of a model, or of the model a `ModelConfig` would build
    (computed abstractly, without allocating it).

    Example:
        >>> count_params(CONFIGS["paper"])
        19487597
    """
    if isinstance(model, ModelConfig):
        cfg = model
        model = nnx.eval_shape(lambda: NeuNeu(cfg, rngs=nnx.Rngs(0)))
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
