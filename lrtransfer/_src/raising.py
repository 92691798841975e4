"""Guarded raises and the brake: move the rate only on training evidence.

Shared by :func:`lrtransfer.adjust` and :func:`lrtransfer.dynamic`. A rising
validation loss is read two ways: *under*-fitting (training stalls too: the
rate is too low or the model is stuck, so raise it) or *over*-fitting
(training keeps improving while validation worsens: the model fits its few
examples at the expense of what the source taught, so lower or hold). Only
the training loss can tell them apart, so a raise needs it; and a raise is a
bet that is checked at the next evaluation and undone if it lost. Per new
evaluation, with ``v`` the judged (monitored) value in minimisation space,
``tr`` the training value (``rule.train_monitor``), ``p`` the patience and
the other names fields of the rule (:class:`lrtransfer.AdjustRule`)::

  train_improved = isfinite(tr) and (tr < train_best - train_threshold *
                                     |train_best|   or train_best unset)
  train_num_bad  = 0 if train_improved else train_num_bad + 1
  not_fitted     = tr > fitted_ratio * train_first  (train_first: the first
                                                 finite training value; a
                                                 loss near zero has learnt
                                                 its examples)
  fails_to_fit   = isfinite(tr) and train_num_bad > p       (stalled too,
                   and tr <= train_best + train_rise * |train_best|
                                                 (not rising: diverging or
                                                 oscillating wants less)
                   and not_fitted
  slow           = 0 < train_last - tr < slow_progress * |train_last|
                   and not_fitted             (training improved since the
                                               previous evaluation, slowly)
  slow_run       = slow_run + 1 if slow else 0

  failed_raise   = a raise is pending and not v < raise_value
  may_raise      = raise_factor > 1 and not failed_raise and isfinite(v)
  raise_now      = may_raise and (
                     plateau and fails_to_fit and raises < max_raises
                     or good and slow_run >= slow_patience)  (the rate is
                                              too low: training stalls, or
                                              creeps while validation still
                                              improves)
  high           = train_best finite and
                   not tr <= train_best + train_rise * |train_best|
                   (NaN counts as high; train_best before this evaluation)
  high_run       = high_run + 1 if high else 0
  waited         = high_run > q and (q = 0 or not tr < train_last)
                   (q = brake_patience: a loss that stays high and is not
                   falling back by itself)
  rising         = train_best finite and (tr not finite or
                   (high and waited and not_fitted and
                    (tr > train_first or
                     not tr <= brake_level + train_rise * |brake_level|)))
                   (brake_level: the training value at the last brake,
                   unset (NaN) after an improvement: below where training
                   started, a cut answers one rise and a second cut needs
                   a further rise beyond it)
                   and not (brake_while_improving is False and good and
                            isfinite(tr) and not tr > train_first)
                   (a rise below the start while the monitored value
                   improves is noise: Dropout, few steps per epoch)
  factor         = raise_factor    if raise_now
                   lower_factor    if plateau and not raise_now (over-
                                   fitting, no training value, raises
                                   exhausted, or raise_factor = 1)
                   1               otherwise
                 * (rise_factor if rising else 1)        (the brake)
  after a failed raise: scale <- min(scale, pre_raise_scale)   (undo)
  after a raise:        scale <- min(scale, max(ceiling, scale without
                                the raise))      (no raise above the ceiling)
  after a brake:        ceiling <- min(ceiling, scale)   if remember_brake
                        (ceiling starts at +inf: the brake's memory)
                        brake_level <- tr if finite else unset
  after an improvement: brake_level <- unset
  raises         = 0 after a good evaluation, + 1 after a raise
  raise_value    = v if raise_now else unset (a raise is judged once)

Why the brake waits and counts: a training loss well above its best means
the rate is too high for the model now (Battiti's bold driver cuts the rate
whenever the training error rises; here only a rise of more than
``train_rise``, so minibatch noise does not brake). Two things look like a
too-high rate and are not. SGD-momentum's loss on a fresh head overshoots
and climbs for a few evaluations while its velocity decays, and a rate near
the edge of stability spikes the loss at the first steps and then settles by
itself (the "catapult" of Lewkowycz et al., 2020,
https://arxiv.org/abs/2003.02218). A brake judged against the best loss
alone would cut the first at every evaluation down to ``min_scale``. Hence:
below where training started, each cut answers one rise, and
``brake_patience`` waits for a high loss that is not falling back. A
diverging loss grows by more than that per evaluation and is cut every time.
A raise needs a training value that is not rising, so the two never meet.
With ``remember_brake`` no later raise takes the scale above where the last
brake left it (the growth of DoG/Prodigy-style estimates is likewise
monotone in what they have observed).

Without the training value in the measurement (a user feeding one number)
there is neither a raise nor a brake: the safe reading of a plateau one
cannot diagnose is to lower or hold. A metric that gets worse after every
raise leaves the scale above its pre-raise level for exactly one evaluation
per raise; at most ``max_raises`` plateau raises happen between two good
evaluations, and a slow-progress raise happens only at a good one.

What the brake and the raises are worth against a constant rate over base
rates 100x apart: ``python benchmarks/tune_defaults.py`` (tuning tasks,
validation) and ``python benchmarks/robustness.py`` (report tasks, test).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import validation
from lrtransfer._src.measurement import Measurement
from lrtransfer._src.plateau import Verdict
from lrtransfer._src.rules import AdjustRule


class RaiseGuardState(NamedTuple):
  """Bookkeeping of guarded raises; float32/int32 scalars."""
  train_best: jax.Array  # float32, best training value so far (+inf unset)
  train_first: jax.Array  # float32, first finite training value (NaN unset)
  # float32, training value of the previous evaluation (NaN unset)
  train_last: jax.Array
  # int32, evaluations in a row whose training value did not improve
  # (saturating)
  train_num_bad: jax.Array
  raises: jax.Array  # int32, raises since the last good evaluation
  # float32, judged value (minimisation space) of the evaluation that raised,
  # NaN when no raise waits for its check
  raise_value: jax.Array
  # float32, the scale the last raise would have left without its factor
  # (decayed along with the scale by dynamic); where an undo goes back to
  pre_raise_scale: jax.Array
  # float32, no raise takes the scale above this (+inf until a brake, with
  # remember_brake)
  ceiling: jax.Array
  # float32, training value at the last brake; a further brake needs a rise
  # beyond it (NaN: unset, after an improvement or before any brake)
  brake_level: jax.Array
  # int32, evaluations in a row whose training value was high (more than
  # train_rise above the best before it; saturating)
  high_run: jax.Array
  # int32, evaluations in a row with slow training progress (saturating)
  slow_run: jax.Array


def init_guard(scale: jax.typing.ArrayLike) -> RaiseGuardState:
  """The guard before any evaluation; an undo would go back to ``scale``."""
  return RaiseGuardState(
      train_best=jnp.asarray(jnp.inf, jnp.float32),
      train_first=jnp.asarray(jnp.nan, jnp.float32),
      train_last=jnp.asarray(jnp.nan, jnp.float32),
      train_num_bad=jnp.zeros([], jnp.int32),
      raises=jnp.zeros([], jnp.int32),
      raise_value=jnp.asarray(jnp.nan, jnp.float32),
      pre_raise_scale=jnp.asarray(scale, jnp.float32),
      ceiling=jnp.asarray(jnp.inf, jnp.float32),
      brake_level=jnp.asarray(jnp.nan, jnp.float32),
      high_run=jnp.zeros([], jnp.int32),
      slow_run=jnp.zeros([], jnp.int32))


class GuardedStep(NamedTuple):
  """What the guard decided at one update."""
  plateau_factor: jax.Array  # float32, the plateau action's factor (1: none)
  undo: jax.Array  # bool, a raise failed: cap the scale at pre_raise_scale
  raised: jax.Array  # bool, this update raises
  braked: jax.Array  # bool, this update brakes and remembers it (ceiling)


def guard_step(rule: AdjustRule, patience: jax.typing.ArrayLike,
               raise_factor: jax.typing.ArrayLike,
               lower_factor: jax.typing.ArrayLike,
               guard: RaiseGuardState, verdict: Verdict,
               judged_value: jax.Array, metric: Measurement
               ) -> tuple[RaiseGuardState, GuardedStep]:
  """The guard's decision at an update (no-op unless ``verdict.is_new``).

  ``rule`` holds the finer constants, ``patience``, ``raise_factor`` and
  ``lower_factor`` the strategy's arguments (Python numbers, or arrays under
  ``optax.inject_hyperparams``). ``judged_value`` is the monitored value in
  minimisation space. The returned state's ``pre_raise_scale`` is left for
  the caller to set (:func:`finish`), since only the caller knows the scale
  without the raise.
  """
  v = judged_value
  has_train = (rule.train_monitor is not None
               and rule.train_monitor in metric.values)
  # Only where the rule reads the training value: a raise or a brake.
  reads_train = not (
      validation.all_concrete(raise_factor, rule.rise_factor)
      and raise_factor <= 1 and rule.rise_factor >= 1)
  if (rule.train_monitor is not None and not has_train and metric.values
      and reads_train):
    # Trace time, once per compiled structure: the one silent way to get a
    # constant rate from adjust (a user of ReduceLROnPlateau feeds one
    # number). A measurement with no values (before the first evaluation)
    # says nothing about the ones that follow.
    warnings.warn(
        f"adjust/dynamic: the measurement carries no {rule.train_monitor!r} "
        f"(it has {sorted(metric.values)}), so the brake and every raise "
        "are off and a plateau only applies lower_factor (1 by default: "
        "the rate is held). Pass the training loss, e.g. lrtransfer."
        f"measurement(count=k, monitor=..., {rule.train_monitor}=...), or "
        "rule=lrtransfer.AdjustRule(train_monitor=None) (or DynamicRule) to "
        "say that none will come.", UserWarning,
        stacklevel=2)
  if has_train:
    tr = metric.values[rule.train_monitor].astype(jnp.float32)
    margin = rule.train_threshold * jnp.abs(guard.train_best)
    # `train_best == inf` apart: inf - inf * threshold is NaN.
    train_improved = jnp.isfinite(tr) & (
        (guard.train_best == jnp.inf) | (tr < guard.train_best - margin))
    train_best = jnp.where(train_improved, tr, guard.train_best)
    train_num_bad = jnp.where(train_improved, 0,
                              optax.safe_increment(guard.train_num_bad))
    train_first = jnp.where(jnp.isnan(guard.train_first) & jnp.isfinite(tr),
                            tr, guard.train_first)
    not_rising = tr <= train_best + rule.train_rise * jnp.abs(train_best)
    not_fitted = tr > rule.fitted_ratio * train_first
    fails_to_fit = (jnp.isfinite(tr) & (train_num_bad > patience)
                    & not_rising & not_fitted)
    # The brake, judged against the best before this evaluation (a rising
    # value never improves it), only once a finite best exists, and not
    # where the training set is fitted (a loss near zero moves by large
    # relative amounts harmlessly). A loss that is not finite brakes at
    # once; a finite one must also
    # - stay high for more than brake_patience evaluations in a row and,
    #   with a patience, not be falling back by itself (a catapult at the
    #   start of training recovers unaided);
    # - be above where training started, or rise by train_rise beyond the
    #   level that prompted the last brake (a cut answers one rise; the
    #   momentum overshoot of a fresh head climbs for a few evaluations).
    # NaN comparisons are False, so the negated ones count NaN as high.
    # `high` is `not_rising` against the best before this evaluation: the
    # two bests differ only where tr improved it, and there neither holds.
    best, level = guard.train_best, guard.brake_level
    high = jnp.isfinite(best) & ~not_rising
    high_run = jnp.where(high, optax.safe_increment(guard.high_run), 0)
    waited = (high_run > rule.brake_patience) & (
        (jnp.asarray(rule.brake_patience) == 0) | ~(tr < guard.train_last))
    above_start = tr > train_first
    beyond_last_brake = ~(tr <= level + rule.train_rise * jnp.abs(level))
    rising = jnp.isfinite(best) & (
        ~jnp.isfinite(tr)
        | (high & waited & (above_start | beyond_last_brake) & not_fitted))
    if not rule.brake_while_improving:
      # The monitored value improved: a finite training loss that is still
      # below where training started is read as noise (Dropout, few steps
      # per epoch), not a rate too high. Above the start it is divergence,
      # which can drag validation along only for a while (a too-high rate
      # on a small tabular task improves validation from chance as it
      # climbs), so it still brakes.
      rising = rising & ~(verdict.good & jnp.isfinite(tr) & ~above_start)
    # Slow progress: training improved since the previous evaluation, but by
    # less than slow_progress of it (NaN comparisons are False).
    progress = guard.train_last - tr
    slow = ((progress > 0) & (progress < rule.slow_progress
                              * jnp.abs(guard.train_last))
            & not_fitted)
    slow_run = jnp.where(slow, optax.safe_increment(guard.slow_run), 0)
    train_last = tr
    brake_level = jnp.where(
        rising & jnp.isfinite(tr), tr,
        jnp.where(rising | train_improved, jnp.nan, guard.brake_level))
  else:
    brake_level, high_run = guard.brake_level, guard.high_run
    slow_run = guard.slow_run
    train_best, train_num_bad = guard.train_best, guard.train_num_bad
    train_first = guard.train_first
    fails_to_fit = jnp.zeros([], bool)
    rising = jnp.zeros([], bool)
    train_last = guard.train_last

  is_new = verdict.is_new
  pending = ~jnp.isnan(guard.raise_value)
  failed = is_new & pending & ~(v < guard.raise_value)
  raising_rule = jnp.asarray(raise_factor) > 1
  may_raise = raising_rule & ~failed & jnp.isfinite(v)
  raise_now = (verdict.plateau & fails_to_fit & may_raise
               & (guard.raises < rule.max_raises))
  # A good evaluation after slow training progress: the rate is too low.
  # Good and plateau never meet, so this is a second, exclusive trigger.
  grow_now = verdict.good & (slow_run >= rule.slow_patience) & may_raise
  factor = jnp.where(verdict.plateau,
                     jnp.where(raise_now, raise_factor, lower_factor),
                     jnp.where(grow_now, raise_factor, 1.0))
  raise_now = raise_now | grow_now
  # A raise needs a training value that is not rising, so the brake and a
  # raise never meet and the brake can ride in the same factor.
  brakes = is_new & rising
  factor = (factor * jnp.where(brakes, rule.rise_factor, 1.0)
            ).astype(jnp.float32)
  # Remembered only where the brake is on and its memory asked for.
  braked = brakes & jnp.asarray(rule.remember_brake) & (
      jnp.asarray(rule.rise_factor) < 1)
  raises = jnp.where(verdict.good, 0,
                     guard.raises + raise_now.astype(jnp.int32))
  new_guard = RaiseGuardState(
      train_best=jnp.where(is_new, train_best, guard.train_best),
      train_first=jnp.where(is_new, train_first,
                            guard.train_first).astype(jnp.float32),
      train_last=jnp.where(is_new, train_last,
                           guard.train_last).astype(jnp.float32),
      train_num_bad=jnp.where(is_new, train_num_bad, guard.train_num_bad),
      raises=raises.astype(jnp.int32),
      raise_value=jnp.where(
          is_new, jnp.where(raise_now, v, jnp.nan),
          guard.raise_value).astype(jnp.float32),
      pre_raise_scale=guard.pre_raise_scale, ceiling=guard.ceiling,
      brake_level=jnp.where(is_new, brake_level,
                            guard.brake_level).astype(jnp.float32),
      high_run=jnp.where(is_new, high_run, guard.high_run).astype(jnp.int32),
      slow_run=jnp.where(is_new, slow_run, guard.slow_run).astype(jnp.int32))
  return new_guard, GuardedStep(factor, failed, raise_now, braked)


def finish(guard: RaiseGuardState, step: GuardedStep, scale: jax.Array,
           scale_without_raise: jax.Array, decay: jax.typing.ArrayLike = 1.0
           ) -> tuple[jax.Array, RaiseGuardState]:
  """Applies the undo and the ceiling; records the undo target and ceiling.

  Args:
    guard: the state from :func:`guard_step`.
    step: its decision.
    scale: the new scale, raise (or other plateau action) included, clipped.
    scale_without_raise: the new scale had the update not raised, clipped.
    decay: the time factor this update applied (``dynamic``'s decay), so the
      undo target follows the scale as it would have been without the raise.

  Returns:
    The final scale and guard state.
  """
  decayed_target = (guard.pre_raise_scale * decay).astype(jnp.float32)
  scale = jnp.where(step.undo, jnp.minimum(scale, decayed_target), scale)
  # A raise stops at the ceiling (never below where it started from).
  capped = jnp.minimum(scale, jnp.maximum(guard.ceiling, scale_without_raise))
  scale = jnp.where(step.raised, capped, scale)
  pre = jnp.where(step.raised, scale_without_raise, decayed_target)
  ceiling = jnp.where(step.braked, jnp.minimum(guard.ceiling, scale),
                      guard.ceiling)
  return scale.astype(jnp.float32), guard._replace(
      pre_raise_scale=pre.astype(jnp.float32),
      ceiling=ceiling.astype(jnp.float32))
