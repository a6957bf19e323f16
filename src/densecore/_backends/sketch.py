"""A low-dimensional sketch of the features that proves most distances too large.

The greedy's distance pass reads every live point per pick, yet very few
points get closer to the new centre than to their old one (a handful of the
184,540 candidates of one Cityscapes image per pick). The sketch rules the
others out from one 64-byte row instead of the ``D`` features:

* ``y_t = P^T (x_t - mu)``: the coordinates of ``x_t`` on the top ``m = 15``
  principal directions ``P`` (orthonormal, ``(D, m)``, from an SVD of a sample
  of rows);
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

__all__ = ["Sketch", "build_sketch", "SKETCH_DIM"]

SKETCH_DIM = 15  # plus rho: one 64-byte float32 row per point
# Rows of the sample whose SVD gives the principal directions.
_SAMPLE = 8192
_CHUNK = 1 << 15


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


def _project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray):
    """Sketch rows of ``x`` ``(n, D)``: ``(rows float32 (n, m + 1), err (n,))``."""
    xc = x.astype(np.float64) - mean
    y64 = xc @ basis
    rest = xc - y64 @ basis.T
    rho = np.sqrt(np.einsum("ij,ij->i", rest, rest))
    norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    d, m = basis.shape
    rows = np.empty((x.shape[0], m + 1), dtype=np.float32)
    rows[:, :m] = y64
    rows[:, m] = rho
    stored = rows.astype(np.float64)
    # float32 storage of y and rho, plus a generous bound on the float64 rounding
    # of the products and sums above (a few (D + m) ulps of ||x - mu||)
    err = (np.sqrt(((stored[:, :m] - y64) ** 2).sum(1)) + np.abs(stored[:, m] - rho)
           + 16.0 * (d + m) * np.finfo(np.float64).eps * norm)
    return rows, err


def build_sketch(x: np.ndarray, m: int = SKETCH_DIM) -> Sketch:
    """The sketch of ``x`` ``(N, D)`` float32/float64 with ``m < D`` directions.

    The directions come from the SVD of up to 8,192 evenly spaced rows, centred
    on the float64 mean; any orthonormal ``P`` keeps the bound valid, a good one
    only makes it tighter.
    """
    n, d = x.shape
    mean = x.mean(0, dtype=np.float64)
    step = max(1, n // _SAMPLE)
    sample = x[::step].astype(np.float64) - mean
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    basis = np.ascontiguousarray(vt[:m].T)  # (D, m), orthonormal columns
    if basis.shape[1] < m:  # fewer sample rows than m: complete with zeros (still a bound)
        basis = np.concatenate([basis, np.zeros((d, m - basis.shape[1]))], 1)
    # 64-byte aligned rows (m + 1 = 16 float32 fill one cache line)
    raw = np.empty(n * (m + 1) + 16, dtype=np.float32)
    off = (-raw.ctypes.data // 4) % 16
    rows = raw[off:off + n * (m + 1)].reshape(n, m + 1)
    err = 0.0
    for s in range(0, n, _CHUNK):
        rows[s:s + _CHUNK], e = _project(x[s:s + _CHUNK], mean, basis)
        err = max(err, float(e.max(initial=0.0)))
    return Sketch(mean, basis, rows, err)
