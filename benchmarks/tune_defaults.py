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
so the stages are analyses of one table. Candidates are data
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

DEFAULT_OUT = _common.RESULTS_DIR / "defaults.json"
QUICK_OUT = _common.RESULTS_DIR / "defaults_quick.json"
# 100x apart in half-decades; with d/10 and 10 d (what the stages read)
# this is 7 rates, 0.001 ... 1.0, which keeps the full run near 20 minutes.
BASE_LR_CANDIDATES = (0.01, 0.03, 0.1)
# Every rate a stage reads: the constant-rate grid and d/10, d, 10 d.
LRS = tuple(sorted(set(_common.GRID) | {
    round(f * lr, 10) for lr in BASE_LR_CANDIDATES for f in (0.1, 1.0, 10.0)}))
TRANSFER_LAYER_CANDIDATES = (1, 2)
CATASTROPHE_MARGIN = 0.01
# Stage 3: candidates within EQUAL_AT_D of the best mean validation accuracy
# at d count as equal there (the tuning-free target's own tolerance at the
# default rate; differences between settings of one strategy at d are seed
# noise, a few tenths of a point), and the most robust 10x off d wins; a
# candidate must beat the current default by more than TIE_MARGIN on that
# to replace it.
EQUAL_AT_D = 0.005
TIE_MARGIN = 0.001
# Worst cases within EQUAL_WORST of the largest count as equal: each is one
# noisy cell (standard errors of 1-4 points over seeds: the "where" column
# of results/defaults.md), and a pick decided by a few tenths of a point of
# it is a coin toss. Equal ones are told apart by the mean margin against
# the best-of-grid constant over every tuning task at d/10 and 10 d.
EQUAL_WORST = 0.01
TUNING_FREE_MARGIN_AT_D = 0.005
TUNING_FREE_MARGIN_AT_10X = 0.02

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


def candidate_id(family: str, spec: Mapping[str, Any]) -> str:
  settings = {**spec.get("kwargs", {}), **spec.get("recipe", {})}
  inner = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in settings.items())
  return f"{family}[{inner}]"


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


def _cells(val: Mapping[str, Mapping[str, Mapping[str, float]]], name: str,
           rates, reference) -> list[tuple[float, str, str]]:
  """(name - ``reference(task, rate)``, task, rate key) for every task and
  rate of ``rates``."""
  return [(val[t][name][_bench_key(r)] - reference(t, r), t, _bench_key(r))
          for t in val for r in rates]


def _worst_cell(val: Mapping[str, Mapping[str, Mapping[str, float]]],
                name: str, rates, reference) -> tuple[float, str, str]:
  """min over tasks and ``rates`` of (name - ``reference(task, rate)``), with
  the task and rate key where it is reached (the first, on a tie)."""
  return min(_cells(val, name, rates, reference), key=lambda cell: cell[0])


def _worst(val: Mapping[str, Mapping[str, Mapping[str, float]]], name: str,
           rates, reference) -> float:
  """min over tasks and ``rates`` of (name - ``reference(task, rate)``)."""
  return _worst_cell(val, name, rates, reference)[0]


def _margins(val: Mapping[str, Mapping[str, float]], name: str, d: float,
             reference: Mapping[str, Mapping[str, float]]) -> float:
  """min over tasks and rates d/10, d, 10d of (name - reference same rate)."""
  return _worst(val, name, (d / 10, d, d * 10),
                lambda t, r: reference[t][_bench_key(r)])


def _mean_margin(val: Mapping[str, Mapping[str, Mapping[str, float]]],
                 name: str, rates, reference) -> float:
  """mean over tasks and ``rates`` of (name - ``reference(task, rate)``)."""
  return float(np.mean([c[0] for c in _cells(val, name, rates, reference)]))


def _most_robust(ids: list[str], rows: Mapping[str, Mapping[str, Any]],
                 worst_key: str, current: str) -> str:
  """Among ``ids``, those whose ``worst_key`` is within EQUAL_WORST of the
  largest are equal; of them the largest mean margin at d/10 and 10 d, the
  ``current`` default on a tie within TIE_MARGIN."""
  top = max(rows[i][worst_key] for i in ids)
  equal = [i for i in ids if rows[i][worst_key] >= top - EQUAL_WORST]
  mean = lambda i: rows[i]["mean_vs_best_grid_at_10x"]
  chosen = max(equal, key=mean)
  if current in equal and mean(current) >= mean(chosen) - TIE_MARGIN:
    return current
  return chosen


