"""What the DMC estimator and the masked-convolution baseline share.

Both project backbone features ``x`` to low-dimensional features ``F = g(x)``,
reconstruct ``F`` at every pixel from its neighbours only, refine the
reconstruction with 1x1 convolutions ``psi`` (no spatial leakage) and read the
per-pixel reconstruction error as the estimated average radial distance. An
auxiliary 1x1 classifier on ``F`` keeps Eq. 8 from collapsing ``F`` to a
constant. They differ only in how the neighbours are combined.

Shape:
    input ``(B, C_in, H, W)``; features and reconstruction ``(B, dim, H, W)``;
    mask ``(B, K*K, H, W)`` or None; error and density ``(B, H, W)``;
    aux logits ``(B, num_classes, H, W)``; targets ``(B, H', W')`` int64 with
    ``H' >= H``, ``W' >= W`` (nearest-downsampled to ``H x W``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_feature_map, check_int, check_kernel_size, check_positive_float
from .functional import reconstruction_error
from .scaling import NORMALIZATIONS, coverage_density

__all__ = ["EstimatorOutput"]


@dataclass
class EstimatorOutput:
    """What a reconstruction-based density estimator computes for a batch.

    Attributes:
        features: ``(B, dim, H, W)`` F = g(x), the features used for selection.
        mask: ``(B, K*K, H, W)`` softmax over the window taps with the centre
            tap exactly 0 (DMC), or None (masked-convolution baseline).
        reconstruction: ``(B, dim, H, W)`` F_hat, F rebuilt from neighbours.
        error: ``(B, H, W)`` ``||F_hat - F||^2`` per pixel (squared Euclidean
            distance in feature space), the estimated average radial distance.
        aux_logits: ``(B, num_classes, H, W)`` auxiliary classifier on F.
    """

    features: torch.Tensor
    mask: torch.Tensor | None
    reconstruction: torch.Tensor
    error: torch.Tensor
    aux_logits: torch.Tensor


def downsample_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of a ``(B, H', W')`` label map to ``size``."""
    if target.shape[-2:] == torch.Size(size):
        return target
    t = F.interpolate(target[:, None].float(), size=size, mode="nearest")
    return t[:, 0].to(target.dtype)


def _mark_trained(module: nn.Module, incompatible_keys) -> None:
    """``load_state_dict`` post-hook: loaded weights count as trained."""
    module.trained = True


