"""Population benchmark: base rates x copy depths chosen inside one program.

    python benchmarks/population.py --set tuning|report [--quick] [--out FILE]
        [--tasks ...] [--seeds N] [--strategies constant adjust] [--reuse]

For every task of ``suite.py`` (the tuning or the report set, with its seeds
and task seeds, the same epochs, batch size and source training as
``quality.py``), every member of the population -- base rates
``RATES`` x copy depths (0 = from scratch, all body levels but the last,
all body levels, all of them plus the source head where the source and
target output sizes match) -- runs to the end for every seed, all members x
seeds as ONE vmapped ``lrtransfer.train.fit_many`` program per strategy
(``constant``: SGD-momentum at the member's rate; ``adjust``: the
recommended recipe's strategy on top). Every member's per-epoch validation
curves are recorded (``*_curves.npz`` beside the JSON) and the population
schedules are replayed on them (``population_sim.py``): the full
population, and successive halving, which only stops members early, so its
result is a function of the curves (exact up to float reassociation).

* Tuning set (no test split is ever evaluated): the validation split is cut
  in two fixed halves; a schedule chooses its member on one half and is
  scored by the other half's accuracy at the chosen evaluation, and the
  other way round (2-fold). Choosing and scoring on the same examples
  would favour whichever schedule looks at more candidates (the winner's
  curse). ``population_analysis.tuning_picks`` makes every choice from
  these scores.
* Report set: the test accuracy of each member at every epoch is recorded
  too, read only at the evaluation a schedule chose on the full validation
  split. The reference a population aims at is, per task, the better of the
  scratch grid and the fine-tuning grid over (rate, copy depth), each cell
  picked by mean validation accuracy over seeds, its test mean reported;
  computed with the final epoch's accuracies (as ``quality.py``'s grids)
  and with each run's best validation epoch.

Also recorded: member-epochs relative to one run, and the wall time of the
population program against a single member's program (same seeds, same
process, interleaved) on whatever device ran it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

import _common
import lrtransfer
import population_analysis
import population_tables
import suite
from lrtransfer._src.train.program import accuracy, cross_entropy
from lrtransfer._src.train.runner import expect_large_batches
from lrtransfer.recipes import Recipe

RATES = (0.003, 0.01, 0.03, 0.1, 0.3)
STRATEGIES = ("constant", "adjust")
HALF_SPLIT_SEED = 12345  # the fixed cut of each validation split in two
QUICK_TASK = {"tuning": "wine_shift", "report": "breast_cancer_shift"}


@dataclasses.dataclass(frozen=True)
class Member:
  """One candidate of the population."""
  rate: float
  depth: int  # levels copied from the source (0: from scratch)
  keep_head: bool  # the source head copied too

  @property
  def label(self) -> str:
    return f"lr={self.rate:g} depth={self.depth}" + (
        "+head" if self.keep_head else "")


def depth_variants(prepared: _common.Prepared) -> list[tuple[int, bool]]:
  """(copy depth, keep_head) candidates from the model's depth levels."""
  classes = prepared.task.num_target_classes
  target = lrtransfer.models.target_from_source(
      prepared.source, classes, transfer_layers=0, rngs=nnx.Rngs(0))
  import jax
  levels = max(jax.tree.leaves(lrtransfer.layer_depths(target)))  # the head
  variants = [(0, False)]
  variants += [(d, False) for d in sorted({max(1, levels - 1), levels})]
  if prepared.task.num_source_classes == classes:
    variants.append((levels, True))
  return variants


def members_of(prepared: _common.Prepared, rates: Sequence[float]
               ) -> list[Member]:
  return [Member(float(r), d, h) for d, h in depth_variants(prepared)
          for r in rates]


# Seed s initialises the fresh parts with nnx.Rngs(INIT_OFFSET + s), as
# quality.py's targets and fit_auto(seeds=s)'s members.
INIT_OFFSET = 1000


def initial_models(prepared: _common.Prepared, member: Member,
                   seeds: Sequence[int], offset: int = INIT_OFFSET) -> list:
  """Seed ``s`` initialises the fresh parts with ``nnx.Rngs(offset + s)``
  (scratch: nothing copied)."""
  return [lrtransfer.models.target_from_source(
      prepared.source, prepared.task.num_target_classes,
      transfer_layers=member.depth, keep_head=member.keep_head,
      rngs=nnx.Rngs(offset + s)) for s in seeds]