def _bench_key(lr: float) -> str:
  return f"{round(lr, 10):g}"


def ineligible_candidates(candidates: Mapping[str, list[Mapping[str, Any]]]
                          ) -> dict[str, str]:
  """Candidates measured for information that may not become a default.

  ``adjust``'s and ``dynamic``'s defaults must have the bounded-raise
  property: a metric getting worse after every increase of the rate leaves
  the scale above its start for a bounded number of evaluations
  (tests/test_safe_raises.py). A
  raise is undone when the next evaluation does not confirm it, but growth
  by ``improve_factor > 1`` on every good evaluation is not, so such a
  candidate breaks the property and is not eligible.

  ``adjust``'s default (the recommended strategy) must also never brake at
  an evaluation that improved the monitored value: with Dropout and few
  steps per epoch such brakes answer noise in the training loss and make
  the final rate a lottery over seeds (``python benchmarks/brake_noise.py``).
  A candidate with ``brake_while_improving=True`` is measured, not chosen.
  """
  out = {}
  for family, specs in candidates.items():
    for spec in specs:
      kwargs = spec.get("kwargs", {})
      if (spec.get("strategy") in ("adjust", "dynamic")
          and kwargs.get("improve_factor", 1.0) > 1.0):
        out[candidate_id(family, spec)] = (
            "improve_factor > 1 grows the rate without the undo: breaks the "
            "bounded-raise property the defaults must have")
      elif spec.get("strategy") == "adjust" and kwargs.get(
          "brake_while_improving",
          lrtransfer.AdjustRule().brake_while_improving):
        out[candidate_id(family, spec)] = (
            "brakes at evaluations that improved the monitored value "
            "(noise in the training loss cuts the rate)")
  return out


