"""The benchmark tables of the READMEs and the docs, generated from the results JSON.

Every table that quotes ``benchmarks/results/*.json`` in README.md,
benchmarks/README.md or docs/guides/benchmarks.md sits between two marker
comments::

  <!-- table: robustness-summary -->
  ...generated text...
  <!-- /table -->

and is written by this script, so a rerun of a benchmark changes the tables
with one command and no figure is copied by hand::

  python benchmarks/tables.py           # rewrite the tables in place
  python benchmarks/tables.py --check   # exit 1 if a committed table differs

``tests/test_readme_figures.py`` runs the check. The text around the tables
(what a figure means, where we lose) is written by hand.
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import re
import sys
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The files holding generated tables, and the tables each must hold (a
# marker deleted by an edit is an error, not a table silently dropped).
DOCUMENTS = {
    "README.md": ("tuning-free-summary", "robustness-summary"),
    "benchmarks/README.md": ("tuning-free", "robustness-summary",
                             "robustness-all", "quality", "targets",
                             "brake"),
    "docs/guides/benchmarks.md": ("tuning-free", "robustness-summary",
                                  "robustness-all", "quality"),
}

_BLOCK = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)",
                    re.S)

# Labels of methods in tables (the JSON's names otherwise).
LABELS = {
    "constant": "constant rate",
    "constant_lr_best_of_grid": "constant rate, best of grid",
    "scratch_best_of_grid": "scratch, best of grid",
    "recommended": "`recommended` (adjust)",
    "optax_reduce_on_plateau": "Optax reduce_on_plateau",
    "greedy_lr": "GreedyLR (port)",
    "dog": "DoG",
    "dowg": "DoWG",
    "prodigy": "Prodigy",
    "schedule_free_sgd": "Schedule-Free SGD",
    "mechanize_sgd": "Mechanic (SGD)",
}
# The rows of the summary table: the constant rate and the strategies.
SUMMARY_ROWS = ("constant", "recommended", "dynamic", "reduce_on_plateau",
                "decay")
# Methods without a base rate, quoted once under the summary table when the
# results hold them ("auto": the tuning-free population fit).
SUMMARY_RATE_FREE = ("auto", "prodigy")


def _label(method: str, kinds: dict[str, str]) -> str:
  if method in LABELS:
    return LABELS[method]
  kind = kinds.get(method, "")
  return f"`{method}`" if kind == "lrtransfer" else method


def _load(name: str) -> dict:
  path = RESULTS / f"{name}.json"
  if not path.exists():
    raise SystemExit(f"tables.py: {path.relative_to(ROOT)} is missing; run "
                     f"python benchmarks/{name}.py first")
  return json.loads(path.read_text())


def _mean(values: list[float]) -> float:
  return sum(values) / len(values)


def _row(cells: list[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def _rates(result: dict) -> list[str]:
  """Every base rate some method ran at, in increasing order."""
  rates = {r for task in result["tasks"].values() for method in task.values()
           for r in method}
  return sorted(rates, key=float)


def _mean_over_tasks(result: dict, method: str, rate: str) -> float | None:
  """Mean test accuracy over the report tasks (None if not run everywhere)."""
  cells = [task[method].get(rate) for task in result["tasks"].values()]
  if any(c is None for c in cells):
    return None
  return _mean([c["mean"] for c in cells])


def _rate_free_value(result: dict, method: str) -> float:
  """The one mean of a method that takes no base rate."""
  rates = {r for task in result["tasks"].values() for r in task[method]}
  if len(rates) != 1:
    raise SystemExit(f"tables.py: {method} takes no base rate but ran at "
                     f"{sorted(rates)} in robustness.json")
  return _mean_over_tasks(result, method, rates.pop())


def robustness_summary() -> str:
  """Mean test accuracy over the report tasks by base rate, a few methods."""
  result = _load("robustness")
  rates = _rates(result)
  kinds = result["kinds"]
  lines = [_row(["base rate"] + rates), _row(["---"] * (len(rates) + 1))]
  for method in SUMMARY_ROWS:
    values = [_mean_over_tasks(result, method, r) for r in rates]
    lines.append(_row([_label(method, kinds)] + [
        "-" if v is None else f"{v:.3f}" for v in values]))
  present = [m for m in SUMMARY_RATE_FREE if m in result["kinds"]]
  quoted = [f"{_label(m, kinds)} {_rate_free_value(result, m):.3f}"
            for m in present]
  # fit_auto runs in its own benchmark on the same tasks, seeds, epochs and
  # batch size (benchmarks/population_fit_auto.py report).
  auto = _load("population_report_fit_auto")["tasks"]
  if set(auto) == set(result["tasks"]):
    halving = [auto[t]["halving"] for t in result["tasks"]]
    quoted.append(f"`fit_auto` {_mean([h['test_mean'] for h in halving]):.3f}"
                  f" ({halving[0]['member_epochs_runs']:g} runs of compute)")
  if quoted:
    lines += ["", f"Without a base rate (run once): {', '.join(quoted)}."]
  seeds = result["seeds"]
  lines += ["", f"Mean test accuracy over the {len(result['tasks'])} report "
            f"tasks, {seeds} seeds each (`benchmarks/results/robustness.json`);"
            " `-`: not run at that rate."]
  return "\n".join(lines)


def robustness_all() -> str:
  """Every method with a base rate: mean by rate, worst drop, catastrophe."""
  result = _load("robustness")
  rates = _rates(result)
  kinds = result["kinds"]
  head = ["method"] + rates + ["worst drop", "catastrophe (task, rate)"]
  lines = [_row(head), _row(["---"] * len(head))]
  for method, takes_rate in result["base_rate"].items():
    if not takes_rate:
      continue
    values = [_mean_over_tasks(result, method, r) for r in rates]
    cells = ["-" if v is None else f"{v:.3f}" for v in values]
    cells.append(f"{100 * result['worst_drop'][method]:+.1f}")
    if method in result["catastrophe"]:
      at = result["catastrophe_at"][method]
      cells.append(f"{100 * result['catastrophe'][method]:+.1f} "
                   f"({at['task']}, {at['lr']})")
    else:
      cells.append("")
    lines.append(_row([_label(method, kinds)] + cells))
  lines += [
      "",
      "Mean test accuracy over the report tasks by base rate. *Worst drop*: "
      "the lowest, over tasks and rates, of (method - the task's best-of-grid "
      "constant rate), in points. *Catastrophe*: the lowest, over tasks and "
      "rates, of (method - the constant rate at the same base rate), in "
      "points, and where."]
  return "\n".join(lines)


def quality() -> str:
  """The report table: test accuracy per report task, every method."""
  result = _load("quality")
  tasks = list(result["tasks"])
  kinds = result["kinds"]
  methods = list(result["tasks"][tasks[0]])
  head = ["method", "kind"] + tasks + ["mean"]
  lines = [_row(head), _row(["---"] * len(head))]
  for method in methods:
    cells = [result["tasks"][t][method] for t in tasks]
    lines.append(_row(
        [_label(method, kinds), kinds.get(method, "")]
        + [f"{c['mean']:.3f} ± {c['std']:.3f}" for c in cells]
        + [f"{_mean([c['mean'] for c in cells]):.3f}"]))
  for label, grid in (("grid-picked rate (fine-tuning)", "constant"),
                      ("grid-picked rate (scratch)", "scratch")):
    picked = [f"{result['details'][t]['grids'][grid]['chosen']:g}"
              for t in tasks]
    lines.append(_row([label, ""] + picked + [""]))
  lines += ["", f"Test accuracy, mean ± std over {result['seeds']} seeds "
            "(`benchmarks/results/quality.json`); lrtransfer's recipes at their "
            f"defaults (`recommended` at {result['recommended_lr']:g}, the "
            f"others at {result['learning_rate']:g}); best of grid: the "
            "constant rate of " + ", ".join(f"{r:g}" for r in result["grid"])
            + " picked on validation."]
  return "\n".join(lines)


def targets() -> str:
  """The targets that quality.py and robustness.py check, met or missed."""
  lines = []
  for name in ("quality", "robustness"):
    result = _load(name)
    for target, record in result["targets"].items():
      verdict = "met" if record["met"] else "missed"
      lines.append(f"* **{verdict}**: `{target}` ({name}.json), "
                   f"{record['rule'].rstrip('.')}.")
  return "\n".join(lines)


def tuning_free() -> str:
  """fit_auto per report task against the reference it aims at and the
  tuning-free peer, from population_report_fit_auto.json and quality.json."""
  auto = _load("population_report_fit_auto")
  quality_result = _load("quality")
  tasks = list(auto["tasks"])
  head = ["task", "`fit_auto` (halving, default)", "`fit_auto` (PBT)",
          "reference", "Prodigy", "`recommended`"]
  lines = [_row(head), _row(["---"] * len(head))]
  columns: list[list[float]] = [[] for _ in head[1:]]
  for task in tasks:
    record, peers = auto["tasks"][task], quality_result["tasks"][task]
    values = [record["halving"]["test_mean"], record["pbt"]["test_mean"],
              record["reference"]["final_epoch"], peers["prodigy"]["mean"],
              peers["recommended"]["mean"]]
    for column, value in zip(columns, values):
      column.append(value)
    lines.append(_row([task] + [f"{v:.3f}" for v in values]))
  lines.append(_row(["**mean**"] + [f"{_mean(c):.3f}" for c in columns]))
  runs = {name: auto["tasks"][tasks[0]][name]["member_epochs_runs"]
          for name in ("halving", "pbt")}
  lines += ["", f"Test accuracy, mean over {len(quality_result['seed_values'])}"
            " seeds per report task (`benchmarks/results/"
            "population_report_fit_auto.json`, `quality.json`). Compute in "
            f"runs of one member: halving {runs['halving']:g}, PBT "
            f"{runs['pbt']:g}. Reference: per task, the better of the scratch "
            "grid and the fine-tuning grid over (rate, copied layers), each "
            "cell picked by mean validation accuracy."]
  return "\n".join(lines)


def tuning_free_summary() -> str:
  """One sentence: fit_auto's mean against the reference and the peers."""
  table = tuning_free().splitlines()
  means = [cell.strip() for cell in table[-3].strip("|").split("|")][1:]
  runs = _load("population_report_fit_auto")["tasks"]
  runs = next(iter(runs.values()))["halving"]["member_epochs_runs"]
  return (f"Mean test accuracy over the 9 report tasks, 10 seeds each: "
          f"`fit_auto` {means[0]} for {runs:g} runs of compute, the per-task "
          f"reference {means[2]}, Prodigy {means[3]}, `recommended` "
          f"{means[4]} (`benchmarks/results/population_report_fit_auto.json`)."
          )


