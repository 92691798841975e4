"""Which depth (layer index) each parameter leaf belongs to.

The transfer tools (layer-wise rates, gradual unfreezing, head-first training)
all act per *depth level*. A depth is a Python ``int`` attached to each leaf
of the parameter tree; larger means closer to the output. It is a function of
the tree's *structure* only, so the tools evaluate it at trace time and bake
the result into the compiled update as Python constants.

The default convention is the one of our Flax NNX MLP: leaves under
``('hidden', i, ...)`` have depth ``i`` and leaves under ``('head', ...)``
have the top depth, ``1 + max(i)`` (the number of hidden layers). Any other
model passes ``depth_fn(path) -> int``, where ``path`` is the leaf's path as a
tuple of plain Python keys (see :func:`normalize_path`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable
from typing import Any

import jax

DepthFn = Callable[[tuple[Hashable, ...]], int]

HIDDEN_KEY = "hidden"
HEAD_KEY = "head"


def normalize_path(path: tuple[Any, ...]) -> tuple[Hashable, ...]:
  """Turns a JAX key path into a tuple of plain Python keys.

  ``DictKey('hidden')`` becomes ``'hidden'``, ``SequenceKey(0)`` becomes ``0``,
  ``GetAttrKey('kernel')`` becomes ``'kernel'``. A trailing
  ``GetAttrKey('value')`` (the array inside an ``nnx.Variable`` such as
  ``nnx.Param``) is dropped, so that a Param-wrapped ``nnx.State`` (what
  ``nnx.Optimizer`` passes to ``init``) and its pure form (what it passes to
  ``update``) give the same paths.

  Args:
    path: a key path from ``jax.tree_util.tree_flatten_with_path``.

  Returns:
    The path as a tuple such as ``('hidden', 0, 'kernel')``.
  """
  keys: list[Hashable] = []
  for entry in path:
    if isinstance(entry, jax.tree_util.DictKey):
      keys.append(entry.key)
    elif isinstance(entry, jax.tree_util.GetAttrKey):
      keys.append(entry.name)
    elif isinstance(entry, jax.tree_util.SequenceKey):
      keys.append(entry.idx)
    elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
      keys.append(entry.key)
    else:  # A custom key type: keep it as it is.
      keys.append(entry)
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and (
      path[-1].name == "value"):
    keys.pop()
  return tuple(keys)


def _as_index(key: Hashable) -> int | None:
  """``0``, ``np.int64(0)`` or ``'0'`` -> ``0``; anything else -> None."""
  if isinstance(key, bool):
    return None
  if isinstance(key, numbers.Integral):
    return int(key)
  if isinstance(key, str) and key.isdigit():
    return int(key)
  return None


def _hidden_index(path: tuple[Hashable, ...]) -> int | None:
  for position, key in enumerate(path[:-1]):
    if key == HIDDEN_KEY:
      return _as_index(path[position + 1])
  return None


def is_head_path(path: tuple[Hashable, ...]) -> bool:
  """Whether a normalized path lies under a ``'head'`` key."""
  return any(isinstance(key, str) and key == HEAD_KEY for key in path)


def _paths(tree: Any) -> list[tuple[Hashable, ...]]:
  return [normalize_path(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _default_depth_fn(tree: Any) -> DepthFn:
  """The hidden/head convention, with the head's depth read off ``tree``."""
  top = 1 + max((i for i in map(_hidden_index, _paths(tree)) if i is not None),
                default=-1)

  def depth(path: tuple[Hashable, ...]) -> int:
    index = _hidden_index(path)
    if index is not None:
      return index
    if is_head_path(path):
      return top
    raise ValueError(
        f"Cannot assign a depth to the parameter at path {path!r}: the "
        f"default convention expects paths under ({HIDDEN_KEY!r}, <int>, "
        f"...) or ({HEAD_KEY!r}, ...). Pass depth_fn(path) -> int for "
        "other models.")

  return depth


def _checked(depth_fn: DepthFn) -> DepthFn:
  def depth(path: tuple[Hashable, ...]) -> int:
    value = depth_fn(path)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      raise ValueError(
          f"depth_fn must return a Python int, got {value!r} for the "
          f"parameter at path {path!r}.")
    return int(value)

  return depth


def _resolve(tree: Any, depth_fn: DepthFn | None) -> DepthFn:
  return _default_depth_fn(tree) if depth_fn is None else _checked(depth_fn)


def leaf_depths(tree: Any, depth_fn: DepthFn | None = None) -> list[int]:
  """Depths of ``jax.tree.leaves(tree)``, in the same order.

  Args:
    tree: a parameter-shaped pytree (params, grads or updates).
    depth_fn: optional ``depth_fn(path) -> int`` on normalized paths; None
      uses the ``hidden``/``head`` convention.

  Returns:
    A list of Python ints, one per leaf.
  """
  depth = _resolve(tree, depth_fn)
  return [depth(path) for path in _paths(tree)]


def layer_depths(params: Any, depth_fn: DepthFn | None = None) -> Any:
  """Depth of every parameter leaf, as a pytree of Python ints.

  Default convention (our NNX MLP): ``('hidden', i, ...)`` has depth ``i``;
  ``('head', ...)`` has depth ``top = 1 + max(i)``, the number of hidden
  layers. Works on ``nnx.State`` (Param-wrapped or pure) and on plain nested
  dicts or lists.

  Args:
    params: the parameter tree.
    depth_fn: optional ``depth_fn(path) -> int`` for other models, where
      ``path`` is a tuple of plain keys such as ``('encoder', 3, 'kernel')``.

  Returns:
    A pytree with the structure of ``params`` whose leaves are Python ints.

  Raises:
    ValueError: a leaf fits neither the default convention nor, with
      ``depth_fn``, maps to an int.

  Example::

    params = {'hidden': {0: {'kernel': jnp.ones((2, 3))}},
              'head': {'kernel': jnp.ones((3, 1))}}
    layer_depths(params)
    # -> {'head': {'kernel': 1}, 'hidden': {0: {'kernel': 0}}}
  """
  depth = _resolve(params, depth_fn)
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: depth(normalize_path(path)), params)
