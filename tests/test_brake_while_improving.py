"""AdjustRule(brake_while_improving=False): a training loss that rises but
stays below where training started cannot cut the rate at an evaluation
that improved the monitored value; one above the start, or not finite,
still does; True is the brake on any rise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrtransfer


def _scales(rule, val_losses, train_losses, steps=3):
  tx = optax.chain(optax.sgd(0.1), lrtransfer.adjust(rule=rule))
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  scales = []
  for count, (val, train) in enumerate(zip(val_losses, train_losses), 1):
    metric = lrtransfer.measurement(count=count, monitor="val_loss",
                                    val_loss=val, train_loss=train)
    for _ in range(steps):
      _, state = update(params, state, params, metric=metric)
    scales.append(float(lrtransfer.current_scale(state)))
  return np.array(scales)


# Validation improves at every evaluation. Training (Dropout noise) rises
# more than train_rise above its best but stays below where it started;
# then one that climbs above the start (divergence); then one not finite.
VAL = [1.0, 0.9, 0.8, 0.7, 0.6]
TRAIN_NOISY = [1.0, 0.5, 0.8, 0.45, 0.7]
TRAIN_ABOVE_START = [1.0, 0.8, 1.6, 2.4, 0.9]
TRAIN_NAN = [1.0, 0.8, 0.8, np.nan, 0.8]
ALWAYS = lrtransfer.AdjustRule(brake_while_improving=True)
HOLD = lrtransfer.AdjustRule(brake_while_improving=False)


def test_the_brake_on_any_rise_cuts_on_noise_while_validation_improves():
  scales = _scales(ALWAYS, VAL, TRAIN_NOISY)
  assert scales[2] == pytest.approx(0.5 * scales[1])


def test_held_on_noise_while_validation_improves():
  scales = _scales(HOLD, VAL, TRAIN_NOISY)
  assert (np.diff(scales) >= 0).all()


def test_the_default_holds_on_noise():
  assert lrtransfer.AdjustRule().brake_while_improving is False
  np.testing.assert_array_equal(_scales(lrtransfer.AdjustRule(), VAL,
                                        TRAIN_NOISY),
                                _scales(HOLD, VAL, TRAIN_NOISY))


def test_a_training_loss_above_where_it_started_still_brakes():
  for rule in (ALWAYS, HOLD):
    scales = _scales(rule, VAL, TRAIN_ABOVE_START)
    assert scales[2] == pytest.approx(0.5 * scales[1])


def test_a_non_finite_training_loss_still_brakes():
  for rule in (ALWAYS, HOLD):
    scales = _scales(rule, VAL, TRAIN_NAN)
    assert scales[3] == pytest.approx(0.5 * scales[2])


def test_without_improvement_the_hold_does_not_apply():
  stalled = [1.0, 0.9, 0.95, 0.95, 0.95]
  np.testing.assert_array_equal(_scales(HOLD, stalled, TRAIN_NOISY),
                                _scales(ALWAYS, stalled, TRAIN_NOISY))
  assert _scales(HOLD, stalled, TRAIN_NOISY).min() < 1.0


@pytest.mark.parametrize("bad", [1, "no", None, jnp.asarray(True)])
def test_the_field_is_checked(bad):
  with pytest.raises(ValueError, match="brake_while_improving must be True "
                     "or False"):
    lrtransfer.AdjustRule(brake_while_improving=bad)


def test_a_numpy_bool_is_taken_as_a_python_bool():
  rule = lrtransfer.AdjustRule(brake_while_improving=np.bool_(True),
                               remember_brake=np.bool_(False))
  assert rule.brake_while_improving is True and rule.remember_brake is False
  assert hash(rule) == hash(lrtransfer.AdjustRule(brake_while_improving=True))
