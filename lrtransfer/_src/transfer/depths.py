"""Which depth (layer level) each parameter leaf belongs to.

The transfer tools (layer-wise rates, gradual unfreezing, head-first training,
L2-SP's head) all act per *depth level*. A depth is a Python ``int`` attached
to each leaf of the parameter tree; larger means closer to the output. It is
a function of the model's *structure* only, so the tools evaluate it at trace
time and bake the result into the compiled update as Python constants.

The inference rule, for any Flax NNX module, Linen-style params dict or
nested container of arrays:

1. A *layer* is the set of parameters held directly by one node (an
   ``nnx.Linear``'s ``kernel`` and ``bias``, a Linen ``{'kernel', 'bias'}``
   dict). Each element of a list or sequence (``nnx.List``,
   ``nnx.Sequential``, a Python list, a mapping with int keys such as their
   ``nnx.State``) is one layer as a whole, however many sub-modules it
   holds: a stack of blocks gets one level per block.
2. Layers are numbered in the order the model defines them: an NNX module's
   attributes in assignment order (``vars(module)``), a dict in insertion
   order (Linen keeps creation order), sequences by index.
3. A normalisation layer (only ``scale``/``bias`` parameters: BatchNorm,
   LayerNorm, RMSNorm) shares the level of the layer before it.
4. The head is the top level: the layer under the key ``head=`` (a name or a
   path prefix), by default one under a key named ``'head'``, else the last
   layer defined.

Only the module knows its definition order: an ``nnx.State`` lists its keys
sorted by name, and so does any dict after a JAX transformation. So the
Optax transformations take ``depths=lrtransfer.layer_depths(model)`` (or
the model, or a function ``depths(path) -> int`` of the normalized path, see
:func:`normalize_path`), and without it infer depths only from a tree that
tells the order by itself, refusing at ``init`` otherwise
(:mod:`lrtransfer._src.transfer.definition_order`); ``lrtransfer.train.fit``
passes the model's depths. ``layer_depths`` refuses an ``nnx.State`` whose
order it would have to guess.

A module rebuilt by ``nnx.merge``, ``nnx.clone`` or ``copy.deepcopy`` lists
its attributes sorted by name, not in definition order. So the depths found
on a module as constructed are remembered on the modules built from it
(:func:`remember_depths`, done by ``lrtransfer.train.fit`` and
``lrtransfer.models.target_from_source``), as static graph metadata that
survives those copies; otherwise compute depths on the module as constructed,
keep the order in the structure (lists of blocks, a ``head``), or pass
``head=``/``depth_fn``.

Inside ``optax.masked`` / ``optax.partition`` a transformation sees a
sub-tree in which the other leaves are ``optax.MaskedNode`` placeholders; the
rule counts those positions, so depths (and the top) are those of the whole
tree, not of the sub-tree.
"""

from __future__ import annotations

import collections.abc
import numbers
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Union

import jax
import optax
from flax import nnx

Path = tuple[Hashable, ...]
DepthFn = Callable[[Path], int]
# A function of the path, or a tree of ints from `layer_depths(model)`.
DepthSpec = Union[DepthFn, Any, None]
# A name, or a path prefix such as ('decoder', 'out').
HeadSpec = Union[str, tuple, None]

HEAD_KEY = "head"
# The module attribute holding remembered depths: ((path, depth), ...).
DEPTHS_ATTR = "lrtransfer_depths"
_NORM_PARAM_NAMES = frozenset({"scale", "bias"})


def normalize_path(path: tuple[Any, ...]) -> Path:
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


def is_head_path(path: Path) -> bool:
  """Whether a normalized path lies under a ``'head'`` key."""
  return any(isinstance(key, str) and key == HEAD_KEY for key in path)


def _is_masked(node: Any) -> bool:
  return isinstance(node, optax.MaskedNode)


def is_namedtuple(node: Any) -> bool:
  """A NamedTuple instance (its fields come in definition order)."""
  return isinstance(node, tuple) and hasattr(node, "_fields")


