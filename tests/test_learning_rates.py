"""learning_rates and unfrozen_levels read plain Python numbers back from an
optimizer state, per group and depth level; state_finder finds the states."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src import state_finder


def _mlp():
  # hidden 0, hidden 1, head: levels 0, 1, 2 (the MLP's order is its names').
  return lrtransfer.models.MLP(2, (3, 3), 1, rngs=nnx.Rngs(0))


def _metric(value, count):
  return lrtransfer.measurement(value, count)


def test_a_chain_without_transfer_tools_has_one_rate():
  params = {"w": jnp.ones(2)}
  tx = optax.chain(optax.sgd(0.1), lrtransfer.decay(0.5, every_steps=1))
  state = tx.init(params)
  assert lrtransfer.learning_rates(state, 0.1) == {"all": 0.1}
  _, state = tx.update(params, state, params)
  _, state = tx.update(params, state, params)
  rates = lrtransfer.learning_rates(state, 0.1)
  assert rates == {"all": 0.05} and isinstance(rates["all"], float)
  assert lrtransfer.learning_rates(optax.sgd(0.1).init(params), 0.3) == {
      "all": 0.3}


def test_levels_of_an_nnx_optimizer_follow_the_strategy_and_the_factors():
  model = _mlp()
  tx = optax.chain(optax.sgd(0.2, momentum=0.9),
                   lrtransfer.reduce_on_plateau(factor=0.5, patience=0),
                   lrtransfer.layerwise_scale(0.5))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  expected = {"level 0": 0.05, "level 1": 0.1, "level 2": 0.2}
  assert lrtransfer.learning_rates(optimizer.opt_state, 0.2) == expected
  assert lrtransfer.learning_rates(optimizer, 0.2) == expected
  grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
  for count, loss in enumerate([1.0, 2.0], start=1):  # 2.0: no improvement
    optimizer.update(model, grads, metric=_metric(loss, count))
  optimizer.update(model, grads, metric=_metric(2.0, 2))  # reacts to count 2
  assert lrtransfer.learning_rates(optimizer, 0.2) == {
      "level 0": 0.025, "level 1": 0.05, "level 2": 0.1}


def test_frozen_levels_read_zero_and_open_from_the_head():
  params = nnx.to_pure_dict(nnx.state(_mlp(), nnx.Param))
  tx = optax.chain(lrtransfer.gradual_unfreeze(1), optax.sgd(0.1))
  state = tx.init(params)
  assert lrtransfer.unfrozen_levels(state) == 1
  assert lrtransfer.learning_rates(state, 0.1) == {
      "level 0": 0.0, "level 1": 0.0, "level 2": 0.1}
  _, state = tx.update(params, state, params)
  assert lrtransfer.learning_rates(state, 0.1) == {
      "level 0": 0.0, "level 1": 0.1, "level 2": 0.1}
  # With layer-wise factors as well: both apply.
  tx = optax.chain(lrtransfer.head_first(1), optax.sgd(0.1),
                   lrtransfer.layerwise_scale(0.5))
  state = tx.init(params)
  _, state = tx.update(params, state, params)
  assert lrtransfer.learning_rates(state, 0.1) == {
      "level 0": 0.025, "level 1": 0.05, "level 2": 0.1}


def test_partition_groups_are_labelled_and_levels_nested():
  params = {"hidden": [{"w": jnp.ones(2)}], "head": {"w": jnp.ones(2)}}
  labels = {"hidden": [{"w": "body"}], "head": {"w": "head"}}
  tx = optax.partition(
      {"body": optax.chain(optax.sgd(0.1), lrtransfer.layerwise_scale(0.5)),
       "head": optax.chain(optax.sgd(0.1),
                           lrtransfer.decay(0.5, every_steps=1))},
      labels)
  state = tx.init(params)
  for _ in range(2):  # the second update decays by 0.5
    _, state = tx.update(params, state, params)
  # The body's factors are of the whole tree's levels (the head is level 1).
  assert lrtransfer.learning_rates(state, 0.1) == {
      "body/level 0": 0.05, "body/level 1": 0.1, "head": 0.05}


def test_refuses_a_traced_or_stacked_state_and_a_bad_base_rate():
  params = {"w": jnp.ones(2)}
  tx = optax.chain(optax.sgd(0.1), lrtransfer.adjust())
  state = tx.init(params)
  with pytest.raises(ValueError, match="outside jax.jit"):
    jax.jit(lambda s: lrtransfer.learning_rates(s, 0.1))(state)
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), state)
  with pytest.raises(ValueError, match="index one run"):
    lrtransfer.learning_rates(stacked, 0.1)
  for bad in ("0.1", float("nan"), None):
    with pytest.raises(ValueError, match="base_learning_rate"):
      lrtransfer.learning_rates(state, bad)


def test_unfrozen_levels_is_an_int_outside_jit_and_an_array_under_it():
  model = _mlp()
  optimizer = nnx.Optimizer(
      model, optax.chain(lrtransfer.head_first(2), optax.sgd(0.1)),
      wrt=nnx.Param)
  levels = lrtransfer.unfrozen_levels(optimizer.opt_state)
  assert type(levels) is int and levels == 1
  assert type(lrtransfer.unfrozen_levels(optimizer)) is int
  traced = jax.jit(lrtransfer.unfrozen_levels)(nnx.as_pure(
      optimizer.opt_state))
  assert isinstance(traced, jax.Array) and int(traced) == 1


def test_find_states_returns_paths_and_unwrapped_states():
  model = _mlp()
  optimizer = nnx.Optimizer(
      model, optax.chain(lrtransfer.gradual_unfreeze(1), optax.sgd(0.1),
                         lrtransfer.adjust(), lrtransfer.adjust()),
      wrt=nnx.Param)
  found = state_finder.find_states(optimizer, lrtransfer.AdjustState)
  assert [path for path, _ in found] == [(jax.tree_util.SequenceKey(2),),
                                         (jax.tree_util.SequenceKey(3),)]
  assert all(isinstance(s.scale, jax.Array) for _, s in found)
  both = state_finder.find_states(
      optimizer.opt_state, (lrtransfer.UnfreezeState, lrtransfer.AdjustState))
  assert [type(s).__name__ for _, s in both] == [
      "UnfreezeState", "AdjustState", "AdjustState"]
  assert np.asarray(both[0][1].num_levels) == 3
  assert state_finder.find_states(optax.sgd(0.1).init({}),
                                  lrtransfer.AdjustState) == []
