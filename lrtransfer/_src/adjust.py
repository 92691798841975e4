"""Performance-based adjustment of the learning rate from a validation metric."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import plateau as plateau_lib
from lrtransfer._src import raising, rules, validation
from lrtransfer._src.measurement import (
  Measurement,
  read_measurement,
)
from lrtransfer._src.rules import AdjustRule
from lrtransfer._src.scaling import clip_scale, scale_updates


class AdjustState(NamedTuple):
  """State of :func:`adjust`."""
  scale: jax.Array  # float32 scalar in [min_scale, max_scale]
  plateau: plateau_lib.PlateauState  # evaluation bookkeeping (float32/int32)
  guard: raising.RaiseGuardState  # guarded raises: train trend, undo target


def adjust(*, monitor: Optional[str] = None, mode: Optional[str] = None,
           patience: int = rules.PATIENCE, cooldown: int = rules.COOLDOWN,
           raise_factor: float = rules.RAISE_FACTOR,
           lower_factor: float = rules.LOWER_FACTOR,
           min_scale: float = 0.05, max_scale: float = rules.MAX_SCALE,
           rule: AdjustRule = AdjustRule()
           ) -> optax.GradientTransformationExtraArgs:
  """Scales the learning rate by how the target task goes on validation.

  Once per new evaluation the scale is multiplied by:

  ================================================  =======================
  the new evaluation                                factor
  ================================================  =======================
  improved, training improved < rule.slow_progress  ``raise_factor``
  improved otherwise                                ``rule.improve_factor``
  ``patience + 1``-th bad, training stalls too      ``raise_factor``
  ``patience + 1``-th bad, training improves        ``lower_factor``
  training value > rule.train_rise above its best   ``rule.rise_factor``
  ================================================  =======================

  A plateau with training stalled too is failing to fit; with training
  improving, over-fitting. A raise is undone if the next evaluation is not
  better; NaN is bad, never best. At an improved evaluation the brake needs
  training above its first value or not finite (rule.brake_while_improving).

  Args:
    monitor, mode: the value to judge, "min"/"max"; None: the measurement's.
    patience: bad evaluations tolerated; acts at the ``patience + 1``-th.
    cooldown: evaluations after an action whose badness is not counted.
    raise_factor: multiplier of a raise, >= 1 (1: never raise).
    lower_factor: multiplier on a plateau that is not raised, in (0, 1].
    min_scale, max_scale: bounds of the scale, ``0 <= min <= max``.
    rule: the finer constants, an :class:`lrtransfer.AdjustRule`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())
    m = lrtransfer.measurement(count=epoch + 1, monitor="val_loss",
                               val_loss=val_loss, train_loss=train_loss)

  References:
    Battiti, "Accelerated backpropagation learning: two optimization
    methods", Complex Systems 3, 1989 (the brake and the undo).
  """
  rules.check_rule(rule, AdjustRule, "lrtransfer.adjust")
  judge = plateau_lib.validated_rule(mode, rule.threshold,
                                     rule.threshold_mode, patience, cooldown,
                                     rule.target, monitor)
  rules.check_factors(raise_factor, lower_factor)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  init_scale, improve_factor, eps = (rule.init_scale, rule.improve_factor,
                                     rule.eps)
  if (validation.all_concrete(init_scale, min_scale, max_scale)
      and not min_scale <= init_scale <= max_scale):
    raise ValueError(
        f"init_scale must be within [min_scale, max_scale] = [{min_scale}, "
        f"{max_scale}], got init_scale={init_scale!r}")

  def init_fn(params: optax.Params) -> AdjustState:
    del params
    scale = jnp.asarray(init_scale, jnp.float32)
    return AdjustState(scale, plateau_lib.init_plateau(judge),
                       raising.init_guard(scale))

  def update_fn(updates: optax.Updates, state: AdjustState,
                params: Optional[optax.Params] = None, *,
                metric: Optional[Measurement] = None, **extra_args: Any
                ) -> tuple[optax.Updates, AdjustState]:
    del params, extra_args
    metric = read_measurement(
        metric, "lrtransfer.adjust (or reduce_on_plateau/bold_driver, its "
        "configurations)")
    judged, verdict = plateau_lib.observe(judge, state.plateau, metric,
                                          "lrtransfer.adjust")
    guard, step = raising.guard_step(rule, patience, raise_factor,
                                     lower_factor, state.guard, verdict,
                                     judged.last_value, metric)
    improve = jnp.where(verdict.good, improve_factor, 1.0)
    scale = clip_scale(state.scale * (improve * step.plateau_factor),
                       min_scale, max_scale)
    without_raise = clip_scale(state.scale * improve, min_scale, max_scale)
    scale, guard = raising.finish(guard, step, scale, without_raise)
    scale = jnp.where(jnp.abs(scale - state.scale) > eps, scale, state.scale)
    return scale_updates(updates, scale), AdjustState(scale, judged, guard)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def reduce_on_plateau(*, factor: float = 0.1, patience: int = 10,
                      cooldown: int = 0, threshold: float = 1e-4,
                      threshold_mode: str = "rel", mode: Optional[str] = None,
                      monitor: Optional[str] = None,
                      min_scale: float = 0.0, eps: float = 0.0
                      ) -> optax.GradientTransformationExtraArgs:
  """Reduce-on-plateau (PyTorch's rule) as an :func:`adjust` configuration.

  Once per new evaluation, judged as PyTorch's ``ReduceLROnPlateau`` judges
  it (improved: better than the best by ``threshold``, relative to
  ``|best|`` or absolute), with its defaults:

  ================================  ==================================
  the new evaluation                scale
  ================================  ==================================
  ``patience + 1``-th bad in a row  ``max(min_scale, scale * factor)``
  anything else (or in cooldown)    unchanged
  ================================  ==================================

  PyTorch's learning rates are matched for non-negative metrics with
  ``min_scale = min_lr / base_lr`` and ``eps = 1e-8 / base_lr``; unlike
  PyTorch's rule, a negative metric is judged right, ``mode="max"`` needs
  no negation and a NaN metric is bad, never best. It never raises.

  Args:
    factor: multiplier on a plateau, in (0, 1).
    patience: bad evaluations tolerated; acts at the ``patience + 1``-th.
    cooldown: evaluations after an action whose badness is not counted.
    threshold: least change that counts as an improvement, >= 0.
    threshold_mode: "rel" (``threshold * |best|``) or "abs".
    mode: "min" or "max"; None: the measurement's.
    monitor: the measurement's value to judge; None: the measurement's own.
    min_scale: floor of the scale, in [0, 1].
    eps: changes of the scale no larger than this are skipped, >= 0.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.

  Example::

    tx = optax.chain(optax.sgd(0.05),
                     lrtransfer.reduce_on_plateau(factor=0.5, patience=2))

  References:
    PyTorch ``torch.optim.lr_scheduler.ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
  """
  validation.check_in_interval("factor", factor, 0.0, 1.0, low_open=True,
                               high_open=True)
  validation.check_in_interval("min_scale", min_scale, 0.0, 1.0)
  return adjust(monitor=monitor, mode=mode, patience=patience,
                cooldown=cooldown, raise_factor=1.0, lower_factor=factor,
                min_scale=min_scale, max_scale=1.0,
                rule=AdjustRule(train_monitor=None, threshold=threshold,
                                threshold_mode=threshold_mode,
                                rise_factor=1.0, eps=eps))


def bold_driver(*, increase: float = 1.05, decrease: float = 0.5,
                mode: Optional[str] = None, monitor: Optional[str] = None,
                min_scale: float = 0.1, max_scale: float = 10.0
                ) -> optax.GradientTransformationExtraArgs:
  """The "bold driver" rule (Battiti 1989) as an :func:`adjust` configuration.

  After each new evaluation, starting at ``clip(1, min_scale, max_scale)``:

  =======================================  ================================
  the new evaluation                       scale
  =======================================  ================================
  better than the best so far              ``min(max_scale, scale *
                                           increase)``
  otherwise (NaN included)                 ``max(min_scale, scale *
                                           decrease)``
  =======================================  ================================

  The reference is the best evaluation, as in Battiti's rule, where a step
  that raised the error is rejected, so the weights kept are always the
  best; a transformation cannot take weights back, so the rejection is left
  out. Comparing with the previous evaluation (Vogl et al.'s variant) would
  reward recovering from a bad step by raising the rate again. The floor, a
  tenth of the base rate, keeps the rule from cutting the rate to nothing on
  a noisy validation curve (``python benchmarks/tune_defaults.py``).

  Args:
    increase: multiplier after an improvement, >= 1.
    decrease: multiplier otherwise, in (0, 1].
    mode: "min" or "max"; None: the measurement's.
    monitor: the measurement's value to judge; None: the measurement's own.
    min_scale: lower bound of the scale, >= 0.
    max_scale: upper bound of the scale, >= min_scale.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.

  Example::

    tx = optax.chain(optax.sgd(0.05), lrtransfer.bold_driver())

  References:
    Battiti, "Accelerated backpropagation learning: two optimization
    methods", Complex Systems 3, 1989. Vogl et al., "Accelerating the
    convergence of the back-propagation method", Biol. Cybern. 59, 1988.
  """
  validation.check_finite("increase", increase)
  if validation.all_concrete(increase) and increase < 1:
    raise ValueError(f"increase must be >= 1, got increase={increase!r}")
  validation.check_in_interval("decrease", decrease, 0.0, 1.0, low_open=True)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  # jnp, not min/max: under optax.inject_hyperparams the bounds are traced.
  init_scale = jnp.clip(1.0, min_scale, max_scale)
  return adjust(monitor=monitor, mode=mode, patience=0, cooldown=0,
                raise_factor=1.0, lower_factor=decrease, min_scale=min_scale,
                max_scale=max_scale,
                rule=AdjustRule(train_monitor=None, improve_factor=increase,
                                rise_factor=1.0, init_scale=init_scale))
