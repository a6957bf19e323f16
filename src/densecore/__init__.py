"""densecore: density-aware core-set active learning for semantic segmentation.

The public surface is listed in ``__all__`` (a test pins it).
"""

from .bounds import (BoundReport, average_radial_distance, bound_report, coreset_loss,
                     coverage, covering_radius)
from .density import KNNDensity, coverage_density
from .greedy import Selection, farthest_first
from .samplers import DensityAwareGreedy, KCenterGreedy

__version__ = "0.1.0"

__all__ = [
    "BoundReport",
    "DensityAwareGreedy",
    "KCenterGreedy",
    "KNNDensity",
    "Selection",
    "average_radial_distance",
    "bound_report",
    "coreset_loss",
    "coverage",
    "coverage_density",
    "covering_radius",
    "farthest_first",
]
