"""The checks of class labels, one set for ``lrtransfer run`` and ``train.fit``.

Labels reach the library two ways: as arrays given to ``train.fit`` /
``fit_many`` / ``evaluate`` (``train/checks.py``) and in the user's files
read by ``lrtransfer run`` (``data/files.py``). Both call these functions,
so a label array gets the same verdict and the same fix from either:

* integer class indices ``[n]`` (or ``[n, ...]`` for per-position logits)
  pass;
* floats holding whole numbers (``0.0 .. 4.0``) are refused with the cast
  that fixes them, ``y.astype(np.int32)``; other floats (a regression
  target, NaN) are refused as not class indices;
* one-hot or score rows ``[n, classes]`` -> ``y.argmax(-1)``;
* a column ``[n, 1]`` -> ``y.ravel()``;
* a negative label, or one beyond the model's outputs, is named with its
  row.

A ``.csv`` file has no types: its label column is read as numbers, and
whole numbers there are integer labels (``data/files.py`` converts them
before these checks).

Only NumPy is imported: the command checks its files before the training
code is loaded.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _whole_numbers(y: np.ndarray) -> bool:
  """Whether every value of a numeric ``y`` is a finite whole number."""
  if y.dtype.kind in "biu":
    return True
  if y.dtype.kind != "f":
    return False
  return bool(np.isfinite(y).all() and (y == np.round(y)).all())


def _first_row(bad: np.ndarray) -> int:
  """The first row of ``bad`` (``[n, ...]`` booleans) with a True."""
  return int(np.argmax(bad.reshape(len(bad), -1).any(1)))


def _fix(y: np.ndarray, label_dims: int) -> str:
  """The fix for labels of a wrong shape or dtype, in parentheses, or ``""``.

  ``label_dims``: the number of axes the labels should have.
  """
  if y.dtype.kind not in "biuf":
    return ""
  if y.ndim == label_dims + 1 and y.shape[-1] == 1:
    return (" (a column [n, 1]: pass y.ravel())" if label_dims == 1
            else " (a trailing axis of 1: pass y[..., 0])")
  if y.ndim == label_dims + 1 and y.shape[-1] > 1:
    return " (one-hot rows: pass y.argmax(-1))"
  if y.ndim == label_dims and _whole_numbers(y):
    return " (whole numbers stored as floats: pass y.astype(np.int32))"
  if y.ndim == label_dims and y.dtype.kind == "f" and y.size:
    bad = ~np.isfinite(y) | (y != np.round(y))
    row = _first_row(bad)
    value = y.reshape(len(y), -1)[row][bad.reshape(len(y), -1)[row]][0]
    return f" (row {row} holds {value}, not a class index)"
  return ""


def check_label_format(y: np.ndarray, where: str, *,
                       class_shape: Optional[Sequence[int]] = None,
                       purpose: str = "", extra: str = "",
                       error: type[Exception] = ValueError) -> None:
  """Refuses ``y`` unless it holds integer class labels of the right shape.

  Args:
    y: the labels.
    where: how the message names them, e.g. ``"train.y"`` or
      ``"data.npz: y"``.
    class_shape: the logits' shape without their leading example axis and
      trailing class axis (``()`` for logits ``[n, classes]``); None:
      unknown, ``[n]`` is expected.
    purpose: words after the expected shape, e.g. ``" for the default
      loss (softmax cross-entropy)"``.
    extra: words at the end, e.g. ``"; for other targets pass loss_fn="``.
    error: the exception type raised.

  Raises:
    ``error``: named ``where``, the expected and the actual dtype and shape,
      and the fix: ``y.astype(np.int32)`` (whole-number floats),
      ``y.argmax(-1)`` (one-hot rows), ``y.ravel()`` (a column).
  """
  y = np.asarray(y)
  class_shape = tuple(class_shape) if class_shape is not None else ()
  label_dims = 1 + len(class_shape)
  if (y.dtype.kind in "iu" and y.ndim == label_dims
      and y.shape[1:] == class_shape):
    return
  expected = ("[n]" if label_dims == 1 else
              f"[n, {', '.join(map(str, class_shape))}]")
  raise error(f"{where} must be integer class labels of shape {expected}"
              f"{purpose}, got {y.dtype} {y.shape}{_fix(y, label_dims)}"
              f"{extra}")


def check_label_values(y: np.ndarray, where: str, *,
                       classes: Optional[int] = None,
                       error: type[Exception] = ValueError) -> None:
  """Refuses a negative label, or one ``>= classes`` (when known).

  ``y`` has passed :func:`check_label_format`. The message names the label,
  its row (0-based) and the fix.
  """
  y = np.asarray(y)
  if y.size == 0:
    return
  if y.min() < 0:
    row = int(np.unravel_index(np.argmin(y), y.shape)[0])
    raise error(
        f"{where} holds label {y.min()} (row {row}): labels must "
        "be class indices 0, 1, ..., classes - 1")
  if classes is not None and y.max() >= classes:
    row = int(np.unravel_index(np.argmax(y), y.shape)[0])
    raise error(
        f"{where} holds label {y.max()} (row {row}) but the model "
        f"has {classes} outputs: labels must be in [0, {classes}) (1-based "
        "labels: pass y - 1; more classes: a larger head)")
