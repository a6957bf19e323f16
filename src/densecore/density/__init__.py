"""Coverage-density estimators: DMC (Eq. 7-8), the masked-convolution baseline, kNN."""

from .scaling import BETA, TAU, coverage_density

__all__ = ["BETA", "TAU", "coverage_density"]
