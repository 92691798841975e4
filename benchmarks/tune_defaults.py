"""Looks for better default settings of lrtransfer's strategies, across tasks.

    python benchmarks/tune_defaults.py [--sets baseline,A,B] [--lrs 0.05,0.1]
        [--tasks ...] [--shots N] [--seeds 10] [--out FILE]

Runs each candidate recipe on every task, each over base learning rates x
seeds in one vmapped program, and writes mean test (and validation) accuracy
per (task, recipe, rate). A candidate set is judged on ALL tasks together --
no per-task tuning. The sets below are the ones reported in
``benchmarks/README.md``; their results are
``results/defaults_candidates_round{1,2,3}.json`` (round 1: ``--lrs 0.05,0.1
--seeds 10``; round 2: ``--sets baselines,library,round2 --seeds 20``; round
3: ``--sets baselines,recommended,round3 --seeds 20 --lrs 0.05,0.1,0.2``)
and ``results/shots{3,5}_candidates.json`` (``--sets baselines,library --lrs
0.05,0.1 --tasks digits_label_split digits_domain_shift --shots N``, 10
seeds), summarised in ``results/defaults_candidates.md`` by ``--summarize``.
This is an investigation tool, not one of the published benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import _common
import quality

import lrtransfer
from lrtransfer.recipes import Recipe
from flax import nnx

LR = 0.05


def candidate_sets() -> dict[str, dict[str, Recipe]]:
  """name -> {method: recipe}; 'library' is what the library ships."""
  lt = lrtransfer
  sets = {
      "baselines": {
          "scratch": Recipe("scratch", LR, from_source=False),
          "constant": Recipe("constant", LR),
          "optax_reduce_on_plateau": quality.optax_plateau_recipe(LR),
      },
      "library": {k: v for k, v in lt.default_recipes(LR).items()
                  if k not in ("scratch", "constant")},
      # Performance-based adjustment without the raise on plateaus.
      "adjust_variants": {
          "adjust[if=0.9,pf=1.0]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=0.9, plateau_factor=1.0)),
          "adjust[if=0.95,pf=1.2]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=0.95, plateau_factor=1.2)),
          "adjust[if=1.0,pf=1.5,max=2]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=1.0, plateau_factor=1.5)),
          "adjust[if=1.05,pf=0.5,p=1]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=1.05, plateau_factor=0.5, patience=1,
                  max_scale=4.0)),
      },
      "dynamic_variants": {
          "dynamic[pf=1.0]": Recipe(
              "d", LR, strategy=lambda spe, tot: lt.dynamic(
                  tot, every_steps=spe, plateau_factor=1.0)),
          "dynamic[pf=1.2,rate=0.97]": Recipe(
              "d", LR, strategy=lambda spe, tot: lt.dynamic(
                  tot, every_steps=spe, plateau_factor=1.2, rate=0.97)),
          "dynamic[if=1.05,pf=1.0]": Recipe(
              "d", LR, strategy=lambda spe, tot: lt.dynamic(
                  tot, every_steps=spe, plateau_factor=1.0,
                  improve_factor=1.05)),
      },
      "tool_variants": {
          "decay[0.99]": Recipe(
              "c", LR, strategy=lambda spe, tot: lt.decay(
                  0.99, every_steps=spe, staircase=True)),
          "layerwise[0.8]": Recipe("l", LR, layerwise_factor=0.8),
          "layerwise[0.65]": Recipe("l", LR, layerwise_factor=0.65),
          "gradual_unfreeze[1]": Recipe("g", LR, unfreeze_every_epochs=1),
          "head_first[2]": Recipe("h", LR, head_first_epochs=2),
          "l2sp[1e-3]": Recipe("s", LR, l2sp_alpha=1e-3),
          "l2sp[1e-1]": Recipe("s", LR, l2sp_alpha=1e-1),
      },
      # Round 2: the most promising of round 1, and gentler versions.
      "round2": {
          "adjust[if=0.98,pf=1.5]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=0.98)),
          "adjust[if=0.97,pf=1.5]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=0.97)),
          "adjust[if=1.0,pf=1.5,max=2]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=1.0, plateau_factor=1.5)),
          "decay[0.99]": Recipe(
              "c", LR, strategy=lambda spe, tot: lt.decay(
                  0.99, every_steps=spe, staircase=True)),
          "reduce_on_plateau[min_scale=0.1]": Recipe(
              "r", LR, strategy=lambda spe, tot: lt.reduce_on_plateau(
                  factor=0.5, patience=3, min_scale=0.1)),
          "reduce_on_plateau[patience=5]": Recipe(
              "r", LR, strategy=lambda spe, tot: lt.reduce_on_plateau(
                  factor=0.5, patience=5)),
          "layerwise[0.9]": Recipe("l", LR, layerwise_factor=0.9),
          "layerwise[0.8]": Recipe("l", LR, layerwise_factor=0.8),
          "gradual_unfreeze[1]": Recipe("g", LR, unfreeze_every_epochs=1),
          "head_first[1]": Recipe("h", LR, head_first_epochs=1),
          "head_first[2]": Recipe("h", LR, head_first_epochs=2),
          "l2sp[1e-3]": Recipe("s", LR, l2sp_alpha=1e-3),
          "l2sp[3e-3]": Recipe("s", LR, l2sp_alpha=3e-3),
      },
      # Round 3: the recommended settings (since adopted as the library's
      # default_recipes), and bolder raises, run at several base rates to
      # see which base rate the defaults should assume.
      "recommended": {k: v for k, v in quality.library_recipes(LR).items()
                      if k not in ("constant", "scratch")},
      "round3": {
          "adjust[if=0.98,pf=2,max=4]": Recipe(
              "a", LR, strategy=lambda spe, tot: lt.adjust(
                  improve_factor=0.98, plateau_factor=2.0, max_scale=4.0)),
          "dynamic[pf=2,max=4]": Recipe(
              "d", LR, strategy=lambda spe, tot: lt.dynamic(
                  tot, every_steps=spe, plateau_factor=2.0, max_scale=4.0)),
      },
  }
  return sets


def summarize(paths, lr: str = "0.05") -> str:
  """Markdown: test accuracy of each recipe per task, at base rate ``lr``,
  and on how many tasks it beats scratch / optax reduce_on_plateau."""
  merged: dict = {}
  seeds = set()
  for path in paths:
    data = json.loads(Path(path).read_text())
    seeds.add(data["seeds"])
    for task, recipes in data["tasks"].items():
      for name, by_lr in recipes.items():
        if lr in by_lr:
          merged.setdefault(task, {})[name] = by_lr[lr]
  tasks = list(merged)
  names = []
  for task in tasks:
    names += [n for n in merged[task] if n not in names]
  rows = []
  for name in names:
    cells, beats_scratch, beats_optax, means = [], 0, 0, []
    for task in tasks:
      entry = merged[task].get(name)
      if entry is None:
        cells.append("-")
        continue
      mean = entry["test_mean"]
      means.append(mean)
      cells.append(f"{mean:.3f} ± {entry['test_std']:.3f}")
      beats_scratch += mean > merged[task]["scratch"]["test_mean"]
      beats_optax += mean > merged[task]["optax_reduce_on_plateau"][
          "test_mean"]
    rows.append([name] + cells + [f"{np.mean(means):.4f}",
                                  f"{beats_scratch}/{len(tasks)}",
                                  f"{beats_optax}/{len(tasks)}"])
  headers = (["recipe (base lr " + lr + ")"] + tasks
             + ["mean over tasks", "beats scratch", "beats optax ROP"])
  return (f"Test accuracy, mean ± std over {sorted(seeds)} seeds.\n\n"
          + _common.markdown_table(headers, rows) + "\n")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sets", default=None,
                      help="comma-separated names of candidate sets")
  parser.add_argument("--lrs", default="0.05",
                      help="comma-separated base learning rates (vmapped)")
  parser.add_argument("--tasks", nargs="+", default=list(lrtransfer.data.TASKS))
  parser.add_argument("--shots", type=int, default=None)
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--out", type=Path,
                      default=_common.RESULTS_DIR / "defaults_candidates.json")
  parser.add_argument("--summarize", nargs="+", type=Path, default=None,
                      help="only print a markdown summary of these JSONs")
  parser.add_argument("--summary-lr", default="0.05")
  args = parser.parse_args(argv)
  if args.summarize:
    print(summarize(args.summarize, args.summary_lr))
    return 0
  sets = candidate_sets()
  chosen = args.sets.split(",") if args.sets else list(sets)
  lrs = [float(x) for x in args.lrs.split(",")]
  seeds = list(range(args.seeds))
  start = time.perf_counter()
  results: dict = {"device": _common.device_record(), "seeds": args.seeds,
                   "epochs": args.epochs, "shots": args.shots, "lrs": lrs,
                   "tasks": {}}
  for task_name in args.tasks:
    kwargs = {} if args.shots is None else {"shots_per_class": args.shots}
    task = lrtransfer.data.get_task(task_name, **kwargs)
    source = lrtransfer.experiment.pretrain_source(task)
    source_params = nnx.as_pure(nnx.state(source, nnx.Param))
    print(f"{task_name} ({len(task.target_train)} train):", flush=True)
    per_task = results["tasks"].setdefault(task_name, {})
    for set_name in chosen:
      for name, recipe in sets[set_name].items():
        sweep = quality.run_recipe(recipe, task, source, source_params,
                                   seeds, args.epochs, 32, learning_rates=lrs)
        shape = (len(lrs), len(seeds))
        test = sweep.test_accuracy.reshape(shape)
        val = sweep.history["val_accuracy"][:, -1].reshape(shape)
        end_lr = sweep.history["group_lr"][:, -1, -1].reshape(shape)
        per_task[name] = {
            str(lr): {"test_mean": float(test[i].mean()),
                      "test_std": float(test[i].std()),
                      "val_mean": float(val[i].mean()),
                      "final_lr": float(end_lr[i].mean())}
            for i, lr in enumerate(lrs)}
        cells = "  ".join(
            f"lr={lr}: {test[i].mean():.3f}±{test[i].std():.3f} "
            f"(end lr {end_lr[i].mean():.3g})" for i, lr in enumerate(lrs))
        print(f"  {name:30s} {cells}", flush=True)
  results["seconds"] = time.perf_counter() - start
  _common.write_json(args.out, results)
  print(f"wrote {args.out} in {results['seconds']:.0f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
