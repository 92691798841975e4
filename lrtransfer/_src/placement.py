"""Where a strategy sits in a chain, and whether its scale reaches the step.

A strategy multiplies the updates that reach it. Chained *after* the base
optimizer (``optax.chain(optax.adam(1e-3), lrtransfer.decay(0.99))``) it
scales the step itself, so ``base rate * scale`` is the rate taken. Chained
*before* a transformation that normalises its input (Adam divides by the
gradient's running RMS, Lion and Rprop take signs, Adafactor and Adagrad
divide by accumulated squares, ...) the scale is divided out again: the step
barely changes while :func:`lrtransfer.current_scale` reports the scale, and
:func:`lrtransfer.effective_learning_rate` a rate the step never had: with
``optax.chain(lrtransfer.decay(0.5, every_steps=1), optax.adam(1e-2))``,
after ten updates the readout is ``1e-2 * 0.5 ** 9 = 2e-5`` while each
parameter still moves by 3.7e-3 a step.

The order is read from the optimizer *state*: ``optax.chain``'s state is a
tuple of its transformations' states in chain order, so a strategy state at
tuple index ``i`` and a normaliser's state at index ``j > i`` of the same
tuple (at any nesting depth below) sit in that order. Normalisers without a
state (``optax.scale_by_sign``, ``optax.sign_sgd``,
``optax.normalize_by_update_norm``, LARS' trust ratio) and the dict-keyed
``optax.named_chain`` leave no trace of their order in the state, so they
go unseen here.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax

from lrtransfer._src import state_finder
from lrtransfer._src.adjust import AdjustState
from lrtransfer._src.decay import ScheduleScaleState
from lrtransfer._src.dynamic import DynamicState

# Strategy states and the strategies that make them.
STRATEGY_NAMES = {
    AdjustState: "adjust / reduce_on_plateau / bold_driver",
    DynamicState: "dynamic",
    ScheduleScaleState: "decay / schedule_scale",
}

# Class names of optax 0.2.8 states whose transformation's output does not
# follow a constant factor on its input (the factor cancels in a ratio to the
# gradient's own size, or in a sign), with the optimizers built on them.
# Matched by name: several classes are not exported, and a name missing
# from another optax version matches nothing instead of failing.
NORMALISING_STATES = {
    "ScaleByAdamState": "adam, adamw, nadam, adamax, yogi, radam, lamb",
    "ScaleByAmsgradState": "amsgrad",
    "ScaleByRmsState": "rmsprop",
    "ScaleByRmsWithCountState": "rmsprop, schedule_free_adamw",
    "ScaleByRStdDevState": "rmsprop(centered=True)",
    "ScaleByRStdDevWithCountState": "rmsprop(centered=True)",
    "ScaleByRssState": "adagrad",
    "ScaleByBeliefState": "adabelief",
    "ScaleByAdaDeltaState": "adadelta",
    "ScaleByAdanState": "adan",
    "ScaleByNovogradState": "novograd",
    "ScaleByLionState": "lion (a sign step)",
    "ScaleByRpropState": "rprop (a sign step)",
    "ScaleBySM3State": "sm3",
    "FactoredState": "adafactor",
    "ScaleByDistanceOverGradientsState": "DoG",
    "DoGState": "contrib.dog",
    "DoWGState": "contrib.dowg",
    "COCOBState": "contrib.cocob",
    "DAdaptAdamWState": "contrib.dadapt_adamw",
    "ProdigyState": "contrib.prodigy",
    "MomoAdamState": "contrib.momo_adam",
    "MuonState": "contrib.muon (an orthogonalised step)",
    "ScaleByAdemamixState": "contrib.ademamix",
    "ScaleBySimplifiedAdEMAMixState": "contrib.simplified_ademamix",
}


def _comes_before(first: tuple, second: tuple) -> bool:
  """Whether the state at key path ``first`` precedes the one at ``second``
  in one ``optax.chain``: the paths part at two indices of the same tuple,
  ``first``'s the smaller one."""
  for a, b in zip(first, second):
    if a == b:
      continue
    return (isinstance(a, jax.tree_util.SequenceKey)
            and isinstance(b, jax.tree_util.SequenceKey) and a.idx < b.idx)
  return False


def normalised_strategies(state: Any) -> list[tuple[str, str, str]]:
  """The strategies whose scale a later transformation normalises away.

  Args:
    state: an optimizer state or an ``nnx.Optimizer``.

  Returns:
    ``[(strategy, normaliser state class, optimizers using it), ...]``,
    one entry per (strategy, normaliser) pair found in that order, e.g.
    ``[("decay / schedule_scale", "ScaleByAdamState", "adam, ...")]`` for
    ``optax.chain(lrtransfer.decay(0.5), optax.adam(1e-2))``; empty when
    every strategy sits after the normalisers (or there are none).
  """
  state = state_finder.pure_state(state)
  strategies = state_finder.find_states(state, tuple(STRATEGY_NAMES))
  if not strategies:
    return []
  normalisers = state_finder.find_named_states(state,
                                               tuple(NORMALISING_STATES))
  return [(STRATEGY_NAMES[type(strategy)], type(normaliser).__name__,
           NORMALISING_STATES[type(normaliser).__name__])
          for strategy_path, strategy in strategies
          for normaliser_path, normaliser in normalisers
          if _comes_before(strategy_path, normaliser_path)]


def warn_if_normalised(state: Any, reader: str, stacklevel: int = 3) -> None:
  """One ``UserWarning`` when a strategy sits before a normaliser.

  Emitted in Python, so under ``jax.jit`` once when the reader is traced,
  not at every call of the compiled function; outside jit Python's default
  warning filter shows it once per calling line.

  Args:
    state: the optimizer state being read.
    reader: the public function reading it, named in the message.
    stacklevel: as ``warnings.warn``'s (3: the caller of the function that
      calls this one).
  """
  pairs = normalised_strategies(state)
  if not pairs:
    return
  found = "; ".join(sorted({f"{strategy} before {normaliser} of {users}"
                            for strategy, normaliser, users in pairs}))
  warnings.warn(
      f"lrtransfer.{reader}: a strategy sits before a transformation that "
      f"normalises its input in the same optax.chain ({found}): its scale "
      "is normalised away, so the step taken does not follow the scale or "
      "rate read here. Chain the strategy after the optimizer, e.g. "
      "optax.chain(optax.adam(1e-3), lrtransfer.decay(0.99)).",
      UserWarning, stacklevel=stacklevel)
