"""Hostile metric sequences through every strategy (property tests, hypothesis).

Metric values include NaN, +-inf, huge (1e38), tiny (1e-38), negative,
constant and alternating sequences; measurement counts come regular, repeated,
decreasing, jumping and near the int32 limit; the starting state may hold
counters near the int32 limit. Whatever arrives:

* the scale stays finite and within ``[min_scale, max_scale]``;
* ``best`` (kept in minimisation space) is never NaN: it is +inf until a
  finite value arrives, then finite;
* int32 counters saturate instead of wrapping;
* a strategy reacts once per new, larger count, and to nothing else: the run
  equals a run fed only the new evaluations, once each, and a float32 NumPy
  reference of the documented rules;
* inside ``optax.apply_if_finite`` a non-finite gradient step leaves the
  strategy state bit-identical and the parameters finite.

Speed: hyperparameters are Python values baked into a transformation, so each
strategy gets a small fixed set of configurations and each configuration one
jitted ``lax.scan`` runner, compiled once (cached) and reused by every example:
metric sequences have a fixed length, so nothing retraces.

The tests at the end of the file pin two hostile cases by name: ``dynamic``
must not compute inf * 0 = NaN, and the eager checks must refuse
hyperparameters that overflow float32/int32.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrtransfer
from _harness import (
  ADJUST_DEFAULTS,
  DYNAMIC_DEFAULTS,
  adjust_with,
  dynamic_with,
)

N = 40  # steps per example: fixed, so the jitted runners never retrace
INT32_MAX = 2**31 - 1
NEAR_MAX = 2**31 - 2
F32 = np.float32
F32_TINY = np.finfo(np.float32).tiny  # XLA's CPU backend flushes subnormals

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# ---------------------------------------------------------------------------
# Configurations: a few per strategy, from defaults to extreme but valid.


class Config(NamedTuple):
  name: str
  make: Callable[[], optax.GradientTransformationExtraArgs]
  low: float  # bounds the scale must stay in
  high: float
  # The equivalent `adjust` arguments (plateau-based strategies only); the
  # reference below reads its rules from them.
  rules: Optional[dict] = None
  dynamic: Optional[dict] = None  # the `dynamic` arguments


def _adjust_config(name, low, high, **kwargs):
  return Config(name, functools.partial(adjust_with, **kwargs), low,
                high, rules=kwargs)


ADJUST = [
    _adjust_config("adjust-defaults", 0.05, 2.0),
    _adjust_config("adjust-max-abs", 0.01, 5.0, mode="max", patience=0,
                   cooldown=2, threshold=0.1, threshold_mode="abs",
                   raise_factor=3.0, improve_factor=0.5, init_scale=5.0,
                   min_scale=0.01, max_scale=5.0),
    _adjust_config("adjust-target-eps", 0.0, 1.0, patience=2, cooldown=0,
                   threshold=0.0, target=-0.5, raise_factor=1.0, lower_factor=0.2,
                   improve_factor=1.3, init_scale=0.5, min_scale=0.0,
                   max_scale=1.0, eps=1e-3),
    _adjust_config("adjust-extreme-factors", 1e-37, 1e38, mode="max",
                   patience=1, cooldown=0, threshold=1e-2,
                   raise_factor=1e30, improve_factor=1e-30, min_scale=1e-37,
                   max_scale=1e38),
]


def _plateau_config(name, **kwargs):
  rules = dict(mode=kwargs.get("mode", "min"),
               patience=kwargs.get("patience", 10),
               cooldown=kwargs.get("cooldown", 0),
               threshold=kwargs.get("threshold", 1e-4),
               threshold_mode=kwargs.get("threshold_mode", "rel"),
               raise_factor=1.0, lower_factor=kwargs.get("factor", 0.1),
               improve_factor=1.0,
               min_scale=kwargs.get("min_scale", 0.0), max_scale=1.0,
               eps=kwargs.get("eps", 0.0))
  return Config(name, functools.partial(lrtransfer.reduce_on_plateau,
                                        **kwargs),
                rules["min_scale"], 1.0, rules=rules)


REDUCE_ON_PLATEAU = [
    _plateau_config("rop-defaults"),
    _plateau_config("rop-max-patience0", factor=0.5, patience=0, mode="max",
                    threshold=0.0),
    _plateau_config("rop-abs-cooldown-eps", factor=1e-30, patience=1,
                    cooldown=3, threshold=1.0, threshold_mode="abs",
                    min_scale=1e-3, eps=1e-4),
    # Patience at the int32 limit: the action can never fire.
    _plateau_config("rop-patience-int32-max", factor=0.9, patience=INT32_MAX,
                    min_scale=0.5),
]


def _bold_config(name, **kwargs):
  increase = kwargs.get("increase", 1.05)
  low, high = kwargs.get("min_scale", 0.1), kwargs.get("max_scale", 10.0)
  rules = dict(mode=kwargs.get("mode", "min"), patience=0, cooldown=0,
               improve_factor=increase,
               raise_factor=1.0, lower_factor=kwargs.get("decrease", 0.5),
               init_scale=min(max(1.0, low), high), min_scale=low,
               max_scale=high)
  return Config(name, functools.partial(lrtransfer.bold_driver, **kwargs),
                low, high, rules=rules)


BOLD_DRIVER = [
    _bold_config("bold-defaults"),
    _bold_config("bold-neutral", increase=1.0, decrease=1.0),
    _bold_config("bold-max-wide", increase=2.0, decrease=0.1, mode="max",
                 min_scale=1e-6, max_scale=1e6),
    _bold_config("bold-extreme", increase=1e30, decrease=1e-30,
                 min_scale=0.0, max_scale=1e38),
]


def _dynamic_config(name, total_steps, **kwargs):
  settings = {**DYNAMIC_DEFAULTS, "mode": "min", **kwargs}
  rules = {k: settings[k] for k in (
      "mode", "patience", "cooldown", "threshold", "threshold_mode",
      "target", "raise_factor", "lower_factor", "improve_factor")}
  dyn = {k: settings[k] for k in ("every_steps", "rate", "progress_gain",
                                  "stall_gain", "improving_gain")}
  dyn["total_steps"] = total_steps
  return Config(name, functools.partial(dynamic_with, total_steps,
                                        **kwargs),
                settings["min_scale"], settings["max_scale"],
                rules=rules, dynamic=dyn)


DYNAMIC = [
    _dynamic_config("dynamic-defaults", N),
    _dynamic_config("dynamic-max-fast", 10, every_steps=3, rate=0.5,
                    progress_gain=5.0, stall_gain=10.0, mode="max",
                    patience=0, cooldown=0, raise_factor=4.0,
                    improve_factor=0.5, min_scale=0.0, max_scale=1.0),
    _dynamic_config("dynamic-pinned", 1000, rate=1.0, progress_gain=0.0,
                    stall_gain=1.0, target=0.0, min_scale=1.0,
                    max_scale=1.0),
    _dynamic_config("dynamic-extreme", 1, rate=1e-30, progress_gain=10.0,
                    stall_gain=0.5, raise_factor=1e3, improve_factor=1e-3,
                    patience=1, cooldown=2, threshold=1.0,
                    threshold_mode="abs", min_scale=0.0, max_scale=1e3),
]

DECAY = [
    Config("decay-defaults", lrtransfer.decay, 0.0, 1.0),
    Config("decay-staircase-warmup-floor",
           functools.partial(lrtransfer.decay, 0.5, every_steps=3,
                             staircase=True, warmup_steps=5, warmup_init=0.1,
                             min_scale=0.2), 0.1, 1.0),
    Config("decay-flat-warmup",
           functools.partial(lrtransfer.decay, 1.0, warmup_steps=10), 0.0,
           1.0),
    Config("decay-underflow", functools.partial(lrtransfer.decay, 1e-30),
           0.0, 1.0),
    Config("schedule_scale-cosine",
           lambda: lrtransfer.schedule_scale(
               optax.cosine_decay_schedule(1.0, 100, alpha=0.1)), 0.1, 1.0),
]

PLATEAU_CONFIGS = {"adjust": ADJUST, "reduce_on_plateau": REDUCE_ON_PLATEAU,
                   "bold_driver": BOLD_DRIVER, "dynamic": DYNAMIC}
ALL_CONFIGS = [c for group in PLATEAU_CONFIGS.values() for c in group] + DECAY
BY_NAME = {c.name: c for c in ALL_CONFIGS}

# ---------------------------------------------------------------------------
# Jitted runners, one per configuration, compiled once.

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0], jnp.float32)}


@functools.cache
def _strategy(name):
  return BY_NAME[name].make()


@functools.cache
def _runner(name):
  """``run(state, values[N], counts[N]) -> states`` stacked per step."""
  tx = _strategy(name)

  def run(state, values, counts):
    def body(state, value_count):
      value, count = value_count
      _, state = tx.update(PARAMS, state, PARAMS,
                           metric=lrtransfer.measurement(value, count))
      return state, state

    return jax.lax.scan(body, state, (values, counts))[1]

  return jax.jit(run)


def _run(name, state, values, counts):
  states = _runner(name)(state, jnp.asarray(values, jnp.float32),
                         jnp.asarray(counts, jnp.int32))
  return jax.tree.map(np.asarray, states)


# ---------------------------------------------------------------------------
# Hostile inputs.

SPECIAL_VALUES = [math.nan, math.inf, -math.inf, 1e38, -1e38, 3.4e38,
                  -3.4e38, 1e-38, -1e-38, 1e-45, 0.0, -0.0, 1.0, -1.0, 0.5,
                  -1e6]
value_st = st.one_of(st.sampled_from(SPECIAL_VALUES),
                     st.floats(width=32, allow_nan=True, allow_infinity=True))
metric_values_st = st.one_of(
    st.lists(value_st, min_size=N, max_size=N),
    value_st.map(lambda v: [v] * N),  # constant
    st.tuples(value_st, value_st).map(  # alternating
        lambda ab: [ab[i % 2] for i in range(N)]),
    st.tuples(st.floats(-1e3, 1e3, width=32),  # steadily up or down
              st.sampled_from([-1.0, -1e-3, 1e-6, 2.0])).map(
                  lambda a: [a[0] + a[1] * i for i in range(N)]),
)


def _regular(steps_per_eval):
  return [1 + i // steps_per_eval for i in range(N)]


count_st = st.one_of(
    st.integers(-3, 60),
    st.sampled_from([0, -1, INT32_MAX, NEAR_MAX, 2**30, -2**31]))
counts_st = st.one_of(
    st.integers(1, 7).map(_regular),
    # Irregular: repeated, decreasing, jumping, near the int32 limit.
    st.lists(count_st, min_size=N, max_size=N),
    # Non-decreasing with repeats and jumps.
    st.lists(st.integers(0, 4), min_size=N, max_size=N).map(
        lambda steps: np.cumsum(steps).tolist()),
)

# Where the run starts: a fresh state, or one with a counter near int32 max.
START_PLATEAU = ["fresh", "num_bad", "cooldown_left", "last_count"]


def _start_state(name, start):
  state = _strategy(name).init(PARAMS)
  if start == "fresh":
    return state
  if start == "count":
    return state._replace(count=jnp.int32(NEAR_MAX))
  return state._replace(plateau=state.plateau._replace(
      **{start: jnp.int32(NEAR_MAX)}))


# ---------------------------------------------------------------------------
# A float32 NumPy reference of the judgement (see lrtransfer._src.plateau).


def _ftz(x):
  """Flushes float32 subnormals to zero, as XLA's CPU backend does."""
  x = F32(x)
  return F32(0.0) * np.sign(x) if 0 < abs(x) < F32_TINY else x


