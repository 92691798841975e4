"""The brake under a noisy training loss: final rates over seeds, two brakes.

``adjust``'s brake reads the epoch's mean minibatch training loss. With
Dropout and few steps per epoch that mean is noisy, and a brake on any rise
cuts the rate while the monitored validation value keeps improving. Two
settings of ``lrtransfer.AdjustRule`` are compared:

* ``brake_on_any_rise``: ``brake_while_improving=True`` (the brake also
  while validation improves);
* ``recommended``: the library default (``brake_while_improving=False``:
  while validation improves, only a training loss above where training
  started, or not finite, brakes), i.e. ``recipes.recommended_recipe()``.

Two studies:

1. ``dropout``: a Dropout MLP (64-128-64-5, Dropout after each hidden
   layer; the two body layers copied from a source trained on digits 0-4, a
   fresh head) fine-tuned on 75 examples of digits 5-9 (3 steps per epoch),
   every seed in one vmapped ``fit_many`` program: the brakes (the scale
   falling by a factor <= 0.6; an undone raise falls by 1/1.5 and is not
   counted), the brakes at evaluations that improved the best validation
   loss, the final scales and their spread (max / min over seeds), the test
   accuracy; with Dropout 0.3 and 0.0.
2. ``report``: the recommended recipe at its default rate on every report
   task of ``suite.py`` (10 report seeds, 50 epochs, as
   ``benchmarks/robustness.py``): the spread of the head's final rate over
   seeds and the mean test accuracy, per setting.

::

  python benchmarks/brake_noise.py --out benchmarks/results/brake_noise.json
  python benchmarks/brake_noise.py --quick   # a smoke run

A study, not a selection: the default was chosen on the tuning set by
validation (``python benchmarks/tune_defaults.py --candidates
benchmarks/brake_candidates.json --base-lr 0.03 --transfer-layers 1 --out
benchmarks/results/defaults_brake.json``).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from flax import nnx

import _common
import lrtransfer
import suite
from lrtransfer.recipes import Recipe

SETTINGS = ("brake_on_any_rise", "recommended")
ANY_RISE = lrtransfer.AdjustRule(brake_while_improving=True)


def recipe(name: str, rate: float) -> Recipe:
  """The recommended recipe at ``rate`` with the setting ``name``."""
  if name == "recommended":
    return lrtransfer.recipes.recommended_recipe(rate)
  return Recipe(name, rate, strategy=lambda spe, total:
                lrtransfer.adjust(rule=ANY_RISE))


class DropoutMLP(nnx.Module):
  """A small MLP with Dropout after each hidden layer."""

  def __init__(self, num_outputs: int, dropout: float, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(64, 128, rngs=rngs)
    self.l2 = nnx.Linear(128, 64, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.head = nnx.Linear(64, num_outputs, rngs=rngs)

  def __call__(self, x):
    x = self.drop(nnx.relu(self.l1(x)))
    x = self.drop(nnx.relu(self.l2(x)))
    return self.head(x)


def study(dropout: float, rate: float, epochs: int, seeds: int,
          task_seed: int) -> dict:
  task = lrtransfer.data.digits_label_split(shots_per_class=15,
                                            seed=task_seed)
  source = lrtransfer.train.fit(
      DropoutMLP(5, dropout, nnx.Rngs(0)), Recipe("source", 0.05),
      task.source_train, task.source_val, epochs=10, batch_size=32).model

  def target(i: int) -> DropoutMLP:
    model = DropoutMLP(5, dropout, nnx.Rngs(100 + i))
    for name in ("l1", "l2"):  # copy the body, keep the fresh head
      nnx.update(getattr(model, name), nnx.state(getattr(source, name)))
    return model

  out = {}
  for name in SETTINGS:
    sweep = lrtransfer.train.fit_many(
        [target(i) for i in range(seeds)], recipe(name, rate),
        task.target_train,
        task.target_val, seeds=list(range(seeds)), epochs=epochs,
        batch_size=32, test=task.target_test)
    scale = np.asarray(sweep.history["scale"])
    val = np.asarray(sweep.history["val_loss"])
    brakes = improving = 0
    for run in range(seeds):
      # The scale of epoch e was set from evaluation e-1's measurement.
      fell = [e for e in range(1, epochs)
              if scale[run, e] < 0.6 * scale[run, e - 1]]
      brakes += len(fell)
      improving += sum(bool(e - 1 == 0 or val[run, e - 1]
                            < val[run, :e - 1].min()) for e in fell)
    final = scale[:, -1]
    out[name] = {
        "brakes": brakes, "brakes_while_validation_improved": improving,
        "final_scales": [round(float(s), 4) for s in final],
        "final_scale_spread": round(float(final.max() / final.min()), 2),
        "test_accuracy_mean": round(float(np.mean(sweep.test_accuracy)), 4)}
  return out


def report_spread(tasks, seeds: int, epochs: int, source_epochs: int
                  ) -> dict:
  """Per report task and setting: the head's final rate over seeds (its
  spread max / min) and the mean test accuracy, the recommended recipe at
  its default rate."""
  rate = lrtransfer.recipes.recommended_recipe().learning_rate
  out = {}
  for task in tasks:
    prepared = _common.prepare(task, source_epochs=source_epochs)
    out[task] = {}
    for name in SETTINGS:
      grid = _common.run(prepared, recipe(name, rate),
                         list(suite.REPORT_SEEDS)[:seeds], epochs=epochs)
      final = grid.final_lr[0]
      out[task][name] = {
          "final_rate_spread": round(float(final.max() / final.min()), 2),
          "final_rates": [float(f"{r:.4g}") for r in final],
          "test_accuracy_mean": round(float(grid.test[0].mean()), 4)}
    print(task, out[task], flush=True)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="4 seeds, 8 epochs: a smoke run")
  parser.add_argument("--out", help="write the results as JSON here")
  parser.add_argument("--rate", type=float, default=0.01)
  args = parser.parse_args(argv)
  seeds, epochs = (4, 8) if args.quick else (8, 40)
  results = {"rate": args.rate, "seeds": seeds, "epochs": epochs,
             "dropout": {}}
  for dropout in (0.3, 0.0):
    results["dropout"][str(dropout)] = study(dropout, args.rate, epochs,
                                             seeds, task_seed=0)
  report = _common.split_record()["report"]
  results["report"] = report_spread(
      report[:1] if args.quick else report,
      seeds=3 if args.quick else len(suite.REPORT_SEEDS),
      epochs=6 if args.quick else _common.EPOCHS,
      source_epochs=5 if args.quick else _common.SOURCE_EPOCHS)
  text = json.dumps(results, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
