"""What ``population.py`` concludes from its recorded curves.

* :func:`tuning_picks` (tuning set, validation only): the monitored value
  and the successive-halving rungs within ``BUDGET`` runs of compute, then
  smaller candidate sets of rates and copy depths, then the strategy per
  member. Each candidate is scored by 2-fold held-out validation accuracy
  (choose on one half of the validation split, score the other half at the
  chosen evaluation, and the other way round), averaged over seeds, then
  over tasks.
* :func:`report_figures` (report set): the adopted variant's test accuracy
  (its member chosen on the full validation split) against the reference,
  Prodigy and ``recommended`` (``results/quality.json``), the targets met
  or missed with their margins.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

import _common
import population_sim as sim

BUDGET = 3.0  # member-epochs of the budgeted variant, in runs
# A smaller candidate set is adopted only if it loses nothing on the mean
# and at most this much on any tuning task (held-out validation accuracy).
SMALLER_SET_TASK_TOLERANCE = 0.005
MONITORS = {"accuracy": "max", "loss": "min"}
TUNING_JSON = _common.RESULTS_DIR / "population_tuning.json"
QUALITY_JSON = _common.RESULTS_DIR / "quality.json"
FIT_AUTO_REPORT_JSON = _common.RESULTS_DIR / "population_report_fit_auto.json"
SCHEDULES_JSON = _common.RESULTS_DIR / "population_schedules.json"


def _population(result, arrays, task: str, strategies: Sequence[str],
                rates: Optional[Sequence[float]] = None,
                depths: Optional[Sequence[str]] = None):
  """(curve name -> [members, seeds, epochs] over the chosen strategies,
  member descriptions) of the candidates allowed by rates/depths."""
  members = result["tasks"][task]["members"]
  keep = [i for i, m in enumerate(members)
          if (rates is None or m["rate"] in rates)
          and (depths is None or depth_name(m) in depths)]
  curves: dict[str, np.ndarray] = {}
  described = []
  for strategy in strategies:
    prefix = f"{task}/{strategy}/"
    for key, value in arrays.items():
      if key.startswith(prefix):
        name = key[len(prefix):]
        curves[name] = (value[keep] if name not in curves else
                        np.concatenate([curves[name], value[keep]]))
    described += [dict(members[i], strategy=strategy) for i in keep]
  return curves, described


def depth_name(member: Mapping[str, Any]) -> str:
  """"scratch", "depth1", "depth2", "depth2+head"..."""
  if member["depth"] == 0:
    return "scratch"
  return f"depth{member['depth']}" + ("+head" if member["keep_head"] else "")


def held_out(curves, schedule_of, monitor: str) -> dict[str, float]:
  """Mean over seeds of the 2-fold held-out validation accuracy."""
  mode = MONITORS[monitor]
  members, seeds, epochs = curves["val_accuracy"].shape
  schedule = schedule_of(members, epochs)
  scores, cost = [], []
  for s in range(seeds):
    folds = []
    for choose, score in (("a", "b"), ("b", "a")):
      out = sim.replay(schedule, curves[f"val_{monitor}_{choose}"][:, s],
                       mode, [curves[f"val_accuracy_{score}"][:, s]])
      folds.append(out["scores"][0])
      cost.append(out["member_epochs"] / epochs)
    scores.append(np.mean(folds))
  return {"score": float(np.mean(scores)),
          "member_epochs_runs": float(np.mean(cost))}


def _schedule_of(spec):
  if spec is None:
    return lambda members, epochs: sim.Halving()
  return lambda members, epochs: sim.explicit(members, *spec)


def _spec_label(spec) -> str:
  if spec is None:
    return "full"
  return sim.explicit(0, *spec).label


def _over_tasks(result, arrays, spec, monitor, strategies, rates=None,
                depths=None) -> dict[str, Any]:
  per_task = {}
  for task in result["tasks"]:
    curves, _ = _population(result, arrays, task, strategies, rates, depths)
    per_task[task] = held_out(curves, _schedule_of(spec), monitor)
  return {"mean": float(np.mean([v["score"] for v in per_task.values()])),
          "member_epochs_runs": float(np.mean(
              [v["member_epochs_runs"] for v in per_task.values()])),
          "tasks": {t: v["score"] for t, v in per_task.items()}}


def tuning_picks(result: Mapping[str, Any], arrays) -> dict[str, Any]:
  """Every choice, by held-out validation accuracy on the tuning set."""
  epochs = result["epochs"]
  first = next(iter(result["tasks"].values()))
  size = len(first["members"])
  within = sim.halving_specs(size, epochs, BUDGET)
  if not within:  # a short --quick run: the cheapest schedule, over budget
    within = [min(sim.halving_specs(size, epochs, math.inf), key=lambda s:
                  sim.explicit(size, *s).member_epochs(size, epochs))]
  specs = [None] + within
  base = ["constant"]
  rows = []
  for monitor in MONITORS:
    for spec in specs:
      row = _over_tasks(result, arrays, spec, monitor, base)
      rows.append({"monitor": monitor, "schedule": _spec_label(spec),
                   "spec": spec, **row})
  budgeted = [r for r in rows if r["spec"] is not None]
  pick = max(budgeted, key=lambda r: (round(r["mean"], 6),
                                      -r["member_epochs_runs"]))
  monitor, spec = pick["monitor"], pick["spec"]
  full = next(r for r in rows if r["spec"] is None
              and r["monitor"] == monitor)
  # Smaller candidate sets, under the adopted schedule.
  rates = result["rates"]
  depth_names = sorted({depth_name(m) for m in first["members"]})
  rate_sets = [rates, rates[:-1], rates[1:], rates[1:-1]]
  depth_sets = [depth_names] + [[d for d in depth_names if d != drop]
                                for drop in depth_names]
  sets = []
  for rate_set in rate_sets:
    for depth_set in depth_sets:
      row = _over_tasks(result, arrays, spec, monitor, base, rate_set,
                        depth_set)
      sets.append({"rates": list(rate_set), "depths": list(depth_set),
                   "size": len(rate_set) * len(depth_set), **row})
  whole = sets[0]
  no_loss = [s for s in sets if s["mean"] >= whole["mean"] and all(
      s["tasks"][t] >= whole["tasks"][t] - SMALLER_SET_TASK_TOLERANCE
      for t in whole["tasks"])]
  chosen_set = min(no_loss, key=lambda s: (s["size"], -s["mean"]))
  strategies = {}
  for label, strats in (("constant", ["constant"]), ("adjust", ["adjust"]),
                        ("constant+adjust", ["constant", "adjust"])):
    if all(f"{t}/{s}/val_accuracy" in arrays for t in result["tasks"]
           for s in strats):
      strategies[label] = {
          "budgeted": _over_tasks(result, arrays, spec, monitor, strats,
                                  chosen_set["rates"], chosen_set["depths"]),
          "full": _over_tasks(result, arrays, None, monitor, strats,
                              chosen_set["rates"], chosen_set["depths"])}
  # Within the budget only (a union of strategies doubles the population).
  affordable = [k for k in strategies if strategies[k]["budgeted"][
      "member_epochs_runs"] <= BUDGET + 1e-9] or list(strategies)  # --quick
  strategy = max(affordable, key=lambda k: (
      round(strategies[k]["budgeted"]["mean"], 6), -len(k)))
  schedule, study = schedule_pick(pick["mean"] - full["mean"])
  return {
      "schedule_study": study,
      "rule": "2-fold held-out validation accuracy (choose on one half of "
              "the validation split, score on the other), mean over seeds, "
              "then over the tuning tasks; test never evaluated",
      "budget_runs": BUDGET,
      "schedules": rows,
      "candidate_sets": sets, "strategies": strategies,
      "adopted": {"monitor": f"val_{monitor}", "mode": MONITORS[monitor],
                  "halving": {"eta": spec[0], "rungs": list(spec[1])},
                  "rates": chosen_set["rates"],
                  "depths": chosen_set["depths"], "strategy": strategy,
                  "schedule": schedule,
                  "held_out_validation": pick["mean"],
                  "full_population_held_out_validation": full["mean"]}}


def schedule_pick(halving_minus_full: float) -> tuple[str, dict]:
  """Full vs halving vs PBT, each against halving on the same runs: full
  on the replay (the same members' curves), PBT on ``fit_auto``'s own runs
  (``population_fit_auto.py schedules``: its copies change the curves, a
  replay cannot show them). The largest gain over halving wins; halving
  when nothing beats it."""
  gains = {"halving": 0.0, "full": -halving_minus_full}
  study: dict[str, Any] = {"gain_over_halving": gains,
                           "source": "replay (full); "
                           "benchmarks/results/population_schedules.json "
                           "(PBT, fit_auto runs)"}
  if SCHEDULES_JSON.exists():
    runs = json.loads(SCHEDULES_JSON.read_text())
    if {"pbt", "halving"} <= set(runs.get("mean", {})):
      gains["pbt"] = runs["mean"]["pbt"] - runs["mean"]["halving"]
      study["fit_auto_held_out"] = runs["mean"]
      study["fit_auto_tasks"] = {
          t: {k: v["held_out"] for k, v in r.items()}
          for t, r in runs["tasks"].items()}
  best = max(gains, key=lambda k: (round(gains[k], 6), k == "halving"))
  return best, study


def _reference(curves, members) -> dict[str, Any]:
  """Per grid (scratch / fine-tuning), the cell picked on mean validation
  accuracy over seeds; final-epoch and best-epoch variants."""
  val, test = curves["val_accuracy"], curves["val_accuracy_test"]
  best = np.argmax(np.nan_to_num(val, nan=-1.0), axis=2)
  at_best = lambda a: np.take_along_axis(a, best[..., None], 2)[..., 0]
  out = {}
  for variant, (v, t) in (("final_epoch", (val[..., -1], test[..., -1])),
                          ("best_epoch", (at_best(val), at_best(test)))):
    grids = {}
    for grid, pick in (("scratch", lambda m: m["depth"] == 0),
                       ("fine_tuning", lambda m: m["depth"] > 0)):
      index = [i for i, m in enumerate(members) if pick(m)]
      cell = index[int(np.argmax(np.nan_to_num(v[index].mean(1), nan=-1)))]
      grids[grid] = {"member": members[cell]["label"],
                     "val_mean": float(v[cell].mean()),
                     "test_mean": float(t[cell].mean())}
    grids["reference"] = max(g["test_mean"] for g in grids.values())
    out[variant] = grids
  return out


def report_figures(result: Mapping[str, Any], arrays) -> dict[str, Any]:
  """The adopted variant on the report set, against the targets."""
  adopted = (json.loads(TUNING_JSON.read_text())["analysis"]["adopted"]
             if TUNING_JSON.exists() else None)
  if adopted is None or result.get("quick"):
    adopted = adopted or {"monitor": "val_accuracy", "mode": "max",
                          "halving": {"eta": 3, "rungs": [2, 6, 18]},
                          "rates": result["rates"], "depths": None,
                          "strategy": "constant"}
  monitor, mode = adopted["monitor"], adopted["mode"]
  strategies = adopted["strategy"].split("+")
  if not all(s in result["strategies"] for s in strategies):
    strategies = ["constant"]  # quick runs: what was run
  spec = (adopted["halving"]["eta"], tuple(adopted["halving"]["rungs"]))
  quality = (json.loads(QUALITY_JSON.read_text())["tasks"]
             if QUALITY_JSON.exists() else {})
  tasks = {}
  for task in result["tasks"]:
    reference = _reference(*_population(result, arrays, task, ["constant"]))
    curves, members = _population(result, arrays, task, strategies,
                                  adopted["rates"], adopted["depths"])
    row = {"reference": reference}
    for name, schedule_spec in (("full", None), ("budgeted", spec)):
      size, seeds, epochs = curves["val_accuracy"].shape
      schedule = _schedule_of(schedule_spec)(size, epochs)
      runs = [sim.replay(schedule, curves[monitor][:, s], mode,
                         [curves["val_accuracy_test"][:, s]])
              for s in range(seeds)]
      row[name] = {
          "test_mean": float(np.mean([r["scores"][0] for r in runs])),
          "test_std": float(np.std([r["scores"][0] for r in runs])),
          "chosen": [members[r["member"]]["label"] + " " +
                     members[r["member"]]["strategy"] for r in runs],
          "epoch": [r["epoch"] for r in runs],
          "member_epochs_runs": float(np.mean(
              [r["member_epochs"] for r in runs]) / epochs),
          "schedule": [list(r) for r in schedule.rungs]}
    for peer in ("prodigy", "recommended"):
      row[peer] = quality.get(task, {}).get(peer, {}).get("mean")
    tasks[task] = row
  if FIT_AUTO_REPORT_JSON.exists() and not result.get("quick"):
    runs = json.loads(FIT_AUTO_REPORT_JSON.read_text())["tasks"]
    for task, row in tasks.items():
      for schedule, stats in runs.get(task, {}).items():
        if schedule in ("halving", "pbt"):
          row[f"fit_auto_{schedule}"] = stats
  return {"adopted": adopted, "tasks": tasks,
          "variants": {v: d for v, d in VARIANTS.items()
                       if all(v in r for r in tasks.values())},
          "targets": targets(tasks)}


VARIANTS = {
    "budgeted": "successive halving (replayed on the recorded runs)",
    "full": "full population (replayed on the recorded runs)",
    "fit_auto_halving": "fit_auto(schedule=Halving(...)) itself",
    "fit_auto_pbt": "fit_auto(schedule='pbt') itself"}


def variant_targets(tasks: Mapping[str, Any], variant: str,
                    prodigy: Optional[float]) -> dict[str, Any]:
  """The accuracy targets of one variant, against both references."""
  mean = float(np.mean([r[variant]["test_mean"] for r in tasks.values()]))
  out: dict[str, Any] = {"test_mean": mean}
  for ref in ("final_epoch", "best_epoch"):
    reference = float(np.mean([r["reference"][ref]["reference"]
                               for r in tasks.values()]))
    margins = {t: r[variant]["test_mean"] - r["reference"][ref]["reference"]
               + 0.015 for t, r in tasks.items()}
    out[f"mean_vs_reference_{ref}"] = {
        "rule": "mean >= reference mean - 0.005", "reference": reference,
        "margin": mean - (reference - 0.005),
        "met": mean >= reference - 0.005}
    out[f"every_task_vs_reference_{ref}"] = {
        "rule": "every task >= its reference - 0.015",
        "margins": margins, "margin": min(margins.values()),
        "met": all(m >= 0 for m in margins.values())}
  out["mean_vs_prodigy"] = {
      "rule": "mean >= Prodigy's mean + 0.015", "prodigy": prodigy,
      "margin": None if prodigy is None else mean - (prodigy + 0.015),
      "met": None if prodigy is None else mean >= prodigy + 0.015}
  return out


def targets(tasks: Mapping[str, Any]) -> dict[str, Any]:
  """Every variant's accuracy targets, and the budget target of halving."""
  ran = [v for v in VARIANTS if all(v in r for r in tasks.values())]
  prodigy = (float(np.mean([r["prodigy"] for r in tasks.values()])) if all(
      r["prodigy"] is not None for r in tasks.values()) else None)
  out: dict[str, Any] = {v: variant_targets(tasks, v, prodigy) for v in ran}
  mean = lambda v: out[v]["test_mean"]
  cost = max(r["budgeted"]["member_epochs_runs"] for r in tasks.values())
  out["budget"] = {
      "rule": "halving <= 3 runs of member-epochs and mean >= the full "
              "population's mean - 0.01",
      "member_epochs_runs": cost, "full": mean("full"),
      "budgeted": mean("budgeted"),
      "margin": mean("budgeted") - (mean("full") - 0.01),
      "met": cost <= BUDGET + 1e-9 and mean("budgeted") >= mean("full") - 0.01}
  return out
