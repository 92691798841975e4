"""Checking a run's memory needs before allocating anything.

An absurd size (``epochs=10**12``, 100,000 seeds) must fail at once with an
error that names the setting, not as numpy's ``_ArrayMemoryError`` after a
long wait, or as a machine swapping for minutes while models are built.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class SizeError(ValueError):
  """A requested run would not fit in memory; the message names the setting."""


def _human(nbytes: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
    if nbytes < 1024 or unit == "PiB":
      return f"{nbytes:.3g} {unit}"
    nbytes /= 1024
  raise AssertionError("unreachable")


def host_memory_bytes() -> int:
  """Memory the process can still get: ``MemAvailable`` (Linux), else RAM."""
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    import os
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 2**63 - 1  # Unknown: only the arithmetic overflow checks remain.


def device_memory_bytes() -> int:
  """Free memory of the default accelerator, or host memory on CPU."""
  import jax
  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # Backends without statistics raise various errors.
    stats = {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  return host_memory_bytes()


def check_fits(what: str, nbytes: float, available: Optional[int] = None,
               *, on: str = "host") -> None:
  """Raises :class:`SizeError` when ``nbytes`` exceed the memory available.

  Args:
    what: names the setting responsible, e.g. ``"epochs=10**12 x 3 runs"``.
    nbytes: the bytes the allocation needs (a float: it may be absurd).
    available: bytes available; default: :func:`host_memory_bytes` or, with
      ``on="device"``, :func:`device_memory_bytes`.
    on: ``"host"`` or ``"device"``, where the memory is allocated.
  """
  if available is None:
    available = (device_memory_bytes() if on == "device"
                 else host_memory_bytes())
  if nbytes > available:
    raise SizeError(
        f"{what} needs {_human(nbytes)} of {on} memory, more than the"
        f" {_human(available)} available; ask for less")


def history_bytes(epochs: int, runs: int, per_epoch_values: int) -> float:
  """Bytes of a float32 history ``[runs, epochs, per_epoch_values]``."""
  return float(epochs) * runs * per_epoch_values * np.dtype(np.float32).itemsize


# Parameters, gradients, momentum, one transfer-tool copy (L2-SP's source
# or a mask) and the initial models built before stacking: five float32
# copies of every parameter per run.
COPIES_PER_PARAMETER = 5


def sweep_bytes(runs: int, num_params: int) -> float:
  """Bytes a vmapped sweep of ``runs`` models of ``num_params`` needs."""
  return (float(runs) * num_params * COPIES_PER_PARAMETER
          * np.dtype(np.float32).itemsize)
