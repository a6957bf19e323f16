"""Training losses of the pipeline (the paper's setting, aligned with RIPU).

* ``segmentation_loss``: cross-entropy on labelled pixels (source labels,
  queried target pixels), ignore index 255.
* the category-wise margin loss of Eq. 6 on source probabilities is
  ``densecore.CategoryMarginLoss`` (m = 1).
* ``negative_learning_loss``: for every target pixel, the classes whose
  probability is below a threshold (0.05) are treated as complementary labels
  and pushed further down: ``-log(1 - p_c)`` averaged over those (pixel,
  class) pairs.
* ``local_consistency_loss``: the mean L1 distance between a pixel's class
  probabilities and those of each of its 8 neighbours (interior pixels).
* the density estimator's own loss (Eq. 8 plus its auxiliary classifier) is
  ``estimator.loss(out, target)``.

Shape:
    logits/probabilities ``(B, C, H, W)`` float; targets ``(B, H, W)`` int64
    with 255 for unlabelled pixels; every loss returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datasets import IGNORE


def segmentation_loss(logits, target, ignore_index: int = IGNORE):
    """Cross-entropy over labelled pixels; 0 (with gradient) when none is labelled.

    ``logits`` are upsampled bilinearly to the target's ``(H, W)`` first.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)
        >>> round(segmentation_loss(logits, torch.tensor([[[0, 255]]])).item(), 4)
        0.6931
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def negative_learning_loss(probs, threshold: float = 0.05, eps: float = 1e-6):
    """Mean of ``-log(1 - p)`` over the (pixel, class) pairs with ``p < threshold``.

    The pairs are chosen without gradient; 0 when there are none.

    Example:
        >>> p = torch.tensor([0.9, 0.06, 0.04]).view(1, 3, 1, 1)
        >>> round(negative_learning_loss(p).item(), 4)  # only 0.04 counts: -log(0.96)
        0.0408
    """
    mask = (probs < threshold).detach()
    count = mask.sum()
    if count == 0:
        return probs.sum() * 0.0
    return -(torch.log(1.0 - probs + eps) * mask).sum() / count


def local_consistency_loss(probs):
    """Mean over interior pixels and their 8 neighbours of ``||p_i - p_n||_1``.

    Example:
        >>> p = torch.zeros(1, 2, 3, 3); p[:, 0] = 1; p[0, :, 1, 1] = torch.tensor([0., 1.])
        >>> round(local_consistency_loss(p).item(), 4)  # centre differs from all 8 by 2
        2.0
    """
    centre = probs[:, :, 1:-1, 1:-1]
    h, w = centre.shape[-2:]
    total = 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbour = probs[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            total = total + (centre - neighbour).abs().sum(dim=1).mean()
    return total / 8.0
