"""Judging a new evaluation: improvement, patience, cooldown, target.

Shared by :func:`lrtransfer.adjust` and :func:`lrtransfer.dynamic`. The rules
follow PyTorch's ``ReduceLROnPlateau`` (so that the reduce-only configuration
gives PyTorch's learning rates), differing where PyTorch's rule is wrong or
awkward:

* the relative threshold is taken of ``|best|``, so a worse value never counts
  as an improvement when the metric is negative (PyTorch and Optax compare
  with ``best * (1 - threshold)``, which is wrong below zero);
* ``mode="max"`` works directly (the metric is negated internally);
* the judged value is one of the measurement's named values: the strategy's
  ``monitor``/``mode``, or the measurement's own when those are None;
* a non-finite metric (NaN, +-inf) is a bad evaluation and never becomes best.

With the metric turned into a quantity to minimise, ``v = sign * value``, an
evaluation is::

  improved  = isfinite(v) and (best is unset or v < best - margin)
  margin    = threshold * |best|   (threshold_mode="rel")
            = threshold            (threshold_mode="abs")
  good      = improved and (target is None or v <= sign * target)

then, exactly as in PyTorch::

  num_bad   = 0 if good else num_bad + 1
  if cooldown_left > 0: cooldown_left -= 1; num_bad = 0
  plateau   = num_bad > patience
  if plateau: cooldown_left = cooldown; num_bad = 0

so with ``patience = p`` the plateau action fires at the (p+1)-th consecutive
bad evaluation (PyTorch's convention; Optax's ``reduce_on_plateau`` fires at
the p-th).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import validation
from lrtransfer._src.measurement import MODES, Measurement, monitored

THRESHOLD_MODES = ("rel", "abs")


class PlateauState(NamedTuple):
  """Bookkeeping of evaluations; all metric values in float32."""
  # float32 scalar, best value in minimisation space (sign * value; a "max"
  # metric is stored negated), +inf unset: init need not know the mode.
  best: jax.Array
  num_bad: jax.Array  # int32 scalar, consecutive bad evaluations (saturating)
  cooldown_left: jax.Array  # int32 scalar, evaluations left in cooldown
  last_count: jax.Array  # int32 scalar, count of the last measurement seen
  # float32 scalar, that measurement's judged value in minimisation space
  # (NaN: none yet)
  last_value: jax.Array


class Verdict(NamedTuple):
  """What one update learnt from its measurement (all False when not new)."""
  is_new: jax.Array  # bool scalar, a measurement with a larger count arrived
  good: jax.Array  # bool scalar, improved (and met the target, if any)
  plateau: jax.Array  # bool scalar, the plateau action fires now


class PlateauRule(NamedTuple):
  """Static configuration of the judgement, built by :func:`validated_rule`
  from a strategy's arguments (which hold the defaults)."""
  mode: Optional[str]  # None: the measurement's mode
  monitor: Optional[str]  # None: the measurement's monitor
  threshold: float  # least change that counts as an improvement
  threshold_mode: str  # "rel" or "abs"
  patience: int  # bad evaluations tolerated
  cooldown: int  # evaluations not counted after an action
  target: Optional[float]  # a value a good evaluation must reach, or None


def validated_rule(mode: Optional[str], threshold: float,
                   threshold_mode: str, patience: int, cooldown: int,
                   target: Optional[float], monitor: Optional[str] = None
                   ) -> PlateauRule:
  """Checks the rule's hyperparameters eagerly (ValueError naming them)."""
  if mode is not None:
    validation.check_choice("mode", mode, MODES)
  if monitor is not None and not isinstance(monitor, str):
    raise ValueError(f"monitor must be a name (str) or None, got "
                     f"monitor={monitor!r}")
  validation.check_choice("threshold_mode", threshold_mode, THRESHOLD_MODES)
  validation.check_non_negative("threshold", threshold)
  validation.check_int("patience", patience, 0)
  validation.check_int("cooldown", cooldown, 0)
  if target is not None:
    validation.check_finite("target", target)
  return PlateauRule(mode, monitor, threshold, threshold_mode, patience,
                     cooldown, target)


def init_plateau(rule: PlateauRule) -> PlateauState:
  """The state before any evaluation: nothing judged, best unset."""
  del rule  # the state is the same whatever the rule
  return PlateauState(
      best=jnp.asarray(jnp.inf, jnp.float32),
      num_bad=jnp.zeros([], jnp.int32),
      cooldown_left=jnp.zeros([], jnp.int32),
      last_count=jnp.zeros([], jnp.int32),
      last_value=jnp.asarray(jnp.nan, jnp.float32),
  )


def observe(rule: PlateauRule, state: PlateauState, metric: Measurement,
            who: str = "lrtransfer strategy"
            ) -> tuple[PlateauState, Verdict]:
  """Judges ``metric`` if it is new; otherwise returns ``state`` unchanged."""
  value, sign = monitored(metric, rule.monitor, rule.mode, who)
  sign = jnp.float32(sign)
  v = (sign * value).astype(jnp.float32)
  best = state.best  # minimisation space; +inf when unset
  finite = jnp.isfinite(v)
  if rule.threshold_mode == "rel":
    margin = rule.threshold * jnp.abs(best)
  else:
    margin = jnp.float32(rule.threshold)
  # `best == inf` must be tested apart: inf - margin is NaN in "rel" mode.
  improved = finite & ((best == jnp.inf) | (v < best - margin))
  good = improved
  if rule.target is not None:
    good = good & (v <= sign * jnp.float32(rule.target))

  num_bad = jnp.where(good, 0, optax.safe_increment(state.num_bad))
  in_cooldown = state.cooldown_left > 0
  cooldown_left = jnp.where(in_cooldown, state.cooldown_left - 1,
                            state.cooldown_left)
  num_bad = jnp.where(in_cooldown, 0, num_bad)
  plateau = num_bad > rule.patience
  cooldown_left = jnp.where(plateau, rule.cooldown, cooldown_left)
  num_bad = jnp.where(plateau, 0, num_bad)

  judged = PlateauState(
      best=jnp.where(improved, v, state.best).astype(jnp.float32),
      num_bad=num_bad.astype(jnp.int32),
      cooldown_left=cooldown_left.astype(jnp.int32),
      last_count=metric.count,
      last_value=v,
  )
  is_new = metric.count > state.last_count
  new_state = jax.tree.map(lambda n, o: jnp.where(is_new, n, o), judged, state)
  return new_state, Verdict(is_new, is_new & good, is_new & plateau)
