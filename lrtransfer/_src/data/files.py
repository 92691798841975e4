"""Reading the user's own data: `.npz` and `.csv` files, checked, into splits."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from lrtransfer._src.data.splitting import split_per_class, standardized_task
from lrtransfer._src.data.types import (MAX_CLASSES, SUPPORTED_EXTENSIONS,
                                        DataError, Split, TransferTask)

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
    # numpy names the offending value, row and column.
    raise DataError(f"{path}: non-numeric or malformed value: {e}") from e
  if table.shape[0] == 0:
    raise DataError(f"{path}: no data rows")
  if table.shape[1] < 2:
    raise DataError(
        f"{path}: needs at least 2 columns (features..., label), got"
        f" {table.shape[1]}"
    )
  return table[:, :-1], table[:, -1]


def _validate(path: Path, x: np.ndarray, y: np.ndarray) -> Split:
  if x.ndim != 2:
    raise DataError(f"{path}: x must be 2-D [n, features], got shape {x.shape}")
  if y.ndim != 1:
    raise DataError(f"{path}: y must be 1-D [n], got shape {y.shape}")
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
  if y.dtype.kind not in "iuf":
    raise DataError(f"{path}: labels y must be integers, got dtype {y.dtype}")
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
  if y.dtype.kind == "f":
    not_int = ~np.isfinite(y) | (y != np.round(y))
    if not_int.any():
      row = int(np.flatnonzero(not_int)[0])
      raise DataError(
          f"{path}: labels must be integers, got {y[row]} at data row {row}"
          " (0-based)"
      )
  if (y < 0).any():
    row = int(np.flatnonzero(y < 0)[0])
    raise DataError(
        f"{path}: labels must be >= 0, got {y[row]:g} at data row {row}"
        " (0-based)"
    )
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
        f"{' ...' if missing.size > 10 else ''} -- relabel to consecutive"
        " integers"
    )
  return num_classes


def load_user_task(
    source_path: str | Path,
    target_path: str | Path,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TransferTask:
  """Builds a `TransferTask` from the user's source and target files.

  The source file is split (per class) into train and validation, the target
  file into train, validation and test; every class gets at least one example
  in every split. Features are standardised with the source-train statistics
  (see the module docstring).

  Args:
    source_path: source data (see `load_split_file` for the formats).
    target_path: target data, with the same number of features.
    val_fraction: fraction of each class held out for validation.
    test_fraction: fraction of each target class held out for testing.
    seed: seed of the shuffles.

  Returns:
    The `TransferTask`, named after the two files.

  Raises:
    DataError: a file is unusable (see `load_split_file`), the feature counts
      differ, a file has fewer than 2 classes or a class without examples, or
      a class is too small to give every split an example.
    ValueError: the fractions are not in (0, 1) or sum to 1 or more.
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
  source_path, target_path = Path(source_path), Path(target_path)
  source = load_split_file(source_path)
  target = load_split_file(target_path)
  if source.num_features != target.num_features:
    raise DataError(
        f"feature counts differ: {source_path} has {source.num_features},"
        f" {target_path} has {target.num_features}"
    )
  num_source_classes = _num_classes(source_path, source)
  num_target_classes = _num_classes(target_path, target)

  rng = np.random.default_rng(seed)
  src_val, src_train = split_per_class(
      source.y, [val_fraction], rng, what=str(source_path)
  )
  tgt_val, tgt_test, tgt_train = split_per_class(
      target.y, [val_fraction, test_fraction], rng, what=str(target_path)
  )
  return standardized_task(
      f"{source_path.stem}->{target_path.stem}",
      f"user data: source {source_path}, target {target_path}",
      tuple((source.x[i], source.y[i]) for i in (src_train, src_val)),
      tuple((target.x[i], target.y[i]) for i in (tgt_train, tgt_val, tgt_test)),
      num_source_classes=num_source_classes,
      num_target_classes=num_target_classes,
  )
