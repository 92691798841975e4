"""Decay: the learning rate shrinks as target training goes on."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import validation
from lrtransfer._src.scaling import scale_updates


class ScheduleScaleState(NamedTuple):
  """State of :func:`schedule_scale`."""
  count: jax.Array  # int32 scalar, updates done so far (saturating)
  scale: jax.Array  # float32 scalar, the scale applied by the last update


def schedule_scale(schedule: optax.Schedule
                   ) -> optax.GradientTransformationExtraArgs:
  """Adapter: any Optax schedule as a chained, inspectable scale.

  ``updates_t = schedule(t) * updates_t`` with ``t`` the number of updates
  done before this one. Unlike ``optax.scale_by_schedule`` the applied scale is
  kept in the state, so :func:`lrtransfer.current_scale` can read it for logs.

  Under ``optax.inject_hyperparams`` the schedule must be static (Optax
  would otherwise take the callable for a schedule *of* a hyperparameter):
  ``optax.inject_hyperparams(lrtransfer.schedule_scale,
  static_args=("schedule",))(schedule)``.

  Args:
    schedule: a function of the step count, e.g.
      ``optax.cosine_decay_schedule(1.0, decay_steps=1000)``. Use schedules
      that start at 1.0 so the chained SGD's learning rate is the base rate.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example::

    tx = optax.chain(
        optax.sgd(0.05, momentum=0.9),
        lrtransfer.schedule_scale(optax.cosine_decay_schedule(1.0, 2000)))

  References:
    Optax schedules, https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts" (cosine), 2017, https://arxiv.org/abs/1608.03983
  """
  if not callable(schedule):
    raise ValueError(
        f"schedule must be a function of the step count, got schedule="
        f"{schedule!r}; e.g. optax.cosine_decay_schedule(1.0, 1000) or "
        "lrtransfer.decay_schedule(0.99, every_steps=100)")

  def init_fn(params: optax.Params) -> ScheduleScaleState:
    del params
    count = jnp.zeros([], jnp.int32)
    return ScheduleScaleState(count, jnp.asarray(schedule(count), jnp.float32))

  def update_fn(updates: optax.Updates, state: ScheduleScaleState,
                params: Optional[optax.Params] = None, **extra_args: Any
                ) -> tuple[optax.Updates, ScheduleScaleState]:
    del params, extra_args
    scale = jnp.asarray(schedule(state.count), jnp.float32)
    new_state = ScheduleScaleState(optax.safe_increment(state.count), scale)
    return scale_updates(updates, scale), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def decay_schedule(rate: float, every_steps: int, *, staircase: bool = False,
                   warmup_steps: int = 0, warmup_init: float = 0.0,
                   min_scale: float = 0.0) -> optax.Schedule:
  """The schedule behind :func:`decay`.

  Same arguments and formula as :func:`decay`; returns the schedule
  ``t -> scale(t)`` itself, e.g. to plot it or to use it with another
  optimizer. It computes what ``optax.join_schedules([optax.linear_schedule(
  warmup_init, 1, w), optax.exponential_decay(1, every_steps, rate,
  staircase=staircase, end_value=min_scale)], [w])`` computes, written with
  ``jnp`` so that every numeric argument may be a traced array (Optax's
  schedules test some of theirs with Python ``if``, which
  ``optax.inject_hyperparams`` cannot pass).

  Args:
    rate: factor per ``every_steps`` updates, in (0, 1].
    every_steps: updates per decay period (e.g. the steps of one epoch).
    staircase: decay in whole periods rather than smoothly.
    warmup_steps: length of a linear warmup from ``warmup_init`` to 1.
    warmup_init: scale at step 0 when warming up, in [0, 1].
    min_scale: floor of the scale, in [0, 1).

  Returns:
    An ``optax.Schedule``: the float32 scale after ``count`` updates.

  Raises:
    ValueError: a setting out of its range, naming it.

  Example::

    schedule = lrtransfer.decay_schedule(0.9, every_steps=10)
    schedule(20)  # about 0.81, float32
  """
  validation.check_in_interval("rate", rate, 0.0, 1.0, low_open=True)
  validation.check_int("every_steps", every_steps, 1)
  validation.check_int("warmup_steps", warmup_steps, 0)
  validation.check_in_interval("warmup_init", warmup_init, 0.0, 1.0)
  validation.check_in_interval("min_scale", min_scale, 0.0, 1.0,
                               high_open=True)
  if not isinstance(staircase, bool):
    raise ValueError(f"staircase must be a bool, got staircase={staircase!r}")

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.asarray(count, jnp.float32)
    w = jnp.asarray(warmup_steps, jnp.float32)
    periods = jnp.maximum(t - w, 0.0) / jnp.asarray(every_steps, jnp.float32)
    if staircase:
      periods = jnp.floor(periods)
    decayed = jnp.maximum(jnp.asarray(rate, jnp.float32) ** periods,
                          jnp.asarray(min_scale, jnp.float32))
    # max(w, 1): the warmup branch is unused when w == 0, but must not be NaN.
    warm = warmup_init + (1.0 - warmup_init) * t / jnp.maximum(w, 1.0)
    return jnp.where(t < w, warm, decayed).astype(jnp.float32)

  return schedule


def decay(rate: float = 0.99, every_steps: int = 1, *, staircase: bool = False,
          warmup_steps: int = 0, warmup_init: float = 0.0,
          min_scale: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """Exponential decay of the learning rate, with optional warmup and floor.

  With ``t`` the number of updates done and ``w = warmup_steps``:

  ===========  =====================================================
  updates      scale
  ===========  =====================================================
  ``t < w``    ``warmup_init + (1 - warmup_init) * t / w``
  ``t >= w``   ``max(min_scale, rate ** (k / every_steps))``, with
               ``k = t - w``, or with ``staircase`` ``k`` rounded
               down to whole periods
  ===========  =====================================================

  "Multiply by 0.99 every epoch" is ``decay(0.99, every_steps=
  steps_per_epoch, staircase=True)``, the ``decay`` recipe of
  ``lrtransfer.recipes.default_recipes`` (its rate against neighbours:
  ``python benchmarks/tune_defaults.py``). The formula of
  ``optax.exponential_decay`` after an ``optax.linear_schedule`` warmup,
  written so that every numeric argument may be injected by
  ``optax.inject_hyperparams``; other shapes: :func:`schedule_scale`.

  Args:
    rate: factor per ``every_steps`` updates, in (0, 1].
    every_steps: updates per decay period (e.g. the steps of one epoch).
    staircase: decay in whole periods rather than smoothly.
    warmup_steps: length of a linear warmup from ``warmup_init`` to 1.
    warmup_init: scale at step 0 when warming up, in [0, 1].
    min_scale: floor of the scale, in [0, 1).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` chained after the optimizer.

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                     lrtransfer.decay(0.99, every_steps=steps_per_epoch))

  References:
    Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1
    Hour" (warmup), 2017, https://arxiv.org/abs/1706.02677
  """
  return schedule_scale(decay_schedule(
      rate, every_steps, staircase=staircase, warmup_steps=warmup_steps,
      warmup_init=warmup_init, min_scale=min_scale))
