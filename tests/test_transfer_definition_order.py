"""The transfer transformations act on the layers in the model's definition
order, never on an order guessed from sorted names.

The model defines ``z_in``, ``mid``, ``a_out`` (the head last): its
``nnx.State``, and any dict after ``jax.grad``, lists them ``a_out``, ``mid``,
``z_in``. Without ``depths=`` every transformation refuses at ``init``; with
them the head gets the largest rate, opens first, and is L2-SP's new layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer

LAYERS = ("z_in", "mid", "a_out")  # definition order, input to head
FIX = r"depths=lrtransfer\.layer_depths\(model\)"


class SortsAgainstDefinition(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.z_in = nnx.Linear(2, 3, rngs=rngs)
    self.mid = nnx.Linear(3, 3, rngs=rngs)
    self.a_out = nnx.Linear(3, 1, rngs=rngs)

  def __call__(self, x):
    return self.a_out(nnx.relu(self.mid(nnx.relu(self.z_in(x)))))


def _model():
  return SortsAgainstDefinition(nnx.Rngs(0))


def _source(model):
  """Source parameters one above the model's: L2-SP pulls by -1."""
  return jax.tree.map(lambda w: w + 1.0,
                      nnx.to_pure_dict(nnx.state(model, nnx.Param)))


# name -> (factory(depths, model), expected update of a ones gradient per
# layer on the first step, and on the second step). The transformation is
# chained before sgd(1.0) (as documented for all but layerwise_scale, for
# which before and after are the same with plain SGD), so the parameter
# moves by minus these.
CASES = {
    "layerwise_scale": (
        lambda depths, model: lrtransfer.layerwise_scale(0.5, depths=depths),
        {"z_in": 0.25, "mid": 0.5, "a_out": 1.0},
        {"z_in": 0.25, "mid": 0.5, "a_out": 1.0}),
    "gradual_unfreeze": (
        lambda depths, model: lrtransfer.gradual_unfreeze(1, depths=depths),
        {"z_in": 0.0, "mid": 0.0, "a_out": 1.0},
        {"z_in": 0.0, "mid": 1.0, "a_out": 1.0}),
    "head_first": (
        lambda depths, model: lrtransfer.head_first(1, depths=depths),
        {"z_in": 0.0, "mid": 0.0, "a_out": 1.0},
        {"z_in": 1.0, "mid": 1.0, "a_out": 1.0}),
    # Ones gradient plus alpha * (w - w0) = -1 on the transferred body; the
    # head is new (beta = 0): its gradient only.
    "l2sp": (
        lambda depths, model: lrtransfer.l2sp(_source(model), alpha=1.0,
                                              beta=0.0, depths=depths),
        {"z_in": 0.0, "mid": 0.0, "a_out": 1.0},
        {"z_in": 0.0, "mid": 0.0, "a_out": 1.0}),
}


def _bias_steps(updates):
  """{layer: float} of a per-layer-constant update, read from the biases."""
  return {name: float(np.unique(np.asarray(updates[name]["bias"]))[0])
          for name in LAYERS}


@pytest.mark.parametrize("name", CASES)
def test_plain_optax_refuses_without_depths(name):
  factory = CASES[name][0]
  model = _model()
  tx = optax.chain(factory(None, model), optax.sgd(1.0))
  # The pure state, and the same parameters as a dict in definition order:
  # jax.grad hands the updates back sorted, so insertion order is no help.
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  in_definition_order = {key: nnx.to_pure_dict(params)[key] for key in LAYERS}
  for tree in (params, in_definition_order):
    with pytest.raises(ValueError, match=FIX) as error:
      tx.init(tree)
    assert name in str(error.value) and "would be guessed" in str(error.value)


@pytest.mark.parametrize("name", CASES)
def test_plain_optax_with_depths_acts_on_the_right_layers(name):
  factory, first, second = CASES[name]
  model = _model()
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  tx = factory(lrtransfer.layer_depths(model), model)
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for expected in (first, second):
    updates, state = update(grads, state, params)
    assert _bias_steps(updates) == expected


@pytest.mark.parametrize("name", CASES)
def test_nnx_optimizer_refuses_without_depths(name):
  factory = CASES[name][0]
  model = _model()
  with pytest.raises(ValueError, match=FIX):
    nnx.Optimizer(model, optax.chain(factory(None, model), optax.sgd(1.0)),
                  wrt=nnx.Param)


@pytest.mark.parametrize("depths_of", ["layer_depths", "model"])
@pytest.mark.parametrize("name", CASES)
def test_nnx_optimizer_with_depths_acts_on_the_right_layers(name, depths_of):
  factory, first, second = CASES[name]
  model = _model()
  depths = (lrtransfer.layer_depths(model) if depths_of == "layer_depths"
            else model)
  optimizer = nnx.Optimizer(
      model, optax.chain(factory(depths, model), optax.sgd(1.0)),
      wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))

  @nnx.jit
  def step(model, optimizer, grads):
    optimizer.update(model, grads)

  for expected in (first, second):
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    step(model, optimizer, grads)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    moved = jax.tree.map(lambda b, a: b - a, before, after)  # sgd(1.0)
    assert _bias_steps(moved) == pytest.approx(expected)


