"""Masked per-task statistics used by the data-driven start grids (all jit-able)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def masked_min(v: Array, mask: Array) -> Array:
    return jnp.min(jnp.where(mask, v, jnp.inf))


def masked_max(v: Array, mask: Array) -> Array:
    return jnp.max(jnp.where(mask, v, -jnp.inf))


def masked_mean(v: Array, mask: Array) -> Array:
    return jnp.sum(jnp.where(mask, v, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def log_linear_fit(lx: Array, ly: Array, mask: Array) -> tuple[Array, Array]:
    """Least-squares (intercept, slope) of ly on lx over the masked points."""
    mx = masked_mean(lx, mask)
    my = masked_mean(ly, mask)
    dx = jnp.where(mask, lx - mx, 0.0)
    dy = jnp.where(mask, ly - my, 0.0)
    slope = jnp.sum(dx * dy) / jnp.maximum(jnp.sum(dx * dx), 1e-300)
    return my - slope * mx, slope


def cartesian(*axes: Array) -> list[Array]:
    """Flattened Cartesian product of 1-D arrays."""
    mesh = jnp.meshgrid(*axes, indexing="ij")
    return [m.reshape(-1) for m in mesh]
