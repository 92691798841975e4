"""L2-SP: weight decay toward the source (pre-trained) parameters."""

from __future__ import annotations

import numbers
from collections.abc import Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrtransfer._src import validation
from lrtransfer._src.transfer import definition_order
from lrtransfer._src.transfer.depths import (
  DepthSpec,
  normalize_path,
  resolve_depths,
)

Path = tuple[Hashable, ...]

# What the state holds for a leaf with no source (a new leaf, e.g. the head):
# a scalar zero, so the state keeps the params' tree structure at no cost
# (not a (0,)-sized array: orbax refuses to checkpoint those). Which leaves
# are new is decided statically from the trees, not from this placeholder.
_NO_SOURCE_SHAPE = ()


class L2SPState(NamedTuple):
  """State of :func:`l2sp`: a copy of the source parameters."""
  # Params-shaped tree in the params' dtypes: the source value of each
  # transferred leaf; a scalar zero for each new leaf.
  source: Any


def _add_scaled(update: jax.Array, coefficient: Any,
                term: jax.Array) -> jax.Array:
  if isinstance(coefficient, numbers.Real) and coefficient == 0:
    return update
  return (update + coefficient * term).astype(update.dtype)


def _leaves_by_path(tree: Any, what: str) -> dict[Path, Any]:
  by_path: dict[Path, Any] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = normalize_path(path)
    if key in by_path:
      raise ValueError(f"{what} has two leaves at path {key!r}.")
    by_path[key] = leaf
  return by_path


def _head_paths(tree: Any, depths: DepthSpec) -> set[Path]:
  """Paths of the top depth level (the head) of the whole tree.

  Masked-out positions (``optax.MaskedNode``) count: inside ``optax.masked``
  the head is still the whole model's head.
  """
  is_masked = lambda node: isinstance(node, optax.MaskedNode)
  positions = [normalize_path(path) for path, _ in
               jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_masked)[0]]
  placeholders = jax.tree.map(lambda _: 0, tree, is_leaf=is_masked)
  leaf_depths = resolve_depths(placeholders, depths).leaves
  top = max(leaf_depths, default=0)
  return {path for path, depth in zip(positions, leaf_depths) if depth == top}


def _transferred_mask(
    params: Any, source: dict[Path, Any], transferred: Any,
    depths: DepthSpec = None, source_tree: Any = None,
) -> list[bool]:
  """Which params leaves are pulled to the source, checking the trees."""
  param_paths = [
      (normalize_path(path), leaf)
      for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
  ]
  param_keys = {normalize_path(path) for path, _ in
                jax.tree_util.tree_flatten_with_path(
                    params,
                    is_leaf=lambda x: isinstance(x, optax.MaskedNode))[0]}
  if transferred is None:
    head = _head_paths(params, depths)
    source_head = _head_paths(source_tree, None)
    is_head_path = lambda path: path in head

    # Outside the head the two trees must have the same paths; a shape
    # change makes a leaf new (e.g. a resized layer).
    for path, _ in param_paths:
      if not is_head_path(path) and path not in source:
        raise ValueError(
            "source_params does not match params: no source leaf at path "
            f"{path!r}. Pass `transferred` to mark new leaves.")
    for path in source:
      if path not in head | source_head and path not in param_keys:
        raise ValueError(
            "source_params does not match params: source leaf at path "
            f"{path!r} has no counterpart in params.")
    mask = [
        not is_head_path(path) and path in source
        and np.shape(source[path]) == np.shape(leaf)
        for path, leaf in param_paths
    ]
    resized = [(path, np.shape(source[path]), np.shape(leaf))
               for (path, leaf), pulled in zip(param_paths, mask)
               if not pulled and not is_head_path(path) and path in source]
    if resized and not any(mask):
      # Every layer "resized": almost surely another model's parameters
      # (e.g. another width), and L2-SP would silently pull nothing.
      path, source_shape, shape = resized[0]
      raise ValueError(
          "source_params does not match params in shape anywhere outside the "
          f"head, e.g. at path {path!r}: source {source_shape} != params "
          f"{shape}; L2-SP would pull no leaf toward the source. Pass the "
          "parameters of the model the target was built from, or "
          "`transferred` to mark leaves.")
    return mask
  flags = _leaves_by_path(transferred, "transferred")
  mask = []
  for path, leaf in param_paths:
    if path not in flags:
      raise ValueError(
          f"transferred does not match params: no flag at path {path!r}.")
    flag = flags[path]
    if not isinstance(flag, (bool, np.bool_)):
      raise ValueError(
          "transferred must hold Python bools, got "
          f"{flag!r} at path {path!r}.")
    if flag and path not in source:
      raise ValueError(
          f"source_params does not match params: path {path!r} is marked "
          "transferred but has no source leaf.")
    if flag and np.shape(source[path]) != np.shape(leaf):
      raise ValueError(
          f"source_params does not match params at path {path!r}: source "
          f"shape {np.shape(source[path])} != params shape {np.shape(leaf)}.")
    mask.append(bool(flag))
  return mask