def _is_int_keyed(node: Any) -> bool:
  """A non-empty mapping whose keys are all ints, e.g. ``{0: ..., 1: ...}``."""
  return (isinstance(node, collections.abc.Mapping) and len(node) > 0
          and all(isinstance(key, int) and not isinstance(key, bool)
                  for key in node))


def is_sequence(node: Any) -> bool:
  """Whether ``node``'s children are ordered by index: a list or tuple (not a
  NamedTuple), an ``nnx.List``/``nnx.Sequential`` module, or a mapping with
  int keys (their state: ``nnx.State`` keeps the indices as int keys)."""
  if isinstance(node, nnx.Module):
    return isinstance(node, collections.abc.Sequence)
  return (isinstance(node, (list, tuple)) and not is_namedtuple(node)
          ) or _is_int_keyed(node)


def children(node: Any) -> list[tuple[Hashable, Any]] | None:
  """Ordered ``(key, child)`` pairs of a container; None for a leaf."""
  if _is_masked(node) or isinstance(node, nnx.Variable):
    return None
  if isinstance(node, nnx.Module):
    if isinstance(node, collections.abc.Sequence):  # nnx.List
      return list(enumerate(node))
    return [(name, value) for name, value in vars(node).items()
            if not name.startswith("_pytree__") and name != DEPTHS_ATTR]
  if _is_int_keyed(node):  # the state of an nnx.List: a sequence by index
    return sorted(node.items())
  if isinstance(node, collections.abc.Mapping):  # dict, nnx.State, FrozenDict
    return list(node.items())
  if is_namedtuple(node):
    return [(name, getattr(node, name)) for name in node._fields]
  if isinstance(node, (list, tuple)):
    return list(enumerate(node))
  return None


def _is_param_leaf(node: Any, in_module: bool) -> bool:
  if node is None or isinstance(node, (str, bytes)) or callable(node) and (
      not isinstance(node, nnx.Variable)):
    return False
  if in_module:  # Of a module's variables only Params are parameters.
    return isinstance(node, nnx.Param)
  if isinstance(node, nnx.Variable):
    return isinstance(node, nnx.Param)
  return True


class _Layer(NamedTuple):
  paths: list  # normalized paths of the layer's leaves (MaskedNode included)
  names: set  # the leaves' last keys, e.g. {'kernel', 'bias'}


def collect_layers(node: Any, prefix: Path, layers: list[_Layer],
                   in_module: bool, seen: set | None = None) -> None:
  """Appends ``node``'s layers to ``layers`` in definition order."""
  entries = children(node)
  if entries is None:
    return
  seen = set() if seen is None else seen
  if isinstance(node, nnx.Module):
    if id(node) in seen:  # a shared module counts where it first appears
      return
    seen.add(id(node))
  in_module = in_module or isinstance(node, nnx.Module)
  ordered_by_index = is_sequence(node)
  direct: _Layer | None = None
  for key, child in entries:
    path = prefix + (key,)
    if children(child) is None:
      if _is_masked(child) or _is_param_leaf(child, in_module):
        if direct is None:
          direct = _Layer([], set())
          layers.append(direct)
        direct.paths.append(path)
        direct.names.add(key)
      continue
    if ordered_by_index:
      # One level per element, whatever it holds.
      inner: list[_Layer] = []
      collect_layers(child, path, inner, in_module, seen)
      if inner:
        layers.append(_Layer([p for layer in inner for p in layer.paths],
                             set().union(*(layer.names for layer in inner))))
    else:
      collect_layers(child, path, layers, in_module, seen)


def matches_head(path: Path, head: HeadSpec) -> bool:
  """Whether ``path`` lies in the head ``head`` names (None: a 'head' key)."""
  if head is None:
    return is_head_path(path)
  if isinstance(head, str):
    return head in path
  head = tuple(head)
  return path[:len(head)] == head


