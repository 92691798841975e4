"""Gradual unfreezing and head-first (LP-FT) training under jit."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import state_finder
from lrtransfer._src.transfer import definition_order
from lrtransfer._src.transfer.depths import DepthSpec, resolve_depths

_INT32_MAX = int(jnp.iinfo(jnp.int32).max)

# open_levels_fn(count, num_levels) -> int32 scalar in [0, num_levels]: how
# many depth levels, counted from the top, the update at step `count` trains.
# `num_levels` is a Python int known at trace time.
OpenLevelsFn = Callable[[jax.Array, int], jax.Array]


class UnfreezeState(NamedTuple):
  """State of :func:`gradual_unfreeze` and :func:`head_first`."""
  count: jax.Array  # int32 scalar: updates so far, saturating at int32 max.
  num_open: jax.Array  # int32 scalar: depth levels the *next* update trains.
  # int32 scalar: depth levels of the whole tree. Constant; kept so that
  # lrtransfer.learning_rates can list every level's rate from the state.
  num_levels: jax.Array


def _check_int(name: str, value: Any, minimum: int) -> None:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or not minimum <= value <= _INT32_MAX):
    raise ValueError(
        f"{name} must be an int in [{minimum}, {_INT32_MAX}], "
        f"got {name}={value!r}.")


def _num_levels(levels: list[int]) -> int:
  return max(levels) - min(levels) + 1 if levels else 0


def _masking_transform(
    open_levels_fn: OpenLevelsFn,
    depths: DepthSpec,
    name: str,
    head_only: bool,
) -> optax.GradientTransformationExtraArgs:
  """Zeroes the updates of every leaf deeper than the open levels.

  A leaf of depth ``d`` is trainable at step ``t`` iff
  ``top - d < open_levels_fn(t, num_levels)``; the count is the only state.
  ``head_only``: the schedule opens the head alone or every level, so only
  the head must be known, not the body's order.
  """
  depths = definition_order.as_depth_spec(depths, name)

  def init_fn(params):
    definition_order.check_known_order(params, depths, name,
                                       head_only=head_only)
    num_levels = _num_levels(resolve_depths(params, depths).levels)
    count = jnp.zeros([], jnp.int32)
    return UnfreezeState(count=count,
                         num_open=open_levels_fn(count, num_levels),
                         num_levels=jnp.asarray(num_levels, jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    leaf_depths, levels = resolve_depths(updates, depths)
    top = max(levels, default=0)
    num_levels = _num_levels(levels)
    num_open = open_levels_fn(state.count, num_levels)
    # A select, not a multiply by 0/1: a NaN gradient stays out of frozen
    # layers, and their optimizer state (momentum) sees exact zeros.
    masked = [
        jnp.where(top - depth < num_open, leaf, jnp.zeros_like(leaf))
        for leaf, depth in zip(leaves, leaf_depths)
    ]
    count = optax.safe_increment(state.count)
    new_state = UnfreezeState(count=count,
                              num_open=open_levels_fn(count, num_levels),
                              num_levels=state.num_levels)
    return jax.tree_util.tree_unflatten(treedef, masked), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def gradual_unfreeze(
    every_steps: int,
    depths: DepthSpec = None,
    start_open: int = 1,
) -> optax.GradientTransformationExtraArgs:
  r"""Gradual unfreezing: opens one more depth level every ``every_steps``.

  At step :math:`t` (the number of updates done before this one) the top

  .. math::

    n_t = \min\!\left(\text{start\_open} + \lfloor t / \text{every\_steps}
    \rfloor,\; L\right)

  depth levels are trainable, the head first; :math:`L` is the number of
  levels. A leaf of depth :math:`d` passes its update through iff
  :math:`d_\text{top} - d < n_t`; every other leaf gets an exact zero update.
  The step count lives in the state (int32, saturating), so the schedule runs
  under ``jax.jit`` and ``lax.scan`` without rebuilding the optimizer or
  resetting its state.

  Place it *before* SGD-momentum:
  ``optax.chain(gradual_unfreeze(k), optax.sgd(lr, momentum=0.9), ...)``.
  Frozen layers then feed zeros into the momentum trace, so they accumulate
  none, their parameters stay bit-identical, and a layer's first update when
  it opens is exactly plain SGD's from zero momentum. Placed after the
  optimizer, momentum would build up in frozen layers and be released all at
  once when they open. (An optimizer that moves a parameter whose gradient
  is zero, e.g. AdamW's decoupled weight decay, still moves frozen layers:
  give it ``mask=``. BatchNorm's running statistics are not parameters and
  still update in training mode.)

  ``state.num_open`` holds the number of levels the next update trains, for
  logging (see :func:`unfrozen_levels`).

  Args:
    every_steps: updates between two openings, an int >= 1. ULMFiT opens one
      layer per epoch: pass the number of steps per epoch.
    depths: the depth of each parameter: ``lrtransfer.layer_depths(model)``
      (the order in which the model defines its layers, which its
      name-sorted ``nnx.State`` does not tell), the ``nnx.Module`` itself,
      or a function ``depths(path) -> int``. None: inferred from the tree,
      only where it tells the order itself (layers in lists, the top one
      under a ``head`` key), else ``init`` refuses. Levels are the whole
      tree's, also inside ``optax.masked``.
    start_open: levels open from the first step, an int >= 1 (1: the head).

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: ``every_steps`` or ``start_open`` is not a positive int;
      at ``init``, ``depths`` is None and the parameter tree does not tell
      its layers' order.

  Example::

    depths = lrtransfer.layer_depths(model)
    tx = optax.chain(gradual_unfreeze(steps_per_epoch, depths=depths),
                     optax.sgd(1e-2, momentum=0.9))
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)

  References:
    Howard & Ruder, `Universal Language Model Fine-tuning for Text
    Classification <https://arxiv.org/abs/1801.06146>`_, 2018.
  """
  _check_int("every_steps", every_steps, 1)
  _check_int("start_open", start_open, 1)

  def open_levels(count: jax.Array, num_levels: int) -> jax.Array:
    # Clip before adding so that a saturated count cannot overflow int32.
    opened = jnp.minimum(count // every_steps, num_levels) + start_open
    return jnp.minimum(opened, num_levels).astype(jnp.int32)

  return _masking_transform(open_levels, depths, "gradual_unfreeze",
                            head_only=False)


def head_first(
    probe_steps: int,
    depths: DepthSpec = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Head-first training (LP-FT): linear probe, then fine-tune everything.

  .. math::

    n_t = \begin{cases} 1 & t < \text{probe\_steps} \\
                        L & \text{otherwise} \end{cases}

  For the first ``probe_steps`` updates only the top depth level (the head)
  trains; afterwards all :math:`L` levels do. It is the same masking
  transformation as :func:`gradual_unfreeze` with a two-phase schedule, so
  it shares its state, its logging field ``num_open`` and its placement:
  *before* SGD-momentum, so the body starts fine-tuning from zero momentum.

  Args:
    probe_steps: number of head-only updates, an int >= 0 (0: fine-tune from
      the first step).
    depths: as in :func:`gradual_unfreeze`; None also works for a tree
      whose top layer sits under a ``head`` key, whatever the body's order.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: ``probe_steps`` is not a non-negative int; at ``init``,
      ``depths`` is None and the parameter tree does not tell its head.

  Example::

    tx = optax.chain(head_first(500, depths=lrtransfer.layer_depths(model)),
                     optax.sgd(1e-2, momentum=0.9))

  References:
    Kumar, Raghunathan, Jones, Ma & Liang, `Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution
    <https://arxiv.org/abs/2202.10054>`_, 2022.
  """
  _check_int("probe_steps", probe_steps, 0)

  def open_levels(count: jax.Array, num_levels: int) -> jax.Array:
    return jnp.where(count < probe_steps, min(1, num_levels),
                     num_levels).astype(jnp.int32)

  return _masking_transform(open_levels, depths, "head_first",
                            head_only=True)


