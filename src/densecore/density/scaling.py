"""From an estimated average radial distance to a coverage density.

The paper maps a reconstruction error ``e`` (its estimate of the average
radial distance) to a coverage density ``D = beta * exp(-e / tau)``
(the density below Eq. 7), with ``e`` min-max normalised to [0, 1] first
(Implementation Details), ``beta = e^2.4`` and ``tau = 0.25``.

Shape:
    ``error`` any shape ``(*)``; the result has the same shape and lies in
    ``[beta * exp(-1 / tau), beta]``.
"""

from __future__ import annotations

import math

import torch

from ..validation import as_tensor_like, check_positive_float

__all__ = ["BETA", "NORMALIZATIONS", "TAU", "coverage_density"]

#: how the error is mapped to [0, 1] before the density
NORMALIZATIONS = ("minmax", "rank")

BETA = math.e ** 2.4
TAU = 0.25


def _rank(e: torch.Tensor, dims) -> torch.Tensor:
    """Mid-rank of each value among the values over ``dims``, scaled to [0, 1]."""
    keep = [d for d in range(e.ndim) if d not in dims]
    perm = keep + list(dims)
    flat = e.permute(perm).reshape(*[e.shape[d] for d in keep], -1).contiguous()
    n = flat.shape[-1]
    srt = flat.sort(dim=-1).values
    lo = torch.searchsorted(srt, flat, right=False)
    hi = torch.searchsorted(srt, flat, right=True)
    r = (lo + hi - 1).to(e.dtype) / (2.0 * max(n - 1, 1))  # ties share their mean rank
    inv = [0] * e.ndim
    for i, d in enumerate(perm):
        inv[d] = i
    return r.reshape([e.shape[d] for d in perm]).permute(inv)


def coverage_density(error, *, beta: float = BETA, tau: float = TAU, dims=None,
                     normalize: str = "minmax", validate: bool = True):
    """``beta * exp(-e / tau)`` with ``e`` normalised to [0, 1] over ``dims``.

    Args:
        error: ``(*)`` non-negative estimate of average radial distance
            (numpy or tensor).
        beta: scale of the density (> 0).
        tau: temperature (> 0); smaller tau spreads densities further apart.
        dims: dimensions to normalise over (None: all). ``dims=(1, 2)`` on a
            ``(B, H, W)`` error normalises per image, as the DMC estimator does.
            Where the error is constant over ``dims`` the density is ``beta``
            (``"minmax"``; every value then has mid-rank 0.5 under ``"rank"``).
        normalize: ``"minmax"`` (the paper: ``(e - min) / (max - min)``) or
            ``"rank"`` (the mid-rank of ``e`` over ``dims`` divided by
            ``count - 1``: a quantile, which a few outliers cannot squeeze
            the typical errors against 0).
        validate: raise on NaN/inf in ``error`` (a device sync on CUDA);
            without it a NaN pixel would silently make its image's densities
            ``beta``.

    Returns:
        Densities of the same shape and kind (numpy in, numpy out).

    Raises:
        ValueError: naming ``error`` and the first non-finite or negative position
            (with ``validate``).

    Example:
        >>> import numpy as np
        >>> d = coverage_density(np.array([0.0, 0.5, 1.0]), beta=1.0, tau=0.5)
        >>> np.round(d, 4).tolist()
        [1.0, 0.3679, 0.1353]
        >>> e = np.array([0.0, 0.01, 0.02, 100.0])      # one outlier
        >>> np.round(coverage_density(e, beta=1.0, tau=1.0, normalize="rank"), 3).tolist()
        [1.0, 0.717, 0.513, 0.368]
    """
    beta = check_positive_float(beta, "beta")
    tau = check_positive_float(tau, "tau")
    is_numpy = not isinstance(error, torch.Tensor)
    e = as_tensor_like(error, "error")
    if not e.is_floating_point():
        e = e.double()
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}")
    if validate and e.numel() and not bool(torch.isfinite(e).all()):
        pos = tuple(int(v) for v in (~torch.isfinite(e)).nonzero()[0])
        raise ValueError(f"error must be finite; got {e[pos].item()} at index {pos}")
    if validate and e.numel() and not bool((e >= 0).all()):
        pos = tuple(int(v) for v in (e < 0).nonzero()[0])
        raise ValueError(f"error must be non-negative (an average radial distance); got "
                         f"{e[pos].item()} at index {pos}")
    if e.numel() == 0:  # nothing to normalise: an empty result of the same shape
        return _finish(torch.full_like(e, beta), is_numpy)
    if dims is None:
        dims = tuple(range(e.ndim))
    dims = tuple(d % e.ndim for d in dims) if e.ndim else ()
    if normalize == "rank" and e.ndim:
        return _finish(beta * torch.exp(-_rank(e, dims) / tau), is_numpy)
    lo = e.amin(dim=dims, keepdim=True) if e.ndim else e
    hi = e.amax(dim=dims, keepdim=True) if e.ndim else e
    span = hi - lo
    norm = torch.where(span > 0, (e - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(e))
    return _finish(beta * torch.exp(-norm / tau), is_numpy)


def _finish(d: torch.Tensor, is_numpy: bool):
    return d.numpy() if is_numpy else d
