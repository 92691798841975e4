"""Recipes: a named fine-tuning optimizer (strategy + transfer tools) as one Optax chain.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src.recipes import (
    DEFAULT_LEARNING_RATE as DEFAULT_LEARNING_RATE,
)
from lrtransfer._src.recipes import (
    RECOMMENDED_LEARNING_RATE as RECOMMENDED_LEARNING_RATE,
)
from lrtransfer._src.recipes import Recipe as Recipe
from lrtransfer._src.recipes import build_optimizer as build_optimizer
from lrtransfer._src.recipes import default_recipes as default_recipes
from lrtransfer._src.recipes import group_learning_rates as group_learning_rates
from lrtransfer._src.recipes import recommended_recipe as recommended_recipe
