"""The typicality-weighted greedy sampler (beyond the paper): the algorithm is
:func:`densecore.typicality.typicality_farthest_first`.

Shape:
    features ``(N, D)``, densities ``(N,)``; ``Selection.indices`` ``(budget,)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import validation as V
from .._core import Selection
from ..typicality import check_g, typicality_farthest_first
from .paper import EngineOptions

__all__ = ["TypicalityGreedy"]


class TypicalityGreedy(EngineOptions):
    """Typicality-weighted farthest-first (beyond the paper): ``argmax r_t * d_t^g``.

    The density sits on the candidate's side of the link (Algorithm 1 puts it
    on the selected point's side), so among far points the sampler prefers
    those in dense, typical parts of the data. ``g = 0`` is k-center greedy.
    See :func:`typicality_farthest_first`.

    Density source: the ``densities`` passed to :meth:`select` (a DMC or
    masked-convolution coverage density, for example); when None, the kNN
    density ``1 / mean distance to the k nearest neighbours`` (floored at 1e-3
    of the median distance, so duplicates stay finite)
    (:func:`~densecore.density.knn_mean_distance`, ``k`` below) is computed
    on the pool.

    Args:
        g: density exponent (>= 0); 1.0 by default (``docs/benchmarks.md``).
        k: neighbours of the fallback kNN density.
        backend: ``"auto"``, ``"numba"`` (CPU), ``"torch"`` (any device) or ``"triton"``
            (CUDA).
        metric: ``"euclidean"`` or ``"cosine"`` (:mod:`densecore.metrics`; also the
            fallback kNN density's metric).
        seed: seeds the first pick when nothing is labeled and ``init`` is None.
        progress: tqdm bar over the picks.
        validate: check for NaN/inf and non-positive densities.
        storage: None (default), ``"float16"`` or ``"bfloat16"``: the pool's features
            rounded once to 16 bits after the one scaling rule, the kNN fallback
            density computed on the original features (as
            :class:`~densecore.KCenterGreedy`'s ``storage``).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], np.float32)
        >>> d = np.array([1.0, 1.0, 0.1, 1.0])
        >>> TypicalityGreedy().select(x, 2, densities=d, labeled=[0]).indices.tolist()
        [3, 2]
    """

    uses_densities = False  # the candidates' densities weigh; the centres' never divide

    def __init__(self, g: float = 1.0, k: int = 10, backend: str = "auto", seed: int = 0,
                 progress: bool = False, validate: bool = True, metric: str = "euclidean",
                 storage=None):
        self.g = check_g(g)
        self.k = V.check_int(k, "k", minimum=1)
        super().__init__(backend, seed, progress, validate, metric, storage)

    def __repr__(self) -> str:
        return (f"TypicalityGreedy(g={self.g}, k={self.k}, backend={self.backend!r}, "
                f"seed={self.seed}, metric={self.metric!r}, storage={self.storage!r})")

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: ``(N,)`` > 0 candidate densities, or None for the kNN density.
            labeled: ``(M,)`` in-pool labeled indices (never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool.
            labeled_densities: accepted and ignored (only candidates' densities count).
            init: first pick when nothing is labeled (None: seeded random).

        Returns:
            :class:`~densecore.Selection`; radii are ``r_u`` at pick time (squared
            distance, or cosine distance), as for every sampler.
        """
        del labeled_densities  # the weight is the candidate's, never the centre's
        if densities is None and self.g > 0:
            from ..density.knn import knn_mean_distance

            x = V.check_features(features, validate=self.validate)
            k = min(self.k, x.shape[0] - 1)
            if k >= 1:
                e = torch.as_tensor(knn_mean_distance(x, k, metric=self.metric,
                                                      validate=False))
                # duplicates can give e = 0: floor it at 1e-3 of the median
                floor = max(float(e.median()) * 1e-3, 1e-300)
                densities = 1.0 / e.clamp_min(floor)
                if isinstance(features, np.ndarray):
                    densities = densities.cpu().numpy()
        return typicality_farthest_first(features, budget, densities=densities, g=self.g,
                                         labeled=labeled, labeled_features=labeled_features,
                                         init=init, seed=self.seed, backend=self.backend,
                                         metric=self.metric, progress=self.progress,
                                         validate=self.validate, storage=self.storage)
