"""Saving and restoring source-model parameters with Orbax.

A checkpoint is one directory written by an Orbax composite checkpointer with
two or three items:

* ``params`` -- the ``nnx.Param`` arrays, as a pure nested dict
  (``nnx.to_pure_dict(nnx.state(model, nnx.Param))``);
* ``stats`` -- the ``nnx.BatchStat`` arrays (BatchNorm running statistics),
  only for a module that has some: without them a restored CNN would
  normalise with its initial statistics in eval mode;
* ``metadata`` -- JSON: a format tag, the model type (``"mlp"``, ``"cnn"``,
  or ``None`` when a bare state or another module was saved) and its config
  (`MLPConfig` / `CNNConfig`), so `load_source_model` can rebuild the module
  without being told its type or shape.

Version 1 checkpoints (MLP only: an ``mlp_config`` entry, no type tag) still
load. Dropout RNG state is not saved: a restored model starts a fresh stream.

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
from lrtransfer._src.cnn import CNN, CNNConfig
from lrtransfer._src.models import MLP, MLPConfig

_FORMAT = "lrtransfer.params"
_VERSION = 2  # 2: model_type + config, BatchNorm stats; 1: mlp_config only
_MAX_LISTED = 5  # Differences named in an error message.

# The model types a checkpoint can rebuild: tag -> (module, config class).
MODEL_TYPES: dict[str, tuple[type, type]] = {
    "mlp": (MLP, MLPConfig),
    "cnn": (CNN, CNNConfig),
}


class CheckpointError(ValueError):
  """A checkpoint is missing, exists already, or does not match the model."""


def _checkpointer() -> ocp.Checkpointer:
  # Synchronous on purpose: `save_params` returns only once the checkpoint is
  # committed, and no background thread outlives the call. Naming the items'
  # handlers lets `metadata()` read the stored tree without restoring it.
  return ocp.Checkpointer(
      ocp.CompositeCheckpointHandler(
          params=ocp.StandardCheckpointHandler(),
          stats=ocp.StandardCheckpointHandler(),
          metadata=ocp.JsonCheckpointHandler(),
      )
  )


def model_type(model: Any) -> str | None:
  """The tag of ``model``'s type in `MODEL_TYPES` (by its config), or None."""
  config = getattr(model, "config", None)
  for tag, (module, config_class) in MODEL_TYPES.items():
    if isinstance(model, module) and isinstance(config, config_class):
      return tag
  return None


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
  """Saves a model's parameters, BatchNorm statistics, type and config.

  Args:
    path: checkpoint directory to create; relative paths are made absolute.
    model_or_state: a module (its ``nnx.Param`` state and its
      ``nnx.BatchStat`` state are saved; for lrtransfer's `MLP` and `CNN` its
      type and config too) or an ``nnx.State`` of parameters (saved as is;
      `load_source_model` then cannot rebuild a module from it, use
      `load_params`).
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
  tag = model_type(model_or_state)
  metadata = {
      "format": _FORMAT,
      "version": _VERSION,
      "model_type": tag,
      "config": (
          dataclasses.asdict(model_or_state.config) if tag is not None
          else None
      ),
  }
  items = {"params": ocp.args.StandardSave(
      nnx.to_pure_dict(_param_state(model_or_state)))}
  stats = _stats_state(model_or_state)
  if stats is not None:
    items["stats"] = ocp.args.StandardSave(nnx.to_pure_dict(stats))
  # An interrupt waits for the save (interrupts.deferred): no half-written
  # or temporary folder is left behind.
  with interrupts.deferred(), _checkpointer() as checkpointer:
    checkpointer.save(
        path,
        ocp.args.Composite(**items, metadata=ocp.args.JsonSave(metadata)),
        force=overwrite,
    )
  return path


def _stats_state(model_or_state: Any) -> nnx.State | None:
  """A module's ``nnx.BatchStat`` state, or None (none, or not a module)."""
  if not isinstance(model_or_state, nnx.Module):
    return None
  stats = nnx.state(model_or_state, nnx.BatchStat)
  return stats if jax.tree.leaves(stats) else None


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
  version = metadata.get("version")
  if version == 1:  # MLP only: its config under "mlp_config", no type tag
    config = metadata.get("mlp_config")
    return {**metadata, "model_type": None if config is None else "mlp",
            "config": config}
  if version != _VERSION:
    raise CheckpointError(
        f"{path} is a parameter checkpoint of format version {version!r};"
        f" this lrtransfer reads versions 1 and {_VERSION} (a newer"
        " lrtransfer wrote it?)"
    )
  tag = metadata.get("model_type")
  if tag is not None and tag not in MODEL_TYPES:
    raise CheckpointError(
        f"{path} holds a model of type {tag!r}, which this lrtransfer cannot"
        f" rebuild (known: {', '.join(sorted(MODEL_TYPES))}); use"
        " load_params(path, like=model) with a model of the right shape"
    )
  return metadata


def _stored_shapes(checkpointer: ocp.Checkpointer, path: Path,
                   item: str = "params") -> dict | None:
  """``{path: shape}`` of a stored item; None for an absent ``stats``."""
  tree = checkpointer.metadata(path).item_metadata.get(item)
  if tree is None:
    if item != "params":
      return None
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


def _check_type(path: Path, metadata: dict, like: Any) -> None:
  """Refuses a model of another type. A bare state or a module of no known
  type on either side: the shapes alone decide."""
  stored_tag, tag = metadata.get("model_type"), model_type(like)
  if stored_tag is not None and tag is not None and stored_tag != tag:
    raise CheckpointError(
        f"checkpoint {path} holds a model of type {stored_tag!r}"
        f" ({MODEL_TYPES[stored_tag][0].__name__}), the model is of type"
        f" {tag!r} ({type(like).__name__}); use load_source_model(path) to"
        " rebuild the saved model"
    )


