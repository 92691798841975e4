"""Quality benchmark: TEST accuracy of every method on the REPORT tasks.

    python benchmarks/quality.py [--quick] [--out FILE] [--tasks ...]
        [--methods ...] [--seeds N] [--epochs E]

On every report task of ``suite.py`` (never used to choose a default), over
the report seeds: pretrain the source once, build the targets from it, then
fine-tune with each method, all seeds of a method as ONE vmapped
``lrtransfer.train.fit_many`` program (the seed sets the new head's
initialisation and the data order). Methods (``methods.py``):

* every lrtransfer recipe with its library defaults at the library's default
  base rate, and the ``recommended`` recipe at its own default rate;
* baselines: ``scratch`` and ``constant`` at the default rate;
  ``constant_lr_best_of_grid`` and ``scratch_best_of_grid`` (each rate of
  ``GRID`` x seeds in one program, the rate picked on mean final
  *validation* accuracy, reported on *test*); ``range_test_lr`` (a constant
  rate at ``lrtransfer.lr_range_test``'s suggestion);
* the peers users pick instead of tuning (``peers.py``).

Targets checked here: ahead of the peers (recommended's mean test
accuracy over the report tasks above each peer's) and escaping negative
transfer (where scratch's best-of-grid beats fine-tuning at every constant
rate, recommended >= scratch's best-of-grid - 1 point). Writes JSON
(``{device, seeds, split, selection, tasks: {task: {method: {mean, std,
n}}}, ...}``), a markdown table and a bar chart beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import _common
import lrtransfer
import methods as methods_lib
import optax_metric
import peers as peers_lib
import suite
from lrtransfer.recipes import Recipe

DEFAULT_OUT = _common.RESULTS_DIR / "quality.json"
QUICK_OUT = _common.RESULTS_DIR / "quality_quick.json"
SELECTION_JSON = _common.RESULTS_DIR / "defaults.json"
GRID = _common.GRID
NEGATIVE_TRANSFER_TOLERANCE = 0.01  # 1 point
QUICK_METHODS = ["recommended", "schedule_free_sgd"]


def range_test_lr(prepared: _common.Prepared, seed: int = 0) -> dict:
  """``lr_range_test`` on a from-source target, its target training batches
  (the fit loop's wrap-around batching: full batches only)."""
  model = _common.target_models(prepared, Recipe("probe"), [seed])[0]
  graphdef, params = nnx.split(model, nnx.Param)
  train = prepared.task.target_train
  n, batch = len(train), _common.BATCH_SIZE
  order = np.random.default_rng(seed).permutation(n)
  num_batches = max(1, math.ceil(n / batch))
  index = order[np.arange(num_batches * batch) % n].reshape(num_batches,
                                                             batch)
  batches = (jnp.asarray(train.x[index]), jnp.asarray(train.y[index]))

  def loss_fn(p, b):
    return optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(graphdef, p)(b[0]), b[1]).mean()

  result = lrtransfer.lr_range_test(loss_fn, nnx.as_pure(params), batches)
  return {"suggestion": float(result.suggestion),
          "stopped_at": result.stopped_at, "steps_run": len(result.losses)}


