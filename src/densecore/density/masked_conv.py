"""The context-model baseline: a ``K x K`` convolution with its centre weight masked to zero.

The density estimator of Table 6's "K x K masked conv" rows: the same ``g``,
``psi``, auxiliary classifier, loss and density as
:class:`~densecore.density.DMCEstimator`, with the dynamic masked convolution
replaced by a static convolution that cannot see the centre pixel.

Shape:
    input ``(B, C_in, H, W)`` float; outputs as
    :class:`~densecore.density.EstimatorOutput` with ``mask = None``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import _ReconstructionEstimator
from .functional import centre_masked_conv
from .scaling import BETA, TAU

__all__ = ["MaskedConvEstimator"]


class MaskedConvEstimator(_ReconstructionEstimator):
    """Coverage-density estimator with a centre-masked ``K x K`` convolution.

    Args:
        in_channels: channels ``C_in`` of the backbone features.
        dim: channels D of the low-dimensional features F.
        kernel_size: odd window size K (3 or 5 in Table 6).
        num_classes: classes of the auxiliary classifier.
        beta: density scale (> 0).
        tau: density temperature (> 0).
        aux_weight: weight of the auxiliary cross-entropy in :meth:`loss`.
        detach_input: stop gradients from reaching the input.
        normalize: ``"minmax"`` (the paper) or ``"rank"``, see
            :func:`~densecore.density.coverage_density`.

    Example:
        >>> est = MaskedConvEstimator(16, dim=8, kernel_size=3, num_classes=4)
        >>> out = est(torch.randn(2, 16, 10, 12))
        >>> out.mask is None, out.error.shape
        (True, torch.Size([2, 10, 12]))
    """

    def __init__(self, in_channels: int, dim: int = 64, kernel_size: int = 5,
                 num_classes: int = 19, beta: float = BETA, tau: float = TAU, *,
                 aux_weight: float = 1.0, detach_input: bool = False,
                 normalize: str = "minmax") -> None:
        super().__init__(in_channels, dim, kernel_size, num_classes, beta, tau, aux_weight,
                         detach_input, normalize)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.dim, self.dim, k, k))
        self.bias = nn.Parameter(torch.zeros(self.dim))
        bound = 1.0 / math.sqrt(self.dim * (k * k - 1))
        nn.init.uniform_(self.weight, -bound, bound)

    def _reconstruct(self, features: torch.Tensor):
        w = self.weight.to(features.dtype)
        return centre_masked_conv(features, w, self.bias.to(features.dtype)), None
