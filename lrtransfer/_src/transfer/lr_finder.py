"""Learning-rate range test (fastai ``lr_find``) as one compiled scan."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class LRRangeTestResult(NamedTuple):
  """Result of :func:`lr_range_test`; arrays cover the steps that ran."""
  # float64 (n,): the learning rate of each step, geometric in the step index.
  learning_rates: np.ndarray
  # float32 (n,): the loss at each step, before that step's update.
  losses: np.ndarray
  # float32 (n,): bias-corrected exponential moving average of `losses`.
  smoothed_losses: np.ndarray
  # Index of the step whose smoothed loss diverged (it is the last entry of
  # the arrays, n = stopped_at + 1); None when all num_steps ran (n =
  # num_steps).
  stopped_at: int | None
  # Suggested learning rate (see lr_range_test), nan if no step was usable.
  suggestion: float


def _check_real(name: str, value: Any, low: float, high: float, *,
                low_open: bool, high_open: bool) -> None:
  ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
  if ok:
    ok = (low < value if low_open else low <= value) and (
        value < high if high_open else value <= high)
  if not ok:
    interval = (("(" if low_open else "[") + f"{low}, {high}"
                + (")" if high_open else "]"))
    raise ValueError(f"{name} must be a number in {interval}, "
                     f"got {name}={value!r}.")


def _steepest_suggestion(learning_rates: np.ndarray,
                         smoothed: np.ndarray, skip: int = 0) -> float:
  """fastai's "steepest" rule after ``skip`` warm-up steps; min/10 fallback."""
  if smoothed.size == 0:
    return math.nan
  if smoothed.size >= 2:
    slopes = np.gradient(smoothed.astype(np.float64), np.log(learning_rates))
    # The first steps' smoothed losses are a few noisy batches: their slopes
    # say nothing about the rate (on the digits task, picking them suggests
    # 1e-5, at which fine-tuning reaches 0.21 accuracy).
    skip = min(skip, slopes.size - 1)
    steepest = skip + int(np.argmin(slopes[skip:]))
    if slopes[steepest] < 0:
      return float(learning_rates[steepest])
  return float(learning_rates[int(np.argmin(smoothed))] / 10.0)


# How often the range test's program was traced (tests count recompilations).
TRACES = [0]


@functools.partial(jax.jit, static_argnames=(
    "loss_fn", "num_batches", "momentum", "smoothing", "diverge_factor"))
def _run(params, batches, learning_rates, *, loss_fn, num_batches, momentum,
         smoothing, diverge_factor):
  """The whole test as one scan; compiled once per loss, shapes, settings.

  Batches, parameters and the rates are traced arguments, not constants
  baked into the program, so a second test of the same shapes reuses it.
  """
  TRACES[0] += 1
  num_steps = learning_rates.shape[0]
  tx = optax.inject_hyperparams(optax.sgd)(
      learning_rate=0.0, momentum=momentum)
  grad_fn = jax.value_and_grad(loss_fn)

  def step(carry, inputs):
    params, opt_state, average, best, stopped, stopped_at = carry
    index, learning_rate = inputs
    batch = jax.tree.map(lambda leaf: leaf[index % num_batches], batches)
    loss, grads = grad_fn(params, batch)
    loss = jnp.asarray(loss, jnp.float32)
    opt_state = opt_state._replace(hyperparams={
        **opt_state.hyperparams, "learning_rate": learning_rate})
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)

    new_average = smoothing * average + (1.0 - smoothing) * loss
    smoothed = new_average / (1.0 - smoothing ** (index + 1).astype(
        jnp.float32))
    # best starts at +inf: only a non-finite loss can stop step 0.
    diverged = ~jnp.isfinite(smoothed) | (
        smoothed - best > (diverge_factor - 1.0) * jnp.abs(best))
    now_stopped = stopped | diverged
    keep = lambda old, new: jax.tree.map(
        lambda o, n: jnp.where(now_stopped, o, n), old, new)
    carry = (
        keep(params, new_params),
        keep(opt_state, new_opt_state),
        jnp.where(now_stopped, average, new_average),
        jnp.where(now_stopped, best, jnp.minimum(best, smoothed)),
        now_stopped,
        jnp.where(diverged & ~stopped, index, stopped_at),
    )
    return carry, (loss, smoothed)

  init = (
      params,
      tx.init(params),
      jnp.zeros([], jnp.float32),
      jnp.array(jnp.inf, jnp.float32),
      jnp.array(False),
      jnp.array(-1, jnp.int32),
  )
  indices = jnp.arange(num_steps, dtype=jnp.int32)
  carry, (losses, smoothed) = jax.lax.scan(
      step, init, (indices, learning_rates))
  return losses, smoothed, carry[-1]



