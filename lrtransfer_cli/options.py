"""The options of ``lrtransfer run``: the parser and the checks of its input.

Only the standard library is imported here: everything a user can get wrong
on the command line -- a number, a method or task name, a combination of
flags -- is refused before JAX and the training code are loaded, in a
fraction of a second. What needs the data or the models to decide (a
task's shots, a data file, a size that cannot fit) is checked in
``lrtransfer._src.cli_options`` and ``cli_run``, still before any training.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Optional, Sequence

# The methods `lrtransfer run` compares, in the order of its table (the
# recommended recipe first). The names of `recipes.default_recipes()`,
# listed here so that a misspelt name is refused before JAX is imported;
# tests/test_cli_options.py keeps the two in step. A new method: add its
# name here and build it in ``lrtransfer._src.cli_run``.
METHODS = ("recommended", "scratch", "constant", "decay", "reduce_on_plateau",
           "adjust", "dynamic", "layerwise", "gradual_unfreeze", "head_first",
           "l2sp")
# The tuning-free population fit (lrtransfer.train.fit_auto): not a recipe.
AUTO = "auto"

# The embedded tasks, the keys of `lrtransfer.data.TASKS` (kept in step by
# the same test), for the same reason.
TASKS = ("digits_label_split", "digits_domain_shift", "teacher_student_close",
         "teacher_student_far", "digits_label_split_3shot",
         "digits_label_split_5shot", "digits_even_odd_3shot", "digits_blur",
         "digits_low_contrast", "digits_noise", "digits_rotation",
         "digits_occlusion", "digits_inversion", "digits_noise_3shot",
         "digits_noise_5shot", "teacher_student_sim0.0",
         "teacher_student_sim0.6", "breast_cancer_shift", "wine_shift",
         "mnist_label_split", "mnist_to_digits")

# MLP widths of `lrtransfer run` (experiment.compare's default).
HIDDEN = (256, 128)
# Levels below the head: the MLP's hidden layers; the CNN's two conv blocks
# and its dense layer.
LEVELS = {"mlp": len(HIDDEN), "cnn": 3}


class UsageError(ValueError):
  """Bad command-line input, reported without a traceback."""


def did_you_mean(names: Sequence[str], choices: Sequence[str]) -> str:
  """``" (did you mean 'x', 'y'?)"``: the closest of ``choices`` to each of
  ``names`` that has one, or ``""``."""
  close = [match[0] for name in names
           if (match := difflib.get_close_matches(name, choices, n=1))]
  return (f" (did you mean {', '.join(map(repr, close))}?)" if close
          else "")


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


def _task_name(text: str) -> str:
  # argparse's own `choices` lists the names but suggests none.
  if text not in TASKS:
    raise argparse.ArgumentTypeError(
        f"unknown task {text!r}{did_you_mean([text], TASKS)}; choose from "
        f"{', '.join(TASKS)}")
  return text


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
          "writes test_accuracy.png, learning_rate.png, val_accuracy.png "
          "and results.json to "
          "--out. Without data files it runs an embedded task (no "
          "download). Your own data: one file per side, split per class "
          "(seeded, every class in every split) into 80% train / 20% "
          "validation for the source and 60% train / 20% validation / "
          "20% test for the target; or your own splits with "
          "--source-train/--source-val and "
          "--target-train/--target-val/--target-test."))
  run.add_argument("--task", default="digits_label_split", type=_task_name,
                   metavar="NAME",
                   help=f"embedded transfer task: {', '.join(TASKS)}")
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
      "your own data (.npz with x [n, features] and integer labels y [n], "
      "or .csv with the label in the last column; the same features in "
      "every file)")
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
                        f"{len(HIDDEN)} (cnn: levels, 0..{LEVELS['cnn']}: "
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


def select_methods(spec: str, available: Sequence[str] = METHODS
                   ) -> list[str]:
  """The methods ``--methods`` names, in ``available``'s order."""
  if spec.strip() == "all":
    return list(available)
  names = [n.strip() for n in spec.split(",") if n.strip()]
  unknown = [n for n in names if n not in available]
  if unknown or not names:
    listed = ", ".join(unknown) if unknown else repr(spec)
    raise UsageError(f"unknown method(s) {listed}"
                     f"{did_you_mean(unknown, available)}; choose from "
                     f"{', '.join(available)}")
  # The table keeps the library's order: the recommended recipe on top.
  return [n for n in available if n in names]


def split_methods(spec: str, available: Sequence[str] = METHODS
                  ) -> tuple[list[str], bool]:
  """``(recipe names, whether the tuning-free AUTO is asked for)`` of
  ``--methods``; ``all`` means the recipes only (``auto`` is a population
  of many runs, asked for by name)."""
  if spec.strip() == "all":
    return select_methods(spec, available), False
  names = select_methods(spec, [*available, AUTO])
  return [n for n in names if n != AUTO], AUTO in names


def user_files(args: argparse.Namespace):
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


def check_transfer_layers(args: argparse.Namespace) -> None:
  """--transfer-layers within the chosen model's levels below the head."""
  levels = LEVELS[args.model]
  if args.transfer_layers is not None and not (
      0 <= args.transfer_layers <= levels):
    raise UsageError(f"--transfer-layers must be in 0..{levels}"
                     f"{' with --model cnn' if args.model == 'cnn' else ''}, "
                     f"got {args.transfer_layers}")


def check_arguments(args: argparse.Namespace) -> None:
  """Every check that needs nothing but the arguments (see module doc).

  Raises:
    UsageError: the first problem found, with its fix.
  """
  if args.list_methods:
    return  # prints and exits; the other options do not matter
  split_methods(args.methods)
  check_transfer_layers(args)
  if user_files(args) is None and args.standardize is not None:
    raise UsageError("--standardize applies to your own data; embedded "
                     "tasks come standardised")


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  """Parsed and checked arguments (argparse exits 2 on a malformed one)."""
  args = build_parser().parse_args(argv)
  check_arguments(args)
  return args
