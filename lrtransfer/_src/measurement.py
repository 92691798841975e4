"""The metric protocol: how validation metrics reach a strategy.

Validation happens once per evaluation (say, per epoch) while updates happen
every step. A strategy that reacts to the *value* it is passed on each update
(as ``optax.contrib.reduce_on_plateau`` does) counts steps instead of
evaluations when the epoch's metric is fed to every step. Here a measurement
carries the named values of one evaluation and the number of that
evaluation::

    measurement(val_loss, k)                     # one value, named "value"
    measurement(count=k, monitor="val_loss",     # several named values
                val_loss=..., val_accuracy=..., train_loss=...)

A strategy remembers the last ``count`` it has reacted to and reacts only when
it sees a larger one. So the same measurement can be passed on every step (in a
Python loop, inside ``lax.scan``, through ``nnx.Optimizer.update`` or
``optax.MultiSteps``, which may call the update several times per measurement
or drop mini-steps), evaluations may come at irregular intervals, and
``count = 0`` (``no_measurement()``) means "nothing measured yet".

Counts that go back: a strategy ignores any count not larger than the last it
reacted to, so continuing with the optimizer state of an earlier run while
restarting the count at 1 silently freezes the strategy until the count passes
the old one. Start a new run with a fresh ``tx.init(params)``, keep counting
from the old count, or check with :func:`check_count_order`.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

METRIC_KWARG = "metric"
MODES = ("min", "max")
INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Measurement:
  """The named values of one evaluation and the number of that evaluation.

  A pytree: ``values`` and ``count`` are its leaves; ``monitor`` and ``mode``
  are static, so measurements with the same names, monitor and mode share a
  tree structure (a ``lax.scan`` carry or a jitted step does not retrace).
  Build one with :func:`measurement` (which checks its inputs) rather than
  directly.

  Attributes:
    values: name -> float32 scalar, every value of the evaluation (e.g.
      ``"val_loss"``, ``"train_loss"``, ``"val_accuracy"``).
    count: int32 scalar, the number of this evaluation (1 for the first;
      0 for none yet, see :func:`no_measurement`). A strategy reacts when it
      grows, once per evaluation however many updates see it.
    monitor: the name in ``values`` that strategies judge unless told
      otherwise; the property ``value`` reads it.
    mode: ``"min"`` (a loss) or ``"max"`` (an accuracy) for ``monitor``.
  """
  values: dict[str, jax.Array]  # name -> float32 scalar
  count: jax.Array  # int32 scalar; 1 for the first evaluation, 0 for none yet
  monitor: str = "value"  # the value strategies judge unless told otherwise
  mode: str = "min"  # "min" (a loss) or "max" (an accuracy) for `monitor`

  @property
  def value(self) -> jax.Array:
    """The monitored value, ``values[monitor]``."""
    return self.values[self.monitor]


jax.tree_util.register_dataclass(
    Measurement, data_fields=["values", "count"],
    meta_fields=["monitor", "mode"])


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _checked_count(count: Any) -> jax.Array:
  """An int32 scalar from an integer in [0, int32 max] (ValueError else)."""
  if count is None:
    raise ValueError("measurement needs count=, the number of evaluations "
                     "so far including this one (1 for the first).")
  if isinstance(count, bool) or isinstance(count, str):
    raise ValueError(f"count must be an integer >= 0, got count={count!r}")
  if isinstance(count, numbers.Number):
    if not isinstance(count, numbers.Integral):
      raise ValueError(
          f"count must be an integer >= 0, got count={count!r}")
    if not 0 <= count <= INT32_MAX:
      raise ValueError(
          f"count must be an integer in [0, {INT32_MAX}], got count={count!r}")
    return jnp.asarray(count, jnp.int32)
  dtype = getattr(count, "dtype", None)
  shape = getattr(count, "shape", None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.integer) or (
      jnp.issubdtype(dtype, jnp.bool_)):
    raise ValueError(
        f"count must be an integer >= 0, got count={count!r}")
  if shape != ():
    raise ValueError(f"count must be a scalar, got shape {shape}")
  if _is_concrete(count):
    as_int = int(np.asarray(count))
    if not 0 <= as_int <= INT32_MAX:
      raise ValueError(
          f"count must be an integer in [0, {INT32_MAX}], got count={as_int}")
  return jnp.asarray(count).astype(jnp.int32)


def _checked_value(name: str, value: Any) -> jax.Array:
  if isinstance(value, (str, bytes, bool)) or value is None:
    raise ValueError(f"measurement value {name} must be a number, got "
                     f"{name}={value!r}")
  array = jnp.asarray(value)
  if jnp.iscomplexobj(array):
    raise ValueError(f"measurement value {name} must be a real number, got "
                     f"{name}={value!r}")
  if array.shape != ():
    raise ValueError(
        f"measurement value {name} must be a scalar, got shape {array.shape}."
        " Reduce it (e.g. its mean over the batches) before passing it.")
  return array.astype(jnp.float32)


def _default_monitor(names) -> str:
  if "value" in names:
    return "value"
  if len(names) == 1:
    return next(iter(names))
  raise ValueError(
      "a measurement with several values needs monitor=, the name of the "
      f"value strategies judge; got values {sorted(names)}.")


def resolve_mode(monitor: str, mode: str) -> str:
  """``"auto"``: max for names containing "acc" in any case (Keras' rule,
  which reads "acc" only in lower case), else min; "min"/"max" as given.
  The one rule of :func:`measurement` and :func:`lrtransfer.train.fit`."""
  if mode == "auto":
    return "max" if "acc" in monitor.lower() else "min"
  if mode not in MODES:
    raise ValueError(f"mode must be 'auto', 'min' or 'max', got mode={mode!r}")
  return mode


def _warn_if_never_judged(count: Any, values: dict[str, Any]) -> None:
  """Count 0 means "no evaluation yet": a real value there is dropped."""
  if not _is_concrete(count) or int(np.asarray(count)) != 0:
    return
  if any(_is_concrete(v) and np.isfinite(np.asarray(v))
         for v in values.values()):
    warnings.warn(
        "measurement with count=0 is never judged: counts start at 1 (pass "
        "epoch + 1 for an epoch counted from 0); before the first evaluation "
        "pass lrtransfer.no_measurement()", UserWarning, stacklevel=3)


def _check_monitor_and_mode(monitor: str, mode: str, names) -> None:
  if monitor not in names:
    raise ValueError(
        f"monitor={monitor!r} names no value of this measurement; it has "
        f"{sorted(names)}.")
  if mode not in MODES:
    raise ValueError(f"mode must be 'min' or 'max', got mode={mode!r}")


def measurement(value: Any = None, count: Any = None, *,
                monitor: Optional[str] = None, mode: str = "auto",
                **values: Any) -> Measurement:
  """Builds a :class:`Measurement` with the protocol's dtypes.

  Args:
    value: a single metric (loss, accuracy, ...), a scalar, stored under the
      name ``"value"``. Optional when named values are given.
    count: how many evaluations have happened, including this one (1 for the
      first), an integer in [0, 2**31 - 1], traced or not. A strategy reacts
      once to each count larger than the largest it has seen.
    monitor: the name of the value strategies judge unless they are told
      otherwise (their ``monitor=``). Default: ``"value"``, or the only value.
    mode: "min" if a smaller ``monitor`` is better, "max" if larger is;
      "auto" (default): "max" when the monitor's name contains "acc"
      (Keras' rule, as :func:`lrtransfer.train.fit`), else "min".
    **values: named scalar values, e.g. ``val_loss=``, ``val_accuracy=``,
      ``train_loss=`` (the names ``lrtransfer.train.fit`` feeds).

  Returns:
    The :class:`Measurement` of float32 scalar values by name, an int32
    scalar count, the monitor and the mode.

  Raises:
    ValueError: a count that is not an integer in [0, 2**31 - 1], a value that
      is not a real scalar number, no value at all, a ``monitor`` naming no
      value, a ``mode`` other than "auto"/"min"/"max".

  Warns:
    UserWarning: a finite value with ``count=0``, which is never judged (a
    0-based epoch passed as the count).

  Example::

    m = lrtransfer.measurement(val_loss, epoch + 1)   # epoch counted from 0
    m = lrtransfer.measurement(count=epoch + 1, monitor="val_loss",
                               val_loss=vl, val_accuracy=va, train_loss=tl)
    updates, state = tx.update(grads, state, params, metric=m)

  References:
    The trap this avoids: ``optax.contrib.reduce_on_plateau`` reads ``value``
    on every update unless ``accumulation_size`` is set,
    https://optax.readthedocs.io/en/latest/api/contrib.html
  """
  if value is not None:
    values = {"value": value, **values}
  if not values:
    raise ValueError("measurement needs a value: measurement(value, count) "
                     "or measurement(count=k, name=value, ...).")
  checked_count = _checked_count(count)
  checked = {name: _checked_value(name, v) for name, v in values.items()}
  _warn_if_never_judged(count, values)
  monitor = _default_monitor(checked) if monitor is None else monitor
  if isinstance(monitor, str):
    mode = resolve_mode(monitor, mode)
  _check_monitor_and_mode(monitor, mode, checked)
  return Measurement(checked, checked_count, monitor, mode)


def no_measurement(*names: str, monitor: Optional[str] = None,
                   mode: str = "auto") -> Measurement:
  """The measurement to pass before the first evaluation (count 0).

  Its values are NaN and never judged; it has the tree structure of the
  measurements that follow when given the same names, monitor and mode, so a
  scan carry or a jitted step keeps one structure.

  Args:
    *names: the names of the values (default: ``"value"``).
    monitor, mode: as in :func:`measurement`.

  Returns:
    A :class:`Measurement` with count 0.

  Example::

    lrtransfer.no_measurement()         # matches measurement(v, k)
    lrtransfer.no_measurement("val_loss", "val_accuracy", "train_loss",
                              monitor="val_loss")  # matches train.fit's
  """
  names = names or ("value",)
  return measurement(count=0, monitor=monitor, mode=mode,
                     **{name: jnp.nan for name in names})


def check_count_order(metric: Measurement, last_count: jax.Array) -> None:
  """Debug check: fails at run time when a count goes back.

  Uses ``jax.debug.callback``, so it works under ``jit`` and ``scan``; costs a
  host round trip per call, so use it while debugging, not in production.
  ``last_count`` is the count a strategy last reacted to
  (``state.plateau.last_count`` of ``adjust``/``dynamic``).

  Args:
    metric: the measurement about to be passed to ``update``.
    last_count: the strategy's last count, an int32 scalar.

  Returns:
    None; the check runs as a side effect when the computation runs.

  Raises:
    ValueError: raised from the callback, when the computation runs, if
      ``0 < metric.count < last_count``.

  Example::

    lrtransfer.check_count_order(metric, state[1].plateau.last_count)
  """
  def _check(count, last):
    if 0 < int(count) < int(last):
      raise ValueError(
          f"measurement count went back from {int(last)} to {int(count)}: "
          "the strategy ignores counts it has already passed. Start a new "
          "run with a fresh tx.init(params), or keep counting.")
  jax.debug.callback(_check, metric.count, last_count)


def read_measurement(metric: Any, who: str) -> Measurement:
  """Validates and normalises the ``metric`` argument at trace time (None:
  it was not passed).

  Raises:
    ValueError: the metric is missing or a value is not a scalar.
    TypeError: a bare number was passed instead of a ``Measurement``, or the
      count is not an integer.
  """
  if metric is None:
    raise ValueError(
        f"{who} needs the validation metric: call update(..., "
        f"{METRIC_KWARG}=lrtransfer.measurement(value, count)) where count is "
        "the number of evaluations so far (pass lrtransfer.no_measurement() "
        "before the first evaluation).")
  if not isinstance(metric, Measurement):
    # Under jit a bare float arrives as a tracer: name what the user passed.
    got = ("a bare number or array" if isinstance(
        metric, (int, float, np.ndarray, jax.Array)) else
           type(metric).__name__)
    raise TypeError(
        f"{who} expects {METRIC_KWARG}=lrtransfer.measurement(value, count), "
        f"got {got}. A bare value cannot tell a new "
        "evaluation from the same one fed again on the next step; the count "
        "says which evaluation produced it.")
  if not isinstance(metric.values, Mapping) or not metric.values:
    raise TypeError(
        f"{who}: Measurement.values must be a non-empty dict name -> scalar, "
        f"got {type(metric.values).__name__}; build measurements with "
        "lrtransfer.measurement(...).")
  values = {}
  for name, v in metric.values.items():
    v = jnp.asarray(v)
    if v.shape != ():
      raise ValueError(
          f"{who}: the metric value {name!r} must be a scalar, got shape "
          f"{v.shape}. Reduce it (e.g. its mean over the batches) "
          "before passing it.")
    values[name] = v.astype(jnp.float32)
  count = jnp.asarray(metric.count)
  if count.shape != ():
    raise ValueError(
        f"{who}: the measurement count must be a scalar, got shape "
        f"{count.shape}.")
  if not jnp.issubdtype(count.dtype, jnp.integer):
    raise TypeError(
        f"{who}: the measurement count must be an integer, got dtype "
        f"{count.dtype}.")
  return Measurement(values, count.astype(jnp.int32), metric.monitor,
                     metric.mode)


def monitored(metric: Measurement, monitor: Optional[str],
              mode: Optional[str], who: str) -> tuple[jax.Array, float]:
  """The judged value and its sign (+1 min, -1 max), at trace time.

  ``monitor``/``mode`` None follow the measurement's; a name the measurement
  lacks is a ValueError naming the available ones.
  """
  name = metric.monitor if monitor is None else monitor
  mode = metric.mode if mode is None else mode
  if name not in metric.values:
    raise ValueError(
        f"{who} monitors {name!r}, which this measurement does not have; it "
        f"has {sorted(metric.values)}. Pass monitor= to the strategy or to "
        "lrtransfer.measurement.")
  if mode not in MODES:
    raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
  return metric.values[name], (1.0 if mode == "min" else -1.0)
