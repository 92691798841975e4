"""The data types: a split, a transfer task, and the error for unusable data."""

from __future__ import annotations

import dataclasses

import numpy as np

# More classes than this in a label file is almost surely a wrong column
# (e.g. an id or a float feature taken as the label), not a real task.
MAX_CLASSES = 10_000

SUPPORTED_EXTENSIONS = (".npz", ".csv")


class DataError(ValueError):
  """A data file or data set is unusable; the message names the file and why."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of a data set.

  Attributes:
    x: features, float32, shape ``[n, d]``.
    y: integer class labels, int32, shape ``[n]``, in ``[0, num_classes)``.
  """

  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if self.x.ndim != 2 or self.x.dtype != np.float32:
      raise ValueError(
          f"Split.x must be float32 [n, d], got {self.x.dtype} {self.x.shape}"
      )
    if self.y.ndim != 1 or self.y.dtype != np.int32:
      raise ValueError(
          f"Split.y must be int32 [n], got {self.y.dtype} {self.y.shape}"
      )
    if len(self.x) != len(self.y):
      raise ValueError(
          f"Split.x has {len(self.x)} rows but Split.y has {len(self.y)}"
      )

  def __len__(self) -> int:
    return len(self.y)

  def __repr__(self) -> str:
    return f"Split(n={len(self)}, features={self.num_features})"

  @property
  def num_features(self) -> int:
    return self.x.shape[1]


@dataclasses.dataclass(frozen=True, eq=False)
class TransferTask:
  """A source task and a (few-shot) target task over the same input features.

  Attributes:
    name: short identifier, e.g. ``"digits_label_split"``.
    source_train: source training split (the source model is trained on it).
    source_val: source validation split.
    target_train: target training split (usually few-shot).
    target_val: target validation split (read by the learning-rate strategies).
    target_test: target test split (for reporting only).
    num_source_classes: number of source classes (labels ``0..n-1``).
    num_target_classes: number of target classes (labels ``0..n-1``).
    description: one line on what is transferred.
  """

  name: str
  source_train: Split
  source_val: Split
  target_train: Split
  target_val: Split
  target_test: Split
  num_source_classes: int
  num_target_classes: int
  description: str = ""

  @property
  def in_features(self) -> int:
    return self.source_train.num_features


