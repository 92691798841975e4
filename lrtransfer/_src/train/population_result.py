"""What ``fit_auto`` returns: the chosen models, the member table, the trace."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from flax import nnx

from lrtransfer._src.train.runner import merge_model


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
    return merge_model(graph, take(self._best_params),
                       take(self._best_rest), self._depths)

  def summary(self) -> dict:
    """JSON-able figures: test accuracy, the chosen members, compute, the
    member table and the decisions."""
    chosen = [self.members[s * len(self.candidates) + int(k)]._asdict()
              for s, k in enumerate(self.chosen)]
    out = {"monitor": self.monitor, "mode": self.mode,
           "seeds": list(self.seeds), "chosen": chosen,
           "member_epochs": self.member_epochs, "compute_runs": self.compute,
           "seconds": self.seconds, "compile_seconds": self.compile_seconds,
           "members": [row._asdict() for row in self.members],
           "decisions": [d._asdict() for d in self.decisions]}
    if self.test_accuracy is not None:
      out.update(test_accuracy=self.test_accuracy.tolist(),
                 test_accuracy_mean=float(self.test_accuracy.mean()),
                 test_accuracy_std=float(self.test_accuracy.std()))
    return out

  def table(self, seed_index: int = 0) -> str:
    """The member table of one seed's population as aligned text: rate,
    copied levels, head kept, strategy (when several), best monitored
    value and its epoch, epochs trained, rate at the end and lineage
    (PBT), the chosen member marked."""
    seed = self.seeds[seed_index]
    several = len({c.strategy for c in self.candidates}) > 1
    columns = [
        ("member", lambda r: str(r.member)),
        ("rate", lambda r: f"{r.learning_rate:.3g}"),
        ("copied", lambda r: str(r.transfer_layers)),
        ("head", lambda r: "yes" if r.keep_head else "no"),
        *([("strategy", lambda r: r.strategy)] if several else []),
        (f"best {self.monitor}", lambda r: f"{r.best_value:.4f}"),
        ("at", lambda r: str(r.best_epoch)),
        ("epochs", lambda r: str(r.member_epochs)),
        ("rate@end", lambda r: f"{r.final_learning_rate:.3g}"),
        ("from", lambda r: str(r.params_from)),
    ]
    rows = [[name for name, _ in columns]] + [
        [cell(row) for _, cell in columns] + (["<- chosen"] if row.chosen
                                              else [])
        for row in self.members if row.seed == seed]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths))
             + ("  " + r[-1] if len(r) > len(columns) else "")
             for r in rows]
    return "\n".join(lines)
