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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrtransfer._src import inspect
from lrtransfer._src.data import Split
from lrtransfer._src.models import MLP, transferred_mask
from lrtransfer._src.run_checkpoint import RunCheckpointer
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
  """Cross-entropy and accuracy of ``model`` on ``split``.

  ``loss = mean_i -log softmax(model(x_i))[y_i]``,
  ``accuracy = mean_i [argmax model(x_i) == y_i]``.
  """
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
  mesh: Optional[Mesh] = None  # data-parallel: batches split over "data"
  transferred: Any = None  # bools: which params came from the source

  @property
  def steps_per_epoch(self) -> int:
    return steps_per_epoch(self.num_train, self.batch_size)

  def optimizer(self, source_params, lr) -> optax.GradientTransformation:
    return build_optimizer(
        self.recipe, steps_per_epoch=self.steps_per_epoch,
        total_steps=self.steps_per_epoch * self.total_epochs,
        source_params=source_params, learning_rate=lr,
        transferred=self.transferred)

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
      x, y = train_x[batch_idx], train_y[batch_idx]
      if self.mesh is not None:
        # Each device takes a slice of the batch; XLA all-reduces the mean
        # gradient, so params and optimizer state stay replicated and every
        # device takes the same learning-rate decision.
        x = jax.lax.with_sharding_constraint(
            x, NamedSharding(self.mesh, PartitionSpec("data", None)))
        y = jax.lax.with_sharding_constraint(
            y, NamedSharding(self.mesh, PartitionSpec("data")))
      loss, grads = grad_fn(params, x, y)
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
      scale = inspect.current_scale(opt_state, missing=1.0)
      log = EpochLog(losses.mean(), val_loss, val_acc, scale,
                     group_learning_rates(self.recipe, opt_state, params, lr))
      return FitCarry(params, opt_state, carry.epoch + 1, val_loss), log

    return jax.lax.scan(epoch_step, carry, None, length=num_epochs)


def _data_arrays(train: Split, val: Split) -> tuple:
  return (jnp.asarray(train.x), jnp.asarray(train.y), jnp.asarray(val.x),
          jnp.asarray(val.y))


def _empty_history(logs_shape: EpochLog, epochs: int, epoch_axis: int
                   ) -> dict[str, np.ndarray]:
  """Full-length, NaN-filled history buffers (fixed shapes: checkpointable)."""
  def buffer(leaf):
    shape = list(leaf.shape)
    shape[epoch_axis] = epochs
    return np.full(shape, np.nan, leaf.dtype)
  return {name: buffer(leaf) for name, leaf in logs_shape._asdict().items()}


class _ChunkedRun:
  """Runs a program ``checkpoint_every`` epochs at a time, saving between.

  ``chunk(carry, num_epochs) -> (carry, EpochLog)`` is compiled once per
  chunk length (ahead of time, so compile time is measured apart). Chunks
  change nothing in the arithmetic: an interrupted and resumed run computes
  exactly what an uninterrupted run with the same chunking computes.
  """

  def __init__(self, chunk, carry, epochs: int, every: int, epoch_axis: int,
               checkpointer: Optional[RunCheckpointer], resume: bool):
    self.chunk = chunk
    self.carry = carry
    self.epochs = epochs
    self.every = every
    self.epoch_axis = epoch_axis
    self.checkpointer = checkpointer
    self.compiled = {}
    self.compile_seconds = 0.0
    logs_shape = jax.eval_shape(lambda c: chunk(c, 1), carry)[1]
    self.history = _empty_history(logs_shape, epochs, epoch_axis)
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
    if self.checkpointer is not None:
      self.checkpointer.close()
    return seconds


def _epochs_per_call(epochs: int, checkpoint_every: Optional[int]) -> int:
  """Epochs per compiled call: all of them, or the checkpoint period."""
  if checkpoint_every is None:
    return epochs
  if checkpoint_every < 1:  # 0 would make no progress: an endless loop
    raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
  return checkpoint_every


