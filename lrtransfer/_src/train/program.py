"""The pure fine-tuning program: epochs of shuffled minibatch steps.

``FitProgram.run`` is one ``lax.scan`` over epochs around a ``lax.scan`` over
steps -- shuffle, minibatch steps through the recipe's optimizer, validation,
the evaluation fed to the strategies as one multi-valued measurement -- so
Python runs once per call, not once per step.

Any ``nnx.Module`` works: the model is split into its ``nnx.Param`` state
(trained) and the rest (BatchNorm statistics, Dropout RNG state, ...), which
the steps carry along in train mode (``model.train()``) while validation runs
in eval mode (``model.eval()``). Everything that varies between runs of one
structure -- data, keys, base rates, source parameters -- is an *argument* of
the program, so one compiled program serves them all (see ``runner``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrtransfer._src import inspection
from lrtransfer._src.measurement import measurement
from lrtransfer._src.recipes import (
  Recipe,
  build_optimizer,
  eval_params,
  group_learning_rates,
)

# The scoring rule lives in `evaluation`; its names stay importable here.
from lrtransfer._src.train.evaluation import LossFn as LossFn
from lrtransfer._src.train.evaluation import accuracy as accuracy
from lrtransfer._src.train.evaluation import (
  classification_loss as classification_loss,
)
from lrtransfer._src.train.evaluation import cross_entropy as cross_entropy
from lrtransfer._src.train.evaluation import evaluate as evaluate
from lrtransfer._src.train.evaluation import metric_fns, scores

# How often the epoch program was traced (tests count recompilations).
TRACES: collections.Counter = collections.Counter()


class EpochLog(NamedTuple):
  """What one epoch records with the default loss and metrics.

  A history has one array per name, with a leading epoch axis; a user metric
  ``name`` adds ``val_<name>``.
  """
  train_loss: jax.Array  # float32, mean minibatch loss of the epoch
  val_loss: jax.Array  # float32, validation loss after the epoch
  val_accuracy: jax.Array  # float32, validation accuracy after the epoch
  # float32, the strategies' scale after the epoch (1: none), the one every
  # parameter group shares (inspection.common_scale)
  scale: jax.Array
  group_lr: jax.Array  # float32 [levels], effective rate per depth level


class FitCarry(NamedTuple):
  """Everything a run needs to continue: the resumable state of a fit."""
  params: Any  # the model's nnx.Param state (pure arrays)
  rest: Any  # the other state: BatchNorm statistics, RNG state (pure arrays)
  opt_state: Any  # the full optimizer state
  epoch: jax.Array  # int32 scalar, epochs done (the data order derives from it)
  last: dict  # name -> float32 scalar, the last evaluation (NaN before one)
  best_value: jax.Array  # float32, best monitored value, sign-flipped for max
  best_epoch: jax.Array  # int32, 1-based epoch of best_value (0: none yet)
  best_params: Any  # eval params at best_epoch (restore_best), else None
  best_rest: Any  # the other state at best_epoch (restore_best), else None


class RunInputs(NamedTuple):
  """The arguments of a run that are not carried from epoch to epoch."""
  key: jax.Array  # typed PRNG key: the data order
  data: tuple  # (train_x, train_y, val_x, val_y)
  source_params: Any  # for L2-SP, else None
  learning_rate: jax.Array  # float32 scalar base rate


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """``ceil(num_train / batch_size)``: every example is seen each epoch."""
  return max(1, math.ceil(num_train / batch_size))


class _ByIdentity:
  """Wraps a setting that can only be compared by identity (a lambda, a
  closure, an array): equal only to a wrapper of the very same object, which
  it keeps alive so its ``id`` cannot be reused by another object."""

  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value

  def __hash__(self) -> int:
    return id(self.value)

  def __eq__(self, other) -> bool:
    return isinstance(other, _ByIdentity) and other.value is self.value

  def __repr__(self) -> str:
    return f"_ByIdentity({self.value!r})"


# Settings that are not part of the compiled program: a label, and the base
# rate, which is an argument of the program (RunInputs.learning_rate).
_NOT_COMPILED = frozenset({"name", "learning_rate"})


def _setting_key(value: Any) -> Any:
  """A hashable key equal for two settings that build the same program."""
  if value is None or isinstance(value, (bool, int, float, str)):
    # The type too: True, 1 and 1.0 hash alike but are different settings.
    return (type(value).__name__, value)
  if isinstance(value, tuple):
    return ("tuple", tuple(_setting_key(v) for v in value))
  if isinstance(value, functools.partial):
    return ("partial", _setting_key(value.func),
            tuple(_setting_key(v) for v in value.args),
            tuple(sorted((k, _setting_key(v))
                         for k, v in value.keywords.items())))
  # A function or other object. lrtransfer's own strategy factories are
  # module-level functions, the same object in every Recipe. A user's lambda
  # or closure may read globals or mutable cells that can change between
  # calls, so two of them are never assumed equal: define it once to share.
  return _ByIdentity(value)


def recipe_key(recipe: Recipe) -> tuple:
  """What of ``recipe`` the compiled program depends on, as a hashable key.

  Every field but ``name`` and ``learning_rate`` (a label, and an argument
  of the program): numbers, strings and paths by value, a
  ``functools.partial`` by its function and arguments, any other callable
  by identity. So ``default_recipes()`` built twice, or
  ``Recipe("a", 0.01, strategy=f)`` and ``Recipe("b", 0.1, strategy=f)``,
  share one compiled program, while another momentum, factor, period or
  strategy function compiles its own. Keying on the Recipe itself would
  compile again for every base rate of a sweep run through ``fit``.
  """
  return tuple((field.name, _setting_key(getattr(recipe, field.name)))
               for field in dataclasses.fields(recipe)
               if field.name not in _NOT_COMPILED)


def _table_fn(table: tuple) -> Callable[[tuple], Any]:
  lookup = dict(table)
  return lambda path: lookup[path]


def _nested(table: tuple) -> dict:
  """``((path, value), ...)`` -> the nested dict with those paths."""
  tree: dict = {}
  for path, value in table:
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


@dataclasses.dataclass(frozen=True)
class FitProgram:
  """A pure, jit-able fine-tuning program for one model structure and recipe.

  ``init(params, rest, source_params, lr) -> FitCarry`` and
  ``run(carry, inputs, num_epochs) -> (carry, logs)`` are pure functions of
  arrays, so they can be jitted, vmapped over seeds or learning rates, and
  resumed from any carry. The dataclass is hashable: it is the key of the
  compiled-program cache, where the recipe counts by its settings
  (:func:`recipe_key`), not as an object.
  """
  train_graph: Any  # GraphDef of the model in train mode
  eval_graph: Any  # GraphDef of the same model in eval mode
  # The recipe is read while tracing; `recipe_settings` stands for it in
  # comparisons, so equal recipes built apart share one compiled program.
  recipe: Recipe = dataclasses.field(compare=False)
  recipe_settings: tuple = dataclasses.field(init=False, repr=False)
  batch_size: int
  num_train: int
  total_epochs: int
  depths: tuple  # ((path, depth), ...) of every parameter
  mesh: Optional[Mesh] = None  # data-parallel: batches split over "data"
  transferred: Optional[tuple] = None  # ((path, bool), ...) from the source
  loss_fn: Optional[LossFn] = None  # None: classification cross-entropy
  metrics: Optional[tuple] = None  # ((name, fn), ...); None: accuracy
  monitor: str = "val_loss"
  mode: str = "min"
  restore_best: bool = False

  def __post_init__(self):
    object.__setattr__(self, "recipe_settings", recipe_key(self.recipe))

  @property
  def steps_per_epoch(self) -> int:
    return steps_per_epoch(self.num_train, self.batch_size)

  @property
  def metric_fns(self) -> tuple:
    return metric_fns(self.loss_fn, self.metrics)

  @property
  def value_names(self) -> tuple:
    """The names of an evaluation's values, the measurement's keys."""
    return ("val_loss", *(f"val_{name}" for name, _ in self.metric_fns),
            "train_loss")

  def optimizer(self, source_params, lr) -> optax.GradientTransformation:
    return build_optimizer(
        self.recipe, steps_per_epoch=self.steps_per_epoch,
        total_steps=self.steps_per_epoch * self.total_epochs,
        source_params=source_params, learning_rate=lr,
        transferred=(None if self.transferred is None
                     else _nested(self.transferred)),
        depths=_table_fn(self.depths))

  def eval_params(self, opt_state, params):
    """The parameters to validate and return (``Recipe.eval_params``)."""
    return eval_params(self.recipe, opt_state, params)

  def loss(self, model, x, y):
    return (classification_loss if self.loss_fn is None else self.loss_fn)(
        model, x, y)

  def evaluate(self, params, rest, x, y) -> dict:
    """``{"val_loss": ..., "val_<metric>": ...}`` in eval mode
    (:func:`evaluation.scores`, the rule of ``lrtransfer.train.evaluate``)."""
    model = nnx.merge(self.eval_graph, params, rest)
    return {f"val_{name}": value for name, value in
            scores(model, x, y, self.loss_fn, self.metrics).items()}

  def init(self, params, rest, source_params, lr) -> FitCarry:
    opt_state = self.optimizer(source_params, lr).init(params)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    return FitCarry(
        params, rest, opt_state, jnp.zeros([], jnp.int32),
        {name: nan for name in self.value_names},
        jnp.asarray(jnp.inf, jnp.float32), jnp.zeros([], jnp.int32),
        copy(params) if self.restore_best else None,
        copy(rest) if self.restore_best else None)

  def run(self, carry: FitCarry, inputs: RunInputs, num_epochs: int
          ) -> tuple[FitCarry, dict]:
    TRACES["run"] += 1
    key, (train_x, train_y, val_x, val_y), source_params, lr = inputs
    tx = self.optimizer(source_params, lr)
    spe, batch, n = self.steps_per_epoch, self.batch_size, self.num_train
    sign = 1.0 if self.mode == "min" else -1.0

    def loss_and_rest(params, rest, x, y):
      model = nnx.merge(self.train_graph, params, rest)
      loss = self.loss(model, x, y)
      _, _, new_rest = nnx.split(model, nnx.Param, ...)
      return loss, nnx.as_pure(new_rest)

    grad_fn = jax.value_and_grad(loss_and_rest, has_aux=True)

    def train_step(state, batch_idx):
      params, rest, opt_state, metric = state
      x, y = train_x[batch_idx], train_y[batch_idx]
      if self.mesh is not None:
        # Each device takes a slice of the batch; XLA all-reduces the mean
        # gradient, so params and optimizer state stay replicated and every
        # device takes the same learning-rate decision.
        spec = PartitionSpec("data", *([None] * (x.ndim - 1)))
        x = jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))
        y = jax.lax.with_sharding_constraint(y, NamedSharding(
            self.mesh, PartitionSpec("data", *([None] * (y.ndim - 1)))))
      (loss, rest), grads = grad_fn(params, rest, x, y)
      updates, opt_state = tx.update(grads, opt_state, params, metric=metric)
      return (optax.apply_updates(params, updates), rest, opt_state,
              metric), loss

    def epoch_step(carry: FitCarry, _):
      # The data order depends only on (key, epoch): a resumed run replays it.
      perm = jax.random.permutation(jax.random.fold_in(key, carry.epoch), n)
      # The last batch wraps around to the epoch's first examples so every
      # step has the same shape (one compiled step, no ragged batch).
      batches = perm[jnp.arange(spe * batch) % n].reshape(spe, batch)
      # Evaluation number `epoch` (0 before the first) is fed on every step;
      # the strategies react to it once.
      metric = measurement(count=carry.epoch, monitor=self.monitor,
                           mode=self.mode, **carry.last)
      (params, rest, opt_state, _), losses = jax.lax.scan(
          train_step, (carry.params, carry.rest, carry.opt_state, metric),
          batches)
      evaluated = self.eval_params(opt_state, params)
      values = {**self.evaluate(evaluated, rest, val_x, val_y),
                "train_loss": losses.mean().astype(jnp.float32)}
      # Keep the best evaluation: NaN never compares better.
      signed = sign * values[self.monitor]
      improved = signed < carry.best_value
      epoch = carry.epoch + 1
      keep = lambda new, old: jax.tree.map(
          lambda a, b: jnp.where(improved, a, b), new, old)
      best_params, best_rest = carry.best_params, carry.best_rest
      if self.restore_best:
        best_params = keep(evaluated, best_params)
        best_rest = keep(rest, best_rest)
      log = {**values,
             "scale": inspection.common_scale(opt_state),
             "group_lr": group_learning_rates(self.recipe, opt_state, params,
                                              lr, _table_fn(self.depths))}
      new_carry = FitCarry(
          params, rest, opt_state, epoch, values,
          jnp.where(improved, signed, carry.best_value),
          jnp.where(improved, epoch, carry.best_epoch), best_params,
          best_rest)
      return new_carry, log

    return jax.lax.scan(epoch_step, carry, None, length=num_epochs)

  def log_shapes(self) -> dict:
    """The shape of one epoch's log, known without tracing."""
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    num_levels = len({depth for _, depth in self.depths})
    return {**{name: scalar for name in self.value_names}, "scale": scalar,
            "group_lr": jax.ShapeDtypeStruct((num_levels,), jnp.float32)}

  def final_state(self, carry: FitCarry) -> tuple:
    """``(params, rest)`` to return: the evaluation parameters."""
    return self.eval_params(carry.opt_state, carry.params), carry.rest

  def test_accuracy(self, params, rest, x, y) -> jax.Array:
    TRACES["test"] += 1
    model = nnx.merge(self.eval_graph, params, rest)
    return jnp.mean(jnp.argmax(model(x), -1) == y).astype(jnp.float32)
