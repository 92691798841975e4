"""lrtransfer: learning-rate strategies for transfer learning, as Optax transformations.

Chain a strategy after SGD-momentum::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())

and pass the validation metric with its evaluation count to ``update``::

    tx.update(grads, state, params, metric=lrtransfer.measurement(loss, k))

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
from lrtransfer._src.inspect import current_scale
from lrtransfer._src.inspect import effective_learning_rate
from lrtransfer._src.inspect import strategy_states
from lrtransfer._src.measurement import Measurement
from lrtransfer._src.measurement import measurement
from lrtransfer._src.measurement import no_measurement
from lrtransfer._src.plateau import PlateauState

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
from lrtransfer._src.transfer import lr_range_test
from lrtransfer._src.transfer import unfrozen_levels

# Models, data, checkpoints.
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.checkpoint import load_params
from lrtransfer._src.checkpoint import load_source_model
from lrtransfer._src.checkpoint import save_params
from lrtransfer._src.data import DataError
from lrtransfer._src.data import Split
from lrtransfer._src.data import TASKS
from lrtransfer._src.data import TransferTask
from lrtransfer._src.data import get_task
from lrtransfer._src.data import load_split_file
from lrtransfer._src.data import load_user_task
from lrtransfer._src.models import MLP
from lrtransfer._src.models import MLPConfig
from lrtransfer._src.models import target_from_source
from lrtransfer._src.models import transferred_mask

# Training.
from lrtransfer._src.experiment import compare
from lrtransfer._src.experiment import default_transfer_layers
from lrtransfer._src.experiment import pretrain_source
from lrtransfer._src.recipes import Recipe
from lrtransfer._src.recipes import build_optimizer
from lrtransfer._src.recipes import default_recipes
from lrtransfer._src.recipes import group_learning_rates
from lrtransfer._src.train import EpochLog
from lrtransfer._src.train import FitCarry
from lrtransfer._src.train import FitResult
from lrtransfer._src.train import SweepResult
from lrtransfer._src.train import evaluate
from lrtransfer._src.train import fit
from lrtransfer._src.train import fit_many

__version__ = "0.1.0"
