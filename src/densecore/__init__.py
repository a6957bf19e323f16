"""densecore: density-aware core-set active learning for semantic segmentation.

The public surface is listed in ``__all__`` (a test pins it).
"""

from .greedy import Selection, farthest_first
from .samplers import DensityAwareGreedy, KCenterGreedy

__version__ = "0.1.0"

__all__ = [
    "DensityAwareGreedy",
    "KCenterGreedy",
    "Selection",
    "farthest_first",
]
