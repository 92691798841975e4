"""Tests for the NNX MLP and building target models from source models."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src.models import (
  MLP,
  MLPConfig,
  target_from_source,
  transferred_mask,
)

# One architecture (and so one set of parameter shapes) for nearly every test:
# eager JAX compiles each initialiser once per shape, which dominates the run
# time of these tests on a small CPU.
IN, HIDDEN, OUT = 12, (16, 8, 6), 4


def _mlp(seed=0, **kwargs):
  kwargs = {"in_features": IN, "hidden": HIDDEN, "num_outputs": OUT, **kwargs}
  return MLP(**kwargs, rngs=nnx.Rngs(seed))


def _params(model):
  return {
      path: np.asarray(value)
      for path, value in nnx.to_flat_state(
          nnx.as_pure(nnx.state(model, nnx.Param))
      )
  }


@pytest.fixture(scope="module")
def source():
  return _mlp()


# NumPy references (jax.nn.gelu defaults to the tanh approximation).
NUMPY_ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
    "silu": lambda h: h / (1.0 + np.exp(-h)),
    "gelu": lambda h: 0.5 * h * (
        1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (h + 0.044715 * h**3))),
}


@pytest.mark.parametrize("activation", sorted(NUMPY_ACTIVATIONS))
def test_mlp_computes_what_the_docstring_says(activation):
  model = _mlp(activation=activation)
  assert model.config == MLPConfig(IN, HIDDEN, OUT, activation)
  params = _params(model)
  x = np.linspace(-1.0, 1.0, 3 * IN, dtype=np.float32).reshape(3, IN)
  h = x
  for i in range(len(HIDDEN)):
    h = NUMPY_ACTIVATIONS[activation](
        h @ params[("hidden", i, "kernel")] + params[("hidden", i, "bias")])
  expected = h @ params[("head", "kernel")] + params[("head", "bias")]
  logits = model(jnp.asarray(x))
  assert logits.shape == (3, OUT) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_mlp_param_paths(source):
  shapes = {path: p.shape for path, p in _params(source).items()}
  assert shapes == {
      ("hidden", 0, "kernel"): (12, 16),
      ("hidden", 0, "bias"): (16,),
      ("hidden", 1, "kernel"): (16, 8),
      ("hidden", 1, "bias"): (8,),
      ("hidden", 2, "kernel"): (8, 6),
      ("hidden", 2, "bias"): (6,),
      ("head", "kernel"): (6, 4),
      ("head", "bias"): (4,),
  }


def test_mlp_without_hidden_layers_is_linear():
  model = _mlp(hidden=())
  params = _params(model)
  x = np.ones((2, IN), np.float32)
  expected = x @ params[("head", "kernel")] + params[("head", "bias")]
  np.testing.assert_allclose(model(jnp.asarray(x)), expected, rtol=1e-5)


def test_mlp_under_jit(source):
  x = jnp.ones((2, IN))
  np.testing.assert_allclose(
      nnx.jit(lambda m, x: m(x))(source, x), source(x), rtol=1e-6
  )


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
  with pytest.raises(ValueError, match=match):
    _mlp(**kwargs)


def test_config_accepts_a_list_of_widths():
  assert MLPConfig(3, [4, 5]).hidden == (4, 5)


def test_target_copies_all_hidden_layers_but_the_last_by_default(source):
  target = target_from_source(source, 7, rngs=nnx.Rngs(1))
  assert target.config == MLPConfig(IN, HIDDEN, 7, "relu")
  src, tgt = _params(source), _params(target)
  for path in src:
    if path[0] == "hidden" and path[-1] == "kernel":  # biases start at 0
      same = np.array_equal(tgt[path], src[path])
      assert same == (path[1] < len(HIDDEN) - 1), path
  assert tgt[("head", "kernel")].shape == (6, 7)
  assert tgt[("head", "bias")].shape == (7,)
  assert target(jnp.ones((2, IN))).shape == (2, 7)


def test_new_head_differs_from_source_head(source):
  target = target_from_source(source, 4, rngs=nnx.Rngs(1))
  assert not np.allclose(
      _params(target)[("head", "kernel")], _params(source)[("head", "kernel")]
  )


def test_partial_transfer_reinitialises_upper_layers(source):
  target = target_from_source(source, 4, transfer_layers=1, rngs=nnx.Rngs(1))
  src, tgt = _params(source), _params(target)
  np.testing.assert_array_equal(
      tgt[("hidden", 0, "kernel")], src[("hidden", 0, "kernel")]
  )
  for i in (1, 2):
    kernel = ("hidden", i, "kernel")
    assert tgt[kernel].shape == src[kernel].shape
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
  x = jnp.ones((3, IN))
  np.testing.assert_array_equal(target(x), source(x))


def _sgd_step(model, learning_rate=1.0):
  """One jitted SGD step with unit gradients (one compile, not one per op)."""
  optimizer = nnx.Optimizer(model, optax.sgd(learning_rate), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    optimizer.update(model, grads)

  step(model, optimizer)


def test_target_shares_no_buffers_with_source(source):
  source = nnx.clone(source)
  before = _params(source)
  target = target_from_source(source, OUT, keep_head=True, rngs=nnx.Rngs(1))
  for src_leaf, tgt_leaf in zip(
      jax.tree.leaves(nnx.state(source, nnx.Param)),
      jax.tree.leaves(nnx.state(target, nnx.Param)),
  ):
    assert src_leaf.unsafe_buffer_pointer() != tgt_leaf.unsafe_buffer_pointer()
  # Updating the target leaves the source untouched...
  _sgd_step(target)
  target.hidden[1].bias[...] = target.hidden[1].bias[...] + 5.0
  for path, value in _params(source).items():
    np.testing.assert_array_equal(value, before[path])
  # ... and updating the source leaves the target untouched.
  target_before = _params(target)
  _sgd_step(source)
  source.hidden[0].kernel[...] = source.hidden[0].kernel[...] * 0.0
  for path, value in _params(target).items():
    np.testing.assert_array_equal(value, target_before[path])


def test_target_is_deterministic_given_rngs(source):
  def build():
    return _params(
        target_from_source(source, OUT, transfer_layers=1, rngs=nnx.Rngs(5)))

  a, b = build(), build()
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
  target = target_from_source(source, 4, transfer_layers=2, rngs=nnx.Rngs(1))
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
  target = target_from_source(source, OUT, transfer_layers=2, rngs=nnx.Rngs(1))
  frozen = transferred_mask(target)
  tx = optax.multi_transform(
      {"frozen": optax.set_to_zero(), "trained": optax.sgd(0.1)},
      jax.tree.map(lambda f: "frozen" if f else "trained", frozen),
  )
  optimizer = nnx.Optimizer(target, tx, wrt=nnx.Param)
  before = _params(target)

  @nnx.jit
  def step(model, optimizer):
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    optimizer.update(model, grads)

  step(target, optimizer)
  after = _params(target)
  moved = {p: not np.array_equal(after[p], before[p]) for p in after}
  assert moved == {path: not flag for path, flag in nnx.to_flat_state(frozen)}


def test_any_model_with_a_target_and_its_batchnorm_statistics():
  from _models import SmallCNN
  source = SmallCNN(rngs=nnx.Rngs(0))
  source.norm1.mean[...] = jnp.full((4,), 3.0)  # as if trained
  fresh = SmallCNN(num_outputs=5, rngs=nnx.Rngs(1))
  target = target_from_source(source, target=fresh)
  # Levels conv1+norm1, conv2, dense, out: all but the last below the head.
  assert target.num_transferred_levels == 2
  np.testing.assert_array_equal(target.conv2.kernel[...],
                                source.conv2.kernel[...])
  np.testing.assert_array_equal(target.norm1.mean[...], 3.0)
  assert not np.allclose(target.dense.kernel[...], source.dense.kernel[...])
  assert fresh.norm1.mean[...].sum() == 0  # the given target is not changed
  mask = dict(nnx.to_flat_state(transferred_mask(target)))
  assert mask[("conv2", "kernel")] and not mask[("dense", "kernel")]
  assert not mask[("out", "kernel")]


def test_cnn_config_rebuilds_the_target():
  source = lrtransfer.models.CNN(image_shape=(8, 8, 1), channels=(4,),
                                 dense=8, num_outputs=10, rngs=nnx.Rngs(0))
  target = target_from_source(source, 3, rngs=nnx.Rngs(1))
  assert target.config == dataclasses.replace(source.config, num_outputs=3)
  assert target(jnp.ones((2, 64))).shape == (2, 3)
  with pytest.raises(ValueError, match="dropout"):
    lrtransfer.models.CNNConfig(dropout=1.0)


def test_target_needs_a_module_and_a_way_to_build_the_target():
  with pytest.raises(TypeError, match="source must be a flax.nnx.Module"):
    target_from_source({"w": 1.0}, 3, rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match="Pass target="):
    target_from_source(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), 3,
                       rngs=nnx.Rngs(1))
