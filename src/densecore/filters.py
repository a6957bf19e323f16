"""Candidate filters: per-pixel informativeness scores and the top-k step.

The paper's source-aided filter scores a pixel by ``I = 1 - P1* + P2*``
(``P1*``, ``P2*`` the largest and second largest class probabilities, the
score after Eq. 6); the model is trained on source data with the
category-wise margin loss of Eq. 6 (:class:`CategoryMarginLoss`). The
uncertainty baselines of Table 5 and Fig. 6 are entropy (ENT), least
confidence (SCONF) and random scores (RAND). RIPU's scores (Xie et al.,
CVPR 2022, the paper's main baseline) look at a pixel's neighbourhood:
:func:`region_impurity`, :func:`prediction_uncertainty` and their product
:func:`ripu_score`. Higher scores are more informative everywhere.

Every score function takes probabilities. A caller holding logits says so
with ``from_logits=True`` (a softmax over the class dimension is applied);
nothing is guessed from the values. With ``validate=True`` (default) inputs
that are not probabilities raise a ``ValueError``.

Shape:
    probs ``(B, C, H, W)`` or ``(C, H, W)``, classes on dim ``-3``; scores
    ``(B, H, W)`` or ``(H, W)`` in the probabilities' dtype. ``top_candidates``
    takes scores ``(B, H, W)`` (or ``(B, N)``) and returns ``(B, k)`` int64
    flat indices ``y * W + x``. Inputs may be numpy arrays (numpy out) or
    tensors on any device (tensors out, same device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import validation as V

__all__ = [
    "CategoryMarginLoss",
    "category_margin_loss",
    "entropy_score",
    "least_confidence_score",
    "margin_score",
    "prediction_uncertainty",
    "random_score",
    "region_impurity",
    "ripu_score",
    "top_candidates",
]


def _probs(probs, from_logits: bool, validate: bool) -> tuple[torch.Tensor, bool]:
    is_numpy = not isinstance(probs, torch.Tensor)
    from_logits = V.check_bool(from_logits, "from_logits")
    validate = V.check_bool(validate, "validate")
    if from_logits:
        t = V.check_logits(probs, "probs", validate=validate)
        return torch.softmax(t, dim=-3), is_numpy
    return V.check_probabilities(probs, "probs", validate=validate), is_numpy


def _out(t: torch.Tensor, is_numpy: bool):
    return t.numpy() if is_numpy else t


def margin_score(probs, *, from_logits: bool = False, validate: bool = True):
    """Source-aided margin score ``I = 1 - P1* + P2*`` (the score after Eq. 6).

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities, ``C >= 2``
            (logits with ``from_logits=True``).
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` scores in [0, 1]; 1 where the two top classes tie.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[0.7]], [[0.2]], [[0.1]]])   # (C=3, H=1, W=1)
        >>> round(float(margin_score(p)), 6)
        0.5
    """
    p, is_numpy = _probs(probs, from_logits, validate)
    if p.shape[-3] < 2:
        raise ValueError(f"probs must have C >= 2 classes for a margin; got shape "
                         f"{tuple(p.shape)}")
    p1, p2 = _top2_over_classes(p)
    return _out(1.0 - p1 + p2, is_numpy)


def _top2_over_classes(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest and second largest value over dim ``-3`` (``C >= 2``), each ``(..., H, W)``.

    A running pair over the classes, elementwise on contiguous planes: the same
    values as ``torch.topk(p, 2, dim=-3)`` (a tie at the top gives ``p1 == p2``),
    about 9x faster on the CPU at (1, 19, 1024, 2048) than topk over a strided dim.
    """
    p1 = torch.maximum(p.select(-3, 0), p.select(-3, 1))
    p2 = torch.minimum(p.select(-3, 0), p.select(-3, 1))
    for c in range(2, p.shape[-3]):
        pc = p.select(-3, c)
        p2 = torch.maximum(p2, torch.minimum(p1, pc))
        p1 = torch.maximum(p1, pc)
    return p1, p2


def entropy_score(probs, *, from_logits: bool = False, validate: bool = True):
    """Prediction entropy ``-sum_c p_c log p_c`` in nats (ENT), with ``0 log 0 = 0``.

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities.
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` entropies in ``[0, log C]`` nats.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[0.5]], [[0.5]]])
        >>> round(float(entropy_score(p)), 4)
        0.6931
    """
    p, is_numpy = _probs(probs, from_logits, validate)
    return _out(-torch.special.xlogy(p, p).sum(-3), is_numpy)


def least_confidence_score(probs, *, from_logits: bool = False, validate: bool = True):
    """Least confidence ``1 - P1*`` (SCONF).

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities.
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` scores in ``[0, 1 - 1/C]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[0.7]], [[0.2]], [[0.1]]])
        >>> round(float(least_confidence_score(p)), 6)
        0.3
    """
    p, is_numpy = _probs(probs, from_logits, validate)
    return _out(1.0 - p.amax(-3), is_numpy)


def random_score(shape, seed: int = 0, *, device=None, dtype: torch.dtype = torch.float32):
    """Uniform random scores in [0, 1) for the RAND baseline.

    Drawn from a local ``torch.Generator`` on ``device`` seeded with ``seed``
    (global RNG untouched). The same seed gives the same scores on the same
    device type; CPU and CUDA streams differ.

    Args:
        shape: output shape, e.g. ``(B, H, W)``.
        seed: generator seed.
        device: torch device (default CPU).
        dtype: floating dtype.

    Returns:
        tensor of ``shape`` on ``device``.

    Example:
        >>> s = random_score((2, 3, 4), seed=0)
        >>> s.shape, bool(((s >= 0) & (s < 1)).all()), bool((s == random_score((2, 3, 4))).all())
        (torch.Size([2, 3, 4]), True, True)
    """
    seed = V.check_int(seed, "seed")
    dev = torch.device("cpu") if device is None else torch.device(device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    return torch.rand(tuple(shape), generator=gen, device=dev, dtype=dtype)


# --- RIPU's region scores -------------------------------------------------------------
#
# Region impurity and prediction uncertainty (Xie et al., CVPR 2022, "Towards Fewer
# Annotations", Sec. 3.2; public code: FloatingRegionScore and SpatialPurity).
# What follows RIPU's code: the (2k+1) x (2k+1) window centred on each pixel with zero
# padding, so that out-of-image positions count nothing and both statistics are divided
# by the number of in-image pixels of the window (RIPU's ``count``): at borders and
# corners they are those of the clipped window; a pixel's class is the argmax of its
# probabilities (the lowest class on ties, as ``torch.argmax``); the region score is
# impurity times uncertainty, the pixel score impurity times the pixel's own entropy.
# What differs: entropies are exact (``0 log 0 = 0``) in nats, where RIPU adds 1e-6
# inside the logarithm and divides by ``log 19`` (a constant factor, which leaves the
# ranking alone; the 1e-6 moves a value by at most about ``C * 1e-6``); ``ignore``
# (RIPU has none: every prediction counts) leaves pixels out of the window as if they
# were outside the image; batches of images on any device, where RIPU scores one image
# at a time on CUDA.


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of ``x`` ``(..., H, W)`` over the ``(2k+1) x (2k+1)`` window, zero outside.

    Shifted adds along the rows, then the columns (``4k`` adds per element, in
    ``x``'s dtype: integer counts stay exact). On a 512 x 1024 float32 plane with
    ``k=1`` it took under 1 ms against 44 ms for two ``avg_pool2d`` passes with
    ``divisor_override=1`` (CPU, same process).
    """
    if k == 0:
        return x
    h, w = x.shape[-2:]
    xp = F.pad(x, (k, k, k, k))
    rows = xp[..., :, 0:w].clone()
    for d in range(1, 2 * k + 1):
        rows += xp[..., :, d:d + w]
    out = rows[..., 0:h, :].clone()
    for d in range(1, 2 * k + 1):
        out += rows[..., d:d + h, :]
    return out


def _ripu_inputs(probs, k, ignore, from_logits, validate):
    """``(p (B, C, H, W) float32/64, valid (B, H, W) or None, count, k, finish)``."""
    p, is_numpy = _probs(probs, from_logits, validate)
    k = V.check_int(k, "k", minimum=0)
    # a window wider than the image sees the whole image from every pixel: k beyond
    # max(H, W) - 1 gives the same sums and would only pad every plane further
    k = min(k, max(p.shape[-2], p.shape[-1]) - 1) if p.shape[-1] * p.shape[-2] else 0
    single = p.ndim == 3
    out_dtype = p.dtype
    work = p if p.dtype in (torch.float32, torch.float64) else p.float()
    if single:
        work = work[None]
    b, _, h, w = work.shape
    valid = None
    if ignore is not None:
        ign = V.check_bool_map(V.as_tensor_like(ignore, "ignore"), tuple(p.shape[:-3]) + (h, w),
                               p, "ignore")
        valid = (~ign).reshape(b, h, w).to(work.dtype)
    ones = torch.ones((b, h, w), dtype=work.dtype, device=work.device)
    count = _box_sum(ones if valid is None else valid, k)

    def finish(t: torch.Tensor):
        t = t.to(out_dtype)
        return _out(t[0] if single else t, is_numpy)

    return work, valid, count, k, finish


def _mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count``, 0 where the window holds no counted pixel."""
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def _impurity(p, valid, count, k):
    b, c, h, w = p.shape
    # class counts of every window at once, as small integers (exact); the argmax
    # takes the lowest class on ties
    small = (2 * k + 1) ** 2 <= torch.iinfo(torch.uint8).max
    hist = torch.zeros((b, c, h, w), dtype=torch.uint8 if small else torch.int32,
                       device=p.device).scatter_(1, p.argmax(1, keepdim=True), 1)
    if valid is not None:
        hist *= valid.to(hist.dtype)[:, None]
    hist = _box_sum(hist, k)
    inv = 1.0 / count.clamp_min(1)
    out = torch.zeros_like(count)  # +0.0 for pure and empty windows
    for ci in range(c):  # one class plane at a time: no (B, C, H, W) float temporaries
        share = hist[:, ci].to(p.dtype) * inv
        out -= torch.special.xlogy(share, share)
    return out


def _uncertainty(p, valid, count, k):
    ent = 0.0 - torch.special.xlogy(p, p).sum(1)
    return _mean(_box_sum(ent if valid is None else ent * valid, k), count)


def region_impurity(probs, k: int = 1, *, ignore=None, from_logits: bool = False,
                    validate: bool = True):
    """RIPU's region impurity: entropy of the predicted classes around each pixel.

    For pixel ``(y, x)``, the histogram of ``argmax_c p_c`` over the in-image
    pixels of the ``(2k+1) x (2k+1)`` window centred on it (not ignored), as
    shares ``n_c / N``; the result is ``-sum_c (n_c / N) log(n_c / N)`` in nats.
    Borders follow RIPU's code (zero padding, divided by the in-image count
    ``N``); see the section comment above for what differs.

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities (logits with
            ``from_logits=True``).
        k: window radius, ``>= 0`` (RIPU's ``RADIUS_K``, 1 for 3 x 3 regions).
        ignore: ``(B, H, W)`` (or ``(H, W)``) bool, pixels left out of every
            window, or None (RIPU: every pixel counts).
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` impurities in ``[0, log min(C, (2k+1)**2)]``;
        0 where the window holds no counted pixel.

    Example:
        >>> import torch
        >>> p = torch.zeros(2, 1, 3)
        >>> p[0, 0, :2] = 1; p[1, 0, 2] = 1               # classes 0, 0, 1
        >>> [round(v, 4) for v in region_impurity(p, k=1)[0].tolist()]
        [0.0, 0.6365, 0.6931]
    """
    p, valid, count, k, finish = _ripu_inputs(probs, k, ignore, from_logits, validate)
    return finish(_impurity(p, valid, count, k))


def prediction_uncertainty(probs, k: int = 1, *, ignore=None, from_logits: bool = False,
                           validate: bool = True):
    """RIPU's prediction uncertainty: mean pixel entropy around each pixel.

    The mean of ``-sum_c p_c log p_c`` (nats) over the in-image, not ignored
    pixels of the ``(2k+1) x (2k+1)`` window centred on each pixel; ``k=0`` is
    the pixel's own entropy (:func:`entropy_score`).

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities (logits with
            ``from_logits=True``).
        k: window radius, ``>= 0``.
        ignore: ``(B, H, W)`` (or ``(H, W)``) bool, pixels left out of every
            window, or None.
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` mean entropies in ``[0, log C]`` nats; 0 where
        the window holds no counted pixel.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[0.5, 1.0]], [[0.5, 0.0]]])   # (C=2, H=1, W=2)
        >>> [round(v, 4) for v in prediction_uncertainty(p, k=1).tolist()[0]]
        [0.3466, 0.3466]
    """
    p, valid, count, k, finish = _ripu_inputs(probs, k, ignore, from_logits, validate)
    return finish(_uncertainty(p, valid, count, k))


def ripu_score(probs, k: int = 1, *, mode: str = "region", ignore=None,
               from_logits: bool = False, validate: bool = True):
    """RIPU's acquisition score: region impurity times prediction uncertainty.

    ``mode="region"`` (RIPU's region-based selection, ``FloatingRegionScore``):
    :func:`region_impurity` times :func:`prediction_uncertainty`, both over the
    ``(2k+1) x (2k+1)`` window. ``mode="pixel"`` (RIPU's pixel-based selection):
    region impurity over the window times the pixel's own entropy. Rank with
    :func:`~densecore.regions.ripu_select` for RIPU's pick-suppress-repeat, or
    pass ``score="ripu"`` to :func:`~densecore.select_pixels` to filter
    candidates for a greedy sampler.

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities (logits with
            ``from_logits=True``).
        k: window radius, ``>= 0`` (RIPU's ``RADIUS_K``: 1).
        mode: ``"region"`` or ``"pixel"``.
        ignore: ``(B, H, W)`` (or ``(H, W)``) bool, pixels left out of every
            window, or None (RIPU).
        from_logits: apply a softmax over dim ``-3`` first.
        validate: check that ``probs`` are probabilities (a device sync on CUDA).

    Returns:
        ``(B, H, W)`` or ``(H, W)`` scores ``>= 0`` in the probabilities' dtype.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> p = torch.softmax(torch.randn(2, 19, 8, 8, generator=g), 1)
        >>> s = ripu_score(p, k=1)
        >>> s.shape, bool(torch.allclose(s, region_impurity(p) * prediction_uncertainty(p)))
        (torch.Size([2, 8, 8]), True)
    """
    mode = V.check_choice(mode, ("region", "pixel"), "mode")
    p, valid, count, k, finish = _ripu_inputs(probs, k, ignore, from_logits, validate)
    impurity = _impurity(p, valid, count, k)
    if mode == "region":
        return finish(impurity * _uncertainty(p, valid, count, k))
    own = valid if valid is not None else torch.ones_like(count)
    return finish(impurity * _uncertainty(p, valid, own, 0))


def _rank_keys(scores: torch.Tensor) -> torch.Tensor:
    """int64 keys, distinct per position, ordering by float32 score then lower index.

    The float32 bit pattern is mapped to an int32 that sorts like the float
    (negative floats have their magnitude bits flipped), shifted into the high
    32 bits; the low 32 bits hold ``N - 1 - index`` so equal scores rank the
    lower index first and ``topk`` meets no ties.
    """
    n = scores.shape[-1]
    s = scores.float() + 0.0  # -0.0 + 0.0 == +0.0: one key for zero
    bits = s.view(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    low = (n - 1) - torch.arange(n, device=scores.device, dtype=torch.int64)
    return (bits.to(torch.int64) << 32) | low


def top_candidates(scores, k: int, exclude=None, *, validate: bool = True):
    """Flat indices of the ``k`` highest scores per image, best first.

    Equal scores (compared as float32) go to the lower flat index. Excluded
    pixels are never returned; where an image has fewer than ``k`` eligible
    pixels its row is padded with ``-1`` at the end.

    Args:
        scores: ``(B, H, W)`` (or ``(B, N)``) float scores, higher is better.
        k: number of candidates per image, ``>= 0``.
        exclude: ``(B, H, W)`` bool, True where a pixel must not be returned
            (already labeled, ignore label), or None.
        validate: reject NaN scores (a device sync on CUDA).

    Returns:
        ``(B, k)`` int64 flat indices ``y * W + x`` (``-1`` padding).

    Example:
        >>> import torch
        >>> s = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])
        >>> top_candidates(s, 3).tolist()
        [[1, 3, 2]]
        >>> top_candidates(s, 3, exclude=torch.tensor([[[False, True], [True, True]]])).tolist()
        [[0, -1, -1]]
    """
    is_numpy = not isinstance(scores, torch.Tensor)
    s = V.as_tensor_like(scores, "scores")
    if not s.is_floating_point():
        raise TypeError(f"scores must be a floating array; got dtype {s.dtype}")
    if s.ndim < 2:
        raise ValueError(f"scores must have shape (B, H, W) or (B, N); got shape "
                         f"{tuple(s.shape)}")
    k = V.check_int(k, "k", minimum=0)
    b = s.shape[0]
    flat = s.reshape(b, -1)
    n = flat.shape[1]
    if validate and flat.numel() and bool(torch.isnan(flat).any()):
        raise ValueError("scores must not contain NaN")
    keys = _rank_keys(flat)
    if exclude is not None:
        ex = V.check_bool_map(V.as_tensor_like(exclude, "exclude"), tuple(s.shape), s,
                              "exclude").reshape(b, -1)
        keys = keys.masked_fill(ex, torch.iinfo(torch.int64).min)
        eligible = (~ex).sum(1)
    else:
        eligible = torch.full((b,), n, dtype=torch.int64, device=s.device)
    kk = min(k, n)
    idx = torch.topk(keys, kk, dim=1, largest=True, sorted=True).indices
    if kk < k:
        idx = torch.cat([idx, idx.new_full((b, k - kk), -1)], dim=1)
    pos = torch.arange(k, device=s.device)
    idx = torch.where(pos[None, :] < eligible[:, None], idx, idx.new_full((), -1))
    return _out(idx, is_numpy)


def category_margin_loss(probs, target, *, margin: float = 1.0, ignore_index: int = 255,
                         reduction: str = "mean", from_logits: bool = False,
                         validate: bool = True):
    """Category-wise margin loss, Eq. 6: ``sum_{c != y} [m - P_y + P_c]_+`` per pixel.

    ``P`` are class probabilities (a softmax of logits with
    ``from_logits=True``). Note that with probabilities and ``m >= 1`` the
    hinge never clips (``P_y <= 1``, ``P_c >= 0``), so the per-pixel loss is
    ``(C - 1) m - (C - 1) P_y + (1 - P_y) = C (1 - P_y)`` for ``m = 1``.

    Args:
        probs: ``(B, C, H, W)`` class probabilities (logits with ``from_logits``).
        target: ``(B, H, W)`` int64 class ids in ``[0, C)`` or ``ignore_index``.
        margin: ``m`` (the paper sets 1).
        ignore_index: target value whose pixels add nothing.
        reduction: ``"mean"`` (over non-ignored pixels; 0 when there are none),
            ``"sum"`` (Eq. 6 literally, also summed over the batch) or
            ``"none"`` (``(B, H, W)``, 0 at ignored pixels).
        from_logits: apply a softmax over dim 1 first.
        validate: check that every target is a class id in ``[0, C)`` or
            ``ignore_index`` (one reduction, a device sync on CUDA); without it an
            out-of-range id fails inside ``gather`` (IndexError, or a device assert).

    Returns:
        scalar tensor, or ``(B, H, W)`` for ``"none"``; differentiable.

    Raises:
        ValueError: ``target`` out of range, ``margin`` NaN/inf or negative, bad shapes.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[[0.7]], [[0.2]], [[0.1]]]])      # (1, 3, 1, 1)
        >>> y = torch.tensor([[[0]]])
        >>> round(float(category_margin_loss(p, y)), 6)          # (1-.7+.2) + (1-.7+.1)
        0.9
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    margin = V.check_finite_float(margin, "margin", minimum=0.0)
    ignore_index = V.check_int(ignore_index, "ignore_index")
    if not isinstance(probs, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("probs and target must be torch tensors; got "
                        f"{type(probs).__name__} and {type(target).__name__}")
    if probs.ndim != 4:
        raise ValueError(f"probs must have shape (B, C, H, W); got shape {tuple(probs.shape)}")
    if from_logits:
        if not probs.is_floating_point():
            raise TypeError(f"probs must be a floating tensor; got dtype {probs.dtype}")
        p = torch.softmax(probs, dim=1)
    else:
        # Values are not scanned here: a training loss runs every step.
        if not probs.is_floating_point():
            raise TypeError(f"probs must be a floating tensor; got dtype {probs.dtype}")
        p = probs
    bsz, c, h, w = p.shape
    if target.shape != (bsz, h, w):
        raise ValueError(f"target must have shape {(bsz, h, w)}; got shape "
                         f"{tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must be an integer tensor; got dtype {target.dtype}")
    if target.device != p.device:
        raise ValueError(f"target must be on {p.device}; got {target.device}")
    if validate:
        V.check_class_ids(target, c, ignore_index)
    valid = target != ignore_index
    y = torch.where(valid, target, torch.zeros_like(target)).long()
    p_y = p.gather(1, y[:, None])  # (B, 1, H, W)
    hinge = torch.clamp_min(margin - p_y + p, 0.0)  # Eq. 6 inner term for every c
    not_y = torch.ones_like(hinge, dtype=torch.bool).scatter_(1, y[:, None], False)
    per_pixel = (hinge * not_y).sum(1) * valid
    if reduction == "none":
        return per_pixel
    if reduction == "sum":
        return per_pixel.sum()
    return per_pixel.sum() / valid.sum().clamp_min(1)


class CategoryMarginLoss(torch.nn.Module):
    """Eq. 6 as a module; see :func:`category_margin_loss`.

    Args:
        margin: ``m`` (the paper sets 1).
        ignore_index: target value to skip.
        reduction: ``"mean"``, ``"sum"`` (Eq. 6 literally) or ``"none"``.
        from_logits: the forward input is logits (a softmax over dim 1 is applied).
        validate: check the target's class ids every call (a device sync on CUDA).

    Shape:
        input ``(B, C, H, W)``, target ``(B, H, W)`` int64; output scalar or ``(B, H, W)``.

    Example:
        >>> import torch
        >>> loss = CategoryMarginLoss(from_logits=True)
        >>> x = torch.zeros(2, 4, 3, 3, requires_grad=True)
        >>> y = torch.zeros(2, 3, 3, dtype=torch.long)
        >>> out = loss(x, y); out.backward()
        >>> round(out.item(), 4)                                  # C (1 - 1/C) = 3
        3.0
    """

    def __init__(self, margin: float = 1.0, ignore_index: int = 255, reduction: str = "mean",
                 from_logits: bool = False, validate: bool = True):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
        self.margin = V.check_finite_float(margin, "margin", minimum=0.0)
        self.ignore_index = V.check_int(ignore_index, "ignore_index")
        self.reduction = reduction
        self.from_logits = bool(from_logits)
        self.validate = bool(validate)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` ``(B, C, H, W)`` against ``target`` ``(B, H, W)``."""
        return category_margin_loss(input, target, margin=self.margin,
                                    ignore_index=self.ignore_index, reduction=self.reduction,
                                    from_logits=self.from_logits, validate=self.validate)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, from_logits={self.from_logits}")
