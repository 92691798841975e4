"""AdjustRule(brake_while_improving=False): a rising training loss cannot
cut the rate at an evaluation that improved the monitored value, a
non-finite one still does; the default keeps the brake as it is."""

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


# Validation improves at every evaluation; training (Dropout noise) rises
# well above where it started, then is not finite.
VAL = [1.0, 0.9, 0.8, 0.7, 0.6]
TRAIN = [1.0, 0.8, 1.6, 2.4, 0.9]
TRAIN_NAN = [1.0, 0.8, 0.8, np.nan, 0.8]


def test_the_default_brakes_on_a_rising_training_loss_whatever_validation():
  scales = _scales(lrtransfer.AdjustRule(), VAL, TRAIN)
  assert scales.min() < 1.0  # the brake fired while validation improved


def test_held_while_validation_improves():
  scales = _scales(lrtransfer.AdjustRule(brake_while_improving=False), VAL,
                   TRAIN)
  assert (scales >= 1.0).all()


def test_a_non_finite_training_loss_still_brakes():
  for rule in (lrtransfer.AdjustRule(),
               lrtransfer.AdjustRule(brake_while_improving=False)):
    scales = _scales(rule, VAL, TRAIN_NAN)
    assert scales[3] == pytest.approx(0.5 * scales[2])


def test_the_field_is_checked():
  with pytest.raises(ValueError, match="brake_while_improving"):
    lrtransfer.AdjustRule(brake_while_improving=1)
