"""The population schedules of ``fit_auto``: which members train when.

Three rules, each a frozen config whose defaults are this module's
constants (the one place the tuning study's picks live):

* :class:`Full` -- every member trains to the end; the best by validation
  wins. Compute: ``K`` member-epochs per epoch, ``K x`` one run.
* :class:`Halving` -- successive halving (Jamieson & Talwalkar 2016; the
  inner loop of Hyperband, Li et al. 2018): at each rung epoch the best
  ``ceil(n / eta)`` of the ``n`` running members by their best monitored
  validation value so far continue, the others stop.
* :class:`PBT` -- population-based training's exploit/explore (Jaderberg et
  al. 2017): every ``interval`` epochs the members of the bottom
  ``fraction`` by their latest monitored value take the parameters and
  optimizer state of the members of the top ``fraction`` and a perturbed
  copy of their learning rate.

Compute is counted in *member-epochs* (one member training one epoch),
:func:`member_epochs`; "``c x`` one run" means ``member_epochs / epochs``.
The decisions are taken on the host between compiled chunks of epochs, by
the pure NumPy functions here, so they can be tested on their own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional, Union

import numpy as np

# Successive halving keeps the best 1/HALVING_ETA at each rung. 2 (with the
# default plan: 20 members over 50 epochs -> rungs at epochs 2, 3, 6, 12, 25
# keeping 10, 5, 3, 2, 1; 2.68 runs) tied 3 (rungs 2, 6, 17) on the tuning
# set's held-out validation and keeps more members past the noisy first
# epochs (python benchmarks/population.py --set tuning).
HALVING_ETA = 2
# Successive halving may spend at most this many runs' worth of compute.
HALVING_BUDGET = 3.0
# PBT: exploit/explore this many times over a run (interval = epochs // n).
PBT_EXPLOITS = 8
# PBT: the bottom fraction copies the top fraction (truncation selection).
PBT_FRACTION = 0.25
# PBT: a copied rate is multiplied by one of these, drawn uniformly.
PBT_PERTURB = (0.5, 2.0)


class Decision(NamedTuple):
  """One decision of a schedule, for one seed's population."""
  epoch: int  # taken after this many epochs
  seed: int  # the population's seed
  kept: tuple  # members training after it
  stopped: tuple  # members stopped here (successive halving)
  copies: tuple  # ((member, copied_from, new_learning_rate), ...) (PBT)


@dataclasses.dataclass(frozen=True)
class Full:
  """Every member trains every epoch; the best by validation wins."""


@dataclasses.dataclass(frozen=True)
class Halving:
  """Successive halving inside the program.

  Attributes:
    eta: at a rung, ``n`` running members become ``max(1, ceil(n / eta))``.
    rungs: the epochs (``1 <= e < epochs``, increasing) after which members
      stop; None: :func:`halving_rungs`' geometric rule.
    budget: the most compute allowed, in runs (member-epochs / epochs); a
      plan above it is refused.
  """
  eta: int = HALVING_ETA
  rungs: Optional[tuple[int, ...]] = None
  budget: float = HALVING_BUDGET

  def __post_init__(self):
    if isinstance(self.eta, bool) or not isinstance(self.eta, int) or (
        self.eta < 2):
      raise ValueError(f"Halving eta must be an int >= 2, got {self.eta!r}")
    if not (isinstance(self.budget, (int, float)) and self.budget >= 1):
      raise ValueError(f"Halving budget must be a number >= 1 (runs), got "
                       f"{self.budget!r}")
    if self.rungs is not None:
      rungs = tuple(self.rungs)
      if not rungs or any(isinstance(r, bool) or not isinstance(r, int)
                          or r < 1 for r in rungs) or list(rungs) != sorted(
                              set(rungs)):
        raise ValueError(f"Halving rungs must be increasing ints >= 1 "
                         f"(epochs), got {self.rungs!r}")
      object.__setattr__(self, "rungs", rungs)


