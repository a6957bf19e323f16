"""A low-dimensional view of the features: where the points are, in 16 numbers each.

The dense pass groups nearby points (:mod:`.groups`); the assignment to groups
is made in this view, a few passes over ``N x 16`` numbers instead of ``N x D``:

* ``y_t = P^T (x_t - mu)``: the coordinates of ``x_t`` on the top ``m = 15``
  principal directions ``P`` (orthonormal, ``(D, m)``, from the scatter of a
  sample of rows);
* ``rho_t = ||(x_t - mu) - P y_t||``: the length of the rest.

Stored in float32, one 64-byte row ``[y_t, rho_t]`` per point. Nothing exact rests on
the view: it only decides which points share a group.

Shape:
    features ``(N, D)`` -> rows ``(N, m + 1)`` float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["build_sketch", "SKETCH_DIM"]

SKETCH_DIM = 15  # plus rho: one 64-byte float32 row per point
# Rows of the sample whose scatter gives the principal directions.
_SAMPLE = 8192


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True)
def _project_rows(x, mean, basis, rows):
    """Fill ``rows`` (n, m + 1) with ``[y_t, rho_t]`` for ``x`` (n, D)."""
    n, d = x.shape
    m = basis.shape[1]
    for i in prange(n):
        xc = np.empty(d)
        for c in range(d):
            xc[c] = np.float64(x[i, c]) - mean[c]
        y = np.zeros(m)
        for c in range(d):
            v = xc[c]
            for j in range(m):
                y[j] += v * basis[c, j]
        rest2 = 0.0
        for c in range(d):
            v = xc[c]
            for j in range(m):
                v -= y[j] * basis[c, j]
            rest2 += v * v
        # clipped into float32's range (float64 features may lie far outside it)
        for j in range(m):
            rows[i, j] = np.float32(min(1e38, max(-1e38, y[j])))
        rows[i, m] = np.float32(min(1e38, np.sqrt(rest2)))


@njit(cache=True)
def _covariance(x, mean, step):
    """``(D, D)`` float64 scatter of the rows ``x[::step]`` around ``mean``."""
    d = x.shape[1]
    out = np.zeros((d, d))
    xc = np.empty(d)
    for i in range(0, x.shape[0], step):
        for c in range(d):
            xc[c] = np.float64(x[i, c]) - mean[c]
        for a in range(d):
            va = xc[a]
            for b in range(a, d):
                out[a, b] += va * xc[b]
    for a in range(d):
        for b in range(a):
            out[a, b] = out[b, a]
    return out


def build_sketch(x: np.ndarray, m: int = SKETCH_DIM) -> np.ndarray:
    """The view ``(N, m + 1)`` float32 of ``x`` ``(N, D)`` float32/float64, ``m < D``.

    The directions are the top eigenvectors of the scatter of up to 8,192
    evenly spaced rows around the float64 mean. numba kernels, no BLAS threads
    (which stall on a busy machine).
    """
    n, d = x.shape
    x = np.ascontiguousarray(x)
    mean = x.mean(0, dtype=np.float64)
    w, v = np.linalg.eigh(_covariance(x, mean, max(1, n // _SAMPLE)))
    basis = np.ascontiguousarray(v[:, ::-1][:, :m])  # (D, m), orthonormal columns
    rows = np.empty((n, m + 1), dtype=np.float32)
    _project_rows(x, mean, basis, rows)
    return rows
