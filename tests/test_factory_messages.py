"""A built object where a factory (or a recipe) is expected: the message
names the fix, at construction where possible."""

import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from lrtransfer import recipes
from lrtransfer._src import factory_checks


@pytest.mark.parametrize("field, value, message", [
    ("strategy", lrtransfer.adjust(),
     (r"recipe 'x': strategy must be a factory, called as strategy\("
     r"steps_per_epoch, total_steps\).*got a built "
     r"GradientTransformationExtraArgs.*pass a factory such as `strategy="
     r"lambda steps_per_epoch, total_steps: lrtransfer.adjust\(\)`")),
    ("optimizer", optax.adamw(1e-3),
     (r"optimizer must be a factory, called as optimizer\(learning_rate\).*"
     r"got a built .*`optimizer=lambda lr: optax.adamw\(lr\)`")),
    ("eval_params", optax.sgd(0.1),
     (r"eval_params must be a function.*got a built .*"
     r"optax.contrib.schedule_free_eval_params")),
    ("depth_fn", {"layers": 0},
     (r"depth_fn must be a function, called as depth_fn\(path\).*"
     r"got \{'layers': 0\}; e.g. `depth_fn=lambda path")),
    ("strategy", 0.5, r"strategy must be a factory.*got 0.5; e.g."),
])
def test_a_value_that_is_not_the_factory_is_refused_with_the_fix(
    field, value, message):
  with pytest.raises(ValueError, match=message):
    recipes.Recipe("x", 0.01, **{field: value})


@pytest.mark.parametrize("strategy", [
    lrtransfer.adjust, lrtransfer.decay, lrtransfer.dynamic,
    lrtransfer.reduce_on_plateau, lrtransfer.bold_driver,
    lrtransfer.schedule_scale])
def test_an_lrtransfer_strategy_function_itself_is_refused(strategy):
  """``strategy=lrtransfer.decay`` would bind steps_per_epoch to ``rate``
  (and ``dynamic``'s total_steps to it): refused, with the lambda to write."""
  name = strategy.__name__
  with pytest.raises(ValueError, match=(
      rf"got lrtransfer.{name} itself.*`strategy=lambda steps_per_epoch, "
      rf"total_steps: lrtransfer.{name}\(...\)`")):
    recipes.Recipe("x", 0.01, strategy=strategy)


@pytest.mark.parametrize("field, value, expected", [
    ("strategy", lambda: lrtransfer.adjust(), "steps_per_epoch, total_steps"),
    ("optimizer", lambda: optax.adam(1e-3), "learning_rate"),
    ("eval_params", lambda state: state, "base_optimizer_state, params"),
    ("depth_fn", lambda: 0, "path"),
])
def test_a_function_with_the_wrong_arguments_is_refused(field, value,
                                                        expected):
  with pytest.raises(ValueError, match=rf"cannot be called with \({expected}"
                     r"\); e.g."):
    recipes.Recipe("x", 0.01, **{field: value})


@pytest.mark.parametrize("field, value", [
    ("strategy", lambda steps_per_epoch, total_steps: lrtransfer.adjust()),
    ("strategy", lambda *args: lrtransfer.adjust()),
    ("optimizer", optax.adamw),
    ("optimizer", lambda lr: optax.sgd(lr)),
    ("eval_params", optax.contrib.schedule_free_eval_params),
    ("depth_fn", lambda path: 0),
])
def test_factories_that_fit_are_accepted(field, value):
  recipe = recipes.Recipe("x", 0.01, **{field: value})
  assert getattr(recipe, field) is value


@pytest.mark.parametrize("value, message", [
    (recipes.recommended_recipe,
     (r"recipes\['a'\] must be a lrtransfer.recipes.Recipe, got function: "
     r"call it \(recommended_recipe\(\)\)")),
    (optax.adam(1e-3),
     (r"recipes\['a'\] must be .*got GradientTransformationExtraArgs: .*"
     r"Recipe\('mine', 0.01, optimizer=lambda lr: optax.adamw\(lr\)")),
    ("adjust", r"got str; e.g. lrtransfer.recipes.recommended_recipe\(\)"),
])
def test_compare_names_a_recipe_entry_that_is_not_a_recipe(value, message):
  task = lrtransfer.data.get_task("digits_label_split")
  with pytest.raises(ValueError, match=message):
    lrtransfer.experiment.compare(task, {"a": value})


def test_the_recipe_error_gives_the_fix_for_any_argument_name():
  """The helper ``fit`` and the population fit can raise for ``recipe=``."""
  error = factory_checks.recipe_type_error(optax.sgd(0.1), "recipe")
  assert str(error).startswith("recipe must be a lrtransfer.recipes.Recipe")
  assert "optimizer=lambda lr:" in str(error)


def test_a_transformation_as_a_schedule_is_refused_with_an_example():
  with pytest.raises(ValueError, match=r"schedule must be a function of the "
                     r"step count.*optax.cosine_decay_schedule"):
    lrtransfer.schedule_scale(lrtransfer.decay(0.9))


def test_fit_names_a_transformation_given_as_its_recipe_with_the_fix():
  model = lrtransfer.models.MLP(4, (8,), 3, rngs=nnx.Rngs(0))
  x = np.zeros((8, 4), np.float32)
  y = np.zeros(8, np.int32)
  with pytest.raises(ValueError, match=r"recipe must be a lrtransfer.recipes"
                     r".Recipe, got GradientTransformationExtraArgs: .*"
                     r"optimizer=lambda lr: optax.adamw\(lr\)"):
    lrtransfer.train.fit(model, optax.chain(optax.sgd(0.1),
                                            lrtransfer.adjust()),
                         (x, y), (x, y), epochs=1)
