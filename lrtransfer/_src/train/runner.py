"""Running a program in chunks of epochs, with run checkpoints between them."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lrtransfer._src import factory_checks, sizes
from lrtransfer._src.measurement import resolve_mode
from lrtransfer._src.models import transferred_mask
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer, recipe_identity
from lrtransfer._src.train.checks import ArraySplit
from lrtransfer._src.train.evaluation import check_loss_fn, metric_table
from lrtransfer._src.train.program import FitProgram, _nested
from lrtransfer._src.transfer.depths import (
  layer_depths,
  normalize_path,
  remember_depths,
)


def data_arrays(train: ArraySplit, val: ArraySplit) -> tuple:
  return (jnp.asarray(train.x), jnp.asarray(train.y), jnp.asarray(val.x),
          jnp.asarray(val.y))


# Compiled programs, keyed by what they compute and the arguments' types.
_COMPILED: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


def _signature(args: Any) -> tuple:
  leaves, treedef = jax.tree_util.tree_flatten(args)
  return treedef, tuple(
      (jnp.shape(leaf), str(jnp.result_type(leaf)) if not hasattr(
          leaf, "dtype") else str(leaf.dtype),
       str(getattr(leaf, "sharding", None))) for leaf in leaves)


def compile_cached(key: Any, fn: Callable, *args) -> tuple[Any, float]:
  """``fn`` compiled for ``args``, once per ``(key, argument types)``.

  ``key`` must identify what ``fn`` computes (e.g. ``("run", program,
  num_epochs)`` with a hashable :class:`FitProgram`); the arguments' shapes,
  dtypes and shardings complete it. A second fit of the same structure and
  sizes reuses the executable: no trace, no compile.

  Returns:
    ``(compiled, seconds)``: the executable and the seconds spent compiling
    now (0.0 on a cache hit).
  """
  full_key = (key, _signature(args))
  if full_key in _COMPILED:
    _COMPILED.move_to_end(full_key)
    return _COMPILED[full_key], 0.0
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  seconds = time.perf_counter() - start
  _COMPILED[full_key] = compiled
  while len(_COMPILED) > _CACHE_SIZE:
    _COMPILED.popitem(last=False)
  return compiled, seconds


def clear_compiled_cache() -> None:
  """Forgets every compiled fit program (frees their memory)."""
  _COMPILED.clear()


def empty_history(logs_shape: dict, epochs: int, epoch_axis: int
                   ) -> dict[str, np.ndarray]:
  """Full-length, NaN-filled history buffers (fixed shapes: checkpointable).

  Raises:
    SizeError: the buffers would not fit in memory (checked first).
  """
  per_epoch = sum(leaf.size * leaf.dtype.itemsize
                  for leaf in logs_shape.values())
  sizes.check_fits(f"a history of epochs={epochs}", float(per_epoch) * epochs)
  def buffer(leaf):
    shape = list(leaf.shape)
    shape[epoch_axis] = epochs
    return np.full(shape, np.nan, leaf.dtype)
  return {name: buffer(leaf) for name, leaf in logs_shape.items()}


class ChunkedRun:
  """Runs a program ``checkpoint_every`` epochs at a time, saving between.

  ``compile_chunk(num_epochs) -> (call, seconds)`` gives the compiled chunk
  ``call(carry) -> (carry, logs)`` (from :func:`compile_cached`: ahead of
  time, so compile time is measured apart, and once per structure). Chunks
  change nothing in the arithmetic: an interrupted and resumed run computes
  exactly what an uninterrupted run with the same chunking computes.
  """

  def __init__(self, compile_chunk, carry, logs_shape: dict, epochs: int,
               every: int, epoch_axis: int,
               checkpointer: Optional[RunCheckpointer], resume: bool,
               on_chunk: Optional[Callable[[int], None]] = None):
    self.compile_chunk = compile_chunk
    self.on_chunk = on_chunk  # called with the epochs of each finished chunk
    self.carry = carry
    self.epochs = epochs
    self.every = every
    self.epoch_axis = epoch_axis
    self.checkpointer = checkpointer
    self.compiled = {}
    self.compile_seconds = 0.0
    # `logs_shape`: one epoch's log (a leading run axis for sweeps), known
    # without tracing, so a finished run that is resumed compiles nothing.
    logs_shape = {name: jax.ShapeDtypeStruct(
        leaf.shape[:epoch_axis] + (1,) + leaf.shape[epoch_axis:], leaf.dtype)
                  for name, leaf in logs_shape.items()}
    self.history = empty_history(logs_shape, epochs, epoch_axis)
    self.done = 0
    if resume and checkpointer is not None and (
        checkpointer.latest_epoch() is not None):
      self.done, (self.carry, self.history) = checkpointer.restore(
          (self.carry, self.history))
      self.history = {k: np.asarray(v) for k, v in self.history.items()}

  def _compiled(self, length: int):
    if length not in self.compiled:
      self.compiled[length], seconds = self.compile_chunk(length)
      self.compile_seconds += seconds
    return self.compiled[length]

  def run(self) -> float:
    """Runs the remaining epochs; returns wall seconds excluding compiles."""
    seconds = 0.0
    while self.done < self.epochs:
      length = min(self.every, self.epochs - self.done)
      program = self._compiled(length)
      start = time.perf_counter()
      self.carry, logs = program(self.carry)
      jax.block_until_ready(self.carry)
      seconds += time.perf_counter() - start
      window = [slice(None)] * self.epoch_axis + [
          slice(self.done, self.done + length)]
      for name, value in logs.items():
        self.history[name][tuple(window)] = np.asarray(value)
      self.done += length
      if self.checkpointer is not None:
        self.checkpointer.save(self.done, (self.carry, self.history))
      if self.on_chunk is not None:
        self.on_chunk(length)
    if self.checkpointer is not None:
      self.checkpointer.close()
    return seconds


def epochs_per_call(epochs: int, checkpoint_every: Optional[int]) -> int:
  """Epochs per compiled call: all of them, or the checkpoint period."""
  if checkpoint_every is None:
    return epochs
  if checkpoint_every < 1:  # 0 would make no progress: an endless loop
    raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
  return checkpoint_every


def transferred_params(model: nnx.Module) -> Optional[tuple]:
  """``((path, bool), ...)``: which parameters came from the source.

  None for a model that :func:`lrtransfer.models.target_from_source` did not
  build (L2-SP then pulls every non-head leaf whose shape matches).
  """
  mask = transferred_mask(model)
  if mask is None:
    return None
  return tuple((normalize_path(path), bool(flag)) for path, flag in
               jax.tree_util.tree_flatten_with_path(mask)[0])


def depth_table(model: nnx.Module, recipe: Recipe) -> tuple:
  """``((path, depth), ...)`` of the model's parameters (hashable)."""
  depths = layer_depths(model, recipe.depth_fn, head=recipe.head)
  return tuple((normalize_path(path), int(depth)) for path, depth in
               jax.tree_util.tree_flatten_with_path(depths)[0])


