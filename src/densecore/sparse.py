"""Algorithm 1 and k-NN densities on sparse features, exactly.

Text and bag-of-words features are sparse: densifying 100,000 documents over
a 50,000-word vocabulary would take 20 GB. These functions keep the rows
sparse (scipy matrices, or COO/CSR torch tensors) and compute every distance
from the differences of two rows, never from ``|a|^2 - 2 a.b + |b|^2`` (see
``_backends/sparse_backend.py``), so they return the float64 reference's
selection. The greedy runs on numba (CPU) or torch (any device; one index
read back per pick); the k-NN search runs on the CPU.

:func:`densecore.farthest_first`, the samplers and :class:`densecore.KNNDensity`
call into this module when given sparse features.

Shape:
    features ``(N, D)`` sparse; densities ``(N,)``; labeled ``(M,)``;
    labeled_features ``(L, D)`` sparse or dense; result ``(budget,)``.
"""

from __future__ import annotations

import numpy as np
import torch

from . import metrics as M
from . import validation as V

__all__ = ["farthest_first_sparse", "knn_mean_distance_sparse"]


def _unit_csr(a, name: str):
    """Rows of a canonical CSR triple (numpy) divided by their norms, in place."""
    ip, ix, dx = a
    rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
    peak = np.zeros(len(ip) - 1)
    np.maximum.at(peak, rows, np.abs(dx))
    if (peak == 0).any():
        row = int(np.flatnonzero(peak == 0)[0])
        raise ValueError(f"{name} row {row} is all zeros; the cosine distance is undefined "
                         "for a zero vector")
    dx /= peak[rows]
    dx /= np.sqrt(np.bincount(rows, weights=dx * dx, minlength=len(ip) - 1))[rows]
    return ip, ix, dx


def _canonical(a, metric: str, name: str):
    """``(indptr, indices, data)`` numpy int64/int64/float64 of a sparse matrix or tensor:
    sorted unique columns, unit rows for cosine (the one copy of the values)."""
    import scipy.sparse as sp

    from ._backends import sparse_backend

    if isinstance(a, torch.Tensor):
        c = a.detach().to_sparse_csr().cpu() if a.layout != torch.sparse_csr else a.detach().cpu()
        a = sp.csr_matrix((c.values().double().numpy(), c.col_indices().numpy(),
                           c.crow_indices().numpy()), shape=tuple(c.shape))
    elif not V.is_sparse(a):
        a = sp.csr_matrix(np.asarray(a, dtype=np.float64))
    c = sparse_backend.canonical(a)
    return _unit_csr(c, name) if metric == "cosine" else c


