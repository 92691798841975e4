"""lrtransfer: learning-rate strategies for transfer learning, as Optax transformations.

Chain a strategy after SGD-momentum::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())

and pass the validation metric with its evaluation count to ``update``::

    tx.update(grads, state, params, metric=lrtransfer.measurement(loss, k))

The top level is the Optax layer (strategies, the metric protocol, inspection,
transfer transformations). Models, data, recipes, training, checkpoints and
experiments are named submodules: ``lrtransfer.models``, ``lrtransfer.data``,
``lrtransfer.recipes``, ``lrtransfer.train``, ``lrtransfer.checkpoint``,
``lrtransfer.experiment``.

Public API only: the code lives in ``lrtransfer._src``.
"""

# Strategies and the metric protocol.
from lrtransfer._src.adjust import AdjustState
from lrtransfer._src.adjust import adjust
from lrtransfer._src.adjust import bold_driver
from lrtransfer._src.adjust import reduce_on_plateau
from lrtransfer._src.decay import ScheduleScaleState
from lrtransfer._src.decay import decay
from lrtransfer._src.decay import decay_schedule
from lrtransfer._src.decay import schedule_scale
from lrtransfer._src.dynamic import DynamicState
from lrtransfer._src.dynamic import dynamic
from lrtransfer._src.inspection import current_scale
from lrtransfer._src.inspection import effective_learning_rate
from lrtransfer._src.inspection import group_scales
from lrtransfer._src.inspection import strategy_states
from lrtransfer._src.learning_rates import learning_rates
from lrtransfer._src.measurement import Measurement
from lrtransfer._src.measurement import measurement
from lrtransfer._src.measurement import check_count_order
from lrtransfer._src.measurement import no_measurement
from lrtransfer._src.plateau import PlateauState
from lrtransfer._src.raising import RaiseGuardState
from lrtransfer._src.rules import AdjustRule
from lrtransfer._src.rules import DynamicRule

# Transfer tools.
from lrtransfer._src.transfer import L2SPState
from lrtransfer._src.transfer import LRRangeTestResult
from lrtransfer._src.transfer import LayerwiseScaleState
from lrtransfer._src.transfer import UnfreezeState
from lrtransfer._src.transfer import gradual_unfreeze
from lrtransfer._src.transfer import head_first
from lrtransfer._src.transfer import l2sp
from lrtransfer._src.transfer import layer_depths
from lrtransfer._src.transfer import layerwise_scale
from lrtransfer._src.transfer import layerwise_scales
from lrtransfer._src.transfer import normalize_path
from lrtransfer._src.transfer import lr_range_test
from lrtransfer._src.transfer import unfrozen_levels

# The layers above the Optax one, as named submodules.
from lrtransfer import checkpoint as checkpoint
from lrtransfer import data as data
from lrtransfer import experiment as experiment
from lrtransfer import models as models
from lrtransfer import recipes as recipes
from lrtransfer import train as train

__version__ = "0.1.0"