def lr_range_test(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batches: Any,
    *,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_steps: int = 100,
    momentum: float = 0.9,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
) -> LRRangeTestResult:
  r"""Learning-rate range test: SGD with a rate growing geometrically.

  Step :math:`k = 0, \dots, K-1` evaluates the loss on batch
  :math:`k \bmod B` at the current parameters, then takes an SGD-momentum
  step with

  .. math::

    \eta_k = \eta_\min\,(\eta_\max / \eta_\min)^{k / (K - 1)}.

  The loss is smoothed with a bias-corrected exponential moving average,
  :math:`a_k = \rho\,a_{k-1} + (1-\rho)\,\ell_k`,
  :math:`\bar\ell_k = a_k / (1 - \rho^{k+1})`. The run stops at the first
  step whose :math:`\bar\ell_k` is non-finite or exceeds the best so far by
  the divergence factor, :math:`\bar\ell_k - \bar\ell^\ast >
  (\text{diverge\_factor} - 1)\,|\bar\ell^\ast|` (that is
  :math:`\bar\ell_k > \text{diverge\_factor}\cdot\bar\ell^\ast` for a positive
  loss, fastai's rule). The whole test is one jit-compiled ``lax.scan``, so
  it cannot break out early: from the stop on, steps leave the parameters
  unchanged (a ``jnp.where``) and are dropped from the result.

  Suggestion rule (fastai's "steepest"): among the steps before the stop,
  leaving out the first ``num_steps // 10`` (whose smoothed loss averages
  only a few noisy batches), the learning rate where the smoothed loss falls
  fastest against :math:`\log\eta`, i.e. the argmin of
  ``np.gradient(smoothed, log(lr))``.
  When no slope is negative (the loss never went down) it falls back to the
  learning rate of the smallest smoothed loss divided by 10.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, differentiable in params.
    params: the starting parameters (not modified).
    batches: a pytree whose leaves share a leading axis of length ``B >= 1``;
      step ``k`` uses index ``k % B``, so fewer batches than steps cycle.
    min_lr: first learning rate, > 0.
    max_lr: last learning rate, > min_lr.
    momentum: SGD momentum, in [0, 1).
    num_steps: number of steps ``K``, an int >= 3.
    smoothing: EMA coefficient :math:`\rho`, in [0, 1) (0: no smoothing).
    diverge_factor: stop threshold, > 1.

  Returns:
    An :class:`LRRangeTestResult` of NumPy arrays over the steps that ran
    (up to and including the diverging one), ``stopped_at`` and the
    ``suggestion`` as a Python float.

  Raises:
    ValueError: an argument out of range (the message names it), or batch
      leaves without a common leading axis.

  Example::

    result = lr_range_test(loss_fn, params, batches, num_steps=100)
    tx = optax.sgd(result.suggestion, momentum=0.9)

  References:
    Smith, `Cyclical Learning Rates for Training Neural Networks
    <https://arxiv.org/abs/1506.01186>`_, 2017.

    Howard & Gugger, `fastai: A Layered API for Deep Learning
    <https://arxiv.org/abs/2002.04688>`_, 2020 (``Learner.lr_find``).
  """
  _check_real("min_lr", min_lr, 0.0, math.inf, low_open=True, high_open=True)
  _check_real("max_lr", max_lr, 0.0, math.inf, low_open=True, high_open=True)
  if not min_lr < max_lr:
    raise ValueError(
        f"min_lr must be smaller than max_lr, got min_lr={min_lr!r}, "
        f"max_lr={max_lr!r}.")
  if (isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral)
      or num_steps < 3):
    raise ValueError(
        f"num_steps must be an int >= 3, got num_steps={num_steps!r}.")
  _check_real("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True)
  _check_real("smoothing", smoothing, 0.0, 1.0, low_open=False,
              high_open=True)
  _check_real("diverge_factor", diverge_factor, 1.0, math.inf, low_open=True,
              high_open=True)
  batch_leaves = jax.tree_util.tree_leaves(batches)
  lengths = {np.shape(leaf)[0] if np.ndim(leaf) else None
             for leaf in batch_leaves}
  if not batch_leaves or None in lengths or len(lengths) != 1 or 0 in lengths:
    raise ValueError(
        "batches must be a pytree of arrays sharing a non-empty leading "
        f"axis, got leading lengths {sorted(lengths, key=str)}.")
  (num_batches,) = lengths
  num_steps = int(num_steps)

  learning_rates = min_lr * (max_lr / min_lr) ** (
      np.arange(num_steps, dtype=np.float64) / (num_steps - 1))
  losses, smoothed, stopped_at = _run(
      params, batches, jnp.asarray(learning_rates, jnp.float32),
      loss_fn=loss_fn, num_batches=num_batches, momentum=float(momentum),
      smoothing=float(smoothing), diverge_factor=float(diverge_factor))
  stopped_at = int(stopped_at)
  stopped_at = None if stopped_at < 0 else stopped_at
  num_run = num_steps if stopped_at is None else stopped_at + 1
  num_usable = num_steps if stopped_at is None else stopped_at
  losses = np.asarray(losses)[:num_run]
  smoothed = np.asarray(smoothed)[:num_run]
  learning_rates = learning_rates[:num_run]
  return LRRangeTestResult(
      learning_rates=learning_rates,
      losses=losses,
      smoothed_losses=smoothed,
      stopped_at=stopped_at,
      suggestion=_steepest_suggestion(learning_rates[:num_usable],
                                      smoothed[:num_usable],
                                      skip=num_steps // 10),
  )
