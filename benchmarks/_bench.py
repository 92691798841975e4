"""Shared machinery of quality.py, robustness.py and tune_defaults.py.

* the tuning / report split of ``suite.py`` (restricted to the tasks that
  ``lrtransfer.data.get_task`` knows, the missing ones named);
* preparing a task: the source pretrained once, its parameters kept;
* running one recipe over seeds x base rates as ONE vmapped
  ``lrtransfer.train.fit_many`` program, results as ``[rate, seed]`` arrays.

Not part of the library: the scripts import it as a sibling module.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

import _common  # noqa: F401  (a clear message if lrtransfer is missing)
import suite

from flax import nnx

import lrtransfer
from lrtransfer._src.train.runner import expect_large_batches

HIDDEN = (256, 128)
BATCH_SIZE = 32
EPOCHS = 50
SOURCE_EPOCHS = 20
# Constant rates of the grid that the "best of grid" baselines pick from,
# and the base rates of robustness.py: 100x apart end to end.
GRID = (0.003, 0.01, 0.03, 0.1, 0.3)


def available_tasks(names: Sequence[str]) -> tuple[list[str], list[str]]:
  """(tasks get_task knows, tasks it does not) among ``names``."""
  known = set(lrtransfer.data.TASKS)
  return ([n for n in names if n in known], [n for n in names
                                             if n not in known])


def split_record() -> dict[str, Any]:
  """The split as the JSON records it (``"split"``)."""
  tuning, tuning_missing = available_tasks(suite.TUNING_TASKS)
  report, report_missing = available_tasks(suite.REPORT_TASKS)
  return {"tuning": tuning, "report": report,
          "tuning_seeds": list(suite.TUNING_SEEDS),
          "report_seeds": list(suite.REPORT_SEEDS),
          "task_seeds": {"tuning": suite.TUNING_TASK_SEED,
                         "report": suite.REPORT_TASK_SEED},
          "missing": tuning_missing + report_missing,
          "source": "benchmarks/suite.py"}


@dataclasses.dataclass
class Prepared:
  """A task with its source model pretrained once."""
  name: str
  task: Any  # lrtransfer.data.TransferTask
  source: Any  # the source MLP
  source_params: Any  # its nnx.Param state (pure arrays)
  source_val_accuracy: float
  source_seconds: float


def prepare(name: str, *, source_epochs: int = SOURCE_EPOCHS,
            batch_size: int = BATCH_SIZE, hidden=HIDDEN) -> Prepared:
  # Report tasks are drawn with their own task seed (suite.task_seed).
  task = lrtransfer.data.get_task(name, seed=suite.task_seed(name))
  start = time.perf_counter()
  source = lrtransfer.experiment.pretrain_source(
      task, hidden=hidden, epochs=source_epochs, batch_size=batch_size)
  return Prepared(name, task, source,
                  nnx.as_pure(nnx.state(source, nnx.Param)),
                  lrtransfer.train.evaluate(source,
                                            task.source_val)["accuracy"],
                  time.perf_counter() - start)


def target_models(prepared: Prepared, recipe, seeds: Sequence[int],
                  transfer_layers: Optional[int] = None) -> list:
  """One initial target per seed, as ``lrtransfer.experiment.compare`` builds
  them: from the source (``transfer_layers`` hidden layers copied, default
  all but the last) or, for a from-scratch recipe, a fresh MLP."""
  source = prepared.source
  classes = prepared.task.num_target_classes
  if not recipe.from_source:
    config = source.config
    return [lrtransfer.models.MLP(config.in_features, config.hidden, classes,
                                  config.activation, rngs=nnx.Rngs(1000 + s))
            for s in seeds]
  if transfer_layers is None:
    transfer_layers = lrtransfer.experiment.default_transfer_layers(source)
  return [lrtransfer.models.target_from_source(
      source, classes, transfer_layers=transfer_layers,
      rngs=nnx.Rngs(1000 + s)) for s in seeds]


@dataclasses.dataclass
class Grid:
  """One recipe over base rates x seeds (arrays ``[rate, seed]``)."""
  learning_rates: list[float]
  seeds: list[int]
  test: np.ndarray  # final test accuracy
  val: np.ndarray  # final validation accuracy
  final_lr: np.ndarray  # the head's learning rate after the last epoch
  seconds: float
  compile_seconds: float

  def stats(self, i: int = 0) -> dict[str, Any]:
    """``{mean, std, n}`` of the test accuracy at rate index ``i``."""
    values = self.test[i].astype(np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "n": int(values.size)}

  def best_on_val(self) -> int:
    """Index of the rate with the best mean final *validation* accuracy."""
    return int(np.argmax(self.val.mean(1)))


def run(prepared: Prepared, recipe, seeds: Sequence[int], *,
        learning_rates: Optional[Sequence[float]] = None,
        epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
        transfer_layers: Optional[int] = None, test: bool = True) -> Grid:
  """Every seed x every rate of ``recipe`` as one vmapped program.

  ``test=False`` never touches the test split (``Grid.test`` is NaN): what
  tune_defaults.py uses, so nothing it chooses can depend on test numbers.
  """
  lrs = [float(x) for x in (learning_rates or [recipe.learning_rate])]
  seeds = [int(s) for s in seeds]
  task = prepared.task
  models, run_seeds, run_lrs = [], [], []
  for lr in lrs:
    models += target_models(prepared, recipe, seeds, transfer_layers)
    run_seeds += seeds
    run_lrs += [lr] * len(seeds)
  with expect_large_batches():  # batch 32 on every task, few-shot included
    sweep = lrtransfer.train.fit_many(
        models, recipe, task.target_train, task.target_val, seeds=run_seeds,
        learning_rates=run_lrs, epochs=epochs, batch_size=batch_size,
        source_params=prepared.source_params,
        test=task.target_test if test else None)
  shape = (len(lrs), len(seeds))
  test_accuracy = (sweep.test_accuracy.reshape(shape) if test
                   else np.full(shape, np.nan))
  return Grid(lrs, seeds, test_accuracy,
              sweep.history["val_accuracy"][:, -1].reshape(shape),
              sweep.history["group_lr"][:, -1, -1].reshape(shape),
              sweep.seconds, sweep.compile_seconds)


def log_grid(log: Callable[[str], None], name: str, grid: Grid,
             split: str = "test") -> None:
  values = grid.test if split == "test" else grid.val
  cells = "  ".join(
      f"{lr:g}: {values[i].mean():.3f}±{values[i].std():.3f}"
      for i, lr in enumerate(grid.learning_rates))
  log(f"  {name:28s} {split} {cells}  ({grid.seconds:.1f}s + compile "
      f"{grid.compile_seconds:.1f}s)")