def farthest_first_sparse(features, budget: int, *, densities=None, labeled=None,
                          labeled_features=None, labeled_densities=None, init=None,
                          seed: int = 0, backend: str = "auto", metric: str = "euclidean",
                          validate: bool = True):
    """Algorithm 1 on sparse features (exact, float64).

    Args:
        features: ``(N, D)`` scipy sparse matrix or sparse (COO/CSR) torch tensor.
        budget: number of new points, ``0 <= budget <= N - len(labeled)``.
        densities: ``(N,)`` > 0 or None (k-center greedy).
        labeled: ``(M,)`` in-pool labeled indices.
        labeled_features: ``(L, D)`` labeled points outside the pool, sparse or dense.
        labeled_densities: ``(L,)`` their densities (required with ``densities``).
        init: first pick when nothing is labeled; None draws it from ``seed``.
        seed: seed of that draw.
        backend: ``"numba"`` (CPU), ``"torch"`` (the tensor's device; CPU for scipy
            input) or ``"auto"`` (torch for torch tensors, numba for scipy).
        metric: ``"euclidean"`` or ``"cosine"`` (see :mod:`densecore.metrics`).
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`~densecore.greedy.Selection`: numpy arrays for scipy input,
        tensors on the input's device for a torch tensor. ``indices (budget,)``
        int64, ``radii (budget,)`` float64 in the metric's units (squared
        Euclidean or cosine distance, divided by density).

    Example:
        >>> import scipy.sparse as sp
        >>> x = sp.csr_matrix([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [2.0, 0.0]])
        >>> sel = farthest_first_sparse(x, 2, init=0)
        >>> sel.indices.tolist(), sel.radii.tolist()
        ([0, 2], [inf, 25.0])
    """
    from ._backends import sparse_backend
    from .greedy import BACKENDS, Selection

    metric = M.check_metric(metric)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    x = V.check_sparse_features(features, validate=validate)
    is_tensor = isinstance(x, torch.Tensor)
    dev = x.device if is_tensor else torch.device("cpu")
    n, dim = tuple(x.shape)
    seed = V.check_int(seed, "seed")
    lab = V.check_indices(labeled, n, "labeled").cpu().numpy()
    budget = V.check_budget(budget, n - len(lab))

    dens = (np.ones(n) if densities is None else V.check_densities(
        densities, n, validate=validate).detach().cpu().double().numpy())
    if labeled_features is None:
        lf = None
        n_out = 0
    else:
        lf = (V.check_sparse_features(labeled_features, "labeled_features", validate=validate,
                                      dim=dim) if V.is_sparse(labeled_features) else
              V.check_features(labeled_features, "labeled_features", validate=validate,
                               dim=dim).detach().cpu().double().numpy())
        n_out = lf.shape[0]
    ld = V.check_labeled_densities(labeled_densities, n_out, has_densities=densities is not None,
                                   has_labeled_features=lf is not None, validate=validate)
    if densities is None:
        ld = np.ones(n_out)  # k-center greedy: every centre has density 1
    else:
        ld = np.ones(0) if ld is None else ld.detach().cpu().double().numpy()
    if init is not None:
        init = V.check_index(init, n, "init")
        if len(lab) + n_out:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
    elif len(lab) + n_out == 0 and budget > 0:
        init = int(np.random.default_rng(seed).integers(n))
    pool = _canonical(x, metric, "features")
    import scipy.sparse as sp

    ip, ix, dx = pool
    stacked = [sp.csr_matrix((dx, ix, ip), shape=(n, dim))[lab]]
    if lf is not None:
        extra = _canonical(lf, metric, "labeled_features")
        stacked.append(sp.csr_matrix(extra[::-1], shape=(n_out, dim)))
    from ._backends.sparse_backend import canonical

    centres = canonical(sp.vstack(stacked).tocsr())
    cdens = np.concatenate([dens[lab], ld])
    taken = np.zeros(n, dtype=np.bool_)
    taken[lab] = True
    first = -1 if init is None else init
    use_torch = backend == "torch" or (backend == "auto" and is_tensor)
    if use_torch:
        def t(a):
            return torch.from_numpy(a).to(dev)

        idx, radii = sparse_backend.farthest_first_torch(
            tuple(map(t, pool)), t(dens), tuple(map(t, centres)), t(cdens), t(taken),
            budget, first, dim)
    else:
        idx, radii = sparse_backend.farthest_first(pool, dens, centres, cdens, taken, budget,
                                                   first)
        idx, radii = torch.from_numpy(idx), torch.from_numpy(radii)
    radii = radii * M.radius_factor(metric)
    if is_tensor:
        return Selection(idx.to(dev), radii.to(dev))
    return Selection(idx.numpy(), radii.numpy())


def knn_mean_distance_sparse(features, k: int = 10, *, metric: str = "euclidean",
                             validate: bool = True) -> np.ndarray:
    """Mean distance of each row to its ``k`` nearest other rows, exactly (sparse input).

    Args:
        features: ``(N, D)`` scipy sparse floating matrix or sparse torch tensor, ``N > k``.
        k: number of neighbours; duplicates count at distance 0, the row itself not.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``).
        validate: scan values for NaN/inf.

    Returns:
        ``(N,)`` float64 mean distances in the metric's units: numpy for scipy
        input, a tensor on the input's device for a torch tensor (computed on the host).

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

    ip, ix, dx = _canonical(x, metric, "features")
    exact = sp.csr_matrix((dx, ix, ip), shape=tuple(x.shape))
    if metric == "cosine":
        # mean of 1 - cos = mean of squared unit-row distances / 2
        out = sparse_backend.knn_mean_distance(exact, k, power=2) * 0.5
    else:
        out = sparse_backend.knn_mean_distance(exact, k)
    if isinstance(x, torch.Tensor):
        return torch.from_numpy(out).to(x.device)
    return out
