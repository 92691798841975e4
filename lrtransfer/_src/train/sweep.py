"""``fit_many``: several fits of one structure as one vmapped program."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train.fitting import check_seed, check_sizes
from lrtransfer._src.train.program import LossFn, RunInputs
from lrtransfer._src.train.checks import as_split, check_data, check_options
from lrtransfer._src.train.runner import (ChunkedRun, build_program,
                                          compile_cached, data_arrays,
                                          epochs_per_call, run_description,
                                          split_model)


@dataclasses.dataclass
class SweepResult:
  """The outcome of :func:`fit_many`: a leading run axis on everything.

  Attributes:
    params: trained (evaluation) parameters, each leaf ``[runs, ...]``.
    history: per-epoch arrays ``[runs, epochs, ...]``.
    test_accuracy: ``[runs]`` accuracy on the test split (if given).
    seconds, compile_seconds: wall times (compile: this call's, 0.0 when
      every program came from the cache).
    best_params: with ``restore_best``, the parameters of each run's best
      monitored evaluation, ``[runs, ...]``; else None.
    best_epoch: ``[runs]`` 1-based epoch of each run's best evaluation.
    best_test_accuracy: ``[runs]`` test accuracy of ``best_params`` (with
      ``restore_best`` and a test split).
    rest: the other state (BatchNorm statistics, ...), ``[runs, ...]``.
    best_rest: with ``restore_best``, the other state at each run's best
      evaluation (what ``best_params`` was evaluated with); else None.
  """
  params: Any
  history: dict[str, np.ndarray]
  test_accuracy: Optional[np.ndarray]
  seconds: float
  compile_seconds: float
  best_params: Any = None
  best_epoch: Optional[np.ndarray] = None
  best_test_accuracy: Optional[np.ndarray] = None
  rest: Any = None
  best_rest: Any = None


def fit_many(models: Sequence[nnx.Module], recipe: Recipe, train: Any,
             val: Any, *, seeds: Sequence[int],
             learning_rates: Optional[Sequence[float]] = None,
             epochs: int = 50, batch_size: int = 32,
             source_params: Any = None, test: Any = None,
             loss_fn: Optional[LossFn] = None,
             metrics: Optional[dict[str, LossFn]] = None,
             monitor: str = "val_loss", mode: str = "auto",
             restore_best: bool = False, checkpoint_dir: Any = None,
             checkpoint_every: Optional[int] = None, resume: bool = False,
             on_chunk: Optional[Callable[[int], None]] = None
             ) -> SweepResult:
  """Runs several fits of one structure as a single ``jax.vmap``-ed program.

  Run ``i`` trains ``models[i]`` with data order ``seeds[i]`` and base rate
  ``learning_rates[i]`` (default: the recipe's). All models must share a
  structure (e.g. the same target built with different initialisation
  seeds). Loss, metrics, ``monitor``/``mode``, ``restore_best``,
  checkpointing and resuming work as in :func:`fit`:
  ``results[i] = fit(models[i], recipe with learning_rates[i], seed=seeds[i])``
  up to float reassociation, computed as ``jax.vmap`` over ``i``. The
  compiled program is cached as :func:`fit`'s.

  ``on_chunk(epochs)`` is called after each compiled call (every
  ``checkpoint_every`` epochs, or once), e.g. to move a progress bar.

  Returns:
    A :class:`SweepResult` with a leading run axis.

  References:
    ``jax.vmap``, https://docs.jax.dev/en/latest/_autosummary/jax.vmap.html
  """
  if isinstance(models, nnx.Module) or not isinstance(models,
                                                     (list, tuple)):
    raise ValueError(
        f"fit_many takes a list of models (one per run), got "
        f"{type(models).__name__}; for one model pass [model] or use fit")
  runs = len(models)
  if runs == 0 or len(seeds) != runs:
    raise ValueError(f"need one seed per model, got {len(seeds)} seeds for "
                     f"{runs} models")
  if learning_rates is None:
    learning_rates = [recipe.learning_rate] * runs
  if len(learning_rates) != runs:
    raise ValueError(f"need one learning rate per model, got "
                     f"{len(learning_rates)} for {runs} models")
  check_sizes(epochs, batch_size)
  for i, seed in enumerate(seeds):
    check_seed(seed, f"seeds[{i}]")
  train, val = as_split(train, "train"), as_split(val, "val")
  splits = {"train": train, "val": val}
  if test is not None:
    splits["test"] = test = as_split(test, "test")
  check_data(models[0], splits, loss_fn is None)
  every = epochs_per_call(epochs, checkpoint_every)
  check_options(checkpoint_dir, checkpoint_every, resume, source_params,
                reports_chunks=on_chunk is not None)
  program = build_program(models[0], recipe, len(train), epochs, batch_size,
                          loss_fn=loss_fn, metrics=metrics, monitor=monitor,
                          mode=mode, restore_best=restore_best)
  states = [split_model(m) for m in models]
  params, rest = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  inputs = RunInputs(keys, data_arrays(train, val), source_params,
                     jnp.asarray(learning_rates, jnp.float32))
  # Per-run axes: keys and rates vary, data and source params are shared.
  in_axes = RunInputs(0, None, None, 0)
  # Eager, as in fit: zeros and copies, not worth a compile.
  carry = jax.vmap(program.init, in_axes=(0, 0, None, 0))(
      params, rest, inputs.source_params, inputs.learning_rate)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, run_description(
        models[0], recipe, train, val, epochs, batch_size, seeds,
        learning_rates, program))

  def compile_chunk(num_epochs):
    run, seconds = compile_cached(
        ("run_many", program, num_epochs),
        jax.vmap(lambda c, i: program.run(c, i, num_epochs),
                 in_axes=(0, in_axes)), carry, inputs)
    return (lambda c: run(c, inputs)), seconds

  logs_shape = {name: jax.ShapeDtypeStruct((runs, *leaf.shape), leaf.dtype)
                for name, leaf in program.log_shapes().items()}
  run = ChunkedRun(compile_chunk, carry, logs_shape, epochs, every, 1,
                   checkpointer, resume, on_chunk)
  seconds = run.run()
  final_params, final_rest = jax.vmap(program.final_state)(run.carry)
  compile_seconds = run.compile_seconds
  accuracy = best_accuracy = None
  if test is not None:
    test_x, test_y = jnp.asarray(test.x), jnp.asarray(test.y)
    score, seconds_test = compile_cached(
        ("test_many", program),
        jax.vmap(program.test_accuracy, in_axes=(0, 0, None, None)),
        final_params, final_rest, test_x, test_y)
    compile_seconds += seconds_test
    accuracy = np.asarray(score(final_params, final_rest, test_x, test_y))
    if restore_best:
      best_accuracy = np.asarray(score(run.carry.best_params,
                                       run.carry.best_rest, test_x, test_y))
  return SweepResult(final_params, run.history, accuracy, seconds,
                     compile_seconds,
                     run.carry.best_params if restore_best else None,
                     np.asarray(run.carry.best_epoch), best_accuracy,
                     final_rest,
                     run.carry.best_rest if restore_best else None)
