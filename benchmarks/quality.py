"""Quality benchmark: target test accuracy of every method on every task.

    python benchmarks/quality.py [--quick] [--out FILE]

For each embedded transfer task: pretrain the source once, build the target
from it, then fine-tune with each method, all seeds of a method as ONE
vmapped ``lrtransfer.train.fit_many`` program (the seed sets the new head's
initialisation and the data order; the task's few-shot split is fixed by the
task seed). Methods:

* ``scratch`` -- no transfer, the library's default rate;
* ``constant_lr_best_of_grid`` -- fine-tuning at each constant rate of a grid
  (all rates x seeds in one program), the rate picked on the mean final
  *validation* accuracy, reported on *test*;
* ``optax_reduce_on_plateau`` -- ``optax.contrib.reduce_on_plateau`` set up
  correctly (``accumulation_size`` = steps per epoch, so it reacts once per
  epoch; see ``optax_metric.py``), same factor/patience as ours;
* ``range_test_lr`` -- a constant rate at the suggestion of
  ``lrtransfer.lr_range_test`` run on the target training batches;
* ``constant`` and every lrtransfer strategy and transfer tool of
  ``lrtransfer.recipes.default_recipes()`` with its default settings.

Writes JSON (default ``benchmarks/results/quality.json``), a markdown table
(``.md``) and a grouped bar chart (``.png``) beside it, and prints the table
and which targets are met.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

import _common
import optax_metric

# Imported after _common so that a clear message wins over a traceback.
import jax
import jax.numpy as jnp
from flax import nnx

import lrtransfer
from lrtransfer._src.train import cross_entropy

DEFAULT_OUT = _common.RESULTS_DIR / "quality.json"
QUICK_OUT = _common.RESULTS_DIR / "quality_quick.json"
GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
# As default_recipes' reduce_on_plateau.
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 3

# Which entries are lrtransfer's strategies/transfer tools (judged by the
# targets) and which are baselines.
BASELINES = ("scratch", "constant_lr_best_of_grid", "optax_reduce_on_plateau",
             "constant", "range_test_lr", "range_test_lr_valley")
LRTRANSFER = ("decay", "reduce_on_plateau", "adjust", "dynamic", "layerwise",
              "gradual_unfreeze", "head_first", "l2sp")


# ----------------------------------------------------------------------------
# Methods.

def library_recipes(lr: float) -> dict[str, lrtransfer.recipes.Recipe]:
  """lrtransfer's recipes as the library ships them (default settings)."""
  return dict(lrtransfer.recipes.default_recipes(lr))


def optax_plateau_recipe(lr: float) -> lrtransfer.recipes.Recipe:
  return lrtransfer.recipes.Recipe(
      "optax_reduce_on_plateau", lr,
      strategy=lambda spe, total: optax_metric.optax_plateau(
          spe, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE))


def summary(values: np.ndarray) -> dict[str, Any]:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()),
          "n": int(values.size)}


def range_test_lr(task, source, batch_size: int, seed: int = 0,
                  transfer_layers: Optional[int] = None) -> dict:
  """``lr_range_test`` on a from-source target, its target training batches."""
  model = target_from_source_model(source, task, seed, transfer_layers)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.as_pure(params)
  n = len(task.target_train)
  rng = np.random.default_rng(seed)
  order = rng.permutation(n)
  num_batches = max(1, math.ceil(n / batch_size))
  # Same wrap-around batching as the fit loop: full batches only.
  index = order[np.arange(num_batches * batch_size) % n].reshape(
      num_batches, batch_size)
  batches = (jnp.asarray(task.target_train.x[index]),
             jnp.asarray(task.target_train.y[index]))

  def loss_fn(p, batch):
    return cross_entropy(nnx.merge(graphdef, p)(batch[0]), batch[1])

  result = lrtransfer.lr_range_test(loss_fn, params, batches)
  usable = (len(result.losses) if result.stopped_at is None
            else result.stopped_at)
  return {"suggestion": float(result.suggestion),
          "valley": valley(result.learning_rates[:usable],
                           result.smoothed_losses[:usable]),
          "stopped_at": result.stopped_at,
          "steps_run": int(len(result.losses))}


