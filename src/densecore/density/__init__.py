"""Coverage-density estimators: DMC (Eq. 7-8), the masked-convolution baseline, kNN,
and (beyond the paper) a density from the local intrinsic dimension."""

from ._base import EstimatorOutput
from .calibration import Calibration, density_calibration, supplementary_calibration
from .dmc import DMCEstimator
from .functional import centre_masked_conv, dynamic_masked_conv, reconstruction_error
from .knn import KNNDensity, knn_mean_distance
from .lid import lid_density, local_intrinsic_dimension
from .masked_conv import MaskedConvEstimator
from .scaling import BETA, TAU, coverage_density

__all__ = [
    "BETA",
    "Calibration",
    "DMCEstimator",
    "EstimatorOutput",
    "KNNDensity",
    "MaskedConvEstimator",
    "TAU",
    "centre_masked_conv",
    "coverage_density",
    "density_calibration",
    "dynamic_masked_conv",
    "knn_mean_distance",
    "lid_density",
    "local_intrinsic_dimension",
    "reconstruction_error",
    "supplementary_calibration",
]
