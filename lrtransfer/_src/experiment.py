"""One comparison: pretrain the source, fine-tune the target with each recipe.

Data flows one way: task -> source model -> checkpoint -> target models
(from the restored source params) -> one vmapped fit per recipe over seeds ->
per-recipe summaries.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import nnx

from lrtransfer._src import checkpoint, factory_checks, interrupts, sizes
from lrtransfer._src.cnn import CNN
from lrtransfer._src.data import TransferTask
from lrtransfer._src.experiment_config import MODELS as MODELS
from lrtransfer._src.experiment_config import CompareConfig as CompareConfig
from lrtransfer._src.models import MLP, _rebuild, target_from_source
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.train import fit, fit_many
from lrtransfer._src.train.runner import expect_large_batches
from lrtransfer._src.transfer.depths import layer_depths


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
  def diverged(self) -> np.ndarray:
    """``[seeds]`` bool: a training or validation loss became NaN or inf.

    A diverged run's parameters are not finite; its test accuracy (that of
    a constant prediction) means nothing and is reported as None.
    """
    bad = np.zeros(len(self.test_accuracy), bool)
    for name in ("train_loss", "val_loss"):
      losses = self.history[name].reshape(len(bad), -1)
      bad |= ~np.isfinite(losses).all(1)
    return bad

  @property
  def best_val_epoch(self) -> Optional[int]:
    """1-based epoch of the best mean validation accuracy of the runs that
    did not diverge (None if all did)."""
    kept = self.history["val_accuracy"][~self.diverged]
    if not len(kept):
      return None
    return int(np.argmax(kept.mean(0))) + 1

  @property
  def final_learning_rate(self) -> float:
    """Mean over seeds of the top level's (the head's) last learning rate."""
    return float(self.history["group_lr"][:, -1, -1].mean())

  def summary(self) -> dict[str, Any]:
    """JSON-able figures; a diverged run's accuracy is None, and the mean
    and std are over the other runs (None if every run diverged)."""
    diverged = self.diverged
    kept = self.test_accuracy[~diverged]
    return {
        "diverged": bool(diverged.any()),
        "diverged_runs": int(diverged.sum()),
        "test_accuracy_mean": float(kept.mean()) if len(kept) else None,
        "test_accuracy_std": float(kept.std()) if len(kept) else None,
        "test_accuracy": [None if d else float(a)
                          for a, d in zip(self.test_accuracy, diverged)],
        "best_val_epoch": self.best_val_epoch,
        "final_learning_rate": self.final_learning_rate,
        "seconds": self.seconds,
        "compile_seconds": self.compile_seconds,
        # Non-finite values (a diverged run) stay NaN here; report.write_json
        # writes them as null.
        "history_mean": {k: v.mean(0).tolist()
                         for k, v in self.history.items()},
    }


def image_shape(task: TransferTask) -> tuple[int, int, int]:
  """``(height, width, channels)`` of the task's inputs, for the CNN.

  Images ``[n, h, w, c]`` / ``[n, h, w]`` as they are; flat inputs of a
  square size (the 8x8 and 28x28 digits) as one square channel.

  Raises:
    ValueError: the inputs are not images of at least 4x4 pixels (the CNN
      pools twice), e.g. tabular features.
  """
  shape = task.source_train.feature_shape
  if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
    shape = (math.isqrt(shape[0]),) * 2
  if len(shape) not in (2, 3) or min(shape[:2]) < 4:
    raise ValueError(
        f"the CNN takes images: task {task.name!r} has inputs of shape "
        f"{shape}, neither [height, width(, channels)] nor a square number "
        "of pixels, at least 4x4")
  return (*shape, 1)[:3]


def new_source_model(model: str, task: TransferTask,
                     hidden: Sequence[int] = (256, 128), seed: int = 0):
  """A fresh source model: an `MLP` of widths ``hidden``, or the default
  `lrtransfer.models.CNN` on the task's images (``hidden`` unused)."""
  if model == "mlp":
    return MLP(task.in_features, hidden, task.num_source_classes,
               rngs=nnx.Rngs(seed))
  if model == "cnn":
    return CNN(image_shape(task), num_outputs=task.num_source_classes,
               rngs=nnx.Rngs(seed))
  raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def pretrain_source(task: TransferTask, *, hidden: Sequence[int] = (256, 128),
                    epochs: int = 20, batch_size: int = 32,
                    learning_rate: float = 0.05, seed: int = 0,
                    model: str = "mlp") -> MLP | CNN:
  """Trains a fresh source model on the task's source split at a constant rate.

  The model :func:`compare` starts from: ``lrtransfer.train.fit`` with a
  recipe of ``learning_rate`` alone (SGD with momentum, no strategy), judged
  on ``task.source_val``; the returned model is the one of the last epoch.

  Args:
    task: the transfer task; its ``source_train`` and ``source_val`` splits
      are used, its target splits are not.
    hidden: hidden widths of the MLP (unused for ``model="cnn"``).
    epochs: training epochs on the source split.
    batch_size: minibatch size.
    learning_rate: the constant base rate of SGD with momentum.
    seed: initialisation and data-order seed.
    model: ``"mlp"`` (an :class:`lrtransfer.models.MLP` of widths
      ``hidden``) or ``"cnn"`` (the default :class:`lrtransfer.models.CNN`
      on the task's images).

  Returns:
    The trained source model, an ``MLP`` or a ``CNN`` with
    ``task.num_source_classes`` outputs.

  Raises:
    ValueError: an unknown ``model``, or ``"cnn"`` on inputs that are not
      images.

  Example::

    source = pretrain_source(lrtransfer.data.get_task("digits_label_split"))
  """
  model = new_source_model(model, task, hidden, seed)
  result = fit(model, Recipe("source", learning_rate), task.source_train,
               task.source_val, epochs=epochs, batch_size=batch_size,
               seed=seed)
  return result.model