def _judge(rules, values, new, plateau0):
  """Per step: (best, num_bad, cooldown_left, good, plateau) after it."""
  rules = {**ADJUST_DEFAULTS, "mode": "min", **rules}
  sign = F32(1.0 if rules["mode"] == "min" else -1.0)
  patience, cooldown = rules["patience"], rules["cooldown"]
  threshold = F32(rules["threshold"])
  relative = rules["threshold_mode"] == "rel"
  target = rules["target"]
  best = F32(plateau0.best)  # minimisation space
  num_bad, cooldown_left = int(plateau0.num_bad), int(plateau0.cooldown_left)
  out = []
  with np.errstate(all="ignore"):
    for value, is_new in zip(values, new):
      good = plateau = False
      if is_new:
        value = F32(value)
        v = _ftz(sign * value)
        best_min = best
        margin = _ftz(threshold * abs(best_min)) if relative else threshold
        improved = bool(np.isfinite(v)) and (
            best_min == np.inf or v < _ftz(best_min - margin))
        good = improved and (target is None or v <= sign * F32(target))
        if improved:
          best = F32(sign * value)
        num_bad = 0 if good else min(num_bad + 1, INT32_MAX)
        if cooldown_left > 0:
          cooldown_left -= 1
          num_bad = 0
        plateau = num_bad > patience
        if plateau:
          cooldown_left, num_bad = cooldown, 0
      out.append((best, num_bad, cooldown_left, good, plateau))
  return out


