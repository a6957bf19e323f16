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

__all__ = ["BETA", "TAU", "coverage_density"]

BETA = math.e ** 2.4
TAU = 0.25


def coverage_density(error, *, beta: float = BETA, tau: float = TAU, dims=None,
                     validate: bool = True):
    """``beta * exp(-e / tau)`` with ``e`` min-max normalised over ``dims``.

    Args:
        error: ``(*)`` non-negative estimate of average radial distance
            (numpy or tensor).
        beta: scale of the density (> 0).
        tau: temperature (> 0); smaller tau spreads densities further apart.
        dims: dimensions to normalise over (None: all). ``dims=(1, 2)`` on a
            ``(B, H, W)`` error normalises per image, as the DMC estimator does.
            Where the error is constant over ``dims`` the density is ``beta``.
        validate: raise ValueError on NaN/inf errors (a device sync on CUDA);
            without the check a NaN would silently read as the constant case.

    Returns:
        Densities of the same shape and kind (numpy in, numpy out).

    Example:
        >>> import numpy as np
        >>> d = coverage_density(np.array([0.0, 0.5, 1.0]), beta=1.0, tau=0.5)
        >>> np.round(d, 4).tolist()
        [1.0, 0.3679, 0.1353]
    """
    beta = check_positive_float(beta, "beta")
    tau = check_positive_float(tau, "tau")
    is_numpy = not isinstance(error, torch.Tensor)
    e = as_tensor_like(error, "error")
    if not e.is_floating_point():
        e = e.double()
    if validate and e.numel():
        bad = ~torch.isfinite(e)
        if bool(bad.any()):
            i = int(bad.reshape(-1).nonzero()[0, 0])
            raise ValueError(f"error must be finite; got {float(e.reshape(-1)[i])} at flat "
                             f"index {i}")
    if dims is None:
        dims = tuple(range(e.ndim))
    lo = e.amin(dim=dims, keepdim=True) if e.ndim else e
    hi = e.amax(dim=dims, keepdim=True) if e.ndim else e
    span = hi - lo
    norm = torch.where(span > 0, (e - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(e))
    d = beta * torch.exp(-norm / tau)
    return d.numpy() if is_numpy else d
