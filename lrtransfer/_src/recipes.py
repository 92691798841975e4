"""Recipes: a named fine-tuning optimizer, built the same way every time.

A recipe says which learning-rate strategy and which transfer tools to use on
top of a base optimizer (SGD-momentum unless ``optimizer=`` says otherwise);
:func:`build_optimizer` turns it into one Optax chain in the order the tools
need::

    [l2sp] -> [gradual_unfreeze | head_first] -> optimizer(lr)
           -> [layerwise_scale] -> [strategy]

(:func:`chain_parts` names a recipe's parts in this order.)

L2-SP adds its pull to the raw gradient; the unfreezing mask then zeroes the
frozen layers *before* momentum, so they accumulate none; layer-wise factors
and the strategy scale the final step. Frozen layers stay bit-identical
with any base optimizer whose step is zero for a zero gradient (SGD,
momentum, Adam); one that moves parameters by itself, e.g. AdamW's
decoupled weight decay, still moves them (give it ``mask=`` to keep the
frozen layers out). Freezing stops *parameter* updates: BatchNorm's running
statistics, which are not parameters, still update in training mode (as in
PyTorch with ``requires_grad=False``; Keras' ``trainable=False`` also
freezes them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lrtransfer._src import factory_checks, inspection, state_finder, validation
from lrtransfer._src.transfer import depths as depths_lib
from lrtransfer._src.transfer import unfreeze as unfreeze_lib
from lrtransfer._src.transfer.l2sp import l2sp
from lrtransfer._src.transfer.layerwise import (
  LayerwiseScaleState,
  layerwise_scale,
)

# strategy_factory(steps_per_epoch, total_steps) -> GradientTransformation
StrategyFactory = Callable[[int, int], optax.GradientTransformation]
# optimizer_factory(learning_rate) -> GradientTransformation; the rate may be
# a traced scalar (fit_many vmaps over it).
OptimizerFactory = Callable[[Any], optax.GradientTransformation]
# eval_params(base_optimizer_state, params) -> the parameters to evaluate.
EvalParamsFn = Callable[[Any, Any], Any]


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to fine-tune: base rate, strategy and transfer tools.

  Attributes:
    name: label in tables, plots and JSON.
    learning_rate: base learning rate of the base optimizer.
    momentum: SGD momentum (of the default base optimizer).
    strategy: ``f(steps_per_epoch, total_steps) -> transformation`` (an
      lrtransfer strategy), or None for a constant rate.
    from_source: start from the source model's layers (False: from scratch).
    layerwise_factor: discriminative rates, ``factor ** (top - depth)``.
    unfreeze_every_epochs: gradual unfreezing, one more level per period.
    head_first_epochs: linear probe for this many epochs, then everything.
    l2sp_alpha: L2-SP pull toward the source weights (0/None: off).
    l2sp_beta: plain weight decay on the new head when L2-SP is on.
    optimizer: the base optimizer, ``optimizer(learning_rate) ->
      optax.GradientTransformation``, e.g. ``lambda lr: optax.adamw(lr)`` or
      ``optax.contrib.schedule_free_sgd``; the rate may be a traced scalar.
      None: ``optax.sgd(lr, momentum=momentum)``.
    depth_fn: ``depth_fn(path) -> int`` for the transfer tools; None: the
      inference rule of :func:`lrtransfer.layer_depths` on the model.
    head: the head's attribute name or path prefix for that rule (default:
      a key named ``'head'``, else the layer defined last).
    eval_params: ``eval_params(base_state, params) -> params`` gives the
      parameters to validate, test and return, where ``base_state`` is the
      state of the base optimizer alone (not of the whole chain), e.g.
      ``optax.contrib.schedule_free_eval_params`` for schedule-free
      optimizers. None: the trained parameters.

  Example::

    Recipe("schedule_free", 0.5,
           optimizer=lambda lr: optax.contrib.schedule_free_sgd(lr),
           eval_params=optax.contrib.schedule_free_eval_params)
  """
  name: str
  learning_rate: float = 0.05
  momentum: float = 0.9
  strategy: Optional[StrategyFactory] = None
  from_source: bool = True
  layerwise_factor: Optional[float] = None
  unfreeze_every_epochs: Optional[int] = None
  head_first_epochs: Optional[int] = None
  l2sp_alpha: Optional[float] = None
  l2sp_beta: float = 1e-4
  optimizer: Optional[OptimizerFactory] = None
  eval_params: Optional[EvalParamsFn] = None
  depth_fn: Optional[Callable[[tuple], int]] = None
  head: Optional[Union[str, tuple]] = None

  def __post_init__(self):
    validation.check_positive("learning_rate", self.learning_rate)
    validation.check_in_interval("momentum", self.momentum, 0.0, 1.0,
                                 high_open=True)
    if self.layerwise_factor is not None:
      validation.check_positive("layerwise_factor", self.layerwise_factor)
    if self.unfreeze_every_epochs is not None:
      validation.check_int("unfreeze_every_epochs",
                           self.unfreeze_every_epochs, 1)
    if self.head_first_epochs is not None:
      validation.check_int("head_first_epochs", self.head_first_epochs, 1)
    if (self.unfreeze_every_epochs is not None
        and self.head_first_epochs is not None):
      raise ValueError("unfreeze_every_epochs and head_first_epochs are two "
                       "ways to open layers; choose one")
    if self.l2sp_alpha is not None:
      validation.check_non_negative("l2sp_alpha", self.l2sp_alpha)
      if not self.from_source:
        raise ValueError("l2sp_alpha needs from_source=True: L2-SP pulls "
                         "toward source weights")
    validation.check_non_negative("l2sp_beta", self.l2sp_beta)
    if self.head is not None and not isinstance(self.head, (str, tuple)):
      raise ValueError(f"head must be an attribute name or a path tuple, got "
                       f"{self.head!r}")
    for field in factory_checks.FACTORY_FIELDS:
      factory_checks.check_factory(field, getattr(self, field),
                                   f"recipe {self.name!r}")