def _new_evaluations(counts, last_count0):
  """Which steps carry a count larger than every count seen before."""
  seen, new = int(last_count0), []
  for c in counts:
    new.append(int(c) > seen)
    seen = max(seen, int(c))
  return np.asarray(new)


def _assert_scale_in_bounds(config, scales):
  scales = np.asarray(scales)
  assert np.all(np.isfinite(scales)), scales
  assert np.all(scales >= F32(config.low)), (scales.min(), config.low)
  assert np.all(scales <= F32(config.high)), (scales.max(), config.high)


def _check_plateau_run(config, state0, values, counts, states):
  """Everything that must hold of a plateau-based strategy's run."""
  plateau0, plateau = state0.plateau, states.plateau
  rules = config.rules
  _assert_scale_in_bounds(config, states.scale)

  # Counters: never negative, last_count is the running max of the counts.
  new = _new_evaluations(counts, plateau0.last_count)
  assert np.all(plateau.num_bad >= 0) and np.all(plateau.cooldown_left >= 0)
  np.testing.assert_array_equal(
      plateau.last_count,
      np.maximum.accumulate(np.maximum(np.asarray(counts, np.int64),
                                       int(plateau0.last_count))))
  judged_yet = np.cumsum(new) > 0
  assert np.all(plateau.num_bad[judged_yet]
                <= {**ADJUST_DEFAULTS, **rules}["patience"])

  # best: never NaN; +-inf until a finite value arrives at a new count.
  assert not np.any(np.isnan(plateau.best))
  finite_seen = np.cumsum(new & np.isfinite(np.asarray(values, F32))) > 0
  np.testing.assert_array_equal(plateau.best[~finite_seen], np.inf)
  assert np.all(np.isfinite(plateau.best[finite_seen]))

  # Reacts only to new counts: nothing of the bookkeeping moves otherwise.
  previous = jax.tree.map(
      lambda first, rest: np.concatenate([np.asarray(first)[None], rest[:-1]]),
      plateau0, plateau)
  for field in plateau._fields:
    np.testing.assert_array_equal(getattr(plateau, field)[~new],
                                  getattr(previous, field)[~new], field)

  # ... and exactly as the documented rules say, once per new count. Skipped
  # for subnormal-range metrics: XLA's CPU backend flushes subnormals in some
  # operations and not in others (a comparison folded with a constant keeps
  # them), which no float32 reference reproduces; the checks above still hold.
  values32 = np.asarray(values, F32)
  if np.any((np.abs(values32) < 1e-30) & (values32 != 0)):
    return None
  expected = _judge(rules, values, new, plateau0)
  best, num_bad, cooldown_left, good, fired = map(np.asarray, zip(*expected))
  np.testing.assert_array_equal(plateau.best, best.astype(F32))
  np.testing.assert_array_equal(plateau.num_bad, num_bad)
  np.testing.assert_array_equal(plateau.cooldown_left, cooldown_left)
  return good, fired


