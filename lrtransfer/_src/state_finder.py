"""Finding the state of a given transformation inside an optimizer state.

An optimizer state is a tree of the states of chained and wrapped
transformations (``optax.chain``, ``optax.partition``, ``optax.MultiSteps``,
``optax.apply_if_finite``, ``nnx.Optimizer``). The inspection functions, the
recipes' per-level rates and :func:`lrtransfer.unfrozen_levels` all need
"every state of type T in there"; :func:`find_states` is that search, done by
``optax.tree_utils.tree_get_all_with_path`` (which matches a NamedTuple by
its class name and reports optax key paths, ``NamedTupleKey`` included).
"""

from __future__ import annotations

import sys
from typing import Any, Union

import optax

KeyPath = tuple  # a tuple of jax.tree_util / optax.tree_utils key entries


def pure_state(state: Any) -> Any:
  """``state`` with ``nnx.Optimizer`` and NNX variables unwrapped.

  Accepts an ``nnx.Optimizer`` (its ``opt_state`` is used) or any optimizer
  state; NNX variable wrappers (``nnx.OptArray``) become their arrays. Flax
  is only consulted when it is already imported: without it no state can
  hold NNX objects.
  """
  if hasattr(state, "opt_state") and hasattr(state, "tx"):
    state = state.opt_state
  nnx = sys.modules.get("flax.nnx")
  return state if nnx is None else nnx.as_pure(state)


def find_states(state: Any, kind: Union[type, tuple[type, ...]]
                ) -> list[tuple[KeyPath, Any]]:
  """Every NamedTuple state of type ``kind`` inside ``state``, with its path.

  Args:
    state: an optimizer state or an ``nnx.Optimizer`` (unwrapped by
      :func:`pure_state`).
    kind: a NamedTuple state class, or a tuple of them.

  Returns:
    ``[(path, found_state), ...]``: the states of the first class of ``kind``
    first, then those of the next; for one class, outer states before the
    ones nested inside them. ``path`` is an optax key path (see
    ``optax.tree_utils.tree_get_all_with_path``); the arrays are unwrapped.

  Example::

    tx = optax.chain(lrtransfer.gradual_unfreeze(10), optax.sgd(0.1))
    find_states(tx.init(params), UnfreezeState)  # [((SequenceKey(0),), ...)]
  """
  state = pure_state(state)
  kinds = kind if isinstance(kind, tuple) else (kind,)
  found: list[tuple[KeyPath, Any]] = []
  for cls in kinds:
    # The key matches a NamedTuple class *name* (or a dict key or field of
    # that name): the isinstance filter keeps only real states of the class.
    found += optax.tree_utils.tree_get_all_with_path(
        state, cls.__name__,
        filtering=lambda _, node, cls=cls: isinstance(node, cls))
  return found


def find_named_states(state: Any, names: tuple[str, ...]
                      ) -> list[tuple[KeyPath, Any]]:
  """Like :func:`find_states`, for NamedTuple states given by class name.

  For states of other libraries whose classes are not all exported (optax
  keeps e.g. ``ScaleByRmsWithCountState`` private): a name that no class
  in ``state`` has matches nothing.
  """
  state = pure_state(state)
  found: list[tuple[KeyPath, Any]] = []
  for name in names:
    found += optax.tree_utils.tree_get_all_with_path(
        state, name,
        filtering=lambda _, node, name=name: (
            type(node).__name__ == name and hasattr(node, "_fields")))
  return found
