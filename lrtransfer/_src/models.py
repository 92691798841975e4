"""The Flax NNX MLP used on source and target tasks, and layer transfer.

A source model is trained on the source task; `target_from_source` then builds
the target model from it: the first hidden layers are copied, the remaining
hidden layers and the classification head are freshly initialised. This is the
classic layer-transfer recipe of Yosinski et al. (2014).

Parameter paths (as seen in ``nnx.state(model, nnx.Param)``) are::

  ('hidden', i, 'kernel')  # [fan_in, width_i], i = 0 .. len(hidden) - 1
  ('hidden', i, 'bias')    # [width_i]
  ('head', 'kernel')       # [hidden[-1] (or in_features), num_outputs]
  ('head', 'bias')         # [num_outputs]

Depth ``i`` counts from the input, which is what layer-wise learning rates and
gradual unfreezing key on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lrtransfer._src.transfer.depths import (
  layer_depths,
  normalize_path,
  remember_depths,
)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nnx.relu,
    "gelu": nnx.gelu,
    "tanh": jnp.tanh,
    "silu": nnx.silu,
}


def _check_positive_int(name: str, value) -> int:
  # `bool` is an `int` subclass; `True` as a width is always a mistake.
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  """Hyperparameters that fully determine an `MLP`'s structure.

  Kept on the module (``model.config``) so that a target model, or a model
  restored from a checkpoint, can be rebuilt without being told its shape.
  Plain JSON-able values only (see `dataclasses.asdict`).

  Attributes:
    in_features: number of input features.
    hidden: widths of the hidden layers, input side first; may be empty
      (then the model is a linear classifier).
    num_outputs: number of logits (classes).
    activation: one of ``"relu"``, ``"gelu"``, ``"tanh"``, ``"silu"``.
  """

  in_features: int
  hidden: tuple[int, ...] = (256, 128)
  num_outputs: int = 10
  activation: str = "relu"

  def __post_init__(self):
    _check_positive_int("in_features", self.in_features)
    _check_positive_int("num_outputs", self.num_outputs)
    if isinstance(self.hidden, (str, bytes)) or not isinstance(
        self.hidden, Sequence
    ):
      raise ValueError(
          f"hidden must be a sequence of positive ints, got {self.hidden!r}"
      )
    for i, width in enumerate(self.hidden):
      _check_positive_int(f"hidden[{i}]", width)
    # Normalise lists (e.g. from JSON) to a tuple: the config must be hashable
    # because NNX stores it as static graph metadata.
    object.__setattr__(self, "hidden", tuple(self.hidden))
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"activation must be one of {sorted(ACTIVATIONS)}, got"
          f" {self.activation!r}"
      )


class MLP(nnx.Module):
  """Multi-layer perceptron classifier: Linear + activation layers, then a head.

  Attributes:
    config: the `MLPConfig` the module was built from.
    hidden: ``nnx.List`` of the hidden ``nnx.Linear`` layers, input side first.
    head: the output ``nnx.Linear`` layer producing logits.
    num_transferred_hidden: how many hidden layers (from the input side) were
      copied from a source model; 0 for a model trained from scratch.
    head_transferred: whether the head was copied from a source model.

  Example:
    >>> model = MLP(64, hidden=(32,), num_outputs=5, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((8, 64))).shape
    (8, 5)
  """

  def __init__(
      self,
      in_features: int,
      hidden: Sequence[int] = (256, 128),
      num_outputs: int = 10,
      activation: str = "relu",
      *,
      rngs: nnx.Rngs,
  ):
    """Builds the MLP.

    Args:
      in_features: number of input features.
      hidden: widths of the hidden layers, input side first.
      num_outputs: number of logits (classes).
      activation: ``"relu"``, ``"gelu"``, ``"tanh"`` or ``"silu"``.
      rngs: random streams for parameter initialisation.

    Raises:
      ValueError: a width is not a positive int, or the activation is unknown.
    """
    self.config = MLPConfig(
        in_features=in_features,
        hidden=hidden,
        num_outputs=num_outputs,
        activation=activation,
    )
    widths = (in_features, *self.config.hidden)
    self.hidden = nnx.List(
        [
            nnx.Linear(fan_in, fan_out, rngs=rngs)
            for fan_in, fan_out in zip(widths[:-1], widths[1:])
        ]
    )
    self.head = nnx.Linear(widths[-1], num_outputs, rngs=rngs)
    self.num_transferred_hidden = 0
    self.head_transferred = False

  def __call__(self, x: jax.Array) -> jax.Array:
    """Computes logits.

    Args:
      x: float inputs, shape ``[batch, in_features]``.

    Returns:
      Logits, shape ``[batch, num_outputs]``.
    """
    activation = ACTIVATIONS[self.config.activation]
    for layer in self.hidden:
      x = activation(layer(x))
    return self.head(x)


def _flat(tree) -> dict:
  return {normalize_path(path): leaf for path, leaf in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def default_transfer_layers(source: nnx.Module, *, depth_fn=None,
                            head=None) -> int:
  """All levels below the head but the last (at least one).

  Lower layers are general, the last hidden layer is specific to the source
  task (Yosinski et al. 2014). Chosen, not assumed: stage 1 of
  ``benchmarks/tune_defaults.py`` compares copying 1 or 2 hidden layers of
  the 2-hidden-layer MLP with the constant rate on the tuning tasks only, by
  validation accuracy (test never evaluated), and records "transfer layers:
  1" -- all hidden layers but the last -- in
  ``benchmarks/results/defaults.md`` (best mean validation accuracy over
  rates 0.795 against 0.765 for both layers, ``defaults.json``). Levels are
  those of :func:`lrtransfer.layer_depths` (for the MLP: its hidden layers).
  The one rule of both :func:`target_from_source` and
  ``lrtransfer.experiment.compare``.

  Args:
    source: the source model (any ``nnx.Module``) or its parameters.
    depth_fn: overrides the depth rule, as in :func:`lrtransfer.layer_depths`.
    head: the head's attribute name or path prefix, as in
      :func:`lrtransfer.layer_depths`.

  Returns:
    The number of levels to copy, counted from the input side: the levels
    below the head less one, at least 1 (1 for a 2-hidden-layer MLP, 2 for
    the default two-block CNN).

  Example::

    source = MLP(64, (256, 128), 10, rngs=nnx.Rngs(0))
    default_transfer_layers(source)  # 1: hidden layer 0 is copied
  """
  levels = sorted(set(jax.tree.leaves(
      layer_depths(source, depth_fn, head=head))))
  return max(1, len(levels) - 2)


def _rebuild(source: nnx.Module, num_outputs: int, rngs: nnx.Rngs):
  """A fresh model like ``source`` with ``num_outputs``, from its config."""
  config = getattr(source, "config", None)
  if not (dataclasses.is_dataclass(config)
          and "num_outputs" in {f.name for f in dataclasses.fields(config)}):
    raise ValueError(
        f"cannot build a target from a {type(source).__name__} source: it has "
        "no `config` dataclass with a num_outputs field (as lrtransfer's MLP "
        "and CNN). Pass target=, a freshly initialised model with the target "
        "head, to copy the source's layers into.")
  config = dataclasses.replace(config, num_outputs=num_outputs)
  return type(source)(**dataclasses.asdict(config), rngs=rngs)


def target_from_source(
    source: nnx.Module,
    num_outputs: int | None = None,
    *,
    transfer_layers: int | None = None,
    keep_head: bool = False,
    rngs: nnx.Rngs | None = None,
    target: nnx.Module | None = None,
    head=None,
    depth_fn=None,
) -> nnx.Module:
  """Builds a target-task model that starts from a source model's layers.

  Depth levels are those of :func:`lrtransfer.layer_depths` (for the MLP,
  hidden layer ``i`` is level ``i`` and the head the top). Levels
  ``0 .. transfer_layers - 1`` are copied from the source -- parameters and
  the layers' other state such as BatchNorm statistics -- the other levels
  and the head keep their fresh initialisation (unless ``keep_head``).
  Yosinski et al. (2014) show that lower layers are general and transfer
  well while upper layers are task-specific, hence the cut-off.

  Args:
    source: the trained source model; not modified.
    num_outputs: number of target outputs; the target is rebuilt from
      ``source.config`` (lrtransfer's MLP and CNN). Not with ``target``.
    transfer_layers: how many levels to copy; default
      :func:`default_transfer_layers` (all but the last below the head; all
      of them with ``keep_head``).
    keep_head: also copy the source head (same label space, e.g. domain
      shift); requires the same output size and all levels transferred.
    rngs: random streams for the freshly initialised layers.
    target: instead of ``num_outputs``/``rngs``, a freshly initialised model
      of any structure with the target head; it is copied, not modified.
    head: the head's name or path prefix (see :func:`lrtransfer.layer_depths`).
    depth_fn: overrides the depth rule.

  Returns:
    A new model whose parameters share no buffers with ``source``; it records
    what was copied (see :func:`transferred_mask`).

  Raises:
    ValueError: ``transfer_layers`` out of range, ``keep_head`` with another
      output size or a partial transfer, a copied leaf whose shape differs.

  Example::

    target = target_from_source(source, 5, rngs=nnx.Rngs(1))  # MLP or CNN
    target = target_from_source(my_source, target=MyNet(5, rngs=nnx.Rngs(1)))

  References:
    Yosinski, Clune, Bengio, Lipson, "How transferable are features in deep
    neural networks?", NeurIPS 2014. https://arxiv.org/abs/1411.1792
  """
  if not isinstance(source, nnx.Module):
    raise TypeError(f"source must be a flax.nnx.Module, got "
                    f"{type(source).__name__}")
  if target is None:
    if num_outputs is None or rngs is None:
      raise ValueError("pass num_outputs= and rngs= (or target=)")
    _check_positive_int("num_outputs", num_outputs)
    target = _rebuild(source, num_outputs, rngs)
  elif num_outputs is not None:
    raise ValueError("pass num_outputs= or target=, not both")
  # Depths before cloning: a clone lists its attributes sorted by name
  # (NNX rebuilds modules from a sorted graph), the original in definition
  # order.
  # The target's depths decide (the source may be a sorted copy, e.g. a
  # fit result); leaves are matched by path.
  depth_tree = layer_depths(target, depth_fn, head=head)
  tgt_depths = _flat(depth_tree)
  target = nnx.clone(target)
  remember_depths(target, depth_tree)
  top = max(tgt_depths.values(), default=0)
  levels = top  # the levels below the head
  if transfer_layers is None:
    transfer_layers = levels if keep_head else max(1, levels - 1)
  if (isinstance(transfer_layers, bool) or not isinstance(transfer_layers, int)
      or not 0 <= transfer_layers <= levels):
    raise ValueError(
        f"transfer_layers must be an int in [0, {levels}] (the model has "
        f"{levels} levels below the head), got {transfer_layers!r}")
  _, src_params, src_rest = nnx.split(source, nnx.Param, ...)
  _, tgt_params, tgt_rest = nnx.split(target, nnx.Param, ...)
  src_params, tgt_params = _flat(src_params), _flat(tgt_params)
  if keep_head:
    head_shapes = [(p, np.shape(src_params.get(p)), np.shape(v))
                   for p, v in tgt_params.items() if tgt_depths[p] == top]
    for path, src_shape, tgt_shape in head_shapes:
      if src_shape != tgt_shape:
        raise ValueError(
            f"keep_head=True requires num_outputs equal to the source's: "
            f"head parameter {path!r} is {src_shape} in the source and "
            f"{tgt_shape} in the target")
    if transfer_layers != levels:
      raise ValueError(
          "keep_head=True requires transferring all levels below the head"
          f" (transfer_layers={levels}), got transfer_layers={transfer_layers}")
  copy = lambda depth: depth < transfer_layers or (keep_head and depth == top)
  copied = {}
  for path, depth in tgt_depths.items():
    if not copy(depth):
      continue
    if path not in src_params:
      raise ValueError(f"the source has no parameter at {path!r} (depth "
                       f"{depth}): source and target differ in structure")
    if np.shape(src_params[path]) != np.shape(tgt_params[path]):
      raise ValueError(
          f"cannot copy {path!r}: source shape {np.shape(src_params[path])} "
          f"!= target shape {np.shape(tgt_params[path])}")
    copied[path] = src_params[path]
  # The copied layers' other state (BatchNorm statistics) comes along: it
  # lives beside their parameters. RNG state does not.
  layers = {path[:-1] for path in copied}
  src_rest_flat = _flat(src_rest)
  for path, leaf in _flat(tgt_rest).items():
    if path[:-1] in layers and path in src_rest_flat and np.shape(
        src_rest_flat[path]) == np.shape(leaf) and not jnp.issubdtype(
            jnp.result_type(leaf), jax.dtypes.prng_key):
      copied[path] = src_rest_flat[path]

  def take(path, leaf):
    path = normalize_path(path)
    # Real copies: a target aliasing the source's buffers could be changed
    # by a donated/in-place update of the source (and vice versa), which
    # would corrupt L2-SP's reference point.
    return jnp.array(copied[path], copy=True) if path in copied else leaf

  state = nnx.state(target)
  nnx.update(target, jax.tree_util.tree_map_with_path(take, state))
  target.num_transferred_levels = transfer_layers
  target.head_transferred = keep_head
  # The copied parameters by path: depths recomputed on a clone (sorted
  # attributes) could differ from those the copy was decided on.
  target.transferred_paths = tuple(sorted(
      (p for p in copied if p in tgt_params), key=repr))
  if isinstance(target, MLP):
    target.num_transferred_hidden = transfer_layers
  return target


def transferred_mask(model: nnx.Module):
  """Marks the parameters that were copied from a source model.

  Useful to treat transferred and new parameters differently, e.g. L2-SP's
  separate weight on the new head, or freezing the transferred body.

  Args:
    model: a model from :func:`target_from_source` (or any lrtransfer MLP:
      nothing transferred unless it says so).

  Returns:
    An ``nnx.State`` of Python bools with the structure of
    ``nnx.as_pure(nnx.state(model, nnx.Param))`` -- the tree optax sees inside
    ``nnx.Optimizer`` -- so it can be passed as an ``optax.masked`` mask.
    True for leaves copied from the source. None for a model that does not
    record a transfer.
  """
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  if hasattr(model, "transferred_paths"):
    copied = set(model.transferred_paths)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: normalize_path(path) in copied, params)
  if not isinstance(model, MLP):
    return None
  count, keep_head = model.num_transferred_hidden, model.head_transferred
  return jax.tree_util.tree_map_with_path(
      lambda path, _: (keep_head if path[0].key == "head"
                       else path[1].key < count), params)
