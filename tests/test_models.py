"""Tests for the NNX MLP and building target models from source models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrtransfer._src.models import MLP, MLPConfig, target_from_source
from lrtransfer._src.models import transferred_mask


def _params(model):
  return {
      path: np.asarray(value)
      for path, value in nnx.to_flat_state(
          nnx.as_pure(nnx.state(model, nnx.Param))
      )
  }


@pytest.fixture(scope="module")
def source():
  return MLP(12, hidden=(16, 8, 6), num_outputs=4, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "silu"])
def test_mlp_shapes_and_activation(activation):
  model = MLP(5, hidden=(7, 3), num_outputs=4, activation=activation,
              rngs=nnx.Rngs(0))
  logits = model(jnp.ones((9, 5)))
  assert logits.shape == (9, 4)
  assert logits.dtype == jnp.float32
  assert model.config == MLPConfig(5, (7, 3), 4, activation)


def test_mlp_param_paths():
  model = MLP(5, hidden=(7, 3), num_outputs=4, rngs=nnx.Rngs(0))
  shapes = {path: p.shape for path, p in _params(model).items()}
  assert shapes == {
      ("hidden", 0, "kernel"): (5, 7),
      ("hidden", 0, "bias"): (7,),
      ("hidden", 1, "kernel"): (7, 3),
      ("hidden", 1, "bias"): (3,),
      ("head", "kernel"): (3, 4),
      ("head", "bias"): (4,),
  }


def test_mlp_without_hidden_layers_is_linear():
  model = MLP(5, hidden=(), num_outputs=2, rngs=nnx.Rngs(0))
  x = jnp.arange(10.0).reshape(2, 5)
  expected = x @ model.head.kernel[...] + model.head.bias[...]
  np.testing.assert_allclose(model(x), expected, rtol=1e-6)


def test_mlp_computes_what_the_docstring_says():
  model = MLP(3, hidden=(4,), num_outputs=2, activation="tanh",
              rngs=nnx.Rngs(1))
  x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
  h = jnp.tanh(x @ model.hidden[0].kernel[...] + model.hidden[0].bias[...])
  np.testing.assert_allclose(
      model(x), h @ model.head.kernel[...] + model.head.bias[...], rtol=1e-6
  )


def test_mlp_trains_under_jit_with_nnx_optimizer():
  model = MLP(4, hidden=(8,), num_outputs=2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(0), (32, 4))
  y = (x[:, 0] > 0).astype(jnp.int32)

  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  first = step(model, optimizer)
  for _ in range(20):
    last = step(model, optimizer)
  assert last < first


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_features=0), "in_features"),
        (dict(in_features=2.5), "in_features"),
        (dict(in_features=True), "in_features"),
        (dict(num_outputs=0), "num_outputs"),
        (dict(hidden=(4, 0)), r"hidden\[1\]"),
        (dict(hidden=(4, -2)), r"hidden\[1\]"),
        (dict(hidden=8), "hidden"),
        (dict(hidden="8"), "hidden"),
        (dict(activation="sigmoid"), "'sigmoid'"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs, match):
  kwargs = {"in_features": 3, **kwargs}
  with pytest.raises(ValueError, match=match):
    MLP(**kwargs, rngs=nnx.Rngs(0))


def test_config_accepts_a_list_of_widths():
  assert MLPConfig(3, [4, 5]).hidden == (4, 5)


def test_target_copies_all_hidden_layers_and_builds_a_new_head(source):
  target = target_from_source(source, 7, rngs=nnx.Rngs(1))
  assert target.config == MLPConfig(12, (16, 8, 6), 7, "relu")
  src, tgt = _params(source), _params(target)
  for path in src:
    if path[0] == "hidden":
      np.testing.assert_array_equal(tgt[path], src[path])
  assert tgt[("head", "kernel")].shape == (6, 7)
  assert tgt[("head", "bias")].shape == (7,)
  assert target(jnp.ones((2, 12))).shape == (2, 7)


def test_new_head_differs_from_source_head(source):
  target = target_from_source(source, 4, rngs=nnx.Rngs(1))
  assert not np.allclose(
      _params(target)[("head", "kernel")], _params(source)[("head", "kernel")]
  )


def test_partial_transfer_reinitialises_upper_layers(source):
  target = target_from_source(source, 3, transfer_layers=1, rngs=nnx.Rngs(1))
  src, tgt = _params(source), _params(target)
  np.testing.assert_array_equal(
      tgt[("hidden", 0, "kernel")], src[("hidden", 0, "kernel")]
  )
  for i in (1, 2):
    assert tgt[("hidden", i, "kernel")].shape == src[("hidden", i, "kernel")].shape
    assert not np.allclose(
        tgt[("hidden", i, "kernel")], src[("hidden", i, "kernel")]
    )


def test_zero_transfer_layers_is_a_fresh_model(source):
  target = target_from_source(source, 4, transfer_layers=0, rngs=nnx.Rngs(1))
  src, tgt = _params(source), _params(target)
  assert all(not np.allclose(tgt[p], src[p]) for p in src if p[-1] == "kernel")


def test_keep_head_copies_the_head(source):
  target = target_from_source(source, 4, keep_head=True, rngs=nnx.Rngs(1))
  src, tgt = _params(source), _params(target)
  for path in src:
    np.testing.assert_array_equal(tgt[path], src[path])
  x = jnp.ones((3, 12))
  np.testing.assert_array_equal(target(x), source(x))


def test_target_shares_no_buffers_with_source(source):
  before = _params(source)
  target = target_from_source(source, 4, keep_head=True, rngs=nnx.Rngs(1))
  pairs = [
      (source.hidden[0].kernel, target.hidden[0].kernel),
      (source.head.bias, target.head.bias),
  ]
  for src_param, tgt_param in pairs:
    assert (
        src_param[...].unsafe_buffer_pointer()
        != tgt_param[...].unsafe_buffer_pointer()
    )
  # Training the target leaves the source untouched.
  optimizer = nnx.Optimizer(target, optax.sgd(1.0), wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(target, nnx.Param))
  optimizer.update(target, grads)
  target.hidden[1].bias[...] = target.hidden[1].bias[...] + 5.0
  for path, value in _params(source).items():
    np.testing.assert_array_equal(value, before[path])
  # And changing the source leaves the target untouched.
  target_before = _params(target)
  source_copy = nnx.clone(source)
  source_copy.hidden[0].kernel[...] = source_copy.hidden[0].kernel[...] * 0.0
  target2 = target_from_source(source_copy, 4, rngs=nnx.Rngs(1))
  source_copy.hidden[0].kernel[...] = source_copy.hidden[0].kernel[...] + 1.0
  np.testing.assert_array_equal(np.asarray(target2.hidden[0].kernel[...]), 0.0)
  for path, value in _params(target).items():
    np.testing.assert_array_equal(value, target_before[path])


def test_target_is_deterministic_given_rngs(source):
  a = _params(target_from_source(source, 3, transfer_layers=1, rngs=nnx.Rngs(5)))
  b = _params(target_from_source(source, 3, transfer_layers=1, rngs=nnx.Rngs(5)))
  for path in a:
    np.testing.assert_array_equal(a[path], b[path])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(transfer_layers=4), "transfer_layers"),
        (dict(transfer_layers=-1), "transfer_layers"),
        (dict(transfer_layers=1.0), "transfer_layers"),
        (dict(transfer_layers=True), "transfer_layers"),
        (dict(num_outputs=5, keep_head=True), "num_outputs"),
        (dict(transfer_layers=2, keep_head=True), "transfer_layers"),
        (dict(num_outputs=0), "num_outputs"),
    ],
)
def test_target_rejects_bad_arguments(source, kwargs, match):
  kwargs = {"num_outputs": 4, **kwargs}
  with pytest.raises(ValueError, match=match):
    target_from_source(source, rngs=nnx.Rngs(1), **kwargs)


def test_transferred_mask(source):
  target = target_from_source(source, 3, transfer_layers=2, rngs=nnx.Rngs(1))
  mask = transferred_mask(target)
  assert jax.tree.structure(mask) == jax.tree.structure(
      nnx.as_pure(nnx.state(target, nnx.Param))
  )
  flat = dict(nnx.to_flat_state(mask))
  assert flat == {
      ("hidden", 0, "kernel"): True,
      ("hidden", 0, "bias"): True,
      ("hidden", 1, "kernel"): True,
      ("hidden", 1, "bias"): True,
      ("hidden", 2, "kernel"): False,
      ("hidden", 2, "bias"): False,
      ("head", "kernel"): False,
      ("head", "bias"): False,
  }
  keep = transferred_mask(
      target_from_source(source, 4, keep_head=True, rngs=nnx.Rngs(1))
  )
  assert all(jax.tree.leaves(keep))
  assert not any(jax.tree.leaves(transferred_mask(source)))


def test_transferred_mask_works_as_an_optax_mask(source):
  # Freeze the transferred layers: only the new layers move.
  target = target_from_source(source, 3, transfer_layers=2, rngs=nnx.Rngs(1))
  frozen = transferred_mask(target)
  tx = optax.multi_transform(
      {"frozen": optax.set_to_zero(), "trained": optax.sgd(0.1)},
      jax.tree.map(lambda f: "frozen" if f else "trained", frozen),
  )
  before = _params(target)
  optimizer = nnx.Optimizer(target, tx, wrt=nnx.Param)
  optimizer.update(
      target, jax.tree.map(jnp.ones_like, nnx.state(target, nnx.Param))
  )
  after = _params(target)
  moved = {path: not np.array_equal(after[path], before[path]) for path in after}
  assert moved == {path: not flag for path, flag in nnx.to_flat_state(frozen)}
