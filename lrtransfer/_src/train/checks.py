"""Eager checks of the data ``fit``, ``fit_many`` and ``evaluate`` are given.

A mistake in the data must stop the run before it starts, with a message
that names the split, the row and the fix: inside the compiled program an
out-of-range label is silently clipped or wrapped by the gather of the
cross-entropy (NaN losses, or a wrong class with finite ones), and a NaN
input gives NaN losses every epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional

import jax
import numpy as np
from flax import nnx

from lrtransfer._src.data import Split, labels


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """Inputs and targets as arrays (a :class:`Split` or any ``(x, y)``)."""
  x: Any  # [n, ...] inputs
  y: Any  # [n, ...] targets: integer labels, or floats for regression

  def __len__(self) -> int:
    return len(self.y)


def as_split(split: Any, name: str) -> ArraySplit:
  """A :class:`Split`, or an ``(x, y)`` pair of arrays with equal length."""
  if isinstance(split, Split):
    return ArraySplit(split.x, split.y)
  if isinstance(split, tuple) and len(split) == 2:
    x, y = np.asarray(split[0]), np.asarray(split[1])
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y) or len(x) == 0:
      raise ValueError(f"{name} must be a Split or an (x, y) pair with the "
                       f"same non-zero number of rows, got shapes {x.shape} "
                       f"and {y.shape}")
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "fiu":
      raise ValueError(f"{name}: x and y must be numeric arrays, got "
                       f"{x.dtype} and {y.dtype}")
    return ArraySplit(x.astype(np.float32) if x.dtype.kind == "f" else x,
                      y.astype(np.float32) if y.dtype.kind == "f" else y)
  raise ValueError(f"{name} must be a lrtransfer.data.Split or an (x, y) "
                   f"pair of arrays, got {type(split).__name__}")


def _first_row(bad: np.ndarray) -> int:
  """The first row of ``bad`` (``[n, ...]`` booleans) with a True."""
  return int(np.argmax(bad.reshape(len(bad), -1).any(1)))


def check_finite_inputs(split: ArraySplit, name: str) -> None:
  """Refuses NaN or infinite inputs (every loss would be NaN)."""
  x = np.asarray(split.x)
  if x.dtype.kind != "f":
    return
  bad = ~np.isfinite(x)
  if bad.any():
    raise ValueError(
        f"{name}.x holds {int(bad.sum())} NaN or infinite values, the first "
        f"in row {_first_row(bad)}: every loss would be NaN. Impute or drop "
        "them before training.")


def output_shape(model: nnx.Module, x: Any) -> Optional[tuple[int, ...]]:
  """The shape of ``model``'s output for a batch of one example of ``x``
  (from shapes only, nothing computed), or None when the model cannot be
  traced on ``x`` (the run itself then reports what is wrong)."""
  graph, state = nnx.split(model)
  example = jax.ShapeDtypeStruct((1, *np.shape(x)[1:]), x.dtype)
  try:
    out = jax.eval_shape(lambda s, xs: nnx.merge(graph, s)(xs), state,
                         example)
  except Exception:  # pylint: disable=broad-except
    return None
  shape = getattr(out, "shape", None)
  return tuple(shape) if shape is not None and len(shape) >= 2 else None


def check_class_labels(y: Any, name: str,
                       logits_shape: Optional[tuple[int, ...]],
                       takes_loss_fn: bool = True,
                       purpose: str = "for the default loss (softmax "
                       "cross-entropy)") -> None:
  """Integer labels in ``[0, classes)`` shaped like the logits without their
  class axis (``[n]`` for logits ``[n, classes]``), as the default loss
  needs (``takes_loss_fn``: the caller accepts a ``loss_fn`` for other
  targets). ``logits_shape``: one example's logits ``(1, ..., classes)``,
  or None when unknown (then ``[n]`` is expected and no range checked).

  The checks and their fixes are those ``lrtransfer run`` applies to the
  user's files (``data.labels``): the same labels get the same message.
  """
  labels.check_label_format(
      np.asarray(y), f"{name}.y",
      class_shape=None if logits_shape is None else logits_shape[1:-1],
      purpose=f" {purpose}",
      extra="; for other targets pass loss_fn=" if takes_loss_fn else "")
  labels.check_label_values(
      np.asarray(y), f"{name}.y",
      classes=None if logits_shape is None else int(logits_shape[-1]))


def check_data(model: nnx.Module, splits: dict[str, ArraySplit],
               default_loss: bool) -> None:
  """Every check of this module on ``{name: split}`` for ``model``."""
  for name, split in splits.items():
    check_finite_inputs(split, name)
  if default_loss:
    first = next(iter(splits.values()))
    shape = output_shape(model, first.x)
    for name, split in splits.items():
      check_class_labels(split.y, name, shape)
  elif "test" in splits:
    # The test score is classification accuracy whatever the loss: a
    # regression's float targets would score 0.0 without a word.
    check_class_labels(
        splits["test"].y, "test", output_shape(model, splits["test"].x),
        takes_loss_fn=False,
        purpose="because test= is scored by classification accuracy "
        "(argmax of the outputs == the label) whatever loss_fn is; for "
        "other targets leave test=None and evaluate the returned "
        "parameters yourself")


def check_options(checkpoint_dir: Any, checkpoint_every: Optional[int],
                  resume: bool, source_params: Any,
                  reports_chunks: bool = False) -> None:
  """Refuses options that would be silently ignored or misread.

  ``reports_chunks``: ``checkpoint_every`` also sets how often ``on_chunk``
  reports progress (``fit_many``), so without a folder it is not a mistake.
  """
  if resume and checkpoint_dir is None:
    raise ValueError("resume=True needs checkpoint_dir, the folder of the "
                     "run checkpoints to resume from")
  if (checkpoint_every is not None and checkpoint_dir is None
      and not reports_chunks):
    warnings.warn(
        f"checkpoint_every={checkpoint_every!r} without checkpoint_dir: "
        "nothing is saved (pass checkpoint_dir to keep run checkpoints)",
        UserWarning, stacklevel=3)
  if isinstance(source_params, nnx.Module):
    raise ValueError(
        "source_params must be the source model's parameters, "
        "flax.nnx.state(source_model, flax.nnx.Param), not the model "
        f"itself ({type(source_params).__name__})")