@dataclasses.dataclass(frozen=True)
class PBT:
  """Population-based training's exploit/explore at fixed intervals.

  Attributes:
    interval: epochs between exploit steps; None: ``max(1, epochs //
      PBT_EXPLOITS)``.
    fraction: the bottom ``fraction`` of a population copies its top
      ``fraction`` (at least one member each while the population has two).
    perturb: the factors a copied learning rate is multiplied by, one drawn
      uniformly per copy.
  """
  interval: Optional[int] = None
  fraction: float = PBT_FRACTION
  perturb: tuple[float, ...] = PBT_PERTURB

  def __post_init__(self):
    if self.interval is not None and (
        isinstance(self.interval, bool) or not isinstance(self.interval, int)
        or self.interval < 1):
      raise ValueError(f"PBT interval must be an int >= 1 (epochs), got "
                       f"{self.interval!r}")
    if not (isinstance(self.fraction, (int, float))
            and 0 < self.fraction <= 0.5):
      raise ValueError(f"PBT fraction must be in (0, 0.5], got "
                       f"{self.fraction!r}")
    perturb = tuple(self.perturb)
    if not perturb or any(not isinstance(f, (int, float)) or not f > 0
                          or not math.isfinite(f) for f in perturb):
      raise ValueError(f"PBT perturb must be positive factors, got "
                       f"{self.perturb!r}")
    object.__setattr__(self, "perturb", perturb)


Schedule = Union[Full, Halving, PBT]
SCHEDULES = {"full": Full, "halving": Halving, "pbt": PBT}


def as_schedule(schedule: Union[str, Schedule]) -> Schedule:
  """``"full"``, ``"halving"``, ``"pbt"`` (their defaults) or a config."""
  if isinstance(schedule, (Full, Halving, PBT)):
    return schedule
  if isinstance(schedule, str) and schedule.lower() in SCHEDULES:
    return SCHEDULES[schedule.lower()]()
  raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a "
                   f"Full/Halving/PBT config, got {schedule!r}")


def halving_rungs(num_members: int, epochs: int, eta: int,
                  stretch: float = 1.0) -> tuple[tuple[int, int], ...]:
  """The geometric rung rule: ``((epoch, survivors), ...)``.

  With ``m = ceil(log_eta K)`` halvings (so one member is left at the last
  rung), rung ``i = 1 .. m`` is at epoch
  ``max(1, round(stretch * epochs * eta^(i - m - 1)))`` -- for
  ``stretch = 1`` the last at ``epochs / eta``, each earlier one ``eta``
  times sooner, as Hyperband's most aggressive bracket -- and leaves
  ``n_i = ceil(n_{i-1} / eta)`` members (``n_0 = K``). Rungs that land on
  the same epoch are merged: the later survivor count applies there.
  Compute: ``sum_i n_i (e_{i+1} - e_i)``, about ``(m + 1) (1 - 1/eta)``
  runs for ``stretch = 1``; a smaller ``stretch`` moves every rung earlier
  (cheaper).
  """
  counts = [num_members]
  while counts[-1] > 1:
    counts.append(max(1, math.ceil(counts[-1] / eta)))
  halvings = len(counts) - 1
  plan: dict[int, int] = {}
  for i in range(1, halvings + 1):
    epoch = min(epochs - 1, max(1, round(
        stretch * epochs * eta ** (i - halvings - 1))))
    if epoch >= 1:
      plan[epoch] = counts[i]  # a later (smaller) count overrides
  return tuple(sorted(plan.items()))


def default_halving_plan(num_members: int, epochs: int, eta: int,
                         budget: float) -> tuple[tuple[int, int], ...]:
  """:func:`halving_rungs` with the largest ``stretch = 0.9^j <= 1`` whose
  compute is within ``budget`` runs: the geometric rungs, pulled earlier
  only as far as the budget needs (short runs of many members).

  Raises:
    ValueError: not even stopping all but one member after the first epoch
      fits the budget (``K + epochs - 1 > budget * epochs``).
  """
  stretch = 1.0
  while True:
    plan = halving_rungs(num_members, epochs, eta, stretch)
    if member_epochs(num_members, epochs, plan) <= budget * epochs + 1e-9:
      return plan
    if all(epoch == 1 for epoch, _ in plan):
      needed = math.ceil((num_members - 1) / (budget - 1)) if budget > 1 \
          else None
      raise ValueError(
          f"successive halving of {num_members} members cannot stay within "
          f"budget={budget} runs over epochs={epochs}: the first epoch "
          f"alone costs {num_members / epochs:.2f} runs"
          + (f"; use epochs >= {needed}" if needed else "")
          + ", fewer candidates, or a larger budget")
    stretch *= 0.9


