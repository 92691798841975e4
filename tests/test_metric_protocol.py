"""The metric protocol: one reaction per new evaluation, whatever the steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrtransfer
from _harness import (
  adjust_reference,
  adjust_with,
  per_step_measurements,
  scales_over_steps,
)

VALUES = np.asarray([1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.85, 0.85, 0.85, 0.7,
                     0.7, 0.7, 0.7, 0.7], np.float32)
KWARGS = dict(patience=1, cooldown=1, raise_factor=1.0, lower_factor=0.5, improve_factor=0.9,
              min_scale=0.01, max_scale=1.0)


@pytest.mark.parametrize("steps_per_eval", [1, 4, 13])
def test_reacts_once_per_evaluation_whatever_the_steps(steps_per_eval):
  got = scales_over_steps(adjust_with(**KWARGS),
                          *per_step_measurements(VALUES, steps_per_eval))
  np.testing.assert_allclose(got[steps_per_eval - 1::steps_per_eval],
                             adjust_reference(VALUES, **KWARGS), rtol=1e-6)
  # Between evaluations the scale does not move.
  per_eval = got.reshape(len(VALUES), steps_per_eval)
  assert np.all(per_eval == per_eval[:, :1])


def test_irregular_evaluation_intervals():
  repeats = np.asarray([1, 7, 2, 2, 11, 1, 1, 3, 5, 1, 9, 2, 1, 4])
  step_values = np.repeat(VALUES, repeats)
  step_counts = np.repeat(np.arange(1, len(VALUES) + 1), repeats)
  got = scales_over_steps(adjust_with(**KWARGS), step_values,
                          step_counts.astype(np.int32))
  last_step_of_eval = np.cumsum(repeats) - 1
  np.testing.assert_allclose(got[last_step_of_eval],
                             adjust_reference(VALUES, **KWARGS), rtol=1e-6)


def test_no_measurement_and_stale_counts_do_not_react():
  tx = adjust_with(**KWARGS)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(5):  # before the first evaluation
    _, state = update(params, state, params,
                      metric=lrtransfer.no_measurement())
  assert int(state.plateau.last_count) == 0
  assert float(state.plateau.best) == np.inf
  _, state = update(params, state, params,
                    metric=lrtransfer.measurement(1.0, 3))
  judged = state
  # Count 3 again, or an older count, changes nothing, even with new values.
  for value, count in [(0.1, 3), (0.1, 2), (5.0, 1)]:
    _, state = update(params, state, params,
                      metric=lrtransfer.measurement(value, count))
  jax.tree.map(np.testing.assert_array_equal, state, judged)


def test_optax_reduce_on_plateau_trap_is_absent():
  # Optax's reduce_on_plateau counts the value of every update: fed the same
  # epoch loss on each of 10 steps it reduces within the first epoch.
  steps_per_epoch, values = 10, [1.0, 1.0]
  optax_tx = optax.contrib.reduce_on_plateau(factor=0.5, patience=2)
  state = optax_tx.init({"w": jnp.ones(2)})
  for value in np.repeat(values, steps_per_epoch):
    _, state = optax_tx.update({"w": jnp.ones(2)}, state,
                               value=jnp.float32(value))
  assert float(state.scale) < 1.0
  # Ours reacts to evaluations: two evaluations with patience 2 is no plateau.
  ours = scales_over_steps(lrtransfer.reduce_on_plateau(factor=0.5,
                                                        patience=2),
                           *per_step_measurements(values, steps_per_epoch))
  assert np.all(ours == 1.0)


@pytest.mark.parametrize("factory", [lrtransfer.adjust,
                                     lambda: lrtransfer.dynamic(100)])
def test_missing_metric_is_a_trace_time_error(factory):
  tx = factory()
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="metric=lrtransfer.measurement"):
    jax.jit(tx.update)(params, tx.init(params), params)


def test_bare_value_is_rejected_with_the_reason():
  tx = lrtransfer.adjust()
  params = {"w": jnp.ones(2)}
  with pytest.raises(TypeError, match="count"):
    tx.update(params, tx.init(params), params, metric=jnp.float32(0.5))


def test_non_scalar_metric_is_rejected():
  tx = lrtransfer.adjust()
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match=r"scalar, got shape \(3,\)"):
    jax.jit(tx.update)(params, tx.init(params), params,
                       metric=lrtransfer.Measurement({"value": jnp.ones(3)},
                                                     jnp.int32(1)))


def test_float_count_is_rejected():
  tx = lrtransfer.adjust()
  params = {"w": jnp.ones(2)}
  with pytest.raises(TypeError, match="integer"):
    tx.update(params, tx.init(params), params,
              metric=lrtransfer.Measurement({"value": jnp.float32(1.0)},
                                            jnp.float32(1.0)))


def test_decay_needs_no_metric():
  tx = lrtransfer.decay(0.5, every_steps=1)
  params = {"w": jnp.ones(2)}
  updates, state = jax.jit(tx.update)(params, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [1.0, 1.0])
  updates, state = jax.jit(tx.update)(params, state, params)
  np.testing.assert_allclose(updates["w"], [0.5, 0.5])


def test_current_scale_without_strategy_is_an_error():
  state = optax.sgd(0.1).init({"w": jnp.ones(2)})
  with pytest.raises(ValueError, match="no lrtransfer strategy"):
    lrtransfer.current_scale(state)
  assert float(lrtransfer.current_scale(state, missing=1.0)) == 1.0


def test_current_scale_multiplies_chained_strategies_under_jit():
  tx = optax.chain(optax.sgd(0.1), lrtransfer.decay(0.5, every_steps=1),
                   adjust_with(init_scale=0.5, min_scale=0.1))
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  _, state = tx.update(params, state, params,
                       metric=lrtransfer.no_measurement())
  _, state = tx.update(params, state, params,
                       metric=lrtransfer.no_measurement())
  assert float(jax.jit(lrtransfer.current_scale)(state)) == 0.25
  assert float(lrtransfer.effective_learning_rate(state, 0.1)) == pytest.approx(
      0.025)


# Several named values per evaluation.

FIT_NAMES = ("val_loss", "val_accuracy", "train_loss")


def fit_measurement(count, val_loss=1.0, val_accuracy=0.5, train_loss=1.0,
                    monitor="val_loss", **kwargs):
  return lrtransfer.measurement(count=count, monitor=monitor,
                                val_loss=val_loss, val_accuracy=val_accuracy,
                                train_loss=train_loss, **kwargs)


def test_single_value_measurement_keeps_its_old_form():
  m = lrtransfer.measurement(0.3, 5)
  assert m.values.keys() == {"value"} and (m.monitor, m.mode) == ("value",
                                                                  "min")
  assert m.value.dtype == jnp.float32 and m.count.dtype == jnp.int32
  assert float(m.value) == pytest.approx(0.3) and int(m.count) == 5


def test_no_measurement_has_the_structure_of_what_follows():
  assert (jax.tree.structure(lrtransfer.no_measurement())
          == jax.tree.structure(lrtransfer.measurement(0.3, 5)))
  assert (jax.tree.structure(lrtransfer.no_measurement(*FIT_NAMES,
                                                       monitor="val_loss"))
          == jax.tree.structure(fit_measurement(3)))


@pytest.mark.parametrize("count", [1.5, -1, 2**31, True, "3", 2.0])
def test_bad_counts_are_refused_eagerly_naming_the_value(count):
  with pytest.raises(ValueError, match=f"count={count!r}"):
    lrtransfer.measurement(0.3, count)


def test_integer_array_counts_are_accepted_and_range_checked():
  assert int(lrtransfer.measurement(0.3, np.int64(7)).count) == 7
  with pytest.raises(ValueError, match="count=-2"):
    lrtransfer.measurement(0.3, jnp.asarray(-2))
  with pytest.raises(ValueError, match="count"):
    lrtransfer.measurement(0.3, jnp.asarray(1.0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(monitor="val_acc"), "val_acc"),
    (dict(mode="maximum"), "mode"),
])
def test_bad_monitor_or_mode_is_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    fit_measurement(1, **kwargs)


def test_several_values_need_a_monitor():
  with pytest.raises(ValueError, match="monitor="):
    lrtransfer.measurement(count=1, a=1.0, b=2.0)


def test_strategy_follows_the_measurements_monitor_and_mode():
  # The monitored accuracy rises: improvements in "max" mode, so the scale
  # goes down by improve_factor at each evaluation after the first.
  kwargs = dict(patience=0, cooldown=0, improve_factor=0.5, min_scale=0.01)
  tx = adjust_with(**kwargs)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  for k, accuracy in enumerate([0.5, 0.6, 0.7], start=1):
    metric = lrtransfer.measurement(count=k, monitor="val_accuracy",
                                    mode="max", val_loss=1.0,
                                    val_accuracy=accuracy)
    _, state = jax.jit(tx.update)(params, state, params, metric=metric)
  assert float(state.scale) == 0.125
  # The same values judged on val_loss (constant): no improvement after the
  # first, so no cut below 0.5.
  tx = adjust_with(monitor="val_loss", mode="min", **kwargs)
  state = tx.init(params)
  for k, accuracy in enumerate([0.5, 0.6, 0.7], start=1):
    metric = lrtransfer.measurement(count=k, monitor="val_accuracy",
                                    mode="max", val_loss=1.0,
                                    val_accuracy=accuracy)
    _, state = tx.update(params, state, params, metric=metric)
  assert float(state.scale) >= 0.5


def test_strategy_monitoring_a_missing_name_fails_naming_the_available():
  tx = lrtransfer.adjust(monitor="val_acc")
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match=r"'val_acc'.*\['train_loss', "
                     r"'val_accuracy', 'val_loss'\]"):
    jax.jit(tx.update)(params, tx.init(params), params,
                       metric=fit_measurement(1))


def test_multi_value_measurement_through_scan_vmap_and_nnx():
  from flax import nnx
  tx = adjust_with(patience=0, cooldown=0, improve_factor=0.5,
                         min_scale=0.01)
  params = {"w": jnp.ones(2)}

  def body(state, inputs):
    k, loss = inputs
    metric = lrtransfer.measurement(count=k, monitor="val_loss",
                                    val_loss=loss, val_accuracy=1 - loss,
                                    train_loss=loss)
    _, state = tx.update(params, state, params, metric=metric)
    return state, state.scale

  ks = jnp.arange(1, 4, dtype=jnp.int32)
  losses = jnp.asarray([1.0, 0.5, 0.25])
  _, scales = jax.jit(lambda s: jax.lax.scan(body, s, (ks, losses)))(
      tx.init(params))
  np.testing.assert_array_equal(scales, [0.5, 0.25, 0.125])
  batched = jax.vmap(lambda loss: tx.update(
      params, tx.init(params), params,
      metric=fit_measurement(1, val_loss=loss))[1].plateau.best)(losses)
  np.testing.assert_array_equal(batched, losses)

  model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.chain(optax.sgd(0.1), tx),
                            wrt=nnx.Param)
  grads = nnx.state(model, nnx.Param)
  for k, loss in enumerate([1.0, 0.5], start=1):
    optimizer.update(model, grads, metric=fit_measurement(k, val_loss=loss))
  assert float(lrtransfer.current_scale(optimizer)) == 0.25


def test_count_order_debug_check_catches_a_count_that_goes_back():
  params = {"w": jnp.ones(2)}
  tx = lrtransfer.adjust()
  state = tx.init(params)
  _, state = tx.update(params, state, params,
                       metric=lrtransfer.measurement(1.0, 5))

  @jax.jit
  def checked(metric, last_count):
    lrtransfer.check_count_order(metric, last_count)
    return metric.count

  checked(lrtransfer.measurement(1.0, 6), state.plateau.last_count)
  with pytest.raises(Exception, match="went back from 5 to 1"):
    jax.block_until_ready(checked(lrtransfer.measurement(1.0, 1),
                                  state.plateau.last_count))


def _partition_state(head_strategy):
  params = {"body": jnp.ones(2), "head": jnp.ones(2)}
  labels = {"body": "body", "head": "head"}
  tx = optax.chain(
      lrtransfer.decay(0.5, every_steps=1),  # acts on both groups
      optax.partition({"body": optax.chain(optax.sgd(0.1),
                                           lrtransfer.decay(0.5)),
                       "head": head_strategy}, labels))
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update(params, state, params,
                         metric=lrtransfer.measurement(1.0, 1))
  return state


def test_current_scale_refuses_strategies_in_several_partition_groups():
  state = _partition_state(optax.chain(optax.sgd(0.1),
                                       lrtransfer.decay(0.25)))
  with pytest.raises(ValueError, match="group_scales"):
    lrtransfer.current_scale(state)
  scales = jax.jit(lrtransfer.group_scales)(state)
  # The outer decay (0.5 ** 2 at the third update) times each group's own.
  assert {k: float(v) for k, v in scales.items()} == {
      "body": 0.25 * 0.5 ** 2, "head": 0.25 * 0.25 ** 2}


def test_current_scale_refuses_a_strategy_in_one_group_of_several():
  """With a strategy in the body group only, no single scale is the rate of
  every group (the head runs at the outer one alone): current_scale refuses
  and names group_scales."""
  state = _partition_state(optax.sgd(0.1))
  with pytest.raises(ValueError, match="body.*group_scales"):
    lrtransfer.current_scale(state)
  with pytest.raises(ValueError, match="group_scales"):
    lrtransfer.effective_learning_rate(state, 0.1)
  scales = lrtransfer.group_scales(state)
  assert {k: float(v) for k, v in scales.items()} == {
      "body": 0.25 * 0.5 ** 2, "head": 0.25}


def test_current_scale_of_a_one_group_partition_is_its_rate():
  labels = lambda params: jax.tree.map(lambda _: "all", params)
  tx = optax.partition({"all": optax.chain(optax.sgd(0.1),
                                           lrtransfer.decay(0.5))}, labels)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  for _ in range(2):
    _, state = tx.update(params, state, params)
  assert float(lrtransfer.current_scale(state)) == 0.5  # the 2nd update's


def test_common_scale_is_what_every_group_shares():
  """fit logs common_scale: defined wherever current_scale refuses."""
  from lrtransfer._src import inspection
  state = _partition_state(optax.sgd(0.1))  # a strategy in the body only
  assert float(inspection.common_scale(state)) == 0.25  # the outer decay
  plain = optax.chain(optax.sgd(0.1), lrtransfer.decay(0.5, every_steps=1))
  params = {"w": jnp.ones(2)}
  state = plain.init(params)
  for _ in range(3):
    _, state = plain.update(params, state, params)
  assert float(inspection.common_scale(state)) == float(
      lrtransfer.current_scale(state)) == 0.25
  assert float(inspection.common_scale(optax.sgd(0.1).init(params))) == 1.0


def test_a_strategy_over_a_nested_partition_covers_every_group():
  """A decay on the only outer group, whose inner partition splits it in
  two, scales both inner groups: current_scale gives it, and common_scale
  keeps it."""
  from lrtransfer._src import inspection
  params = {"x": jnp.ones(2), "y": jnp.ones(2)}
  inner = optax.partition({"x": optax.sgd(0.1), "y": optax.sgd(0.1)},
                          {"x": "x", "y": "y"})
  tx = optax.partition({"a": optax.chain(inner, lrtransfer.decay(0.5))},
                       {"x": "a", "y": "a"})
  state = tx.init(params)
  for _ in range(2):
    _, state = tx.update(params, state, params)
  assert float(lrtransfer.current_scale(state)) == 0.5
  assert float(inspection.common_scale(state)) == 0.5
  assert {k: float(v) for k, v in lrtransfer.group_scales(state).items()} \
      == {"a/x": 0.5, "a/y": 0.5}
