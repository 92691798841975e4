"""Shared helpers of the benchmark scripts: device record, JSON, tables, timing.

Not part of the library: the scripts in this folder import it as a sibling
module (``python benchmarks/speed.py`` puts ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
  """The CPU's model name (Linux /proc/cpuinfo), or platform's best guess."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_record() -> dict[str, Any]:
  """What a benchmark ran on: the JAX device plus the host, for the JSON."""
  from lrtransfer._src.experiment import device_description
  record: dict[str, Any] = dict(device_description())
  record.update({
      "host_cpu": cpu_model(),
      "host_cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "os": f"{platform.system()} {platform.release()}",
  })
  try:
    import optax
    record["optax_version"] = optax.__version__
  except ImportError:  # pragma: no cover - optax is a core dependency
    pass
  try:
    import flax
    record["flax_version"] = flax.__version__
  except ImportError:  # pragma: no cover - flax is a core dependency
    pass
  return record


def device_line(device: dict[str, Any]) -> str:
  """One line naming the machine, for tables and plots."""
  return (f"{device.get('platform', '?')} ({device.get('device_kind', '?')}), "
          f"{device.get('host_cpu', '?')}, {device.get('host_cpu_count', '?')}"
          f" cores, jax {device.get('jax_version', '?')}")


def write_json(path: Path, data: Any) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data, indent=2, sort_keys=False, default=float)
                  + "\n")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]
                   ) -> str:
  """A GitHub markdown table; cells are turned into strings as they are."""
  lines = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
  return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """The same table aligned for a terminal."""
  rows = [[str(cell) for cell in row] for row in rows]
  widths = [max([len(h)] + [len(r[i]) for r in rows])
            for i, h in enumerate(headers)]
  fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
  return "\n".join([fmt(headers), fmt(["-" * w for w in widths])]
                   + [fmt(r) for r in rows])


def median(values: Sequence[float]) -> float:
  values = [v for v in values if v is not None and math.isfinite(v)]
  return statistics.median(values) if values else math.nan


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  """Seconds taken by ``fn()`` (which must block until its work is done)."""
  start = time.perf_counter()
  out = fn()
  return time.perf_counter() - start, out


def fmt(value: Any, digits: int = 3) -> str:
  """A number for a table; None (a peer that did not run) shows as '-'."""
  if value is None:
    return "-"
  if isinstance(value, float) and not math.isfinite(value):
    return "nan"
  if isinstance(value, (int,)) and not isinstance(value, bool):
    return str(value)
  return f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
  return {True: "met", False: "MISSED", None: "n/a"}[met]
