"""The rate readouts and the position of a strategy in the chain.

A strategy chained before a transformation that normalises its input has its
scale divided out: the readouts warn. ``effective_learning_rate`` and
``learning_rates`` also take the base optimizer's schedule and read the step
count from the state.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src import placement

PARAMS = {"w": jnp.ones(3)}
GRADS = {"w": jnp.array([1.0, 2.0, 3.0])}


def _run(tx, steps=10):
  state, updates = tx.init(PARAMS), None
  for _ in range(steps):
    updates, state = tx.update(GRADS, state, PARAMS,
                               metric=lrtransfer.no_measurement())
  return updates, state


def _no_warning(fn, *args):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    return fn(*args)


READERS = [
    ("current_scale", lambda s: lrtransfer.current_scale(s)),
    ("effective_learning_rate",
     lambda s: lrtransfer.effective_learning_rate(s, 1e-2)),
    ("learning_rates", lambda s: lrtransfer.learning_rates(s, 1e-2)),
    ("group_scales", lambda s: lrtransfer.group_scales(s)),
]


@pytest.mark.parametrize("name, read", READERS)
def test_a_strategy_before_adam_warns_and_says_where_to_put_it(name, read):
  """The chain where Adam normalises the decay away: after 10 steps the
  readout says 0.01 * 0.5 ** 9 while each step still moves 3.7e-3."""
  updates, state = _run(optax.chain(lrtransfer.decay(0.5, every_steps=1),
                                    optax.adam(1e-2)))
  scale = float(_silent_scale(state))
  assert scale == pytest.approx(0.5 ** 9)
  assert float(jnp.abs(updates["w"][0])) > 100 * 1e-2 * scale  # the mismatch
  with pytest.warns(UserWarning) as record:
    read(state)
  assert len(record) == 1
  message = str(record[0].message)
  assert f"lrtransfer.{name}" in message
  assert "ScaleByAdamState" in message and "normalised away" in message
  assert "optax.chain(optax.adam(1e-3), lrtransfer.decay(0.99))" in message


def _silent_scale(state):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return lrtransfer.current_scale(state)


@pytest.mark.parametrize("name, read", READERS)
def test_a_strategy_after_adam_does_not_warn(name, read):
  del name
  _, state = _run(optax.chain(optax.adam(1e-2),
                              lrtransfer.decay(0.5, every_steps=1)))
  _no_warning(read, state)
  assert float(_no_warning(lrtransfer.current_scale, state)) == 0.5 ** 9


@pytest.mark.parametrize("optimizer, normaliser", [
    (optax.adamw(1e-3), "ScaleByAdamState"),
    (optax.rmsprop(1e-3), "ScaleByRmsState"),
    (optax.rmsprop(1e-3, centered=True), "ScaleByRStdDevState"),
    (optax.adagrad(1e-2), "ScaleByRssState"),
    (optax.lion(1e-4), "ScaleByLionState"),
    (optax.rprop(1e-3), "ScaleByRpropState"),
    (optax.adafactor(1e-3), "FactoredState"),
    (optax.contrib.schedule_free_adamw(1e-3), "ScaleByRmsWithCountState"),
    (optax.contrib.prodigy(), "ProdigyState"),
    (optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
     "ScaleByAdamState"),
    (optax.MultiSteps(optax.adam(1e-3), 2).gradient_transformation(),
     "ScaleByAdamState"),
])
def test_normalisers_are_found_at_any_depth(optimizer, normaliser):
  before = optax.chain(lrtransfer.adjust(), optimizer).init(PARAMS)
  after = optax.chain(optimizer, lrtransfer.adjust()).init(PARAMS)
  found = placement.normalised_strategies(before)
  assert [pair[1] for pair in found] == [normaliser]
  assert found[0][0] == "adjust / reduce_on_plateau / bold_driver"
  assert placement.normalised_strategies(after) == []


@pytest.mark.parametrize("optimizer", [
    optax.sgd(0.1), optax.sgd(0.1, momentum=0.9, nesterov=True),
    optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))])
def test_steps_that_keep_the_scale_do_not_warn(optimizer):
  _, state = _run(optax.chain(lrtransfer.decay(0.5), optimizer), steps=2)
  _no_warning(lrtransfer.current_scale, state)


def test_nested_chains_and_wrappers_keep_the_order():
  inner = optax.chain(lrtransfer.decay(0.5), optax.sgd(0.1))
  state = optax.chain(inner, optax.adam(1e-3)).init(PARAMS)
  assert len(placement.normalised_strategies(state)) == 1
  wrapped = optax.MultiSteps(
      optax.chain(lrtransfer.dynamic(100), optax.adam(1e-3)), 2)
  assert [p[0] for p in placement.normalised_strategies(
      wrapped.init(PARAMS))] == ["dynamic"]
  # Two groups of a partition are not one chain: no order between them.
  labels = {"w": "a"}
  split = optax.partition({"a": optax.chain(optax.adam(1e-3),
                                            lrtransfer.decay(0.5)),
                           "b": optax.chain(lrtransfer.decay(0.5),
                                            optax.sgd(0.1))}, labels)
  assert placement.normalised_strategies(split.init(PARAMS)) == []


def test_an_nnx_optimizer_is_read_the_same_way():
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      model, optax.chain(lrtransfer.decay(0.5), optax.adam(1e-3)),
      wrt=nnx.Param)
  with pytest.warns(UserWarning, match="current_scale.*ScaleByAdamState"):
    lrtransfer.current_scale(optimizer)


def test_two_misplaced_strategies_give_one_warning():
  _, state = _run(optax.chain(lrtransfer.decay(0.5), lrtransfer.adjust(),
                              optax.adam(1e-3)), steps=1)
  with pytest.warns(UserWarning) as record:
    lrtransfer.current_scale(state)
  assert len(record) == 1
  assert "decay / schedule_scale" in str(record[0].message)
  assert "adjust" in str(record[0].message)


def test_under_jit_the_warning_comes_once_at_trace_time():
  _, state = _run(optax.chain(lrtransfer.decay(0.5), optax.adam(1e-3)), 2)
  read = jax.jit(lrtransfer.current_scale)
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    first = read(state)
    second = read(state)
  assert len(record) == 1 and "current_scale" in str(record[0].message)
  assert float(first) == float(second) == 0.5


# The schedule as the base rate.

SCHEDULE = optax.linear_schedule(0.1, 0.0, transition_steps=100)


@pytest.mark.parametrize("steps", [0, 1, 10])
def test_a_schedule_is_read_at_the_most_recent_update(steps):
  """Rate = schedule(count - 1) * scale: the step index of the update whose
  scale the state holds (the first update's before any)."""
  tx = optax.chain(optax.sgd(SCHEDULE),
                   lrtransfer.decay(0.5, every_steps=1))
  updates, state = _run(tx, steps)
  rate = lrtransfer.effective_learning_rate(state, SCHEDULE)
  step = max(steps - 1, 0)
  assert float(rate) == pytest.approx(float(SCHEDULE(step)) * 0.5 ** step)
  if steps:  # plain SGD: the step taken is rate * gradient
    np.testing.assert_allclose(updates["w"], -float(rate) * GRADS["w"],
                               rtol=1e-6)
  jitted = jax.jit(lrtransfer.effective_learning_rate, static_argnums=1)
  assert float(jitted(state, SCHEDULE)) == pytest.approx(float(rate))
  assert lrtransfer.learning_rates(state, SCHEDULE)["all"] == pytest.approx(
      float(rate), rel=1e-6)


def test_the_schedule_count_agrees_with_inject_hyperparams_record():
  """optax.inject_hyperparams stores the rate its last update used: the
  readout matches it, scale included."""
  tx = optax.chain(optax.inject_hyperparams(optax.sgd)(learning_rate=SCHEDULE),
                   lrtransfer.decay(0.9, every_steps=1))
  _, state = _run(tx, 7)
  recorded = state[0].hyperparams["learning_rate"]
  scale = lrtransfer.current_scale(state)
  assert float(lrtransfer.effective_learning_rate(state, SCHEDULE)) == (
      pytest.approx(float(recorded * scale)))


def test_without_an_optax_counter_the_strategy_counts_the_steps():
  tx = optax.chain(optax.sgd(0.1), lrtransfer.decay(0.5, every_steps=1))
  _, state = _run(tx, 4)
  assert float(lrtransfer.effective_learning_rate(state, SCHEDULE)) == (
      pytest.approx(float(SCHEDULE(3)) * 0.5 ** 3))


def test_a_schedule_without_any_counter_is_refused():
  _, state = _run(optax.chain(optax.sgd(0.1), lrtransfer.adjust()), 2)
  with pytest.raises(ValueError, match="no step counter.*optax.sgd"
                     r"\(schedule"):
    lrtransfer.effective_learning_rate(state, SCHEDULE)


@pytest.mark.parametrize("bad", ["0.1", True, None, [0.1]])
def test_a_base_rate_that_is_neither_number_nor_schedule_is_refused(bad):
  _, state = _run(optax.chain(optax.sgd(0.1), lrtransfer.adjust()), 1)
  with pytest.raises(ValueError, match="number or an Optax schedule"):
    lrtransfer.effective_learning_rate(state, bad)