def target_models(source: MLP | CNN, recipe: Recipe, num_classes: int,
                  seeds: Sequence[int], transfer_layers: Optional[int] = None,
                  keep_head: bool = False) -> list[MLP | CNN]:
  """One initial target model per seed, as :func:`compare` fine-tunes them.

  Public so that a caller running its own loop (``lrtransfer.train.fit_many``
  on these models) starts from exactly what ``compare`` would have: the
  same copied layers and the same freshly initialised parts.

  Args:
    source: the trained source `MLP` or `CNN`.
    recipe: decides between transfer and baseline: ``recipe.from_source``
      builds from the source, otherwise a fresh model of the source's
      config (training from scratch).
    num_classes: the target's number of classes (the new head's width).
    seeds: one model per seed; seed ``s`` initialises the new parts with
      ``nnx.Rngs(1000 + s)``, away from the seeds a source is usually
      trained with, so a target head is not a copy of the source's.
    transfer_layers: hidden layers copied from the source; None: the rule
      of :func:`lrtransfer.models.target_from_source`
      (:func:`lrtransfer.models.default_transfer_layers`, all of them with
      ``keep_head``), so both documented paths copy the same layers.
    keep_head: copy every layer and the source head (same label set).

  Returns:
    ``len(seeds)`` independent models.
  """
  if recipe.from_source:
    return [target_from_source(source, num_classes,
                               transfer_layers=transfer_layers,
                               keep_head=keep_head,
                               rngs=nnx.Rngs(1000 + s)) for s in seeds]
  return [_rebuild(source, num_classes, nnx.Rngs(1000 + s)) for s in seeds]


def check_sizes(task: TransferTask, *, seeds: int, epochs: int,
                batch_size: int, hidden: Sequence[int] = (256, 128),
                model: str = "mlp", source: Optional[MLP | CNN] = None
                ) -> None:
  """Refuses a comparison that cannot fit in memory or in int32 counters.

  :func:`compare` checks before anything is built: ``seeds`` target models
  (vmapped on the device), a history of ``epochs`` x ``seeds`` (on the
  host), and the step counter (int32). The targets are counted as
  :func:`target_models` builds them, abstractly (``nnx.eval_shape``, no
  memory): from ``source``'s own config when given (a CNN of any channels
  and widths), else from the source ``model`` and ``hidden`` would make.

  Args:
    task: the transfer task (its target training split sets the steps per
      epoch, its classes the head).
    seeds: the number of runs trained at once.
    epochs: fine-tuning epochs.
    batch_size: minibatch size.
    hidden: hidden widths of the source MLP (when ``source`` is None).
    model: the source architecture, ``"mlp"`` or ``"cnn"`` (when
      ``source`` is None).
    source: the trained source model, if there is one already.

  Raises:
    SizeError: naming the setting that does not fit and what to lower.
  """
  if source is None:
    source = nnx.eval_shape(lambda: new_source_model(model, task, hidden))
  target = nnx.eval_shape(
      lambda: _rebuild(source, task.num_target_classes, nnx.Rngs(0)))
  num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(
      nnx.state(target, nnx.Param)))
  levels = len(set(jax.tree.leaves(layer_depths(target))))
  steps = math.ceil(len(task.target_train) / batch_size) * epochs
  if steps > np.iinfo(np.int32).max:
    raise sizes.SizeError(
        f"epochs={epochs} x {steps // epochs} steps per epoch = {steps}"
        " steps, beyond the int32 step counters; ask for fewer epochs")
  sizes.check_fits(f"seeds={seeds} runs of a {num_params}-parameter model",
                   sizes.sweep_bytes(seeds, num_params), on="device")
  # train_loss, val_loss, val_accuracy, scale and one rate per level.
  sizes.check_fits(f"a history of epochs={epochs} x seeds={seeds}",
                   sizes.history_bytes(epochs, seeds, 4 + levels))


