"""The recommended recipe and the default recipes."""

import jax.numpy as jnp
import pytest

import lrtransfer
from lrtransfer._src.adjust import AdjustState


def test_recommended_recipe_is_adjust_at_its_own_default_rate():
  recipe = lrtransfer.recipes.recommended_recipe()
  assert recipe.name == "recommended"
  assert recipe.learning_rate == lrtransfer.recipes.RECOMMENDED_LEARNING_RATE
  assert recipe.from_source and recipe.layerwise_factor is None
  tx = recipe.strategy(10, 100)
  state = tx.init({"w": jnp.ones(2)})
  assert isinstance(state, AdjustState)
  # adjust's own defaults, nothing else: the brake and slow-progress raise on.
  assert float(state.scale) == 1.0


def test_recommended_recipe_takes_a_rate_and_refuses_a_bad_one():
  assert lrtransfer.recipes.recommended_recipe(0.1).learning_rate == 0.1
  with pytest.raises(ValueError, match="learning_rate"):
    lrtransfer.recipes.recommended_recipe(-0.1)


def test_default_recipes_put_recommended_first_each_at_its_default_rate():
  recipes = lrtransfer.recipes.default_recipes()
  assert next(iter(recipes)) == "recommended"
  assert recipes["recommended"].learning_rate == 0.01
  others = {r.learning_rate for n, r in recipes.items() if n != "recommended"}
  assert others == {lrtransfer.recipes.DEFAULT_LEARNING_RATE}
  assert {r.learning_rate for r in
          lrtransfer.recipes.default_recipes(0.05).values()} == {0.05}
  with pytest.raises(ValueError, match="learning_rate"):
    lrtransfer.recipes.default_recipes(0.0)


def test_default_recipes_built_twice_are_equal():
  # Equal recipes share a compiled program: the strategies are module-level
  # functions, not fresh lambdas.
  assert (lrtransfer.recipes.default_recipes()
          == lrtransfer.recipes.default_recipes())