def _infer(tree: Any, head: HeadSpec) -> dict[Path, int]:
  """The rule of the module docstring: normalized path -> depth."""
  layers: list[_Layer] = []
  collect_layers(tree, (), layers, False)
  if not layers:
    return {}
  head_layers = [layer for layer in layers
                 if any(matches_head(p, head) for p in layer.paths)]
  if head is not None and not head_layers:
    raise ValueError(f"head={head!r} names no parameter; parameters are at "
                     f"{[layer.paths[0] for layer in layers]}")
  if not head_layers:
    head_layers = [layers[-1]]
  body = [layer for layer in layers
          if not any(layer is h for h in head_layers)]
  depths: dict[Path, int] = {}
  level = -1
  pending: list[_Layer] = []  # leading norms wait for the next layer's level
  for layer in body:
    if layer.names <= _NORM_PARAM_NAMES:
      if level >= 0:
        depths.update((path, level) for path in layer.paths)
      else:
        pending.append(layer)
      continue
    level += 1
    for member in [*pending, layer]:
      depths.update((path, level) for path in member.paths)
    pending = []
  if pending:  # a body of norms only
    level += 1
    for member in pending:
      depths.update((path, level) for path in member.paths)
  top = level + 1
  for layer in head_layers:
    for path in layer.paths:
      depths[path] = top
  return depths


def _as_depth(value: Any, path: Path, expected: str) -> int:
  """``value`` as an int, or a ValueError naming the path (bools refused)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ValueError(f"{expected}, got {value!r} for the parameter at path "
                     f"{path!r}.")
  return int(value)


def depth_table(depth_tree: Any) -> dict[Path, int]:
  """``{path: depth}`` of a depth tree such as ``layer_depths(model)``."""
  table = {}
  for path, value in jax.tree_util.tree_flatten_with_path(depth_tree)[0]:
    path = normalize_path(path)
    table[path] = _as_depth(value, path, "depths must be a function or a "
                            "tree of ints (from layer_depths(model))")
  return table


def remember_depths(module: nnx.Module, depths: Any) -> None:
  """Stores ``depths`` (a depth tree) on ``module`` for :func:`layer_depths`.

  Static graph metadata: it survives ``nnx.clone``/``nnx.merge``, which
  lose the attributes' definition order the inference rule reads.
  """
  table = tuple((normalize_path(path), int(depth)) for path, depth in
                jax.tree_util.tree_flatten_with_path(depths)[0])
  setattr(module, DEPTHS_ATTR, table)


def _lookup(table: dict[Path, int], path: Path) -> int:
  if path not in table:
    raise ValueError(f"Cannot assign a depth to the parameter at path "
                     f"{path!r}: pass depth_fn(path) -> int.")
  return table[path]


def leaf_positions(tree: Any) -> list[Path]:
  """Paths of every leaf position, MaskedNode placeholders included."""
  return [normalize_path(path) for path, _ in
          jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_masked)[0]]


class Depths(NamedTuple):
  """Depths of a tree's leaves, and the levels of the whole tree."""
  leaves: list  # int per leaf of jax.tree.leaves(tree), in that order
  levels: list  # sorted distinct depths of the whole tree (masked included)


def resolve_depths(tree: Any, depths: DepthSpec = None,
                   head: HeadSpec = None) -> Depths:
  """Depths of ``jax.tree.leaves(tree)`` and the whole tree's levels.

  Args:
    tree: parameters, gradients or updates, possibly with
      ``optax.MaskedNode`` placeholders (inside ``optax.masked``).
    depths: None (the inference rule, whatever order the tree lists its
      keys in: the transformations check that order first, see
      :mod:`definition_order`), ``depths(path) -> int``, or a depth tree
      from :func:`layer_depths`.
    head: the head's key or path prefix for the inference rule.

  Returns:
    A :class:`Depths`.

  Raises:
    ValueError: a depth function returns a non-int, or a depth tree lacks a
      path.
  """
  positions = leaf_positions(tree)
  if depths is None:
    table = _infer(tree, head)
    missing = [p for p in positions if p not in table]
    if missing:  # leaves the walker does not reach (an unknown pytree)
      raise ValueError(
          f"Cannot assign a depth to the parameter at path {missing[0]!r}: "
          "pass depths=lrtransfer.layer_depths(model), or a function "
          "path -> int.")
  elif callable(depths):
    table = {p: _as_depth(depths(p), p,
                          "a depth function must return a Python int")
             for p in positions}
  else:
    table = depth_table(depths)
    for path in positions:
      if path not in table:
        raise ValueError(
            f"depths (a depth tree) has no depth for the parameter at path "
            f"{path!r}: compute it with lrtransfer.layer_depths(model) on the "
            "model whose parameters these are.")
  leaves = [table[normalize_path(path)] for path, _ in
            jax.tree_util.tree_flatten_with_path(tree)[0]]
  levels = sorted(set(table.values()) if depths is None or not callable(
      depths) else set(table[p] for p in positions))
  return Depths(leaves, levels)


