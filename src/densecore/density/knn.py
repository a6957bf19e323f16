"""Coverage density of plain vectors from their k nearest neighbours.

The paper estimates the average radial distance of a pixel from its spatial
neighbours (DMC). For vectors without spatial structure the direct estimate
is the mean Euclidean distance to the k nearest neighbours; it is mapped to
a coverage density exactly as the paper maps the reconstruction error:
min-max normalised to [0, 1], then ``beta * exp(-e / tau)``.

Shape:
    features ``(N, D)`` -> densities ``(N,)`` in ``[beta * exp(-1/tau), beta]``.
"""

from __future__ import annotations

import numpy as np

from .. import metrics as M
from .. import validation as V
from .._backends import nearest
from .scaling import BETA, TAU, coverage_density

__all__ = ["KNNDensity", "knn_mean_distance"]


def knn_mean_distance(features, k: int = 10, *, backend: str = "auto",
                      metric: str = "euclidean", validate: bool = True):
    """Mean distance of each point to its ``k`` nearest other points.

    Duplicates count as neighbours at distance 0; the point itself does not.

    Args:
        features: ``(N, D)``, ``N > k``; a scipy sparse matrix runs the exact
            sparse search of :func:`densecore.sparse.knn_mean_distance_sparse`.
        k: number of neighbours.
        backend: where the fast candidates of the one nearest search come from,
            ``"auto"``, ``"faiss"`` or ``"torch"`` (see :func:`densecore.coverage`);
            the answer is exact either way.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``).
        validate: check for NaN/inf (NaN then raises ValueError).

    Returns:
        ``(N,)`` float64 mean distances, in the input's kind (numpy for sparse input).

    Example:
        >>> import numpy as np
        >>> knn_mean_distance(np.array([[0.0], [1.0], [3.0]]), k=1).tolist()
        [1.0, 1.0, 2.0]
    """
    metric = M.check_metric(metric)
    if V.is_sparse(features):
        from ..sparse import knn_mean_distance_sparse

        return knn_mean_distance_sparse(features, k, metric=metric, validate=validate)
    x = V.check_features(features, validate=validate)
    k = V.check_int(k, "k", minimum=1)
    if x.shape[0] <= k:
        raise ValueError(f"k must be smaller than the number of points ({x.shape[0]}); got {k}")
    if metric == "cosine":
        x = M.unit_rows(x)
    # the k + 1 smallest exact distances are {0 (the point itself)} plus the k
    # nearest others, duplicates included
    sq, _ = nearest.search(x, x, k + 1, method=backend)
    total = M.from_squared_euclidean(sq, metric).sum(1)
    mean = total / k
    return mean.numpy() if isinstance(features, np.ndarray) else mean


class KNNDensity:
    """Coverage density of vectors: ``beta * exp(-e / tau)`` with ``e`` the min-max
    normalised mean distance to the ``k`` nearest neighbours.

    Args:
        k: neighbours (default 10).
        beta: density scale, ``e^2.4`` as in the paper.
        tau: temperature, 0.25 as in the paper.
        backend: nearest-neighbour search, see :func:`knn_mean_distance`.
        metric: ``"euclidean"`` or ``"cosine"``; scipy sparse features are taken too.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [0.1], [0.2], [5.0]], np.float32)
        >>> d = KNNDensity(k=1, beta=1.0)(x)
        >>> bool(d[3] < d[1]), float(d.max())
        (True, 1.0)
    """

    def __init__(self, k: int = 10, beta: float = BETA, tau: float = TAU,
                 backend: str = "auto", metric: str = "euclidean"):
        self.k = V.check_int(k, "k", minimum=1)
        self.metric = M.check_metric(metric)
        self.beta = V.check_positive_float(beta, "beta")
        self.tau = V.check_positive_float(tau, "tau")
        if backend not in nearest.METHODS:
            raise ValueError(f"backend must be one of {nearest.METHODS}; got {backend!r}")
        self.backend = backend

    def __call__(self, features, *, validate: bool = True):
        """Densities ``(N,)`` float64 for ``features`` ``(N, D)``."""
        e = knn_mean_distance(features, self.k, backend=self.backend, metric=self.metric,
                              validate=validate)
        return coverage_density(e, beta=self.beta, tau=self.tau)

    def __repr__(self) -> str:
        return (f"KNNDensity(k={self.k}, beta={self.beta:.4g}, tau={self.tau}, "
                f"metric={self.metric!r})")
