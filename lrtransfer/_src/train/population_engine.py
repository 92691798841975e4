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
import math
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train.population_strategies import with_strategy_index
from lrtransfer._src.train.program import FitCarry, FitProgram, RunInputs
from lrtransfer._src.train.runner import compile_cached, data_arrays

# With a checkpoint folder, a population is saved at every decision and at
# least this many times over a run (the chunks change no arithmetic: the
# data order derives from the seed and the epoch).
CHECKPOINTS_PER_RUN = 10
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
            seeds: list, train, val,
            strategy_index: Optional[np.ndarray] = None) -> "Population":
    """``states[s][k]``: the ``(params, rest)`` of member ``k`` of seed
    ``s``; ``rates[s, k]`` its base rate; ``strategy_index[k]`` its
    strategy among a combined recipe's
    (:func:`population_strategies.combine_recipes`)."""
    flat = [state for per_seed in states for state in per_seed]
    params, rest = jax.tree.map(lambda *leaves: jnp.stack(leaves), *flat)
    num_seeds, num_members = rates.shape
    lr = jnp.asarray(rates.reshape(-1), jnp.float32)
    carry = jax.vmap(program.init, in_axes=(0, 0, None, 0))(
        params, rest, None, lr)
    if strategy_index is not None:
      carry = carry._replace(opt_state=with_strategy_index(
          carry.opt_state, np.tile(strategy_index, num_seeds)))
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    data = data_arrays(train, val)
    if program.mesh is not None:
      # Data-parallel as fit: every row replicated, each batch split over
      # the devices inside the program.
      replicated = NamedSharding(program.mesh, PartitionSpec())
      carry, keys, data = jax.device_put((carry, keys, data), replicated)
    return cls(program, carry,
               np.tile(np.arange(num_members), (num_seeds, 1)),
               rates.astype(np.float64).copy(),
               np.tile(np.arange(num_members), (num_seeds, 1)), keys, data,
               seeds)

  @property
  def shape(self) -> tuple[int, int]:
    return self.rows.shape

  def inputs(self) -> RunInputs:
    num_seeds, n = self.shape
    seed_of_row = np.repeat(np.arange(num_seeds), n)
    rate = np.take_along_axis(self.rates, self.rows, 1).reshape(-1)
    inputs = RunInputs(self.keys[seed_of_row], self.data, None,
                       jnp.asarray(rate, jnp.float32))
    if self.program.mesh is None:
      return inputs
    return jax.device_put(inputs, NamedSharding(self.program.mesh,
                                                PartitionSpec()))

  def gather(self, index: np.ndarray) -> None:
    """Row ``i`` becomes old row ``index[i]`` (copies or a subset)."""
    index = jnp.asarray(index)
    self.carry = jax.tree.map(lambda leaf: leaf[index], self.carry)
    if self.program.mesh is not None:  # gathers may drop the replication
      self.carry = jax.device_put(self.carry, NamedSharding(
          self.program.mesh, PartitionSpec()))

  def best_so_far(self) -> np.ndarray:
    """``[seeds, n]`` best monitored values so far, signed so that lower is
    better (the program keeps them signed: ``-v`` in max mode)."""
    return np.asarray(self.carry.best_value, np.float64).reshape(self.shape)

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


def alive_after(decisions_at: dict, num_members: int, epoch: int) -> int:
  """Members running after ``epoch`` epochs (successive halving's plan)."""
  alive = num_members
  for rung, survivors in sorted(decisions_at.items()):
    if rung <= epoch and survivors is not None:
      alive = survivors
  return alive


def _new_ledger(program: FitProgram, num_seeds: int, num_members: int,
                epochs: int, num_decisions: int) -> dict:
  """The host-side record of a run, with fixed shapes (checkpointable)."""
  return {
      "history": {name: np.full((num_seeds, num_members, epochs,
                                 *leaf.shape), np.nan, leaf.dtype)
                  for name, leaf in program.log_shapes().items()},
      "best_value": np.full((num_seeds, num_members), np.inf),
      "best_epoch": np.zeros((num_seeds, num_members), np.int64),
      "stopped": np.zeros((num_seeds, num_members), np.int64),
      "spent": np.zeros((num_seeds, num_members), np.int64),
      # Per decision: the members kept (-1 padded) and the copies made
      # (member, copied_from, new rate; NaN padded).
      "kept": np.full((num_decisions, num_seeds, num_members), -1, np.int64),
      "copies": np.full((num_decisions, num_seeds, num_members, 3), np.nan),
  }


