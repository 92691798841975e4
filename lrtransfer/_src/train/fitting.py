"""``fit``: fine-tune one model, the whole run as one compiled program."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train.checks import as_split, check_data, check_options
from lrtransfer._src.train.program import FitCarry, LossFn, RunInputs, _nested
from lrtransfer._src.transfer.depths import remember_depths
from lrtransfer._src.train.runner import (ChunkedRun, build_program,
                                          compile_cached, data_arrays,
                                          data_mesh, epochs_per_call,
                                          run_description, split_model)


@dataclasses.dataclass
class FitResult:
  """The outcome of :func:`fit`.

  Attributes:
    model: the trained model (a new module; the input model is not changed),
      holding the evaluation parameters (``Recipe.eval_params``).
    history: per-epoch NumPy arrays: ``train_loss``, ``val_loss``,
      ``val_<metric>`` per metric (``val_accuracy`` by default), ``scale``,
      ``group_lr`` (see :class:`EpochLog`).
    carry: the final :class:`FitCarry` (to resume or checkpoint).
    seconds: wall time of the run, compilation excluded.
    compile_seconds: time spent compiling in this call (0.0 when every
      program came from the cache of an earlier call with the same
      structure, sizes and options).
    best_model: with ``restore_best``, the model at the best monitored
      evaluation (eval mode state included); else None.
    best_epoch: 1-based epoch of the best monitored evaluation (0 if no
      evaluation was finite).
  """
  model: nnx.Module
  history: dict[str, np.ndarray]
  carry: FitCarry
  seconds: float
  compile_seconds: float
  best_model: Optional[nnx.Module] = None
  best_epoch: int = 0


def fit(model: nnx.Module, recipe: Recipe, train: Any, val: Any, *,
        epochs: int = 50, batch_size: int = 32, seed: int = 0,
        source_params: Any = None, loss_fn: Optional[LossFn] = None,
        metrics: Optional[dict[str, LossFn]] = None,
        monitor: str = "val_loss", mode: str = "auto",
        restore_best: bool = False, checkpoint_dir: Any = None,
        checkpoint_every: Optional[int] = None, resume: bool = False,
        devices: Optional[Sequence[jax.Device]] = None) -> FitResult:
  """Fine-tunes ``model`` with ``recipe``, the whole run as one program.

  Each epoch: shuffle (the order derives from ``seed`` and the epoch),
  ``ceil(n / batch_size)`` steps through the recipe's optimizer in train
  mode (batches have a fixed shape under jit: the last one wraps around
  to the start of the shuffled order, so when ``batch_size`` does not
  divide ``n`` a few examples count twice that epoch), each fed the
  previous evaluation as one measurement,
  ``measurement(count=epochs done, monitor=monitor, mode=mode, val_loss=...,
  val_<metric>=..., train_loss=<previous epoch's mean>)``, then validation in
  eval mode. Any ``nnx.Module`` works, with BatchNorm statistics and Dropout
  RNG state carried along; depth levels for the transfer tools come from
  :func:`lrtransfer.layer_depths` (``recipe.depth_fn``/``recipe.head``).

  The program is compiled once per model structure, recipe settings, sizes
  and options, and cached: a second call with new data, seed, weights,
  source parameters or base rate of the same shapes compiles nothing, also
  with another Recipe object of equal settings (compared field by field,
  name and base rate aside; a lambda by identity: define it once).

  Args:
    model: the model to train (not modified; a trained copy is returned).
    recipe: optimizer recipe (:func:`lrtransfer.recipes.default_recipes`).
    train, val: training and validation data: :class:`lrtransfer.data.Split`
      or ``(x, y)`` pairs of arrays (inputs of any rank; float targets for
      regression with a ``loss_fn``).
    epochs: number of epochs.
    batch_size: minibatch size.
    seed: seeds the data order.
    source_params: the source parameters, for L2-SP recipes.
    loss_fn: ``loss_fn(model, x, y) -> scalar``; default: softmax
      cross-entropy of integer labels.
    metrics: ``{name: fn(model, x, y) -> scalar}`` logged as ``val_<name>``;
      default ``{"accuracy": ...}`` with the default loss, none with a
      ``loss_fn``.
    monitor: the logged value the strategies react to and ``restore_best``
      judges: ``"val_loss"``, ``"train_loss"`` or ``"val_<metric>"``.
    mode: ``"min"``, ``"max"`` or ``"auto"`` (max for names containing
      "acc" in any case, else min, as Keras;
      :func:`lrtransfer.measurement`'s rule).
    restore_best: keep, inside the compiled program, a copy of the
      parameters (and other state) of the best monitored evaluation, returned
      as ``best_model``.
    checkpoint_dir: folder for run checkpoints (orbax); None: none.
    checkpoint_every: epochs between checkpoints (the program runs this many
      epochs per call); default: all epochs in one call.
    resume: continue from the latest checkpoint in ``checkpoint_dir`` if
      there is one (it must describe the same run).
    devices: run data-parallel over these devices (batch split across them,
      parameters and optimizer state replicated); default: one device.

  Returns:
    A :class:`FitResult` (trained model, best model, per-epoch history,
    timings).

  Raises:
    ValueError: bad epochs/batch size, data, monitor, mode or loss; with the
      default loss, labels that are not integers ``[n]`` in ``[0, outputs
      of the model)`` (the message names the split and row); NaN or
      infinite inputs; ``resume`` without ``checkpoint_dir``; a model passed
      as ``source_params``.
    lrtransfer.checkpoint.CheckpointError: resuming a checkpoint of another
      run (the message names what differs).

  Warns:
    UserWarning: ``checkpoint_every`` without ``checkpoint_dir`` (nothing
      is saved).

  Example::

    result = lrtransfer.train.fit(target, recipes["adjust"],
                                  task.target_train, task.target_val,
                                  epochs=30, restore_best=True)
    print(result.history["val_accuracy"][-1], result.best_epoch)

  References:
    JAX ``lax.scan`` and ``jax.sharding``,
    https://docs.jax.dev/en/latest/_autosummary/jax.lax.scan.html,
    https://docs.jax.dev/en/latest/sharded-computation.html
  """
  check_sizes(epochs, batch_size)
  check_seed(seed)
  train, val = as_split(train, "train"), as_split(val, "val")
  check_data(model, {"train": train, "val": val}, loss_fn is None)
  every = epochs_per_call(epochs, checkpoint_every)
  check_options(checkpoint_dir, checkpoint_every, resume, source_params)
  mesh = data_mesh(devices, batch_size)
  program = build_program(model, recipe, len(train), epochs, batch_size,
                          mesh=mesh, loss_fn=loss_fn, metrics=metrics,
                          monitor=monitor, mode=mode,
                          restore_best=restore_best)
  params, rest = split_model(model)
  inputs = RunInputs(jax.random.key(seed), data_arrays(train, val),
                     source_params, jnp.float32(recipe.learning_rate))
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    params, rest, inputs = jax.device_put((params, rest, inputs), replicated)
  # Eager: optimizer states start as zeros and copies, not worth a compile
  # (and resuming a finished run then compiles nothing).
  carry = program.init(params, rest, inputs.source_params,
                       inputs.learning_rate)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, run_description(
        model, recipe, train, val, epochs, batch_size, [seed],
        [recipe.learning_rate], program))

  def compile_chunk(num_epochs):
    run, seconds = compile_cached(
        ("run", program, num_epochs),
        lambda c, i: program.run(c, i, num_epochs), carry, inputs)
    return (lambda c: run(c, inputs)), seconds

  run = ChunkedRun(compile_chunk, carry, program.log_shapes(), epochs, every,
                   0, checkpointer, resume)
  seconds = run.run()
  # Eager: a few element-wise ops, not worth a compile.
  graph = program.eval_graph
  trained = nnx.merge(graph, *jax.device_get(program.final_state(run.carry)))
  best = None
  if restore_best:
    best = nnx.merge(graph, *jax.device_get(
        (run.carry.best_params, run.carry.best_rest)))
  # The returned modules list attributes sorted by name; they remember the
  # input's depth levels (found in definition order).
  for module in (trained, best):
    if module is not None:
      remember_depths(module, _nested(program.depths))
  return FitResult(trained, run.history, run.carry, seconds,
                   run.compile_seconds,
                   best, int(run.carry.best_epoch))


def check_sizes(epochs: Any, batch_size: Any) -> None:
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")


def is_integer_seed(seed: Any) -> bool:
  """An integer: Python, NumPy or a scalar integer array (JAX's too); not
  a bool."""
  integral = isinstance(seed, (int, np.integer)) or (
      isinstance(seed, (np.ndarray, jax.Array)) and seed.ndim == 0
      and np.issubdtype(seed.dtype, np.integer))
  return integral and not isinstance(seed, bool)


def check_seed(seed: Any, name: str = "seed") -> None:
  if not is_integer_seed(seed):
    raise ValueError(f"{name} must be an int, got {name}={seed!r}")
