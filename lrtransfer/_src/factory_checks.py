"""Clear errors for a built object passed where a factory is expected.

A :class:`lrtransfer.recipes.Recipe` builds its optimizer anew for every run
(the steps per epoch, the budget and, in sweeps, the base rate differ from
run to run), so it takes *factories*: ``optimizer(learning_rate)``,
``strategy(steps_per_epoch, total_steps)``. Passing the built transformation
(``strategy=lrtransfer.adjust()``, ``optimizer=optax.adamw(1e-3)``) or a
function that takes other arguments (``strategy=lrtransfer.adjust``) is the
common mistake; the messages here name the fix, at construction.
"""

from __future__ import annotations

import inspect
from typing import Any

import optax

# What each function-taking field of Recipe is, what it is called with,
# and a value that works.
FACTORY_FIELDS = {
    "strategy": (
        "a factory",
        "strategy(steps_per_epoch, total_steps) -> transformation",
        ("steps_per_epoch", "total_steps"),
        "strategy=lambda steps_per_epoch, total_steps: lrtransfer.adjust()"),
    "optimizer": (
        "a factory", "optimizer(learning_rate) -> transformation",
        ("learning_rate",), "optimizer=lambda lr: optax.adamw(lr)"),
    "eval_params": (
        "a function", "eval_params(base_optimizer_state, params) -> params",
        ("base_optimizer_state", "params"),
        "eval_params=optax.contrib.schedule_free_eval_params"),
    "depth_fn": (
        "a function", "depth_fn(path) -> int", ("path",),
        "depth_fn=lambda path: 0 if path[0] == 'body' else 1"),
}

# lrtransfer's strategy functions: they take the strategy's own settings,
# so `strategy=lrtransfer.decay` would bind steps_per_epoch to `rate`.
_STRATEGY_FUNCTIONS = ("adjust", "bold_driver", "decay", "dynamic",
                       "reduce_on_plateau", "schedule_scale")


def _is_strategy_function(value: Any) -> bool:
  module = getattr(value, "__module__", "") or ""
  return (module.startswith("lrtransfer.")
          and getattr(value, "__name__", None) in _STRATEGY_FUNCTIONS)


def _takes(value: Any, num_args: int) -> bool | None:
  """Whether ``value`` accepts ``num_args`` positional arguments (None: its
  signature cannot be read, e.g. some builtins)."""
  try:
    signature = inspect.signature(value)
  except (TypeError, ValueError):
    return None
  try:
    signature.bind(*range(num_args))
  except TypeError:
    return False
  return True


def check_factory(field: str, value: Any, owner: str) -> None:
  """Refuses a ``Recipe`` field's value that is not the factory it calls.

  Args:
    field: one of :data:`FACTORY_FIELDS`.
    value: the value given (None is accepted: the field's default).
    owner: who is checking, for the message (e.g. ``"recipe 'mine'"``).

  Raises:
    ValueError: ``value`` is a built transformation, not callable, an
      lrtransfer strategy function itself (``strategy`` only), or a function
      that cannot take the arguments it is called with; the message shows a
      value that works.
  """
  if value is None:
    return
  kind, call, args, example = FACTORY_FIELDS[field]
  start = f"{owner}: {field} must be {kind}, called as {call}"
  if isinstance(value, optax.GradientTransformation):
    why = (": the recipe builds a fresh one for every run (its steps per "
           "epoch, budget and base rate), so pass a factory such as"
           if kind == "a factory" else "; e.g.")
    raise ValueError(f"{start}, got a built {type(value).__name__}{why} "
                     f"`{example}`")
  if not callable(value):
    raise ValueError(f"{start}, got {value!r}; e.g. `{example}`")
  if field == "strategy" and _is_strategy_function(value):
    raise ValueError(
        f"{start}, got lrtransfer.{value.__name__} itself, which takes the "
        "strategy's own settings, not the run's steps: pass `strategy=lambda "
        f"steps_per_epoch, total_steps: lrtransfer.{value.__name__}(...)`")
  if _takes(value, len(args)) is False:
    raise ValueError(
        f"{start}, got {getattr(value, '__name__', repr(value))}, which "
        f"cannot be called with ({', '.join(args)}); e.g. `{example}`")


def recipe_type_error(value: Any, where: str) -> ValueError:
  """The error for a non-``Recipe`` value where a ``Recipe`` is expected,
  with the fix for the usual mistakes: a function that returns a recipe
  (``recommended_recipe`` without the call) and an Optax transformation.

  Args:
    value: what was given.
    where: the argument, e.g. ``"recipe"`` or ``"recipes['mine']"``.
  """
  start = (f"{where} must be a lrtransfer.recipes.Recipe, got "
           f"{type(value).__name__}")
  if isinstance(value, optax.GradientTransformation):
    return ValueError(
        f"{start}: a recipe builds its optimizer for every run, so wrap the "
        "optimizer in one as a factory, e.g. Recipe('mine', 0.01, "
        "optimizer=lambda lr: optax.adamw(lr), strategy=lambda "
        "steps_per_epoch, total_steps: lrtransfer.adjust())")
  if callable(value) and _takes(value, 0):
    name = getattr(value, "__name__", "the function")
    return ValueError(f"{start}: call it ({name}())")
  return ValueError(f"{start}; e.g. lrtransfer.recipes.recommended_recipe() "
                    "or Recipe('mine', 0.01)")
