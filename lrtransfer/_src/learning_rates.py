"""The current learning rates of an optimizer state, as Python floats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from lrtransfer._src import inspection, placement, state_finder, validation
from lrtransfer._src.transfer.layerwise import LayerwiseScaleState
from lrtransfer._src.transfer.unfreeze import UnfreezeState


def _concrete(value: Any, what: str) -> np.ndarray:
  """``value`` as a NumPy array; refuses a traced or stacked state."""
  if isinstance(value, jax.core.Tracer):
    raise ValueError(
        "learning_rates returns Python floats, so it reads a concrete state: "
        "call it outside jax.jit (under jit, lrtransfer.group_scales and "
        "lrtransfer.effective_learning_rate give arrays).")
  array = np.asarray(value)
  if what == "scalar" and array.ndim:
    raise ValueError(
        f"learning_rates reads the state of one run, got a {what} of shape "
        f"{array.shape} (the stacked states of several runs): index one run.")
  return array


def _float32_digits(value: Any) -> float:
  """``value`` as a Python float to float32 precision (7 significant
  digits): the scales are float32, further digits would be noise."""
  return float(f"{float(value):.7g}")


def _acting(located: list, group: tuple) -> list:
  """The states found outside ``group`` or in one of its enclosing groups."""
  return [found for where, found in located if group[:len(where)] == where]


def learning_rates(state: Any,
                   base_learning_rate: float | Callable[[Any], Any]
                   ) -> dict[str, float]:
  """The learning rate each parameter group trains with now, as floats.

  A group's rate is ``base_learning_rate`` times the scale of the
  strategies acting on it (:func:`lrtransfer.group_scales`); where a
  :func:`lrtransfer.layerwise_scale` or a :func:`lrtransfer.gradual_unfreeze`
  / :func:`lrtransfer.head_first` acts, one rate per depth level follows,
  times the level's factor, and 0.0 for levels still frozen:

  =====================================  ===================================
  optimizer                              keys
  =====================================  ===================================
  a chain without transfer tools         ``"all"``
  with layer-wise rates or unfreezing    ``"level 0"`` (input side) ... the
                                         top level (the head)
  ``optax.partition`` groups             the labels (``"outer/inner"``
                                         nested), ``"body/level 0"`` ...
  =====================================  ===================================

  The rates are those of the most recent update (the state's scales); with
  an adaptive base optimizer (Adam, ...) they scale its step, not the
  gradient. A strategy chained *before* such an optimizer has its scale
  normalised away: a ``UserWarning`` says so and where to put it (see
  :func:`lrtransfer.current_scale`).

  Args:
    state: an optimizer state, e.g. ``nnx.Optimizer.opt_state``, or the
      ``nnx.Optimizer`` itself; not traced (call it outside ``jax.jit``).
    base_learning_rate: the rate given to the base optimizer (e.g.
      ``optax.sgd(base_learning_rate, momentum=0.9)``), or the Optax
      schedule given to it, read at the most recent update's step as
      :func:`lrtransfer.effective_learning_rate` reads it.

  Returns:
    ``{group: rate}`` as Python floats rounded to float32 precision (7
    significant digits), groups sorted, levels input side first.

  Raises:
    ValueError: ``base_learning_rate`` is not a finite number or a
      schedule, the state is traced (under ``jax.jit``) or holds several
      runs, or a schedule meets a state without a step counter.

  Warns:
    UserWarning: a strategy sits before a transformation that normalises
      its input (Adam, RMSProp, Lion, ...).

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust(),
                     lrtransfer.layerwise_scale(0.5, depths=depths))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    lrtransfer.learning_rates(optimizer.opt_state, 0.05)
    # {'level 0': 0.0125, 'level 1': 0.025, 'level 2': 0.05}
  """
  state = state_finder.pure_state(state)
  if callable(base_learning_rate):
    step = np.maximum(_concrete(inspection.update_count(state), "scalar") - 1,
                      0)
    base_learning_rate = float(_concrete(base_learning_rate(step), "scalar"))
  validation.check_finite("base_learning_rate", base_learning_rate)
  if validation.is_jax_value(base_learning_rate):
    base_learning_rate = _concrete(base_learning_rate, "scalar")
  placement.warn_if_normalised(state, "learning_rates")
  partition_paths = [path for path, _ in state_finder.find_states(
      state, optax.transforms.PartitionState)]

  def located(kind: type) -> list:
    return [(inspection.group_of(path, partition_paths), found)
            for path, found in state_finder.find_states(state, kind)]

  strategies, groups = inspection.located_strategies(state)
  layerwise = located(LayerwiseScaleState)
  unfreezing = located(UnfreezeState)
  rates: dict[str, float] = {}
  for group in inspection.parameter_groups(groups):
    label = "/".join(group)
    scale = _concrete(inspection.product_of_scales(
        _acting(strategies, group)), "scalar")
    rate = float(base_learning_rate) * float(scale)
    factors = [_concrete(s.level_factors, "vector")
               for s in _acting(layerwise, group)]
    opening = _acting(unfreezing, group)
    if not factors and not opening:
      rates[label or "all"] = _float32_digits(rate)
      continue
    num_levels = (factors[0].shape[-1] if factors
                  else int(_concrete(opening[0].num_levels, "scalar")))
    per_level = np.full([num_levels], rate, np.float64)
    for level_factors in factors:
      if level_factors.ndim != 1:
        _concrete(level_factors[..., 0], "scalar")  # stacked runs: refused
      per_level = per_level * level_factors
    from_top = np.arange(num_levels - 1, -1, -1)
    for unfreeze_state in opening:
      per_level = np.where(
          from_top < _concrete(unfreeze_state.num_open, "scalar"),
          per_level, 0.0)
    for level in range(num_levels):
      key = f"level {level}"
      rates[f"{label}/{key}" if label else key] = _float32_digits(
          per_level[level])
  return rates
