"""The metric protocol: how a validation metric reaches a strategy.

Validation happens once per evaluation (say, per epoch) while updates happen
every step. A strategy that reacts to the *value* it is passed on each update
(as ``optax.contrib.reduce_on_plateau`` does) counts steps instead of
evaluations when the epoch's metric is fed to every step. Here a measurement
carries the number of the evaluation that produced it::

    Measurement(value=val_loss, count=k)   # k = 1, 2, 3, ... per evaluation

A strategy remembers the last ``count`` it has reacted to and reacts only when
it sees a larger one. So the same measurement can be passed on every step (in a
Python loop, inside ``lax.scan``, through ``nnx.Optimizer.update`` or
``optax.MultiSteps``, which may call the update several times per measurement
or drop mini-steps), evaluations may come at irregular intervals, and
``count = 0`` (``no_measurement()``) means "nothing measured yet".
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

METRIC_KWARG = "metric"


class Measurement(NamedTuple):
  """A validation metric and the number of the evaluation that produced it."""
  value: jax.Array  # scalar; stored and compared in float32
  count: jax.Array  # scalar int32; 1 for the first evaluation, 0 for none yet


def measurement(value: Any, count: Any) -> Measurement:
  """Builds a :class:`Measurement` with the protocol's dtypes.

  Args:
    value: the validation metric (loss, accuracy, ...), a scalar.
    count: how many evaluations have happened, including this one (1 for the
      first). A strategy reacts once to each count larger than the last it saw.

  Returns:
    ``Measurement(float32 scalar, int32 scalar)``.

  Example::

    m = lrtransfer.measurement(val_loss, epoch + 1)
    updates, state = tx.update(grads, state, params, metric=m)

  A strategy reacts to ``m`` at an update iff ``m.count > last_count``, the
  largest count it has reacted to (0 initially).

  References:
    The trap this avoids: ``optax.contrib.reduce_on_plateau`` reads ``value``
    on every update unless ``accumulation_size`` is set,
    https://optax.readthedocs.io/en/latest/api/contrib.html
  """
  return Measurement(jnp.asarray(value, jnp.float32),
                     jnp.asarray(count, jnp.int32))


def no_measurement() -> Measurement:
  """The measurement to pass before the first evaluation (count 0)."""
  return measurement(jnp.nan, 0)


def read_measurement(extra_args: Mapping[str, Any], who: str) -> Measurement:
  """Validates and normalises the ``metric`` extra argument at trace time.

  Raises:
    ValueError: the metric is missing or not a scalar.
    TypeError: a bare number was passed instead of a ``Measurement``.
  """
  if METRIC_KWARG not in extra_args:
    raise ValueError(
        f"{who} needs the validation metric: call update(..., "
        f"{METRIC_KWARG}=lrtransfer.measurement(value, count)) where count is "
        "the number of evaluations so far (pass lrtransfer.no_measurement() "
        "before the first evaluation).")
  metric = extra_args[METRIC_KWARG]
  if not isinstance(metric, Measurement):
    raise TypeError(
        f"{who} expects {METRIC_KWARG}=lrtransfer.measurement(value, count), "
        f"got {type(metric).__name__}. A bare value cannot tell a new "
        "evaluation from the same one fed again on the next step; the count "
        "says which evaluation produced it.")
  value = jnp.asarray(metric.value)
  count = jnp.asarray(metric.count)
  if value.shape != ():
    raise ValueError(
        f"{who}: the metric value must be a scalar, got shape {value.shape}. "
        "Reduce it (e.g. the mean validation loss) before passing it.")
  if count.shape != ():
    raise ValueError(
        f"{who}: the measurement count must be a scalar, got shape "
        f"{count.shape}.")
  if not jnp.issubdtype(count.dtype, jnp.integer):
    raise TypeError(
        f"{who}: the measurement count must be an integer, got dtype "
        f"{count.dtype}.")
  return Measurement(value.astype(jnp.float32), count.astype(jnp.int32))
