"""Checkpoints of whole runs, so an interrupted fit resumes bit-identically.

A run checkpoint holds everything the rest of the run depends on: the
:class:`~lrtransfer._src.train.FitCarry` (parameters, the full optimizer
state -- momentum, strategy scale, best metric, patience and cooldown
counters, transfer-tool state --, the number of epochs done and the last
validation loss) and the history so far. The data order is not stored: it is
a function of the seed and the epoch, both recorded.

Orbax's ``CheckpointManager`` writes each checkpoint to a temporary directory
and renames it when complete, so a process killed while saving leaves the
previous checkpoint intact; a save is an ``interrupts.deferred`` section (an
interrupt waits for it), and the temporary folders of a killed save are
removed when the folder is opened again. Restoring first compares the stored
description of the run with the one asked for and refuses a mismatch with a
:class:`CheckpointError` that names the folder and the differing fields. The
description holds the recipe's name *and* a fingerprint of its settings
(:func:`recipe_identity`), so a recipe changed under the same name does not
resume the old run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import types
from pathlib import Path
from typing import Any, Collection, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrtransfer._src import interrupts
from lrtransfer._src.checkpoint import CheckpointError

_FORMAT = "lrtransfer.run"
# Orbax writes a checkpoint as "<step>.orbax-checkpoint-tmp-<time>" first.
PARTIAL_CHECKPOINT_GLOB = "*.orbax-checkpoint-tmp*"


def remove_partial_checkpoints(folder: str | Path) -> list[Path]:
  """Deletes the temporary folders of saves that never completed, under
  ``folder`` (recursively); returns them."""
  folder = Path(folder)
  if not folder.is_dir():
    return []
  partial = sorted(p for p in folder.rglob(PARTIAL_CHECKPOINT_GLOB)
                   if p.is_dir())
  for path in partial:
    shutil.rmtree(path, ignore_errors=True)
  return partial


def differing_keys(stored: Mapping[str, Any], current: Mapping[str, Any],
                   added_later: Collection[str] = ()) -> list[str]:
  """Sorted keys whose values differ between a recorded description and the
  one asked for now; a key of ``added_later`` missing from ``stored`` (a
  record older than the key) does not count."""
  return sorted(key for key in set(stored) | set(current)
                if stored.get(key) != current.get(key)
                and not (key in added_later and key not in stored))


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
    remove_partial_checkpoints(self.directory)
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
    with interrupts.deferred():
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
    # Keys added to the description later: a checkpoint written before
    # them does not hold them and is judged on the others (its state tree
    # is still checked when restored).
    different = differing_keys(stored, self.description,
                               added_later={"monitor", "mode",
                                            "restore_best"})
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


def recipe_identity(recipe: Any) -> dict[str, str]:
  """The recipe's name and a fingerprint of every setting, for run identity.

  The fingerprint hashes the recipe's fields; a strategy factory (a function,
  lambda or ``functools.partial``) is described by its name, its bytecode,
  constants and referenced names, its defaults and the values it closes over,
  so ``lambda spe, total: adjust(patience=3)`` and ``... patience=5)`` differ.
  It cannot see a change inside a called library function (e.g. a new
  library default): resume with the same lrtransfer version.
  """
  text = _describe(recipe)
  return {"name": str(getattr(recipe, "name", "")),
          "settings": hashlib.sha256(text.encode()).hexdigest()[:16]}


def _describe(value: Any, depth: int = 0) -> str:
  """A text that changes when ``value``'s settings change (never an address)."""
  if depth > 16:  # a bound for self-referencing objects
    return type(value).__qualname__
  deeper = functools.partial(_describe, depth=depth + 1)
  if value is None or isinstance(value, (bool, int, float, str, bytes)):
    return repr(value)
  if isinstance(value, (np.ndarray, np.generic)):
    return f"array({np.asarray(value).tolist()!r})"
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(map(deeper, value)) + "]"
  if isinstance(value, dict):
    return "{" + ",".join(f"{deeper(k)}:{deeper(v)}" for k, v in
                          sorted(value.items(), key=lambda kv: repr(kv[0])))+"}"
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return type(value).__qualname__ + deeper(
        {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
  if isinstance(value, functools.partial):
    return "partial" + deeper([value.func, value.args, value.keywords])
  if isinstance(value, types.FunctionType):
    cells = []
    for cell in value.__closure__ or ():
      try:
        cells.append(cell.cell_contents)
      except ValueError:  # an empty cell
        cells.append(None)
    return (f"{value.__module__}.{value.__qualname__}" + deeper(
        [value.__code__, value.__defaults__, value.__kwdefaults__, cells]))
  if isinstance(value, types.CodeType):
    return "code" + deeper([value.co_code.hex(), value.co_names,
                            list(value.co_consts)])
  if isinstance(value, (types.BuiltinFunctionType, type, types.ModuleType)):
    return f"{getattr(value, '__module__', '')}.{value.__qualname__}" if (
        hasattr(value, "__qualname__")) else value.__name__
  text = repr(value)
  return type(value).__qualname__ + ("" if " at 0x" in text else text)


def _jsonable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (np.generic,)):
    return value.item()
  return value