class _ReconstructionEstimator(nn.Module):
    """g, psi, the auxiliary classifier, Eq. 8 loss and the density; subclasses reconstruct."""

    def __init__(self, in_channels: int, dim: int, kernel_size: int, num_classes: int,
                 beta: float, tau: float, aux_weight: float, detach_input: bool,
                 normalize: str = "minmax") -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}")
        self.normalize = normalize
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
        self.kernel_size = check_kernel_size(kernel_size)
        self.num_classes = check_int(num_classes, "num_classes", minimum=1)
        self.beta = check_positive_float(beta, "beta")
        self.tau = check_positive_float(tau, "tau")
        if isinstance(aux_weight, bool) or float(aux_weight) < 0:
            raise ValueError(f"aux_weight must be a number >= 0; got {aux_weight!r}")
        self.aux_weight = float(aux_weight)
        # When True, gradients stop at the input (the backbone is no longer
        # trained through the estimator, as after 18k iterations in the paper).
        self.detach_input = bool(detach_input)
        self.g = nn.Conv2d(self.in_channels, self.dim, 1)
        self.psi = nn.Sequential(nn.Conv2d(self.dim, self.dim, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(self.dim, self.dim, 1))
        self.aux = nn.Conv2d(self.dim, self.num_classes, 1)
        # set by the training path (loss() with gradients) or by loading weights; an
        # estimator with neither gives densities from random weights (density() warns)
        self.trained = False
        self.register_load_state_dict_post_hook(_mark_trained)

    def forward(self, x: torch.Tensor) -> EstimatorOutput:
        """Estimate from backbone features ``x`` ``(B, C_in, H, W)``; see :class:`EstimatorOutput`."""
        check_feature_map(x, "x", channels=self.in_channels)
        if self.detach_input:
            x = x.detach()
        f = self.g(x)
        # subclasses define _reconstruct(F) -> (F~ from neighbours only, mask or None)
        rec_tilde, mask = self._reconstruct(f)
        rec = self.psi(rec_tilde)
        return EstimatorOutput(features=f, mask=mask, reconstruction=rec,
                               error=reconstruction_error(rec, f), aux_logits=self.aux(f))

    def loss(self, out: EstimatorOutput, target: torch.Tensor | None = None,
             ignore_index: int = 255) -> torch.Tensor:
        """Eq. 8 as a minimisation plus the auxiliary cross-entropy.

        ``-mean log D = mean(e) / tau - log beta``; the constant is dropped, so
        the first term is ``mean(e) / tau`` over all pixels (labeled or not).
        The second is ``aux_weight`` times the cross-entropy of ``aux_logits``
        on the pixels of ``target`` that are not ``ignore_index`` (0 when
        there are none or ``target`` is None).

        Args:
            out: the output of ``forward``.
            target: ``(B, H', W')`` int64 class labels, ``H' >= H, W' >= W``
                (nearest-downsampled to the estimator's resolution), or None.
            ignore_index: label of unlabeled pixels.

        Returns:
            scalar tensor.
        """
        loss = out.error.mean() / self.tau
        if torch.is_grad_enabled() and loss.requires_grad:  # the training path
            self.trained = True
        if target is None or self.aux_weight == 0.0:
            return loss
        if not isinstance(target, torch.Tensor) or target.ndim != 3:
            raise ValueError("target must be a (B, H, W) integer tensor; got "
                             f"{tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__}")
        if target.is_floating_point():
            raise TypeError(f"target must hold integer class labels; got dtype {target.dtype}")
        b, _, h, w = out.aux_logits.shape
        if target.shape[0] != b or target.shape[1] < h or target.shape[2] < w:
            raise ValueError(f"target must have shape (B={b}, H'>={h}, W'>={w}); "
                             f"got {tuple(target.shape)}")
        t = downsample_target(target.to(out.aux_logits.device), (h, w)).long()
        bad = (t != ignore_index) & ((t < 0) | (t >= self.num_classes))
        if bool(bad.any()):
            b_, i_, j_ = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"target must hold class ids in [0, {self.num_classes}) or "
                             f"ignore_index={ignore_index}; got {int(t[b_, i_, j_])} at "
                             f"(image {b_}, row {i_}, column {j_}) of the downsampled target")
        ce = F.cross_entropy(out.aux_logits, t, ignore_index=ignore_index, reduction="sum")
        n = (t != ignore_index).sum().clamp_min(1)
        return loss + self.aux_weight * ce / n

    def density(self, out: EstimatorOutput, *, validate: bool = True) -> torch.Tensor:
        """Coverage density ``beta * exp(-e / tau)``, e normalised per image
        (``normalize``: min-max as in the paper, or rank).

        Args:
            out: the output of ``forward``.
            validate: raise on a NaN/inf error (a device sync on CUDA).

        Returns:
            ``(B, H, W)`` tensor in ``[beta * exp(-1 / tau), beta]``, detached.

        Raises:
            ValueError: naming ``error`` and the first non-finite pixel.

        Warns:
            UserWarning: when the estimator was never trained (no :meth:`loss`
                with gradients, no ``load_state_dict``).
        """
        if not self.trained:
            warnings.warn(
                f"{type(self).__name__}.density: this estimator has not been trained (no "
                f"loss() with gradients, no load_state_dict), so its reconstruction error "
                f"comes from random weights and the densities say nothing about coverage; "
                f"train it with its loss (densecore.DensityTrainer) or, for a trained model "
                f"without an estimator, pass densities='knn' to select_pixels or "
                f"query_round", UserWarning, stacklevel=2)
        return coverage_density(out.error.detach(), beta=self.beta, tau=self.tau, dims=(1, 2),
                                normalize=self.normalize, validate=validate)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, dim={self.dim}, kernel_size={self.kernel_size}, "
                f"num_classes={self.num_classes}, beta={self.beta:.4g}, tau={self.tau}, "
                f"detach_input={self.detach_input}, normalize={self.normalize!r}")
