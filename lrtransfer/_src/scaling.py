"""Multiplying updates by a scalar scale without changing their dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def scale_updates(updates: optax.Updates, scale: jax.Array) -> optax.Updates:
  """Returns ``scale * updates`` leaf by leaf, each leaf keeping its dtype.

  The scale is cast to the leaf's dtype first so that a bf16 update stays one
  bf16 multiply (no float32 round trip over the whole tree).
  """
  return jax.tree.map(
      lambda u: None if u is None else u * jnp.asarray(scale, u.dtype),
      updates, is_leaf=lambda x: x is None)


def clip_scale(scale: jax.Array, min_scale: jax.typing.ArrayLike,
               max_scale: jax.typing.ArrayLike) -> jax.Array:
  """Keeps the scale within its bounds, in float32."""
  return jnp.clip(scale, min_scale, max_scale).astype(jnp.float32)