def data_mesh(devices: Optional[Sequence[jax.Device]], batch_size: int
          ) -> Optional[Mesh]:
  if devices is None or len(devices) <= 1:
    return None
  if batch_size % len(devices):
    raise ValueError(f"batch_size={batch_size} must be divisible by the "
                     f"{len(devices)} devices of a data-parallel fit")
  return Mesh(np.asarray(devices), ("data",))


def run_description(model_like, recipe: Recipe, train: ArraySplit,
                    val: ArraySplit, epochs: int, batch_size: int, seeds,
                    learning_rates, program: Optional[FitProgram] = None):
  """What must match to resume a run; with ``program``, also what it
  monitors and whether it keeps the best parameters (which change the
  checkpointed state)."""
  config = getattr(model_like, "config", None)
  options = {} if program is None else {
      "monitor": program.monitor, "mode": program.mode,
      "restore_best": program.restore_best}
  return {**options,
      "model": repr(config) if config is not None else type(model_like)
      .__name__,
      "recipe": recipe_identity(recipe), "epochs": epochs, "batch_size": batch_size,
      "num_train": len(train), "num_val": len(val),
      "seeds": [int(s) for s in seeds],
      "learning_rates": [float(lr) for lr in learning_rates],
  }




def split_model(model: nnx.Module) -> tuple[Any, Any]:
  """``(params, rest)``: the ``nnx.Param`` state and all other state, pure."""
  _, params, rest = nnx.split(model, nnx.Param, ...)
  return nnx.as_pure(params), nnx.as_pure(rest)


