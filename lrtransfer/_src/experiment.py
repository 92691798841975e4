"""One comparison: pretrain the source, fine-tune the target with each recipe.

Data flows one way: task -> source model -> checkpoint -> target models
(from the restored source params) -> one vmapped fit per recipe over seeds ->
per-recipe summaries.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import nnx

from lrtransfer._src import checkpoint
from lrtransfer._src.data import TransferTask
from lrtransfer._src.models import MLP, target_from_source
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.train import fit, fit_many


@dataclasses.dataclass
class MethodResult:
  """One recipe over several seeds.

  Attributes:
    name: the recipe's name.
    test_accuracy: ``[seeds]`` target test accuracy at the end of training.
    history: per-epoch arrays ``[seeds, epochs, ...]`` (see ``EpochLog``).
    seconds: wall time of the vmapped run, compilation excluded.
    compile_seconds: compilation time.
  """
  name: str
  test_accuracy: np.ndarray
  history: dict[str, np.ndarray]
  seconds: float
  compile_seconds: float

  @property
  def best_val_epoch(self) -> int:
    """1-based epoch of the best mean validation accuracy."""
    return int(np.argmax(self.history["val_accuracy"].mean(0))) + 1

  @property
  def final_learning_rate(self) -> float:
    """Mean over seeds of the top level's (the head's) last learning rate."""
    return float(self.history["group_lr"][:, -1, -1].mean())

  def summary(self) -> dict[str, Any]:
    acc = self.test_accuracy
    return {
        "test_accuracy_mean": float(acc.mean()),
        "test_accuracy_std": float(acc.std()),
        "test_accuracy": [float(a) for a in acc],
        "best_val_epoch": self.best_val_epoch,
        "final_learning_rate": self.final_learning_rate,
        "seconds": self.seconds,
        "compile_seconds": self.compile_seconds,
        "history_mean": {k: v.mean(0).tolist()
                         for k, v in self.history.items()},
    }


def pretrain_source(task: TransferTask, *, hidden: Sequence[int] = (256, 128),
                    epochs: int = 20, batch_size: int = 32,
                    learning_rate: float = 0.05, seed: int = 0) -> MLP:
  """Trains an MLP on the task's source split with a constant rate."""
  model = MLP(task.in_features, hidden, task.num_source_classes,
              rngs=nnx.Rngs(seed))
  result = fit(model, Recipe("source", learning_rate), task.source_train,
               task.source_val, epochs=epochs, batch_size=batch_size,
               seed=seed)
  return result.model


def default_transfer_layers(source: MLP) -> int:
  """All hidden layers but the last (at least one).

  Lower layers are general, the last hidden layer is specific to the source
  task (Yosinski et al. 2014). Measured on the four embedded tasks: copying
  one of two hidden layers instead of both raised the best strategy's mean
  test accuracy from 0.716 to 0.757 (``benchmarks/quality.py
  --transfer-layers``).
  """
  return max(1, len(source.config.hidden) - 1)


def target_models(source: MLP, recipe: Recipe, num_classes: int,
                  seeds: Sequence[int], transfer_layers: Optional[int] = None,
                  keep_head: bool = False) -> list[MLP]:
  """One initial target model per seed: from the source, or from scratch.

  ``transfer_layers`` hidden layers are copied (default:
  :func:`default_transfer_layers`; all of them with ``keep_head``, which
  also copies the source head, for tasks with the source's label set).
  """
  if keep_head:
    transfer_layers = len(source.config.hidden)
  elif transfer_layers is None:
    transfer_layers = default_transfer_layers(source)
  if recipe.from_source:
    return [target_from_source(source, num_classes,
                               transfer_layers=transfer_layers,
                               keep_head=keep_head,
                               rngs=nnx.Rngs(1000 + s)) for s in seeds]
  return [MLP(source.config.in_features, source.config.hidden, num_classes,
              source.config.activation, rngs=nnx.Rngs(1000 + s))
          for s in seeds]


def compare(task: TransferTask, recipes: Mapping[str, Recipe], *,
            epochs: int = 50, seeds: Sequence[int] = (0, 1, 2),
            batch_size: int = 32, source_epochs: int = 20,
            hidden: Sequence[int] = (256, 128),
            transfer_layers: Optional[int] = None, keep_head: bool = False,
            source_dir: Optional[Path] = None,
            checkpoint_root: Optional[Path] = None,
            checkpoint_every: Optional[int] = None, resume: bool = False,
            on_method: Optional[Callable[[str], None]] = None
            ) -> dict[str, MethodResult]:
  """Pretrains the source and fine-tunes the target with every recipe.

  Args:
    task: the transfer task.
    recipes: name -> recipe.
    epochs: fine-tuning epochs.
    seeds: one run per seed (head initialisation and data order), vmapped.
    batch_size: minibatch size.
    source_epochs: epochs of source pretraining.
    hidden: hidden widths of the MLP.
    transfer_layers: hidden layers copied from the source (default: all but
      the last, :func:`default_transfer_layers`).
    keep_head: copy every layer and the source head (same label set).
    source_dir: where to save the source checkpoint (orbax); the targets
      are built from the restored parameters. None: skip the round trip.
    checkpoint_root: folder for run checkpoints, one subfolder per recipe.
    checkpoint_every: epochs between run checkpoints.
    resume: reuse the saved source model and continue each recipe's run
      from its latest checkpoint (finished recipes are restored, not rerun).
      Without it, old run checkpoints under ``checkpoint_root`` are removed.
    on_method: called with each recipe's name once it is done (progress).

  Returns:
    name -> :class:`MethodResult`.
  """
  if resume and source_dir is not None and Path(source_dir).exists():
    source = checkpoint.load_source_model(Path(source_dir).absolute())
  else:
    source = pretrain_source(task, hidden=hidden, epochs=source_epochs,
                             batch_size=batch_size)
    if source_dir is not None:
      checkpoint.save_params(Path(source_dir).absolute(), source,
                             overwrite=True)
      source = checkpoint.load_source_model(Path(source_dir).absolute())
  source_params = nnx.as_pure(nnx.state(source, nnx.Param))
  results = {}
  for name, recipe in recipes.items():
    models = target_models(source, recipe, task.num_target_classes, seeds,
                           transfer_layers, keep_head)
    run_dir = None
    if checkpoint_root is not None:
      run_dir = Path(checkpoint_root).absolute() / name
      if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    sweep = fit_many(models, recipe, task.target_train, task.target_val,
                     seeds=list(seeds), epochs=epochs, batch_size=batch_size,
                     source_params=source_params, test=task.target_test,
                     checkpoint_dir=run_dir,
                     checkpoint_every=checkpoint_every, resume=resume)
    results[name] = MethodResult(name, sweep.test_accuracy, sweep.history,
                                 sweep.seconds, sweep.compile_seconds)
    if on_method is not None:
      on_method(name)
  return results


def device_description() -> dict[str, str]:
  """Which device the run used, for reports."""
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": str(jax.device_count()),
          "jax_version": jax.__version__}