def build_optimizer(recipe: Recipe, *, steps_per_epoch: int, total_steps: int,
                    source_params: Any = None, learning_rate: Any = None,
                    transferred: Any = None, depths: Any = None
                    ) -> optax.GradientTransformationExtraArgs:
  """The recipe's Optax chain (see the module docstring for the order).

  Args:
    recipe: what to build.
    steps_per_epoch: updates per epoch (for per-epoch periods).
    total_steps: the training budget in updates.
    source_params: source parameters, needed by L2-SP.
    learning_rate: overrides ``recipe.learning_rate``; may be a traced array
      (a sweep vmaps over it).
    transferred: which parameters came from the source (a pytree of bools,
      :func:`lrtransfer.models.transferred_mask`); L2-SP pulls only those toward the
      source. Default: every non-head leaf whose shape matches the source's.
    depths: the depth levels for the transfer tools: an ``nnx.Module`` (its
      :func:`lrtransfer.layer_depths` with the recipe's ``depth_fn`` and
      ``head``: pass the model, NNX sorts a state's keys so only the module
      knows its layers' order), a depth tree, or ``depth_fn(path) -> int``.
      Default: ``recipe.depth_fn``, else the inference rule on the tree.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.
  """
  lr = recipe.learning_rate if learning_rate is None else learning_rate
  depths = recipe_depths(recipe, depths)

  def l2sp_part():
    if source_params is None:
      raise ValueError(f"recipe {recipe.name!r} uses L2-SP: pass "
                       "source_params")
    return l2sp(source_params, alpha=recipe.l2sp_alpha,
                beta=recipe.l2sp_beta, transferred=transferred,
                depths=depths)

  build = {
      "l2sp": l2sp_part,
      "gradual_unfreeze": lambda: unfreeze_lib.gradual_unfreeze(
          recipe.unfreeze_every_epochs * steps_per_epoch, depths=depths),
      "head_first": lambda: unfreeze_lib.head_first(
          recipe.head_first_epochs * steps_per_epoch, depths=depths),
      "optimizer": lambda: base_optimizer(recipe, lr),
      "layerwise_scale": lambda: layerwise_scale(recipe.layerwise_factor,
                                                 depths=depths),
      "strategy": lambda: _strategy(recipe, steps_per_epoch, total_steps),
  }
  return optax.chain(*(build[part]() for part in chain_parts(recipe)))


# The order of build_optimizer's chain, first to last (the module docstring
# says why), with the test that puts each part in a recipe's chain.
_CHAIN_ORDER: tuple[tuple[str, Callable[[Recipe], bool]], ...] = (
    ("l2sp", lambda r: bool(r.l2sp_alpha)),
    ("gradual_unfreeze", lambda r: bool(r.unfreeze_every_epochs)),
    ("head_first", lambda r: bool(r.head_first_epochs)),
    ("optimizer", lambda r: True),
    ("layerwise_scale", lambda r: r.layerwise_factor is not None),
    ("strategy", lambda r: r.strategy is not None),
)


def chain_parts(recipe: Recipe) -> tuple[str, ...]:
  """The names of the transformations in ``recipe``'s chain, in order.

  One of ``"l2sp"``, ``"gradual_unfreeze"``, ``"head_first"``,
  ``"optimizer"`` (always), ``"layerwise_scale"``, ``"strategy"`` per
  element of :func:`build_optimizer`'s ``optax.chain`` state, e.g.
  ``("optimizer", "strategy")`` for :func:`recommended_recipe`.
  """
  return tuple(name for name, present in _CHAIN_ORDER if present(recipe))


