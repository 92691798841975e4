"""``lrtransfer run --resume`` refuses options that change what it continues.

A new-user trial (session 6) resumed with another --standardize,
--transfer-layers or --source-epochs: the run checkpoints (which check
sizes, recipes and rates) accepted it, continued the old run and recorded
the new option in results.json.
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
