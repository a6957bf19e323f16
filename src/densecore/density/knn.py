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
below :data:`APPROX_MIN` distinct rows and HNSW from there on (CPU inputs only).

Exact copies (pixel features hold many) are searched once: on the CPU the
distinct rows are found first, every search runs on them, and the ``k``
neighbours of a copy are its own other copies (at distance 0) and then the
nearest other distinct rows, counted with their multiplicity. An HNSW graph
over all the copies degenerates (recall@10 0.81 on 20,001 heavy duplicates,
thousands of points with a positive mean distance where the exact one is 0);
over the distinct rows it does not. Should the HNSW recall still miss its
target at the largest search effort, the exact search runs instead (with a
RuntimeWarning).

Shape:
    features ``(N, D)`` -> densities ``(N,)`` in ``[beta * exp(-1/tau), beta]``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from .. import _rules as R
from .. import metrics as M
from .. import validation as V
from .._backends import faiss_backend, nearest, threads
from .._core import SAFE_EXP, mul_pow2, pow2_exp, pow2_scale
from .scaling import BETA, TAU, coverage_density

__all__ = ["APPROX_MIN", "SEARCHES", "KNNDensity", "knn_mean_distance"]

log = logging.getLogger(__name__)

SEARCHES = ("auto", "exact", "hnsw")
# "auto" switches to HNSW from this many distinct rows on; the rule and the
# measurement behind it: densecore._rules.kernel ("knn"), _rules.APPROX_MIN.
APPROX_MIN = R.APPROX_MIN
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