def _strategy(recipe: Recipe, steps_per_epoch: int, total_steps: int
              ) -> optax.GradientTransformation:
  """``recipe.strategy(steps_per_epoch, total_steps)``, with the mistakes
  users make named (``strategy=lrtransfer.adjust`` would otherwise fail
  with "adjust() takes 0 positional arguments but 2 were given")."""
  hint = (f"recipe {recipe.name!r}: strategy must be a factory "
          "f(steps_per_epoch, total_steps) -> transformation, e.g. "
          "strategy=lambda spe, total: lrtransfer.adjust()")
  try:
    transformation = recipe.strategy(steps_per_epoch, total_steps)
  except TypeError as error:
    if isinstance(recipe.strategy, optax.GradientTransformation):
      raise ValueError(f"{hint}; got the transformation itself") from None
    raise ValueError(f"{hint}; calling it failed: {error}") from error
  if not isinstance(transformation, optax.GradientTransformation):
    raise ValueError(f"{hint}; it returned {type(transformation).__name__}")
  return transformation


def recipe_depths(recipe: Recipe, depths: Any = None) -> Any:
  """The depth spec the transfer tools get (see :func:`build_optimizer`)."""
  if isinstance(depths, nnx.Module):
    return depths_lib.layer_depths(depths, recipe.depth_fn, head=recipe.head)
  if depths is not None:
    return depths
  if recipe.head is not None and recipe.depth_fn is None:
    raise ValueError(f"recipe {recipe.name!r} names head={recipe.head!r}: "
                     "pass the model as depths= so its layers can be found")
  return recipe.depth_fn


def base_optimizer(recipe: Recipe, learning_rate: Any
                   ) -> optax.GradientTransformation:
  """The recipe's base optimizer at ``learning_rate`` (default SGD-momentum)."""
  if recipe.optimizer is None:
    return optax.sgd(learning_rate, momentum=recipe.momentum)
  tx = recipe.optimizer(learning_rate)
  if not isinstance(tx, optax.GradientTransformation):
    raise ValueError(f"recipe {recipe.name!r}: optimizer(learning_rate) must "
                     f"return an optax.GradientTransformation, got {tx!r}")
  return tx


def base_optimizer_index(recipe: Recipe) -> int:
  """Position of the base optimizer in :func:`build_optimizer`'s chain."""
  return chain_parts(recipe).index("optimizer")


def eval_params(recipe: Recipe, opt_state: Any, params: Any) -> Any:
  """The parameters to evaluate: ``recipe.eval_params`` or the trained ones.

  Args:
    recipe: the recipe that built the optimizer.
    opt_state: the state of :func:`build_optimizer`'s chain.
    params: the trained parameters.
  """
  if recipe.eval_params is None:
    return params
  return recipe.eval_params(opt_state[base_optimizer_index(recipe)], params)


def group_learning_rates(recipe: Recipe, opt_state: Any, params: Any,
                         learning_rate: Any = None,
                         depths: Any = None) -> jax.Array:
  """Effective learning rate of each depth level, input side first.

  ``lr_d = lr * scale * factor_d * open_d``, each term read from the
  transformations' state: ``scale`` is the strategies' scale that every
  parameter group shares (:func:`lrtransfer.current_scale` without an
  ``optax.partition``; 1 without a strategy), ``factor_d`` the
  ``level_factors`` of a :func:`lrtransfer.layerwise_scale` state (1
  without one) and ``open_d`` 0 for levels still frozen by a
  :func:`lrtransfer.gradual_unfreeze` or :func:`lrtransfer.head_first`
  state (1 without one).

  Args:
    recipe: gives the default ``learning_rate``.
    opt_state: the state of :func:`build_optimizer`'s chain.
    params: the parameter tree (for the number of levels).
    learning_rate: the base rate (default ``recipe.learning_rate``).
    depths: as in :func:`build_optimizer`.

  Returns:
    float32 array ``[num_levels]``.
  """
  lr = recipe.learning_rate if learning_rate is None else learning_rate
  num_levels = len(depths_lib.resolve_depths(
      params, recipe_depths(recipe, depths)).levels)
  scale = inspection.common_scale(opt_state)
  factors = state_finder.find_states(opt_state, LayerwiseScaleState)
  factor = (factors[0][1].level_factors if factors
            else jnp.ones([num_levels], jnp.float32))
  if state_finder.find_states(opt_state, unfreeze_lib.UnfreezeState):
    num_open = unfreeze_lib.unfrozen_levels(opt_state)
    from_top = jnp.arange(num_levels - 1, -1, -1)
    is_open = from_top < num_open
  else:
    is_open = jnp.ones([num_levels], bool)
  return (lr * scale * factor * is_open).astype(jnp.float32)
