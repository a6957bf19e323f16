"""numba kernels of :mod:`densecore._backends.nearest` (exact, float64 from coordinate
differences); a module of their own so that ``import densecore`` does not load numba.

Shape:
    ``q`` ``(N, D)`` and ``c`` ``(L, D)`` contiguous float arrays, ``inv_w`` ``(L,)``
    float64; values are squared Euclidean distances times ``inv_w``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["brute", "rescore", "sq64"]

_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST)
def sq64(q, i, c, j):
    """Squared Euclidean distance of rows ``q[i]``, ``c[j]``, in float64 from differences."""
    acc = 0.0
    for t in range(q.shape[1]):
        diff = np.float64(q[i, t]) - np.float64(c[j, t])
        acc += diff * diff
    return acc


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def brute(q, c, inv_w, k, rows, vals, idx):
    """Exact k nearest of ``q[rows]`` in float64 from differences; lowest index on ties.

    An empty slot (index -1) ranks after every value, ``inf`` included, so every
    slot gets a centre even when values overflow."""
    for ii in prange(rows.shape[0]):
        i = rows[ii]
        bv = np.full(k, np.inf)
        bi = np.full(k, -1, dtype=np.int64)
        for j in range(c.shape[0]):
            v = sq64(q, i, c, j) * inv_w[j]
            if bi[k - 1] < 0 or v < bv[k - 1]:
                p = k - 1
                # strict: an equal earlier index stays first
                while p > 0 and (bi[p - 1] < 0 or bv[p - 1] > v):
                    bv[p] = bv[p - 1]
                    bi[p] = bi[p - 1]
                    p -= 1
                bv[p] = v
                bi[p] = j
        for p in range(k):
            vals[i, p] = bv[p]
            idx[i, p] = bi[p]


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def rescore(q, c, inv_w, cand, out):
    """Exact value of every candidate ``cand[i, p]`` (float64, from differences)."""
    for i in prange(q.shape[0]):
        for p in range(cand.shape[1]):
            j = cand[i, p]
            if j < 0:
                out[i, p] = np.inf
                continue
            out[i, p] = sq64(q, i, c, j) * inv_w[j]
