"""numba kernels of :class:`densecore.KMedoidsRefinement` (Euclidean distances from the
nearest-centre search's float64 differences); a module of their own so that
``import densecore`` does not load numba."""

from __future__ import annotations

import numba
import numpy as np

from .nearest_kernels import sq64


@numba.njit(cache=True)
def _dist(x, i, j):  # pragma: no cover - numba
    """Euclidean distance of rows ``i`` and ``j`` of ``x``: the nearest-centre search's
    float64 squared distance from differences, the same for equal inputs."""
    return np.sqrt(sq64(x, i, x, j))


@numba.njit(parallel=True, cache=True)
def _split_costs_nb(x, mem, dcur):  # pragma: no cover - numba
    """cost[p] = sum_j min(dcur[j], ||x_mem[j] - x_mem[p]||) over the members."""
    m = mem.shape[0]
    cost = np.empty(m)
    for p in numba.prange(m):
        i = mem[p]
        s = 0.0
        for q in range(m):
            v = _dist(x, i, mem[q])
            s += v if v < dcur[q] else dcur[q]
        cost[p] = s
    return cost


_ROWS = 32  # members per task of the medoid costs: each row of the area is read once per task


@numba.njit(parallel=True, cache=True)
def _area_costs_nb(xs, starts, blocks):  # pragma: no cover - numba
    """cost[p] = sum of Euclidean distances from row p of ``xs`` to every row of its
    area (rows ``starts[a]:starts[a+1]``, contiguous), summed in row order; one task
    per block ``(area, first row, end row)`` of at most ``_ROWS`` rows."""
    cost = np.zeros(xs.shape[0])
    for b in numba.prange(blocks.shape[0]):
        a, lo, hi = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        acc = np.zeros(_ROWS)
        for q in range(starts[a], starts[a + 1]):
            for p in range(lo, hi):
                acc[p - lo] += _dist(xs, p, q)
        for p in range(lo, hi):
            cost[p] = acc[p - lo]
    return cost


def _row_blocks(starts: np.ndarray) -> np.ndarray:
    """``(n_blocks, 3)`` int64 ``(area, lo, hi)``: each area's rows in runs of ``_ROWS``."""
    out = [(a, lo, min(lo + _ROWS, int(starts[a + 1])))
           for a in range(len(starts) - 1)
           for lo in range(int(starts[a]), int(starts[a + 1]), _ROWS)]
    return np.array(out, dtype=np.int64).reshape(-1, 3)
