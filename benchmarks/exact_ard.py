"""The naive exact-ARD greedy, the bound benchmark's reference (``benchmarks/bounds.py``,
method ``exact_ard_greedy``): each step adds the point that minimises the max average
radial distance (Eq. 4) of the new selection, ``O(n^2 b)`` time and ``O(n^2)`` memory.
"""

from __future__ import annotations

import numba
import numpy as np

from densecore.validation import check_features, check_int

__all__ = ["exact_ard_greedy"]


@numba.njit(parallel=True, cache=True)
def _exact_scores(dist, old_d, assign, sums, counts, m):  # pragma: no cover - numba
    n = dist.shape[0]
    scores = np.empty(n)
    for c in numba.prange(n):
        if old_d[c] == 0.0:  # already selected, or a duplicate of a selected point
            scores[c] = np.inf
            continue
        dsum = np.zeros(m)
        dcnt = np.zeros(m)
        new_sum = 0.0
        new_cnt = 0.0
        for j in range(n):
            dj = dist[c, j]
            if dj < old_d[j]:
                new_sum += dj
                new_cnt += 1.0
                a = assign[j]
                if a >= 0:
                    dsum[a] += old_d[j]
                    dcnt[a] += 1.0
        best = new_sum / new_cnt
        for k in range(m):
            cnt = counts[k] - dcnt[k]
            if cnt > 0.5:
                v = (sums[k] - dsum[k]) / cnt
                if v > best:
                    best = v
        scores[c] = best
    return scores


def exact_ard_greedy(features, budget: int) -> np.ndarray:
    """The naive greedy for Eq. 4: each step adds the point that minimises the max
    average radial distance of the new selection.

    The first pick is the medoid (the point with the smallest mean distance to
    all others). Every step scores all ``n`` candidates against all ``n``
    points, so the cost is ``O(n^2 b)`` time and ``O(n^2)`` memory (the full
    Euclidean distance matrix): for small ``n`` only (a few thousand).
    Ties go to the lowest index.

    Args:
        features: ``(n, D)`` float array.
        budget: number of picks, ``1 <= budget <= n``.

    Returns:
        ``(budget,)`` int64 indices in selection order.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
        >>> exact_ard_greedy(x, 2).tolist()
        [2, 3]
    """
    x = np.asarray(check_features(features), dtype=np.float64)
    n = x.shape[0]
    budget = check_int(budget, "budget", minimum=1)
    if budget > n:
        raise ValueError(f"budget must be at most the number of points ({n}); got {budget}")
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    np.fill_diagonal(dist, 0.0)
    old_d = np.full(n, np.inf)
    assign = np.full(n, -1, dtype=np.int64)
    sums = np.zeros(budget)
    counts = np.zeros(budget)
    picks = np.empty(budget, dtype=np.int64)
    for m in range(budget):
        c = int(np.argmin(_exact_scores(dist, old_d, assign, sums, counts, m)))
        picks[m] = c
        moved = dist[c] < old_d
        np.subtract.at(sums, assign[moved & (assign >= 0)],
                       old_d[moved & (assign >= 0)])
        np.subtract.at(counts, assign[moved & (assign >= 0)], 1.0)
        old_d = np.where(moved, dist[c], old_d)
        assign[moved] = m
        sums[m] = dist[c][moved].sum()
        counts[m] = moved.sum()
    return picks
