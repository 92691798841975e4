"""Every method the benchmarks compare, as ``base rate -> Recipe``.

* baselines: ``scratch`` (no transfer) and ``constant`` (fine-tuning at a
  constant rate); the "best of grid" baselines are these over ``GRID``;
* lrtransfer: every recipe of ``lrtransfer.recipes.default_recipes()`` with
  its library defaults, ``recommended`` among them (see :func:`recommended`);
* peers a user would pick instead of tuning, each in the same compiled fit
  loop, budget and data (defined in ``peers.py``): Optax's ``reduce_on_plateau``
  set up correctly, the GreedyLR port, and the learning-rate-free
  ``dog``, ``dowg``, ``prodigy``, ``schedule_free_sgd``, ``mechanize(sgd)``.

A method with ``base_rate=False`` ignores the base rate it is given (it runs
at its documented defaults); robustness.py draws it as a flat line.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import lrtransfer
import peers as peers_lib
from lrtransfer.recipes import Recipe

# The library's default base rate (what a user who passes none gets).
DEFAULT_LR = lrtransfer.recipes.DEFAULT_LEARNING_RATE


class Method(NamedTuple):
  """A benchmarked method."""
  name: str
  kind: str  # "baseline", "lrtransfer" or "peer"
  make: Callable[[float], Recipe]  # base rate -> recipe
  base_rate: bool = True  # False: runs at its own defaults, rate ignored
  note: str = ""


def lrtransfer_methods() -> list[Method]:
  """The library's strategies and transfer tools, default settings."""
  names = [n for n in lrtransfer.recipes.default_recipes()
           if n not in ("scratch", "constant", "recommended")]
  methods = [Method(n, "lrtransfer",
                    (lambda lr, n=n: lrtransfer.recipes.default_recipes(lr)[n]))
             for n in names]
  return methods + [bold_driver(), recommended()]


def bold_driver() -> Method:
  """``lrtransfer.bold_driver()`` with its defaults on the validation loss
  each epoch: a public strategy, so the catastrophe check covers it (it is
  not one of ``default_recipes``)."""
  return Method("bold_driver", "lrtransfer",
                lambda lr: Recipe("bold_driver", lr, strategy=_bold_driver))


def _bold_driver(steps_per_epoch: int, total_steps: int):
  """Module level: one function object, so recipes compare equal and the
  compiled program is reused across tasks of equal shapes."""
  del steps_per_epoch, total_steps
  return lrtransfer.bold_driver()


def recommended() -> Method:
  """The recommended recipe, ``lrtransfer.recipes.recommended_recipe()``,
  at any base rate (its own default: :func:`recommended_default_lr`)."""
  recipe = lrtransfer.recipes.recommended_recipe()
  return Method("recommended", "lrtransfer",
                lambda lr: _with_rate(recipe, lr, "recommended"),
                note=f"lrtransfer.recipes.recommended_recipe() "
                f"(base rate {recipe.learning_rate:g})")


def recommended_default_lr() -> float:
  """The base rate the recommended recipe uses when given none."""
  return float(lrtransfer.recipes.recommended_recipe().learning_rate)


def _with_rate(recipe: Recipe, lr: float, name: str) -> Recipe:
  import dataclasses
  return dataclasses.replace(recipe, name=name, learning_rate=lr)


def baselines() -> list[Method]:
  return [
      Method("scratch", "baseline",
             lambda lr: Recipe("scratch", lr, from_source=False)),
      Method("constant", "baseline", lambda lr: Recipe("constant", lr)),
  ]


def peers() -> list[Method]:
  """The tuning-free peers (``peers.TUNING_FREE_PEERS``)."""
  return [Method(name, "peer", make, base_rate, note)
          for name, make, base_rate, note in peers_lib.tuning_free_factories()]


_RECIPES: dict[tuple[str, float], Recipe] = {}


def _memoized(method: Method) -> Method:
  """The same Recipe object for the same (method, rate): lrtransfer's
  compiled-program cache keys on the recipe (its strategy/optimizer
  functions by identity), so tasks of equal shapes then share one compile."""
  def make(lr: float, method=method) -> Recipe:
    key = (method.name, float(lr))
    if key not in _RECIPES:
      _RECIPES[key] = method.make(lr)
    return _RECIPES[key]
  return method._replace(make=make)


def all_methods(names: Optional[list[str]] = None) -> list[Method]:
  methods = [_memoized(m)
             for m in baselines() + lrtransfer_methods() + peers()]
  if names is not None:
    unknown = set(names) - {m.name for m in methods}
    if unknown:
      raise ValueError(f"unknown methods {sorted(unknown)}; known: "
                       f"{[m.name for m in methods]}")
    methods = [m for m in methods if m.name in names]
  return methods


LRTRANSFER_STRATEGIES = ("decay", "reduce_on_plateau", "adjust", "dynamic",
                         "bold_driver")