def test_a_tree_that_tells_its_order_needs_no_depths():
  # The MLP: hidden layers in a list, the top one under 'head'.
  mlp = lrtransfer.models.MLP(2, (3, 3), 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      mlp, optax.chain(optax.sgd(1.0), lrtransfer.layerwise_scale(0.5)),
      wrt=nnx.Param)
  levels = optimizer.opt_state[1].level_factors[...]
  np.testing.assert_allclose(levels, [0.25, 0.5, 1.0])
  # nnx.Sequential: its state keeps the indices, the last layer is the head.
  sequential = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)),
                              nnx.Linear(3, 3, rngs=nnx.Rngs(1)),
                              nnx.Linear(3, 1, rngs=nnx.Rngs(2)))
  params = nnx.as_pure(nnx.state(sequential, nnx.Param))
  updates, _ = lrtransfer.layerwise_scale(0.5).update(
      jax.tree.map(jnp.ones_like, params), None)
  assert [float(updates["layers"][i]["bias"][0]) for i in range(3)] == [
      0.25, 0.5, 1.0]
  assert lrtransfer.layer_depths(params) == lrtransfer.layer_depths(
      sequential)


def test_one_body_layer_beside_the_head_needs_no_depths():
  # A kernel and a bias are one layer, whatever order their keys come in.
  params = {"encoder": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "head": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}}
  tx = lrtransfer.layerwise_scale(0.5)
  updates, _ = tx.update(params, tx.init(params))
  assert float(updates["encoder"]["bias"][0]) == 0.5
  assert float(updates["head"]["bias"][0]) == 1.0
  # A layer's own leaves beside a sub-layer: two layers, order unknown.
  params["encoder"]["inner"] = {"kernel": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match=r"under \('encoder',\)"):
    tx.init(params)


def test_a_head_key_is_enough_for_head_first_and_l2sp_not_for_the_order():
  # 'b' is defined before 'a': the body's order is unknown, its head is not.
  params = {"b": {"w": jnp.ones(2)}, "a": {"w": jnp.ones(2)},
            "head": {"w": jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = lrtransfer.head_first(1)
  updates, _ = tx.update(grads, tx.init(params))
  assert {k: float(v["w"][0]) for k, v in updates.items()} == {
      "a": 0.0, "b": 0.0, "head": 1.0}
  state = lrtransfer.l2sp(params, alpha=1.0, beta=0.0).init(params)
  assert np.shape(state.source["head"]["w"]) == ()  # the head is new
  for tx in (lrtransfer.layerwise_scale(0.5), lrtransfer.gradual_unfreeze(1)):
    with pytest.raises(ValueError, match=r"\['a', 'b'\]"):
      tx.init(params)


def test_l2sp_with_transferred_needs_no_depths():
  model = _model()
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  transferred = {name: {"bias": name != "a_out", "kernel": name != "a_out"}
                 for name in LAYERS}
  state = lrtransfer.l2sp(params, transferred=transferred).init(params)
  assert np.shape(state.source["a_out"]["kernel"]) == ()
  assert np.shape(state.source["z_in"]["kernel"]) == (2, 3)


def test_refused_inside_optax_masked_and_a_nested_mapping_is_named():
  model = _model()
  params = {"encoder": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
  # Only the body is masked in: a_out's leaves become MaskedNode positions.
  mask = {"encoder": {name: jax.tree.map(lambda _: name != "a_out", layer)
                      for name, layer in params["encoder"].items()}}
  with pytest.raises(ValueError, match=r"(?s)under \('encoder',\).*" + FIX):
    optax.masked(lrtransfer.layerwise_scale(0.5), mask).init(params)


def test_layer_depths_refuses_a_state_it_would_guess_and_reads_the_model():
  model = _model()
  with pytest.raises(ValueError, match=r"layer_depths\(model\)"):
    lrtransfer.layer_depths(nnx.state(model, nnx.Param))
  depths = lrtransfer.layer_depths(model)
  assert {name: depths[name]["kernel"] for name in LAYERS} == {
      "z_in": 0, "mid": 1, "a_out": 2}
  assert lrtransfer.layerwise_scales(nnx.state(model, nnx.Param), 0.5,
                                     depths=model) == {0: 0.25, 1: 0.5,
                                                       2: 1.0}


def test_a_depth_tree_of_non_ints_is_refused_at_construction():
  with pytest.raises(ValueError, match="layerwise_scale: depths must be"):
    lrtransfer.layerwise_scale(0.5, depths={"a": {"w": 0.5}})
