"""A low-dimensional sketch of the features that proves most distances too large.

The greedy's distance pass reads every live point per pick, yet very few
points get closer to the new centre than to their old one (a handful of the
184,540 candidates of one Cityscapes image per pick). The sketch rules the
others out from ``m`` numbers instead of ``D``:

* ``y_t = P^T (x_t - mu)``: the coordinates of ``x_t`` on the top ``m``
  principal directions ``P`` (orthonormal, ``(D, m)``, from an SVD of a sample
  of rows), stored in float32;
* ``rho_t = ||(x_t - mu) - P y_t||``: the length of the rest.

For any two points ``||x_t - x_u||^2 = ||P^T(x_t - x_u)||^2 + ||rest_t - rest_u||^2
>= ||y_t - y_u||^2 + (rho_t - rho_u)^2``, since ``P`` is orthonormal and
``||a - b|| >= | ||a|| - ||b|| |``. ``err_t`` bounds the rounding of ``y_t``
(float32 storage, float64 arithmetic) and of ``rho_t``, so that with both
components shrunk by ``err_t + err_u`` the bound holds for the computed
numbers; the engine adds a relative slack for its own float32 distances. A
point is skipped only when this lower bound is above its current ``r``, so
the selection is the one without the sketch, exactly.

Shape:
    features ``(N, D)`` -> ``y (N, m)`` float32, ``rho (N,)`` and ``err (N,)`` float64.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Sketch", "build_sketch", "SKETCH_DIM"]

SKETCH_DIM = 16
# Rows of the sample whose SVD gives the principal directions.
_SAMPLE = 8192
_CHUNK = 1 << 15


class Sketch:
    """The sketch of a pool (module docstring) and the map for other points.

    Attributes:
        y: ``(N, m)`` float32 sketch coordinates.
        rho: ``(N,)`` float64 length of the rest.
        err: ``(N,)`` float64 bound on the rounding of ``y`` and ``rho``.
    """

    def __init__(self, mean, basis, y, rho, err):
        self.mean, self.basis = mean, basis
        self.y, self.rho, self.err = y, rho, err

    def of(self, v: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``(y (m,) float32, rho, err)`` of one vector ``v`` ``(D,)`` (a centre held elsewhere)."""
        y, rho, err = _project(np.asarray(v, dtype=np.float64)[None], self.mean, self.basis)
        return y[0], float(rho[0]), float(err[0])


def _project(xc_raw: np.ndarray, mean: np.ndarray, basis: np.ndarray):
    """Sketch of rows ``(n, D)``: ``(y float32 (n, m), rho (n,), err (n,))``."""
    xc = xc_raw.astype(np.float64) - mean
    y64 = xc @ basis
    y = y64.astype(np.float32)
    rest = xc - y64 @ basis.T
    rho = np.sqrt(np.einsum("ij,ij->i", rest, rest))
    norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    d, m = basis.shape
    # float32 storage of y, plus a generous bound on the float64 rounding of the
    # products and sums above (each a few (D + m) ulps of ||x - mu||)
    err = (np.sqrt(((y.astype(np.float64) - y64) ** 2).sum(1))
           + 16.0 * (d + m) * np.finfo(np.float64).eps * norm)
    return y, rho, err


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
    y = np.empty((n, m), dtype=np.float32)
    rho = np.empty(n)
    err = np.empty(n)
    for s in range(0, n, _CHUNK):
        y[s:s + _CHUNK], rho[s:s + _CHUNK], err[s:s + _CHUNK] = _project(x[s:s + _CHUNK],
                                                                         mean, basis)
    return Sketch(mean, basis, y, rho, err)
