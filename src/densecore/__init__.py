"""densecore: density-aware core-set active learning for semantic segmentation.

The public surface is listed in ``__all__`` (a test pins it).
"""

from .advise import Advice, advise
from .bounds import (BoundReport, average_radial_distance, bound_report, coreset_loss,
                     coverage, covering_radius)
from .batch import farthest_first_batch
from .budgets import pixel_budget, region_budget, ripu_pixel_radius
from .density import DMCEstimator, KNNDensity, MaskedConvEstimator, coverage_density
from .engines import register_engine
from .filters import CategoryMarginLoss
from .greedy import Selection, farthest_first
from .regions import blocked_candidates, ripu_select
from .rounds import query_round
from .samplers import (DensityAwareGreedy, KCenterGreedy, KMedoidsRefinement, Sampler,
                       TypicalityGreedy)
from .seeds import image_seed
from .segmentation import ImageCandidates, select_pixels
from .state import ActiveLabelState, CorruptFileError
from .training import DensityTrainer
from .tuning import DensityScaling, tune_density_scaling

__version__ = "0.1.0"


# Former top-level names, kept for one release: the atomic writers live in densecore.io.
_MOVED = {"atomic_save_figure": "io", "atomic_write": "io", "atomic_write_json": "io",
          "atomic_write_text": "io"}


def __getattr__(name):
    import importlib

    # Submodules the docs use right after ``import densecore``, imported on first use.
    if name in ("annotate", "distributed", "io", "plot", "stats", "synthetic"):
        return importlib.import_module(f".{name}", __name__)
    if name in _MOVED:
        import warnings

        warnings.warn(f"densecore.{name} is deprecated and will be removed in the next "
                      f"release; use densecore.{_MOVED[name]}.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(f".{_MOVED[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ActiveLabelState",
    "Advice",
    "BoundReport",
    "CategoryMarginLoss",
    "CorruptFileError",
    "DMCEstimator",
    "DensityAwareGreedy",
    "DensityScaling",
    "DensityTrainer",
    "ImageCandidates",
    "KCenterGreedy",
    "KMedoidsRefinement",
    "KNNDensity",
    "MaskedConvEstimator",
    "Sampler",
    "Selection",
    "TypicalityGreedy",
    "advise",
    "average_radial_distance",
    "blocked_candidates",
    "bound_report",
    "coreset_loss",
    "coverage",
    "coverage_density",
    "covering_radius",
    "farthest_first",
    "farthest_first_batch",
    "image_seed",
    "pixel_budget",
    "query_round",
    "region_budget",
    "register_engine",
    "ripu_pixel_radius",
    "ripu_select",
    "select_pixels",
    "tune_density_scaling",
]
