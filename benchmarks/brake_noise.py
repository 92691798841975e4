"""The brake under a noisy training loss: final rates over seeds, with Dropout.

``adjust``'s brake reads the epoch's mean minibatch training loss. With
Dropout and few steps per epoch that mean is noisy, and the brake can cut
the rate while the monitored validation value keeps improving. This study
fine-tunes a Dropout MLP (64-128-64-5, Dropout after each hidden layer; the
two body layers copied from a source trained on digits 0-4, a fresh head)
on 75 examples of digits 5-9 (3 steps per epoch), one seed per run in one
vmapped ``fit_many`` program, with the recommended strategy and with
``AdjustRule(brake_while_improving=False)``, and records per setting: the
brakes (the scale falling by a factor <= 0.6; an undone raise falls by
1/1.5 and is not counted), the brakes at evaluations that improved the best
validation loss, the final scales and their spread (max / min), and the
test accuracy::

  python benchmarks/brake_noise.py --out benchmarks/results/brake_noise.json
  python benchmarks/brake_noise.py --quick   # a smoke run

It is a study of one task; defaults are chosen on the tuning set
(``benchmarks/tune_defaults.py``), not here.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from flax import nnx

import lrtransfer
from lrtransfer.recipes import Recipe

SETTINGS = {
    "default": lrtransfer.AdjustRule(),
    "hold_while_improving": lrtransfer.AdjustRule(brake_while_improving=False),
}


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
  for name, rule in SETTINGS.items():
    recipe = Recipe(name, rate, strategy=lambda spe, total, rule=rule:
                    lrtransfer.adjust(rule=rule))
    sweep = lrtransfer.train.fit_many(
        [target(i) for i in range(seeds)], recipe, task.target_train,
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
  text = json.dumps(results, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
