"""adjust and dynamic cannot run away: raises are diagnosed, undone, bounded.

A validation loss that rises because the model over-fits must not be read as
a plateau to raise on: the rate would go up, validation get worse, the rate
go up again, until pinned at max_scale. These tests pin the rules that
prevent it (``lrtransfer._src.raising``): a raise needs a stalled training
loss, is undone when the next evaluation is not better, and is bounded.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrtransfer
from _harness import adjust_with, dynamic_with

PARAMS = {"w": jnp.ones(3, jnp.float32)}
EVALS = 30
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

FACTORIES = {
    "adjust": lambda **kw: adjust_with(**kw),
    "dynamic": lambda **kw: dynamic_with(EVALS, **kw),
}


@functools.cache
def _update(kind, **kwargs):
  return jax.jit(FACTORIES[kind](**kwargs).update)


def _fit_metric(k, val_loss, train_loss):
  return lrtransfer.measurement(count=k, monitor="val_loss",
                                val_loss=val_loss, train_loss=train_loss)


def _scales(kind, val, train, **kwargs):
  tx = FACTORIES[kind](**kwargs)
  state, update, out = tx.init(PARAMS), _update(kind, **kwargs), []
  for k, (v, t) in enumerate(zip(val, train), start=1):
    _, state = update(PARAMS, state, PARAMS, metric=_fit_metric(k, v, t))
    out.append(float(state.scale))
  return np.asarray(out)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_over_fitting_never_raises(kind):
  # Over-fitting: training keeps improving while validation worsens.
  k = np.arange(EVALS)
  train = 1.5 * np.exp(-k / 6.0)
  val = np.where(k < 8, 1.0 - 0.05 * k, 0.6 + 0.08 * (k - 8))
  scales = _scales(kind, val, train)
  assert np.all(np.diff(np.concatenate([[1.0], scales])) <= 0), scales


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_under_fitting_raises(kind):
  # Training and validation stall together: the model fails to fit.
  val = np.full(EVALS, 1.0)
  train = np.full(EVALS, 2.0)
  scales = _scales(kind, val, train)
  assert np.any(np.diff(scales) > 0), scales


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("train", [
    [2.3, 0.5, 0.01] + [1e-4] * (EVALS - 3),  # the training set is fitted
    [2.3 * 1.5 ** k for k in range(EVALS)],  # diverging
], ids=["fitted", "diverging"])
def test_a_fitted_or_diverging_training_loss_never_raises(kind, train):
  # Both occur in digits fine-tuning (a stalled training loss of 3e-4, and
  # one exploding from 4 to 6e8); neither means "fails to fit", so neither
  # may raise the rate.
  scales = _scales(kind, np.full(EVALS, 1.0), np.asarray(train))
  assert np.all(np.diff(np.concatenate([[1.0], scales])) <= 0), scales


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_without_a_training_value_a_plateau_never_raises(kind):
  tx = FACTORIES[kind]()
  state = tx.init(PARAMS)
  update = jax.jit(tx.update)
  previous = 1.0
  for k in range(1, EVALS + 1):
    _, state = update(PARAMS, state, PARAMS,
                      metric=lrtransfer.measurement(1.0, k))
    assert float(state.scale) <= previous
    previous = float(state.scale)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_non_finite_training_value_never_raises(kind):
  scales = _scales(kind, np.full(EVALS, 1.0), np.full(EVALS, np.nan))
  assert np.all(np.diff(np.concatenate([[1.0], scales])) <= 0), scales


CONFIGS = [
    ("adjust", ()),
    ("adjust", (("raise_factor", 3.0), ("patience", 0), ("cooldown", 0),
                ("max_raises", 4), ("max_scale", 50.0))),
    ("dynamic", ()),
    ("dynamic", (("raise_factor", 2.0), ("patience", 0), ("cooldown", 0),
                 ("max_raises", 3), ("improve_factor", 0.9))),
]


@SETTINGS
@given(config=st.sampled_from(CONFIGS),
       drawn=st.lists(st.floats(0.0, 3.0, width=32), min_size=EVALS,
                      max_size=EVALS),
       train=st.one_of(
           st.just([2.0] * EVALS),  # stalled: every plateau may raise
           st.lists(st.floats(0.0, 3.0, width=32), min_size=EVALS,
                    max_size=EVALS)),
       worse_by=st.sampled_from([0.0, 1e-3, 1.0, math.inf, math.nan]))
def test_a_metric_worse_after_every_raise_is_above_start_boundedly(
    config, drawn, train, worse_by):
  """The bound: after a raise at evaluation k, the scale after k + 1 is at
  most the scale before k (each failed raise lasts one evaluation), and at
  most ``max_raises`` raises happen between two good evaluations, so the
  scale is above where it started after at most max_raises * (1 + number of
  good evaluations) evaluations; max_raises if none is good."""
  kind, kwargs = config
  kwargs = dict(kwargs)
  max_raises = kwargs.get("max_raises", 2)
  tx = FACTORIES[kind](**kwargs)
  update = _update(kind, **kwargs)
  state = tx.init(PARAMS)
  start = float(state.scale)
  scales, raised, good, last = [start], [], [], 1.0
  for k in range(1, EVALS + 1):
    value = drawn[k - 1]
    if raised and raised[-1]:  # the adversary: worse after every raise
      value = last + worse_by if not math.isnan(worse_by) else math.nan
    best_before = float(state.plateau.best)
    _, state = update(PARAMS, state, PARAMS,
                      metric=_fit_metric(k, value, train[k - 1]))
    raised.append(not math.isnan(float(state.guard.raise_value)))
    good.append(float(state.plateau.best) < best_before)  # no target here
    scales.append(float(state.scale))
    last = value if not math.isnan(value) else last
  scales = np.asarray(scales)
  for k in np.flatnonzero(raised)[:-1] + 1:  # k: 1-based evaluation
    assert scales[k + 1] <= scales[k - 1], (k, scales)
  above = int(np.sum(scales[1:] > start))
  assert above <= max_raises * (1 + sum(good)), (above, scales)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_metric_that_only_worsens_is_above_start_at_most_max_raises(kind):
  # Validation worse at every evaluation, training stalled: every plateau is
  # a candidate raise, and every raise fails.
  val = 1.0 + 0.1 * np.arange(EVALS)
  scales = _scales(kind, val, np.full(EVALS, 2.0), patience=0, cooldown=0)
  assert 0 < np.sum(scales > 1.0) <= 2, scales


# The brake (``rise_factor``): a training loss well above its best means the
# rate is too high now; cut, whatever validation says (at once with
# brake_patience=0, the default of adjust; dynamic waits one evaluation).
NO_DRIFT = {"adjust": {"improve_factor": 1.0}, "dynamic": {"rate": 1.0}}
# The brake at the first high evaluation (dynamic waits one by default).
AT_ONCE = dict(rise_factor=0.5, brake_patience=0)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_rising_training_loss_cuts_the_rate_at_once(kind):
  val = [1.0, 0.9, 0.8, 0.7]  # improving: no plateau is involved
  train = [1.0, 0.9, 1.2, 0.85]  # 1.2 > 0.9 * (1 + 0.25): rising
  scales = _scales(kind, val, train, **AT_ONCE, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 1.0, 0.5, 0.5])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_diverging_training_loss_brakes_down_to_min_scale(kind):
  train = 2.0 ** np.arange(EVALS)  # doubles at every evaluation
  val = np.full(EVALS, 1.0)
  scales = _scales(kind, val, train, **AT_ONCE, min_scale=0.01,
                   **NO_DRIFT[kind])
  np.testing.assert_allclose(scales[:4], [1.0, 0.5, 0.25, 0.125])
  assert scales[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_non_finite_training_loss_brakes(kind):
  scales = _scales(kind, [1.0, 0.9, 0.8], [1.0, math.nan, math.inf],
                   rise_factor=0.5, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 0.5, 0.25])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_fitted_training_loss_does_not_brake(kind):
  # 0.002 -> 0.004 doubles, but both are below fitted_ratio * first = 0.05.
  scales = _scales(kind, [1.0, 0.9, 0.8], [1.0, 0.002, 0.004],
                   **AT_ONCE, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_rise_factor_one_turns_the_brake_off(kind):
  scales = _scales(kind, [1.0, 0.9, 0.8], [1.0, 0.9, 5.0], rise_factor=1.0,
                   brake_patience=0, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_no_raise_climbs_back_above_a_brake(kind):
  # Brake at the third evaluation (0.5), then validation improves while the
  # training loss creeps (< 10% per evaluation): every evaluation asks for a
  # slow-progress raise, and the ceiling the brake left stops them all.
  val = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
  train = [1.0, 0.9, 1.3, 0.88, 0.86, 0.84, 0.82, 0.80]
  kwargs = dict(**AT_ONCE, slow_progress=0.1, max_scale=10.0,
                **NO_DRIFT[kind])
  scales = _scales(kind, val, train, remember_brake=True, **kwargs)
  np.testing.assert_allclose(scales[2:], 0.5)
  # Without the memory, the same run climbs back above the braked rate.
  free = _scales(kind, val, train, remember_brake=False, **kwargs)
  assert free[-1] > 1.0, free


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_raise_below_the_ceiling_still_happens(kind):
  # Grows before any brake (no ceiling yet): the slow-progress raise works.
  val = [1.0, 0.9, 0.8, 0.7]
  train = [1.0, 0.95, 0.92, 0.90]
  scales = _scales(kind, val, train, rise_factor=0.5, slow_progress=0.1,
                   max_scale=10.0, **NO_DRIFT[kind])
  assert scales[-1] > 1.0, scales


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_loss_climbing_below_its_start_is_cut_once_per_rise(kind):
  # SGD-momentum on a fresh head (a measured trace): the loss falls from its
  # start, overshoots and climbs for a few evaluations while the velocity
  # decays. Judged against the best alone, every one of them cut the rate;
  # below the start, a second cut needs a rise of train_rise (25%) past the
  # level of the first: 1.95 cuts, 2.38 (< 1.25 * 1.95) does not, 2.67 does.
  # Validation improves throughout, so adjust's default holds the brake
  # below the start (tests/test_brake_while_improving.py); the ratchet is
  # the brake's rule where it is not held.
  val = np.linspace(1.0, 0.5, 9)
  train = [5.2, 4.1, 1.73, 1.26, 1.95, 2.38, 2.67, 2.69, 2.6]
  scales = _scales(kind, val, train, **AT_ONCE, slow_progress=0.0,
                   brake_while_improving=True, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1, 1, 1, 1, .5, .5, .25, .25, .25])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_loss_above_its_start_is_cut_at_every_evaluation(kind):
  # Above where training started the loss is diverging: no ratchet.
  val = np.full(5, 1.0)
  train = [1.0, 0.9, 1.2, 1.25, 1.3]  # < 1.25 x the last cut, above start
  scales = _scales(kind, val, train, **AT_ONCE, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 1.0, 0.5, 0.25, 0.125])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_brake_patience_leaves_a_catapult_alone(kind):
  # A rate near the edge of stability: the loss spikes at the first steps
  # and settles by itself (a measured trace at 30x the best rate of a tiny
  # task). brake_patience=1 cuts once, where the loss is high for the
  # second evaluation in a row and still climbing; 0 cuts at every high
  # evaluation above the start (3.35).
  val = np.full(6, 1.0)
  train = [3.35, 11.6, 23.5, 4.3, 1.7, 1.2]
  waiting = _scales(kind, val, train, rise_factor=0.5, brake_patience=1,
                    **NO_DRIFT[kind])
  np.testing.assert_allclose(waiting, [1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
  at_once = _scales(kind, val, train, **AT_ONCE, **NO_DRIFT[kind])
  np.testing.assert_allclose(at_once, [1.0, .5, .25, .125, .125, .125])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_brake_patience_does_not_wait_on_a_non_finite_loss(kind):
  scales = _scales(kind, [1.0, 0.9, 0.8], [1.0, math.nan, math.inf],
                   rise_factor=0.5, brake_patience=3, **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1.0, 0.5, 0.25])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_brake_patience_still_stops_a_divergence(kind):
  train = 2.0 ** np.arange(EVALS)
  scales = _scales(kind, np.full(EVALS, 1.0), train, rise_factor=0.5,
                   min_scale=0.01, brake_patience=2, **NO_DRIFT[kind])
  # Waits two evaluations (2, 4 high), then cuts at each one.
  np.testing.assert_allclose(scales[:6], [1.0, 1.0, 1.0, 0.5, 0.25, 0.125])
  assert scales[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_an_improvement_clears_the_level_of_the_last_cut(kind):
  # Cut at 1.5 (level 1.5); 0.8 is a new best and clears it, so 1.2 (below
  # 1.25 x 1.5 but 50% above the new best) cuts again (the brake not held
  # while validation improves: the rule where it acts).
  scales = _scales(kind, np.linspace(1.0, 0.6, 5), [5.0, 1.0, 1.5, 0.8, 1.2],
                   **AT_ONCE, slow_progress=0.0, brake_while_improving=True,
                   **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1, 1, .5, .5, .25])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_loss_back_below_the_threshold_restarts_the_wait(kind):
  # 2.0 is high (run 1), 1.1 is not (run reset), 2.2 high (run 1), 2.3 high
  # and climbing (run 2 > brake_patience 1): one cut, at the last.
  scales = _scales(kind, np.linspace(1.0, 0.6, 5), [1.0, 2.0, 1.1, 2.2, 2.3],
                   rise_factor=0.5, brake_patience=1, slow_progress=0.0,
                   **NO_DRIFT[kind])
  np.testing.assert_allclose(scales, [1, 1, 1, 1, .5])


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_one_number_without_a_training_loss_warns_at_trace_time(kind):
  # Fed one number, adjust can neither raise nor brake and would hold the
  # rate silently. It still works (measurement(value, count) is the simple
  # form), but says at trace time what is off and how to turn it on.
  tx = FACTORIES[kind]()
  state = tx.init(PARAMS)
  with pytest.warns(UserWarning, match="no 'train_loss'.*brake"):
    tx.update(PARAMS, state, PARAMS, metric=lrtransfer.measurement(1.0, 1))


@pytest.mark.parametrize("make", [
    lambda: adjust_with(train_monitor=None),
    lambda: lrtransfer.reduce_on_plateau(),
    lambda: lrtransfer.bold_driver(),
    lambda: adjust_with(raise_factor=1.0, lower_factor=0.5,
                        rise_factor=1.0),
])
def test_no_warning_where_no_training_value_is_read(make):
  import warnings
  tx = make()
  state = tx.init(PARAMS)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    tx.update(PARAMS, state, PARAMS, metric=lrtransfer.measurement(1.0, 1))


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_slow_patience_waits_for_slow_progress_twice_in_a_row(kind):
  # A fresh head's first epoch barely moves the loss at any rate (a measured
  # trace: 2.28 -> 2.13, then 1.71): with slow_patience=2 that one slow
  # evaluation does not raise; steady slow progress raises from the second
  # slow evaluation on, at each one (up to max_scale).
  kwargs = dict(slow_progress=0.1, max_scale=10.0, brake_patience=0,
                **NO_DRIFT[kind])
  val = np.linspace(1.0, 0.5, 6)
  fast_after_one = [2.28, 2.13, 1.71, 1.2, 0.9, 0.7]
  scales = _scales(kind, val, fast_after_one, slow_patience=2, **kwargs)
  np.testing.assert_allclose(scales, 1.0)
  at_once = _scales(kind, val, fast_after_one, slow_patience=1, **kwargs)
  assert at_once[1] == pytest.approx(1.5), at_once
  creeping = [2.0, 1.95, 1.9, 1.86, 1.82, 1.78]
  scales = _scales(kind, val, creeping, slow_patience=2, **kwargs)
  np.testing.assert_allclose(scales, [1, 1, 1.5, 2.25, 3.375, 5.0625])
