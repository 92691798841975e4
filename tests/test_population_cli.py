"""`lrtransfer run --methods auto`: the population fit from the command."""

import json

from lrtransfer._src import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_run_auto_prints_members_and_writes_plot_and_json(tmp_path, capsys):
  out = tmp_path / "out"
  code = cli.main(["run", "--epochs", "10", "--source-epochs", "2",
                   "--seeds", "2", "--methods", "auto,constant", "--out",
                   str(out), "--no-progress"])
  assert code == 0
  printed = capsys.readouterr().out
  assert "members of seed 0" in printed and "<- chosen" in printed
  assert "constant" in printed  # the recipes' table too
  results = json.loads((out / "results.json").read_text())
  auto = results["methods"]["auto"]
  assert set(results["methods"]) == {"auto", "constant"}
  assert len(auto["test_accuracy"]) == 2
  assert auto["compute_runs"] <= 3.0
  assert {row["transfer_layers"] for row in auto["members"]} >= {0, 1, 2}
  assert [c["seed"] for c in auto["chosen"]] == [0, 1]
  assert (out / "auto_members.png").read_bytes()[:8] == PNG_MAGIC


def test_auto_is_listed_and_not_part_of_all(capsys):
  assert cli.main(["run", "--list-methods"]) == 0
  assert "auto" in capsys.readouterr().out.split()
  from lrtransfer._src.cli_auto import split_methods
  assert split_methods("all", ["constant", "adjust"]) == (
      ["constant", "adjust"], False)
  assert split_methods("auto", ["constant"]) == ([], True)


def test_auto_refuses_too_few_epochs_before_training(tmp_path, capsys):
  code = cli.main(["run", "--epochs", "3", "--methods", "auto", "--out",
                   str(tmp_path / "out"), "--no-progress"])
  assert code != 0
  assert "--methods auto with --epochs 3" in capsys.readouterr().err
