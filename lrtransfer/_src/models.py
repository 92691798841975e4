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
from flax import nnx

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


def _copy_params(dst: nnx.Module, src: nnx.Module) -> None:
  # Real copies: a target that aliased the source's buffers could be changed
  # by a donated/in-place update of the source (and vice versa), which would
  # corrupt L2-SP's reference point.
  copied = jax.tree.map(
      lambda a: jnp.array(a, copy=True), nnx.state(src, nnx.Param)
  )
  nnx.update(dst, copied)


def target_from_source(
    source: MLP,
    num_outputs: int,
    *,
    transfer_layers: int | None = None,
    keep_head: bool = False,
    rngs: nnx.Rngs,
) -> MLP:
  """Builds a target-task model that starts from a source model's layers.

  The target has the source's ``in_features``, hidden widths and activation.
  Hidden layers ``0 .. transfer_layers - 1`` (counted from the input) are copied
  from the source; the remaining hidden layers are freshly initialised, as is
  the head, sized ``num_outputs`` (unless ``keep_head``). Yosinski et al.
  (2014) show that lower layers are general and transfer well while upper
  layers are task-specific, hence the ``transfer_layers`` cut-off.

  Args:
    source: the trained source model; not modified.
    num_outputs: number of target classes.
    transfer_layers: how many hidden layers to copy; ``None`` copies all.
    keep_head: also copy the source head (same label space, e.g. domain shift);
      requires ``num_outputs == source.config.num_outputs`` and all hidden
      layers transferred.
    rngs: random streams for the freshly initialised layers.

  Returns:
    A new `MLP` whose parameters share no buffers with ``source``, with
    ``num_transferred_hidden`` and ``head_transferred`` recording what was
    copied (see `transferred_mask`).

  Raises:
    ValueError: ``transfer_layers`` is out of ``[0, len(hidden)]``, or
      ``keep_head`` is incompatible with the other arguments.

  References:
    Yosinski, Clune, Bengio, Lipson, "How transferable are features in deep
    neural networks?", NeurIPS 2014. https://arxiv.org/abs/1411.1792
  """
  if not isinstance(source, MLP):
    raise TypeError(f"source must be an MLP, got {type(source).__name__}")
  depth = len(source.config.hidden)
  if transfer_layers is None:
    transfer_layers = depth
  if (
      isinstance(transfer_layers, bool)
      or not isinstance(transfer_layers, int)
      or not 0 <= transfer_layers <= depth
  ):
    raise ValueError(
        f"transfer_layers must be an int in [0, {depth}] (the source has"
        f" {depth} hidden layers), got {transfer_layers!r}"
    )
  if keep_head:
    if num_outputs != source.config.num_outputs:
      raise ValueError(
          f"keep_head=True requires num_outputs ({num_outputs!r}) to equal the"
          f" source's num_outputs ({source.config.num_outputs})"
      )
    # A copied head reading freshly initialised features would be meaningless.
    if transfer_layers != depth:
      raise ValueError(
          "keep_head=True requires transferring all hidden layers"
          f" (transfer_layers={depth}), got transfer_layers={transfer_layers}"
      )
  config = dataclasses.replace(source.config, num_outputs=num_outputs)
  target = MLP(**dataclasses.asdict(config), rngs=rngs)
  for i in range(transfer_layers):
    _copy_params(target.hidden[i], source.hidden[i])
  if keep_head:
    _copy_params(target.head, source.head)
  target.num_transferred_hidden = transfer_layers
  target.head_transferred = keep_head
  return target


def transferred_mask(model: MLP) -> nnx.State:
  """Marks the parameters that were copied from a source model.

  Useful to treat transferred and new parameters differently, e.g. L2-SP's
  separate weight on the new head, or freezing the transferred body.

  Args:
    model: an `MLP`, typically from `target_from_source`.

  Returns:
    An ``nnx.State`` of Python bools with the structure of
    ``nnx.as_pure(nnx.state(model, nnx.Param))`` -- the tree optax sees inside
    ``nnx.Optimizer`` -- so it can be passed as an ``optax.masked`` mask.
    True for leaves copied from the source.
  """

  if not isinstance(model, MLP):
    return None

  def is_transferred(path, _) -> bool:
    if path[0] == "hidden":
      return path[1] < model.num_transferred_hidden
    return model.head_transferred

  return nnx.map_state(is_transferred, nnx.as_pure(nnx.state(model, nnx.Param)))