def unfrozen_levels(opt_state: Any) -> Union[int, jax.Array]:
  """Number of depth levels the next update trains, found in ``opt_state``.

  Looks for the :class:`UnfreezeState` of a :func:`gradual_unfreeze` or
  :func:`head_first` anywhere in a (chained, wrapped) optimizer state, an
  ``nnx.Optimizer`` or its ``opt_state``. Levels count from the top: 1 is
  the head only.

  Args:
    opt_state: an optimizer state (or ``nnx.Optimizer``) containing exactly
      one ``UnfreezeState``.

  Returns:
    Outside ``jax.jit``, a Python ``int``. Under ``jax.jit`` (a traced
    state), or for the stacked states of several runs, the int32 array
    ``num_open``.

  Raises:
    ValueError: there is no ``UnfreezeState``, or more than one.

  Example::

    tx = optax.chain(gradual_unfreeze(100, depths=depths),
                     optax.sgd(1e-2, momentum=0.9))
    unfrozen_levels(tx.init(params))  # 1: the head only
  """
  found = state_finder.find_states(opt_state, UnfreezeState)
  if len(found) != 1:
    raise ValueError(
        "unfrozen_levels expects exactly one gradual_unfreeze/head_first "
        f"state in opt_state, found {len(found)}.")
  num_open = found[0][1].num_open
  if isinstance(num_open, jax.core.Tracer) or jnp.ndim(num_open):
    return num_open
  return int(num_open)
