"""The one implementation behind ``fit`` and ``fit_many``.

Both take the same options and run the same checks, program, checkpoints
and test scoring; they differ only in the run axis: ``fit`` runs one model
without one (its arrays and checkpoints have no leading axis), ``fit_many``
vmaps the program over a leading axis of runs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train.checks import as_split, check_data
from lrtransfer._src.train.program import (
  FitCarry,
  FitProgram,
  LossFn,
  RunInputs,
)
from lrtransfer._src.train.runner import (
  ChunkedRun,
  build_program,
  compile_cached,
  data_arrays,
  data_mesh,
  epochs_per_call,
  run_description,
  split_model,
)


class RunsOutcome(NamedTuple):
  """What a run of one or many fits gives back (a leading run axis on every
  array when batched)."""
  program: FitProgram  # the program that ran (its graphs and depths)
  carry: FitCarry  # the final carry
  history: dict  # name -> [epochs, ...] or [runs, epochs, ...]
  params: Any  # the evaluation parameters at the end
  rest: Any  # the other state at the end
  seconds: float  # wall time, compilation excluded
  compile_seconds: float  # this call's compilation time
  test_accuracy: Any  # accuracy of `params` on the test split, or None
  best_test_accuracy: Any  # of the best evaluation's (restore_best), or None


def check_sizes(epochs: Any, batch_size: Any) -> None:
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")


def is_integer(value: Any) -> bool:
  """An integer: Python, NumPy or a scalar integer array (JAX's too); not
  a bool."""
  integral = isinstance(value, (int, np.integer)) or (
      isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0
      and np.issubdtype(value.dtype, np.integer))
  return integral and not isinstance(value, bool)


def check_seed(seed: Any, name: str = "seed") -> None:
  if not is_integer(seed):
    raise ValueError(f"{name} must be an int, got {name}={seed!r}")


def check_learning_rate(value: Any, name: str) -> None:
  """A finite positive number (a base rate of 0 or NaN trains nothing)."""
  number = isinstance(value, (int, float, np.integer, np.floating)) or (
      isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0)
  if (isinstance(value, bool) or not number
      or not math.isfinite(float(value)) or float(value) <= 0):
    raise ValueError(f"{name} must be a finite number > 0, got "
                     f"{name}={value!r}")


def _lift(batched: bool, fn: Callable, in_axes: Any) -> Callable:
  """``fn`` vmapped over the run axis when ``batched``, else ``fn``."""
  return jax.vmap(fn, in_axes=in_axes) if batched else fn


def run_fits(models: Sequence[nnx.Module], recipe: Recipe, train: Any,
             val: Any, *, seeds: Sequence[Any],
             learning_rates: Optional[Sequence[Any]], batched: bool,
             epochs: int, batch_size: int, source_params: Any, test: Any,
             loss_fn: Optional[LossFn], metrics: Optional[dict],
             monitor: str, mode: str, restore_best: bool,
             checkpoint_dir: Any, checkpoint_every: Optional[int],
             resume: bool, devices: Optional[Sequence[jax.Device]],
             on_chunk: Optional[Callable[[int], None]],
             seed_names: Sequence[str], rate_names: Sequence[str]
             ) -> RunsOutcome:
  """Fine-tunes ``models[i]`` with data order ``seeds[i]`` at base rate
  ``learning_rates[i]`` (None: the recipe's): one program, vmapped over
  ``i`` when ``batched`` (else exactly one model, no run axis).
  ``seed_names`` and ``rate_names`` name each seed and rate in errors
  (``"seed"`` or ``"seeds[1]"``).

  The caller runs ``checks.check_options`` first, so that its warnings
  point at the user's call of ``fit`` or ``fit_many``."""
  check_sizes(epochs, batch_size)
  for seed, name in zip(seeds, seed_names):
    check_seed(seed, name)
  for rate, name in zip(learning_rates or (), rate_names):
    check_learning_rate(rate, name)
  train, val = as_split(train, "train"), as_split(val, "val")
  splits = {"train": train, "val": val}
  if test is not None:
    splits["test"] = test = as_split(test, "test")
  check_data(models[0], splits, loss_fn is None)
  every = epochs_per_call(epochs, checkpoint_every)
  mesh = data_mesh(devices, batch_size)
  # Warnings point at the caller of fit / fit_many.
  program = build_program(models[0], recipe, len(train), epochs, batch_size,
                          mesh=mesh, loss_fn=loss_fn, metrics=metrics,
                          monitor=monitor, mode=mode,
                          restore_best=restore_best, stacklevel=4)
  if learning_rates is None:  # a Recipe's rate is checked when it is built
    learning_rates = [recipe.learning_rate] * len(models)
  if batched:
    states = [split_model(m) for m in models]
    params, rest = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    rates = jnp.asarray(learning_rates, jnp.float32)
  else:
    params, rest = split_model(models[0])
    keys = jax.random.key(seeds[0])
    rates = jnp.float32(learning_rates[0])
  inputs = RunInputs(keys, data_arrays(train, val), source_params, rates)
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    params, rest, inputs = jax.device_put((params, rest, inputs), replicated)
  # Per-run axes: keys and rates vary, data and source params are shared.
  in_axes = RunInputs(0, None, None, 0)
  # Eager: optimizer states start as zeros and copies, not worth a compile
  # (and resuming a finished run then compiles nothing).
  carry = _lift(batched, program.init, (0, 0, None, 0))(
      params, rest, inputs.source_params, inputs.learning_rate)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, run_description(
        models[0], recipe, train, val, epochs, batch_size, seeds,
        learning_rates, program))

  def compile_chunk(num_epochs):
    run, seconds = compile_cached(
        ("run_many" if batched else "run", program, num_epochs),
        _lift(batched, lambda c, i: program.run(c, i, num_epochs),
              (0, in_axes)), carry, inputs)
    return (lambda c: run(c, inputs)), seconds

  logs_shape = program.log_shapes()
  if batched:
    logs_shape = {name: jax.ShapeDtypeStruct((len(models), *leaf.shape),
                                             leaf.dtype)
                  for name, leaf in logs_shape.items()}
  run = ChunkedRun(compile_chunk, carry, logs_shape, epochs, every,
                   1 if batched else 0, checkpointer, resume, on_chunk)
  seconds = run.run()
  # Eager: a few element-wise ops, not worth a compile.
  final_params, final_rest = _lift(batched, program.final_state, 0)(
      run.carry)
  compile_seconds = run.compile_seconds
  accuracy = best_accuracy = None
  if test is not None:
    test_x, test_y = jnp.asarray(test.x), jnp.asarray(test.y)
    score, seconds_test = compile_cached(
        ("test_many" if batched else "test", program),
        _lift(batched, program.test_accuracy, (0, 0, None, None)),
        final_params, final_rest, test_x, test_y)
    compile_seconds += seconds_test
    accuracy = np.asarray(score(final_params, final_rest, test_x, test_y))
    if restore_best:
      best_accuracy = np.asarray(score(run.carry.best_params,
                                       run.carry.best_rest, test_x, test_y))
  return RunsOutcome(program, run.carry, run.history, final_params,
                     final_rest, seconds, compile_seconds, accuracy,
                     best_accuracy)
