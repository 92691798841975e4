"""The benchmark tables of README.md, benchmarks/README.md and the docs are the published results.

``benchmarks/tables.py`` generates every such table from
``benchmarks/results/*.json`` between ``<!-- table: NAME -->`` and
``<!-- /table -->`` markers; its ``--check`` fails when the committed text
differs from what it generates (a figure edited by hand, or a rerun whose
tables were not regenerated: ``python benchmarks/tables.py`` fixes it).
"""

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
  import suite  # pylint: disable=wrong-import-position
  import tables  # pylint: disable=wrong-import-position
finally:
  sys.path.remove(str(ROOT / "benchmarks"))


def test_committed_tables_are_what_tables_py_generates(capsys):
  status = tables.main(["--check"])
  assert status == 0, capsys.readouterr().out


def test_every_document_holds_its_tables():
  for where, names in tables.DOCUMENTS.items():
    text = (ROOT / where).read_text()
    for name in names:
      assert f"<!-- table: {name} -->" in text, (where, name)


def test_render_replaces_only_the_marked_text(monkeypatch):
  monkeypatch.setitem(tables.TABLES, "quality", lambda: "| new |")
  text = ("before\n<!-- table: quality -->\n| old |\n<!-- /table -->\n"
          "after | old |\n")
  assert tables.render(text, "x.md") == (
      "before\n<!-- table: quality -->\n| new |\n<!-- /table -->\n"
      "after | old |\n")


def test_an_edited_figure_fails_the_check(monkeypatch, tmp_path, capsys):
  readme = tmp_path / "README.md"
  generated = tables.render((ROOT / "README.md").read_text(), "README.md")
  readme.write_text(generated.replace("| constant rate | ",
                                      "| constant rate | 0.999 ", 1))
  monkeypatch.setattr(tables, "ROOT", tmp_path)
  monkeypatch.setattr(tables, "DOCUMENTS", {"README.md": ("robustness-summary",)})
  assert tables.main(["--check"]) == 1
  assert "0.999" in capsys.readouterr().out


def test_unknown_table_names_are_refused():
  with pytest.raises(SystemExit, match="unknown table 'nope'"):
    tables.render("<!-- table: nope -->\n<!-- /table -->", "x.md")


def test_summary_means_are_the_json_means():
  # One cell recomputed independently of tables.py's helpers.
  result = json.loads((RESULTS / "robustness.json").read_text())
  values = [task["recommended"]["0.01"]["mean"]
            for task in result["tasks"].values()]
  expected = f"{sum(values) / len(values):.3f}"
  lines = tables.robustness_summary().splitlines()
  column = lines[0].split(" | ").index("0.01")
  row = next(line for line in lines if line.startswith("| `recommended`"))
  assert row.split(" | ")[column] == expected


@pytest.mark.parametrize("name", ["quality", "robustness"])
def test_published_results_are_of_the_current_report_set(name):
  result = json.loads((RESULTS / f"{name}.json").read_text())
  assert list(result["tasks"]) == list(suite.REPORT_TASKS)
  assert result["split"]["task_seeds"]["report"] == suite.REPORT_TASK_SEED
