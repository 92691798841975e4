"""Tables, plots and JSON of a comparison, written so nothing half-done looks done.

Every file is written to a temporary name in the output folder and renamed
into place (an atomic rename on POSIX), with the permissions a plain ``open``
would give (``0o666 & ~umask``), and ``results.json`` -- the file that says a
run is complete -- is written last. It is strict JSON: a non-finite number
(a diverged run's loss) is written as ``null``, never as bare ``NaN``, and
floats carry float32's 7 significant digits, not the noise of widening.
Plots are drawn on a standalone ``Figure``: writing them neither imports
pyplot nor changes matplotlib's global backend.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lrtransfer._src import interrupts
from lrtransfer._src.experiment import MethodResult


def format_table(results: Mapping[str, MethodResult]) -> str:
  """A plain-text table: one row per method; diverged runs are marked."""
  header = ("method", "test acc (mean ± std)", "best val epoch",
            "final lr", "wall s")
  rows = [header]
  for name, result in results.items():
    rows.append((name, _accuracy_cell(result),
                 str(result.best_val_epoch or "-"),
                 f"{result.final_learning_rate:.3g}",
                 f"{result.seconds:.2f}"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
           for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _accuracy_cell(result: MethodResult) -> str:
  diverged, runs = int(result.diverged.sum()), len(result.diverged)
  if diverged == runs:
    return f"DIVERGED ({runs}/{runs} runs)"
  acc = result.test_accuracy[~result.diverged]
  cell = f"{acc.mean():.3f} ± {acc.std():.3f}"
  return cell + (f" ({diverged}/{runs} DIVERGED)" if diverged else "")


def _file_mode() -> int:
  """What ``open(path, "w")`` would give a new file: 0o666 minus the umask."""
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("Umask:"):
          return 0o666 & ~int(line.split()[1], 8)
  except OSError:
    pass
  umask = os.umask(0o022)  # The only portable way to read it is to set it.
  os.umask(umask)
  return 0o666 & ~umask


def _atomic_write(path: Path, write) -> None:
  """Writes via ``write(tmp_path)`` to a temporary file, then renames.

  An interrupt (see ``interrupts``) waits for the rename, so it never leaves
  the temporary file behind.
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  with interrupts.deferred():
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
      # mkstemp creates 0600 files; results are meant to be shared as usual.
      os.chmod(tmp, _file_mode())
      write(Path(tmp))
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)


def write_plots(results: Mapping[str, MethodResult], out_dir: Path,
                title: str = "") -> list[Path]:
  """Writes the three figures of ``plots`` as PNGs; their paths.

  ``test_accuracy.png`` (every seed's test accuracy per method, sorted),
  ``learning_rate.png`` (the rate of each parameter group per epoch, one
  panel per method) and ``val_accuracy.png`` (validation curves with their
  spread, one panel per method).
  """
  from lrtransfer._src import plots  # matplotlib: only when writing

  written = []
  for filename, draw in (("test_accuracy.png", plots.test_accuracy_figure),
                         ("learning_rate.png", plots.learning_rate_figure),
                         ("val_accuracy.png", plots.validation_figure)):
    fig = draw(results, title)
    path = out_dir / filename
    # A standalone Figure draws with Agg when saved to PNG: no pyplot, no
    # display, and the user's global backend is left alone.
    _atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png"))
    written.append(path)
  return written


# Significant digits of a float in results.json: float32's precision. A
# float32 figure widened to float64 carries digits that are noise
# (0.019999997690320015 for a rate of 0.02); rounding to 7 digits shows
# the value that was computed.
FLOAT_DIGITS = 7


def strict_json(value: Any) -> Any:
  """``value`` as JSON types: every non-finite float (NaN, ±inf) as None,
  every other float rounded to :data:`FLOAT_DIGITS` significant digits,
  NumPy scalars and arrays as Python numbers and lists (integers stay
  integers, booleans booleans)."""
  if isinstance(value, Mapping):
    return {str(k): strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return strict_json(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float):
    if not np.isfinite(value):
      return None
    return float(f"{value:.{FLOAT_DIGITS}g}")
  return value


def write_json(payload: Mapping[str, Any], path: Path) -> None:
  """Writes ``payload`` as indented strict JSON (NaN/inf as null), atomically."""
  text = json.dumps(strict_json(payload), indent=1, allow_nan=False)
  _atomic_write(path, lambda tmp: tmp.write_text(text))
