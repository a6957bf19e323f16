"""Coverage-density estimators: DMC (Eq. 7-8), the masked-convolution baseline, kNN."""

from .knn import KNNDensity, knn_mean_distance
from .scaling import BETA, TAU, coverage_density

__all__ = [
    "BETA",
    "KNNDensity",
    "TAU",
    "coverage_density",
    "knn_mean_distance",
]
