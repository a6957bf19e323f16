"""densecore: density-aware core-set active learning for semantic segmentation.

The public surface is listed in ``__all__`` (a test pins it).
"""

from .bounds import (BoundReport, average_radial_distance, bound_report, coreset_loss,
                     coverage, covering_radius)
from .budgets import pixel_budget, region_budget
from .density import DMCEstimator, KNNDensity, MaskedConvEstimator, coverage_density
from .filters import CategoryMarginLoss
from .greedy import Selection, farthest_first
from .samplers import DensityAwareGreedy, KCenterGreedy
from .segmentation import select_pixels
from .state import ActiveLabelState, CorruptFileError
from .tuning import DensityScaling, tune_density_scaling

__version__ = "0.1.0"

__all__ = [
    "ActiveLabelState",
    "BoundReport",
    "CategoryMarginLoss",
    "CorruptFileError",
    "DMCEstimator",
    "DensityAwareGreedy",
    "DensityScaling",
    "KCenterGreedy",
    "KNNDensity",
    "MaskedConvEstimator",
    "Selection",
    "average_radial_distance",
    "bound_report",
    "coreset_loss",
    "coverage",
    "coverage_density",
    "covering_radius",
    "farthest_first",
    "pixel_budget",
    "region_budget",
    "select_pixels",
    "tune_density_scaling",
]
