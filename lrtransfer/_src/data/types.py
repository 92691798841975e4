"""The data types: a split, a transfer task, and the error for unusable data."""

from __future__ import annotations

import dataclasses

import numpy as np

# More classes than this in a label file is almost surely a wrong column
# (e.g. an id or a float feature taken as the label), not a real task.
MAX_CLASSES = 10_000

SUPPORTED_EXTENSIONS = (".npz", ".csv")

_INT32 = np.iinfo(np.int32)


class DataError(ValueError):
  """A data file or data set is unusable; the message names the file and why."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of a data set.

  Labels of any integer dtype are accepted (scikit-learn gives int64) and
  stored as int32 when their values fit; inputs may have any rank, e.g.
  ``[n, features]`` for tables or ``[n, height, width, channels]`` for images.

  Attributes:
    x: inputs, float32, shape ``[n, ...]`` (at least 2-D).
    y: integer class labels, int32, shape ``[n]``, in ``[0, num_classes)``.

  Example::

    split = Split(images.astype(np.float32), sklearn_labels)  # int64 is fine
  """

  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    x, y = np.asarray(self.x), np.asarray(self.y)
    if x.ndim < 2 or x.dtype != np.float32:
      raise ValueError(
          f"Split.x must be float32 [n, ...] (at least 2-D), got {x.dtype}"
          f" {x.shape}"
      )
    if y.ndim != 1 or y.dtype.kind not in "iu":
      raise ValueError(
          f"Split.y must be integer labels [n], got {y.dtype} {y.shape}"
      )
    if y.size and (y.min() < _INT32.min or y.max() > _INT32.max):
      bad = y.min() if y.min() < _INT32.min else y.max()
      raise ValueError(f"Split.y holds label {bad}, outside the int32 range")
    if len(x) != len(y):
      raise ValueError(
          f"Split.x has {len(x)} rows but Split.y has {len(y)}"
      )
    # Frozen dataclass: the normalised arrays replace the given ones.
    object.__setattr__(self, "x", x)
    object.__setattr__(self, "y", y.astype(np.int32, copy=False))

  def __len__(self) -> int:
    return len(self.y)

  def __repr__(self) -> str:
    return f"Split(n={len(self)}, feature_shape={self.feature_shape})"

  @property
  def feature_shape(self) -> tuple[int, ...]:
    """The shape of one input, ``x.shape[1:]``."""
    return tuple(self.x.shape[1:])

  @property
  def num_features(self) -> int:
    """Numbers per input (``prod(feature_shape)``; ``d`` for ``[n, d]``)."""
    return int(np.prod(self.feature_shape))


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
    shared_labels: whether target class ``k`` means what source class ``k``
      means (e.g. a domain shift), so the source head can be kept; False
      for a new label set; None when unknown (user data: the caller's word,
      checked only for equal class counts).
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
  shared_labels: bool | None = None

  @property
  def in_features(self) -> int:
    return self.source_train.num_features

  def check_keep_head(self) -> None:
    """Refuses to keep the source head on a task with another label set.

    Raises:
      DataError: the class counts differ, or the task says its target
        labels mean something else than the source's.
    """
    if self.num_source_classes != self.num_target_classes:
      raise DataError(
          f"keeping the source head needs the same label set, but the source"
          f" of {self.name} has {self.num_source_classes} classes and the"
          f" target {self.num_target_classes}"
      )
    if self.shared_labels is False:
      raise DataError(
          f"keeping the source head needs the same label set, but the target"
          f" classes of {self.name} are new ones ({self.description})"
      )


