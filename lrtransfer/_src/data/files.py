"""Reading the user's own data: `.npz` and `.csv` files, checked, into splits."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lrtransfer._src.data import labels
from lrtransfer._src.data.splitting import (
  check_shots,
  split_per_class,
  standardized_task,
  subsample_per_class,
)
from lrtransfer._src.data.types import (
  MAX_CLASSES,
  SUPPORTED_EXTENSIONS,
  DataError,
  Split,
  TransferTask,
)

# ----------------------------------------------------------------------------
# User data.


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
  # np.load would try to unpickle a non-zip file; check the container first.
  if not zipfile.is_zipfile(path):
    raise DataError(
        f"{path}: not a valid .npz (zip) archive; truncated or corrupt?"
    )
  try:
    # allow_pickle=False: a data file must never be able to run code.
    with np.load(path, allow_pickle=False) as archive:
      missing = [k for k in ("x", "y") if k not in archive.files]
      if missing:
        raise DataError(
            f"{path}: missing key(s) {missing}; an .npz needs arrays 'x'"
            f" [n, features] and 'y' [n]; found keys {sorted(archive.files)}"
        )
      for key in ("x", "y"):
        _check_npy_header(path, archive.zip, key)
      return archive["x"], archive["y"]
  except DataError:
    raise
  except ValueError as e:
    if "allow_pickle" not in str(e):
      raise DataError(f"{path}: cannot read an array: {e}") from e
    raise DataError(
        f"{path}: holds object (pickled) arrays, which are never loaded for"
        " safety; save numeric arrays"
    ) from e
  except Exception as e:  # zlib.error, NotImplementedError, RuntimeError...
    # A zip whose members are damaged fails in many library-specific ways;
    # all of them mean the same to the user: this file cannot be read.
    raise DataError(
        f"{path}: cannot read .npz (truncated or corrupt?): "
        f"{type(e).__name__}: {e}"
    ) from e


def _check_npy_header(path: Path, archive: zipfile.ZipFile, key: str) -> None:
  """Refuses a member whose header claims more data than it stores.

  numpy allocates the shape a header announces before reading; a damaged or
  hostile header would ask for any amount of memory (a MemoryError, or worse).
  """
  name = f"{key}.npy"
  with archive.open(name) as member:
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(member)
  claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
  stored = archive.getinfo(name).file_size
  if claimed > stored:
    raise DataError(
        f"{path}: array {key!r} claims shape {shape} of {dtype} "
        f"({claimed} bytes) but stores only {stored} bytes; corrupt file"
    )


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
  try:
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark.
    with open(path, encoding="utf-8-sig") as f:
      first_line = f.readline()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: cannot read .csv: {e}") from e
  # Column names: a first line without a single number. A first line mixing
  # numbers and text is data with a bad value, for loadtxt to report.
  header = int(not any(_is_number(field) for field in first_line.split(",")))
  try:
    with warnings.catch_warnings():
      # An empty file is reported below as a DataError, not also a warning.
      warnings.filterwarnings("ignore", "loadtxt: input contained no data")
      table = np.loadtxt(
          path, delimiter=",", skiprows=header, ndmin=2, dtype=np.float64,
          encoding="utf-8-sig"
      )
  except ValueError as e:
    # numpy names the offending value, row and column; say what is expected.
    hint = ("; every value must be a number, comma-separated, the label an "
            "integer class id in the last column (map class names to 0, 1, "
            "...)")
    raise DataError(f"{path}: non-numeric or malformed value: "
                    f"{str(e).rstrip('.')}{hint}") from e
  if table.shape[0] == 0:
    raise DataError(f"{path}: no data rows")
  if table.shape[1] < 2:
    raise DataError(
        f"{path}: needs at least 2 columns (features..., label), got"
        f" {table.shape[1]}"
    )
  # A text file has no types: whole numbers in the label column are
  # integer labels. Anything else stays float, for the label checks to
  # name (row and value).
  label = table[:, -1]
  if np.isfinite(label).all() and (label == np.round(label)).all():
    label = np.clip(label, -2**62, 2**62).astype(np.int64)
  return table[:, :-1], label


def _validate(path: Path, x: np.ndarray, y: np.ndarray) -> Split:
  if x.ndim != 2:
    raise DataError(f"{path}: x must be 2-D [n, features], got shape {x.shape}")
  # The checks train.fit applies to labels, with the same fixes.
  where = f"{path}: {'y' if path.suffix.lower() == '.npz' else 'the label column'}"
  labels.check_label_format(y, where, error=DataError)
  if len(x) != len(y):
    raise DataError(
        f"{path}: x has {len(x)} rows but y has {len(y)} labels"
    )
  if len(y) == 0:
    raise DataError(f"{path}: 0 rows")
  if x.shape[1] == 0:
    raise DataError(f"{path}: x has 0 feature columns")
  if x.dtype.kind not in "biuf":
    raise DataError(f"{path}: x must be numeric, got dtype {x.dtype}")
  with np.errstate(over="ignore"):  # Overflow shows up as inf just below.
    x32 = x.astype(np.float32)
  bad = ~np.isfinite(x32)
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise DataError(
        f"{path}: x has {int(bad.sum())} NaN/inf value(s) (or beyond float32"
        f" range), first at data row {row}, column {col} (0-based):"
        f" {x[row, col]}"
    )
  labels.check_label_values(y, where, error=DataError)
  if y.max() >= MAX_CLASSES:
    raise DataError(
        f"{path}: label {int(y.max())} implies {int(y.max()) + 1} classes,"
        f" more than the {MAX_CLASSES} supported (is the last column really"
        " the label?)"
    )
  return Split(x32, y.astype(np.int32))


def load_split_file(path: str | Path) -> Split:
  """Loads features and labels from an ``.npz`` or ``.csv`` file.

  ``.npz``: arrays ``x`` (numeric, ``[n, features]``) and ``y`` (integer
  labels, ``[n]``). ``.csv``: comma-separated numbers, one example per row, the
  last column the integer label; an optional first line of column names is
  skipped.

  Args:
    path: the file.

  Returns:
    A `Split` (features as float32, labels as int32); not standardised.

  Raises:
    DataError: missing file, unsupported extension, unreadable file, missing
      keys, wrong shapes, no rows, non-numeric or non-finite features, or
      labels that are not non-negative integers below `MAX_CLASSES`.
  """
  path = Path(path)
  if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
    raise DataError(
        f"{path}: unsupported extension {path.suffix!r}; use one of"
        f" {list(SUPPORTED_EXTENSIONS)}"
    )
  if not path.is_file():
    raise DataError(f"{path}: file not found")
  if path.suffix.lower() == ".npz":
    x, y = _read_npz(path)
  else:
    x, y = _read_csv(path)
  return _validate(path, x, y)


def _num_classes(path: Path, split: Split) -> int:
  present = np.unique(split.y)
  if len(present) < 2:
    raise DataError(
        f"{path}: needs at least 2 classes, found labels {present.tolist()}"
    )
  num_classes = int(present[-1]) + 1
  missing = np.setdiff1d(np.arange(num_classes), present)
  if missing.size:
    # A head with classes that never occur is almost always a labelling bug.
    shown = missing[:10].tolist()
    raise DataError(
        f"{path}: labels must be 0..{num_classes - 1} with every class"
        f" present; no examples of class(es) {shown}"
        f"{' ...' if missing.size > 10 else ''} -- relabel to 0.."
        f"{len(present) - 1}"
        + (f" (e.g. y - {int(present[0])})" if np.array_equal(
            present, np.arange(present[0], present[0] + len(present)))
           else " (e.g. np.unique(y, return_inverse=True)[1])")
    )
  return num_classes


def _check_labels_within(path: Path, split: Split, num_classes: int,
                         train_path: Path) -> None:
  if split.y.max() >= num_classes:
    raise DataError(
        f"{path}: label {int(split.y.max())} does not occur in the training"
        f" file {train_path} (labels 0..{num_classes - 1})"
    )


def _as_paths(files, count: int, what: str) -> list[Path]:
  """One path (to be split) or ``count`` paths (the user's own splits)."""
  if isinstance(files, (str, Path)):
    return [Path(files)]
  files = [Path(f) for f in files]
  if len(files) != count:
    raise ValueError(f"{what}: pass one file to split, or {count} files"
                     f" (train, validation{', test' if count == 3 else ''}),"
                     f" got {len(files)}")
  return files


def load_user_task(
    source: str | Path | Sequence[str | Path],
    target: str | Path | Sequence[str | Path],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    shots_per_class: int | None = None,
    standardize: str = "source",
) -> TransferTask:
  """Builds a `TransferTask` from the user's source and target files.

  Each side is either one file, split per class (source: train and
  validation; target: train, validation and test; every class gets at least
  one example in every split), or the user's own splits: ``(train, val)``
  files for the source, ``(train, val, test)`` for the target. Features are
  standardised as ``standardize`` says (see `standardized_task`): with one
  mean and scale for all features when they share a scale, like pixels, per
  feature otherwise (`common_scale`).

  Args:
    source: source data (see `load_split_file` for the formats), or its
      ``(train, val)`` files.
    target: target data with the same number of features, or its
      ``(train, val, test)`` files.
    val_fraction: fraction of each class held out for validation (one file).
    test_fraction: fraction of each target class held out for testing.
    seed: seed of the shuffles and of the ``shots_per_class`` draw.
    shots_per_class: keep only this many random target training examples of
      every class (few-shot); None keeps them all.
    standardize: ``"source"``, ``"target"`` or ``"none"``.

  Returns:
    The `TransferTask`, named after the files.

  Raises:
    DataError: a file is unusable (see `load_split_file`), the feature counts
      differ, a training file has fewer than 2 classes or a class without
      examples, a validation or test file has a label its training file
      lacks, a class is too small to give every split an example, or fewer
      than ``shots_per_class``.
    ValueError: the fractions are not in (0, 1) or sum to 1 or more, or a
      side has neither 1 nor its 2 (source) / 3 (target) files.
  """
  for name, value in (("val_fraction", val_fraction),
                      ("test_fraction", test_fraction)):
    if not 0.0 < value < 1.0:
      raise ValueError(f"{name} must be in (0, 1), got {value!r}")
  if val_fraction + test_fraction >= 1.0:
    raise ValueError(
        f"val_fraction + test_fraction must be < 1 to leave training data, got"
        f" {val_fraction} + {test_fraction}"
    )
  if shots_per_class is not None:
    check_shots(shots_per_class)
  source_paths = _as_paths(source, 2, "source")
  target_paths = _as_paths(target, 3, "target")
  rng = np.random.default_rng(seed)
  source_splits, num_source_classes = _user_splits(
      source_paths, [val_fraction], rng)
  target_splits, num_target_classes = _user_splits(
      target_paths, [val_fraction, test_fraction], rng)
  shapes = {}  # file -> feature shape; a split file is named once
  for paths, splits in ((source_paths, source_splits),
                        (target_paths, target_splits)):
    for i, split in enumerate(splits):
      shapes.setdefault(str(paths[min(i, len(paths) - 1)]),
                        split.feature_shape)
  if len(set(shapes.values())) > 1:
    raise DataError("feature counts differ: " + ", ".join(
        f"{p} has {int(np.prod(w))}" for p, w in shapes.items()))
  if shots_per_class is not None:
    train = target_splits[0]
    keep = subsample_per_class(train.y, shots_per_class, rng,
                               what=str(target_paths[0]))
    target_splits[0] = Split(train.x[keep], train.y[keep])
  source_name = source_paths[0].stem
  target_name = target_paths[0].stem
  return standardized_task(
      f"{source_name}->{target_name}",
      f"user data: source {', '.join(map(str, source_paths))}; target"
      f" {', '.join(map(str, target_paths))}",
      tuple((s.x, s.y) for s in source_splits),
      tuple((s.x, s.y) for s in target_splits),
      num_source_classes=num_source_classes,
      num_target_classes=num_target_classes,
      per_feature=None,
      standardize=standardize,
  )


def _user_splits(paths: list[Path], held_out: list[float],
                 rng: np.random.Generator) -> tuple[list[Split], int]:
  """Training split first, then the held-out ones; and the class count."""
  if len(paths) == 1:
    whole = load_split_file(paths[0])
    num_classes = _num_classes(paths[0], whole)
    *held, train = split_per_class(whole.y, held_out, rng,
                                   what=str(paths[0]))
    return [Split(whole.x[i], whole.y[i]) for i in (train, *held)], (
        num_classes)
  splits = [load_split_file(p) for p in paths]
  num_classes = _num_classes(paths[0], splits[0])
  for path, split in zip(paths[1:], splits[1:]):
    _check_labels_within(path, split, num_classes, paths[0])
  return splits, num_classes
