"""A small Flax NNX CNN for images (28x28 digits), config-serialisable.

Structure (depth levels of :func:`lrtransfer.layer_depths` in brackets)::

  convs[i]: Conv 3x3 -> BatchNorm -> relu -> 2x2 max-pool   [i]
  dropout -> dense -> relu                                  [len(channels)]
  head: Linear -> logits                                    [top]

Like the MLP it keeps its :class:`CNNConfig` on ``model.config``, so a target
model (``lrtransfer.models.target_from_source``) or a checkpointed source can
be rebuilt without being told its shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class CNNConfig:
  """Hyperparameters that fully determine a :class:`CNN` (JSON-able).

  Attributes:
    image_shape: ``(height, width, channels)`` of one input image.
    channels: output channels of each conv block, input side first.
    dense: width of the dense layer before the head.
    num_outputs: number of logits (classes).
    dropout: dropout rate before the dense layer, in [0, 1).
  """
  image_shape: tuple[int, int, int] = (28, 28, 1)
  channels: tuple[int, ...] = (16, 32)
  dense: int = 64
  num_outputs: int = 10
  dropout: float = 0.25

  def __post_init__(self):
    for field in ("image_shape", "channels"):
      value = getattr(self, field)
      if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field} must be a sequence of positive ints, got "
                         f"{value!r}")
      for i, item in enumerate(value):
        _positive_int(f"{field}[{i}]", item)
      # Lists from JSON become tuples: NNX keeps the config as static,
      # hashable graph metadata.
      object.__setattr__(self, field, tuple(value))
    if len(self.image_shape) != 3:
      raise ValueError(f"image_shape must be (height, width, channels), got "
                       f"{self.image_shape!r}")
    _positive_int("dense", self.dense)
    _positive_int("num_outputs", self.num_outputs)
    if (isinstance(self.dropout, bool) or not isinstance(
        self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0):
      raise ValueError(f"dropout must be a number in [0, 1), got "
                       f"{self.dropout!r}")


class CNN(nnx.Module):
  """Conv-BatchNorm-pool blocks, dropout, a dense layer and a linear head.

  Takes images ``[batch, height, width, channels]`` or the same flattened to
  ``[batch, height * width * channels]`` (what the MLP tasks provide).
  The settings are kept as a :class:`CNNConfig` on ``model.config``.

  Args:
    image_shape: ``(height, width, channels)`` of one input image.
    channels: output channels of each conv block, input side first; each
      block halves the height and width.
    dense: width of the dense layer before the head.
    num_outputs: number of logits (classes).
    dropout: dropout rate before the dense layer, in [0, 1).
    rngs: random streams for the initialisation and dropout.

  Raises:
    ValueError: a setting out of range (see :class:`CNNConfig`).

  Example:
    >>> model = CNN(num_outputs=5, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((8, 28, 28, 1))).shape
    (8, 5)
  """

  def __init__(self, image_shape: Sequence[int] = (28, 28, 1),
               channels: Sequence[int] = (16, 32), dense: int = 64,
               num_outputs: int = 10, dropout: float = 0.25, *,
               rngs: nnx.Rngs):
    """Builds the CNN (arguments as the fields of :class:`CNNConfig`)."""
    self.config = CNNConfig(tuple(image_shape), tuple(channels), dense,
                            num_outputs, dropout)
    height, width, in_channels = self.config.image_shape
    blocks = []
    for out_channels in self.config.channels:
      blocks.append(nnx.List([
          nnx.Conv(in_channels, out_channels, (3, 3), rngs=rngs),
          nnx.BatchNorm(out_channels, rngs=rngs)]))
      in_channels = out_channels
      height, width = height // 2, width // 2
    self.convs = nnx.List(blocks)
    self.dropout = nnx.Dropout(self.config.dropout, rngs=rngs)
    self.dense = nnx.Linear(height * width * in_channels, self.config.dense,
                            rngs=rngs)
    self.head = nnx.Linear(self.config.dense, self.config.num_outputs,
                           rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits ``[batch, num_outputs]``."""
    x = jnp.reshape(x, (x.shape[0], *self.config.image_shape))
    for conv, norm in self.convs:
      x = nnx.relu(norm(conv(x)))
      x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    x = self.dropout(x.reshape(x.shape[0], -1))
    return self.head(nnx.relu(self.dense(x)))
