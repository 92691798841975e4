"""Population schedules replayed on recorded validation curves.

``population.py`` runs every member of a population (base rates x copy
depths) to the end and records its per-epoch validation (and, on the report
set, test) curves. The schedules that only *stop* members early are a
function of those curves, so they are computed from them exactly instead of
being run again:

* **full** (every member to the end): the member and epoch with the best
  monitored value, ``argbest_{m, t <= E} v[m, t]``; ``K * E`` member-epochs.
* **successive halving** (Jamieson & Talwalkar 2016; Li et al. 2018): rungs
  ``(t_1, k_1), (t_2, k_2), ...``; at epoch ``t_i`` the ``k_i`` alive
  members with the best monitored value so far, ``b[m, t_i] = best_{t <=
  t_i} v[m, t]``, go on, the others stop. A stopped member keeps its best
  evaluation up to its stop epoch. The chosen member is
  ``argbest_m b[m, stop_m]`` (a survivor's best-so-far is never behind a
  member it outlived: it was ahead at the rung and best-so-far only
  improves). Member-epochs ``sum_m stop_m``. A member's training does not
  depend on the others, so stopping it early changes nothing in the
  survivors' curves: the replay is exactly what a masked or shrinking
  population computes, up to float reassociation of a smaller ``vmap``.

Population-based training (Jaderberg et al. 2017) copies one member's
weights into another, so its members' curves differ from independent runs:
it needs real runs (``lrtransfer.train.fit_auto``), not a replay.

Ties: the first member in population order and, within a member, the first
epoch reaching its best value (``FitProgram`` keeps an evaluation only when
it is strictly better); NaN is never better.

References:
  Jamieson, Talwalkar, "Non-stochastic Best Arm Identification and
  Hyperparameter Optimization", AISTATS 2016. https://arxiv.org/abs/1502.07943
  Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, "Hyperband: A Novel
  Bandit-Based Approach to Hyperparameter Optimization", JMLR 2018.
  https://arxiv.org/abs/1603.06560
  Jaderberg et al., "Population Based Training of Neural Networks", 2017.
  https://arxiv.org/abs/1711.09846
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Halving:
  """A successive-halving schedule: after epoch ``rungs[i][0]`` the best
  ``rungs[i][1]`` members go on. No rungs: the full population."""
  rungs: tuple[tuple[int, int], ...] = ()
  label: str = "full"

  def stops(self, signed: np.ndarray) -> np.ndarray:
    """Stop epoch (1-based, last epoch run) of each member.

    Args:
      signed: ``[members, epochs]`` monitored values, larger is better,
        NaN already replaced by ``-inf``.
    """
    members, epochs = signed.shape
    stop = np.full(members, epochs)
    alive = np.arange(members)
    best_so_far = np.maximum.accumulate(signed, axis=1)
    for epoch, keep in self.rungs:
      if epoch >= epochs or keep >= len(alive):
        continue
      score = best_so_far[alive, epoch - 1]
      # Stable: among equal scores the earlier member goes on.
      order = np.argsort(-score, kind="stable")
      stop[alive[order[keep:]]] = epoch
      alive = alive[np.sort(order[:keep])]
    return stop

  def member_epochs(self, members: int, epochs: int) -> int:
    """Total epochs run by all members (the schedule's compute)."""
    total, alive, last = 0, members, 0
    for epoch, keep in self.rungs:
      if epoch >= epochs or keep >= alive:
        continue
      total += alive * (epoch - last)
      alive, last = keep, epoch
    return total + alive * (epochs - last)


def explicit(members: int, eta: int, rung_epochs: Sequence[int]
             ) -> Halving:
  """Rungs at ``rung_epochs``; each keeps ``max(1, ceil(alive / eta))``."""
  rungs, alive = [], members
  for epoch in rung_epochs:
    alive = max(1, math.ceil(alive / eta))
    rungs.append((int(epoch), alive))
  return Halving(tuple(rungs), f"eta={eta} rungs="
                 + ",".join(str(e) for e in rung_epochs))


def anchored_epochs(members: int, epochs: int, eta: int) -> tuple[int, ...]:
  """Rung epochs counted back from the end: with ``m`` halvings to one
  member, rung ``i`` at ``round(epochs * eta**(i - m - 1))`` (the last at
  ``epochs / eta``, each earlier one ``eta`` times sooner: Hyperband's most
  aggressive bracket); rungs that round alike merge."""
  counts = [members]
  while counts[-1] > 1:
    counts.append(max(1, math.ceil(counts[-1] / eta)))
  m = len(counts) - 1
  return tuple(sorted({min(epochs - 1, max(1, round(
      epochs * eta ** (i - m - 1)))) for i in range(1, m + 1)}))


def forward_epochs(members: int, epochs: int, eta: int, first_rung: int,
                   max_rungs: int) -> tuple[int, ...]:
  """Rung epochs ``first_rung * eta**i`` (< epochs), at most ``max_rungs``
  of them and no more than needed to reach one member."""
  out, alive, epoch = [], members, first_rung
  while epoch < epochs and alive > 1 and len(out) < max_rungs:
    alive = max(1, math.ceil(alive / eta))
    out.append(epoch)
    epoch *= eta
  return tuple(out)


def halving_specs(members: int, epochs: int, budget: float
                  ) -> list[tuple[int, tuple[int, ...]]]:
  """``(eta, rung epochs)`` of the schedules whose member-epochs are at
  most ``budget`` runs: the anchored rule and forward geometric rungs
  (every first rung, every number of rungs), distinct plans only."""
  specs, seen = [], set()
  for eta in (2, 3, 4):
    options = [anchored_epochs(members, epochs, eta)]
    options += [forward_epochs(members, epochs, eta, first, rungs)
                for first in (1, 2, 3, 4, 5, 6, 8, 10) for rungs in
                range(1, 8)]
    for rung_epochs in options:
      schedule = explicit(members, eta, rung_epochs)
      if (rung_epochs and schedule.rungs not in seen
          and schedule.member_epochs(members, epochs) <= budget * epochs):
        seen.add(schedule.rungs)
        specs.append((eta, rung_epochs))
  return specs


def signed_values(values: np.ndarray, mode: str) -> np.ndarray:
  """Larger is better; NaN (a diverged run) becomes -inf, never chosen."""
  signed = values if mode == "max" else -values
  return np.where(np.isnan(signed), -np.inf, signed)


def choose(signed: np.ndarray, stop: np.ndarray) -> tuple[int, int]:
  """``(member, epoch index)`` of the best evaluation each member ran."""
  members, epochs = signed.shape
  ran = np.arange(epochs)[None, :] < stop[:, None]
  masked = np.where(ran, signed, -np.inf)
  best_epoch = np.argmax(masked, axis=1)  # first epoch reaching its best
  best = masked[np.arange(members), best_epoch]
  member = int(np.argmax(best))  # first member among equals
  return member, int(best_epoch[member])


def replay(schedule: Halving, monitor: np.ndarray, mode: str,
           scores: Sequence[np.ndarray],
           members: Optional[Sequence[int]] = None) -> dict:
  """One seed's population under ``schedule``.

  Args:
    schedule: the rungs (none: the full population).
    monitor: ``[members, epochs]`` monitored validation values.
    mode: "max" or "min" for ``monitor``.
    scores: ``[members, epochs]`` curves read at the chosen evaluation (a
      held-out validation half, the test accuracy).
    members: the candidate subset (indices into the first axis); default all.

  Returns:
    ``{member, epoch, scores, member_epochs}`` (member: index into the full
    first axis; epoch: 1-based).
  """
  index = np.arange(monitor.shape[0]) if members is None else np.asarray(
      members)
  signed = signed_values(monitor[index], mode)
  stop = schedule.stops(signed)
  member, epoch = choose(signed, stop)
  chosen = int(index[member])
  return {"member": chosen, "epoch": epoch + 1,
          "scores": [float(s[chosen, epoch]) for s in scores],
          "member_epochs": int(stop.sum())}
