"""numba kernel of the pick radii (:func:`densecore.greedy.pick_radii`); a module of
its own so that ``import densecore`` does not load numba.

Shape:
    ``p`` ``(B, D)`` float64 picks in order, ``inv_d`` ``(B,)`` float64, ``r`` ``(B,)``.
"""

from __future__ import annotations

import numba

from .nearest_kernels import sq64

__all__ = ["prefix_min"]


@numba.njit(parallel=True, cache=True)
def prefix_min(p, inv_d, r):  # pragma: no cover - numba
    """r[i] = min(r[i], min_{j < i} ||p_i - p_j||^2 * inv_d[j]) (float64 from differences)."""
    for i in numba.prange(1, p.shape[0]):
        best = r[i]
        for j in range(i):
            v = sq64(p, i, p, j) * inv_d[j]
            if v < best:
                best = v
        r[i] = best
