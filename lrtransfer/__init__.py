"""lrtransfer: learning-rate strategies for transfer learning, as Optax transformations.

Chain a strategy after SGD-momentum::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())

and pass the validation metric with its evaluation count to ``update``::

    tx.update(grads, state, params, metric=lrtransfer.measurement(loss, k))

The top level is the Optax layer (strategies, the metric protocol, inspection,
transfer transformations). Models, data, recipes, training, checkpoints and
experiments are named submodules: ``lrtransfer.models``, ``lrtransfer.data``,
``lrtransfer.recipes``, ``lrtransfer.train``, ``lrtransfer.checkpoint``,
``lrtransfer.experiment``. They load on first use (``lrtransfer.train.fit``
or ``import lrtransfer.train``) and need the ``train`` extra
(``pip install "lrtransfer[train]"``).

Public API only: the code lives in ``lrtransfer._src``.
"""

import importlib as _importlib
import types as _types

# The package version, defined here only (pyproject.toml reads it).
__version__ = "0.1.0"

# Strategies and the metric protocol.
from lrtransfer._src.adjust import AdjustState as AdjustState
from lrtransfer._src.adjust import adjust as adjust
from lrtransfer._src.adjust import bold_driver as bold_driver
from lrtransfer._src.adjust import reduce_on_plateau as reduce_on_plateau
from lrtransfer._src.decay import ScheduleScaleState as ScheduleScaleState
from lrtransfer._src.decay import decay as decay
from lrtransfer._src.decay import decay_schedule as decay_schedule
from lrtransfer._src.decay import schedule_scale as schedule_scale
from lrtransfer._src.dynamic import DynamicState as DynamicState
from lrtransfer._src.dynamic import dynamic as dynamic
from lrtransfer._src.inspection import current_scale as current_scale
from lrtransfer._src.inspection import (
  effective_learning_rate as effective_learning_rate,
)
from lrtransfer._src.inspection import group_scales as group_scales
from lrtransfer._src.inspection import strategy_states as strategy_states
from lrtransfer._src.learning_rates import learning_rates as learning_rates
from lrtransfer._src.measurement import Measurement as Measurement
from lrtransfer._src.measurement import check_count_order as check_count_order
from lrtransfer._src.measurement import measurement as measurement
from lrtransfer._src.measurement import no_measurement as no_measurement
from lrtransfer._src.plateau import PlateauState as PlateauState
from lrtransfer._src.raising import RaiseGuardState as RaiseGuardState
from lrtransfer._src.rules import AdjustRule as AdjustRule
from lrtransfer._src.rules import DynamicRule as DynamicRule

# Transfer tools.
from lrtransfer._src.transfer import L2SPState as L2SPState
from lrtransfer._src.transfer import LayerwiseScaleState as LayerwiseScaleState
from lrtransfer._src.transfer import LRRangeTestResult as LRRangeTestResult
from lrtransfer._src.transfer import UnfreezeState as UnfreezeState
from lrtransfer._src.transfer import gradual_unfreeze as gradual_unfreeze
from lrtransfer._src.transfer import head_first as head_first
from lrtransfer._src.transfer import l2sp as l2sp
from lrtransfer._src.transfer import layer_depths as layer_depths
from lrtransfer._src.transfer import layerwise_scale as layerwise_scale
from lrtransfer._src.transfer import layerwise_scales as layerwise_scales
from lrtransfer._src.transfer import lr_range_test as lr_range_test
from lrtransfer._src.transfer import normalize_path as normalize_path
from lrtransfer._src.transfer import unfrozen_levels as unfrozen_levels

# The layers above the Optax one are named submodules that load when first
# used (PEP 562): a user of the Optax layer alone imports neither
# scikit-learn, orbax, matplotlib nor tqdm (the `train` extra's packages).
_SUBMODULES = ("checkpoint", "data", "experiment", "models", "recipes",
               "train")


def __getattr__(name: str) -> _types.ModuleType:
  """Imports ``lrtransfer.<name>`` on first access, for the harness layers."""
  if name in _SUBMODULES:
    return _importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_SUBMODULES))