def progress_chunk(epochs: int) -> int:
  """Epochs per compiled call when only progress is reported: about a tenth.

  A divisor of ``epochs`` when there is one near a tenth, so every call has
  the same length and compiles once.
  """
  target = max(1, epochs // 10)
  for length in range(target, max(1, target // 2) - 1, -1):
    if epochs % length == 0:
      return length
  return target


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _run_folder(root: Path, name: str) -> Path:
  if not _SAFE_NAME.fullmatch(name):
    raise checkpoint.CheckpointError(
        f"recipe name {name!r} cannot name a checkpoint folder under {root};"
        " use letters, digits, '.', '_' and '-'")
  return root / name


def is_run_checkpoint_folder(folder: Path) -> bool:
  """Only step folders ("12") and orbax's temporary ones: safe to delete."""
  return all(p.is_dir() and (p.name.isdigit() or ".orbax-checkpoint-tmp"
                             in p.name) for p in folder.iterdir())


def _check_recipes(recipes: Any) -> None:
  """A clear error for what a CLI user passes by habit (a list of recipes,
  a recipe function not called, a bare transformation)."""
  if not isinstance(recipes, Mapping):
    raise ValueError("recipes must be a dict of name -> "
                     "lrtransfer.recipes.Recipe (e.g. "
                     f"default_recipes()), got {type(recipes).__name__}")
  for name, recipe in recipes.items():
    if not isinstance(recipe, Recipe):
      raise factory_checks.recipe_type_error(recipe, f"recipes[{name!r}]")


def compare(task: TransferTask, recipes: Mapping[str, Recipe],
            config: Optional[CompareConfig] = None, *,
            source: Optional[MLP | CNN] = None,
            on_method: Optional[Callable[[str], None]] = None,
            on_epochs: Optional[Callable[[int], None]] = None
            ) -> dict[str, MethodResult]:
  """Pretrains the source and fine-tunes the target with every recipe.

  For each recipe, :func:`target_models` builds one target per seed (from
  the source, or from scratch) and :func:`lrtransfer.train.fit_many` trains
  them as one vmapped program, scored on the task's test split.

  Args:
    task: the transfer task.
    recipes: name -> recipe; the name labels the results (a Recipe's own
      ``name`` is not read here).
    config: the settings (:class:`CompareConfig`); default
      ``CompareConfig()``.
    source: an already trained source `MLP` or `CNN` (on ``task``'s
      inputs): no pretraining; ``config.source_dir``, ``hidden`` and
      ``model`` unused.
    on_method: called with each recipe's name once it is done (progress).
    on_epochs: called with a number of epochs after each compiled chunk of
      a recipe's run (progress within a method; chunks of about a tenth of
      the run when ``checkpoint_every`` is not set).

  Returns:
    name -> :class:`MethodResult`.

  Raises:
    ValueError: ``recipes`` not a dict of Recipes, ``config`` not a
      :class:`CompareConfig`.
    SizeError: the runs cannot fit in memory (checked before training).
    CheckpointError: earlier run checkpoints exist and neither ``resume``
      nor ``replace_checkpoints`` is set, or a folder there is not a run
      checkpoint.

  Example::

    results = compare(task, {"adjust": recipes["adjust"]},
                      CompareConfig(epochs=20, seeds=range(3)))
    print(results["adjust"].summary()["test_accuracy_mean"])
  """
  _check_recipes(recipes)
  if config is None:
    config = CompareConfig()
  if not isinstance(config, CompareConfig):
    raise ValueError("config must be a lrtransfer.experiment.CompareConfig "
                     f"(e.g. CompareConfig(epochs=20)), got "
                     f"{type(config).__name__}")
  seeds, model = config.seeds, config.model
  if source is not None:
    model = checkpoint.model_type(source)
    if model is None:
      raise TypeError(f"source must be an lrtransfer MLP or CNN, got "
                      f"{type(source).__name__}")
    if _input_size(source) != task.in_features:
      raise ValueError(f"source takes {_input_size(source)} features, the "
                       f"task has {task.in_features}")
  check_sizes(task, seeds=len(seeds), epochs=config.epochs,
              batch_size=config.batch_size, hidden=config.hidden,
              model=model, source=source)
  run_dirs = {}
  if config.checkpoint_root is not None:
    root = Path(config.checkpoint_root).absolute()
    for name in recipes:
      run_dirs[name] = folder = _run_folder(root, name)
      if config.resume or not folder.exists():
        continue
      if not config.replace_checkpoints:
        raise checkpoint.CheckpointError(
            f"{folder} holds run checkpoints of an earlier run; pass "
            "resume=True to continue it or replace_checkpoints=True to "
            "delete them")
      if not is_run_checkpoint_folder(folder):
        raise checkpoint.CheckpointError(
            f"{folder} holds files that are not run checkpoints; not "
            "deleting it, choose another checkpoint_root")
  if source is None:
    source = _source_model(task, config.hidden, config.source_epochs,
                           config.batch_size, config.source_dir,
                           config.resume, model)
  source_params = nnx.as_pure(nnx.state(source, nnx.Param))
  chunk = config.checkpoint_every
  if chunk is None and on_epochs is not None:
    chunk = progress_chunk(config.epochs)
  results = {}
  for name, recipe in recipes.items():
    models = target_models(source, recipe, task.num_target_classes, seeds,
                           config.transfer_layers, config.keep_head)
    run_dir = run_dirs.get(name)
    if run_dir is not None and not config.resume and run_dir.exists():
      with interrupts.deferred():  # never half a checkpoint folder
        shutil.rmtree(run_dir)  # replace_checkpoints, checked above
    # One batch size for every task (the CLI's --batch-size, default 32).
    with expect_large_batches():
      sweep = fit_many(models, recipe, task.target_train, task.target_val,
                       seeds=list(seeds), epochs=config.epochs,
                       batch_size=config.batch_size,
                       source_params=source_params, test=task.target_test,
                       checkpoint_dir=run_dir, checkpoint_every=chunk,
                       resume=config.resume, on_chunk=on_epochs)
    results[name] = MethodResult(name, sweep.test_accuracy, sweep.history,
                                 sweep.seconds, sweep.compile_seconds)
    if on_method is not None:
      on_method(name)
  return results


def _input_size(source) -> int:
  config = source.config
  return getattr(config, "in_features", None) or math.prod(
      config.image_shape)


def _source_model(task, hidden, epochs, batch_size, source_dir, resume,
                  model):
  """Pretrains (or, resuming, reloads) the source; round trip via orbax."""
  if resume and source_dir is not None and Path(source_dir).exists():
    source = checkpoint.load_source_model(Path(source_dir).absolute())
    saved = (checkpoint.model_type(source), _input_size(source),
             source.config.num_outputs)
    if saved != (model, task.in_features, task.num_source_classes):
      raise checkpoint.CheckpointError(
          f"{source_dir} holds a source model for {saved[1]} features and "
          f"{saved[2]} classes ({saved[0]}), this run asks for "
          f"{task.in_features} and {task.num_source_classes} ({model}); "
          "resume with the same data and --model or use another output "
          "folder")
    return source
  source = pretrain_source(task, hidden=hidden, epochs=epochs,
                           batch_size=batch_size, model=model)
  if source_dir is None:
    return source
  checkpoint.save_params(Path(source_dir).absolute(), source, overwrite=True)
  return checkpoint.load_source_model(Path(source_dir).absolute())


def device_description() -> dict[str, str]:
  """Which device the run used, for reports."""
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": str(jax.device_count()),
          "jax_version": jax.__version__}
