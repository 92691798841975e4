"""The pure fine-tuning program: epochs of shuffled minibatch steps.

``FitProgram.run`` is one ``lax.scan`` over epochs around a ``lax.scan`` over
steps -- shuffle, minibatch steps through the recipe's optimizer, validation,
the validation loss fed to the strategy as ``measurement(val_loss, epoch)`` --
so Python runs once per call, not once per step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrtransfer._src import inspection
from lrtransfer._src.data import Split
from lrtransfer._src.measurement import measurement
from lrtransfer._src.recipes import (Recipe, build_optimizer, eval_params,
                                     group_learning_rates)


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

  def eval_params(self, opt_state, params):
    """The parameters to validate and return (``Recipe.eval_params``)."""
    return eval_params(self.recipe, opt_state, params)

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
      logits = nnx.merge(self.graphdef,
                         self.eval_params(opt_state, params))(val_x)
      val_loss = cross_entropy(logits, val_y)
      val_acc = jnp.mean(jnp.argmax(logits, -1) == val_y).astype(jnp.float32)
      scale = inspection.current_scale(opt_state, missing=1.0)
      log = EpochLog(losses.mean(), val_loss, val_acc, scale,
                     group_learning_rates(self.recipe, opt_state, params, lr))
      return FitCarry(params, opt_state, carry.epoch + 1, val_loss), log

    return jax.lax.scan(epoch_step, carry, None, length=num_epochs)