def select(val: Mapping[str, Mapping[str, Mapping[str, float]]],
           families: Mapping[str, list[str]], layers: Mapping[str, Any],
           ineligible: Mapping[str, str] = {},
           val_seeds: Mapping[str, Any] | None = None,
           base_lr: float | None = None) -> dict[str, Any]:
  """The selection record from mean validation accuracies
  ``val[task][candidate][lr]`` (no test number is read); candidates in
  ``ineligible`` are scored but never chosen. With ``val_seeds`` (each
  seed's value) the record also gives, for each candidate, the cell that
  sets its 10x margin and that cell's standard error over seeds. ``base_lr``
  fixes stage 2's choice (a run of some families only takes the full run's
  base rate instead of one chosen on those families alone)."""
  tasks = list(val)
  const = {t: val[t]["constant"] for t in tasks}
  mean_at = lambda name, lr: float(np.mean(
      [val[t][name][_bench_key(lr)] for t in tasks]))
  defaults = ["constant"] + [ids[0] for ids in families.values()]
  base_scores = {_bench_key(lr): float(np.mean([mean_at(n, lr)
                                                for n in defaults]))
                 for lr in BASE_LR_CANDIDATES}
  d = base_lr or max(BASE_LR_CANDIDATES,
                     key=lambda lr: base_scores[_bench_key(lr)])
  record: dict[str, Any] = {
      "protocol": "validation accuracy (final epoch), mean over the tuning "
                  "tasks x tuning seeds; the test split is never evaluated; "
                  "see benchmarks/tune_defaults.py",
      "tuning_tasks": tasks, "transfer_layers": layers,
      "base_lr": {"rule": "given (--base-lr)" if base_lr else
                          "max mean val over tasks, seeds and every "
                          "family's current default + constant",
                  "scores": base_scores, "chosen": d},
      "families": {}}
  best_grid = {t: max(const[t][_bench_key(lr)] for lr in _common.GRID)
               for t in tasks}
  below_best = lambda t, r: best_grid[t]
  winners = {}
  for family, ids in families.items():
    rows = {}
    for i in ids:
      at_10x, task, rate = _worst_cell(val, i, (d / 10, d * 10), below_best)
      rows[i] = {"val_at_d": mean_at(i, d),
                 "worst_vs_constant": _margins(val, i, d, const),
                 "worst_vs_best_grid_at_10x": at_10x,
                 "worst_10x_cell": [task, rate]}
      if i in ineligible:
        rows[i]["ineligible"] = ineligible[i]
      if val_seeds is not None:
        runs = np.asarray(val_seeds[task][i][rate])
        rows[i]["worst_10x_cell_stderr"] = float(
            runs.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else None
      rows[i]["mean_vs_best_grid_at_10x"] = _mean_margin(
          val, i, (d / 10, d * 10), below_best)
    eligible = [i for i in ids if i not in ineligible]
    ok = [i for i in eligible if rows[i]["worst_vs_constant"]
          >= -CATASTROPHE_MARGIN]
    if ok:
      # Within EQUAL_AT_D of the best at d the candidates are equal there
      # (seed noise); among them the one most robust 10x off d wins.
      best_at_d = max(rows[i]["val_at_d"] for i in ok)
      near = [i for i in ok if rows[i]["val_at_d"] >= best_at_d - EQUAL_AT_D]
      chosen = _most_robust(near, rows, "worst_vs_best_grid_at_10x", ids[0])
    else:
      chosen = _most_robust(eligible, rows, "worst_vs_constant", ids[0])
    winners[family] = chosen
    record["families"][family] = {
        "rule": "eligible and catastrophe-free on validation (>= constant - "
                "1 point at d/10, d, 10d on every tuning task); among those "
                "within 0.5 point of the best mean val at d, the largest "
                "worst margin vs the best-of-grid constant at d/10 and 10d; "
                "none catastrophe-free: the largest worst margin vs "
                "constant. Worst margins within 1 point are equal, then the "
                "largest mean margin vs best-of-grid over tasks at d/10 and "
                "10d; a tie within 0.1 point on it keeps the current "
                "default",
        "candidates": rows, "chosen": chosen, "current_default": ids[0],
        "changed": chosen != ids[0], "none_catastrophe_free": not ok}
  rec_rows = {}
  for family, i in winners.items():
    for rate in BASE_LR_CANDIDATES:
      at_d = _worst(val, i, (rate,), below_best)
      at_10x = _worst(val, i, (rate / 10, rate * 10), below_best)
      worst = min(at_d + TUNING_FREE_MARGIN_AT_D,
                  at_10x + TUNING_FREE_MARGIN_AT_10X,
                  _margins(val, i, rate, const) + CATASTROPHE_MARGIN)
      rec_rows[f"{i}@{rate:g}"] = {
          "family": family, "candidate": i, "base_lr": rate,
          "val_at_d": mean_at(i, rate), "worst_vs_best_grid_at_d": at_d,
          "worst_vs_best_grid_at_10x": at_10x, "worst_margin": worst,
          "qualifies": worst >= 0}
  ok = [i for i, r in rec_rows.items() if r["qualifies"]]
  chosen = (max(ok, key=lambda i: rec_rows[i]["val_at_d"]) if ok else
            max(rec_rows, key=lambda i: rec_rows[i]["worst_margin"]))
  record["recommended"] = {
      "rule": "among family winners x base rates d of BASE_LR_CANDIDATES: "
              "tuning-free and catastrophe-free on validation (at d: >= "
              "best-of-grid constant - 0.5 point; at d/10 and 10d: >= "
              "best-of-grid - 2 points; >= constant at the same rate - 1 "
              "point; on every tuning task), then max val at d; if none "
              "qualifies, the largest worst margin",
      "candidates": rec_rows, "chosen": chosen,
      "recipe": rec_rows[chosen]["candidate"],
      "base_lr": rec_rows[chosen]["base_lr"], "none_qualifies": not ok}
  return record


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
      val[t][name] = {_bench_key(lr): float(grid.val[i].mean())
                      for i, lr in enumerate(LRS)}
      val_seeds[t][name] = {_bench_key(lr): grid.val[i].tolist()
                            for i, lr in enumerate(LRS)}
      final_lr_spread[t][name] = {
          _bench_key(lr): float(grid.final_lr[i].max() / grid.final_lr[i].min())
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
    for row, (family, rec) in zip(rows, [
        (f, r) for f, rec in sel["families"].items()
        for r in [rec] * len(rec["candidates"])]):
      values = [spread[t][row[0]][_bench_key(d)] for t in spread]
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
