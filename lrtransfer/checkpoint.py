"""Saving and restoring source parameters with orbax.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src import extras as _extras

_extras.require_train_extra("lrtransfer.checkpoint", "orbax")

# The exports (the ``name as name`` imports), after the check above so that a
# missing optional dependency is reported with the install command.
from lrtransfer._src.checkpoint import CheckpointError as CheckpointError
from lrtransfer._src.checkpoint import load_params as load_params
from lrtransfer._src.checkpoint import load_source_model as load_source_model
from lrtransfer._src.checkpoint import save_params as save_params
