"""The strategy as per-member data: several recipes in one population program.

Members of recipes that differ only in their strategy (e.g. a constant
rate and :func:`lrtransfer.adjust`) share one compiled program: the
optimizer chains :func:`choose_strategy`, which runs every candidate
strategy and applies the one picked by an index held in the optimizer
state, set per member after ``init``. So the strategy becomes a member's
data like its base rate, and PBT's copy of the optimizer state carries it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src.decay import ScheduleScaleState
from lrtransfer._src.recipes import Recipe


class ChosenStrategyState(NamedTuple):
  """State of :func:`choose_strategy`."""
  index: jax.Array  # int32 scalar: 0 none (constant rate), i: strategies[i-1]
  # The acting strategy's scale (1 for none) as a ScheduleScaleState, the
  # state type inspection reads: logs show the scale actually applied.
  acting: ScheduleScaleState
  inner: tuple  # every strategy's state, flattened (hidden from inspection)


def choose_strategy(strategies: Sequence[Optional[optax.GradientTransformation]]
                    ) -> optax.GradientTransformationExtraArgs:
  """Applies ``strategies[index]`` (None: no scaling), ``index`` from the state.

  ``u' = u`` for a None entry, else the entry's update of ``u``; every
  strategy's state advances on every update (each reads the same
  measurement), so switching the index is a choice, not a reset.

  Args:
    strategies: candidate transformations (or None for a constant rate).

  Returns:
    A transformation whose ``init`` sets ``index = 0``; set it per member
    with :func:`with_strategy_index`.
  """
  if not strategies:
    raise ValueError("choose_strategy needs at least one candidate")
  active = [optax.with_extra_args_support(tx) for tx in strategies
            if tx is not None]
  slot = []  # strategies[i] -> its position in `active` (None: none)
  for tx in strategies:
    slot.append(None if tx is None else len(slot) - slot.count(None))
  def init_fn(params):
    leaves = tuple(leaf for tx in active
                   for leaf in jax.tree.leaves(tx.init(params)))
    return ChosenStrategyState(
        jnp.zeros([], jnp.int32),
        ScheduleScaleState(jnp.zeros([], jnp.int32),
                           jnp.ones([], jnp.float32)), leaves)

  def update_fn(updates, state, params=None, **extra_args):
    from lrtransfer._src import inspection  # inspection imports strategies
    # The inner states' structure, from shapes (a program may build the
    # transformation anew, without calling init on it).
    states, start = [], 0
    for tx in active:
      treedef = jax.tree.structure(jax.eval_shape(tx.init, updates))
      states.append(jax.tree.unflatten(
          treedef, state.inner[start:start + treedef.num_leaves]))
      start += treedef.num_leaves
    outs, new_states = [], []
    for tx, inner in zip(active, states):
      out, new = tx.update(updates, inner, params, **extra_args)
      outs.append(out)
      new_states.append(new)
    chosen, scale = updates, jnp.ones([], jnp.float32)
    for i, position in enumerate(slot):
      if position is None:
        continue
      pick = state.index == i
      chosen = jax.tree.map(lambda a, b: jnp.where(pick, a, b),
                            outs[position], chosen)
      scale = jnp.where(pick, inspection.common_scale(new_states[position]),
                        scale)
    count = optax.safe_increment(state.acting.count)
    leaves = tuple(leaf for new in new_states for leaf in jax.tree.leaves(new))
    return chosen, ChosenStrategyState(
        state.index, ScheduleScaleState(count, scale), leaves)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _chosen_factory(factories: tuple, steps_per_epoch: int,
                    total_steps: int) -> optax.GradientTransformation:
  return choose_strategy([None if f is None else f(steps_per_epoch,
                                                   total_steps)
                          for f in factories])


def combine_recipes(recipes: Sequence[Recipe]) -> Recipe:
  """One recipe whose strategy is chosen per member among ``recipes``'.

  Raises:
    ValueError: the recipes differ in anything but name, base rate and
      strategy (the rest is the program's structure), or repeat a name.
  """
  names = [r.name for r in recipes]
  if len(set(names)) != len(names):
    raise ValueError(f"recipes {names} repeat a name: give each its own")
  first = recipes[0]
  for recipe in recipes[1:]:
    for field in dataclasses.fields(Recipe):
      if field.name in ("name", "learning_rate", "strategy"):
        continue
      if getattr(recipe, field.name) != getattr(first, field.name):
        raise ValueError(
            f"recipes {first.name!r} and {recipe.name!r} differ in "
            f"{field.name}; the recipes of one population may differ only "
            "in their strategy (call fit_auto once per base optimizer or "
            "transfer tool)")
  factories = tuple(r.strategy for r in recipes)
  return dataclasses.replace(
      first, name="+".join(names),
      strategy=functools.partial(_chosen_factory, factories))


def with_strategy_index(opt_state: Any, index: jax.Array) -> Any:
  """``opt_state`` with every :class:`ChosenStrategyState`'s index set to
  ``index`` (per member: a leading row axis)."""
  return jax.tree.map(
      lambda node: (node._replace(index=jnp.asarray(index, jnp.int32))
                    if isinstance(node, ChosenStrategyState) else node),
      opt_state, is_leaf=lambda node: isinstance(node, ChosenStrategyState))
