"""Running a program in chunks of epochs, with run checkpoints between them."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lrtransfer._src.data import Split
from lrtransfer._src.models import MLP, transferred_mask
from lrtransfer._src.recipes import Recipe
from lrtransfer._src import sizes
from lrtransfer._src.run_checkpoint import RunCheckpointer, recipe_identity
from lrtransfer._src.train.program import EpochLog


def data_arrays(train: Split, val: Split) -> tuple:
  return (jnp.asarray(train.x), jnp.asarray(train.y), jnp.asarray(val.x),
          jnp.asarray(val.y))


def empty_history(logs_shape: EpochLog, epochs: int, epoch_axis: int
                   ) -> dict[str, np.ndarray]:
  """Full-length, NaN-filled history buffers (fixed shapes: checkpointable).

  Raises:
    SizeError: the buffers would not fit in memory (checked first).
  """
  per_epoch = sum(leaf.size * leaf.dtype.itemsize
                  for leaf in logs_shape._asdict().values())
  sizes.check_fits(f"a history of epochs={epochs}", float(per_epoch) * epochs)
  def buffer(leaf):
    shape = list(leaf.shape)
    shape[epoch_axis] = epochs
    return np.full(shape, np.nan, leaf.dtype)
  return {name: buffer(leaf) for name, leaf in logs_shape._asdict().items()}


class ChunkedRun:
  """Runs a program ``checkpoint_every`` epochs at a time, saving between.

  ``chunk(carry, num_epochs) -> (carry, EpochLog)`` is compiled once per
  chunk length (ahead of time, so compile time is measured apart). Chunks
  change nothing in the arithmetic: an interrupted and resumed run computes
  exactly what an uninterrupted run with the same chunking computes.
  """

  def __init__(self, chunk, carry, epochs: int, every: int, epoch_axis: int,
               checkpointer: Optional[RunCheckpointer], resume: bool,
               on_chunk: Optional[Callable[[int], None]] = None):
    self.chunk = chunk
    self.on_chunk = on_chunk  # called with the epochs of each finished chunk
    self.carry = carry
    self.epochs = epochs
    self.every = every
    self.epoch_axis = epoch_axis
    self.checkpointer = checkpointer
    self.compiled = {}
    self.compile_seconds = 0.0
    logs_shape = jax.eval_shape(lambda c: chunk(c, 1), carry)[1]
    self.history = empty_history(logs_shape, epochs, epoch_axis)
    self.done = 0
    if resume and checkpointer is not None and (
        checkpointer.latest_epoch() is not None):
      self.done, (self.carry, self.history) = checkpointer.restore(
          (self.carry, self.history))
      self.history = {k: np.asarray(v) for k, v in self.history.items()}

  def _compiled(self, length: int):
    if length not in self.compiled:
      start = time.perf_counter()
      self.compiled[length] = jax.jit(
          self.chunk, static_argnums=1).lower(self.carry, length).compile()
      self.compile_seconds += time.perf_counter() - start
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
      for name, value in logs._asdict().items():
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


def transferred_params(model: nnx.Module) -> Any:
  """Which parameters came from the source, for an MLP; else None."""
  return transferred_mask(model) if isinstance(model, MLP) else None


def data_mesh(devices: Optional[Sequence[jax.Device]], batch_size: int
          ) -> Optional[Mesh]:
  if devices is None or len(devices) <= 1:
    return None
  if batch_size % len(devices):
    raise ValueError(f"batch_size={batch_size} must be divisible by the "
                     f"{len(devices)} devices of a data-parallel fit")
  return Mesh(np.asarray(devices), ("data",))


def run_description(model_like, recipe: Recipe, train: Split, val: Split,
                     epochs: int, batch_size: int, seeds, learning_rates):
  config = getattr(model_like, "config", None)
  return {
      "model": repr(config) if config is not None else type(model_like)
      .__name__,
      "recipe": recipe_identity(recipe), "epochs": epochs, "batch_size": batch_size,
      "num_train": len(train), "num_val": len(val),
      "seeds": [int(s) for s in seeds],
      "learning_rates": [float(lr) for lr in learning_rates],
  }