def _check_config(path: Path, metadata: dict, like: Any) -> None:
  """Refuses the same type and shapes with another config (e.g.
  activation): it would load and compute something else."""
  tag = metadata.get("model_type")
  if tag is None or model_type(like) != tag:
    return
  stored = _config(path, tag, metadata.get("config"))
  problems = [
      f"{field.name} {getattr(stored, field.name)!r} in the checkpoint,"
      f" {getattr(like.config, field.name)!r} expected"
      for field in dataclasses.fields(stored)
      if getattr(stored, field.name) != getattr(like.config, field.name)
  ]
  if problems:
    raise CheckpointError(
        f"checkpoint {path} does not match the model: " + "; ".join(problems)
    )


def _config(path: Path, tag: str, config: Any):
  """The stored config as its dataclass (JSON lists become tuples)."""
  try:
    return MODEL_TYPES[tag][1](**config)
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f"{path}: invalid {tag} model config {config!r}: {e}"
    ) from e


def _check_item(checkpointer, path: Path, item: str, state: nnx.State
                ) -> None:
  """Compares the stored ``item``'s tree with ``state``'s, before reading."""
  expected = {
      _key(k): tuple(jax.numpy.shape(v))
      for k, v in nnx.to_flat_state(nnx.as_pure(state))
  }
  stored = _stored_shapes(checkpointer, path, item)
  if stored is None:
    raise CheckpointError(
        f"{path} holds no BatchNorm statistics (saved from a parameter"
        " state, or from a model without them), the model has some;"
        " load_params(path, like) restores its parameters only"
    )
  _check_matches(path, stored, expected)


def _read_item(checkpointer, path: Path, item: str, state: nnx.State
               ) -> nnx.State:
  """Reads the stored ``item`` into a copy of ``state`` (``like`` keeps its
  own Variables)."""
  abstract = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state)
  )
  restored = checkpointer.restore(
      path, ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)})
  )[item]
  state = jax.tree.map(lambda x: x, state)
  nnx.replace_by_pure_dict(state, restored)
  return state


def load_params(
    path: str | Path, like: nnx.Module | nnx.State, *, stats: bool = False
) -> nnx.State:
  """Restores parameters saved by `save_params`.

  Every parameter of ``like`` must be in the checkpoint with the same shape,
  and the checkpoint must hold nothing else: there is no partial load. For an
  `MLP` or `CNN` ``like``, the stored model type and config (activation,
  dropout, image shape, ...) must match too. Arrays take ``like``'s dtypes
  (Orbax casts on read).

  Args:
    path: the checkpoint directory.
    like: a module, or its ``nnx.Param`` state, giving the expected tree; its
      values are not read (an abstract ``nnx.eval_shape`` module works) and it
      is not modified.
    stats: also restore the BatchNorm statistics (``like`` must be a module
      with ``nnx.BatchStat`` state, as the saved one).

  Returns:
    An ``nnx.State`` shaped like ``nnx.state(like, nnx.Param)`` (with
    ``stats``: ``nnx.state(like, nnx.Param, nnx.BatchStat)`` merged into one)
    holding the restored arrays; apply it with ``nnx.update(model, state)``.

  Raises:
    CheckpointError: no checkpoint at ``path``, not one of ours, another
      model type, or parameter names, shapes or config that differ from
      ``like``'s.
  """
  path = _absolute(path)
  with _checkpointer() as checkpointer:
    metadata = _read_metadata(checkpointer, path)
    _check_type(path, metadata, like)
    params = _param_state(like)
    _check_item(checkpointer, path, "params", params)
    _check_config(path, metadata, like)
    if not stats:
      return _read_item(checkpointer, path, "params", params)
    like_stats = _stats_state(like)
    if like_stats is None:
      raise CheckpointError(
          f"stats=True needs a module with BatchNorm statistics as like, got"
          f" {type(like).__name__}"
      )
    _check_item(checkpointer, path, "stats", like_stats)
    return nnx.merge_state(
        _read_item(checkpointer, path, "params", params),
        _read_item(checkpointer, path, "stats", like_stats),
    )


def load_source_model(path: str | Path) -> MLP | CNN:
  """Rebuilds the `MLP` or `CNN` saved by `save_params` from its stored config.

  Args:
    path: the checkpoint directory.

  Returns:
    The module (type as saved) with the saved parameters and BatchNorm
    statistics.

  Raises:
    CheckpointError: no checkpoint at ``path``, it was saved from a bare state
      or another module (no known type), or its config or parameters are
      inconsistent.
  """
  path = _absolute(path)
  with _checkpointer() as checkpointer:
    metadata = _read_metadata(checkpointer, path)
  tag = metadata.get("model_type")
  if tag is None:
    raise CheckpointError(
        f"{path} was saved from a bare state or a module of no known type"
        f" ({', '.join(sorted(MODEL_TYPES))}), without a model config; use"
        " load_params(path, like=model) with a model of the right shape"
    )
  config = _config(path, tag, metadata.get("config"))
  build = lambda: MODEL_TYPES[tag][0](
      **dataclasses.asdict(config), rngs=nnx.Rngs(0)
  )
  # Abstract module: no initialisation work for parameters about to be
  # overwritten; built for real when it holds RNG state (Dropout), which is
  # not saved and must be real to train.
  model = nnx.eval_shape(build)
  if jax.tree.leaves(nnx.state(model, nnx.RngState)):
    model = build()
  nnx.update(model, load_params(
      path, like=model, stats=_stats_state(model) is not None))
  return model
