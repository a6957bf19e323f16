"""Sampler classes: options in ``__init__``, the work in ``select``.

Every sampler follows one protocol (:class:`Sampler`, checked at run time)::

    select(features, budget, *, densities=None, labeled=None,
           labeled_features=None, labeled_densities=None, init=None) -> Selection

A sampler that does not use densities accepts and ignores them, so callers
such as :func:`densecore.select_pixels` never inspect a signature.
``Selection.radii`` has one meaning for every sampler: ``r`` of each pick at
its turn (squared distance, or cosine distance, divided by the density of
the nearest centre where the sampler divides by densities).

* :mod:`.paper`: the paper's k-center greedy and density-aware greedy
  (Algorithm 1), with ``select_batch`` for many pools in one call;
* :mod:`.typicality`: the candidate-weighted greedy (beyond the paper);
* :mod:`.refinement`: the k-medoids refinement of any of them;
* :mod:`.names`: the one spelling of their names (:data:`SAMPLER_NAMES`) and
  :func:`make_sampler`, which every ``sampler=`` argument goes through.

All run on the one greedy driver and engine table (:mod:`densecore.engines`);
the scikit-activeml adapter (``densecore.integrations.skactiveml``) uses them.

Shape:
    features ``(N, D)``, densities ``(N,)``; ``Selection.indices`` ``(budget,)``.
"""

from .._core import Sampler, Selection
from .names import DEFAULT_SAMPLER, SAMPLER_NAMES, make_sampler
from .paper import DensityAwareGreedy, KCenterGreedy
from .refinement import KMedoidsRefinement
from .typicality import TypicalityGreedy

__all__ = ["DEFAULT_SAMPLER", "DensityAwareGreedy", "KCenterGreedy", "KMedoidsRefinement",
           "SAMPLER_NAMES",
           "Sampler", "Selection", "TypicalityGreedy", "make_sampler"]
