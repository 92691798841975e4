"""The markdown tables of ``population.py``'s tuning and report results."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

import _common


def markdown(result: Mapping[str, Any]) -> str:
  analysis = result["analysis"]
  head = (f"Population of base rates {result['rates']} x copy depths, "
          f"{result['set']} set, {result['epochs']} epochs, batch "
          f"{result['batch_size']}. Machine: "
          f"{_common.device_line(result['device'])}.")
  timing = [[t, s, f"{v['wall_time_ratio']:.1f}",
             len(result['tasks'][t]['members'])]
            for t, by in result["tasks"].items()
            for s, v in by["timing"].items()]
  timing_table = _common.markdown_table(
      ["task", "strategy", "wall time / one run", "members"], timing)
  if result["set"] == "tuning":
    a = analysis["adopted"]
    rows = [[r["monitor"], r["schedule"], f"{r['mean']:.4f}",
             f"{r['member_epochs_runs']:.2f}"] for r in analysis["schedules"]]
    sets = [[" ".join(f"{x:g}" for x in s["rates"]), " ".join(s["depths"]),
             f"{s['mean']:.4f}"] for s in analysis["candidate_sets"]]
    strat = [[k, f"{v['budgeted']['mean']:.4f}",
              f"{v['budgeted']['member_epochs_runs']:.2f}",
              f"{v['full']['mean']:.4f}"]
             for k, v in analysis["strategies"].items()]
    return "\n\n".join([
        head, f"Rule: {analysis['rule']}.",
        f"Adopted: {json.dumps(a)}",
        _common.markdown_table(["monitor", "schedule", "held-out val acc",
                                "member-epochs / run"], rows),
        _common.markdown_table(["rates", "depths", "held-out val acc"], sets),
        _common.markdown_table(["strategy", "budgeted", "member-epochs / run",
                                "full"], strat),
        "Schedule: gain in held-out validation accuracy over halving "
        "(full: replay of the same runs; PBT: fit_auto's own runs, "
        "population_schedules.json): "
        + json.dumps({k: round(v, 4) for k, v in
                      analysis["schedule_study"]["gain_over_halving"].items()})
        + f"; adopted schedule: {a['schedule']}",
        timing_table]) + "\n"
  variants = list(analysis["variants"])
  rows = []
  for task, r in analysis["tasks"].items():
    ref = r["reference"]
    rows.append([task] + [_common.fmt(r[v]["test_mean"]) for v in variants]
                + [_common.fmt(ref["final_epoch"]["reference"]),
                   _common.fmt(ref["best_epoch"]["reference"]),
                   _common.fmt(r["prodigy"]), _common.fmt(r["recommended"])])
  means = lambda key: np.mean([key(r) for r in analysis["tasks"].values()])
  rows.append(["**mean**"] + [
      _common.fmt(means(lambda r, v=v: r[v]["test_mean"])) for v in variants]
      + [_common.fmt(means(lambda r, k=k: r["reference"][k]["reference"]))
         for k in ("final_epoch", "best_epoch")]
      + [_common.fmt(means(lambda r, k=k: r[k] if r[k] is not None
                           else math.nan)) for k in ("prodigy", "recommended")])
  table = _common.markdown_table(
      ["task"] + variants + ["reference (final epoch)",
                             "reference (best epoch)", "prodigy",
                             "recommended"], rows)
  names = [k for k in analysis["targets"][variants[0]] if k != "test_mean"]
  verdicts = []
  for v in variants:
    cells = []
    for k in names:
      t = analysis["targets"][v][k]
      margin = t.get("margin")
      cells.append(_common.verdict(t["met"]) + (
          f" ({margin:+.4f})" if margin is not None else ""))
    verdicts.append([v] + cells)
  budget = analysis["targets"]["budget"]
  legend = "\n".join(f"* {v}: {d}" for v, d in analysis["variants"].items())
  return "\n\n".join([
      head, ("TEST accuracy on the REPORT tasks, mean over 10 seeds; members"
             " chosen on validation only. Reference: per task, the better of "
             "the scratch grid and the fine-tuning grid over (rate, copy "
             "depth), each cell picked by mean validation accuracy, at the "
             "final epoch (as quality.py's grids) or at each run's best "
             "validation epoch."),
      legend, table,
      "Targets (margin: how far above the threshold):",
      _common.markdown_table(["variant"] + names, verdicts),
      (f"* budget: {_common.verdict(budget['met'])} ({budget['rule']}; "
       f"{budget['member_epochs_runs']:.2f} runs, margin "
       f"{budget['margin']:+.4f})"),
      f"Adopted on the tuning set: {json.dumps(analysis['adopted'])}",
      timing_table]) + "\n"