def knn_mean_distance(features, k: int = 10, *, search_backend: str = "auto",
                      metric: str = "euclidean", validate: bool = True,
                      search: str = "auto", recall: float = 0.9, seed: int = 0):
    """Mean distance of each point to its ``k`` nearest other points.

    Duplicates count as neighbours at distance 0; the point itself does not.

    Args:
        features: ``(N, D)``, ``N > k``; a scipy sparse matrix runs the exact
            sparse search of :func:`densecore.sparse.knn_mean_distance_sparse`.
        k: number of neighbours.
        search_backend: where the fast candidates of the one nearest search come
            from, ``"auto"``, ``"faiss"`` or ``"torch"`` (see
            :func:`densecore.coverage`); the answer is exact either way.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``).
        validate: check for NaN/inf (NaN then raises ValueError).
        search: ``"exact"``, ``"hnsw"`` (approximate, faiss HNSW graph) or
            ``"auto"`` (exact below :data:`APPROX_MIN` distinct rows, for tensors
            off the CPU or without faiss; HNSW from there on). Sparse input is always searched
            exactly; ``"hnsw"`` with sparse input raises ValueError.
        recall: HNSW only: the recall@k target in ``(0, 1]``, measured against
            exact brute force on :data:`RECALL_QUERIES` seeded sample points;
            the search effort doubles until it is met (when the cap is reached
            first: a RuntimeWarning and the exact search).
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
    return _knn_mean_distance(features, k, search_backend, metric, validate, search, recall,
                              seed)[0]


def _knn_mean_distance(features, k, search_backend, metric, validate, search, recall, seed):
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
    if metric == "cosine":
        x = M.unit_rows(x)
    if x.device.type != "cpu":  # off the CPU: the exact search where the features are
        if search == "hnsw":
            faiss_backend.require()
        else:
            sq, _, e = nearest.search_scaled(x, x, k + 1, method=search_backend)
            # the k + 1 smallest exact distances are {0 (the point itself)} plus the k
            # nearest others, duplicates included
            mean = nearest.plain_distance(sq, e, metric).sum(1) / k
            return mean, "exact", None
    xn = nearest.as_numpy(x)
    # the one scaling rule (a power of two, exact; copies stay copies): squared
    # distances stay finite in float64 and the HNSW graph's float32 copy stays finite
    e = pow2_exp(pow2_scale(float(np.abs(xn).max()) if xn.size else 0.0,
                                    SAFE_EXP[torch.float32]))
    if e:
        xn = mul_pow2(xn, e)
    groups = _Distinct(xn)
    if search == "auto":  # the one size/device rule (densecore._rules.kernel)
        search = R.kernel("knn", x.device, groups.size, faiss=faiss_backend.available())
    got = None
    with threads():
        if search == "hnsw":
            faiss_backend.require()
            total, got = _hnsw_sum(xn, groups, k, recall, seed, metric)
            if total is None:
                search, got = "exact", None
        if search == "exact":
            total = _exact_sum(xn, groups, k, search_backend, metric)
    mean = total[groups.inverse] / k if groups.inverse is not None else total / k
    if e and metric != "cosine":  # cosine distances of unit rows do not scale
        mean = mul_pow2(mean, -e)
    if not isinstance(features, np.ndarray):
        mean = torch.from_numpy(mean).to(x.device)
    return mean, search, got


class _Distinct:
    """The distinct rows of ``xn`` ``(N, D)``: the k-NN searches run on them once each.

    Attributes:
        rows: ``(U, D)`` the distinct rows (``xn`` itself when all are distinct).
        first: ``(U,)`` int64 the first index of each distinct row in ``xn``.
        counts: ``(U,)`` int64 how many points share it.
        inverse: ``(N,)`` int64 the distinct row of every point; None when all are
            distinct.
        size: ``U``.

    Rows are grouped by a hash of their bytes (``-0.0`` read as ``0.0``) and every
    group is then checked value by value; should a hash ever join two different
    rows (or rows hold NaN), every row is kept as its own (always correct, only
    slower). Pixel features hold many exact copies, on which an HNSW graph
    degenerates (recall 0.81 at 20,001 heavy duplicates, mean distances above the
    exact ones): each copy's ``k`` neighbours are its own copies at distance 0 and
    then the nearest other distinct rows, counted with their multiplicity
    (:func:`_expand`).
    """

    def __init__(self, xn: np.ndarray):
        n = xn.shape[0]
        self.rows, self.first, self.inverse = xn, np.arange(n, dtype=np.int64), None
        self.counts = np.ones(n, dtype=np.int64)
        self.size = n
        words = xn.shape[1] * xn.itemsize // 4
        mult = np.random.default_rng(0x5EED).integers(1, 2**63, words, dtype=np.uint64) | 1
        h = np.empty(n, dtype=np.uint64)
        for s in range(0, n, _CHUNK):
            w = np.ascontiguousarray(xn[s:s + _CHUNK] + 0.0).view(np.uint32)  # -0.0 -> 0.0
            h[s:s + _CHUNK] = (w.astype(np.uint64) * mult).sum(1)  # mod 2^64
        _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True,
                                              return_counts=True)
        if len(first) == n:
            return
        inverse = inverse.reshape(-1).astype(np.int64, copy=False)
        for s in range(0, n, _CHUNK):
            if not np.array_equal(xn[s:s + _CHUNK], xn[first[inverse[s:s + _CHUNK]]]):
                log.info("k-NN density: rows with equal hashes differ (or hold NaN); "
                         "every row is searched")
                return
        self.first = first.astype(np.int64, copy=False)
        self.inverse, self.counts, self.size = inverse, counts.astype(np.int64), len(first)
        self.rows = np.ascontiguousarray(xn[self.first])
        log.info("k-NN density: %d distinct rows among %d points", self.size, n)


def _expand(xu: np.ndarray, counts: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int):
    """The ``k + 1`` nearest points of a copy of each distinct row ``rows`` (itself
    included), from candidate distinct rows ``cand`` ``(B, m)`` (-1: none).

    Returns ``(sq, take, short)``: ``sq`` ``(B, m + 1)`` exact squared distances in
    ascending order (the row itself first, at 0), ``take`` how many copies of each
    are among the ``k + 1`` (its multiplicity, cut at ``k + 1`` in all), and
    ``short`` ``(B,)`` True where the candidates hold fewer than ``k + 1`` points.
    """
    from .._backends.nearest_kernels import rescore  # numba loads on first use

    c = np.concatenate([rows[:, None], np.where(cand == rows[:, None], -1, cand)], 1)
    sq = np.empty(c.shape, np.float64)
    rescore(np.ascontiguousarray(xu[rows]), xu, np.ones(len(xu)), c, sq)
    order = np.argsort(sq, axis=1, kind="stable")
    sq = np.take_along_axis(sq, order, 1)
    c = np.take_along_axis(c, order, 1)
    mult = np.where(c >= 0, counts[np.maximum(c, 0)], 0)
    before = np.cumsum(mult, 1) - mult
    take = np.clip(k + 1 - before, 0, mult)
    return sq, take, take.sum(1) < k + 1


def _sum_taken(sq: np.ndarray, take: np.ndarray, metric: str) -> np.ndarray:
    """``(B,)`` sum of ``metric`` distances over the copies taken (the row's own at 0)."""
    dist = M.from_squared_euclidean(np.where(take > 0, sq, 0.0), metric)
    return (take * dist).sum(1)


def _exact_sum(xn: np.ndarray, g: _Distinct, k: int, search_backend: str,
               metric: str) -> np.ndarray:
    """Per distinct row, the exact sum ``(U,)`` of ``metric`` distances to the ``k``
    nearest other points (copies included), by the one certified nearest search."""
    xt = torch.from_numpy(g.rows)
    m = min(k + 1, g.size)
    _, idx = nearest.search(xt, xt, m, method=search_backend)
    sq, take, _ = _expand(g.rows, g.counts, np.arange(g.size, dtype=np.int64),
                          idx.numpy().astype(np.int64, copy=False), k)
    return _sum_taken(sq, take, metric)


def _brute_sq(xn: np.ndarray, rows: np.ndarray, k: int, ones: np.ndarray) -> np.ndarray:
    """Exact ``k`` smallest squared distances ``(B, k)`` of ``xn[rows]`` to all of ``xn``
    (the row itself included, at 0), float64 from differences."""
    from .._backends.nearest_kernels import brute  # numba loads on first use

    q = np.ascontiguousarray(xn[rows])
    vals = np.empty((len(rows), k), np.float64)
    idx = np.empty((len(rows), k), np.int64)
    brute(q, xn, ones, k, np.arange(len(rows), dtype=np.int64), vals, idx)
    return vals


def _hnsw_sum(xn: np.ndarray, g: _Distinct, k: int, target: float, seed: int, metric: str):
    """Per distinct row, the sum ``(U,)`` of exact ``metric`` distances to the ``k``
    neighbours an HNSW search over the distinct rows finds (copies counted), the
    effort raised until the sampled recall@k reaches ``target``; and that recall.
    ``(None, recall)`` when the largest effort stays below ``target``: the caller
    then searches exactly.

    Recall@k of a sampled point is the share of its ``k`` found neighbours whose
    distance is at most its exact ``k``-th distance (ties counted as hits), the
    reference being the exact float64 brute force of :mod:`densecore._backends.nearest`
    over every point.
    """
    n, xu, u = len(xn), g.rows, g.size
    index = faiss_backend.hnsw_index(xu.shape[1], _HNSW_M)
    # float32 features go into the index as they are (faiss copies them once);
    # others as one float32 copy centred in float64, so that a large common
    # offset costs no precision in the rounding to float32
    if xu.dtype == np.float32:
        mu = None
        faiss_backend.hnsw_add(index, xu)
    else:
        mu = np.zeros(xu.shape[1])
        for s in range(0, u, _CHUNK):
            mu += xu[s:s + _CHUNK].sum(0, dtype=np.float64)
        mu /= u
        x32 = np.empty(xu.shape, np.float32)
        for s in range(0, u, _CHUNK):
            x32[s:s + _CHUNK] = xu[s:s + _CHUNK] - mu
        faiss_backend.hnsw_add(index, x32)
        del x32

    def find(rows):
        q = xu[rows] if mu is None else xu[rows] - mu
        return _expand(xu, g.counts, rows, faiss_backend.hnsw_search(index, q, k + 1, ef), k)

    ones = np.ones(n)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, RECALL_QUERIES), replace=False)).astype(np.int64)
    # the k + 1 smallest exact values are {0 (the point itself)} plus the k nearest others
    kth = _brute_sq(xn, sample, k + 1, ones)[:, k]
    at = sample if g.inverse is None else g.inverse[sample]
    ef = max(_EF_START, k + 1)
    while True:
        sq, take, _ = find(at)
        hits = (take * (sq <= kth[:, None] * (1 + 1e-12))).sum(1) - 1  # not itself
        got = float(np.mean(hits / k))
        log.info("HNSW search effort %d: recall@%d %.3f on %d sampled points", ef, k, got,
                 len(sample))
        if got >= target or ef >= _EF_MAX:
            break
        ef *= 2
    if got < target:
        warnings.warn(f"k-NN density: HNSW recall@{k} {got:.3f} stays below the target "
                      f"recall={target} at the largest search effort ({_EF_MAX}); the "
                      "neighbours are searched exactly instead", RuntimeWarning, stacklevel=4)
        return None, got
    out = np.empty(u, np.float64)
    for s in range(0, u, _CHUNK):
        rows = np.arange(s, min(u, s + _CHUNK), dtype=np.int64)
        sq, take, short = find(rows)
        out[rows] = _sum_taken(sq, take, metric)
        miss = np.flatnonzero(short)
        if miss.size:  # fewer than k found (tiny graphs): exact for those rows
            out[rows[miss]] = _exact_rows(xn, g.first[rows[miss]], k, metric, ones)
    _exact_top(xn, g, out, k, metric, ones)
    return out, got