def l2sp(
    source_params: Any,
    alpha: float = 1e-2,
    beta: float = 1e-4,
    transferred: Any = None,
    depths: DepthSpec = None,
) -> optax.GradientTransformationExtraArgs:
  r"""L2-SP: pulls transferred weights toward their source values.

  Adds the gradient of the L2-SP penalty
  :math:`\tfrac{\alpha}{2}\lVert w_S - w_S^0\rVert^2 +
  \tfrac{\beta}{2}\lVert w_{\bar S}\rVert^2`:

  .. math::

    g_\ell \leftarrow g_\ell + \begin{cases}
      \alpha\,(w_\ell - w^0_\ell) & \ell \text{ transferred} \\
      \beta\, w_\ell & \ell \text{ new (no source, e.g. the head)}
    \end{cases}

  Plain weight decay pulls toward zero and so away from the source solution;
  L2-SP keeps the fine-tuned model near it.

  The source parameters :math:`w^0` are copied into the optimizer *state* at
  ``init``, cast to each parameter's dtype (not closed over: constants would
  be baked into every compiled update). The update reads them once per step.

  Place it *before* the optimizer, like ``optax.add_decayed_weights``:
  ``optax.chain(l2sp(source), optax.sgd(lr, momentum=0.9), ...)``.

  Args:
    source_params: the source model's parameters (``nnx.State`` or nested
      dict). Matched to ``params`` by path, ignoring ``nnx.Param`` wrappers.
    alpha: strength of the pull toward the source, a number >= 0.
    beta: plain weight decay on new leaves, a number >= 0.
    transferred: optional pytree of Python bools with the paths of ``params``:
      which leaves are pulled toward the source. Default: every leaf outside
      the head (the top depth level of :func:`lrtransfer.layer_depths`)
      whose source leaf has the same shape (a resized layer counts as new);
      then, outside the head, the two trees must have the same paths, and
      at least one leaf must match in shape when any source leaf shares a
      path with params (else nothing would be pulled: refused).
    depths: how to find the head when ``transferred`` is None:
      ``lrtransfer.layer_depths(model)``, the ``nnx.Module`` itself, or a
      function ``depths(path) -> int``. None: a tree with a ``head`` key,
      or one that tells its layers' order (lists); else ``init`` refuses.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose ``update`` requires
    ``params``.

  Raises:
    ValueError: a negative ``alpha``/``beta``; at ``init``, source and params
      trees that do not match (the message names the first offending path and
      shapes), or no ``transferred`` and ``depths`` while the tree does not
      tell its head; at trace time of ``update``, ``params=None``.

  Example::

    depths = lrtransfer.layer_depths(model)
    tx = optax.chain(l2sp(source_params, alpha=1e-2, beta=1e-4,
                          depths=depths),
                     optax.sgd(1e-2, momentum=0.9))
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)

  References:
    Li, Grandvalet & Davoine, `Explicit Inductive Bias for Transfer Learning
    with Convolutional Networks <https://arxiv.org/abs/1802.01483>`_, 2018.
  """
  # Traced values (e.g. under optax.inject_hyperparams) are not checked.
  validation.check_non_negative("alpha", alpha)
  validation.check_non_negative("beta", beta)
  depths = definition_order.as_depth_spec(depths, "l2sp")

  def init_fn(params):
    if transferred is None:
      definition_order.check_known_order(params, depths, "l2sp",
                                         head_only=True)
    source = _leaves_by_path(source_params, "source_params")
    mask = _transferred_mask(params, source, transferred, depths,
                             source_params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    copies = [
        # copy=True: the state must own its buffer even when the target was
        # built from the very same arrays and a train step donates them.
        jnp.array(source[normalize_path(path)], dtype=jnp.result_type(leaf),
                  copy=True)
        if is_transferred else
        jnp.zeros(_NO_SOURCE_SHAPE, jnp.result_type(leaf))
        for (path, leaf), is_transferred in zip(flat, mask)
    ]
    return L2SPState(source=jax.tree_util.tree_unflatten(treedef, copies))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
          "l2sp needs the current parameters: call "
          "update(updates, state, params) with params not None.")

    # Which leaves are transferred is static (paths and shapes), so it is
    # recomputed at trace time rather than stored in the state.
    mask = _transferred_mask(params, _leaves_by_path(source_params,
                                                     "source_params"),
                             transferred, depths, source_params)
    mask_tree = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params), mask)

    def add_penalty(update, param, source, is_transferred):
      if is_transferred:
        return _add_scaled(update, alpha, param - source)
      return _add_scaled(update, beta, param)

    updates = jax.tree.map(add_penalty, updates, params, state.source,
                           mask_tree)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
