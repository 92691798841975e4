"""``lrtransfer.train.fit_auto`` itself: schedules compared, replay checked.

    python benchmarks/population_fit_auto.py schedules [--quick] [--out FILE]
        [--tasks ...] [--seeds N] [--schedules full halving pbt]
    python benchmarks/population_fit_auto.py report [--schedules ...]
    python benchmarks/population_fit_auto.py check [--task T] [--seed S]

``schedules`` (tuning set, validation only): every tuning task x its seeds
runs ``fit_auto`` under each schedule twice, choosing on one half of the
validation split (``val=``) and scoring the chosen member's best evaluation
on the other half (``test=``), then the other way round: the same 2-fold
held-out validation accuracy as ``population_analysis.tuning_picks``, here
with real runs, so population-based training (whose copies change the
members' curves, not a replay) is judged like the others. The monitor and
halving rungs are the tuning study's picks (``population_tuning.json``).

``report``: ``fit_auto`` itself on the report set (10 seeds, its member
chosen on the whole validation split), test accuracy of the chosen member
against the reference of ``population_report.json``.

``check``: on one task and seed, ``fit_auto(schedule=Halving(...))`` against
the replay of the same schedule on independent runs of the same members
(same initial values and data order): the same member must be chosen and
the same members stopped at the same rungs. ``fit_auto`` runs twice: with
the monitor as given (``val_accuracy``, ``mode="max"``) and with accuracy
as a value to minimise (``val_error``), which ``schedules`` uses. Also
times ``fit_auto``'s halving and its full population against ONE member's
run (``fit``), interleaved, compile excluded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

import _common
import lrtransfer
import population
import population_sim as sim
import suite
from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train.program import accuracy
from lrtransfer._src.train.runner import expect_large_batches
from lrtransfer.recipes import Recipe

TUNING_JSON = _common.RESULTS_DIR / "population_tuning.json"
REPORT_JSON = _common.RESULTS_DIR / "population_report.json"
FALLBACK = {"monitor": "val_accuracy", "halving": {"eta": 3,
                                                   "rungs": [2, 6, 17]}}


def adopted() -> dict[str, Any]:
  if TUNING_JSON.exists():
    analysis = json.loads(TUNING_JSON.read_text()).get("analysis")
    if analysis is not None:
      return analysis["adopted"]
  return FALLBACK


def schedule_of(name: str, pick: dict, epochs: int):
  if name == "halving":
    rungs = tuple(e for e in pick["halving"]["rungs"] if e < epochs)
    # Short (--quick) runs cannot keep the 3-run budget: no budget there.
    budget = rules.HALVING_BUDGET if epochs == _common.EPOCHS else 1e3
    return rules.Halving(eta=pick["halving"]["eta"], rungs=rungs or None,
                         budget=budget)
  return rules.as_schedule(name)


def validation_error(model, x, y):
  """``1 - accuracy``: validation accuracy as a value to minimise."""
  return 1.0 - accuracy(model, x, y)


def run_auto(prepared, schedule, seeds, val, test, *, epochs: int,
             monitor: str, as_error: bool = True):
  """``fit_auto`` on ``prepared``'s task. ``as_error``: a maximised
  ``val_accuracy`` is monitored as ``val_error = 1 - accuracy``, minimised
  (the same ranking, ties included): what fit_auto ranks correctly whatever
  its handling of ``mode="max"`` (``check`` compares both)."""
  task = prepared.task
  options = {"monitor": monitor}
  if as_error and monitor == "val_accuracy":
    options = {"monitor": "val_error", "mode": "min",
               "metrics": {"error": validation_error}}
  with expect_large_batches():
    return lrtransfer.train.fit_auto(
        prepared.source, task.target_train, val,
        num_outputs=task.num_target_classes, schedule=schedule,
        epochs=epochs, batch_size=_common.BATCH_SIZE, seeds=list(seeds),
        test=test, **options)


def schedules_study(args) -> dict[str, Any]:
  pick = adopted()
  split = _common.split_record()
  tasks = args.tasks or (["wine_shift"] if args.quick else split["tuning"])
  epochs = 6 if args.quick else _common.EPOCHS
  out: dict[str, Any] = {"adopted": pick, "epochs": epochs, "tasks": {},
                         "rule": "2-fold held-out validation accuracy of "
                         "fit_auto's chosen member, mean over seeds, then "
                         "over tasks; test never evaluated"}
  for name in tasks:
    prepared = _common.prepare(name, source_epochs=3 if args.quick
                              else _common.SOURCE_EPOCHS)
    seeds = list(suite.tuning_seeds(name))[:args.seeds or (
        2 if args.quick else None)]
    val = prepared.task.target_val
    a, b = population.halves(len(val))
    folds = [((val.x[a], val.y[a]), (val.x[b], val.y[b])),
             ((val.x[b], val.y[b]), (val.x[a], val.y[a]))]
    row = {}
    for schedule_name in args.schedules:
      scores, cost, seconds = [], [], 0.0
      for choose, score in folds:
        result = run_auto(prepared, schedule_of(schedule_name, pick, epochs),
                          seeds, choose, score, epochs=epochs,
                          monitor=pick["monitor"])
        scores.append(result.test_accuracy)
        cost.append(result.compute)
        seconds += result.seconds
      row[schedule_name] = {
          "held_out": float(np.mean(scores)),
          "member_epochs_runs": float(np.mean(cost)), "seconds": seconds}
      print(f"{name} {schedule_name}: held-out val acc "
            f"{row[schedule_name]['held_out']:.4f}, "
            f"{row[schedule_name]['member_epochs_runs']:.2f} runs, "
            f"{seconds:.1f}s", flush=True)
    out["tasks"][name] = row
  out["mean"] = {s: float(np.mean([r[s]["held_out"] for r in
                                    out["tasks"].values()]))
                 for s in args.schedules}
  best = max(out["mean"], key=lambda s: (round(out["mean"][s], 6),
                                         s == "halving"))
  out["best_on_validation"] = best
  return out


def report_study(args) -> dict[str, Any]:
  """fit_auto itself on the report set: test accuracy of its chosen member
  (chosen on the whole validation split), against the reference of
  ``population_report.json``."""
  pick = adopted()
  split = _common.split_record()
  tasks = args.tasks or (split["report"][:1] if args.quick
                         else split["report"])
  epochs = 6 if args.quick else _common.EPOCHS
  reference = {}
  if REPORT_JSON.exists():
    analysis = json.loads(REPORT_JSON.read_text()).get("analysis") or {}
    reference = {t: r["reference"] for t, r in
                 analysis.get("tasks", {}).items()}
  out: dict[str, Any] = {"adopted": pick, "epochs": epochs, "tasks": {}}
  for name in tasks:
    prepared = _common.prepare(name, source_epochs=3 if args.quick
                              else _common.SOURCE_EPOCHS)
    seeds = list(suite.REPORT_SEEDS)[:args.seeds or (2 if args.quick
                                                      else None)]
    task = prepared.task
    row: dict[str, Any] = {}
    for schedule_name in args.schedules:
      result = run_auto(prepared, schedule_of(schedule_name, pick, epochs),
                        seeds, task.target_val, task.target_test,
                        epochs=epochs, monitor=pick["monitor"])
      row[schedule_name] = {
          "test_mean": float(np.mean(result.test_accuracy)),
          "test_std": float(np.std(result.test_accuracy)),
          "member_epochs_runs": result.compute,
          "seconds": result.seconds,
          "compile_seconds": result.compile_seconds}
      mean = row[schedule_name]["test_mean"]
      print(f"{name} {schedule_name}: test {mean:.4f}, "
            f"{result.compute:.2f} runs, {result.seconds:.1f}s", flush=True)
    if name in reference:
      row["reference"] = {v: reference[name][v]["reference"]
                          for v in ("final_epoch", "best_epoch")}
    out["tasks"][name] = row
  out["mean"] = {s: float(np.mean([r[s]["test_mean"] for r in
                                    out["tasks"].values()]))
                 for s in args.schedules}
  if all("reference" in r for r in out["tasks"].values()):
    out["reference_mean"] = {v: float(np.mean(
        [r["reference"][v] for r in out["tasks"].values()]))
        for v in ("final_epoch", "best_epoch")}
  return out


def check(args) -> dict[str, Any]:
  """fit_auto's halving against the replay on the same members' runs."""
  pick = adopted()
  epochs = 6 if args.quick else _common.EPOCHS
  prepared = _common.prepare(args.task, source_epochs=3 if args.quick
                            else _common.SOURCE_EPOCHS)
  task, seed = prepared.task, args.seed
  members = population.members_of(prepared, population.RATES)
  monitor = pick["monitor"]
  schedule = schedule_of("halving", pick, epochs)
  autos = {as_error: run_auto(prepared, schedule, [seed], task.target_val,
                             None, epochs=epochs, monitor=monitor,
                             as_error=as_error)
           for as_error in (False, True)}
  # The same members, independently, to the end: fit_auto's initial values
  # (population.py's, nnx.Rngs(1000 + seed)) and data order (seed), its
  # constant-rate recipe.
  models = [population.initial_models(prepared, m, [seed])[0]
            for m in members]
  with expect_large_batches():
    sweep = lrtransfer.train.fit_many(
        models, Recipe("auto", 0.01, momentum=0.9), task.target_train,
        task.target_val, seeds=[seed] * len(members),
        learning_rates=[m.rate for m in members], epochs=epochs,
        batch_size=_common.BATCH_SIZE, monitor=monitor)
  mode = "max" if monitor == "val_accuracy" else "min"
  plan = rules.halving_plan(schedule, len(members), epochs)
  values = np.asarray(sweep.history[monitor])
  replayed = sim.replay(sim.Halving(plan), values, mode, [values])
  stops = sim.Halving(plan).stops(sim.signed_values(values, mode))
  best = lambda member: float(values[member].max() if mode == "max"
                             else values[member].min())

  def compare(auto):
    stopped = [row.stopped_epoch for row in auto.members]
    chosen = int(auto.chosen[0])
    return {"chosen": chosen, "chosen_member": members[chosen].label,
            "best_value_replayed": best(chosen), "stops": stopped,
            "member_epochs_runs": auto.compute,
            "same_choice": chosen == replayed["member"],
            "same_stops": stopped == stops.tolist()}
  # Wall time: one member's fit against fit_auto, interleaved, compiles
  # excluded (each compiled in its first call, then timed again).
  single = members[[m.depth == 1 and m.rate == 0.01
                    for m in members].index(True)]
  times: dict[str, list] = {"one_run": [], "halving": [], "full": []}
  for _ in range(2):
    with expect_large_batches():
      one = lrtransfer.train.fit(
          models[members.index(single)], Recipe("auto", 0.01, momentum=0.9),
          task.target_train, task.target_val, epochs=epochs,
          batch_size=_common.BATCH_SIZE, seed=seed, monitor=monitor)
    times["one_run"].append(one.seconds)
    for name in ("halving", "full"):
      result = run_auto(prepared, schedule_of(name, pick, epochs), [seed],
                        task.target_val, None, epochs=epochs,
                        monitor=monitor)
      times[name].append(result.seconds)
  one = float(np.median(times["one_run"]))
  return {
      "task": args.task, "seed": seed, "monitor": monitor, "epochs": epochs,
      "plan": [list(r) for r in plan],
      "fit_auto": {"monitor_as_given": compare(autos[False]),
                   "accuracy_as_error": compare(autos[True])},
      "replay": {"chosen": replayed["member"],
                 "chosen_member": members[replayed["member"]].label,
                 "best_value": best(replayed["member"]),
                 "stops": stops.tolist(),
                 "member_epochs_runs": replayed["member_epochs"] / epochs},
      "seconds": times,
      "wall_time_ratio": {name: float(np.median(times[name])) / one
                          for name in ("halving", "full")}}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("what", choices=("schedules", "report", "check"))
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=Path, default=None)
  parser.add_argument("--tasks", nargs="+", default=None)
  parser.add_argument("--seeds", type=int, default=None)
  parser.add_argument("--schedules", nargs="+", default=["full", "halving",
                                                          "pbt"])
  parser.add_argument("--task", default="digits_rotation")
  parser.add_argument("--seed", type=int, default=suite.REPORT_SEEDS[0])
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  start = time.perf_counter()
  result = {"schedules": schedules_study, "report": report_study,
            "check": check}[args.what](args)
  result["device"] = _common.device_record()
  result["seconds_total"] = time.perf_counter() - start
  name = {"schedules": "schedules", "report": "report_fit_auto",
          "check": "check"}[args.what]
  out = Path(args.out or _common.RESULTS_DIR / f"population_{name}"
             f"{'_quick' if args.quick else ''}.json")
  _common.write_json(out, result)
  summary = {k: v for k, v in result.items()
             if k in ("mean", "best_on_validation", "wall_time_ratio",
                      "fit_auto", "replay", "reference_mean")}
  text = (f"`python benchmarks/population_fit_auto.py {args.what}` on "
          f"{_common.device_line(result['device'])}\n\n```\n"
          + json.dumps(summary, indent=2) + "\n```\n")
  out.with_suffix(".md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