def _exact_rows(xn, points, k, metric, ones):
    """Exact sums ``(B,)`` of ``metric`` distances from ``xn[points]`` to their ``k``
    nearest other points (brute force over every point, copies included)."""
    return M.from_squared_euclidean(_brute_sq(xn, points, k + 1, ones)[:, 1:], metric).sum(1)


def _exact_top(xn: np.ndarray, g: _Distinct, out: np.ndarray, k: int, metric: str,
               ones: np.ndarray):
    """Recompute the :data:`RECALL_QUERIES` largest sums of ``out`` (per distinct row)
    exactly, in place.

    The largest mean distance sets the min-max normalisation of every density.
    An HNSW sum is never below the exact one, so once the largest exact value
    among the recomputed ones reaches the smallest of their HNSW values, no
    other point can exceed it: the maximum is then the exact maximum.
    """
    n, m = len(out), min(len(out), RECALL_QUERIES)
    top = np.sort(np.argpartition(out, n - m)[n - m:]).astype(np.int64)
    bar = float(out[top].min())
    out[top] = _exact_rows(xn, g.first[top], k, metric, ones)
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
        metric: ``"euclidean"`` or ``"cosine"``; scipy sparse features are taken too.
        search: the one search option: ``"auto"`` (exact below :data:`APPROX_MIN`
            distinct rows, HNSW from there on, CPU inputs with faiss only),
            ``"exact"`` (the certified nearest search, its candidates chosen by
            :func:`densecore.engines.search_method`) or ``"hnsw"`` (approximate);
            ``recall``, ``seed``: the HNSW recall target and sample seed (see
            :func:`knn_mean_distance`).
        search_backend: deprecated (removed in the next release, a
            DeprecationWarning): where the exact search's fast candidates come
            from. Every choice returns the same exact answer; the search picks
            them by itself. :func:`knn_mean_distance` keeps the option.

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
                 metric: str = "euclidean", search: str = "auto", recall: float = 0.9,
                 seed: int = 0, *, search_backend: str | None = None):
        self.k = V.check_int(k, "k", minimum=1)
        self.metric = M.check_metric(metric)
        self.beta = V.check_positive_float(beta, "beta")
        self.tau = V.check_positive_float(tau, "tau")
        if search_backend is not None:
            warnings.warn("KNNDensity(search_backend=) is deprecated and will be removed in "
                          "the next release: the exact search chooses its candidates by "
                          "itself (the answer is the same); use search= only",
                          DeprecationWarning, stacklevel=2)
        self.search_backend = V.check_choice("auto" if search_backend is None
                                             else search_backend, nearest.METHODS,
                                             "search_backend")
        self.search = V.check_choice(search, SEARCHES, "search")
        self.recall = V.check_fraction(recall, "recall")
        self.seed = V.check_int(seed, "seed", minimum=0)
        self.last_search: str | None = None
        self.last_recall: float | None = None

    def __call__(self, features, *, validate: bool = True):
        """Densities ``(N,)`` float64 for ``features`` ``(N, D)``."""
        e, self.last_search, self.last_recall = _knn_mean_distance(
            features, self.k, self.search_backend, self.metric, validate, self.search,
            self.recall, self.seed)
        return coverage_density(e, beta=self.beta, tau=self.tau)

    def __repr__(self) -> str:
        return (f"KNNDensity(k={self.k}, beta={self.beta:.4g}, tau={self.tau}, "
                f"metric={self.metric!r}, search={self.search!r})")
