"""``fit_auto``: the base rate and what to transfer, chosen inside one program.

A population of members -- candidate base rates x candidate copy depths
(from scratch, all body levels but the last, the whole body, and the whole
model with the source head when the label sets match) -- trains as one
``jax.vmap``-ed :class:`~lrtransfer._src.train.program.FitProgram`, judged
on the monitored validation value at every evaluation. The schedules
(``population_rules``) stop or replace weak members between compiled chunks
of epochs; the member with the best validation value wins, never by test.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lrtransfer._src import sizes
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.train import population_members as members_lib
from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train.checks import as_split, check_data
from lrtransfer._src.train.fitting import check_seed, check_sizes
from lrtransfer._src.train.population_engine import Population, run_population
from lrtransfer._src.train.population_rules import Decision
from lrtransfer._src.train.program import LossFn, _nested
from lrtransfer._src.train.runner import build_program, split_model
from lrtransfer._src.transfer.depths import remember_depths

# The candidate base rates: 100x around the usual fine-tuning rates, the
# grid a careful user runs by hand (five rates, a factor ~3 apart).
DEFAULT_LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3)
# The schedule a call without schedule= runs (see population_rules).
DEFAULT_SCHEDULE = "halving"
# The value members are judged on (and the strategies read).
DEFAULT_MONITOR = "val_loss"
# Members' strategy when recipe=None: None is a constant rate (SGD-momentum
# 0.9); a strategy factory (e.g. recipes.recommended_recipe().strategy)
# would move each member's rate from its validation values.
MEMBER_STRATEGY = None
MEMBER_MOMENTUM = 0.9


class MemberRow(NamedTuple):
  """One member of one seed's population, as the member table shows it."""
  seed: int  # the population's seed
  member: int  # index of the candidate (depth-major, then rate)
  learning_rate: float  # the candidate base rate it started with
  transfer_layers: int  # levels copied from the source (0: from scratch)
  keep_head: bool  # whether the source head was copied
  strategy: str  # the recipe's name
  best_value: float  # best monitored validation value (NaN: none finite)
  best_epoch: int  # 1-based epoch of best_value (0: none)
  stopped_epoch: int  # epochs it trained (== epochs unless stopped early)
  member_epochs: int  # compute it used, in epochs
  final_learning_rate: float  # its rate at the end (PBT perturbs rates)
  params_from: int  # the member whose lineage it holds at the end (PBT)
  chosen: bool  # the population's pick


@dataclasses.dataclass
class AutoResult:
  """The outcome of :func:`fit_auto`.

  Attributes:
    candidates: the members' settings, ``[K]`` :class:`Candidate`.
    members: the member table, one :class:`MemberRow` per (seed, member).
    decisions: the trace of the schedule's decisions (:class:`Decision`).
    history: per-member arrays ``[seeds, K, epochs, ...]`` (NaN where a
      member did not train: after it stopped).
    chosen: ``[seeds]`` the chosen member of each seed's population.
    best_value: ``[seeds]`` the chosen members' best monitored values.
    member_epochs: compute of one seed's population, in member-epochs.
    compute: ``member_epochs / epochs``, the compute in runs.
    test_accuracy: ``[seeds]`` test accuracy of the chosen members at their
      best evaluation (with ``test``), else None.
    seconds, compile_seconds: wall time of the training (compilation
      excluded) and of compilation.
    monitor, mode: what the members were judged on.
  """
  candidates: tuple
  members: list
  decisions: list
  history: dict
  chosen: np.ndarray
  best_value: np.ndarray
  member_epochs: int
  compute: float
  test_accuracy: Optional[np.ndarray]
  seconds: float
  compile_seconds: float
  monitor: str
  mode: str
  seeds: tuple
  _best_params: Any = dataclasses.field(repr=False, default=None)
  _best_rest: Any = dataclasses.field(repr=False, default=None)
  _graphs: Any = dataclasses.field(repr=False, default=None)
  _depths: Any = dataclasses.field(repr=False, default=None)
  _lineage: Any = dataclasses.field(repr=False, default=None)

  def model(self, seed_index: int = 0) -> nnx.Module:
    """The chosen member of population ``seed_index`` at its best
    evaluation (eval mode; it records what was copied from the source)."""
    if not 0 <= seed_index < len(self.seeds):
      raise IndexError(f"seed_index={seed_index} out of range for "
                       f"{len(self.seeds)} seeds")
    take = lambda tree: jax.tree.map(lambda x: x[seed_index], tree)
    graph = self._graphs[self._lineage[seed_index]]
    module = nnx.merge(graph, *jax.device_get(
        (take(self._best_params), take(self._best_rest))))
    remember_depths(module, self._depths)
    return module

  def table(self, seed_index: int = 0) -> str:
    """The member table of one seed's population as aligned text."""
    seed = self.seeds[seed_index]
    lines = [f"{'member':>6} {'rate':>8} {'copied':>6} {'head':>4} "
             f"{'best ' + self.monitor:>16} {'at':>4} {'stopped':>7} "
             f"{'epochs':>6} {'rate@end':>8} {'from':>4}  "]
    for row in self.members:
      if row.seed != seed:
        continue
      lines.append(
          f"{row.member:>6} {row.learning_rate:>8.3g} "
          f"{row.transfer_layers:>6} {'yes' if row.keep_head else 'no':>4} "
          f"{row.best_value:>16.4f} {row.best_epoch:>4} "
          f"{row.stopped_epoch:>7} {row.member_epochs:>6} "
          f"{row.final_learning_rate:>8.3g} {row.params_from:>4}  "
          + ("<- chosen" if row.chosen else ""))
    return "\n".join(lines)


