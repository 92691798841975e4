"""Reading the current learning-rate scale out of any optimizer state."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrtransfer._src import placement, state_finder
from lrtransfer._src.adjust import AdjustState
from lrtransfer._src.decay import ScheduleScaleState
from lrtransfer._src.dynamic import DynamicState

STRATEGY_STATES = (AdjustState, DynamicState, ScheduleScaleState)


def group_of(path: tuple, partitions: list[tuple]) -> tuple:
  """The partition labels on ``path``: one per ``optax.partition`` crossed.

  ``partitions`` are the key paths of the ``PartitionState`` nodes; below
  each, the path goes ``.inner_states[label]``.
  """
  labels = []
  for partition in partitions:
    if len(path) > len(partition) + 1 and path[:len(partition)] == partition:
      labels.append((len(partition), str(path[len(partition) + 1].key)))
  return tuple(label for _, label in sorted(labels))


def located_strategies(state: Any) -> tuple[list, set]:
  """``[(group, strategy state)]`` and every parameter group's label path."""
  state = state_finder.pure_state(state)
  partitions = state_finder.find_states(state, optax.transforms.PartitionState)
  partition_paths = [path for path, _ in partitions]
  groups = {group_of(path, partition_paths) + (str(label),)
            for path, partition in partitions
            for label in partition.inner_states}
  found = [(group_of(path, partition_paths), strategy_state)
           for path, strategy_state
           in state_finder.find_states(state, STRATEGY_STATES)]
  return found, groups


def strategy_states(state: Any) -> list[Any]:
  """All lrtransfer strategy states found in ``state``.

  Grouped by type (``adjust``'s, then ``dynamic``'s, then ``decay``'s and
  ``schedule_scale``'s), each type in tree order, whatever wraps them: a
  chain, ``optax.MultiSteps``, ``optax.partition``,
  ``optax.apply_if_finite`` or an ``nnx.Optimizer``. The states' fields
  (scale, best value, patience counters, ...) are the strategies' own
  bookkeeping, e.g. to log or to assert in a test.

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.

  Returns:
    A list of :class:`AdjustState`, :class:`DynamicState` and
    :class:`ScheduleScaleState` (``decay`` and ``schedule_scale``) values,
    empty when ``state`` holds no strategy.

  Example::

    tx = optax.chain(optax.sgd(0.1, momentum=0.9), lrtransfer.adjust())
    (adjust_state,) = lrtransfer.strategy_states(tx.init(params))
    adjust_state.scale  # 1.0 before the first evaluation
  """
  return [leaf for _, leaf in located_strategies(state)[0]]


def product_of_scales(states) -> jax.Array:
  """The product of the strategy states' scales (float32; 1 for none)."""
  scale = jnp.ones([], jnp.float32)
  for strategy_state in states:
    scale = scale * jnp.asarray(strategy_state.scale, jnp.float32)
  return scale


def _covers_all(group: tuple, all_groups: list[tuple]) -> bool:
  """Whether a strategy found in ``group`` acts on every parameter group
  (its group is a prefix of each: outside any partition, or a partition's
  only branch)."""
  return all(g[:len(group)] == group for g in all_groups)


def parameter_groups(groups: set) -> list[tuple]:
  """The innermost partition groups (only they hold parameters)."""
  return sorted(g for g in groups
                if not any(other[:len(g)] == g and other != g
                           for other in groups)) or [()]