def merge_model(graph: Any, params: Any, rest: Any,
                depths: Optional[tuple]) -> nnx.Module:
  """The inverse of :func:`split_model`: a module built from ``graph`` and
  host copies of ``(params, rest)``. A merged module lists its attributes
  sorted by name, so it remembers ``depths`` (the program's ``((path,
  depth), ...)`` table, found on the input in definition order)."""
  module = nnx.merge(graph, *jax.device_get((params, rest)))
  if depths is not None:
    remember_depths(module, _nested(depths))
  return module


# The large-batch warning's text, matched by expect_large_batches.
_LARGE_BATCH_WARNING = r"batch_size=\d+ > \d+ training examples"


@contextlib.contextmanager
def expect_large_batches():
  """Silences the batch-larger-than-the-data warning: for callers that run
  one batch size on every task (``experiment.compare``, the benchmarks), to
  whom a few-shot task smaller than it is the protocol, not a mistake."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=_LARGE_BATCH_WARNING)
    yield
# Names of user metrics that "auto" minimises without a warning.
_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "nll", "perplexity")


def build_program(model: nnx.Module, recipe: Recipe, num_train: int,
                  epochs: int, batch_size: int, *, mesh=None, loss_fn=None,
                  metrics=None, monitor: str = "val_loss", mode: str = "auto",
                  restore_best: bool = False,
                  stacklevel: int = 3) -> FitProgram:
  """The (hashable) program that fine-tunes ``model``'s structure.

  ``stacklevel``: of its warnings, as ``warnings.warn``'s (3: the caller of
  the function that calls this one).
  """
  if not isinstance(model, nnx.Module):
    raise ValueError(f"model must be a flax.nnx.Module, got "
                     f"{type(model).__name__}")
  if not isinstance(recipe, Recipe):
    raise factory_checks.recipe_type_error(recipe, "recipe")
  check_loss_fn(loss_fn)
  metrics = metric_table(metrics)
  for field, what in (("head_first_epochs", "only the head is trained"),
                      ("unfreeze_every_epochs",
                       "the layers below the head never unfreeze")):
    value = getattr(recipe, field)
    if value is not None and value >= epochs:
      warnings.warn(f"recipe {recipe.name!r}: {field}={value} >= "
                    f"epochs={epochs}: {what} for the whole run",
                    UserWarning, stacklevel=stacklevel)
  if batch_size > num_train:
    warnings.warn(
        f"batch_size={batch_size} > {num_train} training examples: each "
        "step's batch repeats examples (batches wrap around the shuffled "
        f"order, fixed shapes under jit, so some count twice); "
        f"batch_size={num_train} gives a full-batch step without repeats "
        "for less compute", UserWarning, stacklevel=stacklevel)
  if not isinstance(restore_best, bool):
    raise ValueError(f"restore_best must be True or False, got "
                     f"{restore_best!r}")
  # Train and eval modes differ only in static attributes (Dropout's
  # `deterministic`, BatchNorm's `use_running_average`): two graph defs over
  # one state.
  view = nnx.clone(model)
  view.train()
  train_graph = nnx.split(view, nnx.Param, ...)[0]
  view.eval()
  eval_graph = nnx.split(view, nnx.Param, ...)[0]
  program = FitProgram(
      train_graph, eval_graph, recipe, batch_size, num_train, epochs,
      depth_table(model, recipe), mesh, transferred_params(model), loss_fn,
      metrics, monitor, "min", restore_best)
  if monitor not in program.value_names:
    raise ValueError(f"monitor={monitor!r} is not a logged value; choose one "
                     f"of {list(program.value_names)}")
  resolved = resolve_mode(monitor, mode)
  user_metrics = {f"val_{name}" for name, _ in (metrics or ())}
  if (isinstance(mode, str) and mode.lower() == "auto" and resolved == "min"
      and monitor in user_metrics
      and not any(word in monitor.lower() for word in _LOWER_IS_BETTER)):
    # Keras' name rule minimises any name without "acc" (a user's
    # "val_top2"), and restore_best would then keep the worst epoch.
    warnings.warn(
        f"mode='auto' minimises monitor={monitor!r} (only names containing "
        "'acc' are maximised); pass mode='max' if higher is better, or "
        "mode='min' to silence this", UserWarning, stacklevel=stacklevel)
  return dataclasses.replace(program, mode=resolved)
