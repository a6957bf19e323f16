"""A low-dimensional sketch of the features that proves most distances too large.

The greedy's distance pass reads every live point per pick, yet very few
points get closer to the new centre than to their old one (a handful of the
184,540 candidates of one Cityscapes image per pick). The sketch rules the
others out from one 64-byte row instead of the ``D`` features:

* ``y_t = P^T (x_t - mu)``: the coordinates of ``x_t`` on the top ``m = 15``
  principal directions ``P`` (orthonormal, ``(D, m)``, from the scatter of a
  sample of rows);
* ``rho_t = ||(x_t - mu) - P y_t||``: the length of the rest.

For any two points ``||x_t - x_u||^2 = ||P^T(x_t - x_u)||^2 + ||rest_t - rest_u||^2
>= ||y_t - y_u||^2 + (rho_t - rho_u)^2``, since ``P`` is orthonormal and
``||a - b|| >= | ||a|| - ||b|| |``. Both are stored in float32, one row
``[y_t, rho_t]`` per point; ``err`` bounds, for every point at once, the
rounding of the stored numbers (float32 storage, float64 arithmetic), so that
with both components shrunk by ``2 err`` the bound holds for the stored
numbers; the engine adds a relative slack for its own float32 distances. A
point is skipped only when this lower bound is above its current ``r``, so
the selection is the one without the sketch, exactly.

Shape:
    features ``(N, D)`` -> ``rows (N, m + 1)`` float32; ``err`` a float.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["Sketch", "build_sketch", "SKETCH_DIM"]

SKETCH_DIM = 15  # plus rho: one 64-byte float32 row per point
# Rows of the sample whose scatter gives the principal directions.
_SAMPLE = 8192


class Sketch:
    """The sketch of a pool (module docstring) and the map for other points.

    Attributes:
        rows: ``(N, m + 1)`` float32, ``[y_t, rho_t]`` per point.
        err: float, bound on the rounding of every point's ``y`` and ``rho``.
    """

    def __init__(self, mean, basis, rows, err):
        self.mean, self.basis = mean, basis
        self.rows, self.err = rows, err

    def of(self, v: np.ndarray) -> tuple[np.ndarray, float]:
        """``(row (m + 1,) float32, err)`` of one vector ``v`` ``(D,)`` (a centre held elsewhere)."""
        rows, err = _project(np.asarray(v, dtype=np.float64)[None], self.mean, self.basis)
        return rows[0], float(err.max())


# summation order may change (vectorised); the error term of err allows for any order
@njit(cache=True, parallel=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True)
def _project_rows(x, mean, basis, rows, err):
    """Fill ``rows`` (n, m + 1) and ``err`` (n,) for ``x`` (n, D); see :func:`_project`."""
    n, d = x.shape
    m = basis.shape[1]
    eps = np.finfo(np.float64).eps
    for i in prange(n):
        xc = np.empty(d)
        norm2 = 0.0
        for c in range(d):
            xc[c] = np.float64(x[i, c]) - mean[c]
            norm2 += xc[c] * xc[c]
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
        rho = np.sqrt(rest2)
        e2 = 0.0
        for j in range(m):
            rows[i, j] = np.float32(y[j])
            q = np.float64(rows[i, j]) - y[j]
            e2 += q * q
        rows[i, m] = np.float32(rho)
        # float32 storage of y and rho, plus a generous bound on the float64 rounding
        # of the sums above (a few (D + m) ulps of ||x - mu||)
        err[i] = (np.sqrt(e2) + abs(np.float64(rows[i, m]) - rho)
                  + 16.0 * (d + m) * eps * np.sqrt(norm2))


def _project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray):
    """Sketch rows of ``x`` ``(n, D)``: ``(rows float32 (n, m + 1), err (n,))``."""
    rows = np.empty((x.shape[0], basis.shape[1] + 1), dtype=np.float32)
    err = np.empty(x.shape[0])
    _project_rows(np.ascontiguousarray(x), mean, np.ascontiguousarray(basis), rows, err)
    return rows, err


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


def build_sketch(x: np.ndarray, m: int = SKETCH_DIM) -> Sketch:
    """The sketch of ``x`` ``(N, D)`` float32/float64 with ``m < D`` directions.

    The directions are the top eigenvectors of the scatter of up to 8,192
    evenly spaced rows around the float64 mean; any orthonormal ``P`` keeps the
    bound valid, a good one only makes it tighter. numba kernels, no BLAS
    threads (which stall on a busy machine).
    """
    n, d = x.shape
    x = np.ascontiguousarray(x)
    mean = x.mean(0, dtype=np.float64)
    w, v = np.linalg.eigh(_covariance(x, mean, max(1, n // _SAMPLE)))
    basis = np.ascontiguousarray(v[:, ::-1][:, :m])  # (D, m), orthonormal columns
    # 64-byte aligned rows (m + 1 = 16 float32 fill one cache line)
    raw = np.empty(n * (m + 1) + 16, dtype=np.float32)
    off = (-raw.ctypes.data // 4) % 16
    rows = raw[off:off + n * (m + 1)].reshape(n, m + 1)
    err = np.empty(n)
    _project_rows(x, mean, basis, rows, err)
    return Sketch(mean, basis, rows, float(err.max(initial=0.0)))
