"""Tests for saving and restoring source parameters with Orbax."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lrtransfer._src.checkpoint import (
  CheckpointError,
  load_params,
  load_source_model,
  save_params,
)
from lrtransfer._src.models import MLP, target_from_source


def _flat(model_or_state):
  state = model_or_state
  if isinstance(state, dict):
    return state
  if isinstance(state, nnx.Module):
    state = nnx.state(state, nnx.Param)
  flat = nnx.to_flat_state(nnx.as_pure(state))
  return {path: np.asarray(value) for path, value in flat}


def _assert_same_params(a, b):
  a, b = _flat(a), _flat(b)
  assert a.keys() == b.keys()
  for path in a:
    np.testing.assert_array_equal(a[path], b[path], err_msg=str(path))


# The architecture of test_models.py: parameter shapes already compiled for
# there are not compiled again (eager JAX compiles per shape).
IN, HIDDEN, OUT = 12, (16, 8, 6), 4


def _mlp(seed=0, **kwargs):
  kwargs = {"in_features": IN, "hidden": HIDDEN, "num_outputs": OUT,
            "activation": "tanh", **kwargs}
  return MLP(**kwargs, rngs=nnx.Rngs(seed))


def _abstract_mlp(**kwargs):
  # A template without initialisation work: `load_params` reads no values.
  return nnx.eval_shape(lambda: _mlp(**kwargs))


@pytest.fixture(scope="module")
def model():
  return _mlp()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
  return save_params(tmp_path_factory.mktemp("ckpt") / "source", model)


def test_round_trip(model, saved):
  like = _mlp(seed=1)
  untouched = _flat(like)
  state = load_params(saved, like=like)
  _assert_same_params(state, model)
  _assert_same_params(untouched, like)  # `like` is only a template.
  nnx.update(like, state)
  x = jnp.linspace(-1, 1, 2 * IN).reshape(2, IN)
  np.testing.assert_array_equal(like(x), model(x))


def test_load_params_like_a_state(model, saved):
  state = nnx.state(model, nnx.Param)
  _assert_same_params(load_params(saved, state), model)
  _assert_same_params(load_params(saved, nnx.as_pure(state)), model)


def test_load_source_model_rebuilds_the_module(model, saved):
  restored = load_source_model(saved)
  assert isinstance(restored, MLP)
  assert restored.config == model.config
  _assert_same_params(restored, model)
  x = jnp.ones((2, IN))
  np.testing.assert_array_equal(restored(x), model(x))
  # A real, usable module: a target can be built from it.
  target = target_from_source(restored, OUT, rngs=nnx.Rngs(3))
  assert target(x).shape == (2, OUT)


def test_save_returns_an_absolute_path(model, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path = save_params("relative/ckpt", model)
  assert path.is_absolute() and path == tmp_path / "relative" / "ckpt"
  _assert_same_params(load_params("relative/ckpt", model), model)


def test_overwrite_is_explicit(model, tmp_path):
  path = save_params(tmp_path / "ckpt", model)
  other = _mlp(seed=7)
  with pytest.raises(CheckpointError, match="already exists.*overwrite=True"):
    save_params(path, other)
  _assert_same_params(load_params(path, model), model)  # Left as it was.
  save_params(path, other, overwrite=True)
  _assert_same_params(load_params(path, model), other)


def test_missing_checkpoint(model, tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(CheckpointError, match=f"no checkpoint at {missing}"):
    load_params(missing, model)
  with pytest.raises(CheckpointError, match="no checkpoint"):
    load_source_model(missing)


def test_not_a_checkpoint(model, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="not an lrtransfer parameter"):
    load_params(tmp_path / "empty", model)


@pytest.mark.parametrize(
    "hidden, num_outputs, problem",
    [
        ((16, 9, 6), 4,
         "hidden/1/kernel: shape (16, 8) in the checkpoint, (16, 9) expected"),
        (HIDDEN, 2, "head/bias: shape (4,) in the checkpoint, (2,) expected"),
        ((16, 8), 4, "hidden/2/kernel: in the checkpoint but not in the model"),
        ((16, 8, 6, 6), 4, "hidden/3/kernel: missing from the checkpoint"),
    ],
)
def test_mismatch_names_the_parameter(saved, hidden, num_outputs, problem):
  like = _abstract_mlp(hidden=hidden, num_outputs=num_outputs)
  with pytest.raises(CheckpointError) as info:
    load_params(saved, like)
  message = str(info.value)
  assert str(saved) in message and problem in message, message


def test_mismatched_activation(saved):
  like = _abstract_mlp(activation="relu")
  with pytest.raises(CheckpointError, match="activation 'tanh'.*'relu'"):
    load_params(saved, like)


def test_bare_state(model, tmp_path):
  path = save_params(tmp_path / "state", nnx.state(model, nnx.Param))
  _assert_same_params(load_params(path, model), model)
  with pytest.raises(CheckpointError, match="without a model config"):
    load_source_model(path)


def test_restores_into_the_dtype_of_like(model, saved):
  like = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16),
      nnx.state(model, nnx.Param),
  )
  state = load_params(saved, like)
  assert {v.dtype for v in jax.tree.leaves(state)} == {jnp.dtype(jnp.bfloat16)}


def test_no_background_threads_left(model, tmp_path):
  before = set(threading.enumerate())
  path = save_params(tmp_path / "ckpt", model)
  load_source_model(path)
  # Orbax's closed event loops let their idle executor threads exit on their
  # own; nothing may keep running.
  for thread in set(threading.enumerate()) - before:
    thread.join(timeout=5.0)
    assert not thread.is_alive(), thread


def test_rejects_other_objects(tmp_path):
  with pytest.raises(TypeError, match="nnx.Module or an nnx.State"):
    save_params(tmp_path / "x", {"w": jnp.ones(3)})
