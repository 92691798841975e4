"""Discriminative (layer-wise) learning rates as an Optax transformation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrtransfer._src import validation
from lrtransfer._src.transfer import definition_order
from lrtransfer._src.transfer.depths import DepthSpec, resolve_depths


class LayerwiseScaleState(NamedTuple):
  """State of :func:`layerwise_scale`: the factors, for logging only."""
  # float32 [levels]: factor ** (top - level) of each depth level, input side
  # first. The update uses trace-time constants; this copy lets a training
  # loop log per-level rates without knowing the model's structure.
  level_factors: jax.Array


def _depth_scales(levels: list[int], factor: Any) -> dict[int, Any]:
  top = max(levels, default=0)
  return {depth: factor ** (top - depth) for depth in set(levels)}


def layerwise_scales(params: Any, factor: float,
                     depths: DepthSpec = None) -> dict[int, float]:
  """The multiplier :func:`layerwise_scale` applies to each depth level.

  Useful to log the per-group learning rate: multiply by the base rate.

  Args:
    params: the parameter tree (or any tree with its structure).
    factor: the per-level factor, as in :func:`layerwise_scale`.
    depths: as in :func:`layerwise_scale`.

  Returns:
    ``{depth: factor ** (top - depth)}`` for every depth present, sorted by
    depth, as Python floats.

  Raises:
    ValueError: ``factor`` is not positive, or ``depths`` is None and the
      tree does not tell its layers' order.

  Example::

    params = {'hidden': {0: {'kernel': jnp.ones((2, 3))},
                         1: {'kernel': jnp.ones((3, 3))}},
              'head': {'kernel': jnp.ones((3, 1))}}
    layerwise_scales(params, 0.5)  # {0: 0.25, 1: 0.5, 2: 1.0}
  """
  # Traced values (e.g. under optax.inject_hyperparams) are not checked.
  validation.check_positive("factor", factor)
  depths = definition_order.as_depth_spec(depths, "layerwise_scales")
  definition_order.check_known_order(params, depths, "layerwise_scales")
  scales = _depth_scales(resolve_depths(params, depths).levels, factor)
  return {depth: float(scales[depth]) for depth in sorted(scales)}


def layerwise_scale(
    factor: float,
    depths: DepthSpec = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Discriminative learning rates: scales each layer's update by its depth.

  .. math::

    u_\ell \leftarrow \text{factor}^{\,(d_\text{top} - d_\ell)}\; u_\ell

  where :math:`d_\ell` is the depth of leaf :math:`\ell` and
  :math:`d_\text{top}` the largest depth in the tree. The head gets 1, the
  layer below ``factor``, the one below that ``factor**2``, ... ULMFiT uses
  ``factor = 1 / 2.6``; layer-wise rate decay (LLRD) for ELECTRA/BEiT uses
  0.65--0.9.

  The depths depend only on the tree's structure, so they are computed at
  trace time and the factors enter the compiled update as Python floats: one
  multiply per leaf (none for the head), no state, no extra memory traffic.
  Under ``optax.inject_hyperparams`` ``factor`` may also be a traced scalar.

  Place it *after* the optimizer, e.g.
  ``optax.chain(optax.sgd(lr, momentum=0.9), layerwise_scale(0.65,
  depths=lrtransfer.layer_depths(model)))``. With
  SGD-momentum before or after is equivalent (both are linear), but adaptive
  optimizers (Adam, ...) normalise the gradient's scale away, so before them
  the factor would have (almost) no effect.

  Args:
    factor: per-level multiplier, a positive number (usually in ``(0, 1]``).
    depths: the depth of each parameter: ``lrtransfer.layer_depths(model)``
      (the order in which the model defines its layers, which its
      name-sorted ``nnx.State`` does not tell), the ``nnx.Module`` itself,
      or a function ``depths(path) -> int``. None: inferred from the tree,
      only where it tells the order itself (layers in lists, the top one
      under a ``head`` key, as in :class:`lrtransfer.models.MLP`), else
      ``init`` refuses. Depths and the top are those of the whole tree, also
      inside ``optax.masked``/``optax.partition``.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: ``factor`` is not a positive number or ``depths`` not a
      depth tree; at ``init``, ``depths`` is None and the parameter tree
      does not tell its layers' order.

  Example::

    depths = lrtransfer.layer_depths(model)
    tx = optax.chain(optax.sgd(1e-2, momentum=0.9),
                     layerwise_scale(0.65, depths=depths))
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)

  References:
    Howard & Ruder, `Universal Language Model Fine-tuning for Text
    Classification <https://arxiv.org/abs/1801.06146>`_, 2018.

    Clark, Luong, Le & Manning, `ELECTRA: Pre-training Text Encoders as
    Discriminators Rather Than Generators
    <https://arxiv.org/abs/2003.10555>`_, 2020.
  """
  # Traced values (e.g. under optax.inject_hyperparams) are not checked.
  validation.check_positive("factor", factor)
  depths = definition_order.as_depth_spec(depths, "layerwise_scale")

  def init_fn(params):
    definition_order.check_known_order(params, depths, "layerwise_scale")
    levels = resolve_depths(params, depths).levels
    top = max(levels, default=0)
    exponents = jnp.asarray([top - level for level in levels], jnp.float32)
    return LayerwiseScaleState(
        level_factors=jnp.asarray(factor, jnp.float32) ** exponents)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    leaf_depths, levels = resolve_depths(updates, depths)
    # The factors are recomputed as trace-time constants (a multiply by a
    # Python float), not read from the state.
    scales = _depth_scales(levels, factor)
    top = max(levels, default=0)
    scaled = [
        leaf if depth == top else (leaf * scales[depth]).astype(leaf.dtype)
        for leaf, depth in zip(leaves, leaf_depths)
    ]
    return jax.tree_util.tree_unflatten(treedef, scaled), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
