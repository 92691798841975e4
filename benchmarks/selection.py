"""The selection stages of ``tune_defaults.py``: defaults from a validation table.

Pure functions of ``val[task][candidate][rate]`` (mean final validation
accuracy over the tuning seeds; no test number is ever read) and of the
candidates themselves; ``tune_defaults.py`` trains and writes the table,
``select`` turns it into the record of ``results/defaults.json``
(``"selection"``). The stages and their rules are described in
``tune_defaults.py``'s docstring; the tolerances below are theirs.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import _common
import lrtransfer

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


def candidate_id(family: str, spec: Mapping[str, Any]) -> str:
  settings = {**spec.get("kwargs", {}), **spec.get("recipe", {})}
  inner = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in settings.items())
  return f"{family}[{inner}]"


def cells(val: Mapping[str, Mapping[str, Mapping[str, float]]], name: str,
          rates, reference) -> list[tuple[float, str, str]]:
  """(name - ``reference(task, rate)``, task, rate key) for every task and
  rate of ``rates``."""
  return [(val[t][name][bench_key(r)] - reference(t, r), t, bench_key(r))
          for t in val for r in rates]


def worst_cell(val: Mapping[str, Mapping[str, Mapping[str, float]]],
                name: str, rates, reference) -> tuple[float, str, str]:
  """min over tasks and ``rates`` of (name - ``reference(task, rate)``), with
  the task and rate key where it is reached (the first, on a tie)."""
  return min(cells(val, name, rates, reference), key=lambda cell: cell[0])


def worst_gap(val: Mapping[str, Mapping[str, Mapping[str, float]]], name: str,
           rates, reference) -> float:
  """min over tasks and ``rates`` of (name - ``reference(task, rate)``)."""
  return worst_cell(val, name, rates, reference)[0]


def margins(val: Mapping[str, Mapping[str, float]], name: str, d: float,
             reference: Mapping[str, Mapping[str, float]]) -> float:
  """min over tasks and rates d/10, d, 10d of (name - reference same rate)."""
  return worst_gap(val, name, (d / 10, d, d * 10),
                lambda t, r: reference[t][bench_key(r)])


def mean_margin(val: Mapping[str, Mapping[str, Mapping[str, float]]],
                 name: str, rates, reference) -> float:
  """mean over tasks and ``rates`` of (name - ``reference(task, rate)``)."""
  return float(np.mean([c[0] for c in cells(val, name, rates, reference)]))


def most_robust(ids: list[str], rows: Mapping[str, Mapping[str, Any]],
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


def bench_key(lr: float) -> str:
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
      [val[t][name][bench_key(lr)] for t in tasks]))
  defaults = ["constant"] + [ids[0] for ids in families.values()]
  base_scores = {bench_key(lr): float(np.mean([mean_at(n, lr)
                                                for n in defaults]))
                 for lr in BASE_LR_CANDIDATES}
  d = base_lr or max(BASE_LR_CANDIDATES,
                     key=lambda lr: base_scores[bench_key(lr)])
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
  best_grid = {t: max(const[t][bench_key(lr)] for lr in _common.GRID)
               for t in tasks}
  below_best = lambda t, r: best_grid[t]
  winners = {}
  for family, ids in families.items():
    rows = {}
    for i in ids:
      at_10x, task, rate = worst_cell(val, i, (d / 10, d * 10), below_best)
      rows[i] = {"val_at_d": mean_at(i, d),
                 "worst_vs_constant": margins(val, i, d, const),
                 "worst_vs_best_grid_at_10x": at_10x,
                 "worst_10x_cell": [task, rate]}
      if i in ineligible:
        rows[i]["ineligible"] = ineligible[i]
      if val_seeds is not None:
        runs = np.asarray(val_seeds[task][i][rate])
        rows[i]["worst_10x_cell_stderr"] = float(
            runs.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else None
      rows[i]["mean_vs_best_grid_at_10x"] = mean_margin(
          val, i, (d / 10, d * 10), below_best)
    eligible = [i for i in ids if i not in ineligible]
    ok = [i for i in eligible if rows[i]["worst_vs_constant"]
          >= -CATASTROPHE_MARGIN]
    if ok:
      # Within EQUAL_AT_D of the best at d the candidates are equal there
      # (seed noise); among them the one most robust 10x off d wins.
      best_at_d = max(rows[i]["val_at_d"] for i in ok)
      near = [i for i in ok if rows[i]["val_at_d"] >= best_at_d - EQUAL_AT_D]
      chosen = most_robust(near, rows, "worst_vs_best_grid_at_10x", ids[0])
    else:
      chosen = most_robust(eligible, rows, "worst_vs_constant", ids[0])
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
      at_d = worst_gap(val, i, (rate,), below_best)
      at_10x = worst_gap(val, i, (rate / 10, rate * 10), below_best)
      worst = min(at_d + TUNING_FREE_MARGIN_AT_D,
                  at_10x + TUNING_FREE_MARGIN_AT_10X,
                  margins(val, i, rate, const) + CATASTROPHE_MARGIN)
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
