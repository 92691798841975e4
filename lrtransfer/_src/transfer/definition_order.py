"""The ``depths=`` argument of the transfer transformations, never guessed.

A transfer transformation sees only the parameter tree. An ``nnx.State``
lists a module's attributes sorted by name, and so does every dict that went
through a JAX transformation (``jax.grad``, ``jax.jit``): a model whose
layers are defined as ``z_in``, ``mid``, ``a_out`` arrives as ``a_out``,
``mid``, ``z_in``. Depths inferred from that order would put the head at the
input, silently. So a transformation infers depths from the tree only when
the tree alone tells the order (:func:`guessed_order` finds none):

* layers in a sequence (a list, ``nnx.List``, ``nnx.Sequential``: their
  state keeps the indices), each element one level whatever it holds;
* the top layer under a key named ``head``, so that besides the head at most
  one entry of each mapping holds parameters (the MLP's ``hidden``/``head``);
* for :func:`lrtransfer.head_first` and :func:`lrtransfer.l2sp`, which only
  tell the head from the body, any tree with a ``head`` key.

Otherwise ``init`` refuses with a ValueError showing the line to add:
``depths=lrtransfer.layer_depths(model)``, which reads the order from the
module itself.
"""

from __future__ import annotations

from typing import Any, Optional

from flax import nnx

from lrtransfer._src.transfer import depths as depths_lib

Path = depths_lib.Path


def as_depth_spec(depths: Any, name: str) -> depths_lib.DepthSpec:
  """Checks a ``depths=`` argument at construction and resolves a model.

  Args:
    depths: None, an ``nnx.Module`` (its :func:`lrtransfer.layer_depths`,
      computed now), a depth tree from :func:`lrtransfer.layer_depths`, or
      a function ``depths(path) -> int``.
    name: the transformation's name, for messages.

  Returns:
    None, a function, or a depth tree.

  Raises:
    ValueError: a depth tree holds something other than Python ints.
  """
  if depths is None:
    return None
  if isinstance(depths, nnx.Module):  # modules are callable: test them first
    return depths_lib.layer_depths(depths)
  if callable(depths):
    return depths
  try:
    depths_lib.depth_table(depths)
  except ValueError as error:
    raise ValueError(
        f"{name}: depths must be the model, lrtransfer.layer_depths(model) "
        f"or a function path -> int; {error}") from None
  return depths


def _non_head_paths(node: Any, prefix: Path, head_paths: set,
                    in_module: bool) -> list[Path]:
  """Paths of the parameters under ``node`` that are not the head's."""
  layers: list = []
  depths_lib.collect_layers(node, prefix, layers, in_module)
  return [path for layer in layers for path in layer.paths
          if path not in head_paths]


def guessed_order(tree: Any, head: depths_lib.HeadSpec = None
                  ) -> Optional[tuple[Path, list]]:
  """Where depths inferred from ``tree`` would rest on the order of keys.

  Args:
    tree: a parameter tree (``nnx.State``, dict, list, ``optax.MaskedNode``
      placeholders included).
    head: the head's key or path prefix (default: a key named ``'head'``).

  Returns:
    None when the tree alone tells every layer's depth; else ``(path,
    keys)`` of the first mapping with two or more entries holding
    parameters outside the head, whose order would decide their depths.
  """
  layers: list = []
  depths_lib.collect_layers(tree, (), layers, False)
  head_paths = {path for layer in layers for path in layer.paths
                if depths_lib.matches_head(path, head)}
  return _first_guess(tree, (), head_paths, False)


def _first_guess(node: Any, prefix: Path, head_paths: set,
                 in_module: bool) -> Optional[tuple[Path, list]]:
  children = depths_lib.children(node)
  if children is None or depths_lib.is_sequence(node):
    return None  # a leaf, or elements ordered by index (one level each)
  in_module = in_module or isinstance(node, nnx.Module)
  # A module's attributes and a NamedTuple's fields come in definition order.
  by_definition = in_module or depths_lib.is_namedtuple(node)
  entries = [(key, child) for key, child in children
             if _non_head_paths({key: child}, prefix, head_paths, in_module)]
  # The node's own leaves (a kernel and a bias) are one layer together.
  containers = [(key, child) for key, child in entries
                if depths_lib.children(child) is not None]
  num_layers = len(containers) + (len(containers) < len(entries))
  if num_layers >= 2 and not by_definition:
    return prefix, [key for key, _ in entries]
  for key, child in containers:
    found = _first_guess(child, prefix + (key,), head_paths, in_module)
    if found is not None:
      return found
  return None


def check_known_order(tree: Any, depths: depths_lib.DepthSpec, name: str,
                      *, head_only: bool = False) -> None:
  """Refuses to infer depths from ``tree`` when its order is not known.

  Args:
    tree: the parameters ``init`` received.
    depths: the transformation's resolved ``depths=`` (nothing to check
      unless None).
    name: the transformation's name, for the message.
    head_only: the transformation only tells the head from the body (a
      ``head`` key is then enough).

  Raises:
    ValueError: ``depths`` is None and the tree does not tell the order;
      the message shows the argument to add.
  """
  if depths is not None:
    return
  if head_only and any(depths_lib.is_head_path(path)
                       for path in depths_lib.leaf_positions(tree)):
    return
  found = guessed_order(tree)
  if found is None:
    return
  path, keys = found
  where = f"under {path!r}" if path else "at the top level"
  raise ValueError(
      f"{name} cannot tell the order in which the model defines its layers: "
      f"{where} the layers {sorted(keys, key=str)!r} are keys of a mapping, "
      "whose order is not the model's (an nnx.State sorts its keys by name, "
      "and so does any dict after a JAX transformation), so the head and "
      "each layer's depth would be guessed. Pass the "
      f"model's depths:\n    lrtransfer.{name}(..., "
      "depths=lrtransfer.layer_depths(model))\nor keep the layers in a "
      "list, with the top layer under the key 'head'.")