def run_task(name: str, methods: Sequence[methods_lib.Method], *,
             seeds: Sequence[int], epochs: int, source_epochs: int,
             default_lr: float, recommended_lr: float, with_grids: bool,
             log=print) -> dict[str, Any]:
  prepared = _common.prepare(name, source_epochs=source_epochs)
  task = prepared.task
  log(f"{name} ({len(task.target_train)} train, {len(task.target_val)} val,"
      f" {len(task.target_test)} test; source val acc "
      f"{prepared.source_val_accuracy:.3f}):")
  out: dict[str, Any] = {}
  details: dict[str, Any] = {
      "sizes": {"target_train": len(task.target_train),
                "target_val": len(task.target_val),
                "target_test": len(task.target_test)},
      "source_val_accuracy": prepared.source_val_accuracy,
      "val_mean": {}, "seconds": {}, "compile_seconds": {}, "grids": {}}

  def record(label, grid, i=0):
    out[label] = grid.stats(i)
    details["val_mean"][label] = float(grid.val[i].mean())
    details["seconds"][label] = grid.seconds
    details["compile_seconds"][label] = grid.compile_seconds

  if with_grids:
    for base, label in (("constant", "constant_lr_best_of_grid"),
                        ("scratch", "scratch_best_of_grid")):
      method = methods_lib.all_methods([base])[0]
      grid = _common.run(prepared, method.make(GRID[0]), seeds,
                        learning_rates=GRID, epochs=epochs)
      _common.log_grid(log, label, grid)
      best = grid.best_on_val()
      record(label, grid, best)
      details["grids"][base] = {
          "learning_rates": list(GRID), "chosen": GRID[best],
          "val_mean": grid.val.mean(1).tolist(),
          "test_mean": grid.test.mean(1).tolist()}
    suggestion = range_test_lr(prepared)
    details["range_test"] = suggestion
    lr = suggestion["suggestion"]
    if math.isfinite(lr) and lr > 0:
      grid = _common.run(prepared, Recipe("range_test_lr", lr), seeds,
                        epochs=epochs)
      _common.log_grid(log, "range_test_lr", grid)
      record("range_test_lr", grid)
    else:
      out["range_test_lr"] = {"mean": math.nan, "std": math.nan, "n": 0}
  for method in methods:
    lr = recommended_lr if method.name == "recommended" else default_lr
    grid = _common.run(prepared, method.make(lr), seeds, epochs=epochs)
    _common.log_grid(log, method.name, grid)
    record(method.name, grid)
  return {"methods": out, "details": details}


def check_targets(result: Mapping[str, Any]) -> dict[str, Any]:
  """The targets: ahead of the peers; escapes negative transfer."""
  tasks = result["tasks"]
  mean_over = lambda m: (float(np.mean([tasks[t][m]["mean"] for t in tasks]))
                         if all(m in tasks[t] for t in tasks) else None)
  rec = mean_over("recommended")
  peers = {p: mean_over(p) for p in peers_lib.TUNING_FREE_PEERS}
  behind = {p: v for p, v in peers.items() if v is not None
            and rec is not None and not rec > v}
  ran = [p for p, v in peers.items() if v is not None]
  ahead = {
      "rule": "recommended's mean test accuracy over the report tasks above "
              "that of each peer",
      "recommended_mean": rec, "peer_means": peers,
      "not_ahead_of": behind,
      "peers_not_run": [p for p in peers_lib.TUNING_FREE_PEERS if p not in ran],
      "met": (None if rec is None or not ran
              else (not behind and len(ran) == len(peers_lib.TUNING_FREE_PEERS)))}
  rows, met = {}, True
  for task, by_method in tasks.items():
    grids = result["details"][task].get("grids", {})
    if "scratch" not in grids or "constant" not in grids:
      continue
    scratch_best = by_method["scratch_best_of_grid"]["mean"]
    negative = scratch_best > max(grids["constant"]["test_mean"])
    if not negative or "recommended" not in by_method:
      rows[task] = {"negative_transfer": bool(negative)}
      continue
    ok = (by_method["recommended"]["mean"]
          >= scratch_best - NEGATIVE_TRANSFER_TOLERANCE)
    best_constant = max(grids["constant"]["test_mean"])
    rows[task] = {"negative_transfer": True, "scratch_best": scratch_best,
                  "best_constant_rate_of_grid": best_constant,
                  # Hindsight: could any constant rate of the grid get within
                  # the tolerance? If not, no choice of one rate can.
                  "reachable_by_a_constant_rate": bool(
                      best_constant >= scratch_best
                      - NEGATIVE_TRANSFER_TOLERANCE),
                  "recommended": by_method["recommended"]["mean"],
                  # Every fine-tuning method (ours, peers) that got there.
                  "methods_within_tolerance": sorted(
                      m for m, stats in by_method.items()
                      if not m.startswith("scratch")
                      and stats["mean"] >= scratch_best
                      - NEGATIVE_TRANSFER_TOLERANCE),
                  "met": ok}
    met = met and ok
  negative = {
      "rule": "on report tasks where scratch's best-of-grid beats fine-tuning"
              " at every constant rate of the grid, recommended >= scratch's"
              " best-of-grid - 1 point",
      "tasks": rows, "met": met if rows else None}
  return {"ahead_of_peers": ahead, "escapes_negative_transfer": negative}


