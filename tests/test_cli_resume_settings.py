"""``lrtransfer run --resume`` refuses options that change what it continues.

Resuming with another --standardize, --transfer-layers or --source-epochs
passes the run checkpoints' own checks (sizes, recipes and rates), so
without these checks it would continue the old run and record the new
option in results.json.
"""

from __future__ import annotations

import json

from lrtransfer._src import cli

FAST = ["run", "--methods", "constant", "--epochs", "2", "--source-epochs",
        "1", "--seeds", "1", "--shots", "4", "--checkpoint-every", "1",
        "--no-progress"]


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main([*FAST, "--out", str(out)]) == 0
  recorded = json.loads((out / "run_settings.json").read_text())
  assert recorded["source_epochs"] == 1 and recorded["transfer_layers"] is None
  capsys.readouterr()
  code = cli.main([*FAST, "--out", str(out), "--resume",
                   "--transfer-layers", "0", "--source-epochs", "2"])
  assert code == cli.EXIT_BAD_INPUT
  error = capsys.readouterr().err
  assert "--transfer-layers: None there, 0 now" in error
  assert "--source-epochs: 1 there, 2 now" in error
  assert error.count("\n") == 1  # one line, no traceback
  # The same options continue it.
  assert cli.main([*FAST, "--out", str(out), "--resume"]) == 0
  assert json.loads((out / "results.json").read_text())["settings"][
      "resumed"] is True


def test_a_fresh_run_removes_checkpoints_of_the_source_it_replaces(
    tmp_path, capsys):
  """A fresh run without --checkpoint-every rewrites source_params and
  run_settings.json; the earlier run's checkpoints must go too, or a later
  --resume with the new options would continue them."""
  out = tmp_path / "out"
  assert cli.main([*FAST, "--out", str(out)]) == 0
  assert any((out / "checkpoints" / "constant").iterdir())
  capsys.readouterr()
  # Something of the user's in the folder: never touched.
  mine = out / "checkpoints" / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("keep")
  at = FAST.index("--checkpoint-every")
  fresh = FAST[:at] + FAST[at + 2:]
  assert cli.main([*fresh, "--out", str(out), "--source-epochs", "2"]) == 0
  assert ("removing the earlier run checkpoints of constant"
          in capsys.readouterr().err)
  assert not (out / "checkpoints" / "constant").exists()
  assert (mine / "notes.txt").read_text() == "keep"
