"""Invalid hyperparameters fail at construction, naming the argument."""

import pytest

import lrtransfer

BAD = [
    (lrtransfer.adjust, dict(mode="maximum"), "mode"),
    (lrtransfer.adjust, dict(threshold_mode="relative"), "threshold_mode"),
    (lrtransfer.adjust, dict(patience=-1), "patience"),
    (lrtransfer.adjust, dict(patience=1.5), "patience"),
    (lrtransfer.adjust, dict(cooldown=-2), "cooldown"),
    (lrtransfer.adjust, dict(threshold=-0.1), "threshold"),
    (lrtransfer.adjust, dict(plateau_factor=0.0), "plateau_factor"),
    (lrtransfer.adjust, dict(plateau_factor=float("nan")), "plateau_factor"),
    (lrtransfer.adjust, dict(improve_factor=-1.0), "improve_factor"),
    (lrtransfer.adjust, dict(min_scale=2.0, max_scale=1.0), "min_scale"),
    (lrtransfer.adjust, dict(max_scale=float("inf")), "max_scale"),
    (lrtransfer.adjust, dict(min_scale=-0.1), "min_scale"),
    (lrtransfer.adjust, dict(init_scale=50.0), "init_scale"),
    (lrtransfer.adjust, dict(target=float("nan")), "target"),
    (lrtransfer.adjust, dict(eps=-1.0), "eps"),
    (lrtransfer.adjust, dict(plateau_factor=True), "plateau_factor"),
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
    (lrtransfer.dynamic, dict(total_steps=10, progress_gain=-1.0),
     "progress_gain"),
    (lrtransfer.dynamic, dict(total_steps=10, stall_gain=0.0), "stall_gain"),
    (lrtransfer.dynamic, dict(total_steps=10, min_scale=1.5, max_scale=2.0),
     "min_scale"),
    (lrtransfer.dynamic, dict(total_steps=10, mode="up"), "mode"),
    # Strings, None and arrays that are not JAX's are not numbers (issue 9).
    (lrtransfer.adjust, dict(patience="3"), "patience='3'"),
    (lrtransfer.adjust, dict(plateau_factor="1.5"), "plateau_factor='1.5'"),
    (lrtransfer.adjust, dict(max_raises=-1), "max_raises"),
    (lrtransfer.adjust, dict(overfit_factor=1.5), "overfit_factor"),
    (lrtransfer.adjust, dict(overfit_factor=0.0), "overfit_factor"),
    (lrtransfer.adjust, dict(train_threshold=-0.1), "train_threshold"),
    (lrtransfer.adjust, dict(train_monitor=3), "train_monitor"),
    (lrtransfer.adjust, dict(monitor=["val_loss"]), "monitor"),
    (lrtransfer.adjust, dict(eps=None), "eps=None"),
    (lrtransfer.dynamic, dict(total_steps=10, rate="nan"), "rate='nan'"),
    (lrtransfer.dynamic, dict(total_steps=10, rate="1.5"), "rate='1.5'"),
    (lrtransfer.dynamic, dict(total_steps="10"), "total_steps='10'"),
    (lrtransfer.decay, dict(rate="0.9"), "rate='0.9'"),
    (lrtransfer.decay, dict(staircase="yes"), "staircase"),
    (lrtransfer.adjust, dict(remember_brake="False"), "remember_brake"),
    (lrtransfer.adjust, dict(brake_patience=-1), "brake_patience"),
    (lrtransfer.adjust, dict(slow_patience=0), "slow_patience"),
    (lrtransfer.dynamic, dict(total_steps=10, slow_patience=1.5),
     "slow_patience"),
    (lrtransfer.adjust, dict(brake_patience=1.5), "brake_patience"),
    (lrtransfer.dynamic, dict(total_steps=10, brake_patience="1"),
     "brake_patience"),
    (lrtransfer.dynamic, dict(total_steps=10, remember_brake=0),
     "remember_brake"),
    (lrtransfer.bold_driver, dict(increase="1.1"), "increase='1.1'"),
    (lrtransfer.reduce_on_plateau, dict(factor=[0.5]), "factor"),
]


@pytest.mark.parametrize("factory,kwargs,name", BAD,
                         ids=[f"{f.__name__}-{n}-{i}"
                              for i, (f, _, n) in enumerate(BAD)])
def test_bad_hyperparameter_names_argument(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


def test_defaults_construct():
  lrtransfer.adjust()
  lrtransfer.reduce_on_plateau()
  lrtransfer.bold_driver()
  lrtransfer.decay()
  lrtransfer.dynamic(100)


def test_jax_arrays_are_skipped_as_inject_hyperparams_passes_them():
  import jax.numpy as jnp
  lrtransfer.adjust(patience=jnp.int32(3), plateau_factor=jnp.float32(1.5))
  lrtransfer.dynamic(jnp.int32(100), rate=jnp.float32(0.9))
