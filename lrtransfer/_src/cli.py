"""The ``lrtransfer`` command.

``lrtransfer run`` pretrains a source model, fine-tunes the target with every
strategy, transfer tool and baseline, and writes a table, plots and JSON.
Bad input ends with one line naming the problem and exit status 2, no
traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from lrtransfer._src import data as data_lib

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
  """Bad command-line input, reported without a traceback."""


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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="lrtransfer",
      description="Learning-rate strategies for transfer learning (JAX).")
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser(
      "run", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
      help="pretrain a source model and compare fine-tuning strategies",
      description=(
          "Pretrains an MLP on the source task, saves it with orbax, builds "
          "the target model from the restored source layers, fine-tunes it "
          "with each method (vmapped over seeds), then prints a table and "
          "writes learning_rate.png, val_accuracy.png and results.json to "
          "--out. Without --source-data/--target-data it runs an embedded "
          "task (no download)."))
  run.add_argument("--task", default="digits_label_split",
                   choices=sorted(data_lib.TASKS),
                   help="embedded transfer task")
  run.add_argument("--source-data", type=Path, metavar="FILE",
                   help="source data (.npz with x and y, or .csv with the "
                        "label in the last column); needs --target-data")
  run.add_argument("--target-data", type=Path, metavar="FILE",
                   help="target data, same format and feature count")
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
  run.add_argument("--lr", type=_positive_float, default=0.05,
                   help="base learning rate of SGD-momentum (0.9)")
  run.add_argument("--transfer-layers", type=int, default=None, metavar="N",
                   help="hidden layers copied from the source model "
                        "(default: all but the last; 0: only the input "
                        "standardisation is shared)")
  run.add_argument("--keep-head", action="store_true",
                   help="copy every layer and the source head (only when "
                        "source and target share their label set, e.g. "
                        "--task digits_domain_shift)")
  run.add_argument("--shots", type=_positive_int, default=10,
                   help="target training examples per class (embedded "
                        "tasks)")
  run.add_argument("--out", type=Path, default=Path("lrtransfer-out"),
                   help="output folder")
  run.add_argument("--checkpoint-every", type=_positive_int, default=10,
                   metavar="K",
                   help="save each method's whole run (params, optimizer and "
                        "strategy state, epoch, history) every K epochs "
                        "under OUT/checkpoints")
  run.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the checkpoints "
                        "in --out (same settings required)")
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
  return names


def _load_task(args) -> data_lib.TransferTask:
  if (args.source_data is None) != (args.target_data is None):
    raise UsageError("--source-data and --target-data go together")
  if args.source_data is not None:
    return data_lib.load_user_task(args.source_data, args.target_data)
  return data_lib.get_task(args.task, shots_per_class=args.shots)


def run_command(args) -> int:
  # Imported here so `--help` and input errors answer without loading JAX.
  from lrtransfer._src import experiment, recipes, report

  available = recipes.default_recipes(args.lr)
  if args.list_methods:
    print("\n".join(available))
    return 0
  names = _select_methods(args.methods, list(available))
  out = args.out.absolute()
  if out.exists() and not out.is_dir():
    raise UsageError(f"--out {out} exists and is not a folder")
  stale = out / "results.json"
  if stale.exists():
    stale.unlink()  # a run that fails below must not leave an old "done"
  task = _load_task(args)
  out.mkdir(parents=True, exist_ok=True)

  from tqdm import tqdm
  start = time.perf_counter()
  with tqdm(total=len(names), desc="fine-tuning", unit="method",
            disable=args.no_progress, file=sys.stderr) as bar:
    results = experiment.compare(
        task, {n: available[n] for n in names}, epochs=args.epochs,
        seeds=list(range(args.seeds)), batch_size=args.batch_size,
        source_epochs=args.source_epochs, transfer_layers=args.transfer_layers,
        keep_head=args.keep_head,
        source_dir=out / "source_params",
        checkpoint_root=out / "checkpoints",
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        on_method=lambda name: (bar.set_postfix_str(name), bar.update()))
  elapsed = time.perf_counter() - start
  table = report.format_table(results)
  print(f"task: {task.name} ({task.description})")
  print(table)
  plots = report.write_plots(results, out, title=task.name)
  report.write_json({
      "task": task.name,
      "description": task.description,
      "device": experiment.device_description(),
      "settings": {"epochs": args.epochs, "source_epochs": args.source_epochs,
                   "seeds": args.seeds, "batch_size": args.batch_size,
                   "learning_rate": args.lr, "shots": args.shots,
                   "transfer_layers": args.transfer_layers,
                   "keep_head": args.keep_head,
                   "resumed": args.resume},
      "total_seconds": elapsed,
      "methods": {name: r.summary() for name, r in results.items()},
  }, out / "results.json")
  print(f"wrote {', '.join(p.name for p in plots)}, results.json to {out}")
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return run_command(args)
  except (UsageError, data_lib.DataError, ValueError, OSError) as error:
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:
    print("lrtransfer: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