def _plateau_action(rules):
  """The plateau factor of a run without a training value: no raise."""
  return {**ADJUST_DEFAULTS, **rules}["lower_factor"]


def _adjust_scales(rules, scale0, good, fired):
  """Scale per step from the judgement, per the docstring of ``adjust``."""
  # Unset rules take adjust's own defaults: this checks the rule, and must
  # not drift when a default is retuned.
  rules = {**ADJUST_DEFAULTS, **rules}
  low, high = F32(rules["min_scale"]), F32(rules["max_scale"])
  improve = F32(rules["improve_factor"])
  # These runs carry no training value: a plateau never raises, it applies
  # lower_factor.
  raise_ = F32(_plateau_action(rules))
  eps = F32(rules["eps"])
  scale, out = F32(scale0), []
  with np.errstate(all="ignore"):
    for g, p in zip(good, fired):
      factor = (improve if g else F32(1.0)) * (raise_ if p else F32(1.0))
      new = F32(min(max(_ftz(scale * factor), low), high))
      if abs(new - scale) > eps:
        scale = new
      out.append(scale)
  return np.asarray(out, F32)


def _compressed(values, counts, new, last_count0):
  """Only the new evaluations, once each, then their last one repeated."""
  values = [v for v, n in zip(values, new) if n]
  counts = [int(c) for c, n in zip(counts, new) if n]
  if not counts:
    return [math.nan] * N, [int(last_count0)] * N
  pad = N - len(counts)
  return values + [values[-1]] * pad, counts + [counts[-1]] * pad


