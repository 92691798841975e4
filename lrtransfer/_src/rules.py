"""The finer constants and shared defaults of ``adjust`` and ``dynamic``.

Every default of the two strategies is defined here, once: the module
constants are the defaults of the arguments both signatures share, and the
frozen dataclasses :class:`AdjustRule` and :class:`DynamicRule` hold the
constants of the rule that users rarely change (passed as one ``rule=``
argument). The values were chosen on the benchmarks' tuning tasks by
validation accuracy: ``python benchmarks/tune_defaults.py`` shows them
against their neighbours, ``python benchmarks/robustness.py`` on held-out
tasks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from lrtransfer._src import validation
from lrtransfer._src.plateau import THRESHOLD_MODES

# Defaults of the arguments that adjust and dynamic share.
PATIENCE = 3  # bad evaluations tolerated; the action fires at the 4th
COOLDOWN = 1  # evaluations not counted after an action
RAISE_FACTOR = 1.5  # multiplier of a guarded raise
LOWER_FACTOR = 1.0  # multiplier on a plateau that is not raised: hold
MAX_SCALE = 10.0  # recovers a base rate 10x too low


@dataclasses.dataclass(frozen=True)
class AdjustRule:
  """The finer constants of :func:`lrtransfer.adjust`, checked when built.

  Attributes:
    train_monitor: the measurement's training value (a loss) that tells
      failing to fit from over-fitting; None: no raise and no brake.
    threshold: least change of the monitored value that counts as an
      improvement, >= 0.
    threshold_mode: "rel" (``threshold * |best|``) or "abs".
    target: a value the monitored metric must reach for an evaluation to be
      good, or None.
    improve_factor: multiplier on each good evaluation, > 0.
    rise_factor: the brake, multiplier when the training value rises more
      than ``train_rise`` above its best, in (0, 1]; 1 turns it off.
    train_rise: relative rise of the training value that counts as rising.
    brake_patience: evaluations the training value stays high, not
      falling, before the brake cuts (0: at once), an int >= 0.
    remember_brake: no raise goes above where the last brake left the scale.
    brake_while_improving: True: the brake may cut at an evaluation that
      improved the monitored value, on any rise of the training value.
      False (default): there it needs a training value above the first
      one measured, or not finite, so a noisy training loss (Dropout,
      few steps per epoch) cannot cut the rate while validation improves
      and a diverging one still does (``python benchmarks/brake_noise.py``).
    slow_progress: a good evaluation whose training value improved by less
      than this fraction of the previous one raises, in [0, 1]; 0: never.
    slow_patience: slow evaluations in a row before that raise, >= 1.
    max_raises: plateau raises allowed between two good evaluations, >= 0.
    train_threshold: relative improvement of the training value that counts
      as progress, >= 0.
    fitted_ratio: a training value below this fraction of the first means the
      training set is fitted (never raise, and no brake on a finite value,
      then), in [0, 1].
    init_scale: scale before the first evaluation, within the bounds.
    eps: changes of the scale no larger than this are skipped, >= 0.

  Example::

    lrtransfer.adjust(rule=lrtransfer.AdjustRule(brake_patience=1))
  """
  train_monitor: Optional[str] = "train_loss"
  threshold: float = 1e-4
  threshold_mode: str = "rel"
  target: Optional[float] = None
  improve_factor: float = 1.0
  rise_factor: float = 0.5
  train_rise: float = 0.25
  brake_patience: int = 0
  remember_brake: bool = False
  brake_while_improving: bool = False
  slow_progress: float = 0.1
  slow_patience: int = 1
  max_raises: int = 2
  train_threshold: float = 0.01
  fitted_ratio: float = 0.05
  init_scale: float = 1.0
  eps: float = 0.0

  def __post_init__(self) -> None:
    if self.train_monitor is not None and not isinstance(
        self.train_monitor, str):
      raise ValueError("train_monitor must be a name (str) or None, got "
                       f"train_monitor={self.train_monitor!r}")
    validation.check_non_negative("threshold", self.threshold)
    validation.check_choice("threshold_mode", self.threshold_mode,
                            THRESHOLD_MODES)
    if self.target is not None:
      validation.check_finite("target", self.target)
    validation.check_positive("improve_factor", self.improve_factor)
    validation.check_in_interval("rise_factor", self.rise_factor, 0.0, 1.0,
                                 low_open=True)
    validation.check_non_negative("train_rise", self.train_rise)
    validation.check_int("brake_patience", self.brake_patience, 0)
    for name in ("remember_brake", "brake_while_improving"):
      if isinstance(getattr(self, name), np.bool_):  # e.g. read from a file
        object.__setattr__(self, name, bool(getattr(self, name)))
      validation.check_bool(name, getattr(self, name))
    validation.check_in_interval("slow_progress", self.slow_progress, 0.0,
                                 1.0)
    validation.check_int("slow_patience", self.slow_patience, 1)
    validation.check_int("max_raises", self.max_raises, 0)
    validation.check_non_negative("train_threshold", self.train_threshold)
    validation.check_in_interval("fitted_ratio", self.fitted_ratio, 0.0, 1.0)
    validation.check_positive("init_scale", self.init_scale)
    validation.check_non_negative("eps", self.eps)


@dataclasses.dataclass(frozen=True)
class DynamicRule(AdjustRule):
  """The finer constants of :func:`lrtransfer.dynamic`.

  Those of :class:`AdjustRule`, with the brake waiting one evaluation and
  remembered (``brake_patience=1``, ``remember_brake=True``: a decaying
  rate that braked is not climbed back to), allowed while the monitored
  value improves (``brake_while_improving=True``: waiting one evaluation
  already keeps it off single noisy epochs, and holding it left the mean
  validation accuracy of the tuning tasks as it was), and the gains of the
  decay.

  Attributes:
    progress_gain: how much the decay speeds up by the end of the budget,
      >= 0 (the end rate is ``rate ** (1 + progress_gain)`` per period).
    stall_gain: decay multiplier while the metric is not improving, > 0.
    improving_gain: decay multiplier while the metric improves, >= 0 (0: no
      decay then; 1: the decay of the budget alone).

  Example::

    lrtransfer.dynamic(1000, rule=lrtransfer.DynamicRule(stall_gain=2.0))
  """
  brake_patience: int = 1
  remember_brake: bool = True
  brake_while_improving: bool = True
  progress_gain: float = 1.0
  stall_gain: float = 1.0
  improving_gain: float = 0.0

  def __post_init__(self) -> None:
    super().__post_init__()
    validation.check_non_negative("progress_gain", self.progress_gain)
    validation.check_positive("stall_gain", self.stall_gain)
    validation.check_non_negative("improving_gain", self.improving_gain)


def check_rule(rule: Any, expected: type, who: str) -> None:
  """``rule`` is an instance of exactly ``expected`` (a TypeError else)."""
  if type(rule) is not expected:  # pylint: disable=unidiomatic-typecheck
    raise TypeError(
        f"{who} takes rule=lrtransfer.{expected.__name__}(...), got "
        f"{type(rule).__name__}: {rule!r}")


def check_factors(raise_factor: Any, lower_factor: Any) -> None:
  """A raise multiplies by >= 1 (1: never raise), a lowering by (0, 1]."""
  validation.check_finite("raise_factor", raise_factor)
  if validation.all_concrete(raise_factor) and not raise_factor >= 1:
    raise ValueError(
        f"raise_factor must be >= 1 (1 turns raises off), got "
        f"raise_factor={raise_factor!r}; lower the rate on a plateau with "
        "lower_factor")
  validation.check_in_interval("lower_factor", lower_factor, 0.0, 1.0,
                               low_open=True)