def brake() -> str:
  """The brake on any rise against the recommended one, brake_noise.json."""
  result = _load("brake_noise")
  settings = ("brake_on_any_rise", "recommended")
  head = ["", "brakes (while validation improved)", "final scales max/min",
          "test accuracy"]
  lines = [_row(["Dropout MLP, 75 examples"] + head[1:]),
           _row(["---"] * len(head))]
  for dropout, records in result["dropout"].items():
    for name in settings:
      r = records[name]
      lines.append(_row([
          f"Dropout {dropout}, {LABELS.get(name, name.replace('_', ' '))}",
          f"{r['brakes']} ({r['brakes_while_validation_improved']})",
          f"{r['final_scale_spread']:g}", f"{r['test_accuracy_mean']:.3f}"]))
  head = ["report task", "final rate max/min: brake on any rise",
          "`recommended`", "test accuracy: brake on any rise",
          "`recommended`"]
  lines += ["", _row(head), _row(["---"] * len(head))]
  for task, records in result["report"].items():
    before, after = (records[n] for n in settings)
    lines.append(_row([task, f"{before['final_rate_spread']:g}",
                       f"{after['final_rate_spread']:g}",
                       f"{before['test_accuracy_mean']:.3f}",
                       f"{after['test_accuracy_mean']:.3f}"]))
  lines += ["", f"`python benchmarks/brake_noise.py` "
            "(`benchmarks/results/brake_noise.json`): the Dropout MLP with "
            f"{result['seeds']} seeds, {result['epochs']} epochs at rate "
            f"{result['rate']:g}; the report tasks with the recommended "
            "recipe at its default rate, over the report seeds. *Brake on "
            "any rise*: `AdjustRule(brake_while_improving=True)`, the brake "
            "also while validation improves."]
  return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "brake": brake,
    "tuning-free": tuning_free,
    "tuning-free-summary": tuning_free_summary,
    "robustness-summary": robustness_summary,
    "robustness-all": robustness_all,
    "quality": quality,
    "targets": targets,
}