def group_scales(state: Any, *, missing: Any = 1.0) -> dict[str, jax.Array]:
  """One scale per parameter group of ``optax.partition``.

  A group's scale is the product of the strategies inside that group's
  transformation and of those outside any partition (which act on every
  group). Groups of nested partitions are named ``"outer/inner"``; a state
  without a partition has one group, ``""``.

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.
    missing: the scale of a group that no strategy acts on; None: raise.

  Returns:
    ``{group label: float32 scalar}``, sorted by label.

  Raises:
    ValueError: a group has no strategy and ``missing`` is None.

  Warns:
    UserWarning: a strategy sits before a transformation that normalises
      its input (Adam, RMSProp, Lion, ...), as :func:`current_scale` does.

  Example::

    tx = optax.partition({"body": optax.chain(sgd, lrtransfer.decay(0.9)),
                          "head": optax.chain(sgd, lrtransfer.adjust())},
                         labels)
    lrtransfer.group_scales(state)  # {"body": ..., "head": ...}
  """
  placement.warn_if_normalised(state, "group_scales")
  found, groups = located_strategies(state)
  leaves = parameter_groups(groups)
  out = {}
  for group in leaves:
    acting = [s for g, s in found if group[:len(g)] == g]
    label = "/".join(group)
    if not acting and missing is None:
      raise ValueError(
          f"group_scales: no lrtransfer strategy acts on group {label!r}.")
    out[label] = (product_of_scales(acting) if acting
                  else jnp.asarray(missing, jnp.float32))
  return out


def current_scale(state: Any, *, missing: Any = None) -> jax.Array:
  """The scale the strategies of an optimizer state apply to the rate.

  ``lr_effective = base_lr * current_scale(state)`` for an optimizer
  ``optax.chain(optax.sgd(base_lr, ...), strategy, ...)``: the product of the
  scales of the strategies found (chained strategies multiply). Works on the
  state of a chain, of ``optax.MultiSteps``, ``optax.partition`` and
  ``optax.apply_if_finite``, on an ``nnx.Optimizer`` (or its ``opt_state``),
  and under ``jax.jit``. When a strategy sits inside a group of an
  ``optax.partition`` that has other groups, no single scale is every
  group's rate: that is an error, use :func:`group_scales`.

  The scale is the step's only where the strategy comes after the base
  optimizer. Chained before a transformation that normalises its input
  (``optax.chain(lrtransfer.decay(0.5), optax.adam(1e-2))``: Adam, AdamW,
  RMSProp, Adagrad, Adafactor, Lion, Rprop, ...) the scale is divided out
  again; the state shows that order, and a ``UserWarning`` says where to
  put the strategy (once at trace time under ``jax.jit``).

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.
    missing: the scale to return when the state holds no strategy (e.g.
      1.0 for a constant learning rate); None: raise instead.

  Returns:
    A float32 scalar: the scale the most recent update applied.

  Raises:
    ValueError: the state holds no lrtransfer strategy and ``missing`` is
      None, or a strategy inside one group of an ``optax.partition`` with
      several groups.

  Warns:
    UserWarning: a strategy sits before a transformation that normalises
      its input, so the scale read here is not the step's.

  Example::

    tx = optax.chain(optax.adam(1e-2), lrtransfer.decay(0.5))
    state = tx.init(params)
    lrtransfer.current_scale(state)  # 1.0, then 0.5 ** t
  """
  placement.warn_if_normalised(state, "current_scale")
  return _current_scale(state, missing)


def _current_scale(state: Any, missing: Any) -> jax.Array:
  """:func:`current_scale` without the placement warning."""
  found, groups = located_strategies(state)
  if not found and missing is not None:
    return jnp.asarray(missing, jnp.float32)
  if not found:
    raise ValueError(
        "current_scale: no lrtransfer strategy (decay, schedule_scale, adjust, "
        "dynamic) was found in this optimizer state.")
  all_groups = parameter_groups(groups)
  # A strategy inside one group of a partition with several groups scales
  # that group only: returning its scale as "the" rate would report the
  # head's rate while the body runs at the base rate.
  groups_with_strategy = sorted({"/".join(g) for g, _ in found
                                 if not _covers_all(g, all_groups)})
  if groups_with_strategy:
    raise ValueError(
        "current_scale: strategies sit inside optax.partition groups ("
        f"{', '.join(groups_with_strategy)}) of a partition with groups "
        f"{', '.join('/'.join(g) for g in all_groups)}, so no single "
        "scale is the rate of every group; use lrtransfer.group_scales("
        "state) for one scale per group.")
  return product_of_scales(s for _, s in found)