def method_order(result: Mapping[str, Any]) -> list[str]:
  seen: list[str] = []
  for by_method in result["tasks"].values():
    seen += [m for m in by_method if m not in seen]
  kinds = result["kinds"]
  rank = {"baseline": 0, "lrtransfer": 1, "peer": 2}
  return sorted(seen, key=lambda m: rank.get(kinds.get(m, "baseline"), 0))


def tables(result: Mapping[str, Any]) -> str:
  tasks = list(result["tasks"])
  headers = ["method"] + tasks + ["mean over tasks"]
  rows = []
  for m in method_order(result):
    cells, means = [], []
    for t in tasks:
      s = result["tasks"][t].get(m)
      ok = s is not None and s["n"]
      cells.append(f"{s['mean']:.3f} ± {s['std']:.3f}" if ok else "-")
      means.append(s["mean"] if ok else math.nan)
    label = m + (" (lrtransfer)" if result["kinds"].get(m) == "lrtransfer"
                 else " (peer)" if result["kinds"].get(m) == "peer" else "")
    rows.append([label] + cells + [f"{np.mean(means):.3f}"])
  for label, base in (("grid-picked lr (fine-tuning)", "constant"),
                      ("grid-picked lr (scratch)", "scratch")):
    rows.append([label] + [
        f"{result['details'][t]['grids'][base]['chosen']:g}"
        if base in result["details"][t].get("grids", {}) else "-"
        for t in tasks] + [""])
  lines = [
      f"TEST accuracy on the REPORT tasks, mean ± std over {result['seeds']} "
      f"report seeds ({result['epochs']} epochs, batch "
      f"{result['batch_size']}; lrtransfer recipes at the default base rate "
      f"{result['learning_rate']:g}, recommended at "
      f"{result['recommended_lr']:g}; every seed of a method in one vmapped "
      f"program). Machine: {_common.device_line(result['device'])}.", "",
      _common.markdown_table(headers, rows), "", "Targets:", ""]
  for name, target in result["targets"].items():
    lines.append(f"* {name}: {_common.verdict(target['met'])} "
                 f"({target['rule']})")
  return "\n".join(lines) + "\n"