def render(text: str, where: str) -> str:
  """``text`` with every marked table regenerated."""
  def fill(match: re.Match) -> str:
    name = match.group(2)
    if name not in TABLES:
      raise SystemExit(f"tables.py: {where}: unknown table {name!r} "
                       f"(known: {', '.join(TABLES)})")
    return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"
  return _BLOCK.sub(fill, text)


def _check_markers(text: str, where: str) -> None:
  found = [m.group(2) for m in _BLOCK.finditer(text)]
  missing = [t for t in DOCUMENTS[where] if t not in found]
  if missing:
    raise SystemExit(f"tables.py: {where} has no marker for "
                     f"{', '.join(missing)} (<!-- table: NAME --> ... "
                     "<!-- /table -->)")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if a table differs")
  args = parser.parse_args(argv)
  stale = []
  for where in DOCUMENTS:
    path = ROOT / where
    text = path.read_text()
    _check_markers(text, where)
    new = render(text, where)
    if new == text:
      continue
    if args.check:
      stale.append(where)
      sys.stdout.writelines(difflib.unified_diff(
          text.splitlines(True), new.splitlines(True), where, where))
    else:
      path.write_text(new)
      print(f"rewrote the tables of {where}")
  if stale:
    print(f"tables.py: generated tables differ in {', '.join(stale)}; run "
          "python benchmarks/tables.py", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
