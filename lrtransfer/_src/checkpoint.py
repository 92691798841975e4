"""Saving and restoring source-model parameters with Orbax.

A checkpoint is one directory written by an Orbax composite checkpointer with
two items:

* ``params`` -- the ``nnx.Param`` arrays, as a pure nested dict
  (``nnx.to_pure_dict(nnx.state(model, nnx.Param))``);
* ``metadata`` -- JSON: a format tag and the model's `MLPConfig` (``None``
  when a bare state was saved), so `load_source_model` can rebuild the module
  without being told its shape.

Restoring checks the stored tree against the expected one *before* reading any
array, and refuses with a `CheckpointError` naming the first differences:
Orbax would otherwise report a shape mismatch without the parameter's name, and
would silently skip entries the caller did not ask for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from lrtransfer._src import interrupts
from lrtransfer._src.models import MLP, MLPConfig

_FORMAT = "lrtransfer.params"
_VERSION = 1
_MAX_LISTED = 5  # Differences named in an error message.


class CheckpointError(ValueError):
  """A checkpoint is missing, exists already, or does not match the model."""


def _checkpointer() -> ocp.Checkpointer:
  # Synchronous on purpose: `save_params` returns only once the checkpoint is
  # committed, and no background thread outlives the call. Naming the items'
  # handlers lets `metadata()` read the stored tree without restoring it.
  return ocp.Checkpointer(
      ocp.CompositeCheckpointHandler(
          params=ocp.StandardCheckpointHandler(),
          metadata=ocp.JsonCheckpointHandler(),
      )
  )


def _absolute(path: str | Path) -> Path:
  # Orbax rejects relative paths.
  return Path(path).expanduser().absolute()


def _param_state(model_or_state: nnx.Module | nnx.State) -> nnx.State:
  if isinstance(model_or_state, nnx.Module):
    return nnx.state(model_or_state, nnx.Param)
  if isinstance(model_or_state, nnx.State):
    return model_or_state
  raise TypeError(
      "expected an nnx.Module or an nnx.State, got"
      f" {type(model_or_state).__name__}"
  )


def _key(path: tuple[Any, ...]) -> str:
  # Orbax stores integer keys (the `nnx.List` index) as strings.
  return "/".join(str(k) for k in path)


def save_params(
    path: str | Path,
    model_or_state: nnx.Module | nnx.State,
    *,
    overwrite: bool = False,
) -> Path:
  """Saves a model's parameters (and its `MLPConfig`, for an `MLP`).

  Args:
    path: checkpoint directory to create; relative paths are made absolute.
    model_or_state: a module (its ``nnx.Param`` state is saved) or an
      ``nnx.State`` (saved as is; `load_source_model` then cannot rebuild a
      module from it, use `load_params`).
    overwrite: replace an existing checkpoint at ``path``.

  Returns:
    The absolute checkpoint path.

  Raises:
    CheckpointError: ``path`` exists and ``overwrite`` is False.
  """
  path = _absolute(path)
  if path.exists() and not overwrite:
    raise CheckpointError(
        f"{path} already exists; pass overwrite=True to replace it"
    )
  config = getattr(model_or_state, "config", None)
  metadata = {
      "format": _FORMAT,
      "version": _VERSION,
      "mlp_config": (
          dataclasses.asdict(config) if isinstance(config, MLPConfig) else None
      ),
  }
  params = nnx.to_pure_dict(_param_state(model_or_state))
  # An interrupt waits for the save (interrupts.deferred): no half-written
  # or temporary folder is left behind.
  with interrupts.deferred(), _checkpointer() as checkpointer:
    checkpointer.save(
        path,
        ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            metadata=ocp.args.JsonSave(metadata),
        ),
        force=overwrite,
    )
  return path


def _read_metadata(checkpointer: ocp.Checkpointer, path: Path) -> dict:
  if not path.exists():
    raise CheckpointError(f"no checkpoint at {path}")
  try:
    metadata = checkpointer.restore(
        path, ocp.args.Composite(metadata=ocp.args.JsonRestore())
    )["metadata"]
  except (FileNotFoundError, KeyError, ValueError) as e:
    raise CheckpointError(
        f"{path} is not an lrtransfer parameter checkpoint: {e}"
    ) from e
  if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
    raise CheckpointError(
        f"{path} is not an lrtransfer parameter checkpoint (metadata:"
        f" {metadata!r})"
    )
  return metadata


def _stored_shapes(checkpointer: ocp.Checkpointer, path: Path) -> dict:
  tree = checkpointer.metadata(path).item_metadata["params"]
  if tree is None:
    raise CheckpointError(f"{path} holds no parameters")
  return {
      _key(tuple(k.key for k in key_path)): tuple(leaf.shape)
      for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree.tree)
  }


def _check_matches(path: Path, stored: dict, expected: dict) -> None:
  problems = [
      f"{k}: missing from the checkpoint" for k in expected if k not in stored
  ]
  problems += [
      f"{k}: in the checkpoint but not in the model" for k in stored
      if k not in expected
  ]
  problems += [
      f"{k}: shape {stored[k]} in the checkpoint, {expected[k]} expected"
      for k in expected
      if k in stored and stored[k] != expected[k]
  ]
  if problems:
    more = len(problems) - _MAX_LISTED
    raise CheckpointError(
        f"checkpoint {path} does not match the model: "
        + "; ".join(problems[:_MAX_LISTED])
        + (f"; and {more} more" if more > 0 else "")
    )


def load_params(
    path: str | Path, like: nnx.Module | nnx.State
) -> nnx.State:
  """Restores parameters saved by `save_params`.

  Every parameter of ``like`` must be in the checkpoint with the same shape,
  and the checkpoint must hold nothing else: there is no partial load. For an
  `MLP` ``like``, the stored activation must match too. Arrays take ``like``'s
  dtypes (Orbax casts on read).

  Args:
    path: the checkpoint directory.
    like: a module, or its ``nnx.Param`` state, giving the expected tree; its
      values are not read (an abstract ``nnx.eval_shape`` module works) and it
      is not modified.

  Returns:
    An ``nnx.State`` shaped like ``nnx.state(like, nnx.Param)`` holding the
    restored arrays; apply it with ``nnx.update(model, state)``.

  Raises:
    CheckpointError: no checkpoint at ``path``, not one of ours, or its
      parameter names, shapes or activation differ from ``like``'s.
  """
  path = _absolute(path)
  state = _param_state(like)
  expected = {
      _key(k): tuple(jax.numpy.shape(v))
      for k, v in nnx.to_flat_state(nnx.as_pure(state))
  }
  abstract = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state)
  )
  with _checkpointer() as checkpointer:
    stored_config = _read_metadata(checkpointer, path).get("mlp_config")
    _check_matches(path, _stored_shapes(checkpointer, path), expected)
    # Same shapes, different activation: the parameters would load fine and
    # compute something else.
    config = getattr(like, "config", None)
    if (
        isinstance(config, MLPConfig)
        and stored_config is not None
        and stored_config.get("activation") != config.activation
    ):
      raise CheckpointError(
          f"checkpoint {path} does not match the model: activation"
          f" {stored_config.get('activation')!r} in the checkpoint,"
          f" {config.activation!r} expected"
      )
    restored = checkpointer.restore(
        path, ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
    )["params"]
  # `replace_by_pure_dict` builds new Variables; `like` keeps its own.
  state = jax.tree.map(lambda x: x, state)
  nnx.replace_by_pure_dict(state, restored)
  return state


def load_source_model(path: str | Path) -> MLP:
  """Rebuilds an `MLP` saved by `save_params` from its stored config.

  Args:
    path: the checkpoint directory.

  Returns:
    The `MLP` with the saved parameters.

  Raises:
    CheckpointError: no checkpoint at ``path``, it was saved from a bare state
      (no config), or its config or parameters are inconsistent.
  """
  path = _absolute(path)
  with _checkpointer() as checkpointer:
    config = _read_metadata(checkpointer, path).get("mlp_config")
  if config is None:
    raise CheckpointError(
        f"{path} was saved from a bare state without a model config; use"
        " load_params(path, like=model) with a model of the right shape"
    )
  try:
    config = MLPConfig(**config)
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f"{path}: invalid model config {config!r}: {e}"
    ) from e
  # Abstract module: no initialisation work for parameters about to be
  # overwritten.
  model = nnx.eval_shape(
      lambda: MLP(**dataclasses.asdict(config), rngs=nnx.Rngs(0))
  )
  nnx.update(model, load_params(path, like=model))
  return model
