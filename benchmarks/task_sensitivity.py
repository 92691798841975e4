"""Which tasks are learning-rate sensitive: best vs worst constant rate.

    python benchmarks/task_sensitivity.py [--quick] [--tasks ...] [--out FILE]

For every registered task (``lrtransfer.data.TASKS``; the tuning and report
tasks of ``suite.py`` first): pretrain the source once
(``lrtransfer.experiment.pretrain_source``: 20 epochs, batch 32, rate 0.05),
build the target models the library's way
(``lrtransfer.experiment.target_models``: all hidden layers but the last
copied, new head), then fine-tune with SGD-momentum 0.9 at every constant
rate of the grid 0.003, 0.01, 0.03, 0.1, 0.3 x 3 seeds (new head's
initialisation and data order), all 15 runs as ONE vmapped
``lrtransfer.train.fit_many`` program, 60 epochs, batch 16, MLP (256, 128).
The same grid is run from scratch (no transfer) as a second program, to show
where transfer helps and where it hurts (negative transfer).

A task is *learning-rate sensitive* when the best and the worst rate of the
grid differ by >= 5 points of mean target test accuracy (fine-tuning). The
figure describes the task, not a method: it is what lets a benchmark tell a
strategy that handles the rate from one that does not.

Writes ``benchmarks/results/task_sensitivity.json`` (``--quick``:
``task_sensitivity_quick.json``, 2 tasks, 10 epochs, 2 seeds) and prints a
table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from flax import nnx

import _common
import lrtransfer
import suite
from lrtransfer.experiment import target_models

GRID = _common.GRID
SENSITIVE_POINTS = 0.05
DEFAULT_OUT = _common.RESULTS_DIR / "task_sensitivity.json"
QUICK_OUT = _common.RESULTS_DIR / "task_sensitivity_quick.json"
QUICK_TASKS = ("digits_blur", "breast_cancer_shift")


def grid_runs(task, source, *, from_source: bool, seeds: Sequence[int],
              epochs: int, batch_size: int) -> dict[str, Any]:
  """Every rate x seed of the grid as one ``fit_many`` program."""
  recipe = lrtransfer.recipes.Recipe(
      "constant" if from_source else "scratch", GRID[0],
      from_source=from_source)
  models, run_seeds, rates = [], [], []
  for lr in GRID:
    # The same initial models at every rate: only the rate differs.
    models += target_models(
        source, recipe, task.num_target_classes, seeds)
    run_seeds += list(seeds)
    rates += [lr] * len(seeds)
  source_params = nnx.as_pure(nnx.state(source, nnx.Param))
  result = lrtransfer.train.fit_many(
      models, recipe, task.target_train, task.target_val, seeds=run_seeds,
      learning_rates=rates, epochs=epochs, batch_size=batch_size,
      source_params=source_params if from_source else None,
      test=task.target_test)
  test = np.asarray(result.test_accuracy).reshape(len(GRID), len(seeds))
  val = np.asarray(result.history["val_accuracy"])[:, -1].reshape(
      len(GRID), len(seeds))
  per_rate = {str(lr): {"test_mean": float(test[i].mean()),
                        "test_std": float(test[i].std()),
                        "val_mean": float(val[i].mean())}
              for i, lr in enumerate(GRID)}
  means = test.mean(1)
  by_val = int(np.argmax(val.mean(1)))
  return {
      "rates": per_rate,
      "best_lr": GRID[int(np.argmax(means))],
      "worst_lr": GRID[int(np.argmin(means))],
      "best_test": float(means.max()),
      "worst_test": float(means.min()),
      "spread": float(means.max() - means.min()),
      # Within 10x around the library's default rate (0.01..0.1): whether
      # the task cares about the rate short of divergence.
      "spread_0.01_to_0.1": float(means[1:4].max() - means[1:4].min()),
      "picked_on_val_lr": GRID[by_val],
      "picked_on_val_test": float(means[by_val]),
      "seconds": result.seconds,
      "compile_seconds": result.compile_seconds,
  }


def measure(task_name: str, *, seeds, epochs, batch_size, source_epochs,
            hidden, log=print) -> dict[str, Any]:
  start = time.perf_counter()
  task = lrtransfer.data.get_task(task_name, seed=suite.task_seed(task_name))
  source = lrtransfer.experiment.pretrain_source(
      task, hidden=hidden, epochs=source_epochs)
  source_val_accuracy = lrtransfer.train.evaluate(
      source, task.source_val)["accuracy"]
  common = dict(seeds=seeds, epochs=epochs, batch_size=batch_size)
  source_on_target = None
  if task.shared_labels:  # How far the shift moves the source model.
    source_on_target = lrtransfer.train.evaluate(
        source, task.target_test)["accuracy"]
  finetune = grid_runs(task, source, from_source=True, **common)
  scratch = grid_runs(task, source, from_source=False, **common)
  record = {
      "description": task.description,
      "sizes": {"source_train": len(task.source_train),
                "target_train": len(task.target_train),
                "target_val": len(task.target_val),
                "target_test": len(task.target_test),
                "features": int(np.prod(task.target_train.x.shape[1:]))},
      "source_val_accuracy": source_val_accuracy,
      # The source model as is on the target test set (same label set only).
      "source_on_target_accuracy": source_on_target,
      "finetune": finetune,
      "scratch": scratch,
      "sensitive": finetune["spread"] >= SENSITIVE_POINTS,
      # Stricter: sensitive without counting divergence at the grid's edges.
      "sensitive_0.01_to_0.1": (finetune["spread_0.01_to_0.1"]
                                >= SENSITIVE_POINTS),
      # Best of grid from scratch beats best of grid fine-tuned.
      "negative_transfer": scratch["best_test"] > finetune["best_test"],
      "seconds": time.perf_counter() - start,
  }
  log(f"{task_name}: spread {finetune['spread']:.3f} "
      f"(best {finetune['best_test']:.3f} at {finetune['best_lr']}, worst "
      f"{finetune['worst_test']:.3f} at {finetune['worst_lr']}); scratch best "
      f"{scratch['best_test']:.3f}; {record['seconds']:.0f}s")
  return record


def table(tasks: dict[str, Any]) -> str:
  headers = ["task", "set", *[f"ft {lr}" for lr in GRID], "spread",
             "spread 0.01-0.1", "sensitive", "scratch best", "neg. transfer"]
  rows = []
  for name, r in tasks.items():
    split = ("tuning" if name in suite.TUNING_TASKS else
             "report" if name in suite.REPORT_TASKS else "-")
    rows.append([name, split,
                 *[_common.fmt(r["finetune"]["rates"][str(lr)]["test_mean"])
                   for lr in GRID],
                 _common.fmt(r["finetune"]["spread"]),
                 _common.fmt(r["finetune"]["spread_0.01_to_0.1"]),
                 "yes" if r["sensitive"] else "no",
                 _common.fmt(r["scratch"]["best_test"]),
                 "yes" if r["negative_transfer"] else "no"])
  return _common.markdown_table(headers, rows)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help=f"tasks {QUICK_TASKS}, 10 epochs, 2 seeds")
  parser.add_argument("--tasks", nargs="+", default=None,
                      choices=sorted(lrtransfer.data.TASKS),
                      help="default: every registered task, suite.py's first")
  parser.add_argument("--out", type=Path, default=None)
  parser.add_argument("--epochs", type=int, default=None)
  parser.add_argument("--seeds", type=int, default=None)
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  quick = args.quick
  # Registered tasks with the MLP: a suite entry "<task>@cnn" is its task.
  registered = tuple(dict.fromkeys(suite.task_and_model(n)[0]
                                   for n in suite.ALL_TASKS))
  tasks = args.tasks or (QUICK_TASKS if quick else registered + tuple(
      n for n in lrtransfer.data.TASKS if n not in registered))
  epochs = args.epochs or (10 if quick else 60)
  seeds = list(range(args.seeds or (2 if quick else 3)))
  out = args.out or (QUICK_OUT if quick else DEFAULT_OUT)
  settings = dict(seeds=seeds, epochs=epochs, batch_size=16,
                  source_epochs=5 if quick else 20, hidden=(256, 128))
  results = {}
  for name in tasks:
    results[name] = measure(name, **settings)
  report = [n for n in suite.REPORT_TASKS if n in results]
  sensitive_report = [n for n in report if results[n]["sensitive"]]
  strict_report = [n for n in report if results[n]["sensitive_0.01_to_0.1"]]
  data = {
      "device": _common.device_record(),
      "grid": list(GRID),
      "settings": {**settings, "momentum": 0.9,
                   "task_seeds": {"tuning": suite.TUNING_TASK_SEED,
                                  "report": suite.REPORT_TASK_SEED},
                   "transfer_layers": "all hidden but the last (library "
                                      "default)",
                   "sensitive_if_spread_at_least": SENSITIVE_POINTS},
      "split": {"tuning": list(suite.TUNING_TASKS),
                "report": list(suite.REPORT_TASKS)},
      "tasks": results,
      "sensitive": [n for n in results if results[n]["sensitive"]],
      "report_sensitive": sensitive_report,
      "report_sensitive_fraction": (len(sensitive_report) / len(report)
                                    if report else None),
      "report_sensitive_0.01_to_0.1": strict_report,
  }
  _common.write_json(out, data)
  markdown = table(results)
  out.with_suffix(".md").write_text(
      "# Learning-rate sensitivity of the tasks\n\n"
      f"{_common.device_line(data['device'])}; `python "
      f"benchmarks/task_sensitivity.py{' --quick' if quick else ''}`. Mean "
      f"target test accuracy over {len(seeds)} seeds, fine-tuning (ft) at "
      f"each constant rate, {epochs} epochs, batch 16; spread = best - worst "
      "rate; sensitive = spread >= 0.05 (5 points); spread "
      "0.01-0.1 leaves out the edges of the grid, where runs diverge (0.3) "
      "or barely move (0.003).\n\n" + markdown + "\n")
  print(markdown)
  if report:
    print(f"\nreport tasks sensitive: {len(sensitive_report)}/{len(report)}"
          f" ({', '.join(sensitive_report)}); within 0.01-0.1: "
          f"{len(strict_report)}/{len(report)} ({', '.join(strict_report)})")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
