"""lrtransfer: learning-rate strategies for transfer learning, as Optax transformations.

Chain a strategy after SGD-momentum::

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), lrtransfer.adjust())

and pass the validation metric with its evaluation count to ``update``::

    tx.update(grads, state, params, metric=lrtransfer.measurement(loss, k))
"""

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

__version__ = "0.1.0"
