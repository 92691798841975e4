"""Checkpoints tag the model type: the CNN (with its BatchNorm statistics)
saves and restores, old MLP checkpoints still load, unknown or mismatched
types are refused with a clear error."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from lrtransfer._src import checkpoint
from lrtransfer._src.checkpoint import (
  CheckpointError,
  load_params,
  load_source_model,
  save_params,
)
from lrtransfer.models import CNN, MLP

SHAPE = (8, 8, 1)


def _cnn(seed=0, **kwargs):
  kwargs = {"image_shape": SHAPE, "channels": (2, 3), "dense": 4,
            "num_outputs": 3, **kwargs}
  return CNN(**kwargs, rngs=nnx.Rngs(seed))


def _pure(state):
  return {path: np.asarray(v) for path, v in
          nnx.to_flat_state(nnx.as_pure(state))}


@pytest.fixture(scope="module")
def trained_cnn():
  model = _cnn()
  # Statistics away from their initial 0 / 1: a restore that dropped them
  # would normalise differently in eval mode.
  model.train()
  model(jnp.linspace(-3, 5, 4 * 64).reshape(4, *SHAPE))
  model.eval()
  return model


@pytest.fixture(scope="module")
def saved_cnn(trained_cnn, tmp_path_factory):
  return save_params(tmp_path_factory.mktemp("ckpt") / "cnn", trained_cnn)


def _write_metadata(path, metadata, params):
  with checkpoint._checkpointer() as checkpointer:
    checkpointer.save(path.absolute(), ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        metadata=ocp.args.JsonSave(metadata)))
  return path


def test_cnn_round_trip(trained_cnn, saved_cnn):
  restored = load_source_model(saved_cnn)
  assert isinstance(restored, CNN) and restored.config == trained_cnn.config
  for kind in (nnx.Param, nnx.BatchStat):
    expected = _pure(nnx.state(trained_cnn, kind))
    got = _pure(nnx.state(restored, kind))
    assert expected.keys() == got.keys() and expected
    for path in expected:
      np.testing.assert_array_equal(got[path], expected[path], str(path))
  assert not np.allclose(
      _pure(nnx.state(restored, nnx.BatchStat))[("convs", 0, 1, "mean")], 0)
  restored.eval()
  x = jnp.linspace(-1, 1, 2 * 64).reshape(2, *SHAPE)
  np.testing.assert_allclose(restored(x), trained_cnn(x), rtol=1e-6)
  # The Dropout RNG is real (not an abstract placeholder): it trains.
  restored.train()
  assert restored(x).shape == (2, 3)


def test_load_params_with_stats_into_a_fresh_cnn(trained_cnn, saved_cnn):
  fresh = _cnn(seed=3)
  nnx.update(fresh, load_params(saved_cnn, like=fresh, stats=True))
  fresh.eval()
  x = jnp.ones((1, *SHAPE))
  np.testing.assert_allclose(fresh(x), trained_cnn(x), rtol=1e-6)


def test_another_model_type_is_refused(saved_cnn):
  mlp = MLP(64, (4,), 3, rngs=nnx.Rngs(0))
  with pytest.raises(CheckpointError,
                     match="model of type 'cnn' .*the model is of type 'mlp'"):
    load_params(saved_cnn, like=mlp)


def test_another_cnn_config_is_refused(saved_cnn):
  with pytest.raises(CheckpointError, match="dropout 0.25 in the checkpoint, "
                                            "0.5 expected"):
    load_params(saved_cnn, like=_cnn(dropout=0.5))


def test_unknown_model_type_is_refused(tmp_path):
  path = _write_metadata(tmp_path / "other", {
      "format": "lrtransfer.params", "version": 2, "model_type": "resnet",
      "config": {}}, {"w": np.zeros(2, np.float32)})
  with pytest.raises(CheckpointError,
                     match="type 'resnet'.*known: cnn, mlp"):
    load_source_model(path)


def test_newer_format_version_is_refused(tmp_path):
  path = _write_metadata(tmp_path / "newer", {
      "format": "lrtransfer.params", "version": 99, "model_type": "mlp",
      "config": {}}, {"w": np.zeros(2, np.float32)})
  with pytest.raises(CheckpointError, match="version 99"):
    load_source_model(path)


def test_version_1_mlp_checkpoints_still_load(tmp_path):
  mlp = MLP(4, (3,), 2, activation="tanh", rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(mlp, nnx.Param))
  # What lrtransfer wrote before model types: an "mlp_config" entry only.
  path = _write_metadata(tmp_path / "v1", {
      "format": "lrtransfer.params", "version": 1,
      "mlp_config": {"in_features": 4, "hidden": [3], "num_outputs": 2,
                     "activation": "tanh"}}, params)
  restored = load_source_model(path)
  assert isinstance(restored, MLP) and restored.config == mlp.config
  x = jnp.ones((2, 4))
  np.testing.assert_array_equal(restored(x), mlp(x))
  with pytest.raises(CheckpointError, match="type 'mlp'.*type 'cnn'"):
    load_params(path, like=_cnn())


def test_a_cnn_saved_as_a_bare_state(trained_cnn, tmp_path):
  path = save_params(tmp_path / "bare", nnx.state(trained_cnn, nnx.Param))
  with pytest.raises(CheckpointError, match="bare state"):
    load_source_model(path)
  # The parameters load; the statistics were never saved.
  load_params(path, like=_cnn())
  with pytest.raises(CheckpointError, match="no BatchNorm statistics"):
    load_params(path, like=_cnn(), stats=True)