# ---------------------------------------------------------------------------
# Property tests.


def _adjust_family_property(config, values, counts, start):
  state0 = _start_state(config.name, start)
  states = _run(config.name, state0, values, counts)
  judged = _check_plateau_run(config, state0, values, counts, states)
  if judged is not None:
    np.testing.assert_allclose(
        states.scale, _adjust_scales(config.rules, state0.scale, *judged),
        rtol=1e-6)
  # Irregular counts give the same reactions as the new evaluations fed
  # once each: one reaction per new, larger count, never more.
  new = _new_evaluations(counts, state0.plateau.last_count)
  states2 = _run(config.name, state0,
                 *_compressed(values, counts, new, state0.plateau.last_count))
  k = int(new.sum())
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[new], b[:k]),
               states, states2)


@pytest.mark.parametrize("family", ["adjust", "reduce_on_plateau",
                                    "bold_driver"])
@SETTINGS
@given(data=st.data(), values=metric_values_st, counts=counts_st,
       start=st.sampled_from(START_PLATEAU))
def test_adjust_family_survives_hostile_metrics(family, data, values, counts,
                                                start):
  config = data.draw(st.sampled_from(PLATEAU_CONFIGS[family]), "config")
  _adjust_family_property(config, values, counts, start)


@SETTINGS
@given(config=st.sampled_from(DYNAMIC), values=metric_values_st,
       counts=counts_st, start=st.sampled_from(START_PLATEAU + ["count"]))
def test_dynamic_survives_hostile_metrics(config, values, counts, start):
  state0 = _start_state(config.name, start)
  states = _run(config.name, state0, values, counts)
  judged = _check_plateau_run(config, state0, values, counts, states)

  # The update counter saturates at the int32 limit instead of wrapping.
  expected_count = np.minimum(int(state0.count) + np.arange(1, N + 1),
                              INT32_MAX)
  np.testing.assert_array_equal(states.count, expected_count)

  # The decay rate and the scale follow the docstring formula, step by step.
  dyn, rules = config.dynamic, config.rules
  progress = np.minimum((expected_count - 1).astype(F32)
                        / dyn["total_steps"], 1.0)
  base = -math.log(dyn["rate"]) / dyn["every_steps"]
  stall = np.where(states.plateau.num_bad > 0, dyn["stall_gain"],
                   dyn["improving_gain"])
  log_decay = base * (1 + dyn["progress_gain"] * progress) * stall
  assert np.all(np.isfinite(states.decay_rate))
  assert np.all(states.decay_rate >= 0)
  np.testing.assert_allclose(states.decay_rate, log_decay, rtol=1e-5)
  if judged is None:
    return
  good, fired = judged
  factor = (np.where(good, rules["improve_factor"], 1.0)
            * np.where(fired, _plateau_action(rules), 1.0))
  previous = np.concatenate([[float(state0.scale)], states.scale[:-1]])
  expected = np.clip(previous.astype(np.float64) * factor
                     * np.exp(-states.decay_rate.astype(np.float64)),
                     F32(config.low), F32(config.high))
  np.testing.assert_allclose(states.scale, expected, rtol=1e-5, atol=1e-37)


@SETTINGS
@given(config=st.sampled_from(DECAY), values=metric_values_st,
       counts=counts_st, start=st.sampled_from(["fresh", "count"]))
def test_decay_ignores_metrics_and_saturates(config, values, counts, start):
  state0 = _start_state(config.name, start)
  states = _run(config.name, state0, values, counts)
  _assert_scale_in_bounds(config, states.scale)
  # A metric passed to decay changes nothing; the count saturates.
  expected_count = np.minimum(int(state0.count) + np.arange(1, N + 1),
                              INT32_MAX)
  np.testing.assert_array_equal(states.count, expected_count)
  no_metric = _run(config.name, state0, [math.nan] * N, [0] * N)
  np.testing.assert_array_equal(states.scale, no_metric.scale)
  # Never increases once warmup is over.
  if start == "count":
    assert np.all(np.diff(states.scale) <= 0)


