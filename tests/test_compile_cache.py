"""fit's compiled-program cache keys on a recipe's settings, not the object.

Counted by traces of the epoch program (``program.TRACES``): a cache hit
traces nothing and reports ``compile_seconds == 0.0``. Also: a second
``lr_range_test`` of the same shapes traces nothing.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src.train import program as program_lib

N_TRAIN, N_VAL, FEATURES, CLASSES = 16, 8, 6, 3


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N_TRAIN + N_VAL, FEATURES)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)
  return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _plateau(steps_per_epoch, total_steps, patience):
  del steps_per_epoch, total_steps
  return lrtransfer.reduce_on_plateau(patience=patience)


@pytest.fixture(autouse=True)
def _empty_cache():
  lrtransfer.train.clear_compiled_cache()
  yield
  lrtransfer.train.clear_compiled_cache()


def _fit(recipe, seed=0):
  """(traces of the epoch program during the fit, the FitResult)."""
  before = program_lib.TRACES["run"]
  train, val = _data()
  model = lrtransfer.models.MLP(FEATURES, (8,), CLASSES,
                                rngs=nnx.Rngs(seed))
  result = lrtransfer.train.fit(model, recipe, train, val, epochs=2,
                                batch_size=8, seed=seed)
  return program_lib.TRACES["run"] - before, result


def test_default_recipes_built_twice_compile_once():
  traces, first = _fit(lrtransfer.recipes.default_recipes()["adjust"])
  assert traces == 1 and first.compile_seconds > 0
  again = lrtransfer.recipes.default_recipes()["adjust"]
  traces, second = _fit(again, seed=1)
  assert traces == 0 and second.compile_seconds == 0.0
  traces, _ = _fit(lrtransfer.recipes.recommended_recipe())  # same settings
  assert traces == 0


def test_equal_partials_share_and_other_arguments_do_not():
  make = lambda patience: lrtransfer.recipes.Recipe(
      "rop", 0.05, strategy=functools.partial(_plateau, patience=patience))
  assert _fit(make(2))[0] == 1
  assert _fit(make(2))[0] == 0  # a new partial object, the same settings
  assert _fit(make(5))[0] == 1  # another patience: another program


@pytest.mark.parametrize("change", [
    dict(momentum=0.5), dict(layerwise_factor=0.8),
    dict(unfreeze_every_epochs=1), dict(head_first_epochs=1),
    dict(l2sp_alpha=0.01), dict(strategy=lrtransfer.recipes.default_recipes()[
        "decay"].strategy),
])
def test_other_settings_compile_their_own_program(change):
  base = lrtransfer.recipes.Recipe("r", 0.05)
  assert _fit(base)[0] == 1
  changed = lrtransfer.recipes.Recipe("r", 0.05, **change)
  if changed.l2sp_alpha:
    train, val = _data()
    model = lrtransfer.models.MLP(FEATURES, (8,), CLASSES, rngs=nnx.Rngs(0))
    before = program_lib.TRACES["run"]
    lrtransfer.train.fit(model, changed, train, val, epochs=2, batch_size=8,
                         source_params=nnx.as_pure(nnx.state(model,
                                                             nnx.Param)))
    assert program_lib.TRACES["run"] - before == 1
  else:
    assert _fit(changed)[0] == 1


def test_name_and_base_rate_are_not_compiled_in():
  traces, slow = _fit(lrtransfer.recipes.Recipe("a", 0.001))
  assert traces == 1
  traces, fast = _fit(lrtransfer.recipes.Recipe("b", 0.5))
  assert traces == 0
  # The shared program really takes each call's rate.
  np.testing.assert_allclose(slow.history["group_lr"][:, -1], 0.001,
                             rtol=1e-6)
  np.testing.assert_allclose(fast.history["group_lr"][:, -1], 0.5, rtol=1e-6)
  assert not np.allclose(slow.history["train_loss"],
                         fast.history["train_loss"])


def test_a_lambda_counts_by_identity():
  # A lambda may read globals that change between calls: never assumed equal
  # to another one, however alike; the same object shares.
  make = lambda: (lambda spe, total: lrtransfer.adjust())
  strategy = make()
  assert _fit(lrtransfer.recipes.Recipe("x", 0.05, strategy=strategy))[0] == 1
  assert _fit(lrtransfer.recipes.Recipe("y", 0.05, strategy=strategy))[0] == 0
  assert _fit(lrtransfer.recipes.Recipe("x", 0.05, strategy=make()))[0] == 1


def test_clear_compiled_cache_compiles_again():
  recipe = lrtransfer.recipes.Recipe("c", 0.05)
  assert _fit(recipe)[0] == 1
  assert _fit(recipe)[0] == 0
  lrtransfer.train.clear_compiled_cache()
  traces, result = _fit(recipe)
  assert traces == 1 and result.compile_seconds > 0


def test_recipe_key_tells_bool_from_int():
  key = program_lib.recipe_key
  Recipe = lrtransfer.recipes.Recipe
  assert key(Recipe("a", 0.1, head="out")) == key(Recipe("b", 0.2, head="out"))
  assert key(Recipe("a", unfreeze_every_epochs=1)) != key(
      Recipe("a", head_first_epochs=1))
  assert program_lib._setting_key(True) != program_lib._setting_key(1)


def _quadratic(w, batch):
  return 0.5 * jnp.sum(batch * w ** 2)


def test_a_second_lr_range_test_of_the_same_shapes_compiles_nothing():
  from lrtransfer._src.transfer import lr_finder
  run = lambda w, batch, max_lr: lrtransfer.lr_range_test(
      _quadratic, jnp.float32(w), jnp.full((2,), batch, jnp.float32),
      min_lr=1e-3, max_lr=max_lr, num_steps=20)
  before = lr_finder.TRACES[0]
  first = run(1.0, 2.0, 10.0)
  assert lr_finder.TRACES[0] - before == 1
  # Other parameters, batches and rates of the same shapes: traced arguments.
  second = run(3.0, 5.0, 1.0)
  assert lr_finder.TRACES[0] - before == 1
  assert not np.allclose(first.learning_rates[:5], second.learning_rates[:5])
