"""RIPU's non-overlapping region rule: candidate filtering and RIPU's own selection.

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

:func:`ripu_select` is RIPU's whole selection on the same scan: pick the best
pixel, label its region (or the pixel), suppress its neighbourhood, repeat up
to the budget, exact against that loop but with a few host syncs per call
instead of two per pick.

Shape:
    scores ``(B, H, W)`` float; exclude ``(B, H, W)`` bool; result ``(B, k)``
    int64 flat indices ``y * W + x``, best first, ``-1`` padded;
    ``ripu_select`` returns a ``(B, H, W)`` bool mask.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import validation as V
from .filters import top_candidates

__all__ = ["blocked_candidates", "ripu_select"]


def blocked_candidates(scores, k: int, exclude=None, *, region_size: int = 3,
                       reach: int | None = None, validate: bool = True):
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
        reach: the Chebyshev distance within which a kept pixel blocks others,
            when it is not ``region_size - 1`` (RIPU's pixel setting suppresses
            within its ``RADIUS_K`` around single pixels), ``>= 0``.
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
    reach = region_size - 1 if reach is None else V.check_int(reach, "reach", minimum=0)
    return _blocked(s, k, exclude, reach, validate)


def _blocked(s: torch.Tensor, k: int, exclude, reach: int, validate: bool) -> torch.Tensor:
    """The greedy scan behind :func:`blocked_candidates` and :func:`ripu_select`:
    ``(B, k)`` int64, best first, keeping a pixel unless a kept one lies within
    Chebyshev distance ``reach``; ``-1`` padded."""
    b, h, w = s.shape
    if reach == 0:
        return top_candidates(s, k, exclude, validate=validate)
    n = h * w
    # The scan of the best m pixels is a prefix of the scan of all of them, and each
    # kept pixel blocks at most (2 reach + 1)**2 others, so ranking only the best m
    # (doubled until k are kept or all are ranked) gives the same answer as ranking
    # every pixel, at a fraction of the sort (2M pixels per Cityscapes image). One
    # host transfer per ranking, none per pick.
    from ._backends.regions_kernels import _scan  # numba loads on first use

    m = min(n, 2 * k)
    while True:
        order = top_candidates(s, m, exclude, validate=validate).cpu().numpy()
        out = np.stack([_scan(np.ascontiguousarray(order[i]), h, w, k, reach)
                        for i in range(b)]) if b else np.zeros((0, k), np.int64)
        short = (out < 0).any(axis=1) & (order >= 0).all(axis=1)  # ran out of ranked pixels
        if m == n or not short.any():
            return torch.from_numpy(out).to(s.device)
        m = min(n, 4 * m)


def ripu_select(scores, budget: int, *, mode: str = "region", k: int = 1, labeled=None,
                ignore=None, validate: bool = True, return_centres: bool = False):
    """RIPU's selection: take the best pixel, label it (or its region), suppress, repeat.

    Per image and per pick (Xie et al., CVPR 2022; public code ``RegionSelection``
    and ``PixelSelection``): the highest-scoring pixel that is not suppressed is
    a centre; ``mode="region"`` labels the ``(2k+1) x (2k+1)`` block around it
    (clipped at the border) and suppresses centres within Chebyshev distance
    ``2k`` (so that no two blocks share a pixel), ``mode="pixel"`` labels the
    pixel alone and suppresses within ``k``. RIPU runs this as a Python loop with
    two full-image maxima and two host syncs per pick; here the pixels are
    ranked once on the device (:func:`~densecore.filters.top_candidates`) and a
    compiled greedy scan in score order keeps the same centres, with a host
    transfer per ranking (a few per call), none per pick.

    Budget: ``budget`` counts regions in region mode (RIPU's
    ``ceil(H * W * ratio / rounds / (2k+1)**2)``:
    :func:`~densecore.budgets.region_budget` with ``region_size=2k+1``) and
    pixels in pixel mode (:func:`~densecore.budgets.pixel_budget`).

    Follows RIPU's code: the order of picks (ties in float32 go to the lowest
    flat index ``y * W + x``; RIPU's two maxima take the lowest column, then
    row, on the CPU and any on CUDA), the suppression radii, and the rounds:
    a centre is never within ``k`` of a ``labeled`` pixel, which is RIPU's
    ``active`` map of earlier rounds when ``labeled`` holds the pixels its
    earlier rounds selected. Differs: ``ignore`` pixels (RIPU has no such map)
    are never centres and are left out of the returned blocks, and an image
    with fewer possible centres than ``budget`` raises, where RIPU would keep
    picking suppressed pixels.

    Args:
        scores: ``(B, H, W)`` float scores, higher is better
            (:func:`~densecore.filters.ripu_score` for RIPU).
        budget: centres per image, ``>= 0`` (regions or pixels).
        mode: ``"region"`` or ``"pixel"``.
        k: RIPU's radius ``RADIUS_K``, ``>= 0`` (1: 3 x 3 regions).
        labeled: ``(B, H, W)`` bool, pixels labeled in earlier rounds, or None.
        ignore: ``(B, H, W)`` bool, pixels never to be labeled, or None.
        validate: reject NaN scores (a device sync on CUDA).
        return_centres: also return the ``(B, budget)`` int64 flat centres, in
            the order picked.

    Returns:
        ``(B, H, W)`` bool mask of the newly labeled pixels on the scores'
        device (numpy for numpy scores); with ``return_centres`` a pair
        ``(mask, centres)``.

    Raises:
        ValueError: naming ``budget`` when an image has fewer than ``budget``
            possible centres.

    Example:
        >>> import torch
        >>> s = torch.tensor([[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]]])
        >>> mask, centres = ripu_select(s, 2, k=1, return_centres=True)
        >>> centres.tolist(), mask.int().tolist()
        ([[6, 3]], [[[0, 0, 1, 1, 1, 1, 1]]])
        >>> ripu_select(s, 4, mode="pixel", k=1).int().tolist()
        [[[1, 0, 1, 0, 1, 0, 1]]]
    """
    is_numpy = not isinstance(scores, torch.Tensor)
    s = V.as_tensor_like(scores, "scores")
    if s.ndim != 3:
        raise ValueError(f"scores must have shape (B, H, W); got shape {tuple(s.shape)}")
    if not s.is_floating_point():
        raise TypeError(f"scores must be a floating array; got dtype {s.dtype}")
    budget = V.check_int(budget, "budget", minimum=0)
    mode = V.check_choice(mode, ("region", "pixel"), "mode")
    k = V.check_int(k, "k", minimum=0)
    b, h, w = s.shape
    lab = None if labeled is None else V.check_bool_map(labeled, (b, h, w), s, "labeled")
    ign = None if ignore is None else V.check_bool_map(ignore, (b, h, w), s, "ignore")
    near = None if lab is None else _dilate(lab, k)  # RIPU's `active` of earlier rounds
    exclude = near if ign is None else (ign if near is None else near | ign)
    centres = _blocked(s, budget, exclude, 2 * k if mode == "region" else k, validate)
    found = (centres >= 0).sum(1).tolist()  # one small sync
    for i, e in enumerate(found):
        if e < budget:
            raise ValueError(f"budget must be at most the number of centres RIPU's rule "
                             f"leaves in every image; image {i} has {e}, got budget {budget}")
    mask = torch.zeros((b, h * w), dtype=torch.bool, device=s.device)
    mask.scatter_(1, centres, True)
    mask = mask.view(b, h, w)
    if mode == "region":
        mask = _dilate(mask, k)
        if ign is not None:
            mask &= ~ign
    if is_numpy:
        mask, centres = mask.cpu().numpy(), centres.cpu().numpy()
    return (mask, centres) if return_centres else mask


def _dilate(m: torch.Tensor, k: int) -> torch.Tensor:
    """Pixels within Chebyshev distance ``k`` of a True pixel of ``m`` ``(B, H, W)``."""
    if k == 0:
        return m.clone()
    return F.max_pool2d(m[:, None].to(torch.float32), 2 * k + 1, stride=1, padding=k)[:, 0] > 0
