"""Tests of l2sp."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from _harness import tiny_mlp
from lrtransfer._src.transfer import l2sp

ALPHA, BETA = 0.3, 0.05


def dict_params(num_classes=2, seed=0, num_hidden=2):
  rng = np.random.default_rng(seed)
  layer = lambda n_in, n_out: {
      "kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32),
  }
  return {"hidden": {i: layer(3, 3) for i in range(num_hidden)},
          "head": layer(3, num_classes)}


def reference_penalty(params, source, transferred_hidden=(0, 1)):
  """NumPy reference of the L2-SP gradient term, by hand."""
  ref = {"hidden": {}, "head": {}}
  for i, layer in params["hidden"].items():
    ref["hidden"][i] = {
        k: (ALPHA * (np.asarray(w) - np.asarray(source["hidden"][i][k]))
            if i in transferred_hidden else BETA * np.asarray(w))
        for k, w in layer.items()}
  ref["head"] = {k: BETA * np.asarray(w) for k, w in params["head"].items()}
  return ref


@pytest.mark.parametrize("source_classes", [2, 5])
def test_gradient_term_matches_reference(source_classes):
  # The head is new whatever its shape: the default leaves it to beta.
  source = dict_params(num_classes=source_classes, seed=0)
  params = dict_params(num_classes=2, seed=1)
  grads = dict_params(num_classes=2, seed=2)
  tx = l2sp(source, alpha=ALPHA, beta=BETA)
  state = tx.init(params)
  expected = jax.tree.map(lambda g, r: np.asarray(g) + r, grads,
                          reference_penalty(params, source))
  for update in (tx.update, jax.jit(tx.update)):
    updates, new_state = update(grads, state, params)
    chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=1e-7)
    assert new_state is state or jax.tree.all(jax.tree.map(
        lambda a, b: bool(jnp.all(a == b)), new_state, state))


def test_source_lives_in_state_as_a_copy_in_param_dtype():
  source = dict_params(seed=0)
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), dict_params(seed=1))
  tx = l2sp(source)
  state = tx.init(params)
  for got, want in zip(jax.tree.leaves(state.source["hidden"]),
                       jax.tree.leaves(source["hidden"])):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(got, want.astype(jnp.bfloat16))
  # Even in the same dtype the state owns its buffers, so donating the
  # source arrays (often the target's initial params) cannot corrupt it.
  same_dtype = tx.init(dict_params(seed=1)).source["hidden"][0]["kernel"]
  assert (same_dtype.unsafe_buffer_pointer()
          != source["hidden"][0]["kernel"].unsafe_buffer_pointer())
  # The new head keeps no source values: a scalar placeholder each (a
  # zero-size array would not survive an orbax checkpoint).
  assert all(leaf.shape == () and float(leaf) == 0.0
             for leaf in jax.tree.leaves(state.source["head"]))
  updates, _ = jax.jit(tx.update)(params, state, params)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


def test_source_is_not_a_compiled_constant():
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  tx = l2sp(source)
  state = tx.init(params)
  jaxpr = jax.make_jaxpr(tx.update)(params, state, params)
  assert not jaxpr.consts


def test_explicit_transferred_mask():
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  grads = dict_params(seed=2)
  transferred = {"hidden": {0: {"kernel": True, "bias": True},
                            1: {"kernel": False, "bias": False}},
                 "head": {"kernel": False, "bias": False}}
  tx = l2sp(source, alpha=ALPHA, beta=BETA, transferred=transferred)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected = jax.tree.map(
      lambda g, r: np.asarray(g) + r, grads,
      reference_penalty(params, source, transferred_hidden=(0,)))
  chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=1e-7)


def test_default_treats_a_resized_layer_as_new():
  source = dict_params(seed=0)
  source["hidden"][1] = {"kernel": jnp.ones((3, 7)), "bias": jnp.ones(7)}
  params = dict_params(seed=1)
  tx = l2sp(source, alpha=ALPHA, beta=BETA)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params),
                         tx.init(params), params)
  chex.assert_trees_all_close(
      updates, reference_penalty(params, source, transferred_hidden=(0,)),
      rtol=1e-6, atol=1e-7)


def test_chain_with_sgd_momentum_against_numpy():
  lr, momentum = 0.1, 0.9
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  tx = optax.chain(l2sp(source, alpha=ALPHA, beta=BETA),
                   optax.sgd(lr, momentum=momentum))
  state = tx.init(params)
  step = jax.jit(tx.update)
  ref_params = jax.tree.map(np.asarray, params)
  ref_trace = jax.tree.map(np.zeros_like, ref_params)
  for seed in range(3):
    grads = dict_params(seed=10 + seed)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    penalty = reference_penalty(ref_params, source)
    ref_trace = jax.tree.map(
        lambda m, g, r: np.asarray(g) + r + momentum * m,
        ref_trace, grads, penalty)
    ref_params = jax.tree.map(lambda p, m: p - lr * m, ref_params, ref_trace)
  chex.assert_trees_all_close(params, ref_params, rtol=1e-5, atol=1e-6)


def test_inside_scan_pulls_toward_the_source():
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  tx = optax.chain(l2sp(source, alpha=1.0, beta=0.0), optax.sgd(0.1))

  def body(carry, _):
    params, state = carry
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, state = tx.update(zero_grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (final, _), _ = jax.lax.scan(body, (params, tx.init(params)), None,
                               length=200)
  # With zero data gradient, w - w0 shrinks by 0.9 per step; beta=0 keeps
  # the head where it was.
  chex.assert_trees_all_close(final["hidden"], source["hidden"], atol=1e-6)
  chex.assert_trees_all_close(final["head"], params["head"])


def test_nnx_state_source_and_nnx_optimizer():
  x = jax.random.normal(jax.random.key(0), (8, 3))
  y = jax.random.normal(jax.random.key(1), (8, 2))
  source_model = tiny_mlp([3, 4, 4], 5, nnx.Rngs(0))  # Other task: 5 classes.
  source = nnx.state(source_model, nnx.Param)  # Param-wrapped.
  model = tiny_mlp([3, 4, 4], 2, nnx.Rngs(1))
  # Transfer the body; the head stays freshly initialized.
  nnx.update(model.hidden, nnx.state(source_model.hidden, nnx.Param))
  nnx.update(model.hidden[0], {"kernel": source_model.hidden[0].kernel[...]
                               + 0.5})
  optimizer = nnx.Optimizer(model, optax.chain(
      l2sp(source, alpha=ALPHA, beta=BETA), optax.sgd(1.0)), wrt=nnx.Param)
  before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  loss = lambda model: jnp.mean((model(x) - y) ** 2)
  grads = nnx.grad(loss)(model)
  updates = optimizer.update(model, grads)
  updates = nnx.to_pure_dict(nnx.State(updates))
  grads = nnx.to_pure_dict(grads)
  source_pure = nnx.to_pure_dict(source)
  expected = jax.tree.map(
      lambda g, r: -(np.asarray(g) + r), grads,
      reference_penalty(before, source_pure))
  chex.assert_trees_all_close(updates, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(  # The shifted kernel is pulled back by 0.5a.
      updates["hidden"][0]["kernel"] + grads["hidden"][0]["kernel"],
      np.full((3, 4), -0.5 * ALPHA), rtol=1e-5)


def test_params_none_raises_at_trace_time():
  params = dict_params()
  tx = l2sp(dict_params(seed=3))
  state = tx.init(params)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, state)
  with pytest.raises(ValueError, match="params"):
    jax.jit(tx.update)(params, state)


def test_missing_source_leaf_names_the_path():
  source = dict_params()
  del source["hidden"][1]["kernel"]
  with pytest.raises(ValueError, match=r"\('hidden', 1, 'kernel'\)"):
    l2sp(source).init(dict_params())


def test_extra_source_leaf_names_the_path():
  source = dict_params(num_hidden=3)
  with pytest.raises(ValueError, match=r"\('hidden', 2, 'bias'\)"):
    l2sp(source).init(dict_params(num_hidden=2))


def test_shape_mismatch_of_a_transferred_leaf_names_path_and_shapes():
  source = dict_params()
  source["hidden"][0]["kernel"] = jnp.ones((3, 7))
  transferred = jax.tree.map(lambda _: True, dict_params())
  transferred["head"] = {"kernel": False, "bias": False}
  with pytest.raises(ValueError,
                     match=r"\('hidden', 0, 'kernel'\).*\(3, 7\).*\(3, 3\)"):
    l2sp(source, transferred=transferred).init(dict_params())


def test_transferred_tree_must_cover_params():
  with pytest.raises(ValueError, match=r"no flag at path \('head', 'bias'\)"):
    l2sp(dict_params(), transferred={"hidden": jax.tree.map(
        lambda _: True, dict_params()["hidden"])}).init(dict_params())


@pytest.mark.parametrize("kwargs,name", [
    ({"alpha": -1.0}, "alpha"), ({"beta": -1e-3}, "beta"),
    ({"alpha": float("nan")}, "alpha"), ({"beta": True}, "beta"),
])
def test_bad_hyperparameters(kwargs, name):
  with pytest.raises(ValueError, match=f"{name}="):
    l2sp(dict_params(), **kwargs)


def test_injected_alpha_is_traced():
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  tx = optax.inject_hyperparams(l2sp)(source, alpha=ALPHA, beta=BETA)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  chex.assert_trees_all_close(updates, reference_penalty(params, source),
                              rtol=1e-6, atol=1e-7)


def test_state_survives_an_orbax_round_trip(tmp_path):
  import orbax.checkpoint as ocp
  source = dict_params(seed=0)
  params = dict_params(seed=1)
  tx = l2sp(source, alpha=0.1, beta=0.01)
  state = tx.init(params)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "l2sp", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "l2sp", target=state)
  checkpointer.close()
  grads = jax.tree.map(jnp.ones_like, params)
  expected, _ = tx.update(grads, state, params)
  got, _ = tx.update(grads, restored, params)
  chex.assert_trees_all_equal(got, expected)