def _transferred(model: nnx.Module) -> Any:
  """Which parameters came from the source, for an MLP; else None."""
  return transferred_mask(model) if isinstance(model, MLP) else None


def _mesh(devices: Optional[Sequence[jax.Device]], batch_size: int
          ) -> Optional[Mesh]:
  if devices is None or len(devices) <= 1:
    return None
  if batch_size % len(devices):
    raise ValueError(f"batch_size={batch_size} must be divisible by the "
                     f"{len(devices)} devices of a data-parallel fit")
  return Mesh(np.asarray(devices), ("data",))


def _run_description(model_like, recipe: Recipe, train: Split, val: Split,
                     epochs: int, batch_size: int, seeds, learning_rates):
  config = getattr(model_like, "config", None)
  return {
      "model": repr(config) if config is not None else type(model_like)
      .__name__,
      "recipe": recipe.name, "epochs": epochs, "batch_size": batch_size,
      "num_train": len(train), "num_val": len(val),
      "seeds": [int(s) for s in seeds],
      "learning_rates": [float(lr) for lr in learning_rates],
  }


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
    recipe: optimizer recipe (:func:`lrtransfer.default_recipes`).
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

    result = lrtransfer.fit(target, lrtransfer.default_recipes()["adjust"],
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
  every = _epochs_per_call(epochs, checkpoint_every)
  mesh = _mesh(devices, batch_size)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.as_pure(params)
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs, mesh,
                       _transferred(model))
  data = _data_arrays(train, val)
  lr = jnp.float32(recipe.learning_rate)
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    params, data, source_params = jax.device_put(
        (params, data, source_params), replicated)
  key = jax.random.key(seed)
  carry = jax.jit(program.init)(params, source_params, lr)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, _run_description(
        model, recipe, train, val, epochs, batch_size, [seed],
        [recipe.learning_rate]))

  def chunk(carry, num_epochs):
    return program.run(carry, key, data, source_params, lr, num_epochs)

  run = _ChunkedRun(chunk, carry, epochs, every, 0, checkpointer, resume)
  seconds = run.run()
  trained = nnx.merge(graphdef, jax.device_get(run.carry.params))
  return FitResult(trained, run.history, run.carry, seconds,
                   run.compile_seconds)


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
             checkpoint_every: Optional[int] = None, resume: bool = False
             ) -> SweepResult:
  """Runs several fits of one structure as a single ``jax.vmap``-ed program.

  Run ``i`` trains ``models[i]`` with data order ``seeds[i]`` and base rate
  ``learning_rates[i]`` (default: the recipe's). All models must share a
  structure (e.g. the same target built with different initialisation
  seeds). Checkpointing and resuming work as in :func:`fit`:
  ``results[i] = fit(models[i], recipe with learning_rates[i], seed=seeds[i])``
  up to float reassociation, computed as ``jax.vmap`` over ``i``.

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
  every = _epochs_per_call(epochs, checkpoint_every)
  graphdef, _ = nnx.split(models[0], nnx.Param)
  stacked = jax.tree.map(
      lambda *leaves: jnp.stack(leaves),
      *[nnx.as_pure(nnx.state(m, nnx.Param)) for m in models])
  program = FitProgram(graphdef, recipe, batch_size, len(train), epochs,
                       transferred=_transferred(models[0]))
  data = _data_arrays(train, val)
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
    checkpointer = RunCheckpointer(checkpoint_dir, _run_description(
        models[0], recipe, train, val, epochs, batch_size, seeds,
        learning_rates))
  run = _ChunkedRun(chunk, carry, epochs, every, 1, checkpointer, resume)
  seconds = run.run()
  accuracy = None
  if test is not None:
    test_x, test_y = jnp.asarray(test.x), jnp.asarray(test.y)
    logits = jax.jit(jax.vmap(
        lambda p: nnx.merge(graphdef, p)(test_x)))(run.carry.params)
    accuracy = np.asarray(jnp.mean(jnp.argmax(logits, -1) == test_y, -1))
  return SweepResult(run.carry.params, run.history, accuracy, seconds,
                     run.compile_seconds)
