"""``fit_many``: several fits of one structure as one vmapped program."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lrtransfer._src.data import Split
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train.program import FitProgram
from lrtransfer._src.train.runner import (ChunkedRun, data_arrays,
                                          epochs_per_call, run_description,
                                          transferred_params)


@dataclasses.dataclass
class SweepResult:
  """The outcome of :func:`fit_many`: a leading run axis on everything.

  Attributes:
    params: trained parameters, each leaf ``[runs, ...]``.
    history: per-epoch arrays ``[runs, epochs, ...]``.
    test_accuracy: ``[runs]`` accuracy on the test split (if given).
    seconds, compile_seconds: wall times.
  """
  params: Any
  history: dict[str, np.ndarray]
  test_accuracy: Optional[np.ndarray]
  seconds: float
  compile_seconds: float


def fit_many(models: Sequence[nnx.Module], recipe: Recipe, train: Split,
             val: Split, *, seeds: Sequence[int],
             learning_rates: Optional[Sequence[float]] = None,
             epochs: int = 50, batch_size: int = 32,
             source_params: Any = None, test: Optional[Split] = None,
             checkpoint_dir: Any = None,
             checkpoint_every: Optional[int] = None, resume: bool = False,
             on_chunk: Optional[Callable[[int], None]] = None
             ) -> SweepResult:
  """Runs several fits of one structure as a single ``jax.vmap``-ed program.

  Run ``i`` trains ``models[i]`` with data order ``seeds[i]`` and base rate
  ``learning_rates[i]`` (default: the recipe's). All models must share a
  structure (e.g. the same target built with different initialisation
  seeds). Checkpointing and resuming work as in :func:`fit`:
  ``results[i] = fit(models[i], recipe with learning_rates[i], seed=seeds[i])``
  up to float reassociation, computed as ``jax.vmap`` over ``i``.

  ``on_chunk(epochs)`` is called after each compiled call (every
  ``checkpoint_every`` epochs, or once), e.g. to move a progress bar.

  Returns:
    A :class:`SweepResult` with a leading run axis.

  References:
    ``jax.vmap``, https://docs.jax.dev/en/latest/_autosummary/jax.vmap.html
  """
  runs = len(models)
  if runs == 0 or len(seeds) != runs:
    raise ValueError(f"need one seed per model, got {len(seeds)} seeds for "
                     f"{runs} models")
  if learning_rates is None:
    learning_rates = [recipe.learning_rate] * runs
  if len(learning_rates) != runs:
    raise ValueError(f"need one learning rate per model, got "
                     f"{len(learning_rates)} for {runs} models")
  every = epochs_per_call(epochs, checkpoint_every)
  graphdef, _ = nnx.split(models[0], nnx.Param)
  stacked = jax.tree.map(
      lambda *leaves: jnp.stack(leaves),
      *[nnx.as_pure(nnx.state(m, nnx.Param)) for m in models])
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs,
                       transferred=transferred_params(models[0]))
  data = data_arrays(train, val)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  lrs = jnp.asarray(learning_rates, jnp.float32)

  # Data and source params are arguments, not closed-over constants, so they
  # are not baked into the compiled program.
  def chunk(carry, num_epochs):
    return jax.vmap(
        lambda c, key, lr: program.run(c, key, data, source_params, lr,
                                       num_epochs))(carry, keys, lrs)

  carry = jax.jit(jax.vmap(program.init, in_axes=(0, None, 0)))(
      stacked, source_params, lrs)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, run_description(
        models[0], recipe, train, val, epochs, batch_size, seeds,
        learning_rates))
  run = ChunkedRun(chunk, carry, epochs, every, 1, checkpointer, resume,
                   on_chunk)
  seconds = run.run()
  accuracy = None
  if test is not None:
    test_x, test_y = jnp.asarray(test.x), jnp.asarray(test.y)
    logits = jax.jit(jax.vmap(
        lambda s, p: nnx.merge(graphdef, program.eval_params(s, p))(test_x)))(
            run.carry.opt_state, run.carry.params)
    accuracy = np.asarray(jnp.mean(jnp.argmax(logits, -1) == test_y, -1))
  return SweepResult(run.carry.params, run.history, accuracy, seconds,
                     run.compile_seconds)
