"""The `lrtransfer run` command on the embedded default task."""

import json
import subprocess
import sys

import pytest

from lrtransfer._src import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_help_documents_every_option(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["run", "--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for option in ("--task", "--source-data", "--target-data", "--methods",
                 "--epochs", "--source-epochs", "--seeds", "--batch-size",
                 "--lr", "--shots", "--out", "--no-progress",
                 "--list-methods"):
    assert option in text


def test_list_methods(capsys):
  assert cli.main(["run", "--list-methods"]) == 0
  names = capsys.readouterr().out.split()
  assert {"scratch", "constant", "decay", "adjust", "dynamic", "l2sp",
          "layerwise", "gradual_unfreeze", "head_first"} <= set(names)


def test_run_writes_table_plots_and_json(tmp_path, capsys):
  out = tmp_path / "out"
  code = cli.main(["run", "--epochs", "3", "--source-epochs", "2", "--seeds",
                   "2", "--methods", "scratch,adjust,l2sp,recommended",
                   "--out", str(out), "--no-progress"])
  assert code == 0
  printed = capsys.readouterr().out
  assert "test acc (mean ± std)" in printed and "best val epoch" in printed
  rows = [line.split()[0] for line in printed.splitlines()
          if line.split() and line.split()[0] in
          ("scratch", "adjust", "l2sp", "recommended")]
  assert rows == ["recommended", "scratch", "adjust", "l2sp"]  # first row
  results = json.loads((out / "results.json").read_text())
  assert results["task"] == "digits_label_split"
  assert results["settings"]["seeds"] == 2
  assert results["device"]["platform"]
  assert set(results["methods"]) == {"scratch", "adjust", "l2sp",
                                     "recommended"}
  # Without --lr every method runs at its own default base rate.
  assert results["settings"]["learning_rate"] == {
      "recommended": 0.01, "scratch": 0.03, "adjust": 0.03, "l2sp": 0.03}
  adjust = results["methods"]["adjust"]
  assert len(adjust["test_accuracy"]) == 2
  assert 0.0 <= adjust["test_accuracy_mean"] <= 1.0
  assert len(adjust["history_mean"]["val_accuracy"]) == 3
  assert 1 <= adjust["best_val_epoch"] <= 3
  for png in ("learning_rate.png", "val_accuracy.png"):
    assert (out / png).read_bytes()[:8] == PNG_MAGIC
  assert (out / "source_params").is_dir()  # the orbax source checkpoint
  assert not list(out.glob(".*"))  # no temporary files left behind


def test_failed_run_leaves_no_stale_results(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "results.json").write_text("{}")
  missing = tmp_path / "missing.npz"
  code = cli.main(["run", "--source-data", str(missing), "--target-data",
                   str(missing), "--out", str(out), "--no-progress"])
  assert code == cli.EXIT_BAD_INPUT
  assert not (out / "results.json").exists()


def test_console_script_reports_bad_input_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "lrtransfer._src.cli", "run", "--methods",
       "nosuch", "--out", str(tmp_path)], capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 2
  assert "unknown method(s) nosuch" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_keep_head_on_a_task_with_the_source_label_set(tmp_path, capsys):
  out = tmp_path / "out"
  code = cli.main(["run", "--task", "digits_domain_shift", "--keep-head",
                   "--epochs", "2", "--source-epochs", "2", "--seeds", "1",
                   "--methods", "constant", "--out", str(out),
                   "--no-progress"])
  assert code == 0
  results = json.loads((out / "results.json").read_text())
  assert results["settings"]["keep_head"] is True
  # The kept source head already knows the 10 digits: far above chance.
  assert results["methods"]["constant"]["test_accuracy_mean"] > 0.3
