"""Running a ``fit_auto`` population: compiled chunks, host decisions between.

The population of every seed is one stack of :class:`FitCarry` rows,
seed-major (``row = seed_index * n + position``), run by the vmapped
:meth:`FitProgram.run` for the epochs up to the next decision. Between
chunks the host applies the schedule's rule (``population_rules``) and
gathers rows: successive halving keeps a smaller stack (one compiled
program per population size and chunk length, cached), PBT overwrites the
rows of the bottom members with copies of the top ones and changes their
rates (``RunInputs.learning_rate`` is per-row data: nothing recompiles).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train.program import FitCarry, FitProgram, RunInputs
from lrtransfer._src.train.runner import compile_cached, data_arrays

# Per-row axes: keys and rates vary, data is shared, no source params.
_IN_AXES = RunInputs(0, None, None, 0)


@dataclasses.dataclass
class Population:
  """The running members of every seed's population."""
  program: FitProgram
  carry: FitCarry  # rows [seeds * n]
  rows: np.ndarray  # int [seeds, n]: the member index of each row
  rates: np.ndarray  # float [seeds, K]: each member's current base rate
  params_from: np.ndarray  # int [seeds, K]: whose lineage a member holds
  keys: Any  # typed PRNG keys [seeds]: each population's data order
  data: tuple
  seeds: list

  @classmethod
  def start(cls, program: FitProgram, states: list, rates: np.ndarray,
            seeds: list, train, val) -> "Population":
    """``states[s][k]``: the ``(params, rest)`` of member ``k`` of seed
    ``s``; ``rates[s, k]`` its base rate."""
    flat = [state for per_seed in states for state in per_seed]
    params, rest = jax.tree.map(lambda *leaves: jnp.stack(leaves), *flat)
    num_seeds, num_members = rates.shape
    lr = jnp.asarray(rates.reshape(-1), jnp.float32)
    carry = jax.vmap(program.init, in_axes=(0, 0, None, 0))(
        params, rest, None, lr)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    return cls(program, carry,
               np.tile(np.arange(num_members), (num_seeds, 1)),
               rates.astype(np.float64).copy(),
               np.tile(np.arange(num_members), (num_seeds, 1)), keys,
               data_arrays(train, val), seeds)

  @property
  def shape(self) -> tuple[int, int]:
    return self.rows.shape

  def inputs(self) -> RunInputs:
    num_seeds, n = self.shape
    seed_of_row = np.repeat(np.arange(num_seeds), n)
    rate = np.take_along_axis(self.rates, self.rows, 1).reshape(-1)
    return RunInputs(self.keys[seed_of_row], self.data, None,
                     jnp.asarray(rate, jnp.float32))

  def gather(self, index: np.ndarray) -> None:
    """Row ``i`` becomes old row ``index[i]`` (copies or a subset)."""
    index = jnp.asarray(index)
    self.carry = jax.tree.map(lambda leaf: leaf[index], self.carry)

  def signed(self, values) -> np.ndarray:
    """``[seeds, n]`` values signed so that lower is better."""
    sign = 1.0 if self.program.mode == "min" else -1.0
    return sign * np.asarray(values, np.float64).reshape(self.shape)


@dataclasses.dataclass
class Outcome:
  """What a population run produced (see ``AutoResult``)."""
  history: dict
  decisions: list
  chosen: np.ndarray  # [seeds] member index
  best_value: np.ndarray  # [seeds, K] signed best value (inf: none)
  best_epoch: np.ndarray  # [seeds, K]
  stopped_epoch: np.ndarray  # [seeds, K]
  member_epochs: np.ndarray  # [seeds, K]
  final_rate: np.ndarray  # [seeds, K]
  params_from: np.ndarray  # [seeds, K]
  best_params: Any  # [seeds, ...] the chosen members' best parameters
  best_rest: Any
  seconds: float
  compile_seconds: float


def decision_epochs(rule: rules.Schedule, num_members: int, epochs: int
                    ) -> dict[int, Any]:
  """``{epoch: what happens after it}``: survivors (halving) or None
  (a PBT exploit step)."""
  if isinstance(rule, rules.Halving):
    return dict(rules.halving_plan(rule, num_members, epochs))
  if isinstance(rule, rules.PBT):
    return {epoch: None for epoch in rules.pbt_epochs(rule, epochs)}
  return {}


