"""The distances densecore can select and measure with.

* ``"euclidean"`` (default): Algorithm 1 ranks by the squared Euclidean
  distance ``||a - b||^2`` divided by density; the bounds (Eq. 3, 4) use the
  plain Euclidean distance ``||a - b||``.
* ``"cosine"``: the cosine distance ``1 - cos(a, b) = 1 - a.b / (|a| |b|)``,
  in ``[0, 2]``, the convention of scikit-learn and scipy. Algorithm 1 then
  ranks by ``(1 - cos) / d`` and the bounds average ``1 - cos`` itself.

Cosine is computed as Euclidean geometry on unit rows: for ``a^ = a / |a|``,
``1 - cos(a, b) = ||a^ - b^||^2 / 2``. The features are normalised once (one
copy, in float64 row blocks so no scale overflows), every engine then runs
unchanged on the unit rows, and the distances are mapped back with
:func:`from_squared_euclidean`. Because the map is monotone, nearest centres
and argmax decisions are those of the cosine distance itself; computing
``||a^ - b^||^2`` from differences also keeps near-parallel rows exact where
``1 - a.b`` would cancel.

A zero row has no direction, so the cosine distance is undefined for it: it
raises ``ValueError`` naming the row.

Shape:
    features ``(N, D)`` -> unit rows ``(N, D)`` in the same dtype and device.
"""

from __future__ import annotations

import torch

from ._core import METRICS, check_metric

__all__ = ["METRICS", "check_metric", "from_squared_euclidean", "radius_factor", "unit_rows"]

_ROWS = 1 << 16


def radius_factor(metric: str) -> float:
    """What Algorithm 1's radii on unit rows are multiplied by to be in ``metric``'s units.

    ``1.0`` for Euclidean (squared distance), ``0.5`` for cosine
    (``1 - cos = ||a^ - b^||^2 / 2``).
    """
    return 0.5 if check_metric(metric) == "cosine" else 1.0


def from_squared_euclidean(sq, metric: str):
    """Map squared Euclidean distances of prepared features to ``metric``'s plain distance.

    Args:
        sq: squared Euclidean distances (any shape, tensor or numpy).
        metric: ``"euclidean"`` gives ``sqrt(sq)``; ``"cosine"`` gives ``sq / 2``.
    """
    if check_metric(metric) == "cosine":
        return sq * 0.5
    return sq ** 0.5


def unit_rows(x: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Every row divided by its Euclidean norm: one copy, in ``x``'s dtype and device.

    Args:
        x: ``(N, D)`` floating tensor with finite values.
        name: argument name for messages.

    Returns:
        ``(N, D)`` rows of unit length (float64 arithmetic per row block, so
        rows of norm ``1e-30`` or ``1e30`` normalise exactly as well as any).

    Raises:
        ValueError: a row is all zeros (the cosine distance is undefined).

    Example:
        >>> import torch
        >>> unit_rows(torch.tensor([[3.0, 4.0], [0.0, 1e-30]])).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 1.0]]
    """
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for s in range(0, x.shape[0], _ROWS):
        blk = x[s:s + _ROWS].detach().double()
        # divide by the largest magnitude first: squares of 1e200 or 1e-200 would
        # overflow or underflow even in float64
        peak = blk.abs().amax(dim=1, keepdim=True)
        zero = (peak == 0).squeeze(1)
        if bool(zero.any()):
            row = s + int(zero.nonzero()[0, 0])
            raise ValueError(f"{name} row {row} is all zeros; the cosine distance is "
                             "undefined for a zero vector")
        blk = blk / peak
        out[s:s + _ROWS] = (blk / blk.norm(dim=1, keepdim=True)).to(x.dtype)
    return out