def fit_auto(source: nnx.Module, train: Any, val: Any, *,
             num_outputs: Optional[int] = None,
             target: Optional[nnx.Module] = None,
             learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
             transfer_layers: Optional[Sequence[Any]] = None,
             schedule: Union[str, rules.Schedule] = DEFAULT_SCHEDULE,
             recipe: Optional[Recipe] = None, epochs: int = 50,
             batch_size: int = 32, seeds: Union[int, Sequence[int]] = 0,
             loss_fn: Optional[LossFn] = None,
             metrics: Optional[dict[str, LossFn]] = None,
             monitor: str = DEFAULT_MONITOR, mode: str = "auto",
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
  data never takes part in a decision.

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
      0, all body levels but the last, all of them, and the whole model
      with its head when the output sizes match.
    schedule: ``"full"``, ``"halving"``, ``"pbt"`` or a
      :class:`Full`/:class:`Halving`/:class:`PBT` config.
    recipe: the members' optimizer and strategy (its base rate is replaced
      by each member's); None: SGD-momentum 0.9 at a constant rate
      (``MEMBER_STRATEGY``). A recipe with L2-SP is refused (its pull
      depends on what was copied, which differs between members).
    epochs, batch_size: as :func:`fit`.
    seeds: an int, or a sequence: one independent population per seed
      (its own initialisation and data order), all in one vmap.
    loss_fn, metrics, monitor, mode: as :func:`fit`.
    test: scored by accuracy on the chosen members only (reporting).
    checkpoint_dir, resume: save the population at every decision and
      continue an interrupted call.
    devices: run data-parallel over these devices (as :func:`fit`).

  Returns:
    An :class:`AutoResult`: ``model(seed_index)``, the member table,
    decisions, per-member histories, compute.

  Raises:
    ValueError: empty or non-positive rates, copy depths out of range, an
      unknown schedule, an L2-SP recipe, a halving plan above its budget,
      and every check of :func:`fit`.
    lrtransfer.experiment.SizeError: the population cannot fit in memory
      (checked before the members are built).

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
  check_sizes(epochs, batch_size)
  seed_list = _check_seeds(seeds)
  recipe = _member_recipe(recipe, rates[0])
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
        source, first, head=recipe.head, depth_fn=recipe.depth_fn))
  else:
    options = members_lib.check_depths(transfer_layers, levels)
  cands = members_lib.candidates(rates, options)
  check_data(first, splits, loss_fn is None)
  program = build_program(first, recipe, len(train), epochs, batch_size,
                          loss_fn=loss_fn, metrics=metrics, monitor=monitor,
                          mode=mode, restore_best=True)
  # What was copied differs between members; nothing reads it once L2-SP
  # is refused, and one program must serve them all.
  program = dataclasses.replace(program, transferred=None)
  _check_memory(first, program, len(cands), len(seed_list), epochs)
  if devices is not None and len(devices) > 1:
    raise NotImplementedError(
        "fit_auto runs on one device; devices= with several devices is not "
        "supported yet (pass devices=None)")

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
      seed_list, train, val)
  outcome = run_population(population, plan_rule, epochs, checkpoint_dir,
                           resume, recipe)

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
          cand.keep_head, recipe.name,
          float(sign * signed) if np.isfinite(signed) else float("nan"),
          int(outcome.best_epoch[s, k]), int(outcome.stopped_epoch[s, k]),
          int(outcome.member_epochs[s, k]),
          float(outcome.final_rate[s, k]), int(outcome.params_from[s, k]),
          bool(k == chosen[s])))
  accuracy = None
  if test is not None:
    score = jax.jit(jax.vmap(program.test_accuracy,
                             in_axes=(0, 0, None, None)))
    accuracy = np.asarray(score(outcome.best_params, outcome.best_rest,
                                jnp.asarray(test.x), jnp.asarray(test.y)))
  spent = int(outcome.member_epochs[0].sum())
  return AutoResult(
      cands, rows, outcome.decisions, outcome.history, chosen,
      np.asarray([rows[s * len(cands) + chosen[s]].best_value
                  for s in range(len(seed_list))]),
      spent, spent / epochs, accuracy, outcome.seconds,
      outcome.compile_seconds, program.monitor, program.mode,
      tuple(seed_list), outcome.best_params, outcome.best_rest, graphs,
      _nested(program.depths), lineage)


def _check_seeds(seeds: Any) -> list[int]:
  if isinstance(seeds, (list, tuple, np.ndarray)):
    seed_list = list(seeds)
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


def _member_recipe(recipe: Optional[Recipe], rate: float) -> Recipe:
  if recipe is None:
    return Recipe("auto", rate, momentum=MEMBER_MOMENTUM,
                  strategy=MEMBER_STRATEGY)
  if not isinstance(recipe, Recipe):
    raise ValueError(f"recipe must be a lrtransfer.recipes.Recipe or None, "
                     f"got {type(recipe).__name__}")
  if recipe.l2sp_alpha:
    raise ValueError(
        f"recipe {recipe.name!r} uses L2-SP (l2sp_alpha="
        f"{recipe.l2sp_alpha}): its pull depends on which layers were "
        "copied, which differs between members; use a recipe without "
        "l2sp_alpha")
  return recipe


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
