"""Coverage density of plain vectors from their k nearest neighbours.

The paper estimates the average radial distance of a pixel from its spatial
neighbours (DMC). For vectors without spatial structure the direct estimate
is the mean Euclidean distance to the k nearest neighbours; it is mapped to
a coverage density exactly as the paper maps the reconstruction error:
min-max normalised to [0, 1], then ``beta * exp(-e / tau)``.

Two searches find the neighbours. ``"exact"`` is the one certified nearest
search (:mod:`densecore._backends.nearest`), ``O(N^2 D)``. ``"hnsw"`` finds
them in a faiss HNSW graph (approximate: a true neighbour may be missed and a
slightly farther point taken instead), with the search effort raised until
the recall@k measured against exact brute force on a seeded sample of points
reaches a target; the distances of the neighbours found are recomputed
exactly, so a mean distance is never below the exact one, and the largest
mean distances (which set the min-max normalisation) are recomputed exactly.
``"auto"`` is exact
below :data:`APPROX_MIN` points and HNSW from there on (CPU inputs only).

Shape:
    features ``(N, D)`` -> densities ``(N,)`` in ``[beta * exp(-1/tau), beta]``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from .. import metrics as M
from .. import validation as V
from .._backends import faiss_backend, nearest, threads
from .scaling import BETA, TAU, coverage_density

__all__ = ["APPROX_MIN", "SEARCHES", "KNNDensity", "knn_mean_distance"]

log = logging.getLogger(__name__)

SEARCHES = ("auto", "exact", "hnsw")
# "auto" switches to HNSW from this many points on: with benchmarks/knn.py
# (D = 64, k = 10, 16-component Gaussian mixture, 2 busy cores, one run) exact
# took 4.8 / 15.9 / 43.4 s at 10k / 20k / 30k points, HNSW 7.4 / 14.0 / 32.6 s
# at recall@10 0.98 / 0.96 / 0.94 (benchmarks/README.md, "Approximate k-NN density").
APPROX_MIN = 20_000
RECALL_QUERIES = 200  # sampled points on which recall@k is measured
# graph degree: at 200k x 64 (2 busy cores), efSearch 64 reached recall 0.68 with
# M = 16 and 0.87 with M = 32; M = 24 keeps the index (float32 values + links)
# under 2x the float32 features. Values are float32: float16 storage capped the
# recall below 1 on 2,500 x 12 mixtures (near-ties within a float16 rounding).
# efConstruction 100 (faiss_backend.hnsw_index): at 100k x 64, recall 0.938 at
# efSearch 64 in 55 s (build + search) against 0.945 at efSearch 128 in 75 s
# with efConstruction 40.
_HNSW_M = 24
_EF_START = 32
_EF_MAX = 512  # search effort cap; below the recall target there, a warning
_CHUNK = 4096  # query rows per block of the full search


def knn_mean_distance(features, k: int = 10, *, backend: str = "auto",
                      metric: str = "euclidean", validate: bool = True,
                      search: str = "auto", recall: float = 0.9, seed: int = 0):
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
        search: ``"exact"``, ``"hnsw"`` (approximate, faiss HNSW graph) or
            ``"auto"`` (exact below :data:`APPROX_MIN` points, for tensors
            off the CPU or without faiss; HNSW from there on). Sparse input is always searched
            exactly; ``"hnsw"`` with sparse input raises ValueError.
        recall: HNSW only: the recall@k target in ``(0, 1]``, measured against
            exact brute force on :data:`RECALL_QUERIES` seeded sample points;
            the search effort doubles until it is met (a RuntimeWarning when
            the cap is reached first).
        seed: HNSW only: seed of the recall sample.

    Returns:
        ``(N,)`` float64 mean distances, in the input's kind (numpy for sparse input).
        With HNSW each is the exact mean distance of the ``k`` neighbours found,
        so never below the exact answer.

    Example:
        >>> import numpy as np
        >>> knn_mean_distance(np.array([[0.0], [1.0], [3.0]]), k=1).tolist()
        [1.0, 1.0, 2.0]
        >>> knn_mean_distance(np.array([[0.0], [1.0], [3.0]]), k=1, search="hnsw").tolist()
        [1.0, 1.0, 2.0]
    """
    return _knn_mean_distance(features, k, backend, metric, validate, search, recall,
                              seed)[0]


