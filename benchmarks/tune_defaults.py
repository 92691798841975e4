"""Chooses lrtransfer's defaults on the TUNING set, by VALIDATION accuracy.

    python benchmarks/tune_defaults.py [--quick] [--out FILE]
        [--candidates FILE.json] [--tasks ...] [--seeds N] [--epochs E]

Honest selection: only ``suite.TUNING_TASKS`` x their tuning
seeds (``suite.tuning_seeds``: 5; 60 for the small ``wine_shift``) are run,
and the test split is never evaluated
(``_common.run(test=False)``), so no choice can depend on a test number or on
a report task. Every candidate is judged on all tuning tasks at once (never
per task), by the mean final validation accuracy. The stages:

1. ``transfer_layers`` -- hidden layers copied from the source: the constant
   rate with each candidate count, at every rate of ``LRS``; score: the best
   (over rates) mean validation accuracy.
2. ``base_lr`` -- the library's default base rate, among
   ``BASE_LR_CANDIDATES``: the mean validation accuracy over tasks, seeds
   and every family's current default (the first candidate of each family)
   plus the constant rate.
3. per family (strategy settings, transfer-tool settings), among its
   candidates at the chosen base rate ``d``: the eligible ones (see
   :func:`ineligible_candidates`) that are catastrophe-free on validation
   (>= constant at the same rate - 1 point on every tuning task at
   ``d/10``, ``d`` and ``10 d``); among those within 0.5 point of the best
   mean validation accuracy at ``d`` (equal at ``d``), the one with the
   largest worst margin against the best-of-grid constant at ``d/10`` and
   ``10 d`` (robust off ``d``). If none is catastrophe-free, the one whose
   worst margin against the constant is largest, flagged. Either way worst
   margins within 1 point (``EQUAL_WORST``; one noisy cell each) are equal,
   and the largest mean margin against the best-of-grid constant over the
   tuning tasks at ``d/10`` and ``10 d`` decides among them; the current
   default stays on a tie within 0.1 point. (Not simply "best mean at d":
   on the noisy wine task that would pick on 0.15-point differences at d
   while the 10x margins differ by 10 points or more.)
4. ``recommended`` -- a family winner together with its own default base
   rate ``r`` (any of ``BASE_LR_CANDIDATES``): among the pairs that are
   tuning-free and catastrophe-free on validation (at ``r`` >= the task's
   best-of-grid constant - 0.5 point, at ``r/10`` and ``10 r`` >=
   best-of-grid - 2 points, >= constant at the same rate - 1 point, on every
   tuning task), the best mean validation accuracy at ``r``; if none
   qualifies, the largest worst margin, flagged.

Every candidate runs at all rates of ``LRS`` x seeds as one vmapped program,
so the stages are analyses of one table (``selection.py``: the stages as
pure functions of it, with their tolerances). Candidates are data
(``DEFAULT_CANDIDATES`` or ``--candidates FILE.json``: ``{family: [{"strategy":
name or null, "kwargs": {...}, "recipe": {...}}, ...]}``), so the run can be
repeated when the strategies change. Writes ``results/defaults.json`` (its
``"selection"`` is copied into quality.json) and ``results/defaults.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import _common
import lrtransfer
import suite
from lrtransfer.recipes import Recipe
from selection import (
  BASE_LR_CANDIDATES,
  LRS,
  bench_key,
  candidate_id,
  ineligible_candidates,
  select,
)

DEFAULT_OUT = _common.RESULTS_DIR / "defaults.json"
QUICK_OUT = _common.RESULTS_DIR / "defaults_quick.json"
TRANSFER_LAYER_CANDIDATES = (1, 2)

# The first candidate of each family is the library's current default; the
# others are the settings it is compared with (results/defaults.md).
DEFAULT_CANDIDATES: dict[str, list[dict[str, Any]]] = {
    # decay: 0.99 per epoch (the classic "multiply by 0.99 every epoch"),
    # 0.97 with a floor at half the base rate, 0.97 alone, 0.99 with the
    # floor.
    "decay": [{"strategy": "decay", "kwargs": {"rate": 0.99}},
              {"strategy": "decay", "kwargs": {"rate": 0.97, "min_scale": 0.5}},
              {"strategy": "decay", "kwargs": {"rate": 0.97}},
              {"strategy": "decay", "kwargs": {"rate": 0.99, "min_scale": 0.5}}],
    # Ours (patience 3, floor 0.1), without the floor, PyTorch's own
    # patience (10) with our factor and with PyTorch's (0.1), a higher floor.
    "reduce_on_plateau": [
        {"strategy": "reduce_on_plateau",
         "kwargs": {"factor": 0.5, "patience": 3, "min_scale": 0.1}},
        {"strategy": "reduce_on_plateau",
         "kwargs": {"factor": 0.5, "patience": 3}},
        {"strategy": "reduce_on_plateau",
         "kwargs": {"factor": 0.5, "patience": 10, "min_scale": 0.1}},
        {"strategy": "reduce_on_plateau",
         "kwargs": {"factor": 0.1, "patience": 10}},
        # A floor at half the base rate.
        {"strategy": "reduce_on_plateau",
         "kwargs": {"factor": 0.5, "patience": 3, "min_scale": 0.5}}],
    # adjust: the brake (rise_factor=0.5; below the first loss one cut per
    # rise), the slow-progress raise (0.1, max_scale 10, at the first slow
    # evaluation: slow_patience 1) without the brake's memory. Then: the
    # raise after two slow evaluations in a row, the brake waiting
    # (brake_patience 1), with the memory, both, and no slow-progress raise
    # (max 2, memory).
    "adjust": [{"strategy": "adjust", "kwargs": {}},
               {"strategy": "adjust", "kwargs": {"slow_patience": 2}},
               {"strategy": "adjust", "kwargs": {"brake_patience": 1}},
               {"strategy": "adjust", "kwargs": {"remember_brake": True}},
               {"strategy": "adjust",
                "kwargs": {"remember_brake": True, "brake_patience": 1}},
               {"strategy": "adjust",
                "kwargs": {"slow_progress": 0.0, "max_scale": 2.0,
                           "remember_brake": True}}],
    # dynamic: decay only while the metric stalls, the slow-progress raise,
    # the brake waiting one evaluation (brake_patience 1) with its memory.
    # Then: the brake at once, the slow-progress raise after two slow
    # evaluations in a row, both of these, without the memory, without
    # growth (max_scale 2).
    "dynamic": [{"strategy": "dynamic", "kwargs": {}},
                {"strategy": "dynamic", "kwargs": {"brake_patience": 0}},
                {"strategy": "dynamic", "kwargs": {"slow_patience": 2}},
                {"strategy": "dynamic",
                 "kwargs": {"slow_patience": 2, "brake_patience": 0}},
                {"strategy": "dynamic", "kwargs": {"remember_brake": False}},
                {"strategy": "dynamic",
                 "kwargs": {"slow_progress": 0.0, "max_scale": 2.0}}],
    # bold_driver: the floor at a tenth of the base rate, Battiti's 1e-3, a
    # floor at half, a milder cut (0.7).
    "bold_driver": [
        {"strategy": "bold_driver", "kwargs": {}},
        {"strategy": "bold_driver", "kwargs": {"min_scale": 0.001}},
        {"strategy": "bold_driver", "kwargs": {"min_scale": 0.5}},
        {"strategy": "bold_driver",
         "kwargs": {"decrease": 0.7, "min_scale": 0.1}}],
    "layerwise": [{"recipe": {"layerwise_factor": f}} for f in (0.9, 0.7)],
    "gradual_unfreeze": [{"recipe": {"unfreeze_every_epochs": e}}
                         for e in (2, 1)],
    "head_first": [{"recipe": {"head_first_epochs": e}} for e in (3, 1)],
    "l2sp": [{"recipe": {"l2sp_alpha": a}} for a in (1e-3, 1e-2)],
}
QUICK_CANDIDATES = {"adjust": DEFAULT_CANDIDATES["adjust"][:2]}


def strategy_factory(name: str, kwargs: Mapping[str, Any]):
  """``(steps_per_epoch, total_steps) -> transformation`` for a strategy,
  periods of one epoch as ``default_recipes`` sets them."""
  kwargs = dict(kwargs)
  if name == "decay":
    return lambda spe, total: lrtransfer.decay(
        every_steps=spe, staircase=True, **kwargs)
  if name == "dynamic":
    kwargs = with_rule(lrtransfer.DynamicRule, kwargs)
    return lambda spe, total: lrtransfer.dynamic(total, every_steps=spe,
                                                 **kwargs)
  if name == "adjust":
    kwargs = with_rule(lrtransfer.AdjustRule, kwargs)
  if name in ("adjust", "reduce_on_plateau", "bold_driver"):
    factory = getattr(lrtransfer, name)
    return lambda spe, total: factory(**kwargs)
  raise ValueError(f"unknown strategy {name!r}")


def with_rule(rule_class: type, kwargs: Mapping[str, Any]) -> dict:
  """A candidate's flat settings as arguments: the fields of ``rule_class``
  (``lrtransfer.AdjustRule``/``DynamicRule``) go into one ``rule=``."""
  fields = {f.name for f in dataclasses.fields(rule_class)}
  rule = {k: v for k, v in kwargs.items() if k in fields}
  args = {k: v for k, v in kwargs.items() if k not in fields}
  return {**args, "rule": rule_class(**rule)} if rule else args


def build_recipe(family: str, spec: Mapping[str, Any], lr: float) -> Recipe:
  """The candidate as a Recipe; building a strategy once checks its kwargs
  (a TypeError/ValueError here means the candidate does not fit the
  strategy's signature: it is skipped and listed as such)."""
  strategy = None
  if spec.get("strategy"):
    strategy = strategy_factory(spec["strategy"], spec.get("kwargs", {}))
    strategy(10, 100)
  return Recipe(candidate_id(family, spec), lr, strategy=strategy,
                **spec.get("recipe", {}))


def reselect(path: Path) -> int:
  """The stages again on a saved validation table (after a change of the
  selection rule; the table itself, and so the training, is unchanged)."""
  result = json.loads(path.read_text())
  old = result["selection"]
  families = {f: [candidate_id(f, s) for s in specs]
              for f, specs in result["candidates"].items()}
  skipped = old.get("skipped_candidates", {})
  families = {f: [i for i in ids if i not in skipped]
              for f, ids in families.items()}
  families = {f: ids for f, ids in families.items() if ids}
  given = old["base_lr"]["rule"].startswith("given")
  selection = select(result["val"], families, old["transfer_layers"],
                     ineligible_candidates(result["candidates"]),
                     result.get("val_seeds"),
                     old["base_lr"]["chosen"] if given else None)
  selection["skipped_candidates"] = skipped
  result["selection"] = selection
  _common.write_json(path, result)
  markdown = summary(result)
  path.with_suffix(".md").write_text(markdown)
  print(markdown)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=Path, default=None)
  parser.add_argument("--candidates", type=Path, default=None,
                      help='JSON {family: [{"strategy": name or null, '
                      '"kwargs": {...}, "recipe": {...}}, ...]} in place of '
                      "DEFAULT_CANDIDATES; the first of a family is its "
                      "current default")
  parser.add_argument("--tasks", nargs="+", default=None)
  parser.add_argument("--seeds", type=int, default=None)
  parser.add_argument("--epochs", type=int, default=None)
  parser.add_argument("--base-lr", type=float, default=None,
                      choices=BASE_LR_CANDIDATES,
                      help="take this base rate d (the full run's choice) "
                      "instead of choosing it on the families run")
  parser.add_argument("--transfer-layers", type=int, default=None,
                      choices=TRANSFER_LAYER_CANDIDATES,
                      help="copy this many levels (the full run's choice) "
                      "and skip stage 1")
  parser.add_argument("--reselect", type=Path, default=None, metavar="JSON",
                      help="rerun only the selection on the validation "
                      "table of an earlier run's JSON (no training), and "
                      "rewrite it and its .md")
  args = parser.parse_args(argv)
  if args.reselect:
    return reselect(args.reselect)
  split = _common.split_record()
  tasks = args.tasks or (split["tuning"][:1] if args.quick
                         else split["tuning"])
  unknown = [t for t in tasks if t not in split["tuning"]]
  if unknown:
    parser.error(f"not tuning tasks (suite.TUNING_TASKS): {unknown}")
  limit = args.seeds or (2 if args.quick else None)
  seeds = {t: list(suite.tuning_seeds(t))[:limit] for t in tasks}
  epochs = args.epochs or (6 if args.quick else _common.EPOCHS)
  source_epochs = 5 if args.quick else _common.SOURCE_EPOCHS
  candidates = (json.loads(args.candidates.read_text()) if args.candidates
                else QUICK_CANDIDATES if args.quick else DEFAULT_CANDIDATES)
  out = Path(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))
  start = time.perf_counter()
  families = {f: [candidate_id(f, s) for s in specs]
              for f, specs in candidates.items()}
  val: dict[str, dict[str, dict[str, float]]] = {}
  # Every seed's value, to judge how noisy a deciding cell is.
  val_seeds: dict[str, dict[str, dict[str, list[float]]]] = {}
  skipped: dict[str, str] = {}
  # max / min over seeds of the head's final rate: how much the rate a user
  # ends with depends on the seed.
  final_lr_spread: dict[str, dict[str, dict[str, float]]] = {}
  layer_scores: dict[str, list[float]] = {}
  prepared = {t: _common.prepare(t, source_epochs=source_epochs)
              for t in tasks}
  print(f"tune_defaults on tuning tasks {tasks}, seeds {seeds}, {epochs} "
        f"epochs, rates {list(LRS)} (validation only)", flush=True)
  # Stage 1: which layers to copy (constant rate).
  for layers in ([] if args.transfer_layers else TRANSFER_LAYER_CANDIDATES):
    per_lr = []
    for t in tasks:
      grid = _common.run(prepared[t], Recipe("constant"), seeds[t],
                        learning_rates=LRS, epochs=epochs,
                        transfer_layers=layers, test=False)
      per_lr.append(grid.val.mean(1))
    layer_scores[str(layers)] = np.mean(per_lr, 0).tolist()
  chosen_layers = args.transfer_layers or max(
      TRANSFER_LAYER_CANDIDATES, key=lambda n: max(layer_scores[str(n)]))
  print(f"transfer_layers: {chosen_layers} (best mean val over rates: "
        f"{ {k: round(max(v), 4) for k, v in layer_scores.items()} })",
        flush=True)
  # Stages 2-4: one program per (task, candidate), all rates x seeds.
  for t in tasks:
    print(f"{t}:", flush=True)
    val[t], val_seeds[t], final_lr_spread[t] = {}, {}, {}
    runs = [("constant", Recipe("constant"))]
    for family, specs in candidates.items():
      for spec in specs:
        name = candidate_id(family, spec)
        try:
          runs.append((name, build_recipe(family, spec, LRS[0])))
        except (TypeError, ValueError) as err:
          skipped[name] = f"{type(err).__name__}: {err}"
    for name, recipe in runs:
      grid = _common.run(prepared[t], recipe, seeds[t], learning_rates=LRS,
                        epochs=epochs, transfer_layers=chosen_layers,
                        test=False)
      _common.log_grid(lambda line: print(line, flush=True), name, grid,
                      split="val")
      val[t][name] = {bench_key(lr): float(grid.val[i].mean())
                      for i, lr in enumerate(LRS)}
      val_seeds[t][name] = {bench_key(lr): grid.val[i].tolist()
                            for i, lr in enumerate(LRS)}
      final_lr_spread[t][name] = {
          bench_key(lr): float(grid.final_lr[i].max() / grid.final_lr[i].min())
          for i, lr in enumerate(LRS)}
  families = {f: [i for i in ids if i not in skipped]
              for f, ids in families.items()}
  families = {f: ids for f, ids in families.items() if ids}
  layers = {"rule": ("given (--transfer-layers)" if args.transfer_layers
                     else "max over rates of the constant rate's mean val"),
            "scores_by_lr": {"lrs": list(LRS), **layer_scores},
            "chosen": chosen_layers,
            "current_default": "all hidden layers but the last"}
  selection = select(val, families, layers, ineligible_candidates(candidates),
                     val_seeds, args.base_lr)
  selection["skipped_candidates"] = skipped
  result = {"device": _common.device_record(), "quick": args.quick,
            "split": split, "tasks": tasks, "seeds": seeds, "epochs": epochs,
            "lrs": list(LRS), "candidates": candidates, "val": val,
            "val_seeds": val_seeds, "final_lr_spread": final_lr_spread,
            "selection": selection,
            "seconds": time.perf_counter() - start}
  _common.write_json(out, result)
  markdown = summary(result)
  out.with_suffix(".md").write_text(markdown)
  print()
  print(markdown)
  print(f"wrote {out} in {result['seconds']:.0f}s")
  return 0


