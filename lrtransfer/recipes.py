"""Recipes: a named fine-tuning optimizer (strategy + transfer tools) as one Optax chain.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src.recipe_catalogue import (
    DEFAULT_LEARNING_RATE as DEFAULT_LEARNING_RATE,
)
from lrtransfer._src.recipe_catalogue import (
    RECOMMENDED_LEARNING_RATE as RECOMMENDED_LEARNING_RATE,
)
from lrtransfer._src.recipe_catalogue import default_recipes as default_recipes
from lrtransfer._src.recipe_catalogue import (
    recommended_recipe as recommended_recipe,
)
from lrtransfer._src.recipes import Recipe as Recipe
from lrtransfer._src.recipes import build_optimizer as build_optimizer
from lrtransfer._src.recipes import group_learning_rates as group_learning_rates
