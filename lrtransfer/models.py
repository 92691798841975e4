"""Flax NNX models and building a target model from a source model.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src.cnn import CNN as CNN
from lrtransfer._src.cnn import CNNConfig as CNNConfig
from lrtransfer._src.models import MLP as MLP
from lrtransfer._src.models import MLPConfig as MLPConfig
from lrtransfer._src.models import (
    default_transfer_layers as default_transfer_layers,
)
from lrtransfer._src.models import target_from_source as target_from_source
from lrtransfer._src.models import transferred_mask as transferred_mask