def summary(result: Mapping[str, Any]) -> str:
  sel = result["selection"]
  d = sel["base_lr"]["chosen"]
  lines = [
      f"Defaults chosen on the tuning tasks {result['tasks']} x seeds "
      f"{result['seeds']} by mean final VALIDATION accuracy "
      f"({result['epochs']} epochs); test never evaluated.", "",
      f"* transfer layers: {sel['transfer_layers']['chosen']}",
      f"* base rate: {d:g} (scores {sel['base_lr']['scores']})", ""]
  rows = []
  for family, rec in sel["families"].items():
    for cid, row in rec["candidates"].items():
      cell = row.get("worst_10x_cell")
      stderr = row.get("worst_10x_cell_stderr")
      rows.append([cid, f"{row['val_at_d']:.4f}",
                   f"{100 * row['worst_vs_constant']:+.1f}",
                   f"{100 * row['worst_vs_best_grid_at_10x']:+.1f}",
                   (f"{100 * row['mean_vs_best_grid_at_10x']:+.1f}"
                    if "mean_vs_best_grid_at_10x" in row else ""),
                   (f"{cell[0]} @ {cell[1]}" if cell else "")
                   + (f" (+-{100 * stderr:.1f})" if stderr else ""),
                   "**chosen**" if cid == rec["chosen"] else
                   "not eligible" if row.get("ineligible") else ""])
  spread = result.get("final_lr_spread")
  if spread:
    for row in rows:  # row[0]: the candidate's id
      values = [spread[t][row[0]][bench_key(d)] for t in spread]
      row.insert(-1, f"{np.median(values):.2f} / {max(values):.2f}")
  lines += [_common.markdown_table(
      ["candidate", f"mean val at {d:g}",
       "worst vs constant, d/10..10d (points)",
       "worst vs best-of-grid at d/10, 10d (points)",
       "mean vs best-of-grid at d/10, 10d (points)",
       "where (standard error over seeds, points)"]
      + ([f"final rate max/min over seeds at {d:g}: median / max over "
          "tasks"] if spread else []) + [""], rows), ""]
  rec = sel["recommended"]
  rows = [[cid, f"{r['val_at_d']:.4f}",
           f"{100 * r['worst_vs_best_grid_at_d']:+.1f}",
           f"{100 * r['worst_vs_best_grid_at_10x']:+.1f}",
           "yes" if r["qualifies"] else "no",
           "**recommended**" if cid == rec["chosen"] else ""]
          for cid, r in rec["candidates"].items()]
  lines += [_common.markdown_table(
      ["family winner @ base rate r", "mean val at r",
       "vs best-of-grid at r (pts)", "at r/10, 10r (pts)", "qualifies", ""],
      rows), "",
      f"Recommended: {rec['chosen']}"
      + (" (no candidate met the tuning-free rule on validation)"
         if rec["none_qualifies"] else ""), ""]
  if sel.get("skipped_candidates"):
    lines.append("Skipped (settings the strategy does not take): "
                 f"{sel['skipped_candidates']}")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.exit(main())