def layer_depths(params: Any, depth_fn: DepthSpec = None, *,
                 head: HeadSpec = None) -> Any:
  """Depth of every parameter leaf, as a pytree of Python ints.

  Inference rule (see the module docstring): each parameterised layer is one
  level in definition order, each element of a list/sequence of blocks one
  level, normalisation layers share the level before them, and the head is
  the top level. For our MLP, ``('hidden', i, ...)`` has depth ``i`` and
  ``('head', ...)`` the number of hidden layers.

  Pass the module itself, not its state: NNX sorts a state's keys by name,
  so only the module knows the order of its layers (an ``nnx.State`` whose
  order the rule would have to guess is refused).

  Args:
    params: an ``nnx.Module`` (depths of its ``nnx.Param`` leaves), an
      ``nnx.State`` (Param-wrapped or pure), a Linen-style params dict, or
      any nested dict/list/tuple of arrays.
    depth_fn: overrides the rule: ``depth_fn(path) -> int`` where ``path`` is
      a tuple of plain keys such as ``('encoder', 3, 'kernel')``.
    head: the head's attribute name or path prefix (default: a key named
      ``'head'``, else the layer defined last).

  Returns:
    A pytree of Python ints with the structure of ``params`` (for a module:
    of ``nnx.as_pure(nnx.state(module, nnx.Param))``). Pass it as
    ``depths=`` to :func:`lrtransfer.layerwise_scale` and the other
    transformations.

  Raises:
    ValueError: ``head`` names no parameter, ``depth_fn`` returns a
      non-int, or ``params`` is an ``nnx.State`` whose layers' order only
      its sorted keys would tell.

  Example::

    class CNN(nnx.Module):
      def __init__(self, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)    # depth 0
        self.norm = nnx.BatchNorm(8, rngs=rngs)          # depth 0 (a norm)
        self.blocks = nnx.List([Block(rngs), Block(rngs)])  # depths 1, 2
        self.classifier = nnx.Linear(8, 10, rngs=rngs)   # depth 3, the top
    depths = layer_depths(CNN(nnx.Rngs(0)))
    tx = optax.chain(optax.sgd(0.1), layerwise_scale(0.8, depths=depths))
  """
  if isinstance(params, nnx.Module):
    table = None
    if depth_fn is None:  # remembered depths, else the rule on the module
      remembered = None if head is not None else getattr(
          params, DEPTHS_ATTR, None)
      table = (dict(remembered) if remembered is not None
               else _infer(params, head))
    params = nnx.as_pure(nnx.state(params, nnx.Param))
    if table is not None:
      return jax.tree_util.tree_map_with_path(
          lambda path, _: _lookup(table, normalize_path(path)), params)
  if isinstance(params, nnx.State) and depth_fn is None:
    # Imported here: definition_order builds on this module.
    from lrtransfer._src.transfer import definition_order
    guess = definition_order.guessed_order(params, head)
    if guess is not None:
      raise ValueError(
          f"layer_depths cannot tell the order of the layers at "
          f"{guess[0]!r} from an nnx.State: its keys {guess[1]!r} are sorted "
          "by name. Pass the module itself: lrtransfer.layer_depths(model).")
  depths = resolve_depths(params, depth_fn, head)
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                      depths.leaves)