def short_run_warning(schedule: "Schedule", num_members: int,
                      epochs: int) -> Optional[str]:
  """A warning when the budget forces the default halving plan to cut
  harder than ``1/eta`` after the first epoch (a one-epoch screen favours
  fast starters, i.e. high rates), with the epochs that would avoid it;
  None otherwise (explicit rungs, other schedules, long enough runs)."""
  if not isinstance(schedule, Halving) or schedule.rungs is not None:
    return None
  enough = lambda n: default_halving_plan(  # noqa: E731
      num_members, n, schedule.eta, schedule.budget)[0][1] >= math.ceil(
          num_members / schedule.eta)
  if enough(epochs):
    return None
  needed = epochs + 1
  while not enough(needed):
    needed += 1
  first_epoch, kept = default_halving_plan(num_members, epochs, schedule.eta,
                                           schedule.budget)[0]
  return (f"epochs={epochs} is short for {num_members} members within "
          f"budget={schedule.budget} runs: successive halving keeps {kept} "
          f"of {num_members} after epoch {first_epoch}, a screen that favours "
          f"the fastest starters (high rates); use epochs >= {needed}, fewer "
          "candidates, Halving(budget=...) or schedule='full'")


def explicit_rungs(num_members: int, epochs: int, eta: int,
                   rungs: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
  """``((epoch, survivors), ...)`` for rung epochs given by the user."""
  if rungs[-1] >= epochs:
    raise ValueError(f"Halving rungs must be < epochs={epochs} (a rung at the "
                     f"end stops nothing), got rungs={rungs}")
  plan, alive = [], num_members
  for epoch in rungs:
    alive = max(1, math.ceil(alive / eta))
    plan.append((epoch, alive))
  return tuple(plan)


def member_epochs(num_members: int, epochs: int,
                  plan: tuple[tuple[int, int], ...]) -> int:
  """Member-epochs of one population: ``sum_i n_i (e_{i+1} - e_i)``.

  ``plan``: ``((epoch, members running after it), ...)``, starting with
  ``num_members`` at epoch 0 and ending at ``epochs``. A full or PBT
  population (no one stops) spends ``num_members * epochs``.
  """
  total, alive, start = 0, num_members, 0
  for epoch, survivors in plan:
    total += alive * (epoch - start)
    alive, start = survivors, epoch
  return total + alive * (epochs - start)


def halving_plan(schedule: Halving, num_members: int, epochs: int
                 ) -> tuple[tuple[int, int], ...]:
  """The rungs of ``schedule``, checked against its budget.

  Raises:
    ValueError: the plan spends more than ``schedule.budget`` runs.
  """
  if schedule.rungs is None:
    return default_halving_plan(num_members, epochs, schedule.eta,
                                schedule.budget)
  plan = explicit_rungs(num_members, epochs, schedule.eta, schedule.rungs)
  spent = member_epochs(num_members, epochs, plan) / epochs
  if spent > schedule.budget + 1e-9:
    raise ValueError(
        f"successive halving of {num_members} members over epochs={epochs} "
        f"with eta={schedule.eta}, rungs {[e for e, _ in plan]} spends "
        f"{spent:.2f} runs of compute, more than budget={schedule.budget}: "
        "use fewer candidates, a larger eta, earlier rungs, or a larger "
        "budget")
  return plan


def pbt_epochs(schedule: PBT, epochs: int) -> tuple[int, ...]:
  """The epochs after which PBT exploits: every interval, before the end."""
  interval = (max(1, epochs // PBT_EXPLOITS) if schedule.interval is None
              else schedule.interval)
  return tuple(range(interval, epochs, interval))


def ranked(values: np.ndarray) -> np.ndarray:
  """Indices of ``values`` (signed: lower is better; NaN worst), best
  first; ties keep the lower index (a stable sort)."""
  values = np.where(np.isnan(values), np.inf, values)
  return np.argsort(values, kind="stable")


def survivors(values: np.ndarray, keep: int) -> np.ndarray:
  """The positions of the best ``keep`` members, in their original order.

  Args:
    values: ``[n]`` signed best-so-far values (lower is better, NaN worst).
    keep: how many continue.
  """
  return np.sort(ranked(values)[:keep])


def exploit_pairs(values: np.ndarray, fraction: float
                  ) -> list[tuple[int, int]]:
  """``[(loser, leader), ...]``: the i-th worst copies the i-th best.

  Truncation selection (Jaderberg et al. 2017, section 4): the bottom
  ``q = max(1, floor(fraction * n))`` members by the latest signed value
  copy the top ``q``; a member never copies itself (n >= 2).
  """
  n = len(values)
  if n < 2:
    return []
  q = max(1, int(fraction * n))
  order = ranked(values)
  return [(int(order[n - 1 - i]), int(order[i])) for i in range(q)]
