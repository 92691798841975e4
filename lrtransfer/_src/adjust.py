"""Performance-based adjustment of the learning rate from a validation metric."""

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


class AdjustState(NamedTuple):
  """State of :func:`adjust`."""
  scale: jax.Array  # float32 scalar in [min_scale, max_scale]
  plateau: plateau_lib.PlateauState  # evaluation bookkeeping (float32/int32)
  guard: raising.RaiseGuardState  # guarded raises: train trend, undo target


def adjust(*, monitor: Optional[str] = None, mode: Optional[str] = None,
           train_monitor: Optional[str] = "train_loss", patience: int = 3,
           cooldown: int = 1, threshold: float = 1e-4,
           threshold_mode: str = "rel", plateau_factor: float = 1.5,
           improve_factor: float = 1.0, overfit_factor: float = 1.0,
           rise_factor: float = 0.5,
           slow_progress: float = 0.1, remember_brake: bool = False,
           brake_patience: int = 0, slow_patience: int = 1,
           max_raises: int = 2, train_threshold: float = 0.01,
           train_rise: float = 0.25, fitted_ratio: float = 0.05,
           target: Optional[float] = None, init_scale: float = 1.0,
           min_scale: float = 0.05, max_scale: float = 10.0,
           eps: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """Scales the learning rate by how the target task goes on validation.

  Reads ``metric=lrtransfer.measurement(...)`` in ``update`` and reacts once
  per new evaluation (see :mod:`lrtransfer` "metric protocol"). Each new
  evaluation of the monitored value is judged with the rules of
  ``ReduceLROnPlateau`` (see ``lrtransfer._src.plateau``: relative or absolute
  threshold, taken of ``|best|`` so negative metrics are handled right;
  patience; cooldown; an optional ``target``), then::

    f     = (improve_factor * G   if the evaluation is good (improved,
                                  target met), G the slow-progress raise
             A                    if it is the (patience+1)-th bad one in a
                                  row (outside cooldown), A the guarded
                                  plateau action
             1                    otherwise)  * B, B the brake
    new   = clip(scale * f, min_scale, max_scale)
    new   = min(new, pre_raise_scale)   if the last evaluation raised and
                                        this one is not better than it (undo)
    new   = min(new, max(ceiling, scale)) if this evaluation raises
                                        (ceiling: where the last brake left
                                        the scale, +inf before any)
    scale <- new   if |new - scale| > eps   else scale

  The plateau action ``A``, the raise ``G`` and the brake ``B``
  (``lrtransfer._src.raising``, formulas there) read the training value ``train_monitor`` the measurement
  carries (``lrtransfer.train.fit`` feeds ``"train_loss"``, the epoch's mean
  minibatch loss)::

    A = plateau_factor  if plateau_factor <= 1 (classic reduce-on-plateau)
        plateau_factor  (a raise) if the model fails to fit: the training
                        value did not improve by train_threshold * |best| in
                        the last patience + 1 evaluations, is not rising,
                        is not fitted (above fitted_ratio * its first value),
                        and fewer than max_raises raises happened since the
                        last good evaluation
        overfit_factor  otherwise: training improves while validation does
                        not (over-fitting), or no training value was passed
    G = plateau_factor  (a raise) on a good evaluation after which the
                        training value improved by less than slow_progress
                        of the previous one (too low a rate creeps; with
                        max_scale=10 a base rate 10x too low is recovered)
    B = rise_factor     when the training value is more than train_rise
                        above its best (or not finite): the rate is too high
                        now. With brake_patience=0 (the default) every such
                        evaluation above the first training value cuts,
                        falling or not; below it, only a further rise past
                        the level of the last cut does (a momentum
                        overshoot climbs for a few evaluations). With
                        brake_patience=q > 0 the value must also have been
                        high at the q evaluations before and not be falling
                        (a catapult spike settles by itself; a divergence
                        that dips for one evaluation is then cut later);
                        with remember_brake (off by default), no later raise
                        goes above the braked scale

  This is the founding article's rule read right: raise the rate when the
  model *fails to fit* the target (training stalls, or creeps while
  validation improves), and never raise on over-fitting, where a higher rate only fits the
  few target examples harder (issue 9: raising there pinned every seed at
  ``max_scale``, 0.30 test accuracy against 0.83 for a constant rate).
  Lowering the rate on every good evaluation (``improve_factor < 1``, "keep
  what the source taught") is off by default: when the base rate is already
  too low it lowers it further, 12.9 points below the constant rate on an
  unseen task in ``benchmarks/robustness.py``; the rate falls instead on
  evidence that it is too high (the brake) or, with ``overfit_factor < 1``,
  on over-fitting. Safety, whatever the metric does: a raise is undone when
  the next evaluation is not better than the one that raised it; at most
  ``max_raises`` plateau raises between two good evaluations; the scale stays
  in ``[min_scale, max_scale]``. So a metric that worsens after every raise
  leaves the scale above its pre-raise level for one evaluation per raise.

  Ideas taken from: bold driver (Battiti 1989: cut the rate when the
  training error rises -- the brake -- and reject a step that made things
  worse -- here the undo), hypergradient descent (Baydin et al. 2018: the
  rate is raised on evidence from the *training* objective, not validation),
  the growth bounds of the learning-rate-free optimizers (Prodigy's
  ``growth_rate``, DoG's monotone distance: bounded growth per step, here
  undo, ``max_raises`` and ``max_scale``), Hugging Face's GreedyLR
  (multiplicative moves from a metric after ``patience`` evaluations,
  bounded by a maximum rate), Budgeted Training (Li et al. 2020: the rate
  that fits the budget). Not taken: GreedyLR's raise after any run of
  improvements (here only improvements with slow training progress raise,
  and each raise is checked at the next evaluation).

  Classic schedules are configurations:

  * reduce on plateau (PyTorch ``ReduceLROnPlateau(factor=F, patience=P,
    cooldown=C, threshold=T, threshold_mode=M, min_lr=L)`` on a base rate
    ``lr``): ``adjust(plateau_factor=F, improve_factor=1.0, patience=P,
    cooldown=C, threshold=T, threshold_mode=M, min_scale=L / lr,
    max_scale=1.0, rise_factor=1.0)`` -- identical learning rates for non-negative metrics
    and ``eps = 1e-8 / lr``. See :func:`reduce_on_plateau`.
  * bold driver: ``adjust(improve_factor=1.05, plateau_factor=0.5,
    patience=0, cooldown=0, rise_factor=1.0)``. See :func:`bold_driver`.

  NaN policy: a non-finite metric is a bad evaluation (it counts toward
  patience, so it can trigger the plateau action, never a raise), it never
  becomes ``best``, and it fails a pending raise (undo). A non-finite
  training value counts as "not fitting safely": no raise, and brakes
  (a diverged training loss). The scale never
  becomes NaN: it only moves by finite, positive factors, and is clipped.

  Args:
    monitor: the measurement's value to judge; None: the measurement's
      ``monitor``. A name the measurement lacks fails at trace time, naming
      the ones it has.
    mode: "min" (a loss) or "max" (an accuracy); None: the measurement's.
    train_monitor: the measurement's training value (a loss, smaller is
      better) that tells failing to fit from over-fitting; None, or a
      measurement without it: no raise and no brake (a plateau applies
      ``overfit_factor``, which holds the rate by default), and a
      measurement that has values but not this one warns at trace time.
    patience: bad evaluations tolerated; the action fires at the
      ``patience + 1``-th in a row (PyTorch's convention).
    cooldown: evaluations after an action during which bad ones are not
      counted.
    threshold: least change that counts as an improvement.
    threshold_mode: "rel" (``threshold * |best|``) or "abs".
    plateau_factor: multiplier on a plateau (> 1 raises, guarded; <= 1
      lowers, as reduce-on-plateau).
    improve_factor: multiplier on each good evaluation.
    overfit_factor: multiplier on a plateau that is not raised (over-fitting),
      in (0, 1]; 1 holds the rate.
    rise_factor: the brake, multiplier when the training value rises more
      than ``train_rise`` above its best, in (0, 1]; 1 turns it off.
    slow_progress: a good evaluation whose training value improved by less
      than this fraction of the previous one raises (by ``plateau_factor``,
      guarded like a plateau raise), in [0, 1]; 0 turns it off. The
      default 0.1 with ``max_scale=10`` recovers a base rate 10x too low
      within about 20 epochs (chosen on the benchmarks' tuning tasks,
      session 5, ``benchmarks/results/defaults.md``).
    slow_patience: evaluations in a row with slow progress before that raise
      fires, an int >= 1 (it keeps firing while progress stays slow); 2
      skips the first epoch of a fresh head, slow at any rate. The default
      1 was chosen on the tuning tasks with 60 ``wine_shift`` seeds
      (session 6: -1.0 point at worst against the constant rate, -1.3 with
      2; with 20 seeds in session 5 the order was the reverse, -0.9 and
      -0.2: within the noise of that task).
    remember_brake: after a brake, no raise takes the scale above where the
      brake left it (a rate that made training diverge is not climbed back
      to); a bool. Off by default: on the tuning tasks the slow-progress
      raise climbing back after a brake that fired on a transient was worth
      more than the memory (session 5).
    brake_patience: evaluations the training value must stay high (and not
      be falling) before the brake cuts, an int >= 0; 0 cuts at the first
      high one (Battiti's bold driver). A non-finite value cuts at once.
    max_raises: raises allowed between two good evaluations, >= 0.
    train_threshold: relative improvement of the training value that counts
      as progress, >= 0.
    train_rise: relative rise of the training value above its best that
      counts as rising (never raise then; brake), >= 0.
    fitted_ratio: a training value below this fraction of the first one
      means the training set is fitted (never raise then), in [0, 1].
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
    metric = lrtransfer.measurement(count=epoch + 1, monitor="val_loss",
                                    val_loss=val_loss, train_loss=train_loss)
    updates, state = tx.update(grads, state, params, metric=metric)

  References:
    PyTorch ``torch.optim.lr_scheduler.ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
    Battiti, "Accelerated backpropagation learning: two optimization
    methods" (bold driver), Complex Systems 3, 1989.
    Baydin et al., "Online Learning Rate Adaptation with Hypergradient
    Descent", ICLR 2018, https://arxiv.org/abs/1703.04782
    Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner", 2023, https://arxiv.org/abs/2306.06101
    Ivgi, Hinder, Carmon, "DoG is SGD's Best Friend", ICML 2023,
    https://arxiv.org/abs/2302.12022
    Lewkowycz et al., "The large learning rate phase of deep learning: the
    catapult mechanism", 2020, https://arxiv.org/abs/2003.02218
    Hugging Face transformers ``GreedyLR`` (pull request 44271, 2026),
    https://github.com/huggingface/transformers/pull/44271
  """
  rule = plateau_lib.validated_rule(mode, threshold, threshold_mode, patience,
                                    cooldown, target, monitor)
  raise_rule = raising.validated_raise_rule(
      train_monitor, train_threshold, train_rise, fitted_ratio, patience,
      max_raises, plateau_factor, overfit_factor, rise_factor,
      slow_progress, remember_brake, brake_patience,
      slow_patience)
  validation.check_positive("improve_factor", improve_factor)
  validation.check_bounds("min_scale", min_scale, "max_scale", max_scale)
  validation.check_positive("init_scale", init_scale)
  validation.check_non_negative("eps", eps)
  if (validation.all_concrete(init_scale, min_scale, max_scale)
      and not min_scale <= init_scale <= max_scale):
    raise ValueError(
        f"init_scale must be within [min_scale, max_scale] = [{min_scale}, "
        f"{max_scale}], got init_scale={init_scale!r}")

  def init_fn(params):
    del params
    scale = jnp.asarray(init_scale, jnp.float32)
    return AdjustState(scale, plateau_lib.init_plateau(rule),
                       raising.init_guard(scale))

  def update_fn(updates, state, params=None, **extra_args):
    del params
    metric = read_measurement(
        extra_args, "lrtransfer.adjust (or reduce_on_plateau/bold_driver, "
        "its configurations)")
    judged, verdict = plateau_lib.observe(rule, state.plateau, metric,
                                          "lrtransfer.adjust")
    guard, step = raising.guard_step(raise_rule, state.guard, verdict,
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
  """Reduce-on-plateau as an :func:`adjust` configuration.

  Same arguments and defaults as PyTorch's ``ReduceLROnPlateau`` (with
  ``min_scale = min_lr / base_lr`` and ``eps = 1e-8 / base_lr``), reacting
  once per evaluation::

    scale <- max(min_scale, scale * factor)   at the (patience+1)-th bad
                                              evaluation in a row

  It never raises, so the guard of :func:`adjust` has nothing to do.

  Args:
    factor: multiplier on a plateau, in (0, 1).
    patience, cooldown, threshold, threshold_mode, mode, monitor: as in
      :func:`adjust` (mode None follows the measurement, "min" by default).
    min_scale: floor of the scale, in [0, 1].
    eps: changes of the scale no larger than this are skipped.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example::

    tx = optax.chain(optax.sgd(0.05), lrtransfer.reduce_on_plateau(
        factor=0.5, patience=2))

  References:
    PyTorch ``ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
  """
  validation.check_in_interval("factor", factor, 0.0, 1.0, low_open=True,
                               high_open=True)
  validation.check_in_interval("min_scale", min_scale, 0.0, 1.0)
  return adjust(monitor=monitor, mode=mode, patience=patience,
                cooldown=cooldown, threshold=threshold,
                threshold_mode=threshold_mode, plateau_factor=factor,
                improve_factor=1.0, rise_factor=1.0, min_scale=min_scale,
                max_scale=1.0, eps=eps, train_monitor=None)


def bold_driver(*, increase: float = 1.05, decrease: float = 0.5,
                mode: Optional[str] = None, monitor: Optional[str] = None,
                min_scale: float = 0.1, max_scale: float = 10.0
                ) -> optax.GradientTransformationExtraArgs:
  """The "bold driver" rule as an :func:`adjust` configuration.

  After each evaluation::

    scale <- scale * increase   if the metric improved on the best so far
    scale <- scale * decrease   otherwise

  clipped to ``[min_scale, max_scale]``, starting at
  ``clip(1, min_scale, max_scale)``.

  The comparison is with the best evaluation so far, on purpose. Battiti's
  rule compares with the previous *accepted* step: a step that raised the
  error is rejected (the weights go back) and the rate is cut, so the
  reference is always the error of the weights kept, which is the best so
  far. An Optax transformation cannot take the weights back, so this keeps
  Battiti's reference (the best) and his cut, without the rejection;
  comparing with the previous evaluation instead (Vogl et al.'s variant)
  would reward recovering from a bad step by raising the rate again.

  Args:
    increase: multiplier after an improvement, >= 1.
    decrease: multiplier otherwise, in (0, 1].
    mode, monitor: as in :func:`adjust`.
    min_scale, max_scale: bounds of the scale. The floor, a tenth of the
      base rate as in the ``reduce_on_plateau`` recipe of
      ``default_recipes``, was picked on the benchmarks' tuning tasks
      (validation) in session 7: with 1e-3 the rule cuts on every
      evaluation that does not beat the best, on noisy validation curves
      most of them, and ended up to 25 points below the constant rate it
      started from there
      (``benchmarks/results/defaults_extra_bold_driver.md``).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example::

    tx = optax.chain(optax.sgd(0.05), lrtransfer.bold_driver())

  References:
    Battiti, "Accelerated backpropagation learning: two optimization
    methods", Complex Systems 3, 1989; Vogl et al., "Accelerating the
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
                improve_factor=increase, plateau_factor=decrease,
                rise_factor=1.0, init_scale=init_scale, min_scale=min_scale,
                max_scale=max_scale, train_monitor=None)
