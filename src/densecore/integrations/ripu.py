"""The paper's method inside a RIPU-style training script (Xie et al., CVPR 2022).

RIPU trains DeepLab on a labeled source and an unlabeled target and, at fixed
iterations, queries 3x3 regions of the target images, writes their labels to
disk and trains on them from then on. The paper keeps that loop and changes
four places; each is one call here:

* after the optimiser is built: ``density = add_density(optimizer, 2048, 19,
  base_lr)``, a :class:`~densecore.DMCEstimator` (K = 5) in a
  :class:`~densecore.DensityTrainer` (its optimiser group at 10x the rate, its
  gradients stop reaching the backbone at iteration 18k);
* each step's learning-rate schedule: ``density.set_lr(optimizer, lr)``;
* each step's loss: ``+ density_loss(density, feats, label, iteration)`` for
  source and target, and ``+ margin_loss()(source_logits, source_label)``
  (Eq. 6, for the source-aided candidate filtering);
* each active iteration: ``select_round(state, r, batches, budget, backbone,
  classifier, density)`` in place of RIPU's region selection;
* after each round: ``export_for_loader(state, out_dir)`` (the label PNGs
  RIPU's target loader reads).

``select_round`` runs the paper's selection: margin-score filtering of the
top ``alpha * budget`` pixels, then the density-aware greedy (Algorithm 1,
:class:`~densecore.DensityAwareGreedy`) by default, or any other
``sampler``; with ``region_overlap="block"`` (RIPU's rule) and
``region_size=3`` a round labels exactly ``budget`` disjoint 3x3 regions per
image, less only blocks clipped at the border or labeled before. The budget
follows RIPU's accounting (:func:`round_budget`), each image gets its own
seed (:func:`~densecore.image_seed`), and the labels are recorded in an
:class:`~densecore.ActiveLabelState`, so a job killed in the middle of a
round restarts without redoing the images already recorded.

Shape:
    backbone features ``(B, C_feat, h, w)``; classifier output ``(B, C, h, w)``
    logits; labels ``(B, H, W)`` int64 at full resolution, 255 where void or
    unlabeled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import densecore

__all__ = ["add_density", "density_loss", "export_for_loader", "margin_loss", "round_budget",
           "select_round"]


def add_density(optimizer: torch.optim.Optimizer, in_channels: int, num_classes: int,
                base_lr: float, *, detach_after: int = 18000, dim: int = 64,
                kernel_size: int = 5, lr_mult: float = 10.0) -> densecore.DensityTrainer:
    """The density estimator of the paper, with its group added to ``optimizer``.

    Args:
        optimizer: the script's optimiser (its param group is appended).
        in_channels: channels of the backbone features (2048 for DeepLab-V2 on
            ResNet-101).
        num_classes: classes of the estimator's auxiliary classifier (19).
        base_lr: the backbone's base learning rate; the group starts at
            ``lr_mult * base_lr``.
        detach_after: first iteration whose estimator loss no longer reaches the
            backbone (18000 of 40000 in the paper).
        dim, kernel_size: of the :class:`~densecore.DMCEstimator` (64, 5).
        lr_mult: the estimator's rate relative to ``base_lr`` (10).

    Returns:
        :class:`~densecore.DensityTrainer`; call it as ``density(feats,
        iteration)``, step its rate with ``density.set_lr(optimizer, lr)``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> density = add_density(opt, 16, 4, 0.1, dim=8)
        >>> len(opt.param_groups), opt.param_groups[1]["lr"]
        (2, 1.0)
    """
    density = densecore.DensityTrainer(
        densecore.DMCEstimator(in_channels, dim=dim, kernel_size=kernel_size,
                               num_classes=num_classes),
        detach_after=detach_after, lr_mult=lr_mult)
    optimizer.add_param_group(density.param_group(base_lr))
    return density


def density_loss(density: densecore.DensityTrainer, features: torch.Tensor,
                 target: torch.Tensor, iteration: int) -> torch.Tensor:
    """The estimator's loss (Eq. 8 + auxiliary cross-entropy) at ``iteration``; a scalar.

    Args:
        density: from :func:`add_density`.
        features: ``(B, C_feat, h, w)`` backbone output of the step.
        target: ``(B, H, W)`` int64 labels, 255 where void or unlabeled.
        iteration: the training iteration (gradients reach the backbone before
            ``detach_after`` only).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> density = add_density(opt, 16, 4, 0.1, dim=8)
        >>> density_loss(density, torch.randn(1, 16, 6, 6),
        ...              torch.zeros(1, 6, 6, dtype=torch.long), 0).ndim
        0
    """
    return density.loss(density(features, iteration), target)


def margin_loss(ignore_index: int = 255) -> densecore.CategoryMarginLoss:
    """Eq. 6 on the source logits (``m = 1``), for the source-aided candidate filtering.

    Add ``margin_loss()(source_logits, source_label)`` to the source loss;
    the logits ``(B, C, H, W)`` at label resolution.

    Example:
        >>> import torch
        >>> loss = margin_loss()
        >>> float(loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)))
        3.0
    """
    return densecore.CategoryMarginLoss(margin=1.0, ignore_index=ignore_index,
                                        from_logits=True)


def round_budget(shape, *, ratio: float | None = None, pixels: int | None = None,
                 rounds: int = 5, region_size: int = 3,
                 train_shape=(640, 1280)) -> int:
    """Picks per image per round with RIPU's accounting: regions for a ratio, pixels for a count.

    Exactly one of ``ratio`` (region setting: ``ceil(H W ratio / rounds /
    region_size**2)`` regions, :func:`~densecore.region_budget`) and ``pixels``
    (pixel setting: ``pixels`` per image at ``train_shape`` over all rounds,
    rescaled to ``shape``, :func:`~densecore.pixel_budget`; select with
    ``region_size=1``).

    Example:
        >>> round_budget((1024, 2048), ratio=0.022), round_budget((1024, 2048), pixels=40)
        (1026, 21)
    """
    if (ratio is None) == (pixels is None):
        raise ValueError("give exactly one of ratio (region budget) and pixels (pixel "
                         f"budget); got ratio={ratio!r}, pixels={pixels!r}")
    if ratio is not None:
        return densecore.region_budget(shape, ratio, rounds, region_size)
    return densecore.pixel_budget(shape, pixels, rounds, train_shape)


@torch.no_grad()
def select_round(state: densecore.ActiveLabelState, round: int, batches, budget: int,
                 backbone: torch.nn.Module, classifier: torch.nn.Module,
                 density: densecore.DensityTrainer, *,
                 sampler=densecore.DensityAwareGreedy, seed: int = 0, alpha: float = 20,
                 score="margin", region_size: int = 3,
                 region_overlap: str = "block") -> list[str]:
    """One active round over the target images, in place of RIPU's region selection.

    The modules run in eval mode (restored afterwards) without gradients;
    batches whose images are all done (a resumed job) are not run at all.

    Args:
        state: the run's :class:`~densecore.ActiveLabelState`.
        round: 0, 1, ... (5 rounds in the paper).
        batches: iterable of ``(images, labels, image_ids)``: ``(B, 3, H_in,
            W_in)`` inputs, ``(B, H, W)`` int64 labels at the state's
            resolution (read only at the queried pixels: the annotator's
            answer) and ``B`` image ids of the state.
        budget: regions (or pixels with ``region_size=1``) per image, e.g.
            :func:`round_budget`.
        backbone: ``images -> (B, C_feat, h, w)`` features.
        classifier: ``features -> (B, C, h', w')`` logits (upsampled
            bilinearly to ``(H, W)`` and soft-maxed).
        density: from :func:`add_density`.
        sampler: as in :func:`~densecore.query_round`; default the paper's
            :class:`~densecore.DensityAwareGreedy`, seeded per image.
        seed, alpha, score, region_size, region_overlap: as in
            :func:`~densecore.query_round` (RIPU: 3x3 regions, ``"block"``).

    Returns:
        ``list[str]``: the ids recorded by this call.

    Example:
        >>> import tempfile, torch, densecore
        >>> backbone, classifier = torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Conv2d(8, 4, 1)
        >>> opt = torch.optim.SGD(backbone.parameters(), lr=0.1)
        >>> density = add_density(opt, 8, 4, 0.1, dim=8)
        >>> state = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (16, 16))
        >>> labels = torch.zeros(2, 16, 16, dtype=torch.long)
        >>> batch = (torch.randn(2, 3, 16, 16), labels, ["a", "b"])
        >>> select_round(state, 0, [batch], 2, backbone, classifier, density, alpha=4)
        ['a', 'b']
        >>> 2 <= int(state.labeled("a").sum()) <= 18  # two disjoint 3x3 regions, clipped
        True
    """
    modules = (backbone, classifier, density)
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    done = []
    try:
        for images, labels, ids in batches:
            ids = list(ids)
            if all(state.round_done(i, round) for i in ids):
                continue
            feats = backbone(images)
            est = density(feats)  # iteration=None: no gradients, no backbone update
            probs = F.interpolate(classifier(feats), labels.shape[-2:], mode="bilinear",
                                  align_corners=False).softmax(1)
            done += densecore.query_round(
                state, round, ids, probs, est.features, density.density(est), budget,
                labels=labels, sampler=sampler, seed=seed, alpha=alpha, score=score,
                region_size=region_size, region_overlap=region_overlap)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    return done


def export_for_loader(state: densecore.ActiveLabelState, out_dir, *,
                      split: str = "train") -> list[str]:
    """Label PNGs where a Cityscapes loader looks (255 = unlabeled); the written paths.

    ``out_dir/gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png`` per
    image with a done round (:meth:`~densecore.ActiveLabelState.export_labels`);
    point RIPU's active label path there after each round.
    """
    return state.export_labels(out_dir, layout="cityscapes", split=split)
