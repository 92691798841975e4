"""Depth inference for any model: MLP, CNN, residual, transformer, Linen."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from _models import Residual, SmallCNN, Transformer


def _by_layer(depths):
  """{first path key(s) naming a layer: depth}, checking one depth a layer."""
  found = {}
  for path, depth in jax.tree_util.tree_flatten_with_path(depths)[0]:
    keys = lrtransfer.normalize_path(path)[:-1]
    found.setdefault(keys, set()).add(depth)
  assert all(len(d) == 1 for d in found.values())
  return {keys: d.pop() for keys, d in found.items()}


def test_mlp_hidden_layers_then_head():
  model = lrtransfer.models.MLP(4, (5, 6), 3, rngs=nnx.Rngs(0))
  assert _by_layer(lrtransfer.layer_depths(model)) == {
      ("hidden", 0): 0, ("hidden", 1): 1, ("head",): 2}


def test_cnn_norm_shares_the_conv_level_and_the_last_layer_is_the_head():
  depths = _by_layer(lrtransfer.layer_depths(SmallCNN(rngs=nnx.Rngs(0))))
  assert depths == {("conv1",): 0, ("norm1",): 0, ("conv2",): 1,
                    ("dense",): 2, ("out",): 3}


def test_residual_blocks_are_one_level_each():
  depths = _by_layer(lrtransfer.layer_depths(Residual(rngs=nnx.Rngs(0))))
  for block in (0, 1):
    for layer in ("dense1", "norm", "dense2"):
      assert depths[("blocks", block, layer)] == 1 + block
  assert depths[("stem",)] == 0 and depths[("classifier",)] == 3


def test_transformer_blocks_final_norm_and_head():
  depths = _by_layer(lrtransfer.layer_depths(Transformer(rngs=nnx.Rngs(0))))
  assert depths[("embed",)] == 0
  assert {d for k, d in depths.items() if k[0] == "encoder"
          and k[1] == 0} == {1}
  assert depths[("encoder", 1, "attention", "query")] == 2
  assert depths[("final_norm",)] == 2  # a norm joins the level before it
  assert depths[("logits",)] == 3


def test_head_argument_names_the_top_level():
  depths = _by_layer(lrtransfer.layer_depths(Residual(rngs=nnx.Rngs(0)),
                                             head="stem"))
  assert depths[("stem",)] == 3 and depths[("classifier",)] == 2


def test_linen_params_dict_in_creation_order():
  ones = jnp.ones(2)
  params = {"params": {"Conv_0": {"kernel": ones, "bias": ones},
                       "BatchNorm_0": {"scale": ones, "bias": ones},
                       "Dense_0": {"kernel": ones, "bias": ones},
                       "Dense_1": {"kernel": ones, "bias": ones}}}
  depths = lrtransfer.layer_depths(params)["params"]
  assert [depths[k]["kernel" if "Norm" not in k else "scale"]
          for k in ("Conv_0", "BatchNorm_0", "Dense_0", "Dense_1")] == [
              0, 0, 1, 2]


def test_depth_tree_drives_the_transformations():
  model = Residual(rngs=nnx.Rngs(0))
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  depths = lrtransfer.layer_depths(model)
  grads = jax.tree.map(jnp.ones_like, params)
  tx = lrtransfer.layerwise_scale(0.5, depths=depths)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["stem"]["kernel"], 0.125)
  np.testing.assert_allclose(updates["blocks"][1]["norm"]["scale"], 0.5)
  np.testing.assert_allclose(updates["classifier"]["bias"], 1.0)


@pytest.mark.parametrize("depths", [None, "tree"])
def test_inside_optax_masked_the_whole_tree_decides_the_top(depths):
  model = lrtransfer.models.MLP(3, (4, 4), 2, rngs=nnx.Rngs(0))
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  depths = lrtransfer.layer_depths(model) if depths else None
  grads = jax.tree.map(jnp.ones_like, params)
  body = nnx.map_state(lambda path, _: path[0] != "head", params)
  tx = optax.masked(lrtransfer.layerwise_scale(0.5, depths=depths), body)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Level 1 of 3 gets 0.5 (not 1: the head is masked out but still the top).
  np.testing.assert_allclose(updates["hidden"][1]["kernel"], 0.5)
  np.testing.assert_allclose(updates["hidden"][0]["kernel"], 0.25)
  unfreeze = optax.masked(lrtransfer.gradual_unfreeze(10, depths=depths),
                          body)
  updates, _ = unfreeze.update(grads, unfreeze.init(params), params)
  # Only the head is open at first: the masked body is all frozen.
  np.testing.assert_allclose(updates["hidden"][1]["kernel"], 0.0)


def test_l2sp_finds_a_head_not_named_head():
  model = Residual(rngs=nnx.Rngs(0))
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  source = jax.tree.map(jnp.zeros_like, params)
  tx = lrtransfer.l2sp(source, alpha=1.0, beta=0.0,
                       depths=lrtransfer.layer_depths(model))
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["classifier"]["kernel"], 0.0)
  np.testing.assert_allclose(updates["stem"]["kernel"],
                             params["stem"]["kernel"])


def test_remembered_depths_survive_copies_that_sort_attributes():
  from lrtransfer._src.transfer.depths import remember_depths
  model = SmallCNN(rngs=nnx.Rngs(0))
  depths = lrtransfer.layer_depths(model)
  # NNX rebuilds copies with attributes sorted by name (norm1 after dense).
  assert lrtransfer.layer_depths(nnx.clone(model)) != depths
  remember_depths(model, depths)
  assert lrtransfer.layer_depths(nnx.clone(model)) == depths