def plot(result: Mapping[str, Any], path: Path) -> None:
  """Grouped bars, a panel per task; baselines and peers hatched."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(result["tasks"])
  methods = method_order(result)
  cmap = plt.get_cmap("tab20")
  cols = min(len(names), 3)
  rows = math.ceil(len(names) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.4 * rows),
                           dpi=100, squeeze=False)
  for ax, task in zip(axes.flat, names):
    stats = [result["tasks"][task].get(m, {"mean": np.nan, "std": 0, "n": 0})
             for m in methods]
    means = np.array([s["mean"] if s["n"] else np.nan for s in stats])
    finite = means[np.isfinite(means)]
    floor = max(0.0, np.median(finite) - 0.2) if finite.size else 0.0
    for x, (m, s) in enumerate(zip(methods, stats)):
      if not s["n"] or not np.isfinite(s["mean"]):
        continue
      ax.bar(x, max(s["mean"], floor) - floor, 0.8, bottom=floor,
             color=cmap(x % 20), edgecolor="white",
             hatch=None if result["kinds"].get(m) == "lrtransfer" else "//",
             yerr=s["std"] if s["mean"] >= floor else None, capsize=2)
      if s["mean"] < floor:
        ax.text(x, floor, f"{s['mean']:.2f}", rotation=90, ha="center",
                va="bottom", fontsize=6)
    ax.set_ylim(floor, min(1.0, np.nanmax(means) + 0.05)
                if finite.size else 1.0)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=60, ha="right", fontsize=6)
    ax.set_title(task, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  fig.suptitle("Test accuracy on the report tasks, mean ± std over report "
               "seeds (plain: lrtransfer; hatched: baselines and peers)",
               fontsize=9)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)


def selection_record() -> dict[str, Any]:
  """How the defaults were chosen: tune_defaults.py's record, if any."""
  if SELECTION_JSON.exists():
    data = json.loads(SELECTION_JSON.read_text())
    return {"source": "benchmarks/results/defaults.json "
                      "(python benchmarks/tune_defaults.py)",
            "note": "the methods ran with the library's defaults; "
                    "compare them with the choices recorded here to see "
                    "whether the library has adopted them",
            **data.get("selection", {})}
  return {"source": None, "note": "no tune_defaults.py record found"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="one report task, 3 seeds, 10 epochs, a few "
                      "methods: checks the pipeline, the numbers mean little")
  parser.add_argument("--out", type=Path, default=None,
                      help="JSON output; .md and .png beside it (default "
                      "results/quality.json; quick: quality_quick.json)")
  parser.add_argument("--tasks", nargs="+", default=None,
                      help="default: the report tasks of suite.py")
  parser.add_argument("--methods", nargs="+", default=None)
  parser.add_argument("--seeds", type=int, default=None,
                      help="first N report seeds (default: all)")
  parser.add_argument("--epochs", type=int, default=None)
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  split = _common.split_record()
  tasks = args.tasks or (split["report"][:1] if args.quick
                         else split["report"])
  seeds = list(suite.REPORT_SEEDS)[:args.seeds or (3 if args.quick else None)]
  epochs = args.epochs or (10 if args.quick else _common.EPOCHS)
  names = args.methods or (QUICK_METHODS if args.quick else None)
  if names is not None:
    known = {m.name for m in methods_lib.all_methods()}
    names = [n for n in names if n in known]
  methods = methods_lib.all_methods(names)
  out = Path(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))
  device = _common.device_record()
  check = optax_metric.reacts_once_per_evaluation(
      factor=peers_lib.PLATEAU_FACTOR,
      patience=peers_lib.OPTAX_PLATEAU_PATIENCE)
  print(f"quality on {_common.device_line(device)}"
        f"{' (quick)' if args.quick else ''}: {len(tasks)} report tasks, "
        f"{len(seeds)} report seeds, {epochs} epochs", flush=True)
  if split["missing"]:
    print(f"note: tasks of suite.py not in lrtransfer.data yet: "
          f"{split['missing']}", flush=True)
  start = time.perf_counter()
  result: dict[str, Any] = {
      "device": device, "seeds": len(seeds), "seed_values": seeds,
      "quick": args.quick, "split": split, "selection": selection_record(),
      "epochs": epochs, "batch_size": _common.BATCH_SIZE,
      "learning_rate": methods_lib.DEFAULT_LR,
      "recommended_lr": methods_lib.recommended_default_lr(),
      "grid": list(GRID), "hidden": list(_common.HIDDEN),
      "kinds": {"scratch_best_of_grid": "baseline",
                "constant_lr_best_of_grid": "baseline",
                "range_test_lr": "baseline",
                **{m.name: m.kind for m in methods}},
      "notes": {m.name: m.note for m in methods if m.note},
      "optax_plateau_reacts_once_per_epoch": check["ok"],
      "tasks": {}, "details": {}}
  for name in tasks:
    task_result = run_task(
        name, methods, seeds=seeds, epochs=epochs,
        source_epochs=5 if args.quick else _common.SOURCE_EPOCHS,
        default_lr=result["learning_rate"],
        recommended_lr=result["recommended_lr"], with_grids=True,
        log=lambda line: print(line, flush=True))
    result["tasks"][name] = task_result["methods"]
    result["details"][name] = task_result["details"]
  result["targets"] = check_targets(result)
  result["seconds"] = time.perf_counter() - start
  markdown = tables(result)
  _common.write_json(out, result)
  out.with_suffix(".md").write_text(markdown)
  plot(result, out.with_suffix(".png"))
  print()
  print(markdown)
  print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}"
        f" in {result['seconds']:.0f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