def common_scale(state: Any) -> jax.Array:
  """The scale every parameter group shares: the product of the strategies
  that act on every group (all of them without an ``optax.partition``; 1.0
  without a strategy). What ``fit`` logs as ``scale``; equal to
  :func:`current_scale` wherever that is defined, and :func:`group_scales`
  has the per-group ones."""
  found, groups = located_strategies(state)
  all_groups = parameter_groups(groups)
  return product_of_scales(s for g, s in found if _covers_all(g, all_groups))


# States whose count is the number of updates a schedule has seen, most
# faithful first: the base optimizer's own schedule counter, then
# inject_hyperparams', then the counters of Adam and of lrtransfer's
# strategies (every one counts the updates applied, also inside
# MultiSteps, which updates its inner state once per gradient step).
STEP_COUNTERS = (
    optax.ScaleByScheduleState,
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
    optax.ScaleByAdamState,
    ScheduleScaleState,
    DynamicState,
)


def update_count(state: Any) -> jax.Array:
  """The number of updates done, read from the first counter found in the
  order of :data:`STEP_COUNTERS` (int32)."""
  found = state_finder.find_states(state, STEP_COUNTERS)
  if not found:
    raise ValueError(
        "effective_learning_rate: a schedule needs the step count, and this "
        "optimizer state has no step counter ("
        + ", ".join(cls.__name__ for cls in STEP_COUNTERS) + "); give the "
        "schedule to the optimizer (optax.sgd(schedule, momentum=0.9) keeps "
        "a ScaleByScheduleState) or pass a number as the base rate.")
  return jnp.asarray(found[0][1].count, jnp.int32)


def effective_learning_rate(
    state: Any, base_learning_rate: float | Callable[[Any], Any]
) -> jax.Array:
  """The rate of the most recent update: base rate times the strategies'
  scale.

  ``base_learning_rate * current_scale(state)`` for a number; for an Optax
  schedule (a function of the step count) ``schedule(t) *
  current_scale(state)`` with ``t = max(count - 1, 0)`` the index of the
  most recent update, ``count`` the updates done so far, as the state's
  ``scale`` is the most recent update's (and ``optax.inject_hyperparams``
  stores that update's hyperparameters). ``count`` is read from the first
  of these states found: ``optax.ScaleByScheduleState`` (what
  ``optax.sgd(schedule)`` and the other aliases keep, the count the
  schedule itself reads), ``optax.InjectHyperparamsState``,
  ``optax.ScaleByAdamState``, then the strategies' own counters
  (:func:`lrtransfer.decay`'s and :func:`lrtransfer.dynamic`'s).

  A strategy chained before a transformation that normalises its input
  (Adam, RMSProp, Lion, ...) has its scale divided out: the rate returned
  is not the step's, and a ``UserWarning`` says where to put the strategy
  (see :func:`current_scale`).

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.
    base_learning_rate: the base optimizer's rate: a number, or the Optax
      schedule given to it.

  Returns:
    A float32 scalar (works under ``jax.jit``).

  Raises:
    ValueError: ``base_learning_rate`` is neither a number nor a callable;
      a schedule with no step counter in the state; the cases of
      :func:`current_scale`.

  Warns:
    UserWarning: a strategy sits before a normalising transformation.

  Example::

    schedule = optax.cosine_decay_schedule(0.1, 1000)
    tx = optax.chain(optax.sgd(schedule, momentum=0.9), lrtransfer.adjust())
    ...
    lrtransfer.effective_learning_rate(state, schedule)
  """
  if callable(base_learning_rate):
    placement.warn_if_normalised(state, "effective_learning_rate")
    step = jnp.maximum(update_count(state) - 1, 0)
    rate = jnp.asarray(base_learning_rate(step), jnp.float32)
    return rate * _current_scale(state, None)
  if isinstance(base_learning_rate, (str, bool)) or not isinstance(
      base_learning_rate, (numbers.Real, np.ndarray, jax.Array)):
    raise ValueError(
        "base_learning_rate must be a number or an Optax schedule (a "
        f"function of the step count), got {base_learning_rate!r}")
  placement.warn_if_normalised(state, "effective_learning_rate")
  return base_learning_rate * _current_scale(state, None)
