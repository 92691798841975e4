"""The ``auto`` method of ``lrtransfer run``: the tuning-free population fit.

``--methods auto`` (alone or beside the recipes) runs
:func:`lrtransfer.train.fit_auto` on the task -- every candidate base rate x
copy depth, judged on validation, at most 3 runs of compute with the
default successive halving -- prints its member table and writes
``auto_members.png`` (the members' validation curves). ``--lr`` does not
apply: the population chooses the rate. ``all`` means the recipes only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from lrtransfer._src.cli_options import HIDDEN, UsageError
from lrtransfer_cli.options import AUTO as METHOD  # noqa: F401 (re-export)
from lrtransfer_cli.options import split_methods as split_methods


def check_epochs(epochs: int) -> None:
  """Refuses, before any training, ``--epochs`` too short for the default
  population (at most every default rate x depth) within its budget."""
  from lrtransfer._src.train import population
  from lrtransfer._src.train import population_rules as rules
  members = (len(population.DEFAULT_LEARNING_RATES)
             * len(population.DEFAULT_DEPTHS))
  schedule = rules.as_schedule(population.DEFAULT_SCHEDULE)
  if isinstance(schedule, rules.Halving):
    try:
      rules.halving_plan(schedule, members, epochs)
    except ValueError as error:
      raise UsageError(f"--methods auto with --epochs {epochs}: {error}"
                       ) from error


def run_auto(args, task, out: Path, source_saved: bool,
             checkpoint_dir: Optional[Path], resume: bool) -> tuple:
  """Runs ``fit_auto`` on ``task``; prints the table, writes the plot.

  ``source_saved``: the source model is in ``out/source_params`` already
  (the recipes ran first, or a resumed run), else it is pretrained and
  saved there as the recipes would.

  Returns:
    ``(summary, method)``: the JSON summary (``AutoResult.summary``) and
    the chosen members as a ``MethodResult`` (their test accuracy at their
    best evaluation, their curves), so that ``auto`` stands in the
    comparison table and figures beside the recipes.
  """
  from lrtransfer._src import experiment, report_population
  from lrtransfer._src.train.population import fit_auto
  from lrtransfer._src.train.runner import expect_large_batches

  source = experiment._source_model(  # pylint: disable=protected-access
      task, HIDDEN, args.source_epochs, args.batch_size,
      out / "source_params", source_saved, args.model)
  ignored = [flag for flag, value in (
      ("--lr", args.lr), ("--transfer-layers", args.transfer_layers),
      ("--keep-head", args.keep_head or None)) if value is not None]
  print("lrtransfer: auto: training the population (rates x copy depths)"
        + (f"; it ignores {', '.join(ignored)} (set for the other "
           "methods): it chooses among its candidates" if ignored else ""),
        file=sys.stderr)
  with expect_large_batches():
    result = fit_auto(source, task.target_train, task.target_val,
                      num_outputs=task.num_target_classes,
                      epochs=args.epochs, batch_size=args.batch_size,
                      seeds=list(range(args.seeds)), test=task.target_test,
                      checkpoint_dir=checkpoint_dir, resume=resume)
  accuracy = result.test_accuracy
  print(f"auto: test acc {accuracy.mean():.3f} ± {accuracy.std():.3f}, "
        f"{len(result.candidates)} members, {result.compute:.2f} runs of "
        f"compute, {result.seconds:.2f} s; members of seed "
        f"{result.seeds[0]} (chosen by best {result.monitor}):")
  print(result.table())
  report_population.write_member_plot(result, out / "auto_members.png",
                                      title=task.name)
  return result.summary(), chosen_members(result)


def chosen_members(result):
  """The chosen member of each seed's population as a ``MethodResult``."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from lrtransfer._src.experiment import MethodResult
  seeds = np.arange(len(result.seeds))
  chosen = np.asarray(result.chosen)
  return MethodResult(
      METHOD, np.asarray(result.test_accuracy),
      {key: np.asarray(values)[seeds, chosen]
       for key, values in result.history.items()},
      result.seconds, result.compile_seconds)
