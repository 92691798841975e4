"""Per-class splitting and source-frame standardisation, shared by tasks and files."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from lrtransfer._src.data.types import DataError, Split, TransferTask

# ----------------------------------------------------------------------------
# Shared helpers.


@functools.cache
def bundled_xy(load: Callable) -> tuple[np.ndarray, np.ndarray]:
  """``load(return_X_y=True)`` of a data set scikit-learn ships (no
  download) as float32 features and int32 labels, read once and cached
  read-only, so no caller can corrupt the copy the others get."""
  x, y = load(return_X_y=True)
  x, y = x.astype(np.float32), y.astype(np.int32)
  x.flags.writeable = False
  y.flags.writeable = False
  return x, y


def check_shots(shots_per_class) -> int:
  if (
      isinstance(shots_per_class, bool)
      or not isinstance(shots_per_class, int)
      or shots_per_class < 1
  ):
    raise ValueError(
        f"shots_per_class must be a positive int, got {shots_per_class!r}"
    )
  return shots_per_class


def split_per_class(
    y: np.ndarray,
    sizes: Sequence[int | float],
    rng: np.random.Generator,
    *,
    what: str = "data",
) -> list[np.ndarray]:
  """Splits indices class by class into consecutive parts.

  Each part's size per class is either an int (that many examples) or a float
  fraction of the class (rounded, at least one); the last part takes the rest.
  Unlike sklearn's stratified ``train_test_split``, which only matches the
  class proportions overall, this puts every class in every part -- what a
  few-shot split with a per-class budget needs.

  Args:
    y: int labels, shape ``[n]``.
    sizes: per-class size of every part but the last.
    rng: random generator for the shuffle.
    what: names the data in error messages.

  Returns:
    One sorted index array per part (``len(sizes) + 1`` of them).

  Raises:
    DataError: a class has too few examples to give every part one.
  """
  parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + 1)]
  for label in np.unique(y):
    members = rng.permutation(np.flatnonzero(y == label))
    counts = [
        s if isinstance(s, int) else max(1, round(s * len(members)))
        for s in sizes
    ]
    if sum(counts) >= len(members):
      raise DataError(
          f"{what}: class {label} has {len(members)} examples, too few to"
          f" split into {len(parts)} non-empty parts ({counts} + the rest)"
      )
    bounds = np.cumsum([0, *counts, len(members) - sum(counts)])
    for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
      part.append(members[lo:hi])
  return [np.sort(np.concatenate(part)) for part in parts]


STANDARDIZE_MODES = ("source", "target", "none")

# Features whose ranges are within this factor of the median range share one
# scale (pixels, counts of one kind); beyond it, they are different
# quantities (a tabular column in thousands next to one in fractions).
_COMMON_SCALE_RATIO = 100.0


def common_scale(x: np.ndarray) -> bool:
  """Whether all features share one scale, as pixels do.

  True when every non-constant feature's range (max - min) is within a factor
  of 100 of the (lower) median range: then one mean and standard deviation over all
  features keep them in range (see `standardized_task`).
  """
  flat = x.reshape(len(x), -1)
  ranges = flat.max(0) - flat.min(0)
  varying = ranges[ranges > 0]
  if varying.size == 0:
    return True
  # The lower median: with two features, the smaller range is the reference.
  median = np.percentile(varying, 50, method="lower")
  return bool(varying.max() <= _COMMON_SCALE_RATIO * median)


def _statistics(x: np.ndarray, per_feature: bool):
  axis = 0 if per_feature else None
  mean, std = x.mean(axis), x.std(axis)
  return mean, np.where(std > 0, std, 1.0)  # Constant features: only centred.


def standardized_task(
    name: str,
    description: str,
    source: tuple[tuple[np.ndarray, np.ndarray], ...],
    target: tuple[tuple[np.ndarray, np.ndarray], ...],
    num_source_classes: int,
    num_target_classes: int,
    *,
    per_feature: bool | None = True,
    shared_labels: bool | None = None,
    standardize: str = "source",
) -> TransferTask:
  """Standardises every split (by default with the source-train statistics).

  ``per_feature=False`` uses one mean and standard deviation over all features,
  for features on a common scale such as pixels: per-pixel statistics would
  divide border pixels that are almost constant in the source by a tiny
  standard deviation, turning any ink there in the target into inputs in the
  hundreds. ``per_feature=None`` decides with `common_scale` on the source
  training inputs.

  ``standardize``: ``"source"`` puts every split in the source-train frame;
  ``"target"`` standardises the source splits with the source-train
  statistics and the target splits with the target-train ones (each domain
  in its own frame, which also undoes a change of brightness or contrast);
  ``"none"`` leaves the inputs as they are.
  """
  if standardize not in STANDARDIZE_MODES:
    raise ValueError(f"standardize must be one of {STANDARDIZE_MODES}, got "
                     f"{standardize!r}")
  if per_feature is None:
    per_feature = not common_scale(source[0][0])
  if standardize == "none":
    source_frame = target_frame = (0.0, 1.0)
  else:
    source_frame = _statistics(source[0][0], per_feature)
    target_frame = (source_frame if standardize == "source"
                    else _statistics(target[0][0], per_feature))

  def split(xy, frame):
    (x, y), (mean, std) = xy, frame
    return Split(((x - mean) / std).astype(np.float32), np.asarray(y, np.int32))

  source_train, source_val = (split(xy, source_frame) for xy in source)
  target_train, target_val, target_test = (split(xy, target_frame)
                                           for xy in target)
  return TransferTask(
      name=name,
      source_train=source_train,
      source_val=source_val,
      target_train=target_train,
      target_val=target_val,
      target_test=target_test,
      num_source_classes=num_source_classes,
      num_target_classes=num_target_classes,
      description=description,
      shared_labels=shared_labels,
  )


def subsample_per_class(y: np.ndarray, shots_per_class: int,
                        rng: np.random.Generator, *, what: str = "data"
                        ) -> np.ndarray:
  """Sorted indices of ``shots_per_class`` random examples of every class.

  Raises:
    DataError: a class has fewer examples than ``shots_per_class``.
  """
  check_shots(shots_per_class)
  chosen = []
  for label in np.unique(y):
    members = np.flatnonzero(y == label)
    if len(members) < shots_per_class:
      raise DataError(
          f"{what}: class {label} has {len(members)} training examples,"
          f" fewer than the {shots_per_class} shots per class asked for"
      )
    chosen.append(rng.choice(members, shots_per_class, replace=False))
  return np.sort(np.concatenate(chosen))
