"""Runs Optax's own ``reduce_on_plateau`` inside lrtransfer's fit loop.

lrtransfer's fit loop passes ``metric=lrtransfer.measurement(val_loss, k)``
to every update (``k`` = evaluations done so far; ``k = 0`` and a NaN value
before the first). ``optax.contrib.reduce_on_plateau`` reads a bare
``value=`` instead. :func:`read_metric_value` is the adapter between the two:

* it hands ``metric.value`` to the wrapped transformation as ``value=``;
* before the first evaluation (``metric.count == 0``) it leaves the wrapped
  state alone and the updates unscaled: Optax would average the NaN into its
  accumulator and count the epoch as a bad one.

Set up *correctly* (the baseline the benchmarks compare with), Optax's
transformation is built with ``accumulation_size = steps_per_epoch``: it then
averages the ``steps_per_epoch`` copies of the same validation loss that an
epoch feeds it and judges that average once, at the epoch's last step
(optax 0.2.8, ``optax/contrib/_reduce_on_plateau.py``: ``_update_scale`` runs
under ``lax.cond(new_count == accumulation_size, ...)`` and resets the count).
With the default ``accumulation_size=1`` it would judge every *step*, so its
patience would count steps and the rate would collapse.
:func:`reacts_once_per_evaluation` checks this on a short synthetic run.

Two differences from lrtransfer's ``reduce_on_plateau`` remain by design of
Optax: it reduces at the ``patience``-th bad evaluation in a row (PyTorch and
lrtransfer at the ``patience + 1``-th), and the reduction takes effect on
the last step of the epoch that judged it (lrtransfer: the first step after
the evaluation). ``lrtransfer.current_scale`` does not see Optax's state, so
a fit history records scale 1 for this baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrtransfer


def read_metric_value(inner: optax.GradientTransformation
                      ) -> optax.GradientTransformationExtraArgs:
  """Wraps a transformation that reads ``value=`` to read ``metric=``.

  Args:
    inner: e.g. ``optax.contrib.reduce_on_plateau(...)``.

  Returns:
    A transformation whose ``update`` takes
    ``metric=lrtransfer.measurement(value, count)``.
  """

  def init_fn(params):
    return inner.init(params)

  def update_fn(updates, state, params=None, *, metric, **extra_args):
    del extra_args
    new_updates, new_state = inner.update(updates, state, params,
                                          value=metric.value)
    started = metric.count > 0
    pick = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(started, n, o), new, old)
    return pick(new_updates, updates), pick(new_state, state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def optax_plateau(steps_per_epoch: int, *, factor: float,
                  patience: int) -> optax.GradientTransformationExtraArgs:
  """Optax's reduce-on-plateau, reacting once per epoch, fed by ``metric=``."""
  return read_metric_value(optax.contrib.reduce_on_plateau(
      factor=factor, patience=patience, accumulation_size=steps_per_epoch))


def reacts_once_per_evaluation(*, factor: float, patience: int,
                               steps_per_epoch: int = 7) -> dict:
  """Feeds a flat validation loss for 12 epochs; the scale must halve per
  ``patience`` bad *epochs*, not steps.

  Returns:
    ``{"ok": bool, "scales_per_epoch": [...], "expected": [...]}``.
  """
  tx = optax_plateau(steps_per_epoch, factor=factor, patience=patience)
  params = {"w": jnp.ones(3)}
  epochs = 12

  @jax.jit
  def run(state):
    def epoch(state, k):
      metric = lrtransfer.measurement(jnp.float32(1.0), k)

      def step(state, _):
        _, state = tx.update({"w": jnp.ones(3)}, state, params, metric=metric)
        return state, None

      state, _ = jax.lax.scan(step, state, None, length=steps_per_epoch)
      return state, state.scale
    return jax.lax.scan(epoch, state, jnp.arange(epochs, dtype=jnp.int32))

  _, scales = run(tx.init(params))
  scales = np.asarray(scales, np.float64)
  # Epoch 0 carries no measurement; epoch 1 sets best; epochs 2.. are bad,
  # and Optax reduces at every `patience`-th bad one.
  expected = [1.0, 1.0] + [factor ** ((e - 1) // patience)
                           for e in range(2, epochs)]
  return {"ok": bool(np.allclose(scales, expected)),
          "scales_per_epoch": scales.tolist(), "expected": expected}
