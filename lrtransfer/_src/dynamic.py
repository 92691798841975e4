"""Dynamic adjustment: the metric moves the rate, progress moves its decay."""

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
from lrtransfer._src.rules import DynamicRule
from lrtransfer._src.scaling import clip_scale, scale_updates


class DynamicState(NamedTuple):
  """State of :func:`dynamic`."""
  scale: jax.Array  # float32 scalar in [min_scale, max_scale]
  count: jax.Array  # int32 scalar, updates done so far (saturating)
  decay_rate: jax.Array  # float32 scalar, log-decay per step last applied
  plateau: plateau_lib.PlateauState  # evaluation bookkeeping
  guard: raising.RaiseGuardState  # guarded raises: train trend, undo target


def dynamic(total_steps: int, every_steps: int = 1, *, rate: float = 0.99,
            monitor: Optional[str] = None, mode: Optional[str] = None,
            patience: int = rules.PATIENCE, cooldown: int = rules.COOLDOWN,
            raise_factor: float = rules.RAISE_FACTOR,
            lower_factor: float = rules.LOWER_FACTOR,
            min_scale: float = 0.01, max_scale: float = rules.MAX_SCALE,
            rule: DynamicRule = DynamicRule()
            ) -> optax.GradientTransformationExtraArgs:
  """Combines performance and progress: a decay whose rate itself adapts.

  The metric moves the rate by the factor ``f_t`` of :func:`adjust` (a
  guarded raise, ``lower_factor``, the brake); progress moves the decay,
  with ``l0 = -ln(rate) / every_steps`` and ``g = rule``:

  ==========================  =================================================
  quantity at update ``t``    rule
  ==========================  =================================================
  progress                    ``p_t = min(t / total_steps, 1)``
  log-decay per step          ``l_t = l0 * (1 + g.progress_gain * p_t) * gain``
  ``gain``, metric stalling   ``g.stall_gain`` (1)
  ``gain``, metric improving  ``g.improving_gain`` (0: no decay)
  scale                       ``clip(scale * f_t * exp(-l_t), min, max)``
  ==========================  =================================================

  The decay waits while validation improves and speeds up late in the
  budget (budget-aware schedules); a failed raise is undone to where it
  started, decayed since (``python benchmarks/robustness.py``).

  Args:
    total_steps: the training budget in updates, for the progress ``p_t``.
    every_steps: updates per decay period (e.g. the steps of one epoch).
    rate: decay per period at the start, in (0, 1].
    monitor, mode, patience, cooldown: as in :func:`lrtransfer.adjust`.
    raise_factor, lower_factor, min_scale, max_scale: as in ``adjust``.
    rule: the finer constants, a :class:`lrtransfer.DynamicRule`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.dynamic(
        epochs * steps_per_epoch, every_steps=steps_per_epoch))

  References:
    Li, Yumer, Ramanan, "Budgeted Training: Rethinking Deep Neural Network
    Training Under Resource Constraints", ICLR 2020,
    https://arxiv.org/abs/1905.04753
  """
  rules.check_rule(rule, DynamicRule, "lrtransfer.dynamic")
  judge = plateau_lib.validated_rule(mode, rule.threshold,
                                     rule.threshold_mode, patience, cooldown,
                                     rule.target, monitor)
  rules.check_factors(raise_factor, lower_factor)
  validation.check_int("total_steps", total_steps, 1)
  validation.check_int("every_steps", every_steps, 1)
  validation.check_in_interval("rate", rate, 0.0, 1.0, low_open=True)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  init_scale, improve_factor, eps = (rule.init_scale, rule.improve_factor,
                                     rule.eps)
  progress_gain, stall_gain, improving_gain = (
      rule.progress_gain, rule.stall_gain, rule.improving_gain)
  if (validation.all_concrete(init_scale, min_scale, max_scale)
      and not min_scale <= init_scale <= max_scale):
    raise ValueError(
        f"dynamic starts at rule.init_scale={init_scale!r}, so min_scale <= "
        f"init_scale <= max_scale is needed, got min_scale={min_scale!r}, "
        f"max_scale={max_scale!r}")
  # jnp, not math: under optax.inject_hyperparams `rate` may be traced.
  base_log_decay = -jnp.log(jnp.float32(rate)) / every_steps

  def init_fn(params: optax.Params) -> DynamicState:
    del params
    scale = jnp.asarray(init_scale, jnp.float32)
    return DynamicState(scale, jnp.zeros([], jnp.int32),
                        jnp.asarray(base_log_decay, jnp.float32),
                        plateau_lib.init_plateau(judge),
                        raising.init_guard(scale))

  def update_fn(updates: optax.Updates, state: DynamicState,
                params: Optional[optax.Params] = None, *,
                metric: Optional[Measurement] = None, **extra_args: Any
                ) -> tuple[optax.Updates, DynamicState]:
    del params, extra_args
    metric = read_measurement(
        metric, "lrtransfer.dynamic")
    judged, verdict = plateau_lib.observe(judge, state.plateau, metric,
                                          "lrtransfer.dynamic")
    guard, step = raising.guard_step(rule, patience, raise_factor,
                                     lower_factor, state.guard, verdict,
                                     judged.last_value, metric)
    progress = jnp.minimum(state.count.astype(jnp.float32) / total_steps, 1.0)
    stalling = judged.num_bad > 0
    log_decay = (base_log_decay * (1.0 + progress_gain * progress)
                 * jnp.where(stalling, stall_gain, improving_gain)
                 ).astype(jnp.float32)
    decay = jnp.exp(-log_decay)
    improve = jnp.where(verdict.good, improve_factor, 1.0)
    # Factor and decay first: scale * factor could overflow to inf and then
    # meet a decay of 0 (inf * 0 = NaN); their product cannot.
    scale = clip_scale(state.scale * (improve * step.plateau_factor * decay),
                       min_scale, max_scale)
    without_raise = clip_scale(state.scale * (improve * decay), min_scale,
                               max_scale)
    scale, guard = raising.finish(guard, step, scale, without_raise, decay)
    scale = jnp.where(jnp.abs(scale - state.scale) > eps, scale, state.scale)
    new_state = DynamicState(scale, optax.safe_increment(state.count),
                             log_decay, judged, guard)
    return scale_updates(updates, scale), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