def halves(num_val: int) -> tuple[np.ndarray, np.ndarray]:
  order = np.random.default_rng(HALF_SPLIT_SEED).permutation(num_val)
  return np.sort(order[:num_val // 2]), np.sort(order[num_val // 2:])


def curve_metrics(task, with_test: bool) -> dict:
  """Per-epoch metrics: accuracy and loss on each validation half, and on
  the report set the test accuracy (read only where validation chose)."""
  val = task.target_val
  a, b = halves(len(val))
  arrays = {"a": (jnp.asarray(val.x[a]), jnp.asarray(val.y[a])),
            "b": (jnp.asarray(val.x[b]), jnp.asarray(val.y[b]))}
  if with_test:
    arrays["test"] = (jnp.asarray(task.target_test.x),
                      jnp.asarray(task.target_test.y))
  metrics = {"accuracy": accuracy}
  for name, (x, y) in arrays.items():
    metrics[f"accuracy_{name}"] = (
        lambda model, _x, _y, x=x, y=y: accuracy(model, x, y))
    if name != "test":
      metrics[f"loss_{name}"] = (
          lambda model, _x, _y, x=x, y=y: cross_entropy(model(x), y))
  return metrics


CURVES = ("val_loss", "val_accuracy", "val_loss_a", "val_accuracy_a",
          "val_loss_b", "val_accuracy_b", "train_loss")


def recipe_of(strategy: str) -> Recipe:
  if strategy == "constant":
    return Recipe("constant", 0.01)
  if strategy == "adjust":
    return lrtransfer.recipes.recommended_recipe()
  raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")


def run_population(prepared, members: Sequence[Member], recipe: Recipe,
                   seeds: Sequence[int], *, epochs: int, with_test: bool,
                   offset: int = INIT_OFFSET) -> dict[str, Any]:
  """All members x seeds in one fit_many: curves ``[member, seed, epoch]``."""
  task = prepared.task
  models, run_seeds, rates = [], [], []
  for member in members:
    models += initial_models(prepared, member, seeds, offset)
    run_seeds += list(seeds)
    rates += [member.rate] * len(seeds)
  with expect_large_batches():  # batch 32 on every task, few-shot included
    sweep = lrtransfer.train.fit_many(
        models, recipe, task.target_train, task.target_val, seeds=run_seeds,
        learning_rates=rates, epochs=epochs, batch_size=_common.BATCH_SIZE,
        source_params=prepared.source_params,
        test=task.target_test if with_test else None,
        metrics=curve_metrics(task, with_test), monitor="val_accuracy",
        mode="max", restore_best=with_test)
  shape = (len(members), len(seeds), epochs)
  names = CURVES + (("val_accuracy_test",) if with_test else ())
  curves = {name: np.asarray(sweep.history[name], np.float32).reshape(shape)
            for name in names}
  if with_test:
    # The recorded test curve at each run's best validation epoch is what
    # restore_best evaluates: a check that the replay reads the right epoch.
    best = np.asarray(sweep.best_epoch).reshape(shape[:2]) - 1
    read = np.take_along_axis(curves["val_accuracy_test"], best[..., None],
                              2)[..., 0]
    restored = np.asarray(sweep.best_test_accuracy).reshape(shape[:2])
    assert np.allclose(read, restored, atol=1e-6), "test curve misread"
  return {"curves": curves, "seconds": sweep.seconds,
          "compile_seconds": sweep.compile_seconds}


def single_run_seconds(prepared, member: Member, recipe: Recipe,
                       seeds: Sequence[int], epochs: int, with_test: bool,
                       offset: int) -> float:
  """Run seconds (compile excluded) of ONE member over the same seeds."""
  return run_population(prepared, [member], recipe, seeds, epochs=epochs,
                        with_test=with_test, offset=offset)["seconds"]


def run_task(name: str, *, seeds: Sequence[int], epochs: int,
             source_epochs: int, strategies: Sequence[str], with_test: bool,
             offset: int = INIT_OFFSET, log=print
             ) -> tuple[dict, dict[str, np.ndarray]]:
  prepared = _common.prepare(name, source_epochs=source_epochs)
  members = members_of(prepared, RATES)
  task = prepared.task
  log(f"{name}: {len(members)} members x {len(seeds)} seeds "
      f"({len(task.target_train)} train, {len(task.target_val)} val)")
  meta: dict[str, Any] = {
      "members": [dataclasses.asdict(m) | {"label": m.label}
                  for m in members],
      "seeds": list(seeds), "source_val_accuracy":
          prepared.source_val_accuracy,
      "shared_labels": task.shared_labels, "timing": {}}
  arrays: dict[str, np.ndarray] = {}
  # One member (the library's default copy depth, rate 0.01) for the time
  # of one run; before and after the population (interleaved timing).
  depth = lrtransfer.experiment.default_transfer_layers(prepared.source)
  single = next(m for m in members if m.depth == depth and m.rate == 0.01)
  for strategy in strategies:
    recipe = recipe_of(strategy)
    before = single_run_seconds(prepared, single, recipe, seeds, epochs,
                                with_test, offset)
    result = run_population(prepared, members, recipe, seeds, epochs=epochs,
                            with_test=with_test, offset=offset)
    after = single_run_seconds(prepared, single, recipe, seeds, epochs,
                               with_test, offset)
    one = float(np.median([before, after]))
    meta["timing"][strategy] = {
        "population_seconds": result["seconds"],
        "population_compile_seconds": result["compile_seconds"],
        "single_member_seconds": [before, after],
        "wall_time_ratio": result["seconds"] / one}
    log(f"  {strategy}: {result['seconds']:.1f}s (+ compile "
        f"{result['compile_seconds']:.1f}s), one member {one:.2f}s: "
        f"{result['seconds'] / one:.1f}x one run for {len(members)} members")
    for curve, values in result["curves"].items():
      arrays[f"{name}/{strategy}/{curve}"] = values
  return meta, arrays


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--set", choices=("tuning", "report"), default="tuning")
  parser.add_argument("--quick", action="store_true",
                      help="one small task, 2 seeds, 6 epochs: checks the "
                      "pipeline, the numbers mean little")
  parser.add_argument("--out", type=Path, default=None,
                      help="JSON output; .md and _curves.npz beside it "
                      "(default results/population_<set>.json)")
  parser.add_argument("--tasks", nargs="+", default=None)
  parser.add_argument("--seeds", type=int, default=None,
                      help="first N seeds of each task (default: all)")
  parser.add_argument("--epochs", type=int, default=None)
  parser.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                      default=None, help="default: both on the tuning set, "
                      "constant on the report set")
  parser.add_argument("--init-offset", type=int, default=INIT_OFFSET,
                      help="seed s initialises with nnx.Rngs(offset + s) "
                      "(1000: quality.py's and fit_auto's draws)")
  parser.add_argument("--reuse", action="store_true",
                      help="replay the schedules on the curves of an earlier"
                      " run (its JSON and _curves.npz) without training")
  return parser.parse_args(argv)


def curves_path(out: Path) -> Path:
  return out.with_name(out.stem + "_curves.npz")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  report = args.set == "report"
  out = Path(args.out or _common.RESULTS_DIR / (
      "population_quick.json" if args.quick else f"population_{args.set}.json"))
  if args.reuse:
    result = json.loads(out.read_text())
    with np.load(curves_path(out)) as data:
      arrays = {k: data[k] for k in data.files}
  else:
    split = _common.split_record()
    tasks = args.tasks or ([QUICK_TASK[args.set]] if args.quick
                           else split[args.set])
    epochs = args.epochs or (6 if args.quick else _common.EPOCHS)
    strategies = args.strategies or (["constant"] if report
                                     else list(STRATEGIES))
    result = {"set": args.set, "quick": args.quick,
              "device": _common.device_record(), "epochs": epochs,
              "batch_size": _common.BATCH_SIZE, "rates": list(RATES),
              "strategies": strategies, "split": split,
              "half_split_seed": HALF_SPLIT_SEED,
              "init_offset": args.init_offset, "tasks": {}}
    print(f"population ({args.set} set) on "
          f"{_common.device_line(result['device'])}: {len(tasks)} tasks, "
          f"{epochs} epochs", flush=True)
    arrays = {}
    start = time.perf_counter()
    for name in tasks:
      seeds = (suite.REPORT_SEEDS if report else suite.tuning_seeds(name))
      seeds = list(seeds)[:args.seeds or (2 if args.quick else None)]
      meta, task_arrays = run_task(
          name, seeds=seeds, epochs=epochs,
          source_epochs=3 if args.quick else _common.SOURCE_EPOCHS,
          strategies=strategies, with_test=report, offset=args.init_offset,
          log=lambda line: print(line, flush=True))
      result["tasks"][name] = meta
      arrays.update(task_arrays)
      # Curves after every task: a long run keeps what it has computed.
      out.parent.mkdir(parents=True, exist_ok=True)
      np.savez_compressed(curves_path(out), **arrays)
      _common.write_json(out, result)
    result["seconds"] = time.perf_counter() - start
  analyse = (population_analysis.report_figures if report
             else population_analysis.tuning_picks)
  result["analysis"] = analyse(result, arrays)
  markdown = population_tables.markdown(result)
  _common.write_json(out, result)
  out.with_suffix(".md").write_text(markdown)
  print()
  print(markdown)
  print(f"wrote {out}, {out.with_suffix('.md')}, {curves_path(out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