def run_population(pop: Population, rule: rules.Schedule, epochs: int,
                   checkpoint_dir: Any, resume: bool, recipe) -> Outcome:
  """Trains ``pop`` for ``epochs`` under ``rule``."""
  del checkpoint_dir, resume, recipe  # see population_checkpoint
  program = pop.program
  num_seeds, num_members = pop.shape
  decisions_at = decision_epochs(rule, num_members, epochs)
  history = {name: np.full((num_seeds, num_members, epochs, *leaf.shape),
                           np.nan, leaf.dtype)
             for name, leaf in program.log_shapes().items()}
  best_value = np.full((num_seeds, num_members), np.inf)
  best_epoch = np.zeros((num_seeds, num_members), np.int64)
  stopped = np.zeros((num_seeds, num_members), np.int64)
  spent = np.zeros((num_seeds, num_members), np.int64)
  rng = [np.random.default_rng(seed) for seed in pop.seeds]
  decisions: list = []
  seconds = compile_seconds = 0.0
  done = 0
  seed_axis = np.arange(num_seeds)[:, None]
  for boundary in sorted({*decisions_at, epochs}):
    length = boundary - done
    inputs = pop.inputs()
    run, compiled_in = compile_cached(
        ("population", program, length),
        jax.vmap(lambda c, i, n=length: program.run(c, i, n),
                 in_axes=(0, _IN_AXES)), pop.carry, inputs)
    compile_seconds += compiled_in
    start = time.perf_counter()
    pop.carry, logs = run(pop.carry, inputs)
    jax.block_until_ready(pop.carry)
    seconds += time.perf_counter() - start
    n = pop.shape[1]
    for name, value in logs.items():
      value = np.asarray(value)
      history[name][seed_axis, pop.rows, done:boundary] = value.reshape(
          num_seeds, n, *value.shape[1:])
    done = boundary
    spent[seed_axis, pop.rows] += length
    stopped[seed_axis, pop.rows] = done
    best_value[seed_axis, pop.rows] = pop.signed(pop.carry.best_value)
    best_epoch[seed_axis, pop.rows] = np.asarray(
        pop.carry.best_epoch).reshape(num_seeds, n)
    if done in decisions_at and isinstance(rule, rules.Halving):
      decisions += _halve(pop, decisions_at[done], done)
    elif done in decisions_at:
      decisions += _exploit(pop, rule, done, rng)
  # The best member of each population: stopped members never beat a
  # survivor (a survivor's best-so-far was lower at the rung, and only
  # falls), so the running rows hold it.
  n = pop.shape[1]
  values = pop.signed(pop.carry.best_value)
  position = np.asarray([rules.ranked(values[s])[0]
                         for s in range(num_seeds)])
  chosen = pop.rows[np.arange(num_seeds), position]
  take = jnp.asarray(np.arange(num_seeds) * n + position)
  pick = lambda tree: jax.tree.map(lambda leaf: leaf[take], tree)
  return Outcome(history, decisions, chosen, best_value, best_epoch,
                 stopped, spent, pop.rates.copy(), pop.params_from.copy(),
                 pick(pop.carry.best_params), pick(pop.carry.best_rest),
                 seconds, compile_seconds)


def _halve(pop: Population, keep: int, epoch: int) -> list:
  """Successive halving's rung: the best ``keep`` of each seed continue."""
  num_seeds, n = pop.shape
  values = pop.signed(pop.carry.best_value)
  positions = np.stack([rules.survivors(values[s], keep)
                        for s in range(num_seeds)])
  decisions = []
  for s in range(num_seeds):
    kept = pop.rows[s, positions[s]]
    gone = sorted(set(pop.rows[s].tolist()) - set(kept.tolist()))
    decisions.append(rules.Decision(epoch, pop.seeds[s], tuple(map(int, kept)),
                              tuple(gone), ()))
  pop.gather((np.arange(num_seeds)[:, None] * n + positions).reshape(-1))
  pop.rows = np.take_along_axis(pop.rows, positions, 1)
  return decisions


def _exploit(pop: Population, rule: rules.PBT, epoch: int, rng: list
             ) -> list:
  """PBT's exploit/explore: losers copy leaders and perturb their rate."""
  num_seeds, n = pop.shape
  sign = 1.0 if pop.program.mode == "min" else -1.0
  latest = sign * np.asarray(pop.carry.last[pop.program.monitor],
                             np.float64).reshape(num_seeds, n)
  index = np.arange(num_seeds * n)
  decisions = []
  for s in range(num_seeds):
    copies = []
    for loser, leader in rules.exploit_pairs(latest[s], rule.fraction):
      index[s * n + loser] = s * n + leader
      member, source = int(pop.rows[s, loser]), int(pop.rows[s, leader])
      factor = float(rng[s].choice(rule.perturb))
      pop.rates[s, member] = pop.rates[s, source] * factor
      pop.params_from[s, member] = pop.params_from[s, source]
      copies.append((member, source, float(pop.rates[s, member])))
    decisions.append(rules.Decision(epoch, pop.seeds[s],
                              tuple(map(int, pop.rows[s])), (),
                              tuple(copies)))
  pop.gather(index)
  return decisions
