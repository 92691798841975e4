"""Invalid hyperparameters fail at construction, naming the argument."""

import pytest

import lrtransfer

A, D = lrtransfer.AdjustRule, lrtransfer.DynamicRule

BAD = [
    (lrtransfer.adjust, dict(mode="maximum"), "mode"),
    (A, dict(threshold_mode="relative"), "threshold_mode"),
    (lrtransfer.adjust, dict(patience=-1), "patience"),
    (lrtransfer.adjust, dict(patience=1.5), "patience"),
    (lrtransfer.adjust, dict(cooldown=-2), "cooldown"),
    (A, dict(threshold=-0.1), "threshold"),
    (lrtransfer.adjust, dict(lower_factor=0.0), "lower_factor"),
    (lrtransfer.adjust, dict(raise_factor=float("nan")), "raise_factor"),
    (lrtransfer.adjust, dict(raise_factor=0.5), "raise_factor"),
    (A, dict(improve_factor=-1.0), "improve_factor"),
    (lrtransfer.adjust, dict(min_scale=2.0, max_scale=1.0), "min_scale"),
    (lrtransfer.adjust, dict(max_scale=float("inf")), "max_scale"),
    (lrtransfer.adjust, dict(min_scale=-0.1), "min_scale"),
    (lrtransfer.adjust, dict(rule=A(init_scale=50.0)), "init_scale"),
    (A, dict(target=float("nan")), "target"),
    (A, dict(eps=-1.0), "eps"),
    (lrtransfer.adjust, dict(raise_factor=True), "raise_factor"),
    (lrtransfer.dynamic, dict(total_steps=10, rate=True), "rate"),
    (lrtransfer.reduce_on_plateau, dict(factor=1.0), "factor"),
    (lrtransfer.reduce_on_plateau, dict(factor=0.0), "factor"),
    (lrtransfer.reduce_on_plateau, dict(min_scale=1.5), "min_scale"),
    (lrtransfer.bold_driver, dict(increase=0.9), "increase"),
    (lrtransfer.bold_driver, dict(decrease=1.5), "decrease"),
    (lrtransfer.decay, dict(rate=0.0), "rate"),
    (lrtransfer.decay, dict(rate=1.1), "rate"),
    (lrtransfer.decay, dict(every_steps=0), "every_steps"),
    (lrtransfer.decay, dict(warmup_steps=-1), "warmup_steps"),
    (lrtransfer.decay, dict(warmup_init=2.0), "warmup_init"),
    (lrtransfer.decay, dict(min_scale=1.0), "min_scale"),
    (lrtransfer.schedule_scale, dict(schedule=0.5), "schedule"),
    (lrtransfer.dynamic, dict(total_steps=0), "total_steps"),
    (lrtransfer.dynamic, dict(total_steps=10, every_steps=0), "every_steps"),
    (lrtransfer.dynamic, dict(total_steps=10, rate=0.0), "rate"),
    (D, dict(progress_gain=-1.0), "progress_gain"),
    (D, dict(stall_gain=0.0), "stall_gain"),
    (D, dict(improving_gain=-0.5), "improving_gain"),
    (lrtransfer.dynamic, dict(total_steps=10, min_scale=1.5, max_scale=2.0),
     "init_scale"),
    (lrtransfer.dynamic, dict(total_steps=10, mode="up"), "mode"),
    (lrtransfer.dynamic, dict(total_steps=10, lower_factor=2.0),
     "lower_factor"),
    # Strings, None and arrays that are not JAX's are not numbers.
    (lrtransfer.adjust, dict(patience="3"), "patience='3'"),
    (lrtransfer.adjust, dict(raise_factor="1.5"), "raise_factor='1.5'"),
    (A, dict(max_raises=-1), "max_raises"),
    (lrtransfer.adjust, dict(lower_factor=1.5), "lower_factor"),
    (A, dict(train_threshold=-0.1), "train_threshold"),
    (A, dict(train_monitor=3), "train_monitor"),
    (lrtransfer.adjust, dict(monitor=["val_loss"]), "monitor"),
    (A, dict(eps=None), "eps=None"),
    (lrtransfer.dynamic, dict(total_steps=10, rate="nan"), "rate='nan'"),
    (lrtransfer.dynamic, dict(total_steps=10, rate="1.5"), "rate='1.5'"),
    (lrtransfer.dynamic, dict(total_steps="10"), "total_steps='10'"),
    (lrtransfer.decay, dict(rate="0.9"), "rate='0.9'"),
    (lrtransfer.decay, dict(staircase="yes"), "staircase"),
    (A, dict(remember_brake="False"), "remember_brake"),
    (A, dict(brake_patience=-1), "brake_patience"),
    (A, dict(slow_patience=0), "slow_patience"),
    (D, dict(slow_patience=1.5), "slow_patience"),
    (A, dict(brake_patience=1.5), "brake_patience"),
    (D, dict(brake_patience="1"), "brake_patience"),
    (D, dict(remember_brake=0), "remember_brake"),
    (A, dict(rise_factor=0.0), "rise_factor"),
    (A, dict(slow_progress=1.5), "slow_progress"),
    (A, dict(fitted_ratio=-0.1), "fitted_ratio"),
    (A, dict(train_rise=-1.0), "train_rise"),
    (lrtransfer.bold_driver, dict(increase="1.1"), "increase='1.1'"),
    (lrtransfer.reduce_on_plateau, dict(factor=[0.5]), "factor"),
]


@pytest.mark.parametrize("factory,kwargs,name", BAD,
                         ids=[f"{f.__name__}-{n}-{i}"
                              for i, (f, _, n) in enumerate(BAD)])
def test_bad_hyperparameter_names_argument(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


@pytest.mark.parametrize("strategy,wrong,rule_class", [
    (lrtransfer.adjust, lrtransfer.DynamicRule(), "AdjustRule"),
    (lambda rule: lrtransfer.dynamic(10, rule=rule), lrtransfer.AdjustRule(),
     "DynamicRule"),
    (lrtransfer.adjust, {"brake_patience": 1}, "AdjustRule"),
])
def test_a_rule_of_the_wrong_class_is_refused(strategy, wrong, rule_class):
  # A DynamicRule's decay gains mean nothing to adjust; a dict is not
  # checked: each says which class to pass.
  with pytest.raises(TypeError, match=rule_class):
    strategy(rule=wrong)


def test_defaults_construct():
  lrtransfer.adjust()
  lrtransfer.reduce_on_plateau()
  lrtransfer.bold_driver()
  lrtransfer.decay()
  lrtransfer.dynamic(100)


def test_jax_arrays_are_skipped_as_inject_hyperparams_passes_them():
  import jax.numpy as jnp
  lrtransfer.adjust(patience=jnp.int32(3), raise_factor=jnp.float32(1.5),
                    lower_factor=jnp.float32(0.5))
  lrtransfer.dynamic(jnp.int32(100), rate=jnp.float32(0.9))
