"""The pick radii's last step: each pick's ``r`` lowered by the picks made before it.

``out[i] = min(r[i], min_{j < i} ||p_i - p_j||^2 / pd_j)``: squared Euclidean
distances from coordinate differences in float64, divided by the earlier pick's
density. Two twins, the same values: numba on host tensors (one parallel pass over
the pairs, :mod:`densecore._backends.radii_kernels`) and torch in blocks of rows on
any device. Which one runs is the one size/device rule
(:func:`densecore._rules.kernel`, ``"radii"``).

Shape:
    ``p`` ``(B, D)`` float64, ``pd`` ``(B,)`` float64 > 0, ``r`` ``(B,)`` float64;
    result ``(B,)`` float64 (a new tensor; the inputs are not modified).
"""

from __future__ import annotations

import torch

__all__ = ["prefix_min", "prefix_min_numba", "prefix_min_torch"]

_BLOCK = 1 << 22  # elements of one temporary block of the torch twin


def prefix_min_numba(p: torch.Tensor, pd: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """:func:`prefix_min` by the numba kernel (CPU tensors)."""
    from .radii_kernels import prefix_min as kernel  # numba loads on first use

    out = r.numpy().copy()
    kernel(p.contiguous().numpy(), (1.0 / pd).numpy(), out)
    return torch.from_numpy(out)


def prefix_min_torch(p: torch.Tensor, pd: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """:func:`prefix_min` in torch blocks of rows (any device), float64 differences."""
    r = r.clone()
    n = p.shape[0]
    rows = max(1, _BLOCK // max(1, n * p.shape[1]))
    for s in range(1, n, rows):
        blk = p[s:s + rows]
        q = ((blk[:, None, :] - p[None, :s + rows, :]) ** 2).sum(2) / pd[None, :s + rows]
        earlier = torch.arange(s, s + blk.shape[0], device=p.device)[:, None] > \
            torch.arange(q.shape[1], device=p.device)[None, :]
        q = torch.where(earlier, q, torch.full_like(q, float("inf")))
        r[s:s + blk.shape[0]] = torch.minimum(r[s:s + blk.shape[0]], q.min(1).values)
    return r


def prefix_min(p: torch.Tensor, pd: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Each ``r[i]`` lowered by the picks before ``i`` (see the module), by the kernel
    the one rule chooses for ``p``'s device.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.0], [3.0], [1.0]], dtype=torch.float64)
        >>> r = torch.full((3,), float("inf"), dtype=torch.float64)
        >>> prefix_min(p, torch.ones(3, dtype=torch.float64), r).tolist()
        [inf, 9.0, 1.0]
    """
    from .. import _rules as R

    twin = prefix_min_numba if R.kernel("radii", p.device) == "host" else prefix_min_torch
    return twin(p, pd, r)
