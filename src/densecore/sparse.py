"""Algorithm 1 and k-NN densities on sparse features, exactly.

Text and bag-of-words features are sparse: densifying 100,000 documents over
a 50,000-word vocabulary would take 20 GB. These functions keep the rows
sparse (scipy matrices, or COO/CSR torch tensors) and compute every distance
from the differences of two rows, never from ``|a|^2 - 2 a.b + |b|^2`` (see
``_backends/sparse_backend.py``), so they return the float64 reference's
selection. The greedy is the sparse layout of the engine table
(:mod:`densecore.engines`: numba on the CPU, torch on any device with no read back
to the host per pick) behind the one driver of :func:`densecore.farthest_first`,
which this module feeds with its checks (:func:`check_sparse`); the k-NN search
runs on the CPU.

:func:`densecore.farthest_first`, the samplers and :class:`densecore.KNNDensity`
call into this module when given sparse features.

Shape:
    features ``(N, D)`` sparse; densities ``(N,)``; labeled ``(M,)``;
    labeled_features ``(L, D)`` sparse or dense; result ``(budget,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from . import metrics as M
from . import validation as V
from ._core import mul_pow2, pow2_exp

__all__ = ["SparsePool", "check_sparse", "knn_mean_distance_sparse"]


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


def _csr(a, metric: str, name: str):
    """:class:`~densecore._backends.sparse_backend.Csr` (numpy) of a sparse or dense
    matrix: sorted unique columns, float64, unit rows for cosine (one copy)."""
    from ._backends.sparse_backend import Csr

    return Csr(*_canonical(a, metric, name), int(a.shape[1]))


def _stack(rows: list, dim: int):
    """Canonical CSR rows stacked: ``(indptr, indices, data)`` of ``(sum, D)``."""
    from ._backends.sparse_backend import Csr

    ips, ixs, dxs, off = [np.zeros(1, np.int64)], [], [], 0
    for ip, ix, dx, _ in rows:
        ips.append(ip[1:] + off)
        ixs.append(ix)
        dxs.append(dx)
        off += int(ip[-1])
    return Csr(np.concatenate(ips), np.concatenate([np.zeros(0, np.int64), *ixs]),
               np.concatenate([np.zeros(0), *dxs]), dim)


def _take(c, rows: np.ndarray):
    """Rows ``rows`` of a canonical CSR, in that order."""
    ip, ix, dx, dim = c
    lo, hi = ip[rows], ip[rows + 1]
    take = (np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(rows)
            else np.zeros(0, np.int64)).astype(np.int64)
    from ._backends.sparse_backend import Csr

    return Csr(np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64), ix[take], dx[take],
               dim)


@dataclass
class SparsePool:
    """One pool of sparse features, checked: the sparse layout of :class:`densecore.greedy.Pool`
    (same methods). ``x``/``lf`` are canonical CSR (numpy, unit rows for cosine),
    ``dens``/``ld`` float64 numpy or None, ``lab`` an int64 CPU tensor."""

    x: Any
    dens: Any
    lab: torch.Tensor
    lf: Any
    ld: Any
    engine: str
    is_numpy: bool
    device: torch.device
    layout: ClassVar[str] = "sparse"
    dtype: ClassVar[torch.dtype] = torch.float64
    storage: ClassVar[None] = None  # sparse rows are never rounded (no ``storage=``)

    @property
    def n(self) -> int:
        return len(self.x.indptr) - 1

    @property
    def n_out(self) -> int:
        return len(self.lf.indptr) - 1

    @property
    def dim(self) -> int:
        return self.x.dim

    def stats(self) -> list[float]:
        """``[max |feature|, max density, min density]`` (see the dense pool)."""
        big = max((float(np.abs(c.data).max()) for c in (self.x, self.lf) if c.data.size),
                  default=0.0)
        d = [a for a in (() if self.dens is None else (self.dens, self.ld)) if a.size]
        if not d:
            return [big, 0.0, math.inf]
        return [big, max(float(a.max()) for a in d), min(float(a.min()) for a in d)]

    def own_centres(self, fscale: float, dscale: float):
        """This pool's labeled rows and labeled features as scaled centres:
        ``(Csr (L, D), (L,) float64)``."""
        c = _stack([_take(self.x, self.lab.numpy()), self.lf], self.x.dim)
        c = c._replace(data=_scaled(c.data, fscale))
        if self.dens is None:
            return c, np.ones(len(c.indptr) - 1)
        return c, np.concatenate([self.dens[self.lab.numpy()], self.ld]) * dscale

    def prepare(self, fscale: float, dscale: float, centres=None, cdens=None) -> dict:
        """Engine inputs: the scaled pool, densities, excluded mask and centres
        (this pool's unless given), numpy for a host engine, else tensors on the
        features' device."""
        from . import engines as E

        x = self.x._replace(data=_scaled(self.x.data, fscale))
        dens = np.ones(self.n) if self.dens is None else self.dens * dscale
        excluded = np.zeros(self.n, dtype=bool)
        excluded[self.lab.numpy()] = True
        if centres is None:
            centres, cdens = self.own_centres(fscale, dscale)
        elif isinstance(centres, torch.Tensor):  # dense rows (a sharded selection's)
            centres = _csr(centres.detach().cpu().double().numpy(), "euclidean", "centres")
            cdens = cdens.detach().cpu().double().numpy()
        if E.engine(self.engine, "sparse").host:
            return {"x": x, "dens": dens, "centres": centres, "cdens": cdens,
                    "excluded": excluded}

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        return {"x": x._replace(indptr=t(x.indptr), indices=t(x.indices), data=t(x.data)),
                "dens": t(dens), "excluded": t(excluded), "cdens": t(cdens),
                "centres": centres._replace(indptr=t(centres.indptr),
                                            indices=t(centres.indices), data=t(centres.data))}


def _scaled(data: np.ndarray, fscale: float) -> np.ndarray:
    return data if fscale == 1.0 else mul_pow2(data, pow2_exp(fscale))  # exact


def check_sparse(features, densities=None, labeled=None, labeled_features=None,
                 labeled_densities=None, *, backend: str = "auto", metric: str = "euclidean",
                 validate: bool = True) -> SparsePool:
    """Check one pool of sparse features (Algorithm 1's inputs) and resolve its engine.

    Args:
        features: ``(N, D)`` scipy sparse matrix or sparse (COO/CSR) torch tensor.
        densities: ``(N,)`` > 0 or None (k-center greedy).
        labeled: ``(M,)`` in-pool labeled indices.
        labeled_features: ``(L, D)`` labeled points outside the pool, sparse or dense.
        labeled_densities: ``(L,)`` their densities (required with ``densities``).
        backend: a name of the engine table with a sparse engine, or ``"auto"``
            (:func:`densecore.engines.resolve`).
        metric: ``"euclidean"`` or ``"cosine"`` (rows made unit here).
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`SparsePool`, the input of :func:`densecore.farthest_first`'s driver.

    Example:
        >>> import scipy.sparse as sp
        >>> p = check_sparse(sp.csr_matrix([[0.0, 2.0], [1.0, 0.0]]), labeled=[1])
        >>> p.n, p.engine, p.lab.tolist()
        (2, 'numba', [1])
    """
    from . import engines as E

    x = V.check_sparse_features(features, validate=validate)
    is_tensor = isinstance(x, torch.Tensor)
    dev = x.device if is_tensor else torch.device("cpu")
    engine = E.resolve(backend, "sparse", dev)
    n, dim = tuple(x.shape)
    lab = V.check_indices(labeled, n, "labeled").cpu()
    dens = (None if densities is None else V.check_densities(
        densities, n, validate=validate).detach().cpu().double().numpy())
    if labeled_features is None:
        lf = None
    elif V.is_sparse(labeled_features):
        lf = V.check_sparse_features(labeled_features, "labeled_features", validate=validate,
                                     dim=dim)
    else:
        lf = V.check_features(labeled_features, "labeled_features", validate=validate,
                              dim=dim).detach().cpu().double().numpy()
    n_out = 0 if lf is None else lf.shape[0]
    ld = V.check_labeled_densities(labeled_densities, n_out, has_densities=densities is not None,
                                   has_labeled_features=lf is not None, validate=validate)
    if dens is not None:
        ld = np.ones(0) if ld is None else ld.detach().cpu().double().numpy()
    lfc = (_csr(lf, metric, "labeled_features") if lf is not None
           else _stack([], dim))
    return SparsePool(_csr(x, metric, "features"), dens, lab, lfc, ld, engine, not is_tensor,
                      dev)


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
