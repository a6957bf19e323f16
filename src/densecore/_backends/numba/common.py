"""What every numba engine mode shares: the distance kernels, the rounding constants
and the named fields of the engine's state record.

Shape:
    ``x`` ``(N, D)`` float32/float64 C-contiguous; a centre ``(D,)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# The engine's state: one int64 record shared by every mode, its fields named here
# (numba reads module-level integers as compile-time constants).
PICKS = 0  # picks made (add_centre calls included)
CENTRES = 1  # rows filled in the centre tables (labeled set, then picks)
AREAS = 2  # coverage areas in use (pruned mode)
TAIL = 3  # end of the used arena (pruned mode)
READS = 4  # feature rows read by pruned picks so far (the hand-over's measure)
FIELDS = 5


def new_state() -> np.ndarray:
    """A zeroed state record, ``(FIELDS,)`` int64."""
    return np.zeros(FIELDS, dtype=np.int64)


# Re-association lets LLVM vectorise the reduction; no-NaN/no-inf flags are
# deliberately left out because r starts at +inf.
FAST = {"reassoc", "contract", "nsz", "arcp"}

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


@njit(cache=True, fastmath=FAST)
def sqdist(x, i, y, j):
    """Squared Euclidean distance of rows ``x[i]`` and ``y[j]`` in ``x``'s dtype."""
    acc = x.dtype.type(0.0)
    for c in range(x.shape[1]):
        t = x[i, c] - y[j, c]
        acc += t * t
    return acc


@njit(cache=True, fastmath=FAST)
def sqdist_to(x, i, v):
    """Squared Euclidean distance of row ``x[i]`` and ``v`` ``(D,)`` in ``x``'s dtype."""
    acc = x.dtype.type(0.0)
    for c in range(x.shape[1]):
        t = x[i, c] - v[c]
        acc += t * t
    return acc


@njit(cache=True)
def argmax_first(r):
    """``(largest r, its lowest index)``; ``(-1.0, -1)`` when every r is negative."""
    best = -1.0
    arg = -1
    for t in range(r.shape[0]):
        if r[t] > best:
            best = r[t]
            arg = t
    return best, arg
