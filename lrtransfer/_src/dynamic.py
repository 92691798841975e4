"""Dynamic adjustment: the metric moves the rate, progress moves its decay."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import plateau as plateau_lib
from lrtransfer._src import raising
from lrtransfer._src import validation
from lrtransfer._src.measurement import read_measurement
from lrtransfer._src.scaling import clip_scale, scale_updates


class DynamicState(NamedTuple):
  """State of :func:`dynamic`."""
  scale: jax.Array  # float32 scalar in [min_scale, max_scale]
  count: jax.Array  # int32 scalar, updates done so far (saturating)
  decay_rate: jax.Array  # float32 scalar, log-decay per step last applied
  plateau: plateau_lib.PlateauState  # evaluation bookkeeping
  guard: raising.RaiseGuardState  # guarded raises: train trend, undo target


def dynamic(total_steps: int, every_steps: int = 1, *, rate: float = 0.99,
            progress_gain: float = 1.0, stall_gain: float = 1.0,
            improving_gain: float = 0.0,
            monitor: Optional[str] = None, mode: Optional[str] = None,
            train_monitor: Optional[str] = "train_loss", patience: int = 3,
            cooldown: int = 1, threshold: float = 1e-4,
            threshold_mode: str = "rel", plateau_factor: float = 1.5,
            improve_factor: float = 1.0, overfit_factor: float = 1.0,
            rise_factor: float = 0.5,
            slow_progress: float = 0.1, remember_brake: bool = True,
            brake_patience: int = 1, slow_patience: int = 1,
            max_raises: int = 2, train_threshold: float = 0.01,
            train_rise: float = 0.25, fitted_ratio: float = 0.05,
            target: Optional[float] = None, min_scale: float = 0.01,
            max_scale: float = 10.0) -> optax.GradientTransformationExtraArgs:
  """Combines performance and progress: a decay whose rate itself adapts.

  At update ``t`` (``t`` updates done before it), with the evaluation rules
  of :func:`adjust` (threshold, patience, cooldown, target, NaN policy, and
  its guarded plateau action ``A``: a raise only when the training value
  stalls too, never on over-fitting, undone if the next evaluation is not
  better, at most ``max_raises`` between good evaluations)::

    p_t      = min(t / total_steps, 1)                  progress of the budget
    lambda_0 = -ln(rate) / every_steps                  base log-decay per step
    lambda_t = lambda_0 * (1 + progress_gain * p_t)     progress speeds decay
                        * (stall_gain if num_bad_t > 0  a stalling metric
                           else improving_gain)          decays, an improving
                                                         one (by default) not
    f_t      = (improve_factor * G  if a new evaluation is good
                A                 if it completes a plateau
                1                 otherwise (and between evaluations)) * B
    scale_t  = clip(scale_{t-1} * f_t * exp(-lambda_t), min_scale, max_scale)
    scale_t  = min(scale_t, u_t)   if a raise failed at t (undo), where
    u_t      = the scale the raise started from, decayed since by the same
               exp(-lambda) factors (the scale as if it had not raised)
    scale_t  = min(scale_t, max(c_t, scale_t without the raise))  if it
               raises at t, c_t the ceiling the last brake left (+inf
               before any; remember_brake)

  with ``scale_{-1} = 1``, ``num_bad_t`` the count of consecutive bad
  evaluations after the measurement seen at ``t``, and ``A``, ``G`` (the
  slow-progress raise) and ``B`` (the brake on a rising training loss) as in
  :func:`adjust`. The decay waits while the metric improves
  (``improving_gain=0``): a run whose validation keeps improving is not
  done with its rate, and decaying it anyway cost 9 points against the
  constant rate at a too-low base rate on an unseen task
  (``benchmarks/robustness.py``, issue 9). The metric moves the
  learning rate (``f_t``: a plateau while training stalls too raises it to
  move away from the source solution; a plateau while training improves is
  over-fitting and holds or lowers it, ``overfit_factor``), while progress
  and the metric's trend move the decay rate ``lambda_t``: the rate decays
  only while the metric stalls (by default; ``improving_gain > 0`` decays it
  always, ``stall_gain > 1`` faster on a stall), faster late in the budget,
  keeping what the
  source and the target have taught (the budget-aware decay of Li et al.,
  "Budgeted Training": a schedule that reaches small rates by the end of the
  budget). The upward factor is subject to the same undo and bound as in
  :func:`adjust`, decay or not, so the decay cannot hide a failed raise.

  Args:
    total_steps: the training budget in updates (for the progress ``p_t``).
    every_steps: updates per decay period (e.g. per epoch).
    rate: decay per period at the start, in (0, 1].
    progress_gain: how much the decay speeds up by the end of the budget
      (>= 0; the end rate is ``rate ** (1 + progress_gain)`` per period).
    stall_gain: decay multiplier while the metric is not improving (> 1
      speeds it up; the default 1 decays at the budget's rate).
    improving_gain: decay multiplier while the metric improves, >= 0 (0: no
      decay then; 1: the decay of the budget alone).
    monitor, mode, train_monitor, patience, cooldown, threshold,
      threshold_mode, overfit_factor, rise_factor, slow_progress,
      max_raises, train_threshold, train_rise, fitted_ratio, target: as in
      :func:`adjust`.
    slow_patience: as in :func:`adjust` (1 by default in both; 2 was not
      better for ``dynamic`` on the tuning tasks, sessions 5 and 6).
    remember_brake: as in :func:`adjust`, but True by default here.
    brake_patience: as in :func:`adjust`, but 1 by default here: the brake
      cuts when the training loss is high at two evaluations in a row and
      not falling back (chosen on the benchmarks' tuning tasks, session 5:
      0 cost up to 3 points against the constant rate there, 1 at most
      0.4).
    plateau_factor: multiplier on a plateau (>1 raises, guarded).
    improve_factor: multiplier on each good evaluation.
    min_scale, max_scale: bounds of the scale.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` reading ``metric``.

  Example::

    steps = epochs * steps_per_epoch
    tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                     lrtransfer.dynamic(steps, every_steps=steps_per_epoch))
    metric = lrtransfer.measurement(count=epoch + 1, monitor="val_loss",
                                    val_loss=val_loss, train_loss=train_loss)
    updates, state = tx.update(grads, state, params, metric=metric)

  References:
    Li, Yumer, Ramanan, "Budgeted Training: Rethinking Deep Neural Network
    Training Under Resource Constraints", ICLR 2020,
    https://arxiv.org/abs/1905.04753
    Smith, "Cyclical Learning Rates for Training Neural Networks" (budget-
    aware schedules), 2017, https://arxiv.org/abs/1506.01186
    Battiti 1989 (undo), Baydin et al. 2018 (raise on training evidence),
    Prodigy / DoG (bounded growth), GreedyLR: see :func:`adjust`.
  """
  rule = plateau_lib.validated_rule(mode, threshold, threshold_mode, patience,
                                    cooldown, target, monitor)
  raise_rule = raising.validated_raise_rule(
      train_monitor, train_threshold, train_rise, fitted_ratio, patience,
      max_raises, plateau_factor, overfit_factor, rise_factor,
      slow_progress, remember_brake, brake_patience,
      slow_patience)
  validation.check_int("total_steps", total_steps, 1)
  validation.check_int("every_steps", every_steps, 1)
  validation.check_in_interval("rate", rate, 0.0, 1.0, low_open=True)
  validation.check_non_negative("progress_gain", progress_gain)
  validation.check_positive("stall_gain", stall_gain)
  validation.check_non_negative("improving_gain", improving_gain)
  validation.check_positive("improve_factor", improve_factor)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  if (validation.all_concrete(min_scale, max_scale)
      and not min_scale <= 1.0 <= max_scale):
    raise ValueError(
        "dynamic starts at scale 1, so min_scale <= 1 <= max_scale is needed,"
        f" got min_scale={min_scale!r}, max_scale={max_scale!r}")
  # jnp, not math: under optax.inject_hyperparams `rate` may be traced.
  base_log_decay = -jnp.log(jnp.float32(rate)) / every_steps

  def init_fn(params):
    del params
    scale = jnp.ones([], jnp.float32)
    return DynamicState(scale, jnp.zeros([], jnp.int32),
                        jnp.asarray(base_log_decay, jnp.float32),
                        plateau_lib.init_plateau(rule),
                        raising.init_guard(scale))

  def update_fn(updates, state, params=None, **extra_args):
    del params
    metric = read_measurement(extra_args, "lrtransfer.dynamic")
    judged, verdict = plateau_lib.observe(rule, state.plateau, metric,
                                          "lrtransfer.dynamic")
    guard, step = raising.guard_step(raise_rule, state.guard, verdict,
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
    new_state = DynamicState(scale, optax.safe_increment(state.count),
                             log_decay, judged, guard)
    return scale_updates(updates, scale), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