# ---------------------------------------------------------------------------
# Saturation of counters near the int32 limit (explicit, not random).


def _near_max_states(name):
  state = _strategy(name).init(PARAMS)
  plateau = state.plateau
  return {
      "num_bad": state._replace(plateau=plateau._replace(
          num_bad=jnp.int32(NEAR_MAX))),
      "cooldown_left": state._replace(plateau=plateau._replace(
          cooldown_left=jnp.int32(INT32_MAX))),
      "last_count": state._replace(plateau=plateau._replace(
          last_count=jnp.int32(NEAR_MAX))),
  }


@pytest.mark.parametrize("name", [c.name for g in PLATEAU_CONFIGS.values()
                                  for c in g])
def test_plateau_counters_saturate_instead_of_wrapping(name):
  config = BY_NAME[name]
  patience = {**ADJUST_DEFAULTS, **config.rules}["patience"]
  starts = _near_max_states(name)
  bad = [math.nan] * N  # never an improvement: num_bad only grows
  counts = list(range(1, N + 1))

  states = _run(name, starts["num_bad"], bad, counts)
  num_bad = states.plateau.num_bad
  assert np.all(num_bad >= 0)
  if patience >= INT32_MAX:  # never fires: stuck at the limit, not wrapped
    np.testing.assert_array_equal(num_bad, INT32_MAX)
    np.testing.assert_array_equal(states.scale, float(starts["num_bad"].scale))
  else:  # the first bad evaluation completes the plateau
    assert num_bad[0] == 0

  states = _run(name, starts["cooldown_left"], bad, counts)
  np.testing.assert_array_equal(states.plateau.cooldown_left,
                                INT32_MAX - np.arange(1, N + 1))
  assert np.all(states.plateau.num_bad == 0)

  # Counts at the int32 limit: exactly one reaction, then none.
  states = _run(name, starts["last_count"], [1.0] * N, [INT32_MAX] * N)
  np.testing.assert_array_equal(states.plateau.last_count, INT32_MAX)
  sign = 1.0 if config.rules.get("mode", "min") == "min" else -1.0
  assert states.plateau.best[0] == sign * 1.0  # minimisation space
  for field in states.plateau._fields:
    column = getattr(states.plateau, field)
    np.testing.assert_array_equal(column[1:], column[0])
  if config.dynamic is None:
    np.testing.assert_array_equal(states.scale[1:], states.scale[0])


@pytest.mark.parametrize("name", [c.name for c in DYNAMIC + DECAY])
def test_update_counters_saturate_instead_of_wrapping(name):
  config = BY_NAME[name]
  state = _strategy(name).init(PARAMS)._replace(count=jnp.int32(NEAR_MAX))
  states = _run(name, state, [1.0] * N, list(range(1, N + 1)))
  np.testing.assert_array_equal(states.count[0], INT32_MAX)
  np.testing.assert_array_equal(states.count, INT32_MAX)
  _assert_scale_in_bounds(config, states.scale)


# ---------------------------------------------------------------------------
# Non-finite gradients inside optax.apply_if_finite.

MAX_CONSECUTIVE_ERRORS = 3
POISON = jnp.array([0.0, jnp.nan, jnp.inf, -jnp.inf], jnp.float32)


@functools.cache
def _apply_if_finite_runner(name):
  tx = optax.apply_if_finite(
      optax.chain(optax.sgd(0.1, momentum=0.9), _strategy(name)),
      max_consecutive_errors=MAX_CONSECUTIVE_ERRORS)
  params0 = {"w": jnp.array([1.0, -2.0, 3.0], jnp.float32),
             "b": jnp.zeros([2], jnp.float32)}
  loss = lambda p: jnp.sum((p["w"] - 0.5) ** 2) + jnp.sum(p["b"] ** 2)

  def run(values, counts, poison):
    def body(carry, inputs):
      params, state = carry
      value, count, kind = inputs
      grads = jax.grad(loss)(params)
      # Poison one leaf (kind 1: NaN, 2: +inf, 3: -inf; 0: none).
      grads = {**grads, "w": grads["w"].at[1].add(POISON[kind])}
      updates, state = tx.update(grads, state, params,
                                 metric=lrtransfer.measurement(value, count))
      params = optax.apply_updates(params, updates)
      return (params, state), (params, state)

    carry0 = (params0, tx.init(params0))
    return carry0, jax.lax.scan(body, carry0, (values, counts, poison))[1]

  return jax.jit(run)


