"""Tables, plots and JSON of a comparison, written so nothing half-done looks done.

Every file is written to a temporary name in the output folder and renamed
into place (an atomic rename on POSIX), and ``results.json`` -- the file that
says a run is complete -- is written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lrtransfer._src.experiment import MethodResult


def format_table(results: Mapping[str, MethodResult]) -> str:
  """A plain-text table: one row per method."""
  header = ("method", "test acc (mean ± std)", "best val epoch",
            "final lr", "wall s")
  rows = [header]
  for name, result in results.items():
    acc = result.test_accuracy
    rows.append((name, f"{acc.mean():.3f} ± {acc.std():.3f}",
                 str(result.best_val_epoch),
                 f"{result.final_learning_rate:.3g}",
                 f"{result.seconds:.2f}"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
           for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _atomic_write(path: Path, write) -> None:
  """Writes via ``write(tmp_path)`` to a temporary file, then renames."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  os.close(fd)
  try:
    write(Path(tmp))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def write_plots(results: Mapping[str, MethodResult], out_dir: Path,
                title: str = "") -> list[Path]:
  """Learning rate and validation accuracy per epoch, one line per method."""
  import matplotlib
  matplotlib.use("Agg")  # no display; must precede pyplot
  import matplotlib.pyplot as plt

  written = []
  panels = [("learning_rate.png", "effective learning rate (head)",
             lambda r: r.history["group_lr"][:, :, -1].mean(0), True),
            ("val_accuracy.png", "validation accuracy",
             lambda r: r.history["val_accuracy"].mean(0), False)]
  for filename, ylabel, series, log_scale in panels:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, result in results.items():
      values = series(result)
      ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel + " (mean over seeds)")
    if log_scale:
      ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out_dir / filename
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    written.append(path)
  return written


def write_json(payload: Mapping[str, Any], path: Path) -> None:
  """Writes ``payload`` as indented JSON, atomically."""
  _atomic_write(path, lambda tmp: tmp.write_text(
      json.dumps(payload, indent=1)))
