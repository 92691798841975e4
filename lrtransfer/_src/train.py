"""The compiled fit loop: epochs of shuffled minibatch steps in one program.

``fit`` runs every epoch -- shuffle, minibatch SGD steps, validation, the
validation loss fed to the strategy as ``measurement(val_loss, epoch)`` --
as one ``lax.scan`` over epochs around a ``lax.scan`` over steps, so Python
runs once per call, not once per step. ``fit_many`` vmaps the same program
over seeds (and base learning rates) to run a sweep as one program.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lrtransfer._src import inspect
from lrtransfer._src.data import Split
from lrtransfer._src.measurement import measurement
from lrtransfer._src.recipes import Recipe, build_optimizer, group_learning_rates


class EpochLog(NamedTuple):
  """What one epoch records (arrays gain a leading epoch axis in a history)."""
  train_loss: jax.Array  # float32, mean minibatch loss of the epoch
  val_loss: jax.Array  # float32, validation cross-entropy after the epoch
  val_accuracy: jax.Array  # float32, validation accuracy after the epoch
  scale: jax.Array  # float32, the strategies' scale after the epoch (1: none)
  group_lr: jax.Array  # float32 [levels], effective rate per depth level


class FitCarry(NamedTuple):
  """Everything a run needs to continue: the resumable state of a fit."""
  params: Any  # the model's nnx.Param state (pure arrays)
  opt_state: Any  # the full optimizer state
  epoch: jax.Array  # int32 scalar, epochs done (the data order derives from it)
  last_val_loss: jax.Array  # float32 scalar, NaN before the first evaluation


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


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         labels).mean()


def evaluate(model: nnx.Module, split: Split) -> tuple[float, float]:
  """Cross-entropy and accuracy of ``model`` on ``split``."""
  logits = model(jnp.asarray(split.x))
  labels = jnp.asarray(split.y)
  return (float(cross_entropy(logits, labels)),
          float(jnp.mean(jnp.argmax(logits, -1) == labels)))


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """``ceil(num_train / batch_size)``: every example is seen each epoch."""
  return max(1, math.ceil(num_train / batch_size))


@dataclasses.dataclass(frozen=True)
class FitProgram:
  """A pure, jit-able fine-tuning program for one model structure and recipe.

  ``init(params, source_params, lr) -> FitCarry`` and
  ``run(carry, key, data, source_params, lr, num_epochs) -> (carry, EpochLog)``
  are pure functions of arrays, so they can be jitted, vmapped over seeds or
  learning rates, and resumed from any carry.
  """
  graphdef: Any
  recipe: Recipe
  batch_size: int
  num_train: int
  total_epochs: int

  @property
  def steps_per_epoch(self) -> int:
    return steps_per_epoch(self.num_train, self.batch_size)

  def optimizer(self, source_params, lr) -> optax.GradientTransformation:
    return build_optimizer(
        self.recipe, steps_per_epoch=self.steps_per_epoch,
        total_steps=self.steps_per_epoch * self.total_epochs,
        source_params=source_params, learning_rate=lr)

  def loss(self, params, x, y):
    return cross_entropy(nnx.merge(self.graphdef, params)(x), y)

  def init(self, params, source_params, lr) -> FitCarry:
    opt_state = self.optimizer(source_params, lr).init(params)
    return FitCarry(params, opt_state, jnp.zeros([], jnp.int32),
                    jnp.asarray(jnp.nan, jnp.float32))

  def run(self, carry: FitCarry, key: jax.Array, data: tuple, source_params,
          lr, num_epochs: int) -> tuple[FitCarry, EpochLog]:
    train_x, train_y, val_x, val_y = data
    tx = self.optimizer(source_params, lr)
    spe, batch, n = self.steps_per_epoch, self.batch_size, self.num_train
    grad_fn = jax.value_and_grad(self.loss)

    def train_step(state, batch_idx):
      params, opt_state, metric = state
      loss, grads = grad_fn(params, train_x[batch_idx], train_y[batch_idx])
      updates, opt_state = tx.update(grads, opt_state, params, metric=metric)
      return (optax.apply_updates(params, updates), opt_state, metric), loss

    def epoch_step(carry: FitCarry, _):
      # The data order depends only on (key, epoch): a resumed run replays it.
      perm = jax.random.permutation(jax.random.fold_in(key, carry.epoch), n)
      # The last batch wraps around to the epoch's first examples so every
      # step has the same shape (one compiled step, no ragged batch).
      batches = perm[jnp.arange(spe * batch) % n].reshape(spe, batch)
      # Evaluation number `epoch` (0 before the first) is fed on every step;
      # the strategies react to it once.
      metric = measurement(carry.last_val_loss, carry.epoch)
      (params, opt_state, _), losses = jax.lax.scan(
          train_step, (carry.params, carry.opt_state, metric), batches)
      logits = nnx.merge(self.graphdef, params)(val_x)
      val_loss = cross_entropy(logits, val_y)
      val_acc = jnp.mean(jnp.argmax(logits, -1) == val_y).astype(jnp.float32)
      scale = (inspect.current_scale(opt_state)
               if inspect.strategy_states(opt_state) else jnp.float32(1.0))
      log = EpochLog(losses.mean(), val_loss, val_acc, scale,
                     group_learning_rates(self.recipe, opt_state, params, lr))
      return FitCarry(params, opt_state, carry.epoch + 1, val_loss), log

    return jax.lax.scan(epoch_step, carry, None, length=num_epochs)


def _data_arrays(train: Split, val: Split) -> tuple:
  return (jnp.asarray(train.x), jnp.asarray(train.y), jnp.asarray(val.x),
          jnp.asarray(val.y))


def _history(logs: EpochLog) -> dict[str, np.ndarray]:
  return {name: np.asarray(value) for name, value in logs._asdict().items()}


def fit(model: nnx.Module, recipe: Recipe, train: Split, val: Split, *,
        epochs: int = 50, batch_size: int = 32, seed: int = 0,
        source_params: Any = None) -> FitResult:
  """Fine-tunes ``model`` with ``recipe``, the whole run as one program.

  Each epoch: shuffle (the order derives from ``seed`` and the epoch),
  ``ceil(n / batch_size)`` SGD steps through the recipe's optimizer, each
  fed ``measurement(last validation loss, epochs done)``, then validation.

  Args:
    model: the model to train (not modified; a trained copy is returned).
    recipe: optimizer recipe (:func:`lrtransfer.default_recipes`).
    train, val: training and validation splits.
    epochs: number of epochs.
    batch_size: minibatch size.
    seed: seeds the data order.
    source_params: the source parameters, for L2-SP recipes.

  Returns:
    A :class:`FitResult` (trained model, per-epoch history, timings).

  Example::

    result = lrtransfer.fit(target, lrtransfer.default_recipes()["adjust"],
                            task.target_train, task.target_val, epochs=30)
    print(result.history["val_accuracy"][-1])
  """
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"epochs and batch_size must be >= 1, got epochs="
                     f"{epochs}, batch_size={batch_size}")
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.as_pure(params)
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs)
  data = _data_arrays(train, val)
  key = jax.random.key(seed)
  lr = jnp.float32(recipe.learning_rate)

  def whole_run(params, source_params, lr, key, data):
    carry = program.init(params, source_params, lr)
    return program.run(carry, key, data, source_params, lr, epochs)

  start = time.perf_counter()
  compiled = jax.jit(whole_run).lower(params, source_params, lr, key,
                                      data).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  carry, logs = compiled(params, source_params, lr, key, data)
  jax.block_until_ready(carry)
  seconds = time.perf_counter() - start
  trained = nnx.merge(graphdef, carry.params)
  return FitResult(trained, _history(logs), carry, seconds, compile_seconds)


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
             source_params: Any = None, test: Optional[Split] = None
             ) -> SweepResult:
  """Runs several fits of one structure as a single ``jax.vmap``-ed program.

  Run ``i`` trains ``models[i]`` with data order ``seeds[i]`` and base rate
  ``learning_rates[i]`` (default: the recipe's). All models must share a
  structure (e.g. the same target built with different initialisation seeds).

  Returns:
    A :class:`SweepResult` with a leading run axis.
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
  graphdef, _ = nnx.split(models[0], nnx.Param)
  stacked = jax.tree.map(
      lambda *leaves: jnp.stack(leaves),
      *[nnx.as_pure(nnx.state(m, nnx.Param)) for m in models])
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs)
  data = _data_arrays(train, val)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  lrs = jnp.asarray(learning_rates, jnp.float32)
  test_data = (None if test is None else
               (jnp.asarray(test.x), jnp.asarray(test.y)))

  # Data and source params are arguments, not closed-over constants, so they
  # are not baked into the compiled program.
  def one_run(params, lr, key, data, source_params, test_data):
    carry = program.init(params, source_params, lr)
    carry, logs = program.run(carry, key, data, source_params, lr, epochs)
    accuracy = jnp.float32(jnp.nan)
    if test_data is not None:
      logits = nnx.merge(graphdef, carry.params)(test_data[0])
      accuracy = jnp.mean(jnp.argmax(logits, -1) == test_data[1])
    return carry.params, logs, accuracy

  args = (stacked, lrs, keys, data, source_params, test_data)
  in_axes = (0, 0, 0, None, None, None)
  start = time.perf_counter()
  compiled = jax.jit(jax.vmap(one_run, in_axes=in_axes)).lower(*args).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  params, logs, accuracy = compiled(*args)
  jax.block_until_ready(params)
  seconds = time.perf_counter() - start
  return SweepResult(params, _history(logs),
                     None if test is None else np.asarray(accuracy), seconds,
                     compile_seconds)
