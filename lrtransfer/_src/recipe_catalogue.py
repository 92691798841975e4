"""The library's named recipes: the recommended one and those ``lrtransfer run``
compares, with their default base rates.

Each recipe is a :class:`lrtransfer.recipes.Recipe` (built by
``lrtransfer._src.recipes``); this module holds only which ones the library
ships and with which settings, every one chosen on the benchmarks' tuning
tasks by validation accuracy (``python benchmarks/tune_defaults.py``).
"""

from __future__ import annotations

from typing import Optional

import lrtransfer._src.adjust as adjust_lib
import lrtransfer._src.decay as decay_lib
import lrtransfer._src.dynamic as dynamic_lib
from lrtransfer._src.recipes import Recipe

# Default base rates, chosen with the settings below by validation accuracy
# on the benchmarks' tuning tasks (benchmarks/tune_defaults.py, stages 2 and
# 4; results in benchmarks/results/defaults.md): the one every recipe of
# default_recipes shares, and the recommended recipe's own.
DEFAULT_LEARNING_RATE = 0.03
RECOMMENDED_LEARNING_RATE = 0.01


# Strategy factories as module-level functions, not lambdas: equal recipes
# built twice then share one compiled program (the fit cache compares them).
def _decay_per_epoch(steps_per_epoch: int, total_steps: int):
  del total_steps
  # The classic "multiply the rate by 0.99 every epoch", chosen on the
  # tuning set by validation (`python benchmarks/tune_defaults.py`,
  # benchmarks/results/defaults.md: worst -1.9 points against the constant
  # rate; 0.97 with a floor at half the base rate: -4.0). A floor of 0.5
  # never binds at 0.99 over 50 epochs (0.99**50 = 0.61).
  return decay_lib.decay(0.99, every_steps=steps_per_epoch, staircase=True)


def _reduce_on_plateau(steps_per_epoch: int, total_steps: int):
  del steps_per_epoch, total_steps
  return adjust_lib.reduce_on_plateau(factor=0.5, patience=3, min_scale=0.1)


def _adjust(steps_per_epoch: int, total_steps: int):
  del steps_per_epoch, total_steps
  return adjust_lib.adjust()


def _dynamic(steps_per_epoch: int, total_steps: int):
  return dynamic_lib.dynamic(total_steps, every_steps=steps_per_epoch)


def recommended_recipe(learning_rate: float = RECOMMENDED_LEARNING_RATE
                       ) -> Recipe:
  """The one recipe to start with: :func:`lrtransfer.adjust`, its defaults.

  Fine-tuning from the source at ``learning_rate`` (default 0.01) with
  SGD-momentum 0.9, the rate moved once per epoch by ``adjust``: a brake
  when the training loss rises (the rate is too high; while validation
  improves, only above its first measured value), a raise when
  training and validation stall together or training creeps while
  validation improves (too low), undone if the next evaluation is not
  better. Chosen, with its base rate, among every strategy and transfer
  tool of :func:`default_recipes` at base rates 0.01, 0.03 and 0.1 by the
  benchmarks' protocol: validation accuracy on the tuning tasks only, the
  pair least short of the tuning-free targets (stage 4 of `python
  benchmarks/tune_defaults.py`; none met them on validation: 1.2 points
  below the best constant rate of a grid at 0.01, 2.9 at 0.001 or 0.1 on
  the worst tuning task). Report-set figures, where it wins and where it
  loses: `python benchmarks/quality.py` (docs/guides/benchmarks.md).

  Args:
    learning_rate: base rate of the SGD-momentum optimizer.

  Returns:
    A :class:`Recipe` named ``"recommended"``.
  """
  return Recipe("recommended", learning_rate, strategy=_adjust)


def default_recipes(learning_rate: Optional[float] = None
                    ) -> dict[str, Recipe]:
  """The baselines, strategies and transfer tools compared by ``lrtransfer run``.

  ``recommended`` (:func:`recommended_recipe`) first, then the baselines and
  each strategy and transfer tool alone, all at ``learning_rate``; None:
  each at its own default (``RECOMMENDED_LEARNING_RATE`` for
  ``recommended``, ``DEFAULT_LEARNING_RATE`` for the others). Strategies run with their library
  defaults; periods are one epoch. Every setting here (and the default base
  rate) was chosen among a few candidates by validation accuracy on the
  benchmarks' tuning tasks, judged on all of them at once, never per task
  (``benchmarks/tune_defaults.py``; results in
  ``benchmarks/results/defaults.md``).

  Args:
    learning_rate: the base rate of every recipe, > 0; None: each recipe's
      own default.

  Returns:
    ``{name: Recipe}`` in this order: ``recommended``, ``scratch``,
    ``constant``, ``decay``, ``reduce_on_plateau``, ``adjust``,
    ``dynamic``, ``layerwise``, ``gradual_unfreeze``, ``head_first``,
    ``l2sp``.

  Raises:
    ValueError: ``learning_rate`` is not a positive number.

  Example::

    recipes = default_recipes()
    recipes["adjust"].learning_rate  # DEFAULT_LEARNING_RATE
  """
  # A bad rate is refused by Recipe itself, naming learning_rate.
  lr = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
  return {r.name: r for r in [
      recommended_recipe(RECOMMENDED_LEARNING_RATE if learning_rate is None
                         else learning_rate),
      Recipe("scratch", lr, from_source=False),
      Recipe("constant", lr),
      Recipe("decay", lr, strategy=_decay_per_epoch),
      Recipe("reduce_on_plateau", lr, strategy=_reduce_on_plateau),
      Recipe("adjust", lr, strategy=_adjust),
      Recipe("dynamic", lr, strategy=_dynamic),
      # ULMFiT's 1/2.6 per level starves the lower layers of a small MLP.
      Recipe("layerwise", lr, layerwise_factor=0.9),
      Recipe("gradual_unfreeze", lr, unfreeze_every_epochs=2),
      Recipe("head_first", lr, head_first_epochs=3),
      # The L2-SP paper's alpha=0.01 holds the few-shot target too close to
      # the source here.
      Recipe("l2sp", lr, l2sp_alpha=1e-3),
  ]}
