"""Shared machinery of the benchmark scripts.

* the machine a benchmark ran on, JSON, markdown and terminal tables, timing;
* the tuning / report split of ``suite.py`` (restricted to the tasks that
  ``lrtransfer.data.get_task`` knows, the missing ones named);
* preparing a task: the source pretrained once, its parameters kept;
* running one recipe over seeds x base rates as ONE vmapped
  ``lrtransfer.train.fit_many`` program, results as ``[rate, seed]`` arrays.

Not part of the library: the scripts in this folder import it as a sibling
module (``python benchmarks/quality.py`` puts ``benchmarks/`` on
``sys.path``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from flax import nnx

import lrtransfer
import suite
from lrtransfer._src.train.runner import expect_large_batches

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
  """The CPU's model name (Linux /proc/cpuinfo), or platform's best guess."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_record() -> dict[str, Any]:
  """What a benchmark ran on: the JAX device plus the host, for the JSON."""
  from lrtransfer._src.experiment import device_description
  record: dict[str, Any] = dict(device_description())
  record.update({
      "host_cpu": cpu_model(),
      "host_cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "os": f"{platform.system()} {platform.release()}",
  })
  try:
    import optax
    record["optax_version"] = optax.__version__
  except ImportError:  # pragma: no cover - optax is a core dependency
    pass
  try:
    import flax
    record["flax_version"] = flax.__version__
  except ImportError:  # pragma: no cover - flax is a core dependency
    pass
  return record


def device_line(device: dict[str, Any]) -> str:
  """One line naming the machine, for tables and plots."""
  return (f"{device.get('platform', '?')} ({device.get('device_kind', '?')}), "
          f"{device.get('host_cpu', '?')}, {device.get('host_cpu_count', '?')}"
          f" cores, jax {device.get('jax_version', '?')}")


def write_json(path: Path, data: Any) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data, indent=2, sort_keys=False, default=float)
                  + "\n")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]
                   ) -> str:
  """A GitHub markdown table; cells are turned into strings as they are."""
  lines = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
  return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """The same table aligned for a terminal."""
  rows = [[str(cell) for cell in row] for row in rows]
  widths = [max([len(h)] + [len(r[i]) for r in rows])
            for i, h in enumerate(headers)]
  fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
  return "\n".join([fmt(headers), fmt(["-" * w for w in widths])]
                   + [fmt(r) for r in rows])


def median(values: Sequence[float]) -> float:
  values = [v for v in values if v is not None and math.isfinite(v)]
  return statistics.median(values) if values else math.nan


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  """Seconds taken by ``fn()`` (which must block until its work is done)."""
  start = time.perf_counter()
  out = fn()
  return time.perf_counter() - start, out


def fmt(value: Any, digits: int = 3) -> str:
  """A number for a table; None (a peer that did not run) shows as '-'."""
  if value is None:
    return "-"
  if isinstance(value, float) and not math.isfinite(value):
    return "nan"
  if isinstance(value, (int,)) and not isinstance(value, bool):
    return str(value)
  return f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
  return {True: "met", False: "MISSED", None: "n/a"}[met]

# ----------------------------------------------------------------------------
# Tasks and runs: the split, a prepared task, one recipe over rates x seeds.

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
  ok = lambda n: suite.task_and_model(n)[0] in known
  return [n for n in names if ok(n)], [n for n in names if not ok(n)]


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
  task_name, model = suite.task_and_model(name)
  task = lrtransfer.data.get_task(task_name, seed=suite.task_seed(name))
  start = time.perf_counter()
  source = lrtransfer.experiment.pretrain_source(
      task, hidden=hidden, epochs=source_epochs, batch_size=batch_size,
      model=model)
  return Prepared(name, task, source,
                  nnx.as_pure(nnx.state(source, nnx.Param)),
                  lrtransfer.train.evaluate(source, task.source_val)["accuracy"],
                  time.perf_counter() - start)


def target_models(prepared: Prepared, recipe, seeds: Sequence[int],
                  transfer_layers: Optional[int] = None) -> list:
  """One initial target per seed, as ``lrtransfer.experiment.compare`` builds
  them: from the source (``transfer_layers`` levels copied, default all but
  the last) or, for a from-scratch recipe, a fresh model of its type."""
  source = prepared.source
  classes = prepared.task.num_target_classes
  if not recipe.from_source:
    config = dataclasses.asdict(source.config) | {"num_outputs": classes}
    return [type(source)(**config, rngs=nnx.Rngs(1000 + s)) for s in seeds]
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
