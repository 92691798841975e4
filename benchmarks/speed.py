"""Speed benchmark: optimizer overhead, a fit against its peers, a sweep.

    python benchmarks/speed.py [--quick] [--out FILE] [--peers all|none|LIST]

Three measurements, each A/B interleaved in one process (A B A B ...),
compiled before timing, medians reported:

1. ``overhead_ratio``: the time of one jitted ``tx.update`` +
   ``optax.apply_updates`` step (buffers donated) with each lrtransfer
   strategy or transfer tool chained to ``optax.sgd(lr, momentum=0.9)``,
   divided by that of bare ``optax.sgd(lr, momentum=0.9)``, on a parameter
   tree of >= 10M float32 parameters (quick: ~1M). No forward/backward: the
   update alone, which is memory-bound.
2. ``fit_seconds`` / ``fit_accuracy``: the same fine-tuning job (digits MLP
   64-256-128-10 from the same source-built initial weights, batch 32,
   validation every epoch, reduce-on-plateau at the same factor/patience)
   with ``lrtransfer.train.fit``, a hand-written Optax scan, PyTorch and Keras
   (see ``peers.py``). Wall seconds exclude compilation (reported apart);
   accuracy is the final validation accuracy.
3. ``sweep``: N >= 32 seeds of the job as one vmapped ``fit_many`` program
   versus ``lrtransfer.train.fit`` called N times (it compiles on the first
   call and reuses the program; the compile seconds of all N calls are
   summed). ``compile_seconds`` / ``fit_second_call_compile_seconds``: what
   the first and the second ``fit`` call of the job compiled.

Writes JSON (default ``benchmarks/results/speed.json``) and a markdown table
beside it (``.md``), and prints the tables and which targets are met.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import _common
import lrtransfer
import peers as peers_lib

DEFAULT_OUT = _common.RESULTS_DIR / "speed.json"
QUICK_OUT = _common.RESULTS_DIR / "speed_quick.json"
LR = 0.05
FACTOR, PATIENCE = 0.5, 3
PEERS = peers_lib.SPEED_PEERS
OPTIONAL_PEERS = peers_lib.OPTIONAL_SPEED_PEERS

# The fine-tuning job: digits with shifted, faded target images, 10 classes.
JOB_TASK = "digits_domain_shift"
JOB_SHOTS = 40  # 400 target training images: 13 steps per epoch

# Targets, marked met or MISSED in the tables.
STRATEGY_MAX_RATIO = 1.05
L2SP_MAX_RATIO = 1.25
PEER_MIN_SPEEDUP = 4.0
OPTAX_SCAN_MAX_RATIO = 1.15
ACCURACY_TOLERANCE = 0.01  # "equal accuracy": within one percentage point


# ----------------------------------------------------------------------------
# 1. Optimizer overhead.

def big_tree(width: int, seed: int = 0) -> dict[str, Any]:
  """An MLP-shaped tree (hidden.i.kernel/bias, head.*): ~3 * width**2."""
  keys = iter(jax.random.split(jax.random.key(seed), 16))
  dims = [width // 2, width, width, width]

  def layer(fan_in, fan_out):
    return {"kernel": jax.random.normal(next(keys), (fan_in, fan_out),
                                        jnp.float32) * 0.01,
            "bias": jnp.zeros((fan_out,), jnp.float32)}

  return {"hidden": [layer(a, b) for a, b in zip(dims[:-1], dims[1:])],
          "head": layer(width, width // 2)}


def overhead_transforms(params) -> dict[str, tuple[Any, bool]]:
  """name -> (transformation, reads metric). 'sgd' is the baseline."""
  sgd = lambda: optax.sgd(LR, momentum=0.9)
  lt = lrtransfer
  steps = 100
  return {
      "sgd": (sgd(), False),
      "decay": (optax.chain(sgd(), lt.decay(0.97, every_steps=steps,
                                             staircase=True)), False),
      "reduce_on_plateau": (optax.chain(sgd(), lt.reduce_on_plateau(
          factor=FACTOR, patience=PATIENCE)), True),
      "adjust": (optax.chain(sgd(), lt.adjust()), True),
      "dynamic": (optax.chain(sgd(), lt.dynamic(100 * steps,
                                                 every_steps=steps)), True),
      "layerwise_scale": (optax.chain(sgd(), lt.layerwise_scale(1 / 2.6)),
                          False),
      "gradual_unfreeze": (optax.chain(lt.gradual_unfreeze(steps), sgd()),
                           False),
      "head_first": (optax.chain(lt.head_first(steps), sgd()), False),
      "l2sp": (optax.chain(lt.l2sp(params, alpha=1e-2, beta=1e-4), sgd()),
               False),
      # For reference, not targets: L2-SP decoupled from momentum (the pull
      # added after SGD, where the parameters are read anyway), and Optax's
      # own plateau scaler.
      "l2sp_decoupled (reference)": (optax.chain(
          sgd(), decoupled_l2sp_reference(params, 1e-2, 1e-4, LR)), False),
      "optax.contrib.reduce_on_plateau": (optax.chain(
          sgd(), optax.contrib.reduce_on_plateau(
              factor=FACTOR, patience=PATIENCE)), "value"),
  }


def decoupled_l2sp_reference(source_params, alpha: float, beta: float,
                             learning_rate: float
                             ) -> optax.GradientTransformation:
  """A sketch, not lrtransfer's L2-SP: ``u - lr * alpha * (w - w0)`` added
  *after* SGD-momentum (decoupled, like AdamW's weight decay; the pull does
  not go through momentum), ``u - lr * beta * w`` on the head. Measured to
  show what one fused pass over the source tree costs on this backend."""

  def init_fn(params):
    return {"source": jax.tree.map(jnp.copy, source_params)}

  def update_fn(updates, state, params=None):
    def pull(path, u, w, w0):
      if any(getattr(k, "key", None) == "head" for k in path):
        return u - learning_rate * beta * w
      return u - learning_rate * alpha * (w - w0)
    return jax.tree_util.tree_map_with_path(
        pull, updates, params, state["source"]), state

  return optax.GradientTransformation(init_fn, update_fn)


def measure_overhead(width: int, repeats: int, steps_per_sample: int,
                     instances: int = 3, seed: int = 0) -> dict[str, Any]:
  """Median seconds per update step of each transformation, and ratios.

  Identical programs differ by several percent on CPU depending on where
  their (donated, hence fixed) buffers landed in memory, so each
  transformation runs as ``instances`` independent copies with their own
  buffers, all interleaved in a random order that changes every round; a
  transformation's time is the median over its copies' samples.
  ``baseline_spread`` (slowest / fastest copy of bare SGD) shows that noise
  floor.
  """
  params0 = big_tree(width)
  num_params = sum(x.size for x in jax.tree.leaves(params0))
  grads = jax.tree.map(lambda x: jnp.full_like(x, 1e-3), params0)
  # With a training value, so adjust/dynamic trace their brake and raises
  # (fed one number they compile without them, and warn).
  metric = lrtransfer.measurement(1.0, 1, train_loss=1.0)
  value = jnp.float32(1.0)
  runners = []
  for name, (tx, reads) in overhead_transforms(params0).items():
    if reads is True:
      step = lambda p, s, g, tx=tx: _apply(tx, p, s, g, metric=metric)
    elif reads == "value":
      step = lambda p, s, g, tx=tx: _apply(tx, p, s, g, value=value)
    else:
      step = lambda p, s, g, tx=tx: _apply(tx, p, s, g)
    jitted = jax.jit(step, donate_argnums=(0, 1))
    for copy in range(instances):
      params = jax.tree.map(jnp.copy, params0)
      # Distinct buffers per leaf: a state may hold one array in two fields,
      # and a buffer cannot be donated twice.
      state = jax.tree.map(jnp.copy, tx.init(params))
      params, state = jitted(params, state, grads)  # compile + warm up
      jax.block_until_ready(params)
      runners.append([name, copy, jitted, params, state])
  samples = {(r[0], r[1]): [] for r in runners}
  order = np.random.default_rng(seed)
  for _ in range(repeats):
    for k in order.permutation(len(runners)):  # interleaved, shuffled
      runner = runners[k]
      name, copy, jitted, params, state = runner
      start = time.perf_counter()
      for _ in range(steps_per_sample):
        params, state = jitted(params, state, grads)
      jax.block_until_ready((params, state))
      samples[name, copy].append(
          (time.perf_counter() - start) / steps_per_sample)
      runner[3], runner[4] = params, state
  del runners
  names = list(dict.fromkeys(name for name, _ in samples))
  pooled = {n: [t for (m, _), ts in samples.items() if m == n for t in ts]
            for n in names}
  per_copy = {n: [_common.median(samples[n, c]) for c in range(instances)]
              for n in names}
  base = _common.median(pooled["sgd"])
  return {
      "num_params": int(num_params),
      "repeats": repeats,
      "instances": instances,
      "steps_per_sample": steps_per_sample,
      "median_step_seconds": {n: _common.median(v) for n, v in pooled.items()},
      "per_instance_median_seconds": per_copy,
      "baseline_spread": max(per_copy["sgd"]) / min(per_copy["sgd"]),
      "ratio": {n: _common.median(v) / base for n, v in pooled.items()
                if n != "sgd"},
  }


def _apply(tx, params, state, grads, **extra):
  updates, state = tx.update(grads, state, params, **extra)
  return optax.apply_updates(params, updates), state


# ----------------------------------------------------------------------------
# 2. One fit against its peers.

def make_job(epochs: int):
  task = lrtransfer.data.get_task(JOB_TASK, shots_per_class=JOB_SHOTS)
  source = lrtransfer.experiment.pretrain_source(task, hidden=(256, 128), epochs=20)
  target = lrtransfer.models.target_from_source(source, task.num_target_classes,
                                         rngs=nnx.Rngs(1))
  init = [(np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]))
          for layer in [*target.hidden, target.head]]
  job = peers_lib.Job(task.target_train, task.target_val, init,
                      epochs=epochs, batch_size=32, learning_rate=LR,
                      factor=FACTOR, patience=PATIENCE)
  return task, source, target, job


def plateau_recipe() -> lrtransfer.recipes.Recipe:
  return lrtransfer.recipes.Recipe(
      "reduce_on_plateau", LR,
      strategy=lambda spe, total: lrtransfer.reduce_on_plateau(
          factor=FACTOR, patience=PATIENCE))


class LrtransferFit:
  """``lrtransfer.train.fit`` as a peer: its own timing, compile excluded."""

  name = "lrtransfer"

  def __init__(self, task, target, epochs):
    self.task, self.target, self.epochs = task, target, epochs
    # One recipe object for every call, as a user holding a recipe would:
    # fit's program cache keys on the recipe (its strategy function by
    # identity), so a recipe rebuilt with a new lambda compiles again.
    self.recipe = plateau_recipe()
    self.compile_seconds = math.nan
    self.first_compile_seconds = math.nan
    self.second_compile_seconds = math.nan

  def _fit(self, seed):
    return lrtransfer.train.fit(self.target, self.recipe,
                          self.task.target_train, self.task.target_val,
                          epochs=self.epochs, batch_size=32, seed=seed)

  def warmup(self) -> None:
    result = self._fit(0)
    self.first_compile_seconds = result.compile_seconds

  def run(self, seed: int) -> tuple[float, float]:
    # `seconds` is the run alone; `compile_seconds` what this call compiled
    # (fit caches compiled programs: a second call should compile nothing).
    result = self._fit(seed)
    if math.isnan(self.second_compile_seconds):
      self.second_compile_seconds = result.compile_seconds
    self.compile_seconds = result.compile_seconds
    return result.seconds, float(result.history["val_accuracy"][-1])


def measure_fits(task, target, job, wanted: Sequence[str], repeats: int
                 ) -> dict[str, Any]:
  runners: dict[str, Any] = {"lrtransfer": LrtransferFit(task, target,
                                                         job.epochs)}
  missing: dict[str, str] = {}
  for name in PEERS:
    if name not in wanted:
      missing[name] = "skipped (--peers)"
      continue
    peer, why = peers_lib.load_peer(name, job)
    if peer is None:
      missing[name] = why
      print(f"note: peer {name!r} is not available: {why}", flush=True)
    else:
      runners[name] = peer
  compile_seconds = {}
  for name, runner in runners.items():
    start = time.perf_counter()
    runner.warmup()
    compile_seconds[name] = time.perf_counter() - start
  compile_seconds["lrtransfer"] = runners["lrtransfer"].first_compile_seconds
  seconds = {name: [] for name in runners}
  accuracy = {name: [] for name in runners}
  for r in range(repeats):
    for name, runner in runners.items():  # interleaved
      s, a = runner.run(seed=r)
      seconds[name].append(s)
      accuracy[name].append(a)
    print(f"  fit repeat {r + 1}/{repeats}: " + ", ".join(
        f"{n} {seconds[n][-1]:.3f}s acc {accuracy[n][-1]:.3f}"
        for n in runners), flush=True)
  names = ("lrtransfer",) + PEERS
  return {
      "fit_seconds": {n: (_common.median(seconds[n]) if n in runners
                          else None) for n in names},
      "fit_accuracy": {n: (_common.median(accuracy[n]) if n in runners
                           else None) for n in names},
      "fit_compile_seconds": {n: compile_seconds.get(n) for n in names},
      "fit_second_call_compile_seconds":
          runners["lrtransfer"].second_compile_seconds,
      "fit_raw": {"seconds": seconds, "accuracy": accuracy},
      "missing_peers": missing,
      "versions": {n: getattr(runners[n], "version", None)
                   for n in runners if n in OPTIONAL_PEERS},
      "keras_backend": getattr(runners.get("keras"), "backend", None),
  }


# ----------------------------------------------------------------------------
# 3. Vmapped sweep versus one run after another.

def measure_sweep(task, source, runs: int, epochs: int) -> dict[str, Any]:
  recipe = plateau_recipe()
  seeds = list(range(runs))
  models = [lrtransfer.models.target_from_source(source, task.num_target_classes,
                                          rngs=nnx.Rngs(1000 + s))
            for s in seeds]
  sweep = lrtransfer.train.fit_many(models, recipe, task.target_train,
                              task.target_val, seeds=seeds, epochs=epochs,
                              batch_size=32)

  # The same runs one after another with fit(), which compiles its program
  # on the first call and reuses it afterwards.
  sequential, single_compile = 0.0, 0.0
  for seed, model in zip(seeds, models):
    result = lrtransfer.train.fit(model, recipe, task.target_train,
                                  task.target_val, epochs=epochs,
                                  batch_size=32, seed=seed)
    sequential += result.seconds
    single_compile += result.compile_seconds
  return {"runs": runs, "epochs": epochs, "vmapped_s": sweep.seconds,
          "sequential_s": sequential,
          "speedup": sequential / sweep.seconds,
          "vmapped_compile_s": sweep.compile_seconds,
          "sequential_compile_s": single_compile}


# ----------------------------------------------------------------------------
# Targets and tables.

STRATEGIES = ("decay", "reduce_on_plateau", "adjust", "dynamic")
TOOLS_105 = ("layerwise_scale", "gradual_unfreeze", "head_first")


def check_targets(result: dict[str, Any]) -> dict[str, Any]:
  targets: dict[str, Any] = {}
  ratio = result["overhead_ratio"]
  for name in STRATEGIES + TOOLS_105:
    targets[f"overhead_{name}<={STRATEGY_MAX_RATIO}"] = bool(
        ratio[name] <= STRATEGY_MAX_RATIO)
  targets[f"overhead_l2sp<={L2SP_MAX_RATIO}"] = bool(
      ratio["l2sp"] <= L2SP_MAX_RATIO)
  secs, acc = result["fit_seconds"], result["fit_accuracy"]
  ours = secs["lrtransfer"]
  for peer in OPTIONAL_PEERS:
    key = f"fit_{PEER_MIN_SPEEDUP:g}x_faster_than_{peer}_at_equal_accuracy"
    if secs.get(peer) is None:
      targets[key] = None
    else:
      targets[key] = bool(
          secs[peer] / ours >= PEER_MIN_SPEEDUP
          and acc["lrtransfer"] >= acc[peer] - ACCURACY_TOLERANCE)
  targets[f"fit_within_{OPTAX_SCAN_MAX_RATIO}x_of_optax_scan"] = bool(
      ours / secs["optax_scan"] <= OPTAX_SCAN_MAX_RATIO)
  return targets


def tables(result: dict[str, Any]) -> tuple[str, str]:
  ratio = result["overhead_ratio"]
  step = result["overhead"]["median_step_seconds"]
  limit = lambda n: (L2SP_MAX_RATIO if n == "l2sp" else
                     None if n.startswith("optax") or "reference" in n
                     else STRATEGY_MAX_RATIO)
  over_rows = [["optax.sgd(momentum=0.9) (baseline)",
                f"{step['sgd'] * 1e3:.2f}", "1.00", "-", "-"]]
  for name, value in ratio.items():
    lim = limit(name)
    over_rows.append([name, f"{step[name] * 1e3:.2f}", f"{value:.2f}",
                      "-" if lim is None else f"<= {lim}",
                      "-" if lim is None else _common.verdict(value <= lim)])
  over_head = ["update (chained to sgd)", "median ms/step", "ratio",
               "target", ""]

  secs, acc = result["fit_seconds"], result["fit_accuracy"]
  comp = result["fit_compile_seconds"]
  ours = secs["lrtransfer"]
  fit_rows = []
  for name in ("lrtransfer",) + PEERS:
    s = secs.get(name)
    fit_rows.append([
        name, _common.fmt(s), _common.fmt(comp.get(name), 2),
        "-" if s is None else f"{s / ours:.2f}x",
        _common.fmt(acc.get(name)),
        result["missing_peers"].get(name, "")])
  fit_head = ["fit", "median s (run)", "compile / warm-up s",
              "time vs lrtransfer", "final val acc", "note"]
  sweep = result["sweep"]
  sweep_rows = [[sweep["runs"], sweep["epochs"], f"{sweep['vmapped_s']:.3f}",
                 f"{sweep['sequential_s']:.3f}", f"{sweep['speedup']:.1f}x",
                 f"{sweep['vmapped_compile_s']:.2f} / "
                 f"{sweep['sequential_compile_s']:.2f}"]]
  sweep_head = ["runs", "epochs", "vmapped s", "sequential s", "speed-up",
                "compile s (vmapped / all N fit calls)"]
  job = result["job"]
  text = "\n\n".join([
      f"Optimizer update on {result['overhead']['num_params'] / 1e6:.1f}M "
      "float32 parameters:",
      _common.text_table(over_head, over_rows),
      "Fine-tuning job:", _common.text_table(fit_head, fit_rows),
      "Sweep:", _common.text_table(sweep_head, sweep_rows)])
  targets = result["targets"]
  md = [
      f"Machine: {_common.device_line(result['device'])}.", "",
      f"**Optimizer overhead** — one jitted `update` + `apply_updates` step "
      f"(buffers donated) on {result['overhead']['num_params'] / 1e6:.1f}M "
      f"float32 parameters, median over {result['overhead']['instances']} "
      f"independent copies x {result['overhead']['repeats']} samples, all "
      "interleaved in a shuffled order, relative to bare "
      "`optax.sgd(lr, momentum=0.9)` (identical copies of bare SGD differ "
      f"by {100 * (result['overhead']['baseline_spread'] - 1):.0f}%, the "
      "noise floor):",
      "", _common.markdown_table(over_head, over_rows), "",
      f"**Fine-tuning job** — {job['description']}; median of "
      f"{job['repeats']} interleaved repeats (seeds 0..{job['repeats'] - 1}"
      "), compile excluded. Peers: "
      + ", ".join(f"{n} {v}" for n, v in job["peer_versions"].items())
      + (f" (Keras backend: {job['keras_backend']})"
         if job.get("keras_backend") else "")
      + "; PyTorch runs eagerly on 2 threads.", "",
      _common.markdown_table(fit_head, fit_rows), "",
      f"**Sweep** — {sweep['runs']} seeds of the job, one vmapped "
      f"`fit_many` program versus `fit` called {sweep['runs']} times:", "",
      _common.markdown_table(sweep_head, sweep_rows), "",
      f"Compile time of `fit`: first call "
      f"{result['compile_seconds']:.2f} s, second call (same job, another "
      f"seed) {result.get('fit_second_call_compile_seconds', math.nan):.2f}"
      " s.", "",
      "Targets:", ""]
  md += [f"* `{k}`: {_common.verdict(v)}" for k, v in targets.items()]
  return text, "\n".join(md) + "\n"


# ----------------------------------------------------------------------------
# Command line.

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="small run (1M-parameter tree, 10 epochs, few "
                      "repeats) to check the pipeline")
  parser.add_argument("--out", type=Path, default=None,
                      help="JSON output; the .md is written beside it (default "
                      "benchmarks/results/speed.json; with --quick speed"
                      "_quick.json there, so a quick "
                      "run never replaces the published results)")
  parser.add_argument("--peers", default="all",
                      help="'all', 'none', or a comma list of "
                      f"{','.join(OPTIONAL_PEERS)} (optax_scan always runs);"
                      " a peer not run is null in the JSON")
  parser.add_argument("--repeats", type=int, default=None,
                      help="interleaved repeats of each fit (default 7; "
                      "quick 2)")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  quick = args.quick
  if args.peers == "all":
    wanted = set(PEERS)
  elif args.peers == "none":
    wanted = {"optax_scan"}
  else:
    wanted = {"optax_scan"} | set(args.peers.split(","))
    unknown = wanted - set(PEERS)
    if unknown:
      print(f"unknown peers: {sorted(unknown)}", file=sys.stderr)
      return 2
  width = 576 if quick else 2048  # ~1.0M or ~12.6M parameters
  overhead_repeats = 7 if quick else 25
  overhead_instances = 2 if quick else 3
  epochs = 10 if quick else 50
  repeats = args.repeats or (2 if quick else 7)
  sweep_runs, sweep_epochs = 32, (5 if quick else 50)
  out = Path(args.out or (QUICK_OUT if quick else DEFAULT_OUT))
  device = _common.device_record()
  print(f"speed benchmark on {_common.device_line(device)}"
        f"{' (quick)' if quick else ''}", flush=True)
  start = time.perf_counter()

  print("optimizer overhead ...", flush=True)
  overhead = measure_overhead(width, overhead_repeats, steps_per_sample=3,
                              instances=overhead_instances)
  print("fine-tuning job ...", flush=True)
  task, source, target, job = make_job(epochs)
  fits = measure_fits(task, target, job, wanted, repeats)
  print("sweep ...", flush=True)
  sweep = measure_sweep(task, source, sweep_runs, sweep_epochs)

  result: dict[str, Any] = {
      "device": device,
      "quick": quick,
      "overhead_ratio": overhead["ratio"],
      "fit_seconds": fits["fit_seconds"],
      "fit_accuracy": fits["fit_accuracy"],
      "fit_compile_seconds": fits["fit_compile_seconds"],
      "sweep": sweep,
      "compile_seconds": fits["fit_compile_seconds"]["lrtransfer"],
      "fit_second_call_compile_seconds":
          fits["fit_second_call_compile_seconds"],
      "overhead": overhead,
      "job": {
          "description": (
              f"{JOB_TASK} target ({JOB_SHOTS} shots/class: "
              f"{len(task.target_train)} train, {len(task.target_val)} val"
              f" images), MLP 64-256-128-10 from the same source-built "
              f"initial weights, batch 32, {epochs} epochs, SGD momentum 0.9"
              f" lr {LR}, reduce-on-plateau factor {FACTOR} patience "
              f"{PATIENCE} on the validation loss each epoch"),
          "task": JOB_TASK, "shots_per_class": JOB_SHOTS, "epochs": epochs,
          "batch_size": 32, "learning_rate": LR, "factor": FACTOR,
          "patience": PATIENCE, "repeats": repeats,
          "steps_per_epoch": job.steps_per_epoch,
          "peer_versions": fits["versions"],
          "keras_backend": fits["keras_backend"],
          "accuracy_tolerance": ACCURACY_TOLERANCE,
      },
      "missing_peers": fits["missing_peers"],
      "fit_raw": fits["fit_raw"],
  }
  result["targets"] = check_targets(result)
  result["seconds"] = time.perf_counter() - start
  text, markdown = tables(result)
  _common.write_json(out, result)
  out.with_suffix(".md").write_text(markdown)
  print()
  print(text)
  print()
  for key, met in result["targets"].items():
    print(f"target {key}: {_common.verdict(met)}")
  for name, why in fits["missing_peers"].items():
    print(f"{name}: null -- {why}")
  if any(n in fits["missing_peers"] for n in OPTIONAL_PEERS):
    print(f"(the peers are an optional extra: `{peers_lib.INSTALL_HINT}`)")
  print(f"\nwrote {out} and {out.with_suffix('.md')} in "
        f"{result['seconds']:.0f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
