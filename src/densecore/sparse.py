"""Algorithm 1 and k-NN densities on scipy sparse (CSR) features, exactly.

Text and bag-of-words features are sparse: densifying 100,000 documents over
a 50,000-word vocabulary would take 20 GB. These functions keep the rows
sparse and compute every distance from the differences of two rows (see
``_backends/sparse_backend.py``), so they return the float64 reference's
selection. They run on the CPU (numba); the torch backend does not take
sparse input.

:func:`densecore.farthest_first`, the samplers and :class:`densecore.KNNDensity`
call into this module when given a scipy sparse matrix.

Shape:
    features ``(N, D)`` sparse; densities ``(N,)``; labeled ``(M,)``;
    labeled_features ``(L, D)`` sparse or dense; result ``(budget,)``.
"""

from __future__ import annotations

import numpy as np

from . import metrics as M
from . import validation as V

__all__ = ["farthest_first_sparse", "knn_mean_distance_sparse"]


def _unit_csr(a, name: str):
    """Rows of the canonical CSR triple divided by their norms (cosine), in place."""
    ip, ix, dx = a
    peak = np.zeros(len(ip) - 1)
    rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
    np.maximum.at(peak, rows, np.abs(dx))
    if (peak == 0).any():
        row = int(np.flatnonzero(peak == 0)[0])
        raise ValueError(f"{name} row {row} is all zeros; the cosine distance is undefined "
                         "for a zero vector")
    dx /= peak[rows]
    norm = np.sqrt(np.bincount(rows, weights=dx * dx, minlength=len(ip) - 1))
    dx /= norm[rows]
    return ip, ix, dx


def _prepare(a, metric: str, name: str):
    from ._backends import sparse_backend

    c = sparse_backend.canonical(a)
    return _unit_csr(c, name) if metric == "cosine" else c


def _as_sparse(x, name: str, dim: int, validate: bool):
    import scipy.sparse as sp

    if V.is_sparse(x):
        return V.check_sparse_features(x, name, validate=validate, dim=dim)
    t = V.check_features(x, name, validate=validate, dim=dim)
    return sp.csr_matrix(t.detach().cpu().double().numpy())


def farthest_first_sparse(features, budget: int, *, densities=None, labeled=None,
                          labeled_features=None, labeled_densities=None, init=None,
                          seed: int = 0, metric: str = "euclidean", validate: bool = True):
    """Algorithm 1 on scipy sparse features (exact, float64, CPU).

    Args:
        features: ``(N, D)`` scipy sparse floating matrix.
        budget: number of new points, ``0 <= budget <= N - len(labeled)``.
        densities: ``(N,)`` > 0 or None (k-center greedy).
        labeled: ``(M,)`` in-pool labeled indices.
        labeled_features: ``(L, D)`` labeled points outside the pool, sparse or dense.
        labeled_densities: ``(L,)`` their densities (required with ``densities``).
        init: first pick when nothing is labeled; None draws it from ``seed``.
        seed: seed of that draw.
        metric: ``"euclidean"`` or ``"cosine"`` (see :mod:`densecore.metrics`).
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`~densecore.greedy.Selection` of numpy arrays: ``indices (budget,)``
        int64 and ``radii (budget,)`` float64 in the metric's units (squared
        Euclidean or cosine distance, divided by density).

    Example:
        >>> import scipy.sparse as sp
        >>> x = sp.csr_matrix([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [2.0, 0.0]])
        >>> sel = farthest_first_sparse(x, 2, init=0)
        >>> sel.indices.tolist(), sel.radii.tolist()
        ([0, 2], [inf, 25.0])
    """
    from ._backends import sparse_backend
    from .greedy import Selection

    metric = M.check_metric(metric)
    x = V.check_sparse_features(features, validate=validate)
    n, dim = x.shape
    seed = V.check_int(seed, "seed")
    lab = V.check_indices(labeled, n, "labeled").numpy()
    budget = V.check_budget(budget, n - len(lab))
    dens = (np.ones(n) if densities is None else
            V.check_densities(densities, n, validate=validate).detach().cpu().double().numpy())
    import scipy.sparse as sp

    lf = (sp.csr_matrix((0, dim)) if labeled_features is None
          else _as_sparse(labeled_features, "labeled_features", dim, validate))
    if densities is None:
        if labeled_densities is not None:
            raise ValueError("labeled_densities needs densities for the pool (density-aware "
                             "greedy); use k-center greedy without densities")
        ld = np.ones(lf.shape[0])
    elif labeled_densities is None:
        if lf.shape[0]:
            raise ValueError("labeled_densities is required when labeled_features and "
                             "densities are given")
        ld = np.ones(0)
    else:
        ld = V.check_densities(labeled_densities, lf.shape[0], "labeled_densities",
                               validate=validate).detach().cpu().double().numpy()
    n_labeled = len(lab) + lf.shape[0]
    if init is not None:
        init = V.check_index(init, n, "init")
        if n_labeled:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
    elif n_labeled == 0 and budget > 0:
        init = int(np.random.default_rng(seed).integers(n))
    pool = _prepare(x, metric, "features")
    centres = _prepare(sp.vstack([x[lab], lf]).tocsr() if len(lab) else lf, metric,
                       "labeled_features")
    cdens = np.concatenate([dens[lab], ld])
    taken = np.zeros(n, dtype=np.bool_)
    taken[lab] = True
    idx, radii = sparse_backend.farthest_first(pool, dens, centres, cdens, taken, budget,
                                               -1 if init is None else init)
    return Selection(idx, radii * M.radius_factor(metric))


def knn_mean_distance_sparse(features, k: int = 10, *, metric: str = "euclidean",
                             validate: bool = True) -> np.ndarray:
    """Mean distance of each row to its ``k`` nearest other rows, exactly (sparse input).

    Args:
        features: ``(N, D)`` scipy sparse floating matrix, ``N > k``.
        k: number of neighbours; duplicates count at distance 0, the row itself not.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``).
        validate: scan values for NaN/inf.

    Returns:
        ``(N,)`` float64 numpy mean distances in the metric's units.

    Example:
        >>> import scipy.sparse as sp
        >>> knn_mean_distance_sparse(sp.csr_matrix([[0.0], [1.0], [3.0]]), k=1).tolist()
        [1.0, 1.0, 2.0]
    """
    from ._backends import sparse_backend

    metric = M.check_metric(metric)
    x = V.check_sparse_features(features, validate=validate)
    k = V.check_int(k, "k", minimum=1)
    if x.shape[0] <= k:
        raise ValueError(f"k must be smaller than the number of points ({x.shape[0]}); got {k}")
    import scipy.sparse as sp

    ip, ix, dx = _prepare(x, metric, "features")
    exact = sp.csr_matrix((dx, ix, ip), shape=x.shape)
    if metric == "cosine":
        # mean of 1 - cos = mean of squared unit-row distances / 2
        return sparse_backend.knn_mean_distance(exact, k, power=2) * 0.5
    return sparse_backend.knn_mean_distance(exact, k)