def _knn_mean_distance(features, k, backend, metric, validate, search, recall, seed):
    """:func:`knn_mean_distance` plus (search used, measured recall or None if exact)."""
    metric = M.check_metric(metric)
    search = V.check_choice(search, SEARCHES, "search")
    recall = V.check_fraction(recall, "recall")
    if V.is_sparse(features):
        if search == "hnsw":
            raise ValueError("search='hnsw' takes dense features; sparse features are "
                             "searched exactly (search='exact' or 'auto')")
        from ..sparse import knn_mean_distance_sparse

        return knn_mean_distance_sparse(features, k, metric=metric, validate=validate), \
            "exact", None
    x = V.check_features(features, validate=validate)
    k = V.check_int(k, "k", minimum=1)
    seed = V.check_int(seed, "seed", minimum=0)
    if x.shape[0] <= k:
        raise ValueError(f"k must be smaller than the number of points ({x.shape[0]}); got {k}")
    if search == "auto":
        big = x.shape[0] >= APPROX_MIN and x.device.type == "cpu"
        search = "hnsw" if big and faiss_backend.available() else "exact"
    if metric == "cosine":
        x = M.unit_rows(x)
    if search == "hnsw":
        faiss_backend.require()
        xn = nearest._as_np(x)
        with threads():
            total, got = _hnsw_sum(xn, k, recall, seed, metric)
        mean = total / k
        if not isinstance(features, np.ndarray):
            mean = torch.from_numpy(mean).to(x.device)
        return mean, "hnsw", got
    # the k + 1 smallest exact distances are {0 (the point itself)} plus the k
    # nearest others, duplicates included
    sq, _, e = nearest.search_scaled(x, x, k + 1, method=backend)
    total = nearest.plain_distance(sq, e, metric).sum(1)
    mean = total / k
    return (mean.numpy() if isinstance(features, np.ndarray) else mean), "exact", None


def _drop_self(idx: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """``(B, k + 1)`` found indices -> ``(B, k)`` without the query's own row (the last
    one when the query itself was not found: a duplicate took its place)."""
    keep = idx != rows[:, None]
    no_self = keep.all(1)
    keep[no_self, k] = False
    return idx[keep].reshape(len(idx), k)


def _exact_sq(xn: np.ndarray, rows: np.ndarray, cand: np.ndarray, ones: np.ndarray):
    """Squared Euclidean distances ``(B, k)`` of ``xn[rows]`` to ``xn[cand]``, float64
    from coordinate differences (``inf`` where ``cand`` is -1)."""
    out = np.empty(cand.shape, np.float64)
    nearest._rescore(np.ascontiguousarray(xn[rows]), xn, ones, cand, out)
    return out


def _brute_sq(xn: np.ndarray, rows: np.ndarray, k: int, ones: np.ndarray) -> np.ndarray:
    """Exact ``k`` smallest squared distances ``(B, k)`` of ``xn[rows]`` to all of ``xn``
    (the row itself included, at 0), float64 from differences."""
    q = np.ascontiguousarray(xn[rows])
    vals = np.empty((len(rows), k), np.float64)
    idx = np.empty((len(rows), k), np.int64)
    nearest._brute(q, xn, ones, k, np.arange(len(rows), dtype=np.int64), vals, idx)
    return vals


def _hnsw_sum(xn: np.ndarray, k: int, target: float, seed: int, metric: str):
    """Per point, the sum ``(N,)`` of exact ``metric`` distances to the ``k`` neighbours
    an HNSW search finds, the effort raised until the sampled recall@k reaches
    ``target``; and that recall.

    Recall@k of a sampled point is the share of its ``k`` found neighbours whose
    distance is at most its exact ``k``-th distance (ties counted as hits), the
    reference being the exact float64 brute force of :mod:`densecore._backends.nearest`.
    """
    n = len(xn)
    index = faiss_backend.hnsw_index(xn.shape[1], _HNSW_M)
    # float32 features go into the index as they are (faiss copies them once);
    # others as one float32 copy centred in float64, so that a large common
    # offset costs no precision in the rounding to float32
    if xn.dtype == np.float32:
        mu = None
        faiss_backend.hnsw_add(index, xn)
    else:
        mu = np.zeros(xn.shape[1])
        for s in range(0, n, _CHUNK):
            mu += xn[s:s + _CHUNK].sum(0, dtype=np.float64)
        mu /= n
        x32 = np.empty(xn.shape, np.float32)
        for s in range(0, n, _CHUNK):
            x32[s:s + _CHUNK] = xn[s:s + _CHUNK] - mu
        faiss_backend.hnsw_add(index, x32)
        del x32

    def find(rows):
        q = xn[rows] if mu is None else xn[rows] - mu
        return _drop_self(faiss_backend.hnsw_search(index, q, k + 1, ef), rows, k)

    ones = np.ones(n)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, RECALL_QUERIES), replace=False)).astype(np.int64)
    # the k + 1 smallest exact values are {0 (the point itself)} plus the k nearest others
    kth = _brute_sq(xn, sample, k + 1, ones)[:, k]
    ef = max(_EF_START, k + 1)
    while True:
        found = find(sample)
        sq = _exact_sq(xn, sample, found, ones)
        got = float(np.mean(sq <= kth[:, None] * (1 + 1e-12)))
        log.info("HNSW search effort %d: recall@%d %.3f on %d sampled points", ef, k, got,
                 len(sample))
        if got >= target or ef >= _EF_MAX:
            break
        ef *= 2
    if got < target:
        warnings.warn(f"k-NN density: HNSW recall@{k} {got:.3f} stays below the target "
                      f"recall={target} at the largest search effort ({_EF_MAX}); use "
                      "search='exact' for exact neighbours", RuntimeWarning, stacklevel=4)
    out = np.empty(n, np.float64)
    for s in range(0, n, _CHUNK):
        rows = np.arange(s, min(n, s + _CHUNK), dtype=np.int64)
        found = find(rows)
        sq = _exact_sq(xn, rows, found, ones)
        miss = np.flatnonzero(found.min(1) < 0)
        if miss.size:  # fewer than k found (tiny graphs): exact for those rows
            sq[miss] = _brute_sq(xn, rows[miss], k + 1, ones)[:, 1:]
        out[rows] = M.from_squared_euclidean(sq, metric).sum(1)
    _exact_top(xn, out, k, metric, ones)
    return out, got


