"""Transfer tools: layer-wise rates, unfreezing, L2-SP, the lr range test."""

from lrtransfer._src.transfer.depths import layer_depths, normalize_path
from lrtransfer._src.transfer.l2sp import L2SPState, l2sp
from lrtransfer._src.transfer.layerwise import (
    LayerwiseScaleState,
    layerwise_scale,
    layerwise_scales,
)
from lrtransfer._src.transfer.lr_finder import LRRangeTestResult, lr_range_test
from lrtransfer._src.transfer.unfreeze import (
    UnfreezeState,
    gradual_unfreeze,
    head_first,
    unfrozen_levels,
)

__all__ = [
    "L2SPState",
    "LRRangeTestResult",
    "LayerwiseScaleState",
    "UnfreezeState",
    "gradual_unfreeze",
    "head_first",
    "l2sp",
    "layer_depths",
    "layerwise_scale",
    "layerwise_scales",
    "lr_range_test",
    "normalize_path",
    "unfrozen_levels",
]
