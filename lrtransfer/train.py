"""The compiled fit loop: ``fit`` one model, ``fit_many`` seeds and rates as one vmapped program.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src import extras as _extras

_extras.require_train_extra("lrtransfer.train", "orbax")

# The exports (the ``name as name`` imports), after the check above so that a
# missing optional dependency is reported with the install command.
from lrtransfer._src.train import EpochLog as EpochLog
from lrtransfer._src.train import FitCarry as FitCarry
from lrtransfer._src.train import FitResult as FitResult
from lrtransfer._src.train import SweepResult as SweepResult
from lrtransfer._src.train import evaluate as evaluate
from lrtransfer._src.train import fit as fit
from lrtransfer._src.train import fit_many as fit_many
from lrtransfer._src.train.population import AutoResult as AutoResult
from lrtransfer._src.train.population import fit_auto as fit_auto
from lrtransfer._src.train.population_rules import PBT as PBT
from lrtransfer._src.train.population_rules import Full as Full
from lrtransfer._src.train.population_rules import Halving as Halving
from lrtransfer._src.train.runner import (
    clear_compiled_cache as clear_compiled_cache,
)
