"""Farthest-first engine and nearest-centre search in torch (CPU or CUDA).

The pick loop keeps the argmax on the device: no ``.item()``, no host
synchronisation per pick. Distances use the norm expansion
``||a||^2 - 2 a.b + ||b||^2`` (one matrix-vector product per pick, squared
norms precomputed), clamped at zero.

float16/bfloat16 features are kept in that dtype (half the bytes streamed
per pick); the matrix-vector product then runs in half precision (float32
accumulation on CUDA) while norms, ``r`` and the radii are float32. The
selection is exact only up to that rounding (a relative error of about 1e-3
in the dot products), so near-ties may resolve differently from float32.

Shape:
    features ``(N, D)``; densities ``(N,)``; centres ``(L, D)``; ``r`` ``(N,)``.
"""

from __future__ import annotations

import torch

# Elements of one (N x c) distance block in nearest-centre searches.
_BLOCK = 1 << 22


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """(N,) squared norms in the work dtype, computed in row blocks."""
    wd = work_dtype(x.dtype)
    out = torch.empty(x.shape[0], dtype=wd, device=x.device)
    step = max(1, _BLOCK // max(x.shape[1], 1))
    for s in range(0, x.shape[0], step):
        blk = x[s:s + step].to(wd)
        out[s:s + step] = (blk * blk).sum(1)
    return out


def nearest_centres(x: torch.Tensor, centres: torch.Tensor,
                    cdens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point, the centre minimising squared distance / centre density.

    Args:
        x: (N, D) features.
        centres: (L, D) centres, L >= 1, same dtype and device.
        cdens: (L,) centre densities, or None for plain squared distance.

    Returns:
        (assign (N,) int64, value (N,) in x's dtype): argmin over centres (lowest
        index on ties) and ``min_k ||x - c_k||^2 / d_k`` (squared Euclidean).
    """
    n, l = x.shape[0], centres.shape[0]
    wd = work_dtype(x.dtype)
    centres = centres.to(wd)
    if cdens is not None:
        cdens = cdens.to(wd)
    best = torch.full((n,), float("inf"), dtype=wd, device=x.device)
    arg = torch.zeros(n, dtype=torch.int64, device=x.device)
    xsq = sq_norms(x)
    csq = (centres * centres).sum(1)
    step_c = max(1, min(l, _BLOCK // max(n, 1)))
    step_n = max(1, min(n, _BLOCK // step_c))
    for c0 in range(0, l, step_c):
        c = centres[c0:c0 + step_c]
        for n0 in range(0, n, step_n):
            blk = torch.addmm(xsq[n0:n0 + step_n, None] + csq[None, c0:c0 + step_c],
                              x[n0:n0 + step_n].to(wd), c.T, alpha=-2.0).clamp_min_(0)
            if cdens is not None:
                blk = blk / cdens[None, c0:c0 + step_c]
            v, a = blk.min(1)
            better = v < best[n0:n0 + step_n]
            best[n0:n0 + step_n] = torch.where(better, v, best[n0:n0 + step_n])
            arg[n0:n0 + step_n] = torch.where(better, a + c0, arg[n0:n0 + step_n])
    return arg, best


def farthest_first(x: torch.Tensor, dens: torch.Tensor | None, centres: torch.Tensor,
                   cdens: torch.Tensor | None, excluded: torch.Tensor, budget: int,
                   first: int, progress_cb=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Algorithm 1 with one matrix-vector product per pick.

    Args:
        x: (N, D) float features (any device).
        dens: (N,) densities or None (k-center greedy).
        centres: (L, D) labeled features, possibly L = 0.
        cdens: (L,) their densities or None.
        excluded: (N,) bool, in-pool labeled points.
        budget: number of picks.
        first: forced first pick or -1.
        progress_cb: called with 1 after each pick (host side only).

    Returns:
        (indices (budget,) int64, radii (budget,) float32, or float64 for float64
        features) on x's device.
    """
    n = x.shape[0]
    dev = x.device
    wd = work_dtype(x.dtype)
    idx = torch.empty(budget, dtype=torch.int64, device=dev)
    radii = torch.empty(budget, dtype=wd, device=dev)
    if budget == 0:
        return idx, radii
    if dens is not None:
        dens = dens.to(wd)
    if centres.shape[0]:
        _, r = nearest_centres(x, centres, cdens)
    else:
        r = torch.full((n,), float("inf"), dtype=wd, device=dev)
    r = torch.where(excluded, torch.full_like(r, -1.0), r)
    sq = sq_norms(x)
    neg = torch.full((1,), -1.0, dtype=wd, device=dev)
    for i in range(budget):
        if i == 0 and first >= 0:
            u = torch.tensor(first, dtype=torch.int64, device=dev)
        else:
            u = torch.argmax(r)  # first maximum: ties go to the lowest index
        u1 = u.view(1)
        idx[i] = u
        radii[i] = r.index_select(0, u1)[0]
        r.scatter_(0, u1, neg)
        fu = x.index_select(0, u1)  # (1, D), in the storage dtype
        dot = torch.mv(x, fu[0])
        dist = (sq + sq.index_select(0, u1)).sub_(dot.to(wd), alpha=2.0).clamp_min_(0)
        if dens is not None:
            dist = dist / dens.index_select(0, u1)
        torch.minimum(r, dist, out=r)
        if progress_cb is not None:
            progress_cb(1)
    return idx, radii
