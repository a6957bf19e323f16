"""RIPU's non-overlapping region rule for candidate filtering.

RIPU (Xie et al., CVPR 2022) labels ``region_size x region_size`` blocks and,
after taking a block's centre, blocks the ``(2 region_size - 1)``-wide window
around it (5x5 for 3x3 regions) so that no later centre can be chosen there:
two regions of one round never share a pixel. :func:`blocked_candidates`
applies the same rule to the candidate list: it walks the pixels in score
order and keeps a pixel only when no better kept pixel lies within
Chebyshev distance ``region_size - 1``. Any subset of the candidates is then
a set of pairwise disjoint regions, so a sampler choosing among them (the
greedy of Algorithm 1) keeps RIPU's budget accounting: a round labels exactly
``budget * region_size**2`` pixels, less only the parts of blocks clipped at
the image border or already labeled in an earlier round.

Shape:
    scores ``(B, H, W)`` float; exclude ``(B, H, W)`` bool; result ``(B, k)``
    int64 flat indices ``y * W + x``, best first, ``-1`` padded.
"""

from __future__ import annotations

import numpy as np
import torch

from . import validation as V
from .filters import top_candidates

__all__ = ["blocked_candidates"]


def blocked_candidates(scores, k: int, exclude=None, *, region_size: int = 3,
                       validate: bool = True):
    """The ``k`` best-scored pixels per image whose ``region_size`` blocks never overlap.

    Pixels are visited in the order of :func:`~densecore.filters.top_candidates`
    (score descending, ties to the lower flat index); a pixel is kept unless a
    kept pixel lies within Chebyshev distance ``region_size - 1`` of it
    (RIPU's blocked window, 5x5 for 3x3 regions). Excluded pixels are never
    kept and block nothing. ``region_size=1`` gives ``top_candidates``.

    Args:
        scores: ``(B, H, W)`` float scores, higher is better.
        k: candidates per image, ``>= 0``.
        exclude: ``(B, H, W)`` bool, pixels that must not be kept (already
            labeled), or None.
        region_size: odd side of the labeled block.
        validate: reject NaN scores.

    Returns:
        ``(B, k)`` int64 flat indices, best first, on the scores' device; rows
        with fewer than ``k`` such pixels end in ``-1``.

    Example:
        >>> import torch
        >>> s = torch.tensor([[[0.9, 0.8, 0.1, 0.0, 0.5]]])
        >>> blocked_candidates(s, 3, region_size=3).tolist()
        [[0, 4, -1]]
    """
    s = V.as_tensor_like(scores, "scores")
    if s.ndim != 3:
        raise ValueError(f"scores must have shape (B, H, W); got shape {tuple(s.shape)}")
    k = V.check_int(k, "k", minimum=0)
    region_size = V.check_region_size(region_size)
    b, h, w = s.shape
    if region_size == 1:
        return top_candidates(s, k, exclude, validate=validate)
    n = h * w
    # The scan of the best m pixels is a prefix of the scan of all of them, and each
    # kept pixel blocks at most (2 region_size - 1)**2 others, so ranking only the
    # best m (doubled until k are kept or all are ranked) gives the same answer as
    # ranking every pixel, at a fraction of the sort (2M pixels per Cityscapes image).
    from ._backends.regions_kernels import _scan  # numba loads on first use

    m = min(n, 2 * k)
    while True:
        order = top_candidates(s, m, exclude, validate=validate).cpu().numpy()
        out = np.stack([_scan(np.ascontiguousarray(order[i]), h, w, k, region_size - 1)
                        for i in range(b)]) if b else np.zeros((0, k), np.int64)
        short = (out < 0).any(axis=1) & (order >= 0).all(axis=1)  # ran out of ranked pixels
        if m == n or not short.any():
            return torch.from_numpy(out).to(s.device)
        m = min(n, 4 * m)
