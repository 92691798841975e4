"""Checkpoints of whole runs, so an interrupted fit resumes bit-identically.

A run checkpoint holds everything the rest of the run depends on: the
:class:`~lrtransfer._src.train.FitCarry` (parameters, the full optimizer
state -- momentum, strategy scale, best metric, patience and cooldown
counters, transfer-tool state --, the number of epochs done and the last
validation loss) and the history so far. The data order is not stored: it is
a function of the seed and the epoch, both recorded.

Orbax's ``CheckpointManager`` writes each checkpoint to a temporary directory
and renames it when complete, so a process killed while saving leaves the
previous checkpoint intact. Restoring first compares the stored description
of the run with the one asked for and refuses a mismatch with a
:class:`CheckpointError` that names the folder and the differing fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrtransfer._src.checkpoint import CheckpointError

_FORMAT = "lrtransfer.run"


class RunCheckpointer:
  """Saves and restores a run's state every few epochs (keeps the last 2).

  Args:
    directory: the run's checkpoint folder (created if missing).
    description: JSON-able facts that must match to resume (model, recipe,
      data sizes, seeds, epochs, ...).
  """

  def __init__(self, directory: str | Path, description: Mapping[str, Any]):
    self.directory = Path(directory).expanduser().absolute()
    self.description = {k: _jsonable(v) for k, v in description.items()}
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=2, create=True,
            # Synchronous: when save returns, the checkpoint is committed.
            enable_async_checkpointing=False),
        item_names=("state", "meta"))

  def latest_epoch(self) -> Optional[int]:
    """Epochs done at the latest complete checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, epoch: int, state: Any) -> None:
    meta = {"format": _FORMAT, "epoch": int(epoch),
            "description": self.description}
    self._manager.save(int(epoch), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore(self, like: Any) -> tuple[int, Any]:
    """Restores the latest checkpoint into the structure of ``like``.

    Raises:
      CheckpointError: none exists, it describes another run, or it cannot
        be read (corrupt or truncated files).
    """
    epoch = self.latest_epoch()
    where = self.directory / str(epoch)
    if epoch is None:
      raise CheckpointError(f"no run checkpoint in {self.directory}")
    try:
      meta = self._manager.restore(epoch, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # orbax raises many types for bad files
      raise CheckpointError(
          f"{where}: unreadable run checkpoint metadata ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
      raise CheckpointError(f"{where}: not an lrtransfer run checkpoint")
    stored = meta.get("description", {})
    different = sorted(
        key for key in set(stored) | set(self.description)
        if stored.get(key) != self.description.get(key))
    if different:
      details = "; ".join(f"{k}: checkpoint has {stored.get(k)!r}, this run "
                          f"{self.description.get(k)!r}" for k in different)
      raise CheckpointError(
          f"{where} was written by a different run ({details}); use another "
          "checkpoint folder or the same settings")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      state = self._manager.restore(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as error:
      raise CheckpointError(
          f"{where}: cannot restore the run state ({type(error).__name__}: "
          f"{error})") from error
    return epoch, state

  def close(self) -> None:
    self._manager.close()


def _jsonable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (np.generic,)):
    return value.item()
  return value
