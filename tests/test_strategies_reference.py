"""Each strategy against a NumPy reference over long metric sequences."""

import numpy as np
import optax
import pytest

import lrtransfer
from _harness import (
  adjust_reference,
  adjust_with,
  decay_reference,
  dynamic_reference,
  dynamic_with,
  per_step_measurements,
  scales_over_steps,
)


def _metric_sequence(seed, n=200, negative=False, with_nan=False):
  """A noisy, mostly improving loss with plateaus, rounded to avoid ties."""
  rng = np.random.default_rng(seed)
  trend = 2.0 * np.exp(-np.arange(n) / 40.0)
  plateaus = np.repeat(rng.uniform(0, 0.3, n // 10), 10)[:n]
  values = np.round(trend + plateaus + rng.normal(0, 0.05, n), 3)
  if negative:
    values = values - 3.0  # e.g. a negative log-likelihood offset
  if with_nan:
    idx = rng.choice(n, size=n // 15, replace=False)
    values[idx[: len(idx) // 2]] = np.nan
    values[idx[len(idx) // 2:]] = np.inf
  return values.astype(np.float32)


def _train_sequence(seed, n=200, with_nan=False):
  """A training loss that falls, then stalls and wanders: both diagnoses."""
  rng = np.random.default_rng(seed + 1000)
  trend = 1.5 * np.exp(-np.arange(n) / 15.0) + 0.3
  stalls = np.repeat(rng.uniform(0, 0.2, n // 20), 20)[:n]
  values = np.round(trend + stalls + rng.normal(0, 0.01, n), 3)
  if with_nan:
    values[rng.choice(n, size=n // 20, replace=False)] = np.nan
  return values.astype(np.float32)


ADJUST_CASES = {
    "defaults": {},
    "reduce_rel": dict(raise_factor=1.0, lower_factor=0.5, improve_factor=1.0, patience=2,
                       cooldown=0, min_scale=0.01, max_scale=1.0),
    "reduce_abs_cooldown": dict(raise_factor=1.0, lower_factor=0.3, improve_factor=1.0,
                                patience=1, cooldown=3, threshold=0.02,
                                threshold_mode="abs", min_scale=0.001,
                                max_scale=1.0),
    "bold_driver_like": dict(raise_factor=1.0, lower_factor=0.5, improve_factor=1.05,
                             patience=0, cooldown=0, min_scale=0.01,
                             max_scale=3.0),
    "target": dict(target=0.8, raise_factor=1.3, improve_factor=0.95,
                   patience=2, cooldown=1, min_scale=0.1, max_scale=2.0),
    "tight_bounds": dict(raise_factor=3.0, improve_factor=0.1, patience=0,
                         min_scale=0.5, max_scale=1.5),
    "raise_lower": dict(raise_factor=2.0, lower_factor=0.5, patience=1,
                        cooldown=0, max_raises=3, train_threshold=0.02,
                        min_scale=0.01, max_scale=8.0),
    "fitted_rising": dict(raise_factor=2.0, patience=1, cooldown=0,
                          train_rise=0.05, fitted_ratio=0.2,
                          max_scale=8.0),
    "brake": dict(rise_factor=0.5, train_rise=0.1, improve_factor=1.05,
                  patience=1, cooldown=0, min_scale=0.01, max_scale=10.0),
    "slow_growth": dict(slow_progress=0.2, raise_factor=1.3, patience=2,
                        max_scale=10.0, fitted_ratio=0.1),
    # The brake's ceiling on later raises, and without it.
    "brake_memory": dict(rise_factor=0.5, train_rise=0.05,
                         slow_progress=0.3, raise_factor=1.3, patience=1,
                         cooldown=0, max_scale=10.0, fitted_ratio=0.1,
                         remember_brake=True),
    # The brake on any rise, also while validation improves.
    "brake_on_any_rise": dict(rise_factor=0.5, train_rise=0.05,
                              slow_progress=0.3, raise_factor=1.3,
                              patience=1, cooldown=0, max_scale=10.0,
                              fitted_ratio=0.1, brake_while_improving=True),
    "brake_no_memory": dict(rise_factor=0.5, train_rise=0.05,
                            slow_progress=0.3, raise_factor=1.3,
                            patience=1, cooldown=0, max_scale=10.0,
                            fitted_ratio=0.1, remember_brake=False),
    # The slow-progress raise after two slow evaluations in a row.
    "slow_twice": dict(slow_progress=0.2, slow_patience=2, raise_factor=1.3,
                       patience=2, max_scale=10.0, fitted_ratio=0.1),
    # A brake that waits for a high loss that does not fall back.
    "brake_waits": dict(rise_factor=0.5, train_rise=0.05, brake_patience=1,
                        slow_progress=0.3, raise_factor=1.3, patience=1,
                        cooldown=0, max_scale=10.0, fitted_ratio=0.1),
}


@pytest.mark.parametrize("case", sorted(ADJUST_CASES))
@pytest.mark.parametrize("variant", ["positive", "negative", "max", "nan"])
@pytest.mark.parametrize("with_train", [False, True])
def test_adjust_matches_reference(case, variant, with_train):
  kwargs = dict(ADJUST_CASES[case])
  values = _metric_sequence(seed=len(case), negative=variant == "negative",
                            with_nan=variant == "nan")
  train = (_train_sequence(seed=len(case), with_nan=variant == "nan")
           if with_train else None)
  if variant == "max":  # an accuracy-like metric, to be maximised
    values = (1.0 - values / 4.0).astype(np.float32)
    kwargs["mode"] = "max"
    if "target" in kwargs:
      kwargs["target"] = 0.8
  if variant == "negative" and "target" in kwargs:
    kwargs["target"] = -2.2
  expected = adjust_reference(values, train, **kwargs)
  steps_per_eval = 3
  step_train = None if train is None else np.repeat(train, steps_per_eval)
  got = scales_over_steps(adjust_with(**kwargs),
                          *per_step_measurements(values, steps_per_eval),
                          step_train=step_train)
  np.testing.assert_allclose(got[steps_per_eval - 1::steps_per_eval],
                             expected, rtol=1e-5)
  assert np.all(np.isfinite(got))
  assert np.all((got >= kwargs.get("min_scale", 0.05) * (1 - 1e-6))
                & (got <= kwargs.get("max_scale", 10.0) * (1 + 1e-6)))


def test_negative_metric_worsening_is_not_improvement():
  # best = -10; -9.5 is worse. Optax/PyTorch's `v < best * (1 - rtol)` with
  # rtol=0.1 says -9.5 < -9 is an improvement; ours must count it as bad.
  tx = lrtransfer.reduce_on_plateau(factor=0.5, patience=0, threshold=0.1)
  got = scales_over_steps(tx, *per_step_measurements([-10.0, -9.5], 1))
  np.testing.assert_allclose(got, [1.0, 0.5])


def test_nan_first_value_never_becomes_best():
  tx = lrtransfer.reduce_on_plateau(factor=0.5, patience=5)
  state = tx.init({"w": np.zeros(2, np.float32)})
  grads = {"w": np.ones(2, np.float32)}
  for count, value in enumerate([np.nan, 3.0, np.nan, 2.0], start=1):
    _, state = tx.update(grads, state, metric=lrtransfer.measurement(
        value, count))
  assert float(state.plateau.best) == 2.0
  assert int(state.plateau.num_bad) == 0


@pytest.mark.parametrize("kwargs", [
    dict(rate=0.9, every_steps=1),
    dict(rate=0.99, every_steps=7, staircase=True),
    dict(rate=0.5, every_steps=3, warmup_steps=5, warmup_init=0.1),
    dict(rate=0.7, every_steps=2, min_scale=0.05, staircase=True),
    dict(rate=1.0, every_steps=4, warmup_steps=3),
])
def test_decay_matches_reference(kwargs):
  n = 60
  got = scales_over_steps(lrtransfer.decay(**kwargs),
                          np.zeros(n, np.float32), np.zeros(n, np.int32))
  np.testing.assert_allclose(got, decay_reference(n, **kwargs), rtol=2e-5,
                             atol=1e-7)


def test_schedule_scale_applies_any_optax_schedule():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 50, 0.01)
  n = 60
  got = scales_over_steps(lrtransfer.schedule_scale(schedule),
                          np.zeros(n, np.float32), np.zeros(n, np.int32))
  np.testing.assert_allclose(got, [schedule(t) for t in range(n)], rtol=1e-5,
                             atol=1e-6)


DYNAMIC_CASES = {
    "defaults": {},
    "no_gains": dict(progress_gain=0.0, stall_gain=1.0),
    "reduce": dict(raise_factor=1.0, lower_factor=0.5, improve_factor=1.0, patience=1,
                   cooldown=0, rate=0.95),
    "max_target": dict(mode="max", target=-0.5, improve_factor=0.97,
                       patience=2, threshold=0.01, threshold_mode="abs"),
    "raise_lower": dict(raise_factor=2.0, lower_factor=0.5, patience=1,
                        cooldown=0, max_raises=3, max_scale=8.0),
    "gated_brake": dict(improving_gain=0.0, rise_factor=0.5, train_rise=0.1,
                        patience=1, cooldown=0, brake_patience=0),
    "slow_growth": dict(slow_progress=0.2, raise_factor=1.3, max_scale=10.0,
                        improving_gain=1.0),
    "slow_twice": dict(slow_progress=0.2, slow_patience=2, raise_factor=1.3,
                       max_scale=10.0, improving_gain=1.0),
    "brake_memory": dict(rise_factor=0.5, train_rise=0.05, slow_progress=0.3,
                         raise_factor=1.3, patience=1, cooldown=0,
                         fitted_ratio=0.1, brake_patience=0),
    # The brake on any rise, also while validation improves.
    "brake_on_any_rise": dict(rise_factor=0.5, train_rise=0.05,
                              slow_progress=0.3, raise_factor=1.3,
                              patience=1, cooldown=0, max_scale=10.0,
                              fitted_ratio=0.1, brake_while_improving=True),
    "brake_no_memory": dict(rise_factor=0.5, train_rise=0.05,
                            slow_progress=0.3, raise_factor=1.3,
                            patience=1, cooldown=0, fitted_ratio=0.1,
                            remember_brake=False, brake_patience=0),
}


@pytest.mark.parametrize("case", sorted(DYNAMIC_CASES))
@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("with_train", [False, True])
def test_dynamic_matches_reference(case, with_nan, with_train):
  kwargs = dict(DYNAMIC_CASES[case])
  values = _metric_sequence(seed=7, n=80, with_nan=with_nan)
  if kwargs.get("mode") == "max":
    values = -values
  # Irregular evaluation intervals: 1 to 6 steps between evaluations.
  rng = np.random.default_rng(3)
  repeats = rng.integers(1, 7, size=len(values))
  step_values = np.repeat(values, repeats)
  step_counts = np.repeat(np.arange(1, len(values) + 1), repeats)
  step_train = (np.repeat(_train_sequence(7, n=80, with_nan=with_nan),
                          repeats) if with_train else None)
  total = len(step_values)
  expected = dynamic_reference(step_values, step_counts, step_train,
                               total_steps=total // 2, every_steps=4, **kwargs)
  got = scales_over_steps(
      dynamic_with(total // 2, every_steps=4, **kwargs), step_values,
      step_counts.astype(np.int32), step_train=step_train)
  np.testing.assert_allclose(got, expected, rtol=2e-4)
  assert np.all(np.isfinite(got))


def _oscillating_train_sequence(n, with_nan=False):
  """A falling training loss with decaying swings lasting several
  evaluations (SGD-momentum's overshoot), on which a waiting brake acts."""
  k = np.arange(n)
  values = (1.5 * np.exp(-k / 30.0) + 0.3
            + 0.8 * np.exp(-k / 40.0) * np.sin(k / 2.5) ** 2)
  if with_nan:
    values[np.random.default_rng(5).choice(n, size=n // 20,
                                           replace=False)] = np.nan
  return np.round(values, 3).astype(np.float32)


@pytest.mark.parametrize("brake_patience", [0, 1, 2])
@pytest.mark.parametrize("with_nan", [False, True])
def test_waiting_brake_matches_reference(brake_patience, with_nan):
  # Both strategies on a loss whose rises last several evaluations, so the
  # brake acts at every patience (checked against rise_factor=1).
  kwargs = dict(rise_factor=0.5, brake_patience=brake_patience,
                train_rise=0.1, patience=2, cooldown=0, fitted_ratio=0.05)
  values = _metric_sequence(seed=11, n=80, with_nan=with_nan)
  train = _oscillating_train_sequence(80, with_nan=with_nan)
  expected = adjust_reference(values, train, **kwargs)
  no_brake = adjust_reference(values, train, **{**kwargs, "rise_factor": 1.0})
  assert np.any(expected != no_brake)
  got = scales_over_steps(adjust_with(**kwargs),
                          *per_step_measurements(values, 1), step_train=train)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  counts = np.arange(1, len(values) + 1)
  expected = dynamic_reference(values, counts, train, total_steps=80,
                               **kwargs)
  no_brake = dynamic_reference(values, counts, train, total_steps=80,
                               **{**kwargs, "rise_factor": 1.0})
  assert np.any(expected != no_brake)
  got = scales_over_steps(dynamic_with(80, **kwargs), values,
                          counts.astype(np.int32), step_train=train)
  np.testing.assert_allclose(got, expected, rtol=2e-4)


def test_bold_driver_compares_with_the_best_not_the_previous_evaluation():
  # 1.5 is better than the previous evaluation (2.0) but not than the best
  # (1.0): Battiti's reference is the error of the weights kept, the best,
  # so the rate is cut again (see bold_driver's docstring).
  tx = lrtransfer.bold_driver(increase=2.0, decrease=0.5)
  got = scales_over_steps(tx, *per_step_measurements([1.0, 2.0, 1.5, 0.5],
                                                     1))
  np.testing.assert_allclose(got, [2.0, 1.0, 0.5, 1.0])