def _exact_top(xn: np.ndarray, out: np.ndarray, k: int, metric: str, ones: np.ndarray):
    """Recompute the :data:`RECALL_QUERIES` largest sums of ``out`` exactly, in place.

    The largest mean distance sets the min-max normalisation of every density.
    An HNSW sum is never below the exact one, so once the largest exact value
    among the recomputed ones reaches the smallest of their HNSW values, no
    other point can exceed it: the maximum is then the exact maximum.
    """
    n, m = len(out), min(len(out), RECALL_QUERIES)
    top = np.sort(np.argpartition(out, n - m)[n - m:]).astype(np.int64)
    bar = float(out[top].min())
    out[top] = M.from_squared_euclidean(_brute_sq(xn, top, k + 1, ones)[:, 1:], metric).sum(1)
    if m < n and float(out[top].max()) < bar:
        log.info("k-NN density: the largest mean distance is not certified exact "
                 "(%.6g < %.6g)", float(out[top].max()), bar)


class KNNDensity:
    """Coverage density of vectors: ``beta * exp(-e / tau)`` with ``e`` the min-max
    normalised mean distance to the ``k`` nearest neighbours.

    Args:
        k: neighbours (default 10).
        beta: density scale, ``e^2.4`` as in the paper.
        tau: temperature, 0.25 as in the paper.
        backend: nearest-neighbour search, see :func:`knn_mean_distance`.
        metric: ``"euclidean"`` or ``"cosine"``; scipy sparse features are taken too.
        search: ``"auto"``, ``"exact"`` or ``"hnsw"``; ``recall``, ``seed``: the
            HNSW recall target and sample seed (see :func:`knn_mean_distance`).

    Attributes:
        last_search: the search the last call used (``"exact"`` or ``"hnsw"``).
        last_recall: recall@k measured by the last HNSW call on the sampled
            points; None after an exact search.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [0.1], [0.2], [5.0]], np.float32)
        >>> d = KNNDensity(k=1, beta=1.0)(x)
        >>> bool(d[3] < d[1]), float(d.max())
        (True, 1.0)
    """

    def __init__(self, k: int = 10, beta: float = BETA, tau: float = TAU,
                 backend: str = "auto", metric: str = "euclidean", search: str = "auto",
                 recall: float = 0.9, seed: int = 0):
        self.k = V.check_int(k, "k", minimum=1)
        self.metric = M.check_metric(metric)
        self.beta = V.check_positive_float(beta, "beta")
        self.tau = V.check_positive_float(tau, "tau")
        if backend not in nearest.METHODS:
            raise ValueError(f"backend must be one of {nearest.METHODS}; got {backend!r}")
        self.backend = backend
        self.search = V.check_choice(search, SEARCHES, "search")
        self.recall = V.check_fraction(recall, "recall")
        self.seed = V.check_int(seed, "seed", minimum=0)
        self.last_search: str | None = None
        self.last_recall: float | None = None

    def __call__(self, features, *, validate: bool = True):
        """Densities ``(N,)`` float64 for ``features`` ``(N, D)``."""
        e, self.last_search, self.last_recall = _knn_mean_distance(
            features, self.k, self.backend, self.metric, validate, self.search, self.recall,
            self.seed)
        return coverage_density(e, beta=self.beta, tau=self.tau)

    def __repr__(self) -> str:
        return (f"KNNDensity(k={self.k}, beta={self.beta:.4g}, tau={self.tau}, "
                f"metric={self.metric!r}, search={self.search!r})")