def valley(learning_rates: np.ndarray, smoothed: np.ndarray) -> float:
  """fastai's "valley" rule (its default since 2.4), for comparison.

  The longest decreasing subsequence of the smoothed losses, then the rate
  about two thirds of the way down it -- unlike "steepest", a few noisy
  first steps cannot win it.
  """
  n = len(smoothed)
  if n == 0:
    return math.nan
  run = [1] * n
  start = end = 0
  for i in range(1, n):
    for j in range(i):
      if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
        run[i] = run[j] + 1
    if run[end] < run[i]:
      end = i
      start = end - run[end]
  third = (end - start) / 3
  return float(learning_rates[start + int(third) + int(third / 2)])


def target_from_source_model(source, task, seed, transfer_layers=None):
  if transfer_layers is None:  # as lrtransfer.experiment.compare: all but the last
    transfer_layers = lrtransfer.experiment.default_transfer_layers(source)
  return lrtransfer.models.target_from_source(source, task.num_target_classes,
                                       transfer_layers=transfer_layers,
                                       rngs=nnx.Rngs(1000 + seed))


def build_models(source, recipe, task, seeds, transfer_layers=None):
  """One initial target per seed (as ``lrtransfer.experiment.compare`` builds them)."""
  if recipe.from_source:
    return [target_from_source_model(source, task, s, transfer_layers)
            for s in seeds]
  config = source.config
  return [lrtransfer.models.MLP(config.in_features, config.hidden,
                         task.num_target_classes, config.activation,
                         rngs=nnx.Rngs(1000 + s)) for s in seeds]


def run_recipe(recipe, task, source, source_params, seeds, epochs,
               batch_size, learning_rates: Optional[Sequence[float]] = None,
               transfer_layers: Optional[int] = None
               ) -> lrtransfer.train.SweepResult:
  """Every seed (x every rate) of one recipe as one vmapped program."""
  lrs = list(learning_rates) if learning_rates else [recipe.learning_rate]
  models, run_seeds, run_lrs = [], [], []
  for lr in lrs:
    models += build_models(source, recipe, task, seeds, transfer_layers)
    run_seeds += list(seeds)
    run_lrs += [lr] * len(seeds)
  return lrtransfer.train.fit_many(
      models, recipe, task.target_train, task.target_val, seeds=run_seeds,
      learning_rates=run_lrs, epochs=epochs, batch_size=batch_size,
      source_params=source_params, test=task.target_test)


