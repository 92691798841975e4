"""What a resumed ``lrtransfer run`` must share with the run it continues.

The run checkpoints themselves refuse another recipe, rate, epoch count,
batch size or data size. Options that change the data's values, the source
model or how targets are built from it do not change those sizes, so a
resume with another ``--standardize``, ``--transfer-layers`` or
``--source-epochs`` would silently continue the old run and record the new
option. ``OUT/run_settings.json`` keeps them; ``--resume`` compares,
before anything in ``OUT`` is removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lrtransfer._src.cli_options import HIDDEN, UsageError
from lrtransfer._src.run_checkpoint import differing_keys

RUN_SETTINGS = "run_settings.json"


def run_settings(args: Any) -> dict[str, Any]:
  """The options that decide the data, the source and the initial targets."""
  files = {name: str(Path(value).resolve()) for name in (
      "source_data", "target_data", "source_train", "source_val",
      "target_train", "target_val", "target_test")
      if (value := getattr(args, name, None)) is not None}
  return {"task": None if files else args.task, "data_files": files,
          "standardize": args.standardize, "model": args.model,
          "hidden": list(HIDDEN), "source_epochs": args.source_epochs,
          "transfer_layers": args.transfer_layers,
          "keep_head": bool(args.keep_head), "shots": args.shots,
          "seeds": args.seeds}


def check_resume(out: Path, settings: dict[str, Any]) -> None:
  """Refuses a ``--resume`` whose settings differ from those recorded in
  ``out`` (naming each); nothing recorded (a run of an older version):
  nothing to compare."""
  path = out / RUN_SETTINGS
  if not path.exists():
    return
  stored = json.loads(path.read_text())
  different = differing_keys(stored, settings)
  if different:
    changes = "; ".join(f"--{key.replace('_', '-')}: {stored.get(key)!r} "
                        f"there, {settings[key]!r} now" for key in different)
    raise UsageError(
        f"--resume: {out} holds a run with other settings ({changes}); give "
        "the same options to continue it, or drop --resume to start over")


def record(out: Path, settings: dict[str, Any]) -> None:
  """Records ``settings`` for a later ``--resume`` (every fresh run: it
  also writes the source model that a resume reuses)."""
  from lrtransfer._src import report  # matplotlib: not for --help
  report.write_json(settings, out / RUN_SETTINGS)
