"""A PORT of Hugging Face transformers' ``GreedyLR`` scheduler to Optax.

Not lrtransfer code and not Hugging Face's: the rule of
``transformers.optimization.GreedyLR`` (added by huggingface/transformers
pull request #44271, merged March 2026; "GreedyLR: A Novel Adaptive
Learning Rate Scheduler", arXiv:2512.14527), re-written from its documented
semantics -- the class docstring, its defaults and its ``step`` /
``is_better`` / ``_reduce_lr`` / ``_increase_lr`` / ``_reset`` as published
in that pull request -- as a jit-compatible Optax transformation, so that it
runs in lrtransfer's compiled fit loop as a benchmark peer. Hugging Face's
``Trainer`` steps it once per evaluation with the evaluation loss, as
``ReduceLROnPlateau``; here it reads ``metric=lrtransfer.measurement(value,
count)`` and reacts once per new ``count`` (the fit loop feeds the
validation loss).

The rule, per new evaluation ``v`` (mode "min", threshold mode "abs"), with
``lr`` the current and ``lr0`` the initial rate::

  if cooldown_left > 0:  cooldown_left -= 1; good = bad = 0
  elif warmup_left > 0:  warmup_left -= 1;   good = bad = 0
  else:
    if v < best - threshold:  best = v; bad = 0; good += 1
    else:                     bad += 1; good = 0
    if good > patience:   lr = min(lr / factor, max_lr)  (if it moves > eps)
                          warmup_left = warmup; good = 0; reset_left = reset_start
    elif bad > patience:  lr = max(lr * factor, min_lr)  (if it moves > eps)
                          cooldown_left = cooldown; bad = 0
                          if lr <= min_lr: reset_left -= 1
                            if reset_left <= 0: lr = lr0, best = inf, counters 0

Defaults are Hugging Face's: ``factor=0.95, patience=10, threshold=1e-6``
(absolute), ``cooldown=warmup=0``, ``min_lr=1e-3, max_lr=1.0`` (absolute
rates), ``eps=1e-8``, ``reset_start=500``, ``smooth=False``. Smoothing
(a rolling mean of the last ``window_size`` metrics) is not ported: it is off
by default. A NaN metric is a bad evaluation, as in the original (``nan <
x`` is False).

The transformation multiplies the updates of the optimizer before it (the fit
loop's SGD-momentum at rate ``lr0``) by ``lr / lr0``; its state keeps that
ratio, so ``lrtransfer.current_scale`` does not see it (the fit history
records scale 1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src.measurement import METRIC_KWARG, read_measurement


class GreedyLRState(NamedTuple):
  """State of :func:`greedy_lr_scale` (all float32 / int32 scalars)."""
  ratio: jax.Array  # float32, current rate / initial rate
  best: jax.Array  # float32, best metric so far (+inf: none)
  num_good: jax.Array  # int32, consecutive improving evaluations
  num_bad: jax.Array  # int32, consecutive non-improving evaluations
  cooldown_left: jax.Array  # int32, evaluations left in cooldown
  warmup_left: jax.Array  # int32, evaluations left in warmup
  reset_left: jax.Array  # int32, reductions at min_lr left before a reset
  last_count: jax.Array  # int32, count of the last measurement reacted to


def greedy_lr_scale(initial_lr: Any, *, factor: float = 0.95,
                    patience: int = 10, threshold: float = 1e-6,
                    cooldown: int = 0, warmup: int = 0, min_lr: float = 1e-3,
                    max_lr: float = 1.0, eps: float = 1e-8,
                    reset_start: int = 500
                    ) -> optax.GradientTransformationExtraArgs:
  """GreedyLR (port) as a scale on the updates of the optimizer before it.

  Args:
    initial_lr: the rate of the optimizer this is chained after (may be a
      traced array, e.g. a vmapped base rate); ``min_lr``/``max_lr`` are
      absolute rates as in Hugging Face's class.
    factor, patience, threshold, cooldown, warmup, min_lr, max_lr, eps,
      reset_start: as ``transformers.optimization.GreedyLR`` (mode "min",
      threshold mode "abs").

  Returns:
    A transformation whose ``update`` reads ``metric=``.

  Example::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), greedy_lr_scale(0.05))
    tx.update(grads, state, params, metric=lrtransfer.measurement(loss, k))

  References:
    Hugging Face transformers, ``GreedyLR``,
    https://github.com/huggingface/transformers/pull/44271 (2026);
    arXiv:2512.14527.
  """
  if not 0.0 < factor < 1.0:
    raise ValueError(f"factor must be in (0, 1), got factor={factor!r}")
  for name, value in (("patience", patience), ("cooldown", cooldown),
                      ("warmup", warmup), ("reset_start", reset_start)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"{name} must be an int >= 0, got {name}={value!r}")
  if not 0.0 < min_lr <= max_lr:
    raise ValueError(f"need 0 < min_lr <= max_lr, got min_lr={min_lr!r}, "
                     f"max_lr={max_lr!r}")

  def init_fn(params):
    del params
    zero = jnp.zeros([], jnp.int32)
    return GreedyLRState(jnp.ones([], jnp.float32),
                         jnp.asarray(jnp.inf, jnp.float32), zero, zero, zero,
                         zero, jnp.asarray(reset_start, jnp.int32), zero)

  def react(state: GreedyLRState, value: jax.Array) -> GreedyLRState:
    lr0 = jnp.asarray(initial_lr, jnp.float32)
    lr = state.ratio * lr0
    in_cooldown = state.cooldown_left > 0
    in_warmup = (~in_cooldown) & (state.warmup_left > 0)
    judging = ~(in_cooldown | in_warmup)
    better = value < state.best - threshold
    best = jnp.where(judging & better, value, state.best)
    good = jnp.where(judging & better, state.num_good + 1, 0)
    bad = jnp.where(judging & ~better, state.num_bad + 1, 0)
    increase = judging & (good > patience)
    reduce = judging & ~increase & (bad > patience)

    raised = jnp.minimum(lr / factor, max_lr)
    lowered = jnp.maximum(lr * factor, min_lr)
    new_lr = jnp.where(increase & (raised - lr > eps), raised, lr)
    new_lr = jnp.where(reduce & (lr - lowered > eps), lowered, new_lr)
    at_min = reduce & ~(new_lr > min_lr)
    reset_left = jnp.where(increase, reset_start, state.reset_left)
    reset_left = jnp.where(at_min, reset_left - 1, reset_left)
    do_reset = at_min & (reset_left <= 0)

    cooldown_left = jnp.where(in_cooldown, state.cooldown_left - 1,
                              jnp.where(reduce, cooldown,
                                        state.cooldown_left))
    warmup_left = jnp.where(in_warmup, state.warmup_left - 1,
                            jnp.where(increase, warmup, state.warmup_left))
    good = jnp.where(increase, 0, good)
    bad = jnp.where(reduce, 0, bad)
    zero = jnp.zeros([], jnp.int32)
    return GreedyLRState(
        ratio=jnp.where(do_reset, 1.0, new_lr / lr0).astype(jnp.float32),
        best=jnp.where(do_reset, jnp.inf, best).astype(jnp.float32),
        num_good=jnp.where(do_reset, zero, good).astype(jnp.int32),
        num_bad=jnp.where(do_reset, zero, bad).astype(jnp.int32),
        cooldown_left=jnp.where(do_reset, zero, cooldown_left).astype(
            jnp.int32),
        warmup_left=jnp.where(do_reset, zero, warmup_left).astype(jnp.int32),
        reset_left=jnp.where(do_reset, reset_start, reset_left).astype(
            jnp.int32),
        last_count=state.last_count)

  def update_fn(updates, state, params=None, **extra_args):
    del params
    metric = read_measurement(extra_args.get(METRIC_KWARG),
                              "greedy_lr_scale")
    is_new = metric.count > state.last_count
    reacted = react(state, metric.value)._replace(last_count=metric.count)
    state = jax.tree.map(lambda n, o: jnp.where(is_new, n, o), reacted, state)
    updates = jax.tree.map(
        lambda u: (u * state.ratio.astype(u.dtype)), updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def greedy_lr_sgd(learning_rate: Any, momentum: float = 0.9, **greedy_kwargs
                  ) -> optax.GradientTransformationExtraArgs:
  """SGD-momentum at ``learning_rate`` scheduled by the GreedyLR port."""
  return optax.chain(optax.sgd(learning_rate, momentum=momentum),
                     greedy_lr_scale(learning_rate, **greedy_kwargs))


def reference_rates(values, initial_lr: float, **kwargs) -> list[float]:
  """The rate after each evaluation, by a plain-Python transcription of the
  rule (for the port's test); ``kwargs`` as :func:`greedy_lr_scale`."""
  p = dict(factor=0.95, patience=10, threshold=1e-6, cooldown=0, warmup=0,
           min_lr=1e-3, max_lr=1.0, eps=1e-8, reset_start=500)
  p.update(kwargs)
  lr, best, good, bad, cool, warm, reset = (initial_lr, float("inf"), 0, 0,
                                            0, 0, p["reset_start"])
  out = []
  for v in values:
    if cool > 0:
      cool, good, bad = cool - 1, 0, 0
    elif warm > 0:
      warm, good, bad = warm - 1, 0, 0
    else:
      if v < best - p["threshold"]:
        best, bad, good = v, 0, good + 1
      else:
        bad, good = bad + 1, 0
      if good > p["patience"]:
        new = min(lr / p["factor"], p["max_lr"])
        lr = new if new - lr > p["eps"] else lr
        warm, good, reset = p["warmup"], 0, p["reset_start"]
      elif bad > p["patience"]:
        new = max(lr * p["factor"], p["min_lr"])
        lr = new if lr - new > p["eps"] else lr
        cool, bad = p["cooldown"], 0
        if not lr > p["min_lr"]:
          reset -= 1
          if reset <= 0:
            lr, best, good, bad, cool, warm = (initial_lr, float("inf"), 0,
                                               0, 0, 0)
            reset = p["reset_start"]
    out.append(lr)
  return out


__all__ = ["GreedyLRState", "greedy_lr_scale", "greedy_lr_sgd",
           "reference_rates"]
