"""Kernels of the plain mode: one serial pass per pick (small pools).

The pass lowers every r and finds the next argmax at once; no areas, no threads.
Its r values and tie-breaking are those of the pruned mode, so the picks are too.

Shape:
    ``x`` ``(N, D)``; ``r`` ``(N,)`` float64 (-1 for labeled or picked points).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .common import FAST, sqdist_to


@njit(cache=True, nogil=True, fastmath=FAST)
def plain_update(x, r, cu, du):
    """Lower ``r`` (N,) (-1 for labeled or picked points) with centre ``cu`` (D,) of
    density ``du`` in one pass over every point, finding the next argmax in the same
    pass; returns ``(largest r, its lowest index)``, ``(-1.0, -1)`` when none is left."""
    best_r = -1.0
    best_u = -1
    for t in range(x.shape[0]):
        rt = r[t]
        if rt > 0.0:
            v = sqdist_to(x, t, cu) / du
            if v < rt:
                rt = v
                r[t] = v
        if rt > best_r:
            best_r = rt
            best_u = t
    return best_r, best_u


@njit(cache=True, nogil=True)
def plain_picks(x, dens, r, best_u, i, k, out_idx, out_r):
    """Picks ``i .. i + k - 1`` of Algorithm 1 by the plain loop (:func:`plain_update`
    per pick), starting from the current argmax ``best_u``. Returns ``(largest r, its
    lowest index)`` after the picks."""
    cu = np.empty(x.shape[1], dtype=x.dtype)
    best_r = -1.0
    for j in range(i, i + k):
        u = best_u
        out_idx[j] = u
        out_r[j] = r[u]
        r[u] = -1.0
        for c in range(x.shape[1]):
            cu[c] = x[u, c]
        best_r, best_u = plain_update(x, r, cu, dens[u])
    return best_r, best_u
