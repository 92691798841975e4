"""The settings of a comparison, checked when they are built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import numpy as np

from lrtransfer._src.train.runs import is_integer

# The source architectures of `compare` (and `lrtransfer run --model`).
MODELS = ("mlp", "cnn")


def _checked_seeds(seeds: Any) -> tuple[int, ...]:
  """``seeds`` as Python ints; clear errors for ``seeds=3`` and for repeated
  seeds (identical runs, a zero spread)."""
  if isinstance(seeds, (np.ndarray, jax.Array)) and seeds.ndim == 1:
    seeds = np.asarray(seeds).tolist()  # NumPy/JAX ints: accepted as ints
  if (isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence)
      or not seeds or not all(is_integer(s) for s in seeds)):
    raise ValueError("seeds must be a non-empty sequence of ints, one run "
                     f"each (e.g. range(3) for 3 runs), got {seeds!r}")
  if len(set(int(s) for s in seeds)) != len(seeds):
    raise ValueError(f"seeds repeat ({list(seeds)}): repeated seeds are "
                     "identical runs and make the spread over seeds zero")
  return tuple(int(s) for s in seeds)


@dataclasses.dataclass(frozen=True)
class CompareConfig:
  """The settings of one :func:`compare`: what to train and where to keep it.

  Checked when built (a ``ValueError`` naming the field), so a mistake stops
  before the source is pretrained.

  Attributes:
    epochs: fine-tuning epochs.
    seeds: one run per seed (head initialisation and data order), vmapped;
      distinct ints (stored as a tuple).
    batch_size: minibatch size.
    source_epochs: epochs of source pretraining.
    hidden: hidden widths of the source MLP.
    model: the source architecture, ``"mlp"`` or ``"cnn"`` (the default
      `lrtransfer.models.CNN` on the task's images, :func:`image_shape`).
    transfer_layers: hidden layers copied from the source (default: that of
      :func:`lrtransfer.models.target_from_source`, all but the last,
      :func:`lrtransfer.models.default_transfer_layers`).
    keep_head: copy every layer and the source head (same label set; see
      ``TransferTask.check_keep_head``).
    source_dir: where to save the source checkpoint (orbax); the targets
      are built from the restored parameters. None: skip the round trip.
    checkpoint_root: folder for run checkpoints, one subfolder per recipe
      name (each holds the last 2 checkpoints: parameters, optimizer state
      and history of every seed).
    checkpoint_every: epochs between run checkpoints.
    resume: reuse the saved source model and continue each recipe's run
      from its latest checkpoint (finished recipes are restored, not rerun).
    replace_checkpoints: without ``resume``, delete a recipe's earlier run
      checkpoints under ``checkpoint_root``; otherwise they are refused.

  Example::

    config = CompareConfig(epochs=30, seeds=range(5))
    results = lrtransfer.experiment.compare(task, default_recipes(), config)
  """
  epochs: int = 50
  seeds: Sequence[int] = (0, 1, 2)
  batch_size: int = 32
  source_epochs: int = 20
  hidden: Sequence[int] = (256, 128)
  model: str = "mlp"
  transfer_layers: Optional[int] = None
  keep_head: bool = False
  source_dir: Optional[Path] = None
  checkpoint_root: Optional[Path] = None
  checkpoint_every: Optional[int] = None
  resume: bool = False
  replace_checkpoints: bool = False

  def __post_init__(self):
    object.__setattr__(self, "seeds", _checked_seeds(self.seeds))
    for name in ("epochs", "batch_size", "source_epochs"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
    object.__setattr__(self, "hidden", tuple(self.hidden))
