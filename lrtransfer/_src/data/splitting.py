"""Per-class splitting and source-frame standardisation, shared by tasks and files."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lrtransfer._src.data.types import DataError, Split, TransferTask

# ----------------------------------------------------------------------------
# Shared helpers.


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


def standardized_task(
    name: str,
    description: str,
    source: tuple[tuple[np.ndarray, np.ndarray], ...],
    target: tuple[tuple[np.ndarray, np.ndarray], ...],
    num_source_classes: int,
    num_target_classes: int,
    *,
    per_feature: bool = True,
) -> TransferTask:
  """Standardises every split with the source-train statistics (see module doc).

  ``per_feature=False`` uses one mean and standard deviation over all features,
  for features on a common scale such as pixels: per-pixel statistics would
  divide border pixels that are almost constant in the source by a tiny
  standard deviation, turning any ink there in the target into inputs in the
  hundreds.
  """
  x_source = source[0][0]
  axis = 0 if per_feature else None
  mean, std = x_source.mean(axis), x_source.std(axis)
  std = np.where(std > 0, std, 1.0)  # Constant features are only centred.

  def split(xy):
    x, y = xy
    return Split(((x - mean) / std).astype(np.float32), np.asarray(y, np.int32))

  source_train, source_val = map(split, source)
  target_train, target_val, target_test = map(split, target)
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
  )


