"""The density estimator inside someone else's training loop (RIPU-style scripts).

:class:`DensityTrainer` owns what a script needs around a
:class:`~densecore.DMCEstimator` (or :class:`~densecore.MaskedConvEstimator`):
its optimiser group (learning rate ``lr_mult`` times the backbone's, like the
segmentation head in the paper), its loss (Eq. 8 plus the auxiliary
classifier, times ``weight``) and the schedule that stops its gradients from
reaching the backbone after ``detach_after`` iterations (18k of 40k in the
paper). See ``examples/ripu_adapter.md`` for the integration.

Shape:
    features ``(B, C, h, w)`` backbone output; target ``(B, H, W)`` int64
    labels (``ignore_index`` where unlabeled); densities ``(B, h, w)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_int, check_positive_float

__all__ = ["DensityTrainer"]

GROUP_NAME = "densecore_density"


class DensityTrainer(nn.Module):
    """An estimator with its optimiser group, loss weight and detach schedule.

    Args:
        estimator: an ``nn.Module`` with ``forward(features)``, ``loss(out,
            target, ignore_index)`` and ``density(out)``
            (:class:`~densecore.DMCEstimator`).
        detach_after: first iteration whose estimator loss no longer reaches
            the backbone (the paper: 18000).
        weight: factor on the estimator's loss.
        lr_mult: its learning rate relative to the base rate (the paper: 10).

    Example:
        >>> import torch, densecore
        >>> est = densecore.DMCEstimator(8, dim=4, num_classes=3)
        >>> dt = DensityTrainer(est, detach_after=2)
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> opt.add_param_group(dt.param_group(0.1)); opt.param_groups[1]["lr"]
        1.0
        >>> x = torch.randn(1, 8, 6, 6, requires_grad=True)
        >>> dt.loss(dt(x, iteration=5), torch.zeros(1, 6, 6, dtype=torch.long)).backward()
        >>> x.grad is None, dt.detached(1), dt.detached(2)
        (True, False, True)
    """

    def __init__(self, estimator: nn.Module, *, detach_after: int = 18000, weight: float = 1.0,
                 lr_mult: float = 10.0) -> None:
        super().__init__()
        for name in ("loss", "density"):
            if not callable(getattr(estimator, name, None)):
                raise TypeError(f"estimator must have a {name}() method (a densecore "
                                f"estimator); got {type(estimator).__name__}")
        self.estimator = estimator
        self.detach_after = check_int(detach_after, "detach_after", minimum=0)
        self.weight = check_positive_float(weight, "weight")
        self.lr_mult = check_positive_float(lr_mult, "lr_mult")

    def detached(self, iteration: int | None) -> bool:
        """True when the estimator must not train the backbone at ``iteration`` (None: selection)."""
        return iteration is None or check_int(iteration, "iteration", minimum=0) >= \
            self.detach_after

    def forward(self, features: torch.Tensor, iteration: int | None = None):
        """The estimator's output on ``features`` (detached from ``detach_after`` on).

        Pass ``iteration=None`` outside training (selection); the features
        are then detached too.
        """
        return self.estimator(features.detach() if self.detached(iteration) else features)

    def loss(self, out, target: torch.Tensor | None = None, ignore_index: int = 255):
        """``weight`` times the estimator's loss (Eq. 8 + auxiliary cross-entropy); a scalar."""
        return self.weight * self.estimator.loss(out, target, ignore_index=ignore_index)

    def density(self, out) -> torch.Tensor:
        """``(B, h, w)`` coverage densities of ``out`` (detached)."""
        return self.estimator.density(out)

    def param_group(self, base_lr: float) -> dict:
        """The optimiser group of the estimator's parameters, at ``lr_mult * base_lr``.

        Pass it to ``optimizer.add_param_group``; :meth:`set_lr` finds it again
        by its ``"name"``.
        """
        base_lr = check_positive_float(base_lr, "base_lr")
        return {"params": list(self.estimator.parameters()), "lr": base_lr * self.lr_mult,
                "name": GROUP_NAME}

    def set_lr(self, optimizer: torch.optim.Optimizer, base_lr: float) -> None:
        """Set the estimator group's rate to ``lr_mult * base_lr`` (call after the script's schedule)."""
        groups = [g for g in optimizer.param_groups if g.get("name") == GROUP_NAME]
        if len(groups) != 1:
            raise ValueError(f"optimizer must hold exactly one group from param_group(); "
                             f"found {len(groups)}")
        groups[0]["lr"] = check_positive_float(base_lr, "base_lr") * self.lr_mult