def run_population(pop: Population, rule: rules.Schedule, epochs: int,
                   checkpointer: Optional[RunCheckpointer] = None,
                   resume: bool = False) -> Outcome:
  """Trains ``pop`` for ``epochs`` under ``rule``.

  With a ``checkpointer``, the population (carry, rows, rates, the ledger)
  is saved at every decision and every ``epochs / CHECKPOINTS_PER_RUN``
  epochs; ``resume`` continues from the latest save (the population's size
  there follows from the plan).
  """
  program = pop.program
  num_seeds, num_members = pop.shape
  decisions_at = decision_epochs(rule, num_members, epochs)
  order = sorted(decisions_at)
  ledger = _new_ledger(program, num_seeds, num_members, epochs, len(order))
  done = 0
  if resume and checkpointer is not None and (
      checkpointer.latest_epoch() is not None):
    done = checkpointer.latest_epoch()
    alive = alive_after(decisions_at, num_members, done)
    like_rows = np.zeros((num_seeds, alive), np.int64)
    like_carry = jax.tree.map(
        lambda leaf: leaf[:num_seeds * alive], pop.carry)
    _, state = checkpointer.restore({
        "carry": like_carry, "rows": like_rows, "rates": pop.rates,
        "params_from": pop.params_from, "ledger": ledger})
    pop.carry, ledger = state["carry"], state["ledger"]
    ledger = jax.tree.map(np.asarray, ledger)
    pop.rows = np.asarray(state["rows"])
    pop.rates = np.asarray(state["rates"], np.float64)
    pop.params_from = np.asarray(state["params_from"])
    if program.mesh is not None:
      pop.carry = jax.device_put(pop.carry, NamedSharding(program.mesh,
                                                          PartitionSpec()))
  seconds = compile_seconds = 0.0
  seed_axis = np.arange(num_seeds)[:, None]
  boundaries = {*decisions_at, epochs}
  if checkpointer is not None:
    every = max(1, math.ceil(epochs / CHECKPOINTS_PER_RUN))
    boundaries |= set(range(every, epochs, every))
  for boundary in sorted(boundaries):
    if boundary <= done:
      continue
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
      ledger["history"][name][seed_axis, pop.rows, done:boundary] = (
          value.reshape(num_seeds, n, *value.shape[1:]))
    done = boundary
    ledger["spent"][seed_axis, pop.rows] += length
    ledger["stopped"][seed_axis, pop.rows] = done
    ledger["best_value"][seed_axis, pop.rows] = pop.best_so_far()
    ledger["best_epoch"][seed_axis, pop.rows] = np.asarray(
        pop.carry.best_epoch).reshape(num_seeds, n)
    if done in decisions_at:
      step = order.index(done)
      if isinstance(rule, rules.Halving):
        _halve(pop, decisions_at[done])
      else:
        ledger["copies"][step] = _exploit(pop, rule, done)
      ledger["kept"][step][:, :pop.shape[1]] = pop.rows
    if checkpointer is not None:
      checkpointer.save(done, {
          "carry": pop.carry, "rows": pop.rows, "rates": pop.rates,
          "params_from": pop.params_from, "ledger": ledger})
  if checkpointer is not None:
    checkpointer.close()
  # The best member of each population: stopped members never beat a
  # survivor (a survivor's best-so-far was lower at the rung, and only
  # falls), so the running rows hold it.
  n = pop.shape[1]
  values = pop.best_so_far()
  position = np.asarray([rules.ranked(values[s])[0]
                         for s in range(num_seeds)])
  chosen = pop.rows[np.arange(num_seeds), position]
  take = jnp.asarray(np.arange(num_seeds) * n + position)
  pick = lambda tree: jax.tree.map(lambda leaf: leaf[take], tree)
  return Outcome(ledger["history"], _decisions(ledger, order, pop.seeds),
                 chosen, ledger["best_value"], ledger["best_epoch"],
                 ledger["stopped"], ledger["spent"], pop.rates.copy(),
                 pop.params_from.copy(), pick(pop.carry.best_params),
                 pick(pop.carry.best_rest), seconds, compile_seconds)


def _decisions(ledger: dict, order: list, seeds: list) -> list:
  """The ledger's decisions as :class:`rules.Decision` records."""
  decisions = []
  for step, epoch in enumerate(order):
    for s, seed in enumerate(seeds):
      before = (ledger["kept"][step - 1][s] if step else
                np.arange(ledger["kept"].shape[2]))
      kept = ledger["kept"][step][s]
      kept = tuple(int(k) for k in kept if k >= 0)
      stopped = tuple(sorted(int(k) for k in before
                             if k >= 0 and k not in kept))
      copies = tuple((int(m), int(f), float(r))
                     for m, f, r in ledger["copies"][step][s]
                     if not np.isnan(m))
      decisions.append(rules.Decision(epoch, seed, kept, stopped, copies))
  return decisions


def _halve(pop: Population, keep: int) -> None:
  """Successive halving's rung: the best ``keep`` of each seed continue."""
  num_seeds, n = pop.shape
  values = pop.best_so_far()
  positions = np.stack([rules.survivors(values[s], keep)
                        for s in range(num_seeds)])
  pop.gather((np.arange(num_seeds)[:, None] * n + positions).reshape(-1))
  pop.rows = np.take_along_axis(pop.rows, positions, 1)


def _exploit(pop: Population, rule: rules.PBT, epoch: int) -> np.ndarray:
  """PBT's exploit/explore: losers copy leaders and perturb their rate.

  The factor of a copy is drawn from ``NumPy default_rng([seed, epoch])``:
  a resumed run draws the same ones.

  Returns:
    ``[seeds, K, 3]``: ``(member, copied_from, new rate)`` per copy, NaN
    padded.
  """
  num_seeds, n = pop.shape
  latest = pop.signed(pop.carry.last[pop.program.monitor])
  index = np.arange(num_seeds * n)
  copies = np.full((num_seeds, pop.rates.shape[1], 3), np.nan)
  for s in range(num_seeds):
    rng = np.random.default_rng([pop.seeds[s] % 2**32, epoch])
    for i, (loser, leader) in enumerate(
        rules.exploit_pairs(latest[s], rule.fraction)):
      index[s * n + loser] = s * n + leader
      member, source = int(pop.rows[s, loser]), int(pop.rows[s, leader])
      pop.rates[s, member] = pop.rates[s, source] * float(
          rng.choice(rule.perturb))
      pop.params_from[s, member] = pop.params_from[s, source]
      copies[s, i] = (member, source, pop.rates[s, member])
  pop.gather(index)
  return copies
