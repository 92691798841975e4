"""AdjustRule(train_smoothing=w): the guard reads a moving average of the
training value, so one noisy epoch does not brake, a non-finite value still
brakes at once and a loss that keeps rising is still cut."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrtransfer
from lrtransfer._src import raising


def _scales(rule, val_losses, train_losses, steps=2):
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


# Validation stalls (so no gate holds the brake); the training loss has one
# noisy epoch 40% above its best, then falls back.
VAL = [1.0, 0.9, 0.95, 0.95, 0.95]
TRAIN_SPIKE = [1.0, 0.8, 1.12, 0.8, 0.8]


def test_one_noisy_epoch_brakes_the_raw_value_not_the_smoothed_one():
  raw = _scales(lrtransfer.AdjustRule(), VAL, TRAIN_SPIKE)
  smoothed = _scales(lrtransfer.AdjustRule(train_smoothing=0.5), VAL,
                     TRAIN_SPIKE)
  assert raw[2] == pytest.approx(0.5)  # 1.12 > 1.25 * 0.8: the brake
  # Smoothed: 1.0, 0.9, 1.01 < 1.25 * 0.9: no brake.
  assert (smoothed == 1.0).all()


def test_a_non_finite_training_loss_brakes_at_once():
  scales = _scales(lrtransfer.AdjustRule(train_smoothing=0.8), VAL,
                   [1.0, 0.8, np.nan, 0.8, 0.8])
  assert scales[2] == pytest.approx(0.5 * scales[1])


def test_a_loss_that_keeps_rising_is_still_cut():
  scales = _scales(lrtransfer.AdjustRule(train_smoothing=0.5), VAL,
                   [1.0, 0.8, 2.0, 4.0, 8.0])
  assert scales[-1] <= 0.25


def test_the_average_starts_at_the_first_finite_value_and_skips_nan():
  weight = 0.5
  value, kept = raising.smooth(weight, jnp.asarray(jnp.nan), 2.0)
  assert float(value) == float(kept) == 2.0  # no bias towards zero
  value, kept = raising.smooth(weight, kept, 1.0)
  assert float(value) == float(kept) == 1.5
  value, kept2 = raising.smooth(weight, kept, jnp.inf)
  assert float(value) == np.inf and float(kept2) == 1.5  # passed through


def test_no_smoothing_reads_the_value_itself():
  value, _ = raising.smooth(0.0, jnp.asarray(0.3, jnp.float32), 0.7)
  assert float(value) == np.float32(0.7)


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), 1.5])
def test_the_weight_is_checked(bad):
  with pytest.raises(ValueError, match="train_smoothing"):
    lrtransfer.AdjustRule(train_smoothing=bad)
