"""Comparisons: pretrain a source, fine-tune the target with each recipe over seeds.

Public API only: the code lives in ``lrtransfer._src``. Like the other public
modules it has no ``__all__``: the ``name as name`` imports below are the
exports.
"""

from lrtransfer._src import extras as _extras

_extras.require_train_extra("lrtransfer.experiment", "sklearn", "scipy", "orbax")

# The exports (the ``name as name`` imports), after the check above so that a
# missing optional dependency is reported with the install command.
from lrtransfer._src.experiment import CompareConfig as CompareConfig
from lrtransfer._src.experiment import MethodResult as MethodResult
from lrtransfer._src.experiment import check_sizes as check_sizes
from lrtransfer._src.experiment import compare as compare
from lrtransfer._src.experiment import pretrain_source as pretrain_source

# The initial target models compare fine-tunes, one per seed.
from lrtransfer._src.experiment import target_models as target_models

# The one layer-copy rule, shared with lrtransfer.models.target_from_source.
from lrtransfer._src.models import (
    default_transfer_layers as default_transfer_layers,
)
from lrtransfer._src.sizes import SizeError as SizeError
