"""Performance-based adjustment of the learning rate from a validation metric."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import plateau as plateau_lib
from lrtransfer._src import validation
from lrtransfer._src.measurement import read_measurement
from lrtransfer._src.scaling import clip_scale, scale_updates


class AdjustState(NamedTuple):
  """State of :func:`adjust`."""
  scale: jax.Array  # float32 scalar in [min_scale, max_scale]
  plateau: plateau_lib.PlateauState  # evaluation bookkeeping (float32/int32)


def adjust(*, monitor: Optional[str] = None, mode: Optional[str] = None, patience: int = 3, cooldown: int = 1,
           threshold: float = 1e-4, threshold_mode: str = "rel",
           plateau_factor: float = 1.5, improve_factor: float = 0.98,
           target: Optional[float] = None, init_scale: float = 1.0,
           min_scale: float = 0.05, max_scale: float = 2.0,
           eps: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """Scales the learning rate by how the target task goes on validation.

  Reads ``metric=lrtransfer.measurement(value, count)`` in ``update`` and
  reacts once per new evaluation (see :mod:`lrtransfer` "metric protocol").
  Each new evaluation is judged with the rules of ``ReduceLROnPlateau``
  (see ``lrtransfer._src.plateau``: relative or absolute threshold, taken of
  ``|best|`` so negative metrics are handled right; patience; cooldown; an
  optional ``target``), then::

    new   = clip(scale * f, min_scale, max_scale)
    scale <- new   if |new - scale| > eps   else scale
    f = improve_factor   if the evaluation is good (improved, target met)
        plateau_factor   if it is the (patience+1)-th bad one in a row
                         (outside cooldown)
        1                otherwise

  The defaults follow the transfer-learning rule: when the target task goes
  badly (a plateau), *raise* the rate to move away from the source solution
  faster; when it goes well (an improvement), *lower* it a little to keep
  what the source taught. (``improve_factor=0.98``, not a stronger cut: on
  the few-shot benchmarks 0.9 cut the rate hardest in the first epochs, when
  fine-tuning needs it most; see ``benchmarks/results/defaults_candidates.md``.) Classic schedules are configurations:

  * reduce on plateau (PyTorch ``ReduceLROnPlateau(factor=F, patience=P,
    cooldown=C, threshold=T, threshold_mode=M, min_lr=L)`` on a base rate
    ``lr``): ``adjust(plateau_factor=F, improve_factor=1.0, patience=P,
    cooldown=C, threshold=T, threshold_mode=M, min_scale=L / lr,
    max_scale=1.0)`` — identical learning rates for non-negative metrics
    and ``eps = 1e-8 / lr`` (PyTorch skips changes of the learning rate no
    larger than its ``eps=1e-8``). See :func:`reduce_on_plateau`.
  * bold driver: ``adjust(improve_factor=1.05, plateau_factor=0.5,
    patience=0, cooldown=0)``: grow a little after each improvement, halve
    after each evaluation that does not improve on the best. See
    :func:`bold_driver`.

  NaN policy: a non-finite metric is a bad evaluation (it counts toward
  patience, so it can trigger the plateau action), it never becomes ``best``,
  and it never makes the scale NaN: the scale only ever moves by the finite,
  positive factors above and is clipped to ``[min_scale, max_scale]``.

  Args:
    monitor: the name of the measurement's value to judge; None: the
      measurement's ``monitor``. A name the measurement lacks fails at trace
      time, naming the ones it has.
    mode: "min" (a loss) or "max" (an accuracy); None: the measurement's.
    patience: bad evaluations tolerated; the action fires at the
      ``patience + 1``-th in a row (PyTorch's convention).
    cooldown: evaluations after an action during which bad ones are not
      counted.
    threshold: least change that counts as an improvement.
    threshold_mode: "rel" (``threshold * |best|``) or "abs".
    plateau_factor: multiplier on a plateau (>1 raises, <1 lowers).
    improve_factor: multiplier on each good evaluation.
    target: optional metric value; an evaluation worse than it is bad even if
      it improved on the best so far.
    init_scale: scale before the first evaluation.
    min_scale: lower bound of the scale, >= 0.
    max_scale: upper bound of the scale, >= min_scale.
    eps: changes of the scale no larger than this are skipped, >= 0.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` to chain after the optimizer.

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())
    state = tx.init(params)
    updates, state = tx.update(grads, state, params,
                               metric=lrtransfer.measurement(val_loss, epoch))

  References:
    PyTorch ``torch.optim.lr_scheduler.ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
    Battiti, "Accelerated backpropagation learning: two optimization
    methods" (bold driver), Complex Systems 3, 1989.
  """
  rule = plateau_lib.validated_rule(mode, threshold, threshold_mode, patience,
                                    cooldown, target, monitor)
  validation.check_positive("plateau_factor", plateau_factor)
  validation.check_positive("improve_factor", improve_factor)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  validation.check_positive("init_scale", init_scale)
  validation.check_non_negative("eps", eps)
  if (validation.is_concrete_number(init_scale)
      and not min_scale <= init_scale <= max_scale):
    raise ValueError(
        f"init_scale must be within [min_scale, max_scale] = [{min_scale}, "
        f"{max_scale}], got init_scale={init_scale!r}")

  def init_fn(params):
    del params
    return AdjustState(jnp.asarray(init_scale, jnp.float32),
                       plateau_lib.init_plateau(rule))

  def update_fn(updates, state, params=None, **extra_args):
    del params
    metric = read_measurement(extra_args, "lrtransfer.adjust")
    judged, verdict = plateau_lib.observe(rule, state.plateau, metric,
                                          "lrtransfer.adjust")
    factor = (jnp.where(verdict.good, improve_factor, 1.0)
              * jnp.where(verdict.plateau, plateau_factor, 1.0))
    scale = clip_scale(state.scale * factor, min_scale, max_scale)
    scale = jnp.where(jnp.abs(scale - state.scale) > eps, scale, state.scale)
    return scale_updates(updates, scale), AdjustState(scale, judged)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def reduce_on_plateau(*, factor: float = 0.1, patience: int = 10,
                      cooldown: int = 0, threshold: float = 1e-4,
                      threshold_mode: str = "rel", mode: Optional[str] = None,
                      monitor: Optional[str] = None,
                      min_scale: float = 0.0, eps: float = 0.0
                      ) -> optax.GradientTransformationExtraArgs:
  """Reduce-on-plateau as an :func:`adjust` configuration.

  Same arguments and defaults as PyTorch's ``ReduceLROnPlateau`` (with
  ``min_scale = min_lr / base_lr`` and ``eps = 1e-8 / base_lr``), reacting
  once per evaluation::

    scale <- max(min_scale, scale * factor)   at the (patience+1)-th bad
                                              evaluation in a row

  Args:
    factor: multiplier on a plateau, in (0, 1).
    patience, cooldown, threshold, threshold_mode, mode: as in :func:`adjust`.
    min_scale: floor of the scale, in [0, 1].
    eps: changes of the scale no larger than this are skipped.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    PyTorch ``ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
  """
  validation.check_in_interval("factor", factor, 0.0, 1.0, low_open=True,
                               high_open=True)
  validation.check_in_interval("min_scale", min_scale, 0.0, 1.0)
  return adjust(monitor=monitor, mode=mode, patience=patience,
                cooldown=cooldown,
                threshold=threshold, threshold_mode=threshold_mode,
                plateau_factor=factor, improve_factor=1.0,
                min_scale=min_scale, max_scale=1.0, eps=eps)


def bold_driver(*, increase: float = 1.05, decrease: float = 0.5,
                mode: Optional[str] = None, monitor: Optional[str] = None,
                min_scale: float = 1e-3,
                max_scale: float = 10.0
                ) -> optax.GradientTransformationExtraArgs:
  """The "bold driver" rule as an :func:`adjust` configuration.

  After each evaluation::

    scale <- scale * increase   if the metric improved on the best so far
    scale <- scale * decrease   otherwise

  clipped to ``[min_scale, max_scale]``.

  Args:
    increase: multiplier after an improvement, >= 1.
    decrease: multiplier otherwise, in (0, 1].
    mode: "min" or "max".
    min_scale, max_scale: bounds of the scale.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    Battiti, "Accelerated backpropagation learning: two optimization
    methods", Complex Systems 3, 1989; Vogl et al., "Accelerating the
    convergence of the back-propagation method", Biol. Cybern. 59, 1988.
  """
  validation.check_finite("increase", increase)
  if validation.is_concrete_number(increase) and increase < 1:
    raise ValueError(f"increase must be >= 1, got increase={increase!r}")
  validation.check_in_interval("decrease", decrease, 0.0, 1.0, low_open=True)
  return adjust(monitor=monitor, mode=mode, patience=0, cooldown=0, improve_factor=increase,
                plateau_factor=decrease, init_scale=min(max(1.0, min_scale),
                                                        max_scale),
                min_scale=min_scale, max_scale=max_scale)
