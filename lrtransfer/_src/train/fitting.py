"""``fit``: fine-tune one model, the whole run as one compiled program."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from flax import nnx

from lrtransfer._src.recipes import Recipe
from lrtransfer._src.train.checks import check_options
from lrtransfer._src.train.program import FitCarry, LossFn
from lrtransfer._src.train.runner import merge_model
from lrtransfer._src.train.runs import run_fits


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
    test_accuracy: accuracy of ``model`` on the ``test`` split (if given).
    best_test_accuracy: accuracy of ``best_model`` on the ``test`` split
      (with ``restore_best`` and a test split).
  """
  model: nnx.Module
  history: dict[str, np.ndarray]
  carry: FitCarry
  seconds: float
  compile_seconds: float
  best_model: Optional[nnx.Module] = None
  best_epoch: int = 0
  test_accuracy: Optional[float] = None
  best_test_accuracy: Optional[float] = None


def fit(model: nnx.Module, recipe: Recipe, train: Any, val: Any, *,
        epochs: int = 50, batch_size: int = 32, seed: int = 0,
        source_params: Any = None, loss_fn: Optional[LossFn] = None,
        metrics: Optional[dict[str, LossFn]] = None,
        monitor: str = "val_loss", mode: str = "auto",
        restore_best: bool = False, checkpoint_dir: Any = None,
        checkpoint_every: Optional[int] = None, resume: bool = False,
        devices: Optional[Sequence[jax.Device]] = None,
        learning_rate: Optional[float] = None, test: Any = None,
        on_chunk: Optional[Callable[[int], None]] = None) -> FitResult:
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
    learning_rate: the base rate; default ``recipe.learning_rate``.
    test: a test split (as ``train``, integer labels): its classification
      accuracy is scored after training (``test_accuracy``) and, with
      ``restore_best``, of the best model (``best_test_accuracy``).
    on_chunk: ``on_chunk(epochs)`` is called after each compiled call
      (every ``checkpoint_every`` epochs, or once), e.g. to move a progress
      bar.

  Returns:
    A :class:`FitResult` (trained model, best model, per-epoch history,
    timings).

  Raises:
    ValueError: bad epochs/batch size/learning rate, data, monitor, mode or
      loss; with the
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
  check_options(checkpoint_dir, checkpoint_every, resume, source_params,
                reports_chunks=on_chunk is not None)
  outcome = run_fits(
      [model], recipe, train, val, seeds=[seed],
      learning_rates=None if learning_rate is None else [learning_rate],
      batched=False, epochs=epochs,
      batch_size=batch_size, source_params=source_params, test=test,
      loss_fn=loss_fn, metrics=metrics, monitor=monitor, mode=mode,
      restore_best=restore_best, checkpoint_dir=checkpoint_dir,
      checkpoint_every=checkpoint_every, resume=resume, devices=devices,
      on_chunk=on_chunk, seed_names=["seed"],
      rate_names=["learning_rate"])
  graph, carry = outcome.program.eval_graph, outcome.carry
  depths = outcome.program.depths
  trained = merge_model(graph, outcome.params, outcome.rest, depths)
  best = (merge_model(graph, carry.best_params, carry.best_rest, depths)
          if restore_best else None)
  as_float = lambda value: None if value is None else float(value)
  return FitResult(trained, outcome.history, carry, outcome.seconds,
                   outcome.compile_seconds, best, int(carry.best_epoch),
                   as_float(outcome.test_accuracy),
                   as_float(outcome.best_test_accuracy))
