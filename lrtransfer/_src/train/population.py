"""``fit_auto``: the base rate and what to transfer, chosen inside one program.

A population of members -- candidate base rates x candidate copy depths
(from scratch, all body levels but the last, the whole body, and the whole
model with the source head when the output sizes match) -- trains as one
``jax.vmap``-ed :class:`~lrtransfer._src.train.program.FitProgram`, judged
on the monitored validation value at every evaluation. The schedules
(``population_rules``) stop or replace weak members between compiled chunks
of epochs; the member with the best validation value wins, never by test.

The defaults, one constant each: the candidate rates
(``DEFAULT_LEARNING_RATES``), copy depths (``DEFAULT_DEPTHS``), members'
strategies (``MEMBER_STRATEGIES``), what members are judged on
(``DEFAULT_MONITOR``) and the schedule (``DEFAULT_SCHEDULE``) here; the
schedules' constants (``HALVING_ETA``, ``HALVING_BUDGET``, ``PBT_*``) in
``population_rules``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lrtransfer._src import sizes
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train import population_members as members_lib
from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train import population_strategies as strategies_lib
from lrtransfer._src.train.checks import as_split, check_data
from lrtransfer._src.train.population_engine import (
  Population,
  decision_epochs,
  run_population,
)
from lrtransfer._src.train.population_result import AutoResult, MemberRow
from lrtransfer._src.train.program import LossFn
from lrtransfer._src.train.runner import (
  build_program,
  compile_cached,
  data_mesh,
  run_description,
  split_model,
)
from lrtransfer._src.train.runs import check_seed, is_integer

# The candidate base rates: 100x around the usual fine-tuning rates, the
# grid a careful user runs by hand (five rates, a factor ~3 apart).
DEFAULT_LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3)
# The copy depths tried when transfer_layers=None, by name
# (population_members.default_depths: scratch, all body levels but the
# last, all of them, all with the source head when the output sizes match).
DEFAULT_DEPTHS = members_lib.DEPTH_CHOICES
# The schedule a call without schedule= runs (see population_rules).
DEFAULT_SCHEDULE = "halving"
# The value members are judged on (and the strategies read) when the
# members are scored by accuracy (the default loss, or an "accuracy"
# metric); otherwise the validation loss. Accuracy, chosen on the tuning set
# by held-out validation against val_loss (python benchmarks/population.py
# --set tuning; benchmarks/results/population_tuning.md).
DEFAULT_MONITOR = "val_accuracy"
# Members' strategies when recipe=None, name -> strategy factory: None is a
# constant rate (SGD-momentum 0.9); a factory such as
# recipes.recommended_recipe().strategy moves each member's rate from its
# validation values. Several entries make the strategy a member dimension.
MEMBER_STRATEGIES = {"constant": None}
MEMBER_MOMENTUM = 0.9


def fit_auto(source: nnx.Module, train: Any, val: Any, *,
             num_outputs: Optional[int] = None,
             target: Optional[nnx.Module] = None,
             learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
             transfer_layers: Optional[Sequence[Any]] = None,
             schedule: Union[str, rules.Schedule] = DEFAULT_SCHEDULE,
             recipe: Union[None, Recipe, Sequence[Recipe]] = None,
             epochs: int = 50,
             batch_size: int = 32, seeds: Union[int, Sequence[int]] = 0,
             loss_fn: Optional[LossFn] = None,
             metrics: Optional[dict[str, LossFn]] = None,
             monitor: Optional[str] = None, mode: str = "auto",
             test: Any = None, checkpoint_dir: Any = None,
             resume: bool = False,
             devices: Optional[Sequence[jax.Device]] = None) -> AutoResult:
  r"""Fine-tunes without choosing a base rate or what to transfer.

  Members are every candidate base rate x every candidate copy depth
  (``K`` of them); each trains the target from ``source`` with the
  recipe's optimizer, all of one seed's population in one ``jax.vmap`` of
  the compiled fit program (and the populations of several seeds in the
  same vmap), judged after each epoch on the monitored validation value
  ``v`` (signed so that lower is better: ``s = v`` for ``mode="min"``,
  ``-v`` for max). The schedule decides who trains:

  * ``"full"``: every member to the end. Compute ``K`` runs.
  * ``"halving"`` (successive halving): at rung epochs ``e_1 < ... < e_m``
    the ``n_i = ceil(n_{i-1} / eta)`` members with the lowest best-so-far
    ``min_{t <= e_i} s_t`` continue, the others stop; compute
    ``sum_i n_i (e_{i+1} - e_i) / epochs <= budget`` (3) runs
    (:func:`population_rules.halving_rungs` places the rungs).
  * ``"pbt"`` (exploit/explore): every ``interval`` epochs the bottom
    ``q = fraction * K`` members by their latest ``s_t`` take the
    parameters, optimizer state and best-so-far of the top ``q`` (the
    ``i``-th worst from the ``i``-th best) and the leader's rate times a
    factor drawn from ``perturb`` (0.5, 2). Compute ``K`` runs.

  The chosen member is ``argmin_k min_t s_{k,t}``, returned at that
  evaluation (the best-evaluation copy is kept inside the program). Test
  data never takes part in a decision. Member-epochs (one member training
  one epoch) count the compute; ``AutoResult.compute`` is
  ``member_epochs / epochs``, in runs of one fit.

  Member ``k`` of seed ``s`` starts where ``experiment.compare``'s run of
  that seed, rate and copy depth starts (fresh layers from
  ``nnx.Rngs(1000 + s)``, data order from ``s``), so a ``"full"``
  population reproduces the grid a user would run by hand, in one program.
  Every candidate set, the schedule's constants (``Halving``, ``PBT``) and
  the members' strategy are defaults here and in ``population_rules``,
  one documented constant each. Several recipes that differ only in their
  strategy make the strategy a member dimension too, in the same program
  (the strategy is chosen per member by an index in the optimizer state,
  ``population_strategies.choose_strategy``).

  Args:
    source: the trained source model (not modified).
    train, val: the target task's training and validation data (a
      :class:`lrtransfer.data.Split` or an ``(x, y)`` pair).
    num_outputs: the target's outputs; members are rebuilt from
      ``source.config`` (lrtransfer's MLP and CNN). Or:
    target: a freshly initialised target model of any structure, copied
      into (then every seed starts from its initial values; the seeds vary
      the data order).
    learning_rates: candidate base rates (default
      ``DEFAULT_LEARNING_RATES``).
    transfer_layers: candidate copy depths, ints in ``[0, levels]`` (0:
      from scratch) or ``(levels, True)`` to keep the source head; None:
      ``DEFAULT_DEPTHS``: 0, all body levels but the last, all of them,
      and the whole model with its head when the output sizes match.
    schedule: ``"full"``, ``"halving"``, ``"pbt"`` or a config,
      ``lrtransfer.train.Halving(eta=2, rungs=(5, 15))``,
      ``lrtransfer.train.PBT(interval=5)``, ``lrtransfer.train.Full()``.
    recipe: the members' optimizer and strategy (its base rate is replaced
      by each member's), or a sequence of recipes differing only in their
      strategy (every member is tried with each); None:
      ``MEMBER_STRATEGIES`` on SGD-momentum 0.9 (a constant rate). A
      recipe with L2-SP is refused (its pull depends on what was copied,
      which differs between members).
    epochs, batch_size: as :func:`fit`.
    seeds: an int, or a sequence: one independent population per seed
      (its own initialisation and data order), all in one vmap.
    loss_fn, metrics, mode: as :func:`fit`.
    monitor: the validation value members are judged on; None:
      ``DEFAULT_MONITOR`` (``"val_accuracy"``) when members are scored by
      accuracy (no ``loss_fn`` and no ``metrics``, or an ``"accuracy"``
      metric), else ``"val_loss"``.
    test: scored by accuracy on the chosen members only (reporting).
    checkpoint_dir: a folder for population checkpoints (orbax), saved at
      every decision and every ``epochs / 10`` epochs; it must hold no
      earlier call's saves unless ``resume``.
    resume: continue the interrupted call whose saves are in
      ``checkpoint_dir`` (the same arguments: refused otherwise); the
      result equals the uninterrupted call's.
    devices: run data-parallel over these devices (as :func:`fit`: each
      batch split over them, members replicated); ``batch_size`` must be
      divisible by their number.

  Returns:
    An :class:`AutoResult`: ``model(seed_index)``, the member table,
    decisions, per-member histories, compute.

  Raises:
    ValueError: empty or non-positive rates, copy depths out of range, an
      unknown schedule, an L2-SP or ``from_source=False`` recipe, recipes
      differing in more than their strategy, a halving plan above its
      budget, and every check of :func:`fit`.
    lrtransfer.experiment.SizeError: the population cannot fit in memory
      (checked before the members are built).
    lrtransfer.checkpoint.CheckpointError: ``checkpoint_dir`` holds saves
      of an earlier call (without ``resume``) or of another one (with it).

  Example::

    result = lrtransfer.train.fit_auto(source, task.target_train,
                                       task.target_val, num_outputs=5,
                                       epochs=30)
    print(result.table())
    model = result.model()

  References:
    Jamieson, Talwalkar, "Non-stochastic Best Arm Identification and
    Hyperparameter Optimization", AISTATS 2016.
    https://arxiv.org/abs/1502.07943

    Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, "Hyperband: A Novel
    Bandit-Based Approach to Hyperparameter Optimization", JMLR 2018.
    https://arxiv.org/abs/1603.06560

    Jaderberg et al., "Population Based Training of Neural Networks", 2017.
    https://arxiv.org/abs/1711.09846
  """
  rates = members_lib.check_learning_rates(learning_rates)
  plan_rule = rules.as_schedule(schedule)
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if not is_integer(value) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")
  seed_list = _check_seeds(seeds)
  recipe, strategy_names = _member_recipe(recipe, rates[0])
  if (num_outputs is None) == (target is None):
    raise ValueError("pass num_outputs= (the target's outputs; members are "
                     "rebuilt from source.config) or target= (a fresh target "
                     "model), exactly one")
  if resume and checkpoint_dir is None:
    raise ValueError("resume=True needs checkpoint_dir, the folder of the "
                     "population checkpoints to resume from")
  train, val = as_split(train, "train"), as_split(val, "val")
  splits = {"train": train, "val": val}
  if test is not None:
    splits["test"] = test = as_split(test, "test")
  build = lambda option, seed: members_lib.member_model(
      source, option, seed, num_outputs=num_outputs, target=target,
      head=recipe.head, depth_fn=recipe.depth_fn)
  first = build((0, False), seed_list[0])
  levels = members_lib.body_levels(first, head=recipe.head,
                                   depth_fn=recipe.depth_fn)
  if transfer_layers is None:
    options = members_lib.default_depths(levels, members_lib.head_fits(
        source, first, head=recipe.head, depth_fn=recipe.depth_fn),
        DEFAULT_DEPTHS)
  else:
    options = members_lib.check_depths(transfer_layers, levels)
  cands = members_lib.candidates(rates, options, strategy_names)
  decision_epochs(plan_rule, len(cands), epochs)  # over budget: refused now
  short = rules.short_run_warning(plan_rule, len(cands), epochs)
  if short is not None:
    warnings.warn(short, UserWarning, stacklevel=2)
  check_data(first, splits, loss_fn is None)
  mesh = data_mesh(devices, batch_size)
  if monitor is None:
    scored_by_accuracy = ((loss_fn is None and metrics is None)
                          or "accuracy" in (metrics or {}))
    monitor = DEFAULT_MONITOR if scored_by_accuracy else "val_loss"
  program = build_program(first, recipe, len(train), epochs, batch_size,
                          mesh=mesh, loss_fn=loss_fn, metrics=metrics,
                          monitor=monitor, mode=mode, restore_best=True)
  # What was copied differs between members; nothing reads it once L2-SP
  # is refused, and one program must serve them all.
  program = dataclasses.replace(program, transferred=None)
  _check_memory(first, program, len(cands), len(seed_list), epochs)

  # Initial models: one per (seed, copy option); rates share them.
  states, graphs = {}, []
  for j, option in enumerate(options):
    for s, seed in enumerate(seed_list):
      model = first if (j == 0 and s == 0 and option == (0, False)) else (
          build(option, seed))
      states[(s, j)] = split_model(model)
      if s == 0:
        view = nnx.clone(model)
        view.eval()
        graphs.append(nnx.split(view, nnx.Param, ...)[0])
  option_of = [options.index((c.transfer_layers, c.keep_head))
               for c in cands]
  population = Population.start(
      program, [[states[(s, option_of[k])] for k in range(len(cands))]
                for s in range(len(seed_list))],
      np.asarray([[c.learning_rate for c in cands]] * len(seed_list)),
      seed_list, train, val,
      strategy_index=(None if len(strategy_names) == 1 else np.asarray(
          [strategy_names.index(c.strategy) for c in cands])))
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = _checkpointer(checkpoint_dir, resume, first, recipe,
                                 program, train, val, epochs, batch_size,
                                 seed_list, cands, plan_rule)
  outcome = run_population(population, plan_rule, epochs, checkpointer,
                           resume)

  chosen = outcome.chosen
  lineage = [option_of[outcome.params_from[s, chosen[s]]]
             for s in range(len(seed_list))]
  sign = 1.0 if program.mode == "min" else -1.0
  rows = []
  for s, seed in enumerate(seed_list):
    for k, cand in enumerate(cands):
      signed = outcome.best_value[s, k]
      rows.append(MemberRow(
          int(seed), k, cand.learning_rate, cand.transfer_layers,
          cand.keep_head, cand.strategy,
          float(sign * signed) if np.isfinite(signed) else float("nan"),
          int(outcome.best_epoch[s, k]), int(outcome.stopped_epoch[s, k]),
          int(outcome.member_epochs[s, k]),
          float(outcome.final_rate[s, k]), int(outcome.params_from[s, k]),
          bool(k == chosen[s])))
  accuracy = None
  if test is not None:
    test_x, test_y = jnp.asarray(test.x), jnp.asarray(test.y)
    score, seconds = compile_cached(
        ("population_test", program),
        jax.vmap(program.test_accuracy, in_axes=(0, 0, None, None)),
        outcome.best_params, outcome.best_rest, test_x, test_y)
    outcome.compile_seconds += seconds
    accuracy = np.asarray(score(outcome.best_params, outcome.best_rest,
                                test_x, test_y))
  spent = int(outcome.member_epochs[0].sum())
  return AutoResult(
      cands, rows, outcome.decisions, outcome.history, chosen,
      np.asarray([rows[s * len(cands) + chosen[s]].best_value
                  for s in range(len(seed_list))]),
      spent, spent / epochs, accuracy, outcome.seconds,
      outcome.compile_seconds, program.monitor, program.mode,
      tuple(seed_list), outcome.best_params, outcome.best_rest, graphs,
      program.depths, lineage)


def _checkpointer(folder, resume, model, recipe, program, train, val,
                  epochs, batch_size, seeds, cands, rule) -> RunCheckpointer:
  """The population's checkpoint folder; refuses to start afresh over an
  earlier call's saves (they would be mixed with this call's)."""
  description = {
      **run_description(model, recipe, train, val, epochs, batch_size, seeds,
                        sorted({c.learning_rate for c in cands}), program),
      "members": [list(c) for c in cands], "schedule": repr(rule)}
  checkpointer = RunCheckpointer(folder, description)
  if not resume and checkpointer.latest_epoch() is not None:
    checkpointer.close()
    raise CheckpointError(
        f"{checkpointer.directory} holds population checkpoints of an "
        "earlier call; pass resume=True to continue it, or use an empty "
        "folder")
  return checkpointer


def _check_seeds(seeds: Any) -> list[int]:
  if isinstance(seeds, (list, tuple)) or (
      isinstance(seeds, (np.ndarray, jax.Array)) and seeds.ndim == 1):
    seed_list = list(np.asarray(seeds)) if not isinstance(
        seeds, (list, tuple)) else list(seeds)
    if not seed_list:
      raise ValueError("seeds is empty: give an int or a non-empty sequence")
  else:
    seed_list = [seeds]
  for i, seed in enumerate(seed_list):
    check_seed(seed, f"seeds[{i}]" if len(seed_list) > 1 else "seeds")
  if len(set(int(s) for s in seed_list)) != len(seed_list):
    raise ValueError(f"seeds {seed_list} repeats a seed: populations would "
                     "be identical")
  return [int(s) for s in seed_list]


def _member_recipe(recipe: Any, rate: float) -> tuple[Recipe, tuple]:
  """``(the program's recipe, the members' strategy names)``."""
  if recipe is None:
    recipe = [Recipe(name, rate, momentum=MEMBER_MOMENTUM, strategy=factory)
              for name, factory in MEMBER_STRATEGIES.items()]
  recipes = [recipe] if isinstance(recipe, Recipe) else recipe
  if isinstance(recipes, (str, bytes)) or not isinstance(
      recipes, Sequence) or not recipes:
    raise ValueError(f"recipe must be a lrtransfer.recipes.Recipe, a "
                     f"non-empty sequence of them, or None; got {recipe!r}")
  for one in recipes:
    if not isinstance(one, Recipe):
      raise ValueError(f"recipe must be a lrtransfer.recipes.Recipe or a "
                       f"sequence of them, got {type(one).__name__}")
    if not one.from_source:
      raise ValueError(
          f"recipe {one.name!r} has from_source=False: fit_auto decides what "
          "to copy per member; pass transfer_layers=(0,) for members that "
          "all train from scratch")
    if one.l2sp_alpha:
      raise ValueError(
          f"recipe {one.name!r} uses L2-SP (l2sp_alpha={one.l2sp_alpha}): "
          "its pull depends on which layers were copied, which differs "
          "between members; use a recipe without l2sp_alpha")
  names = tuple(one.name for one in recipes)
  if len(recipes) == 1:
    return recipes[0], names
  return strategies_lib.combine_recipes(recipes), names


def _check_memory(model: nnx.Module, program, num_members: int,
                  num_seeds: int, epochs: int) -> None:
  """Refuses a population that cannot fit, before its members are built."""
  num_params = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(
      nnx.state(model, nnx.Param)))
  runs = num_members * num_seeds
  # sweep_bytes' copies, and the best-evaluation copy kept per member.
  needed = (sizes.sweep_bytes(runs, num_params)
            + float(runs) * num_params * np.dtype(np.float32).itemsize)
  sizes.check_fits(f"a population of {num_members} members x {num_seeds} "
                   f"seeds = {runs} runs of a {num_params}-parameter model",
                   needed, on="device")
  per_epoch = sum(int(np.prod(leaf.shape)) or 1
                  for leaf in program.log_shapes().values())
  sizes.check_fits(f"a history of epochs={epochs} x {runs} members",
                   sizes.history_bytes(epochs, runs, per_epoch))
