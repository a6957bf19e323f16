"""numba kernel of :func:`densecore.blocked_candidates`; a module of its own so that
``import densecore`` does not load numba."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _scan(order, h, w, k, reach):  # pragma: no cover - compiled
    """Keep pixels of ``order`` (flat, best first) that are not within ``reach`` of a kept one."""
    blocked = np.zeros((h, w), dtype=np.bool_)
    out = np.full(k, -1, dtype=np.int64)
    n = 0
    for p in order:
        if n == k:
            break
        if p < 0:
            break
        y = p // w
        x = p - y * w
        if blocked[y, x]:
            continue
        out[n] = p
        n += 1
        for yy in range(max(0, y - reach), min(h, y + reach + 1)):
            for xx in range(max(0, x - reach), min(w, x + reach + 1)):
                blocked[yy, xx] = True
    return out
