"""Tests of layer_depths, layerwise_scale and layerwise_scales."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from _harness import tiny_mlp
from lrtransfer._src.transfer import (
  layer_depths,
  layerwise_scale,
  layerwise_scales,
)


def dict_params(num_hidden=3, seed=0):
  rng = np.random.default_rng(seed)
  layer = lambda n_in, n_out: {
      "kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32),
  }
  return {
      "hidden": {i: layer(4, 4) for i in range(num_hidden)},
      "head": layer(4, 2),
  }


def test_layer_depths_plain_dict():
  depths = layer_depths(dict_params(num_hidden=3))
  assert depths == {
      "hidden": {i: {"kernel": i, "bias": i} for i in range(3)},
      "head": {"kernel": 3, "bias": 3},
  }


def test_layer_depths_lists_namedtuples_and_digit_keys():
  class Dense(NamedTuple):
    kernel: jax.Array
    bias: jax.Array

  dense = Dense(jnp.ones((2, 2)), jnp.ones(2))
  # SequenceKey and GetAttrKey paths.
  assert jax.tree.leaves(layer_depths(
      {"hidden": [dense, dense], "head": dense})) == [2, 2, 0, 0, 1, 1]
  # String indices, e.g. from a checkpoint.
  assert layer_depths({"hidden": {"0": {"w": 1.0}, "1": {"w": 1.0}},
                       "head": {"w": 1.0}}) == {
                           "hidden": {"0": {"w": 0}, "1": {"w": 1}},
                           "head": {"w": 2}}


def test_layer_depths_nnx_state_wrapped_and_pure():
  model = tiny_mlp([3, 5, 4], 2, nnx.Rngs(0), activation='relu')
  state = nnx.state(model, nnx.Param)
  expected = {"head": {"bias": 2, "kernel": 2},
              "hidden": {0: {"bias": 0, "kernel": 0},
                         1: {"bias": 1, "kernel": 1}}}
  for tree in (state, nnx.as_pure(state), nnx.to_pure_dict(state)):
    depths = layer_depths(tree)
    assert jax.tree.structure(depths) == jax.tree.structure(tree)
    assert jax.tree.leaves(depths) == jax.tree.leaves(expected)


def test_layer_depths_custom_depth_fn_and_errors():
  params = {"encoder": [{"w": jnp.ones(2)}, {"w": jnp.ones(2)}],
            "classifier": {"w": jnp.ones(2)}}
  depth_fn = lambda path: 2 if path[0] == "classifier" else path[1]
  assert layer_depths(params, depth_fn) == {
      "encoder": [{"w": 0}, {"w": 1}], "classifier": {"w": 2}}
  # Without depth_fn the definition order gives the same depths.
  assert layer_depths(params) == layer_depths(params, depth_fn)
  with pytest.raises(ValueError, match="head='decoder' names no parameter"):
    layer_depths(params, head="decoder")
  with pytest.raises(ValueError, match="depth function must return a Python int"):
    layer_depths(params, lambda path: 1.5)


def reference_scales(params, factor):
  """NumPy reference: the factor of each leaf, computed by hand."""
  top = len(params["hidden"])
  return {
      "hidden": {i: {k: factor ** (top - i) for k in layer}
                 for i, layer in params["hidden"].items()},
      "head": {k: 1.0 for k in params["head"]},
  }


@pytest.mark.parametrize("factor", [1 / 2.6, 0.65, 1.0, 1.5])
def test_layerwise_scale_matches_reference(factor):
  params = dict_params(num_hidden=3)
  grads = dict_params(num_hidden=3, seed=1)
  tx = layerwise_scale(factor)
  state = tx.init(params)
  # One float per level (for logging), nothing per parameter.
  np.testing.assert_allclose(state.level_factors,
                             [factor**3, factor**2, factor, 1.0], rtol=1e-6)
  expected = jax.tree.map(lambda g, s: np.asarray(g) * s, grads,
                          reference_scales(params, factor))
  for update in (tx.update, jax.jit(tx.update)):
    updates, _ = update(grads, state, params)
    chex.assert_trees_all_close(updates, expected, rtol=1e-6)
  assert layerwise_scales(params, factor) == pytest.approx(
      {0: factor**3, 1: factor**2, 2: factor, 3: 1.0})


def test_one_multiply_per_non_head_leaf():
  params = dict_params(num_hidden=3)
  tx = layerwise_scale(0.5)
  jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params), None)
  primitives = [eqn.primitive.name for eqn in jaxpr.eqns]
  assert primitives.count("mul") == 6  # 3 layers x 2 leaves; head untouched.
  assert set(primitives) <= {"mul", "convert_element_type"}


def test_bf16_updates_keep_their_dtype():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), dict_params())
  tx = layerwise_scale(0.65)
  updates, _ = jax.jit(tx.update)(params, tx.init(params))
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


def test_chain_with_sgd_momentum_against_numpy():
  factor, lr, momentum = 0.5, 0.1, 0.9
  params = dict_params(num_hidden=2)
  scales = reference_scales(params, factor)
  tx = optax.chain(optax.sgd(lr, momentum=momentum), layerwise_scale(factor))
  state = tx.init(params)
  step = jax.jit(tx.update)
  ref_params = jax.tree.map(np.asarray, params)
  ref_trace = jax.tree.map(np.zeros_like, ref_params)
  for seed in range(3):
    grads = dict_params(num_hidden=2, seed=10 + seed)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    ref_trace = jax.tree.map(lambda m, g: np.asarray(g) + momentum * m,
                             ref_trace, grads)
    ref_params = jax.tree.map(lambda p, m, s: p - lr * s * m, ref_params,
                              ref_trace, scales)
  chex.assert_trees_all_close(params, ref_params, rtol=1e-5, atol=1e-6)


def test_inside_scan_matches_python_loop():
  params = dict_params(num_hidden=2)
  tx = optax.chain(optax.sgd(0.1, momentum=0.9), layerwise_scale(0.7))
  grads_seq = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[dict_params(2, seed=s) for s in range(4)])

  def body(carry, grads):
    params, state = carry
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (scanned, _), _ = jax.lax.scan(body, (params, tx.init(params)), grads_seq)
  looped, state = params, tx.init(params)
  for s in range(4):
    (looped, state), _ = body((looped, state),
                              jax.tree.map(lambda x: x[s], grads_seq))
  chex.assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-6)


def test_nnx_optimizer_scales_each_layer():
  factor = 0.5
  x = jax.random.normal(jax.random.key(0), (8, 3))
  y = jax.random.normal(jax.random.key(1), (8, 2))
  loss = lambda model: jnp.mean((model(x) - y) ** 2)
  all_updates = []
  for tx in (optax.sgd(0.1),
             optax.chain(optax.sgd(0.1), layerwise_scale(factor))):
    model = tiny_mlp([3, 5, 4], 2, nnx.Rngs(0), activation='relu')
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    updates = optimizer.update(model, nnx.grad(loss)(model))
    all_updates.append(nnx.to_pure_dict(nnx.State(updates)))
  plain, scaled = all_updates
  for depth in (0, 1):
    chex.assert_trees_all_close(
        scaled["hidden"][depth],
        jax.tree.map(lambda u, s=factor ** (2 - depth): u * s,
                     plain["hidden"][depth]),
        rtol=1e-6)
  chex.assert_trees_all_close(scaled["head"], plain["head"], rtol=1e-6)


def test_injected_factor_is_traced():
  params = dict_params(num_hidden=1)
  tx = optax.inject_hyperparams(layerwise_scale)(factor=0.25)
  updates, _ = jax.jit(tx.update)(params, tx.init(params))
  chex.assert_trees_all_close(updates["hidden"][0],
                              jax.tree.map(lambda p: p * 0.25,
                                           params["hidden"][0]))


@pytest.mark.parametrize("factor", [0.0, -0.5, True])
def test_bad_factor_raises(factor):
  with pytest.raises(ValueError, match="factor"):
    layerwise_scale(factor)
  with pytest.raises(ValueError, match="factor"):
    layerwise_scales(dict_params(), factor)
