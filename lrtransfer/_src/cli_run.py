"""``lrtransfer run`` itself: from checked options to table, plots and JSON.

The order matters to a user: every input check (options, --out writable,
data files, sizes that fit) runs before the first training step, so a
mistake costs seconds, not a pretraining. Once --out is known writable, an
earlier run's ``results.json`` there is removed before data is loaded or
anything trained, so a run that fails later does not look finished. An
interrupt (:class:`Interrupted`, called by the ``interrupts`` watcher)
removes partial checkpoints and says whether ``--resume`` has anything to
continue.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from lrtransfer._src import cli_auto, cli_settings
from lrtransfer._src.cli_options import (
  HIDDEN,
  UsageError,
  check_arguments,
  load_task,
  user_files,
)
from lrtransfer._src.run_checkpoint import remove_partial_checkpoints


def check_writable(out: Path) -> None:
  """Creates --out and writes a probe file there, before any training."""
  if out.exists() and not out.is_dir():
    raise UsageError(f"--out {out} exists and is not a folder")
  try:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out):
      pass
  except OSError as error:
    raise UsageError(f"cannot write to --out {out}: "
                     f"{error.strerror or error}") from error


def has_run_checkpoints(folder: Path) -> bool:
  """Whether a method's folder holds a complete save (orbax names it by its
  step; partial saves carry a temporary suffix)."""
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def remove_stale_checkpoints(checkpoints: Path, methods) -> None:
  """A fresh run rewrites source_params and run_settings.json, so every
  earlier run checkpoint (any method's) continues a source model that is
  gone, and a later --resume must not pick them up as this run's. Only the
  methods' own folders holding nothing but run checkpoints are removed
  (``experiment.compare``'s rule); anything else in ``checkpoints``
  stays."""
  from lrtransfer._src import experiment  # flax, orbax: not for --help
  stale = [checkpoints / name for name in methods
           if (checkpoints / name).is_dir()
           and not (checkpoints / name).is_symlink()
           and experiment.is_run_checkpoint_folder(checkpoints / name)]
  if not stale:
    return
  print(f"lrtransfer: removing the earlier run checkpoints of "
        f"{', '.join(p.name for p in stale)} in {checkpoints}: this fresh "
        "run replaces the source model they continue", file=sys.stderr)
  for folder in stale:
    shutil.rmtree(folder)
  try:
    checkpoints.rmdir()  # only when nothing else is left
  except OSError:
    pass


class Interrupted:
  """What the interrupt watcher needs to know to clean up and explain."""

  def __init__(self):
    self.out: Optional[Path] = None
    self.checkpoints: Optional[Path] = None
    self.progress_bar = False  # a bar line to end before ours
    self.uses_checkpoints = False  # --checkpoint-every or --resume given

  def __call__(self, signum: int) -> None:
    # Runs in the watcher thread, no save in progress; must end the process.
    if self.out is not None:
      remove_partial_checkpoints(self.out)
    if self.checkpoints is not None and any(
        has_run_checkpoints(p) for p in self.checkpoints.glob("*")):
      advice = (f"the last complete run checkpoints are in "
                f"{self.checkpoints}; rerun with --resume to continue")
    elif self.uses_checkpoints:
      advice = ("no run checkpoint was complete yet (the first is written "
                "after --checkpoint-every epochs); rerunning starts over")
    else:
      advice = "no run checkpoints to resume (see --checkpoint-every)"
    try:
      sys.stdout.flush()
      end_bar = "\n" if self.progress_bar else ""
      sys.stderr.write(f"{end_bar}lrtransfer: interrupted by "
                       f"{signal.Signals(signum).name}; {advice}\n")
      sys.stderr.flush()
    finally:
      # Library threads (orbax, XLA) must not print anything afterwards.
      os._exit(128 + signum)


def run_command(args, interrupted: Optional[Interrupted] = None) -> int:
  # Imported here, not at the top: experiment, recipes and report pull in
  # flax, orbax and matplotlib, which `--help` and input errors do not need
  # (JAX itself is loaded by the package's Optax layer either way).
  from lrtransfer._src import experiment, recipe_catalogue, report

  check_arguments(args)  # done by the entry point; again for direct calls
  try:
    available = recipe_catalogue.default_recipes(args.lr)
  except ValueError as error:  # an eager hyperparameter check on --lr
    raise UsageError(f"--lr {args.lr}: {error}") from error
  if args.list_methods:
    print("\n".join([*available, cli_auto.METHOD]))
    return 0
  names, with_auto = cli_auto.split_methods(args.methods, list(available))
  if with_auto:
    cli_auto.check_epochs(args.epochs)
  out = args.out.absolute()
  check_writable(out)
  settings = cli_settings.run_settings(args)
  if args.resume:  # before results.json goes: a refused resume keeps it
    cli_settings.check_resume(out, settings)
  stale = out / "results.json"
  if stale.exists():
    stale.unlink()  # a run that fails below must not leave an old "done"
  remove_partial_checkpoints(out)  # left by a process killed while saving
  checkpoints = out / "checkpoints"
  if interrupted is not None:
    interrupted.out, interrupted.checkpoints = out, checkpoints
    interrupted.progress_bar = not args.no_progress
  files = user_files(args)
  task, shots = load_task(args, files)
  if args.keep_head:
    task.check_keep_head()
  if args.model == "cnn":
    try:
      experiment.image_shape(task)
    except ValueError as error:
      raise UsageError(f"--model cnn: {error}") from error
  # compare checks too, but only once the progress bar is on the screen.
  experiment.check_sizes(task, seeds=args.seeds, epochs=args.epochs,
                         batch_size=args.batch_size, hidden=HIDDEN,
                         model=args.model)
  resume = args.resume
  if resume and not (out / "source_params").exists() and not any(
      has_run_checkpoints(checkpoints / n) for n in names):
    print(f"lrtransfer: nothing to resume in {out}; starting fresh",
          file=sys.stderr)
    resume = False
  if not resume:
    cli_settings.record(out, settings)
  use_checkpoints = args.checkpoint_every is not None or resume
  if interrupted is not None:
    interrupted.uses_checkpoints = use_checkpoints
  if not resume and checkpoints.is_dir():
    remove_stale_checkpoints(checkpoints, [*available, cli_auto.METHOD])

  import jax
  from tqdm import tqdm
  start = time.perf_counter()
  with tqdm(total=len(names) * args.epochs, desc="fine-tuning", unit="epoch",
            disable=args.no_progress, file=sys.stderr) as bar:
    config = experiment.CompareConfig(
        epochs=args.epochs, seeds=range(args.seeds),
        batch_size=args.batch_size, source_epochs=args.source_epochs,
        hidden=HIDDEN, model=args.model,
        transfer_layers=args.transfer_layers, keep_head=args.keep_head,
        source_dir=out / "source_params",
        checkpoint_root=checkpoints if use_checkpoints else None,
        checkpoint_every=args.checkpoint_every, resume=resume,
        replace_checkpoints=True)
    results = {} if not names else experiment.compare(
        task, {n: available[n] for n in names}, config,
        on_method=bar.set_postfix_str, on_epochs=bar.update)
  auto = auto_method = None
  if with_auto:
    auto, auto_method = cli_auto.run_auto(
        args, task, out, bool(names) or resume,
        checkpoints / cli_auto.METHOD if use_checkpoints else None, resume)
  # The table and figures show auto's chosen members beside the recipes.
  compared = {**results, **({cli_auto.METHOD: auto_method}
                            if auto_method is not None else {})}
  elapsed = time.perf_counter() - start
  print(f"task: {task.name} ({task.description})")
  if compared:
    print(report.format_table(compared))
  diverged = [n for n, r in compared.items() if r.diverged.any()]
  if diverged:
    print(f"lrtransfer: warning: diverged (non-finite loss): "
          f"{', '.join(diverged)}; try a smaller --lr"
          + (" or --standardize source (raw inputs on large scales "
             "diverge at any rate)" if args.standardize == "none" else ""),
          file=sys.stderr)
  plots = (report.write_plots(compared, out, title=task.name)
           if compared else [])
  if auto is not None:
    plots.append(out / "auto_members.png")
  report.write_json({
      "task": task.name,
      "description": task.description,
      # device_count as the number it is.
      "device": {**experiment.device_description(),
                 "device_count": jax.device_count()},
      "settings": {"model": args.model,
                   "epochs": args.epochs, "source_epochs": args.source_epochs,
                   "seeds": args.seeds, "batch_size": args.batch_size,
                   "learning_rate": (args.lr if args.lr is not None else {
                       n: available[n].learning_rate for n in names}),
                   # What was used: None = every target training example
                   # (or a task without a shots setting).
                   "shots": shots,
                   "target_train_per_class": np.bincount(
                       task.target_train.y).tolist(),
                   "standardize": (args.standardize or "source"
                                   if files is not None
                                   else "embedded task's own"),
                   "transfer_layers": args.transfer_layers,
                   "keep_head": args.keep_head,
                   "checkpoint_every": args.checkpoint_every,
                   "resumed": resume},
      "total_seconds": elapsed,
      "methods": {**{name: r.summary() for name, r in results.items()},
                  **({cli_auto.METHOD: auto} if auto is not None else {})},
  }, out / "results.json")
  print(f"wrote {', '.join(p.name for p in plots)}, results.json to {out}")
  return 0
