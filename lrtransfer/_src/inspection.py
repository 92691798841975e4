"""Reading the current learning-rate scale out of any optimizer state."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lrtransfer._src.adjust import AdjustState
from lrtransfer._src.decay import ScheduleScaleState
from lrtransfer._src.dynamic import DynamicState

STRATEGY_STATES = (AdjustState, DynamicState, ScheduleScaleState)


def _as_pure_state(state: Any) -> Any:
  """Unwraps ``nnx.Optimizer`` and NNX variables into plain arrays."""
  if hasattr(state, "opt_state") and hasattr(state, "tx"):
    state = state.opt_state
  try:
    from flax import nnx  # flax is a dependency, but keep this module light
  except ImportError:  # pragma: no cover
    return state
  return nnx.as_pure(state) if isinstance(state, nnx.State) else state


def strategy_states(state: Any) -> list[Any]:
  """All lrtransfer strategy states found in ``state``, in tree order."""
  state = _as_pure_state(state)
  leaves = jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, STRATEGY_STATES))
  return [leaf for leaf in leaves if isinstance(leaf, STRATEGY_STATES)]


def current_scale(state: Any, *, missing: Any = None) -> jax.Array:
  """The product of the scales of every strategy in an optimizer state.

  ``lr_effective = base_lr * current_scale(state)`` for an optimizer
  ``optax.chain(optax.sgd(base_lr, ...), strategy, ...)``. Works on the state
  of a chain, of ``optax.MultiSteps``, ``optax.partition`` and
  ``optax.apply_if_finite``, on an ``nnx.Optimizer`` (or its ``opt_state``),
  and under ``jax.jit``.

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.
    missing: the scale to return when the state holds no strategy (e.g.
      1.0 for a constant learning rate); None: raise instead.

  Returns:
    A float32 scalar: the scale the most recent update applied.

  Raises:
    ValueError: the state holds no lrtransfer strategy and ``missing`` is
      None.
  """
  found = strategy_states(state)
  if not found and missing is not None:
    return jnp.asarray(missing, jnp.float32)
  if not found:
    raise ValueError(
        "current_scale: no lrtransfer strategy (decay, schedule_scale, adjust, "
        "dynamic) was found in this optimizer state.")
  scale = jnp.ones([], jnp.float32)
  for strategy_state in found:
    scale = scale * jnp.asarray(strategy_state.scale, jnp.float32)
  return scale


def effective_learning_rate(state: Any, base_learning_rate: float
                            ) -> jax.Array:
  """``base_learning_rate * current_scale(state)``."""
  return base_learning_rate * current_scale(state)
