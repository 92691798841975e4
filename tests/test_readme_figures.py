"""The README's benchmark tables are the published results, digit for digit.

Session 7's audit checked 30 README figures against ``benchmarks/results``
by hand; this keeps the two tables that carry most of them from drifting:
the robustness table (mean test accuracy over the report tasks by base
rate) and the report table (test accuracy per report task), each rounded
to 3 decimals as printed.
"""

import json
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
RESULTS = ROOT / "benchmarks" / "results"

# README row label -> method name in the results JSON.
ROBUSTNESS_ROWS = {
    "constant rate": "constant",
    "`recommended` (adjust)": "recommended",
    "`dynamic`": "dynamic",
    "`reduce_on_plateau`": "reduce_on_plateau",
    "`decay`": "decay",
}
REPORT_ROWS = {
    "`recommended`": "recommended",
    "constant (0.03)": "constant",
    "constant, best of grid": "constant_lr_best_of_grid",
    "scratch, best of grid": "scratch_best_of_grid",
    "`head_first`": "head_first",
    "Prodigy": "prodigy",
    "DoG": "dog",
    "DoWG": "dowg",
    "Schedule-Free SGD": "schedule_free_sgd",
    "Mechanic (SGD)": "mechanize_sgd",
    "Optax reduce_on_plateau": "optax_reduce_on_plateau",
    "GreedyLR (port)": "greedy_lr",
}


def _table(first_header: str) -> tuple[list[str], dict[str, list[str]]]:
  """(headers, {row label: cells}) of the README table whose first header
  cell is ``first_header``."""
  lines = README.splitlines()
  start = next(i for i, line in enumerate(lines)
               if line.startswith(f"| {first_header} |"))
  cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  headers = cells(lines[start])
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    row = cells(line)
    rows[row[0]] = row[1:]
  return headers, rows


def test_robustness_table_is_robustness_json():
  result = json.loads((RESULTS / "robustness.json").read_text())
  headers, rows = _table("base rate")
  rates = headers[1:]
  assert set(rows) == set(ROBUSTNESS_ROWS)
  for label, method in ROBUSTNESS_ROWS.items():
    for rate, printed in zip(rates, rows[label]):
      mean = np.mean([result["tasks"][t][method][rate]["mean"]
                      for t in result["tasks"]])
      assert printed == f"{mean:.3f}", (label, rate)


def test_report_table_is_quality_json():
  result = json.loads((RESULTS / "quality.json").read_text())
  tasks = list(result["tasks"])
  headers, rows = _table("method")
  assert headers[-1] == "mean" and len(headers) == len(tasks) + 2
  assert set(rows) == set(REPORT_ROWS)
  for label, method in REPORT_ROWS.items():
    values = [result["tasks"][t][method]["mean"] for t in tasks]
    expected = [f"{v:.3f}" for v in values] + [f"{np.mean(values):.3f}"]
    assert rows[label] == expected, label


@pytest.mark.parametrize("name", ["quality", "robustness"])
def test_published_results_are_of_the_current_report_set(name):
  result = json.loads((RESULTS / f"{name}.json").read_text())
  import sys
  sys.path.insert(0, str(ROOT / "benchmarks"))
  try:
    import suite
  finally:
    sys.path.remove(str(ROOT / "benchmarks"))
  assert list(result["tasks"]) == list(suite.REPORT_TASKS)
  assert result["split"]["task_seeds"]["report"] == suite.REPORT_TASK_SEED