def run_task(task_name: str, recipes: Mapping[str, lrtransfer.recipes.Recipe], *,
             seeds: Sequence[int], epochs: int, batch_size: int, lr: float,
             grid: Sequence[float], shots: Optional[int], hidden,
             source_epochs: int, baselines: bool = True,
             transfer_layers: Optional[int] = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """All methods on one task. Returns ``{"methods": ..., "details": ...}``."""
  kwargs = {} if shots is None else {"shots_per_class": shots}
  task = lrtransfer.data.get_task(task_name, **kwargs)
  start = time.perf_counter()
  source = lrtransfer.experiment.pretrain_source(task, hidden=hidden,
                                      epochs=source_epochs,
                                      batch_size=batch_size)
  source_params = nnx.as_pure(nnx.state(source, nnx.Param))
  details: dict[str, Any] = {
      "sizes": {"target_train": len(task.target_train),
                "target_val": len(task.target_val),
                "target_test": len(task.target_test),
                "source_train": len(task.source_train)},
      "shots_per_class": (len(task.target_train)
                          // task.num_target_classes),
      "source_val_accuracy": lrtransfer.train.evaluate(source, task.source_val)[1],
      "source_seconds": time.perf_counter() - start,
      "final_learning_rate": {}, "seconds": {}, "compile_seconds": {},
      "val_accuracy": {},
  }
  methods: dict[str, Any] = {}

  def run(recipe, learning_rates=None):
    return run_recipe(recipe, task, source, source_params, seeds, epochs,
                      batch_size, learning_rates=learning_rates,
                      transfer_layers=transfer_layers)

  def record(name, sweep, test=None, val=None):
    test = sweep.test_accuracy if test is None else test
    val = sweep.history["val_accuracy"][:, -1] if val is None else val
    methods[name] = summary(test)
    details["val_accuracy"][name] = float(np.mean(val))
    details["seconds"][name] = sweep.seconds
    details["compile_seconds"][name] = sweep.compile_seconds
    details["final_learning_rate"][name] = float(
        np.mean(sweep.history["group_lr"][:, -1, -1]))
    log(f"  {name:26s} {methods[name]['mean']:.3f} ± "
        f"{methods[name]['std']:.3f}  (val {details['val_accuracy'][name]:.3f},"
        f" {sweep.seconds:.2f}s + compile {sweep.compile_seconds:.1f}s)")

  if baselines:
    scratch = lrtransfer.recipes.Recipe("scratch", lr, from_source=False)
    record("scratch", run(scratch))
    constant = lrtransfer.recipes.Recipe("constant", lr)
    sweep = run(constant, learning_rates=grid)
    shape = (len(grid), len(seeds))
    val = sweep.history["val_accuracy"][:, -1].reshape(shape)
    test = sweep.test_accuracy.reshape(shape)
    best = int(np.argmax(val.mean(1)))
    record("constant_lr_best_of_grid", sweep, test[best], val[best])
    details["final_learning_rate"]["constant_lr_best_of_grid"] = grid[best]
    details["grid"] = {
        "learning_rates": list(grid), "chosen": grid[best],
        "val_mean": val.mean(1).tolist(), "test_mean": test.mean(1).tolist()}
    record("optax_reduce_on_plateau", run(optax_plateau_recipe(lr)))
    suggestion = range_test_lr(task, source, batch_size,
                               transfer_layers=transfer_layers)
    details["range_test"] = suggestion
    suggested = suggestion["suggestion"]
    if math.isfinite(suggested) and suggested > 0:
      record("range_test_lr", run(
          lrtransfer.recipes.Recipe("range_test_lr", suggested)))
    else:
      methods["range_test_lr"] = {"mean": math.nan, "std": math.nan, "n": 0}
    if math.isfinite(suggestion["valley"]):
      record("range_test_lr_valley", run(
          lrtransfer.recipes.Recipe("range_test_lr_valley", suggestion["valley"])))
    log(f"  (grid picked lr={grid[best]}, range test suggests "
        f"lr={suggested:.3g}; fastai's valley rule would say "
        f"{suggestion['valley']:.3g})")
  for name, recipe in recipes.items():
    if name == "scratch":
      continue
    record(name, run(recipe))
  return {"methods": methods, "details": details}


# ----------------------------------------------------------------------------
# Targets, tables, plot.

def _se(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
  return math.sqrt(a["std"] ** 2 / max(a["n"], 1)
                   + b["std"] ** 2 / max(b["n"], 1))


def check_targets(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """The issue's targets, per task.

  * ``best_matches_grid``: some lrtransfer strategy/tool has a mean test
    accuracy >= that of ``constant_lr_best_of_grid`` minus one standard
    error of the difference ("matches or beats").
  * ``all_beat_scratch`` / ``all_beat_optax_plateau``: every lrtransfer
    strategy/tool has a strictly higher mean than the baseline (every task
    here is few-shot).
  """
  out = {}
  for task, methods in tasks.items():
    ours = {m: methods[m] for m in LRTRANSFER if m in methods}
    entry: dict[str, Any] = {}
    if ours and "constant_lr_best_of_grid" in methods:
      grid = methods["constant_lr_best_of_grid"]
      best_name = max(ours, key=lambda m: ours[m]["mean"])
      best = ours[best_name]
      entry["best_lrtransfer"] = best_name
      entry["best_matches_grid"] = bool(
          best["mean"] >= grid["mean"] - _se(best, grid))
    for key, baseline in (("all_beat_scratch", "scratch"),
                          ("all_beat_optax_plateau",
                           "optax_reduce_on_plateau")):
      if ours and baseline in methods:
        losers = [m for m in ours
                  if not ours[m]["mean"] > methods[baseline]["mean"]]
        entry[key] = not losers
        entry[key.replace("all_beat", "losers_to")] = losers
    out[task] = entry
  return out


def method_order(tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
  seen = []
  for methods in tasks.values():
    for m in methods:
      if m not in seen:
        seen.append(m)
  ordered = [m for m in BASELINES + LRTRANSFER if m in seen]
  return ordered + [m for m in seen if m not in ordered]


def tables(result: Mapping[str, Any]) -> tuple[str, str]:
  """(terminal table, markdown) of mean ± std test accuracy."""
  tasks = result["tasks"]
  names = list(tasks)
  headers = ["method"] + names
  rows = []
  for m in method_order(tasks):
    row = [m if m not in LRTRANSFER else f"{m} (lrtransfer)"]
    for t in names:
      s = tasks[t].get(m)
      row.append("-" if s is None or not s["n"] else
                 f"{s['mean']:.3f} ± {s['std']:.3f}")
    rows.append(row)
  extra = []
  for label, key in (("grid-picked lr", ("grid", "chosen")),
                     ("range-test lr", ("range_test", "suggestion")),
                     ("range-test lr, valley rule", ("range_test", "valley"))):
    row = [label]
    for t in names:
      d = result.get("details", {}).get(t, {})
      value = d.get(key[0], {}).get(key[1])
      row.append("-" if value is None else f"{value:.3g}")
    extra.append(row)
  text = _common.text_table(headers, rows + extra)
  targets = result.get("targets", {})
  lines = [
      f"Target test accuracy, mean ± std over {result['seeds']} seeds "
      f"({result['epochs']} epochs, batch {result['batch_size']}, base lr "
      f"{result['learning_rate']}, all seeds of a method in one vmapped "
      "program). lrtransfer methods with the library's default settings; "
      + ("targets copy all hidden layers of the source but the last "
         "(the library default)" if result.get("transfer_layers") is None
         else f"targets copy {result['transfer_layers']} hidden layer(s) of "
         "the source")
      + ".", "",
      f"Machine: {_common.device_line(result['device'])}.", "",
      _common.markdown_table(headers, rows + extra), "",
      "Targets (per task):", ""]
  for t, entry in targets.items():
    lines.append(
        f"* `{t}`: best lrtransfer ({entry.get('best_lrtransfer')}) matches "
        f"the best constant rate of the grid: "
        f"{_common.verdict(entry.get('best_matches_grid'))}; every "
        f"lrtransfer method beats scratch: "
        f"{_common.verdict(entry.get('all_beat_scratch'))}"
        + (f" (not: {', '.join(entry['losers_to_scratch'])})"
           if entry.get("losers_to_scratch") else "")
        + "; beats optax reduce_on_plateau: "
        f"{_common.verdict(entry.get('all_beat_optax_plateau'))}"
        + (f" (not: {', '.join(entry['losers_to_optax_plateau'])})"
           if entry.get("losers_to_optax_plateau") else "") + ".")
  return text, "\n".join(lines) + "\n"


def plot(result: Mapping[str, Any], path: Path) -> None:
  """Grouped bars: one panel per task (its own accuracy range), one bar per
  method, std error bars; baselines hatched. A bar far below the rest is
  cut at the panel's floor and labelled with its value."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  tasks = result["tasks"]
  names = list(tasks)
  methods = method_order(tasks)
  cmap = plt.get_cmap("tab20")
  colors = {m: cmap(i % 20) for i, m in enumerate(methods)}
  cols = min(len(names), 2)
  rows = math.ceil(len(names) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.4 * rows),
                           dpi=110, squeeze=False)
  for ax, task in zip(axes.flat, names):
    stats = [tasks[task].get(m, {"mean": np.nan, "std": 0.0, "n": 0})
             for m in methods]
    means = np.array([s_["mean"] if s_["n"] else np.nan for s_ in stats])
    stds = np.array([s_["std"] if s_["n"] else 0.0 for s_ in stats])
    finite = means[np.isfinite(means)]
    center = np.median(finite)
    typical = finite[finite > center - 0.15]
    floor = max(0.0, typical.min() - 0.04)
    top = min(1.0, (typical + stds[np.isfinite(means)][
        finite > center - 0.15]).max() + 0.015)
    xs = np.arange(len(methods))
    for x, m, mean, std in zip(xs, methods, means, stds):
      if not np.isfinite(mean):
        continue
      ax.bar(x, max(mean, floor) - floor, 0.8, bottom=floor,
             yerr=std if mean >= floor else None, capsize=2,
             color=colors[m], hatch="//" if m in BASELINES else None,
             edgecolor="white", linewidth=0.3, error_kw={"lw": 0.8})
      if mean < floor:
        ax.text(x, floor + 0.002, f"{mean:.2f}", rotation=90, ha="center",
                va="bottom", fontsize=6)
    ax.set_ylim(floor, top)
    ax.set_xticks(xs)
    ax.set_xticklabels(methods, rotation=60, ha="right", fontsize=6.5)
    ax.set_title(task, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel("test accuracy", fontsize=8)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  fig.suptitle(
      f"lrtransfer quality: target test accuracy, mean ± std over "
      f"{result['seeds']} seeds (library defaults; hatched: baselines) "
      f"— {result['device'].get('platform', '?')}", fontsize=9)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)


# ----------------------------------------------------------------------------
# Command line.

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="small run (1 task, 12 epochs) to check the "
                      "pipeline; the numbers mean little")
  parser.add_argument("--out", type=Path, default=None,
                      help="JSON output; .md and .png are written beside it (default "
                      "benchmarks/results/quality.json; with --quick quality"
                      "_quick.json there, so a quick "
                      "run never replaces the published results)")
  parser.add_argument("--tasks", nargs="+", default=None,
                      choices=sorted(lrtransfer.data.TASKS),
                      help="default: all (quick: digits_label_split)")
  parser.add_argument("--seeds", type=int, default=None,
                      help="runs per method (default 20; quick 5)")
  parser.add_argument("--epochs", type=int, default=None,
                      help="fine-tuning epochs (default 50; quick 12)")
  parser.add_argument("--shots", type=int, default=None,
                      help="target shots per class (default: each task's)")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--lr", type=float, default=0.05,
                      help="base learning rate of every non-grid method "
                      "(the library default)")
  parser.add_argument("--transfer-layers", type=int, default=None,
                      help="hidden layers copied from the source (default:"
                      " all but the last, as lrtransfer.experiment.compare)")
  parser.add_argument("--source-epochs", type=int, default=None,
                      help="source pretraining epochs (default 20; quick 5)")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  quick = args.quick
  tasks = args.tasks or (["digits_label_split"] if quick
                         else list(lrtransfer.data.TASKS))
  seeds = list(range(args.seeds or (5 if quick else 20)))
  epochs = args.epochs or (12 if quick else 50)
  source_epochs = args.source_epochs or (5 if quick else 20)
  hidden = (256, 128)
  out = Path(args.out or (QUICK_OUT if quick else DEFAULT_OUT))
  device = _common.device_record()
  print(f"quality benchmark on {_common.device_line(device)}"
        f"{' (quick)' if quick else ''}: {len(seeds)} seeds, {epochs} epochs",
        flush=True)
  check = optax_metric.reacts_once_per_evaluation()
  if not check["ok"]:
    print("warning: optax reduce_on_plateau adapter does not react once per "
          f"evaluation: {check}", file=sys.stderr)
  start = time.perf_counter()
  result: dict[str, Any] = {
      "device": device, "seeds": len(seeds), "quick": quick,
      "epochs": epochs, "batch_size": args.batch_size,
      "learning_rate": args.lr, "grid": list(GRID), "hidden": list(hidden),
      "source_epochs": source_epochs,
      "transfer_layers": args.transfer_layers,
      "recipe_settings": "lrtransfer.recipes.default_recipes(learning_rate)",
      "optax_plateau": {"factor": PLATEAU_FACTOR,
                        "patience": PLATEAU_PATIENCE,
                        "reacts_once_per_epoch": check["ok"]},
      "tasks": {}, "details": {},
  }
  recipes = library_recipes(args.lr)
  for name in tasks:
    print(f"{name}:", flush=True)
    task_result = run_task(
        name, recipes, seeds=seeds, epochs=epochs,
        batch_size=args.batch_size, lr=args.lr, grid=GRID, shots=args.shots,
        hidden=hidden, source_epochs=source_epochs,
        transfer_layers=args.transfer_layers,
        log=lambda line: print(line, flush=True))
    result["tasks"][name] = task_result["methods"]
    result["details"][name] = task_result["details"]
  result["targets"] = check_targets(result["tasks"])
  result["seconds"] = time.perf_counter() - start
  text, markdown = tables(result)
  _common.write_json(out, result)
  out.with_suffix(".md").write_text(markdown)
  plot(result, out.with_suffix(".png"))
  print()
  print(text)
  print()
  print("\n".join(markdown.split("Targets (per task):", 1)[1].strip()
                  .splitlines()))
  print(f"\nwrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}"
        f" in {result['seconds']:.0f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
