"""Functional core of the reconstruction-based density estimators.

* :func:`dynamic_masked_conv` is Eq. 7: every output pixel is a sum over the
  ``K x K`` window of per-pixel mask weight times a learnt ``(O, D)`` linear map
  of the neighbour's feature. It is computed tap by tap (no ``unfold``) by a
  custom autograd function that keeps only its three inputs for the backward
  pass and recomputes the per-tap projections there, so the extra memory is a
  few ``(B, max(O, D), H, W)`` buffers instead of a ``(B, D*K*K, H, W)`` one.
* :func:`centre_masked_conv` is the context-model baseline: a plain ``K x K``
  convolution whose centre weight is zero.
* :func:`reconstruction_error` is ``||F_hat - F||^2`` per pixel, the estimate of
  the average radial distance that the coverage density is computed from.

Shape:
    features ``(B, D, H, W)``; mask ``(B, K*K, H, W)`` with tap ``(a, b)`` of the
    window (row ``a``, column ``b``, ``0 <= a, b < K``) in channel ``a*K + b``,
    so the centre tap is channel ``K*K // 2``; weight ``(O, D, K, K)``;
    result ``(B, O, H, W)``. All floating, one dtype, one device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_feature_map, check_kernel_size

__all__ = ["centre_masked_conv", "dynamic_masked_conv", "in_image_taps",
           "reconstruction_error"]


def _taps(k: int, h: int, w: int):
    """Yield ``(t, a, b, out_slice, src_slice)`` for each tap of a K x K window.

    ``out[..., out_slice]`` reads ``src[..., src_slice]`` for the neighbour at
    offset ``(a - K//2, b - K//2)``; pixels whose neighbour falls outside the
    image are left out (zero padding).
    """
    p = k // 2
    for a in range(k):
        u = a - p
        # stops clamped at 0: on an image smaller than the window (K//2 >= H) a
        # negative stop would wrap around and pair the wrong rows
        oi = slice(max(0, -u), max(0, min(h, h - u)))
        si = slice(max(0, u), max(0, min(h, h + u)))
        for b in range(k):
            v = b - p
            oj = slice(max(0, -v), max(0, min(w, w - v)))
            sj = slice(max(0, v), max(0, min(w, w + v)))
            yield a * k + b, a, b, (Ellipsis, oi, oj), (Ellipsis, si, sj)


def in_image_taps(kernel_size: int, height: int, width: int, *,
                  device=None) -> torch.Tensor:
    """Which taps of each pixel's ``K x K`` window fall inside the image.

    Args:
        kernel_size: odd K.
        height, width: image size.
        device: where the result lives.

    Returns:
        ``(K*K, H, W)`` bool, tap ``a*K + b`` of pixel ``(i, j)`` is True when
        ``(i + a - K//2, j + b - K//2)`` lies in the image (the centre tap included).

    Example:
        >>> in_image_taps(3, 2, 2)[:, 0, 0].view(3, 3).int().tolist()
        [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    """
    k = check_kernel_size(kernel_size)
    out = torch.zeros(k * k, height, width, dtype=torch.bool, device=device)
    for t, _, _, osl, _ in _taps(k, height, width):
        out[t][osl[1:]] = True
    return out


def _project(features: torch.Tensor, w_tap: torch.Tensor) -> torch.Tensor:
    """``(O, D)`` matrix applied to every pixel of ``(B, D, H, W)`` -> ``(B, O, H, W)``."""
    b, _, h, w = features.shape
    return torch.matmul(w_tap, features.reshape(b, -1, h * w)).view(b, -1, h, w)


def _dmc_forward(features, mask, weight):
    b, _, h, w = features.shape
    k = weight.shape[-1]
    out = features.new_zeros((b, weight.shape[0], h, w))
    for t, a, c, osl, ssl in _taps(k, h, w):
        proj = _project(features, weight[:, :, a, c])
        # Eq. 7: F~[o,i,j] += M~[a,b,i,j] * sum_d W[o,d,a,b] F[d,i+u,j+v]
        out[osl] += mask[:, t:t + 1][osl] * proj[ssl]
    return out


def _dmc_backward(features, mask, weight, grad_out, needs):
    """Gradients of Eq. 7, recomputing each tap's projection (differentiable ops only)."""
    b, _, h, w = features.shape
    k = weight.shape[-1]
    need_f, need_m, need_w = needs
    grad_f = torch.zeros_like(features) if need_f else None
    grad_m = torch.zeros_like(mask) if need_m else None
    grad_w = [] if need_w else None
    for t, a, c, osl, ssl in _taps(k, h, w):
        w_tap = weight[:, :, a, c]
        if need_m:
            proj = _project(features, w_tap)
            grad_m[:, t][osl] = (grad_out[osl] * proj[ssl]).sum(dim=1)
        if need_f or need_w:
            # the output gradient routed back to the source pixel of this tap
            routed = torch.zeros_like(grad_out)
            routed[ssl] = mask[:, t:t + 1][osl] * grad_out[osl]
            if need_f:
                grad_f = grad_f + _project(routed, w_tap.t())
            if need_w:
                grad_w.append(torch.matmul(routed.flatten(2),
                                           features.flatten(2).transpose(1, 2)).sum(0))
    if need_w:
        grad_w = torch.stack(grad_w, dim=-1).reshape(weight.shape)
    return grad_f, grad_m, grad_w


class _DynamicMaskedConv(torch.autograd.Function):
    """Eq. 7 with recomputation: saves only the inputs for the backward pass."""

    @staticmethod
    def forward(ctx, features, mask, weight):
        features, mask = features.contiguous(), mask.contiguous()
        ctx.save_for_backward(features, mask, weight)
        return _dmc_forward(features, mask, weight)

    @staticmethod
    def backward(ctx, grad_out):
        features, mask, weight = ctx.saved_tensors
        return _dmc_backward(features, mask, weight, grad_out.contiguous(),
                             ctx.needs_input_grad)


def _check_dmc(features, mask, weight) -> int:
    check_feature_map(features, "features")
    check_feature_map(mask, "mask")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must have shape (O, D, K, K); got {shape}")
    o, d, k, k2 = weight.shape
    if k != k2:
        raise ValueError(f"weight must have a square K x K window; got shape {tuple(weight.shape)}")
    k = check_kernel_size(k, "weight's kernel size")
    bsz, dim, h, w = features.shape
    if d != dim:
        raise ValueError(f"weight must have D = {dim} input channels to match features; "
                         f"got shape {tuple(weight.shape)}")
    if tuple(mask.shape) != (bsz, k * k, h, w):
        raise ValueError(f"mask must have shape {(bsz, k * k, h, w)} (B, K*K, H, W); "
                         f"got {tuple(mask.shape)}")
    for name, t in (("mask", mask), ("weight", weight)):
        if t.dtype != features.dtype:
            raise TypeError(f"{name} must have the dtype of features ({features.dtype}); "
                            f"got {t.dtype}")
        if t.device != features.device:
            raise ValueError(f"{name} must be on the device of features ({features.device}); "
                             f"got {t.device}")
    return k


def dynamic_masked_conv(features: torch.Tensor, mask: torch.Tensor,
                        weight: torch.Tensor) -> torch.Tensor:
    """Dynamic masked convolution (Eq. 7) with zero padding.

    ``out[b, o, i, j] = sum_{a, c} mask[b, a*K + c, i, j] *
    sum_d weight[o, d, a, c] * features[b, d, i + a - K//2, j + c - K//2]``,
    where neighbours outside the image count as zero.

    Memory: the forward pass keeps only its inputs for backward and the
    backward pass recomputes one tap at a time, so beyond inputs and outputs it
    needs a few ``(B, max(O, D), H, W)`` buffers, never a ``(B, D*K*K, H, W)``
    one. Double backward works (the backward pass is made of differentiable
    ops).

    Args:
        features: ``(B, D, H, W)`` float, the low-dimensional features F.
        mask: ``(B, K*K, H, W)`` float, the per-pixel tap weights (the
            reshaped modulation map of Eq. 7; the estimator passes a softmax
            with the centre tap at zero, but any values are accepted).
        weight: ``(O, D, K, K)`` float, W of Eq. 7; K odd.

    Returns:
        ``(B, O, H, W)`` tensor, F~ of Eq. 7, dtype and device of ``features``.

    Example:
        >>> f = torch.ones(1, 2, 3, 3)
        >>> m = torch.full((1, 9, 3, 3), 1 / 8.0)
        >>> m[:, 4] = 0.0                       # centre tap masked out
        >>> w = torch.ones(1, 2, 3, 3)
        >>> dynamic_masked_conv(f, m, w)[0, 0]  # 8 neighbours inside, fewer at borders
        tensor([[0.7500, 1.2500, 0.7500],
                [1.2500, 2.0000, 1.2500],
                [0.7500, 1.2500, 0.7500]])
    """
    _check_dmc(features, mask, weight)
    return _DynamicMaskedConv.apply(features, mask, weight)


def centre_masked_conv(features: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """``K x K`` convolution with the centre tap of ``weight`` set to zero.

    The context model of learned image compression reduced to "predict a
    pixel from its neighbours": the output at a pixel never depends on the
    input at that same pixel. Zero padding keeps the size.

    Args:
        features: ``(B, D, H, W)`` float.
        weight: ``(O, D, K, K)`` float, K odd; its centre entries are ignored.
        bias: optional ``(O,)``.

    Returns:
        ``(B, O, H, W)`` tensor.

    Example:
        >>> f = torch.zeros(1, 1, 3, 3); f[0, 0, 1, 1] = 5.0
        >>> centre_masked_conv(f, torch.ones(1, 1, 3, 3))[0, 0, 1, 1]  # own value unseen
        tensor(0.)
    """
    check_feature_map(features, "features")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4 or weight.shape[-1] != weight.shape[-2]:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must have shape (O, D, K, K); got {shape}")
    k = check_kernel_size(weight.shape[-1], "weight's kernel size")
    keep = torch.ones(k, k, dtype=weight.dtype, device=weight.device)
    keep[k // 2, k // 2] = 0
    return F.conv2d(features, weight * keep, bias, padding=k // 2)


def reconstruction_error(reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance ``||F_hat - F||^2`` over channels, per pixel.

    Args:
        reconstruction: ``(B, D, H, W)`` float, F_hat.
        features: ``(B, D, H, W)`` float, F.

    Returns:
        ``(B, H, W)`` non-negative tensor (squared feature-space distance).

    Example:
        >>> reconstruction_error(torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2))[0]
        tensor([[4., 4.],
                [4., 4.]])
    """
    check_feature_map(reconstruction, "reconstruction")
    check_feature_map(features, "features", channels=reconstruction.shape[1])
    if reconstruction.shape != features.shape:
        raise ValueError(f"reconstruction must have the shape of features {tuple(features.shape)}; "
                         f"got {tuple(reconstruction.shape)}")
    return (reconstruction - features).pow(2).sum(dim=1)
