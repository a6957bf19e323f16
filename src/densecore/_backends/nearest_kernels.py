"""numba kernels of :mod:`densecore._backends.nearest` (exact, float64 from coordinate
differences); a module of their own so that ``import densecore`` does not load numba.

Shape:
    ``q`` ``(N, D)`` and ``c`` ``(L, D)`` contiguous float arrays, ``inv_w`` ``(L,)``
    float64; values are squared Euclidean distances times ``inv_w``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["brute", "brute_pruned", "centre_gaps", "rescore", "sq64"]

_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST)
def sq64(q, i, c, j):
    """Squared Euclidean distance of rows ``q[i]``, ``c[j]``, in float64 from differences."""
    acc = 0.0
    for t in range(q.shape[1]):
        diff = np.float64(q[i, t]) - np.float64(c[j, t])
        acc += diff * diff
    return acc


@njit(cache=True, fastmath=_FAST, nogil=True)
def _insert(bv, bi, v, j):
    """Put value ``v`` of centre ``j`` into the sorted k best ``bv``/``bi`` (an equal
    earlier index stays first; an empty slot, index -1, ranks after every value)."""
    k = bv.shape[0]
    if bi[k - 1] < 0 or v < bv[k - 1]:
        p = k - 1
        while p > 0 and (bi[p - 1] < 0 or bv[p - 1] > v):
            bv[p] = bv[p - 1]
            bi[p] = bi[p - 1]
            p -= 1
        bv[p] = v
        bi[p] = j


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
            _insert(bv, bi, sq64(q, i, c, j) * inv_w[j], j)
        for p in range(k):
            vals[i, p] = bv[p]
            idx[i, p] = bi[p]


@njit(cache=True, fastmath=_FAST, nogil=True)
def centre_gaps(c, eps):
    """``(L, L)`` float64 lower bounds on the centres' plain distances
    ``||c_a - c_j||``: float64 from differences, less ``eps`` of themselves (one
    thread: L is small beside the queries)."""
    n = c.shape[0]
    out = np.zeros((n, n))
    for a in range(n):
        for j in range(a + 1, n):
            out[a, j] = out[j, a] = np.sqrt(sq64(c, a, c, j)) * (1.0 - eps)
    return out


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def brute_pruned(q, c, inv_w, k, rows, vals, idx, gaps, eps):
    """:func:`brute` (the same values and indices) that skips the centres the triangle
    inequality rules out.

    For a query at plain distance ``d_a`` from its nearest centre so far ``a``, every
    centre ``j`` lies at least ``gaps[a, j] - d_a`` away (``gaps``:
    :func:`centre_gaps`); ``j`` is skipped when that bound, less ``eps`` of
    ``gaps[a, j] + d_a`` (the float64 roundings of both, far above them), squared and
    weighted, exceeds the k-th best value by a relative 1e-9: it could not enter the
    k best, and a centre tying with the k-th is never skipped (ties still go to the
    lowest index). On clustered pools most centres are skipped (72 % of 100 centres
    on the 100,000 x 64 Gaussian mixture of ``benchmarks/skactiveml_strategy.py``)."""
    for ii in prange(rows.shape[0]):
        i = rows[ii]
        bv = np.full(k, np.inf)
        bi = np.full(k, -1, dtype=np.int64)
        a, da = -1, 0.0
        for j in range(c.shape[0]):
            if a >= 0 and bi[k - 1] >= 0:
                g = gaps[a, j] - da * (1.0 + eps)
                if g > 0.0 and g * g * inv_w[j] * (1.0 - 1e-9) > bv[k - 1]:
                    continue
            s = sq64(q, i, c, j)
            if a < 0 or s < da * da:
                a, da = j, np.sqrt(s)
            _insert(bv, bi, s * inv_w[j], j)
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
