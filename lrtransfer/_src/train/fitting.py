"""``fit``: fine-tune one model, the whole run as one compiled program."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from lrtransfer._src.data import Split
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train.program import FitCarry, FitProgram
from lrtransfer._src.train.runner import (ChunkedRun, data_arrays, data_mesh,
                                          epochs_per_call, run_description,
                                          transferred_params)


@dataclasses.dataclass
class FitResult:
  """The outcome of :func:`fit`.

  Attributes:
    model: the trained model (a new module; the input model is not changed).
    history: per-epoch NumPy arrays, keys as the fields of :class:`EpochLog`.
    carry: the final :class:`FitCarry` (to resume or checkpoint).
    seconds: wall time of the run, compilation excluded.
    compile_seconds: time spent compiling the program.
  """
  model: nnx.Module
  history: dict[str, np.ndarray]
  carry: FitCarry
  seconds: float
  compile_seconds: float


def fit(model: nnx.Module, recipe: Recipe, train: Split, val: Split, *,
        epochs: int = 50, batch_size: int = 32, seed: int = 0,
        source_params: Any = None, checkpoint_dir: Any = None,
        checkpoint_every: Optional[int] = None, resume: bool = False,
        devices: Optional[Sequence[jax.Device]] = None) -> FitResult:
  """Fine-tunes ``model`` with ``recipe``, the whole run as one program.

  Each epoch: shuffle (the order derives from ``seed`` and the epoch),
  ``ceil(n / batch_size)`` SGD steps through the recipe's optimizer, each
  fed ``measurement(last validation loss, epochs done)``, then validation.

  Args:
    model: the model to train (not modified; a trained copy is returned).
    recipe: optimizer recipe (:func:`lrtransfer.recipes.default_recipes`).
    train, val: training and validation splits.
    epochs: number of epochs.
    batch_size: minibatch size.
    seed: seeds the data order.
    source_params: the source parameters, for L2-SP recipes.
    checkpoint_dir: folder for run checkpoints (orbax); None: none.
    checkpoint_every: epochs between checkpoints (the program runs this many
      epochs per call); default: all epochs in one call.
    resume: continue from the latest checkpoint in ``checkpoint_dir`` if
      there is one (it must describe the same run).
    devices: run data-parallel over these devices (batch split across them,
      parameters and optimizer state replicated); default: one device.

  Returns:
    A :class:`FitResult` (trained model, per-epoch history, timings).

  Example::

    result = lrtransfer.train.fit(target, lrtransfer.recipes.default_recipes()["adjust"],
                            task.target_train, task.target_val, epochs=30)
    print(result.history["val_accuracy"][-1])

  References:
    JAX ``lax.scan`` and ``jax.sharding``,
    https://docs.jax.dev/en/latest/_autosummary/jax.lax.scan.html,
    https://docs.jax.dev/en/latest/sharded-computation.html
  """
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"epochs and batch_size must be >= 1, got epochs="
                     f"{epochs}, batch_size={batch_size}")
  every = epochs_per_call(epochs, checkpoint_every)
  mesh = data_mesh(devices, batch_size)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.as_pure(params)
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs, mesh,
                       transferred_params(model))
  data = data_arrays(train, val)
  lr = jnp.float32(recipe.learning_rate)
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    params, data, source_params = jax.device_put(
        (params, data, source_params), replicated)
  key = jax.random.key(seed)
  carry = jax.jit(program.init)(params, source_params, lr)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, run_description(
        model, recipe, train, val, epochs, batch_size, [seed],
        [recipe.learning_rate]))

  def chunk(carry, num_epochs):
    return program.run(carry, key, data, source_params, lr, num_epochs)

  run = ChunkedRun(chunk, carry, epochs, every, 0, checkpointer, resume)
  seconds = run.run()
  trained = nnx.merge(graphdef, jax.device_get(jax.jit(program.eval_params)(
      run.carry.opt_state, run.carry.params)))
  return FitResult(trained, run.history, run.carry, seconds,
                   run.compile_seconds)


