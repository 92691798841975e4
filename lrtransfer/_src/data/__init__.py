"""Transfer data: types, embedded tasks and the user's own files.

A `TransferTask` holds a source task (train/val) and a few-shot target task
(train/val/test) as NumPy arrays. Every builder is deterministic given its
``seed`` and runs in well under a second, so tests and benchmarks can build
tasks freely.

Embedded tasks (see `TASKS`):

* ``digits_label_split`` -- sklearn digits 0-4 as source, 5-9 as target (a new
  label space over the same input domain).
* ``digits_domain_shift`` -- the same ten digit classes, but the target images
  are shifted one pixel right (a new input domain).
* ``teacher_student_close`` / ``teacher_student_far`` -- synthetic tasks whose
  target labelling function is a random teacher network close to (similarity
  0.9) or far from (similarity 0.3) the source teacher.
* and more: corrupted digits, fewer shots, a similarity sweep, a tabular
  covariate shift and MNIST tasks (the full list: ``tasks.py``).

Inputs of all splits are standardised with the *source training* statistics:
the transferred layers were trained on inputs in that frame, so the target must
go through the same transform to reach them in it (re-standardising on the
target would silently undo part of a domain shift, and a few-shot target
training set gives noisy statistics anyway). Tabular features are standardised
one by one; pixels share one mean and scale (see `splitting.standardized_task`).

The types and the loading of the user's own files import eagerly; the
embedded tasks load with their first use, so that the fit loop (which reads
`Split`) does not import scikit-learn and scipy.
"""

import importlib
from typing import Any

from lrtransfer._src.data.files import load_split_file as load_split_file
from lrtransfer._src.data.files import load_user_task as load_user_task
from lrtransfer._src.data.types import DataError as DataError
from lrtransfer._src.data.types import Split as Split
from lrtransfer._src.data.types import TransferTask as TransferTask
from lrtransfer._src.extras import require_train_extra

# Name -> the module that defines it. Each of these modules imports
# scikit-learn or scipy (`tasks` through its registry) except `synthetic`.
_LAZY = {
    "TASKS": "tasks",
    "get_task": "tasks",
    "digits_domain_shift": "digits",
    "digits_label_split": "digits",
    "digits_corruption_shift": "digits",
    "teacher_student": "synthetic",
    "CORRUPTIONS": "corruptions",
    "mnist_label_split": "mnist",
    "mnist_to_digits": "mnist",
    "breast_cancer_shift": "tabular",
    "wine_shift": "tabular",
}


def __getattr__(name: str) -> Any:
  """Imports an embedded task's module on first use of one of its names."""
  if name not in _LAZY:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  if _LAZY[name] != "synthetic":
    require_train_extra("lrtransfer's embedded tasks", "sklearn", "scipy")
  module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
  value = getattr(module, name)
  globals()[name] = value  # later lookups skip __getattr__
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