def _limit_runs(kinds, limit):
  """At most ``limit`` poisoned steps in a row (more would be applied)."""
  out, run = [], 0
  for kind in kinds:
    run = run + 1 if kind else 0
    if run > limit:
      kind, run = 0, 0
    out.append(kind)
  return out


def _bits(tree):
  return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(tree)]


# One configuration per strategy (each one costs a compilation), with bounds
# that keep SGD-momentum stable on the test's quadratic loss.
APPLY_IF_FINITE_CONFIGS = [BY_NAME[name] for name in (
    "adjust-max-abs", "rop-abs-cooldown-eps", "bold-defaults",
    "dynamic-max-fast", "decay-staircase-warmup-floor")]


@SETTINGS
@given(config=st.sampled_from(APPLY_IF_FINITE_CONFIGS),
       values=metric_values_st, counts=counts_st,
       poison=st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=N,
                       max_size=N).map(
                           lambda k: _limit_runs(k, MAX_CONSECUTIVE_ERRORS)))
def test_apply_if_finite_freezes_strategy_on_non_finite_gradients(
    config, values, counts, poison):
  (params0, state0), (params, states) = _apply_if_finite_runner(config.name)(
      jnp.asarray(values, jnp.float32), jnp.asarray(counts, jnp.int32),
      jnp.asarray(poison, jnp.int32))
  params, states = jax.tree.map(np.asarray, (params, states))
  for leaf in jax.tree.leaves(params):
    assert np.all(np.isfinite(leaf))
  step_state = lambda t: (state0 if t < 0
                          else jax.tree.map(lambda x: x[t], states))
  step_params = lambda t: (params0 if t < 0
                           else jax.tree.map(lambda x: x[t], params))
  seen = 0
  for t, kind in enumerate(poison):
    strategy_now = lrtransfer.strategy_states(step_state(t).inner_state)
    strategy_before = lrtransfer.strategy_states(
        step_state(t - 1).inner_state)
    if kind:  # bit-identical strategy state, parameters unchanged
      assert _bits(strategy_now) == _bits(strategy_before), t
      assert _bits(step_params(t)) == _bits(step_params(t - 1)), t
    else:
      seen = max(seen, int(counts[t]))
    (strategy,) = strategy_now
    _assert_scale_in_bounds(config, strategy.scale)
    if config.rules is not None:
      # A measurement passed during a rejected step is not lost: the next
      # finite step that still carries it reacts to it.
      assert int(strategy.plateau.last_count) == seen, t


# ---------------------------------------------------------------------------
# Hostile hyperparameters, by name.


def test_dynamic_scale_never_nan_with_large_factor_and_fast_decay():
  tx = dynamic_with(1, rate=1e-30, progress_gain=10.0,
                    improve_factor=1e38, raise_factor=1e38,
                    patience=0, cooldown=0, min_scale=0.0, max_scale=10.0)
  state = tx.init(PARAMS)
  for count, value in enumerate([1.0, 2.0, 3.0], start=1):
    _, state = tx.update(PARAMS, state, PARAMS,
                         metric=lrtransfer.measurement(value, count))
    assert np.isfinite(float(state.scale)), (count, state.scale)


def test_float32_overflowing_hyperparameter_is_rejected_eagerly():
  with pytest.raises(ValueError, match="max_scale=1e[+]?39"):
    lrtransfer.adjust(max_scale=1e39, raise_factor=10.0, patience=0,
                      cooldown=0)


@pytest.mark.parametrize("factory", [
    lambda: lrtransfer.adjust(patience=2**31),
    lambda: lrtransfer.adjust(cooldown=2**31),
    lambda: lrtransfer.dynamic(2**40),
    lambda: lrtransfer.decay(0.9, every_steps=2**40),
    lambda: lrtransfer.decay(0.9, warmup_steps=2**40),
], ids=["patience", "cooldown", "total_steps", "every_steps",
        "warmup_steps"])
def test_huge_integer_hyperparameter_fails_eagerly(factory, request):
  name = request.node.callspec.id
  with pytest.raises(ValueError, match=f"{name}=" + "[0-9]+"):
    factory()
