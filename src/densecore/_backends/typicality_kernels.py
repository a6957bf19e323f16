"""numba kernel of the numba engine's weight hook (``argmax r * w``, the typicality
greedy; squared Euclidean distances in float64 from differences); a module of its
own so that ``import densecore`` does not load numba."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _sqdist(x, i, c):  # pragma: no cover - numba
    s = 0.0
    for d in range(x.shape[1]):
        t = np.float64(x[i, d]) - np.float64(c[d])
        s += t * t
    return s


@numba.njit(parallel=True, cache=True)
def _update_argmax(x, c, r, w, taken, nblocks):  # pragma: no cover - numba
    """Lower ``r`` with centre ``c`` (skipped when ``c`` is empty), return argmax r*w."""
    n = x.shape[0]
    size = (n + nblocks - 1) // nblocks
    best_v = np.full(nblocks, -np.inf)
    best_i = np.full(nblocks, -1, dtype=np.int64)
    use_c = c.shape[0] > 0
    for b in numba.prange(nblocks):
        lo = b * size
        hi = min(n, lo + size)
        bv = -np.inf
        bi = -1
        for i in range(lo, hi):
            if use_c:
                s = _sqdist(x, i, c)
                if s < r[i]:
                    r[i] = s
            if not taken[i]:
                v = r[i] * w[i]
                if v > bv or bi < 0:
                    bv = v
                    bi = i
        best_v[b] = bv
        best_i[b] = bi
    v = -np.inf
    u = -1
    for b in range(nblocks):  # blocks in index order: ties go to the lowest index
        if best_i[b] >= 0 and (u < 0 or best_v[b] > v):
            v = best_v[b]
            u = best_i[b]
    return u, v
