"""Which base optimizer under the recommended strategy: SGD-momentum, Adam
or Prodigy.

    python benchmarks/base_optimizer.py [--quick] [--out FILE] [--tasks ...]
        [--seeds N] [--epochs E]

Prodigy, an Adam-style learning-rate-free peer, leads the report table
where moving far from the source wins. This asks, on the TUNING tasks and
seeds of ``suite.py`` only (validation accuracy, final epoch; the test split
is never evaluated), whether the recommended recipe would do better on Adam
than on SGD-momentum 0.9. Each optimizer runs its constant rate and the
recommended strategy (``recommended_recipe()``'s, unchanged) at every rate
of its own ladder, all rates x seeds of a recipe as ONE vmapped program:

* SGD-momentum: ``selection.LRS`` (0.001 ... 1.0), candidate default
  rates ``d`` in ``selection.BASE_LR_CANDIDATES`` (0.01, 0.03, 0.1);
* Adam (``optax.adam``, its default betas): 3e-5 ... 3e-2, candidate
  defaults 3e-4, 1e-3, 3e-3 (Adam's usual range, 30x below SGD's);
* Prodigy (``optax.contrib.prodigy``, its defaults): its
  ``learning_rate`` multiplies the step size it estimates (1.0 is its
  default and what the report table's peer runs), ladder 0.03 ... 30,
  candidate defaults 0.3, 1, 3. It asks whether the strategy adds anything
  on top of the learning-rate-free peer that leads the report table.

The choice is tune_defaults.py's stage-4 rule, for (optimizer, d) pairs: on
every tuning task, at ``d`` >= the SGD best-of-grid constant (the rate of
``_common.GRID`` picked on validation, the tuning-free target's reference)
- 0.5 point, at ``d/10`` and ``10 d`` >= best-of-grid - 2 points, and >= the
*same optimizer's* constant rate at ``d/10, d, 10 d`` - 1 point; among pairs
that qualify the best mean at ``d``; if none does, the largest worst margin.
Writes ``results/base_optimizer.json`` and ``.md`` (``--quick``:
``base_optimizer_quick.*``: one task, 2 seeds, 6 epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import optax

import _common
import lrtransfer
import selection
import suite
from lrtransfer.recipes import Recipe

DEFAULT_OUT = _common.RESULTS_DIR / "base_optimizer.json"
QUICK_OUT = _common.RESULTS_DIR / "base_optimizer_quick.json"
SGD_DEFAULTS = selection.BASE_LR_CANDIDATES
ADAM_DEFAULTS = (3e-4, 1e-3, 3e-3)
PRODIGY_DEFAULTS = (0.3, 1.0, 3.0)


def _ladder(defaults: Sequence[float]) -> tuple[float, ...]:
  return tuple(sorted({round(f * d, 10) for d in defaults
                       for f in (0.1, 1.0, 10.0)}))


def adam(learning_rate: float) -> optax.GradientTransformation:
  """The Adam base optimizer (module level: recipes compare by settings)."""
  return optax.adam(learning_rate)


def prodigy(learning_rate: float) -> optax.GradientTransformation:
  """Prodigy with its defaults; ``learning_rate`` scales its estimate."""
  return optax.contrib.prodigy(learning_rate)


OPTIMIZERS = {
    # name: (ladder of rates, candidate default rates, optimizer factory)
    "sgd": (selection.LRS, SGD_DEFAULTS, None),
    "adam": (_ladder(ADAM_DEFAULTS), ADAM_DEFAULTS, adam),
    "prodigy": (_ladder(PRODIGY_DEFAULTS), PRODIGY_DEFAULTS, prodigy),
}


def recipes(optimizer) -> dict[str, Recipe]:
  """The constant rate and the recommended strategy on ``optimizer``."""
  recommended = lrtransfer.recipes.recommended_recipe()
  return {"constant": Recipe("constant", optimizer=optimizer),
          "recommended": dataclasses.replace(recommended,
                                             optimizer=optimizer)}


def select(val: Mapping[str, Mapping[str, Mapping[str, float]]]
           ) -> dict[str, Any]:
  """The (optimizer, d) choice from ``val[task][optimizer/recipe][rate]``
  (validation means; no test number is read)."""
  tasks = list(val)
  best_grid = {t: max(val[t]["sgd/constant"][selection.bench_key(lr)]
                      for lr in _common.GRID) for t in tasks}
  below_best = lambda t, r: best_grid[t]
  rows = {}
  for name, (_, defaults, _) in OPTIMIZERS.items():
    rec, const = f"{name}/recommended", f"{name}/constant"
    for d in defaults:
      at_d = selection.worst_gap(val, rec, (d,), below_best)
      at_10x = selection.worst_gap(val, rec, (d / 10, d * 10), below_best)
      vs_const = selection.worst_gap(
          val, rec, (d / 10, d, d * 10),
          lambda t, r: val[t][const][selection.bench_key(r)])
      worst = min(at_d + selection.TUNING_FREE_MARGIN_AT_D,
                  at_10x + selection.TUNING_FREE_MARGIN_AT_10X,
                  vs_const + selection.CATASTROPHE_MARGIN)
      rows[f"{name}@{d:g}"] = {
          "optimizer": name, "base_lr": d,
          "val_at_d": float(np.mean([val[t][rec][selection.bench_key(d)]
                                     for t in tasks])),
          "worst_vs_best_grid_at_d": at_d,
          "worst_vs_best_grid_at_10x": at_10x,
          "worst_vs_own_constant": vs_const,
          "worst_margin": worst, "qualifies": worst >= 0}
  ok = [k for k, r in rows.items() if r["qualifies"]]
  chosen = (max(ok, key=lambda k: rows[k]["val_at_d"]) if ok else
            max(rows, key=lambda k: rows[k]["worst_margin"]))
  return {"rule": "tune_defaults.py stage 4 over (optimizer, d): at d >= "
                  "SGD best-of-grid constant - 0.5 point, at d/10 and 10d >= "
                  "best-of-grid - 2 points, >= the same optimizer's constant "
                  "at d/10, d, 10d - 1 point, on every tuning task; then max "
                  "mean val at d; if none qualifies, the largest worst margin",
          "candidates": rows, "chosen": chosen, "none_qualifies": not ok}


def summary(result: Mapping[str, Any]) -> str:
  sel = result["selection"]
  headers = ["optimizer @ d", "mean val at d", "worst vs best-of-grid at d",
             "at d/10, 10d", "worst vs own constant", "qualifies", ""]
  rows = [[k, _common.fmt(r["val_at_d"], 4),
           f"{100 * r['worst_vs_best_grid_at_d']:.1f}",
           f"{100 * r['worst_vs_best_grid_at_10x']:.1f}",
           f"{100 * r['worst_vs_own_constant']:.1f}",
           "yes" if r["qualifies"] else "no",
           "**chosen**" if k == sel["chosen"] else ""]
          for k, r in sel["candidates"].items()]
  by_rate = []
  for name, ladder in result["ladders"].items():
    rows_ = [[n, *[_common.fmt(m, 4) for m in v.values()]]
             for n, v in result["mean_by_rate"].items()
             if n.startswith(name + "/")]
    by_rate.append(_common.markdown_table(
        ["recipe", *[f"{lr:g}" for lr in ladder]], rows_))
  return (
      "# Base optimizer under the recommended strategy (TUNING set, "
      "validation)\n\n"
      f"{_common.device_line(result['device'])}; `python "
      f"benchmarks/base_optimizer.py{' --quick' if result['quick'] else ''}`"
      f"; tasks {result['tasks']}, {result['epochs']} epochs, "
      f"{result['seconds'] / 60:.1f} min. Margins in points.\n\n"
      + _common.markdown_table(headers, rows) + "\n\n"
      f"Chosen: {sel['chosen']}"
      + (" (none qualifies: largest worst margin)" if sel["none_qualifies"]
         else "") + "\n\nMean validation accuracy over the tasks by rate "
      "(each optimizer's own ladder):\n\n" + "\n\n".join(by_rate) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=Path, default=None)
  parser.add_argument("--tasks", nargs="+", default=None)
  parser.add_argument("--seeds", type=int, default=None)
  parser.add_argument("--epochs", type=int, default=None)
  args = parser.parse_args(argv)
  tuning = list(suite.TUNING_TASKS)
  tasks = args.tasks or (tuning[:1] if args.quick else tuning)
  unknown = [t for t in tasks if t not in tuning]
  if unknown:
    parser.error(f"not tuning tasks (suite.TUNING_TASKS): {unknown}")
  limit = args.seeds or (2 if args.quick else None)
  seeds = {t: list(suite.tuning_seeds(t))[:limit] for t in tasks}
  epochs = args.epochs or (6 if args.quick else _common.EPOCHS)
  out = Path(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))
  start = time.perf_counter()
  val: dict[str, dict[str, dict[str, float]]] = {}
  for t in tasks:
    prepared = _common.prepare(t, source_epochs=5 if args.quick
                              else _common.SOURCE_EPOCHS)
    print(f"{t}:", flush=True)
    val[t] = {}
    for name, (ladder, _, optimizer) in OPTIMIZERS.items():
      for kind, recipe in recipes(optimizer).items():
        grid = _common.run(prepared, recipe, seeds[t], learning_rates=ladder,
                          epochs=epochs, test=False)
        _common.log_grid(lambda line: print(line, flush=True),
                        f"{name}/{kind}", grid, split="val")
        val[t][f"{name}/{kind}"] = {selection.bench_key(lr): float(grid.val[i].mean())
                                    for i, lr in enumerate(ladder)}
  names = list(val[tasks[0]])
  result = {
      "device": _common.device_record(), "quick": args.quick,
      "tasks": tasks, "seeds": seeds, "epochs": epochs,
      "ladders": {n: list(o[0]) for n, o in OPTIMIZERS.items()},
      "val": val,
      "mean_by_rate": {n: {r: float(np.mean([val[t][n][r] for t in tasks]))
                           for r in val[tasks[0]][n]} for n in names},
      "selection": select(val),
      "seconds": time.perf_counter() - start,
  }
  _common.write_json(out, result)
  markdown = summary(result)
  out.with_suffix(".md").write_text(markdown)
  print(markdown)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
