"""The paper's method inside RIPU's training script (Xie et al., CVPR 2022).

RIPU's own entry points first: :func:`RegionSelection` and :func:`PixelSelection`
take RIPU's arguments (``cfg``, ``feature_extractor``, ``classifier``,
``tgt_epoch_loader``), read its loader's dicts and write its files, so that in
RIPU's ``train.py`` one import line changes (``from
densecore.integrations.ripu import PixelSelection, RegionSelection``). They run
the paper's selection (kNN densities from the backbone's features unless a
``density=`` estimator is given) or, with ``sampler="ripu"``, RIPU's own.

The rest of this module is the paper's training-side change and densecore's
own round loop (:func:`select_round` with an
:class:`~densecore.ActiveLabelState`), for scripts that are RIPU-like but not
RIPU's. RIPU trains DeepLab on a labeled source and an unlabeled target and,
at fixed iterations, queries 3x3 regions of the target images, writes their
labels to disk and trains on them from then on. The paper keeps that loop and
changes four places; each is one call here (with RIPU's own script, the
first three and ``density=density`` in the selection call):

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
top ``alpha * budget`` pixels, then the one default sampler of every entry point
(:data:`~densecore.samplers.DEFAULT_SAMPLER`, k-center greedy), or any other
``sampler`` (the paper's Algorithm 1: ``"density_aware"``); with ``region_overlap="block"`` (RIPU's rule) and
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

import io
import logging
import math
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import densecore

from .. import validation as V
from ..io import atomic_write
from ..regions import blocked_candidates
from ..samplers.names import canonical_name

log = logging.getLogger(__name__)

__all__ = ["PixelSelection", "RegionSelection", "add_density", "density_loss",
           "export_for_loader", "margin_loss", "ripu_pixels_per_round",
           "ripu_regions_per_round", "round_budget", "select_round"]


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
                 density: densecore.DensityTrainer | None, *,
                 sampler=densecore.samplers.DEFAULT_SAMPLER, seed: int = 0, alpha: float = 20,
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
        density: from :func:`add_density`, or None: kNN densities on each
            image's candidates from the backbone's features (``densities="knn"``).
        sampler: as in :func:`~densecore.query_round`; default
            :data:`~densecore.samplers.DEFAULT_SAMPLER`, seeded per image.
        seed, alpha, score, region_size, region_overlap: as in
            :func:`~densecore.query_round` (RIPU: 3x3 regions, ``"block"``).

    Returns:
        ``list[str]``: the ids recorded by this call.

    Example:
        >>> import tempfile, torch, densecore
        >>> backbone, classifier = torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Conv2d(8, 4, 1)
        >>> state = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (16, 16))
        >>> labels = torch.zeros(2, 16, 16, dtype=torch.long)
        >>> batch = (torch.randn(2, 3, 16, 16), labels, ["a", "b"])
        >>> select_round(state, 0, [batch], 2, backbone, classifier, None, alpha=4)  # kNN
        ['a', 'b']
        >>> 2 <= int(state.labeled("a").sum()) <= 18  # two disjoint 3x3 regions, clipped
        True
    """
    modules = [m for m in (backbone, classifier, density) if m is not None]
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
            probs = F.interpolate(classifier(feats), labels.shape[-2:], mode="bilinear",
                                  align_corners=False).softmax(1)
            if density is None:
                x, dens = feats, "knn"
            else:
                est = density(feats)  # iteration=None: no gradients, no backbone update
                x, dens = est.features, density.density(est)
            done += densecore.query_round(
                state, round, ids, probs, x, dens, budget,
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


# --- RIPU's own entry points: RegionSelection / PixelSelection -----------------------------
#
# RIPU's train.py calls ``RegionSelection(cfg=cfg, feature_extractor=..., classifier=...,
# tgt_epoch_loader=...)`` (or ``PixelSelection``) at each of ``cfg.ACTIVE.SELECT_ITER``.
# Its target loader (Cityscapes, split "active", batch size 1) yields dicts with
# ``img`` (B, 3, h, w) network input, ``origin_mask`` / ``origin_label`` (B, H, W) int64
# at the original resolution (the current label mask, 255 = unlabeled; the ground-truth
# train ids), ``size`` (B, 2) = (H, W), ``active`` / ``selected`` (B, H, W) bool (pixels
# that can no longer be centres; pixels labeled), ``path_to_mask`` /
# ``path_to_indicator`` (B paths). A round writes, per image, the mask PNG (uint8: the
# ground-truth train id at every selected pixel, the old mask elsewhere) to
# ``path_to_mask`` (OUTPUT_DIR/gtMask/train/<city>/<name>_gtFine_labelIds.png) and
# ``torch.save({"active": (H, W) bool, "selected": (H, W) bool})`` to
# ``path_to_indicator`` (OUTPUT_DIR/gtIndicator/train/<city>/<name>_indicator.pth).

_PAPER = object()  # sampler= not given: select_pixels' own default sampler
_KEYS = ("img", "origin_mask", "origin_label", "size", "active", "selected", "path_to_mask",
         "path_to_indicator")
_MASK_SUFFIX = "_gtFine_labelIds.png"
_RIPU_LOG_C = math.log(19)  # RIPU divides its region entropies by log 19 for any class count


def ripu_regions_per_round(shape, ratio: float, rounds: int, k: int = 1) -> int:
    """RIPU's region count per image and round, in RIPU's arithmetic.

    ``ceil(H * W * (ratio / rounds) / (2k+1)**2)`` with ``H * W`` an int64 tensor
    times a Python float, i.e. in float32, as RIPU's ``RegionSelection`` computes
    it from the loader's ``size`` (it can differ by one from the exact
    :func:`~densecore.region_budget` where the exact value is an integer).

    Example:
        >>> ripu_regions_per_round((1024, 2048), 0.022, 5)
        1026
        >>> ripu_regions_per_round((64, 128), 0.05, 2)
        23
    """
    h, w = (int(v) for v in shape)
    n = torch.tensor(h) * torch.tensor(w)
    return math.ceil(n * (ratio / rounds) / (2 * k + 1) ** 2)


def ripu_pixels_per_round(pixels: int, rounds: int) -> int:
    """RIPU's pixel count per image and round: ``ceil(pixels / rounds / (1280 * 640) *
    (2048 * 1024))``, whatever the image size (RIPU's ``PixelSelection``).

    Example:
        >>> ripu_pixels_per_round(40, 5)
        21
    """
    return math.ceil(pixels / rounds / (1280 * 640) * (2048 * 1024))


def RegionSelection(cfg, feature_extractor, classifier, tgt_epoch_loader, *,  # noqa: N802
                    density: densecore.DensityTrainer | None = None, sampler=_PAPER,
                    seed: int | None = None, alpha: float = 20, score="margin",
                    progress: bool = True) -> None:
    """RIPU's region selection, called as RIPU calls its own; the paper's selection by default.

    In RIPU's ``train.py`` one import line changes::

        from densecore.integrations.ripu import PixelSelection, RegionSelection

    Per loader batch (every image of the batch in one
    :func:`~densecore.select_pixels` call, each with its own seed): the model's
    logits (``classifier(feature_extractor(img), size=img size)``, upsampled to
    the original size as RIPU does), the candidates (``score``, default the
    margin ``1 - P1 + P2``: the top ``alpha * budget`` centres whose
    ``(2K+1)``-blocks do not overlap and that are not ``active``), and the
    sampler's choice among them, with the image's ``selected`` pixels as the
    labeled set. Then RIPU's bookkeeping: each centre labels its ``(2K+1) x
    (2K+1)`` block (``selected``; the ground truth is written to the mask),
    and the ``(4K+1)``-window around it becomes ``active`` (no later centre
    there), exactly as RIPU.

    Args:
        cfg: RIPU's config (``cfg.ACTIVE.RATIO``, ``RADIUS_K``, ``SELECT_ITER``,
            ``cfg.MODEL.NUM_CLASSES``, ``cfg.OUTPUT_DIR``; ``cfg.SEED`` when
            ``seed`` is None).
        feature_extractor: RIPU's backbone: ``img -> {"out": (B, C_feat, h, w),
            ...}`` (a plain tensor is taken too).
        classifier: ``classifier(feat, size=(h_in, w_in)) -> (B, C, h_in, w_in)``
            logits.
        tgt_epoch_loader: RIPU's active target loader (dicts, see the section
            comment above).
        density: a :class:`~densecore.DensityTrainer` (:func:`add_density`)
            trained in the loop: its features and densities are used. None: the
            backbone's ``"out"`` features with kNN densities computed on each
            image's candidates (``densities="knn"``; noted once in the log).
        sampler: not given: :func:`~densecore.select_pixels`' default; a name
            of :data:`~densecore.samplers.SAMPLER_NAMES`, a class, an instance
            or None (score only); ``"ripu"``: RIPU's own selection, exactly
            (its score, its float32 arithmetic, its pick order: the maximum,
            ties to the lowest column then row, as ``torch.max`` on the CPU).
        seed: the run's seed (default ``cfg.SEED`` when ``>= 0``, else 0); an
            image's first pick is seeded with
            ``image_seed(seed, n, "<city>/<name>")``, ``n`` its pixels selected
            before, so a redone round gets the same seeds.
        alpha, score: as in :func:`~densecore.select_pixels` (unused by
            ``"ripu"``).
        progress: a tqdm bar over the loader.

    Budget: RIPU's, ``ceil(H * W * RATIO / len(SELECT_ITER) / (2K+1)**2)``
    regions per image (:func:`ripu_regions_per_round`). Both models are left
    in train mode (and ``density``), as RIPU leaves them.

    Example:
        >>> import os, tempfile, torch
        >>> from types import SimpleNamespace as NS
        >>> out = tempfile.mkdtemp()
        >>> cfg = NS(ACTIVE=NS(RATIO=0.05, RADIUS_K=1, SELECT_ITER=[1, 2]),
        ...          MODEL=NS(NUM_CLASSES=3), OUTPUT_DIR=out, SEED=0)
        >>> class Head(torch.nn.Conv2d):
        ...     def forward(self, feat, size=None):
        ...         return torch.nn.functional.interpolate(super().forward(feat["out"]), size)
        >>> backbone = lambda x: {"out": x[:, :2, ::2, ::2]}
        >>> mask = os.path.join(out, "gtMask/train/aachen/aachen_0_gtFine_labelIds.png")
        >>> ind = os.path.join(out, "gtIndicator/train/aachen/aachen_0_indicator.pth")
        >>> batch = {"img": torch.randn(1, 3, 16, 16), "size": torch.tensor([[16, 16]]),
        ...          "origin_mask": torch.full((1, 16, 16), 255),
        ...          "origin_label": torch.zeros(1, 16, 16, dtype=torch.long),
        ...          "active": torch.zeros(1, 16, 16, dtype=torch.bool),
        ...          "selected": torch.zeros(1, 16, 16, dtype=torch.bool),
        ...          "path_to_mask": [mask], "path_to_indicator": [ind]}
        >>> RegionSelection(cfg=cfg, feature_extractor=backbone, classifier=Head(2, 3, 1),
        ...                 tgt_epoch_loader=[batch], sampler="ripu", progress=False)
        >>> ripu_regions_per_round((16, 16), 0.05, 2)  # one 3x3 region per image and round
        1
        >>> import numpy as np; from PIL import Image
        >>> sel = torch.load(ind)["selected"]
        >>> int(sel.sum()) <= 9, bool((np.array(Image.open(mask)) == 0).sum() == sel.sum())
        (True, True)
    """
    _selection("region", cfg, feature_extractor, classifier, tgt_epoch_loader, density,
               sampler, seed, alpha, score, progress)


def PixelSelection(cfg, feature_extractor, classifier, tgt_epoch_loader, *,  # noqa: N802
                   density: densecore.DensityTrainer | None = None, sampler=_PAPER,
                   seed: int | None = None, alpha: float = 20, score="margin",
                   progress: bool = True) -> None:
    """RIPU's pixel selection, called as RIPU calls its own; the paper's selection by default.

    As :func:`RegionSelection` with single pixels: RIPU's budget
    ``ceil(PIXELS / len(SELECT_ITER) / (1280 * 640) * (2048 * 1024))`` pixels
    per image and round (:func:`ripu_pixels_per_round`), each chosen pixel
    ``selected`` and the ``(2K+1)``-window around it ``active`` (RIPU's
    ``RADIUS_K``, 32 in its pixel configs). With ``sampler="ripu"`` RIPU's own
    selection, exactly (entropy times the spatial purity of the predicted
    classes over the window, pick-suppress-repeat); by default the pixels are
    candidates and the sampler spreads them in feature space (the window is
    not enforced inside a round; ``active`` pixels are never chosen).
    Arguments as in :func:`RegionSelection`.
    """
    _selection("pixel", cfg, feature_extractor, classifier, tgt_epoch_loader, density,
               sampler, seed, alpha, score, progress)


def _options(cfg, mode: str):
    """``(K, rounds, num_classes, output_dir, ratio or pixels)`` read from RIPU's cfg."""
    try:
        act, k = cfg.ACTIVE, cfg.ACTIVE.RADIUS_K
        rounds, classes, out = len(act.SELECT_ITER), cfg.MODEL.NUM_CLASSES, cfg.OUTPUT_DIR
        amount = act.RATIO if mode == "region" else act.PIXELS
    except AttributeError as e:
        raise TypeError(f"cfg must be RIPU's config (cfg.ACTIVE.RATIO / PIXELS / RADIUS_K / "
                        f"SELECT_ITER, cfg.MODEL.NUM_CLASSES, cfg.OUTPUT_DIR); {e}") from None
    k = V.check_int(k, "cfg.ACTIVE.RADIUS_K", minimum=0)
    if rounds < 1:
        raise ValueError("cfg.ACTIVE.SELECT_ITER must name at least one iteration; got none")
    classes = V.check_int(classes, "cfg.MODEL.NUM_CLASSES", minimum=1)
    if mode == "region":
        amount = V.check_finite_float(amount, "cfg.ACTIVE.RATIO")
        if not 0 < amount <= 1:
            raise ValueError(f"cfg.ACTIVE.RATIO must lie in (0, 1]; got {amount}")
    else:
        amount = V.check_int(amount, "cfg.ACTIVE.PIXELS", minimum=1)
    return k, rounds, classes, str(out), amount


def _image_id(path: str, out_dir: str) -> str:
    """``"<city>/<name>"`` of a gtMask path (its path below OUTPUT_DIR/gtMask/<split>)."""
    rel = os.path.relpath(path, os.path.join(out_dir, "gtMask"))
    parts = rel.replace(os.sep, "/").split("/")
    rel = "/".join(parts[1:]) if len(parts) > 2 and not rel.startswith("..") else \
        os.path.basename(path)
    return rel[:-len(_MASK_SUFFIX)] if rel.endswith(_MASK_SUFFIX) else rel


def _indicator(t, shape, name: str) -> torch.Tensor:
    """RIPU's ``active`` / ``selected`` as ``(B, H, W)`` bool; the first round's
    one-element placeholder (RIPU's initial indicator) reads as all False."""
    t = torch.as_tensor(t)
    if tuple(t.shape[-2:]) == tuple(shape[-2:]) and t.ndim == 3:
        return t.to(torch.bool)
    if t.numel() == shape[0]:  # torch.tensor([0]) per image: nothing selected yet
        return torch.zeros(shape, dtype=torch.bool)
    raise ValueError(f"tgt_epoch_loader's '{name}' must have shape {tuple(shape)} (B, H, W) "
                     f"like 'origin_mask'; got {tuple(t.shape)}")


def _ripu_score(logit: torch.Tensor, mode: str, k: int, classes: int) -> torch.Tensor:
    """RIPU's score of one image, ``(H, W)`` float32 from logits ``(1, C, H, W)``, with
    RIPU's arithmetic (region: impurity x mean entropy over the window, both over log
    19; pixel: the pixel's entropy x the window's impurity; entropies with ``+ 1e-6``
    in the log; window sums as convolutions with ones, zero padding)."""
    size = 2 * k + 1
    p = torch.softmax(logit.squeeze(0), dim=0)
    entropy = torch.sum(-p * torch.log(p + 1e-6), dim=0)
    one_hot = F.one_hot(torch.argmax(p, dim=0), num_classes=classes).float()
    one_hot = one_hot.permute((2, 0, 1)).unsqueeze(0)
    ones = torch.ones((classes, 1, size, size), dtype=torch.float32, device=logit.device)
    counts = F.conv2d(one_hot, ones, None, 1, size // 2, 1, classes)  # class counts
    total = torch.sum(counts, dim=1, keepdim=True)
    share = counts / total
    impurity = torch.sum(-share * torch.log(share + 1e-6), dim=1, keepdim=True)
    if mode == "pixel":
        return (entropy * impurity.squeeze(0).squeeze(0))
    entropy = entropy.unsqueeze(0).unsqueeze(0) / _RIPU_LOG_C
    window = F.conv2d(entropy, ones[:1], None, 1, size // 2)
    score = (impurity / _RIPU_LOG_C) * (window / total)
    return score.squeeze(0).squeeze(0)


def _ripu_centres(score: torch.Tensor, active: torch.Tensor, budget: int,
                  reach: int) -> torch.Tensor:
    """RIPU's pick-suppress-repeat on one image: ``(n,)`` flat centres ``y * W + x``.

    RIPU sets ``score[active] = -inf`` and takes ``budget`` times the maximum (two
    ``torch.max`` calls: ties to the lowest column, then the lowest row), blocking
    the window of Chebyshev radius ``reach`` around it. The scan of
    :func:`~densecore.regions.blocked_candidates` on the transposed map gives the
    same centres (its ties go to the lowest flat index of the transpose); once
    every pixel is blocked RIPU's maximum is pixel (0, 0), taken again.
    """
    h, w = score.shape
    c = blocked_candidates(score.T.contiguous()[None], budget, active.T.contiguous()[None],
                           reach=reach, validate=False)[0]
    c = c[c >= 0]
    c = (c % h) * w + torch.div(c, h, rounding_mode="floor")
    if c.numel() < budget:  # RIPU re-picks (0, 0) of an all -inf map
        c = torch.cat([c, c.new_zeros(1)])
    return c


def _dilate(m: torch.Tensor, r: int) -> torch.Tensor:
    """``(H, W)`` bool: pixels within Chebyshev distance ``r`` of a True pixel (clipped)."""
    if r == 0:
        return m.clone()
    return F.max_pool2d(m[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def _write(path_mask: str, path_indicator: str, mask: torch.Tensor, active: torch.Tensor,
           selected: torch.Tensor) -> None:
    """RIPU's two files of one image, each written to a temporary file and renamed."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is in the ripu and test extras
        raise ImportError("writing RIPU's mask PNGs needs pillow: from a checkout of "
                          "densecore, pip install -e \".[ripu]\"") from None
    for p in (path_mask, path_indicator):
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(mask.cpu().numpy().astype(np.uint8)).save(buf, format="PNG")
    atomic_write(path_mask, buf.getvalue())
    buf = io.BytesIO()
    torch.save({"active": active.cpu().clone(), "selected": selected.cpu().clone()}, buf)
    atomic_write(path_indicator, buf.getvalue())


def _selection(mode, cfg, feature_extractor, classifier, loader, density, sampler, seed,
               alpha, score, progress) -> None:
    k, rounds, classes, out_dir, amount = _options(cfg, mode)
    if seed is None:
        seed = getattr(cfg, "SEED", -1)
        seed = seed if isinstance(seed, int) and seed >= 0 else 0
    seed = V.check_int(seed, "seed", minimum=0)
    if isinstance(sampler, str):
        sampler = canonical_name(sampler)  # checks the name before any work
    models = [m for m in (feature_extractor, classifier, density)
              if isinstance(m, torch.nn.Module)]
    for m in models:
        m.eval()
    first = next((p for m in models for p in m.parameters()), None)
    dev = torch.device("cpu") if first is None else first.device
    noted, images, picks = False, 0, 0
    try:
        with torch.no_grad():
            for data in tqdm(loader, disable=not progress, desc=f"{mode} selection"):
                missing = [key for key in _KEYS if key not in data]
                if missing:
                    raise ValueError(f"tgt_epoch_loader must yield RIPU's dicts with keys "
                                     f"{list(_KEYS)}; missing {missing}")
                n, knn = _select_batch(mode, data, feature_extractor, classifier, density,
                                       sampler, seed, alpha, score, k, rounds, classes,
                                       out_dir, amount, dev)
                if knn and not noted:
                    log.info("%s: no density= given: kNN coverage densities are computed "
                             "on each image's candidates (densities='knn')",
                             "RegionSelection" if mode == "region" else "PixelSelection")
                    noted = True
                images, picks = images + len(data["path_to_mask"]), picks + n
    finally:
        for m in models:  # RIPU leaves its models in train mode
            m.train()
    log.info("%s selection: %d centres in %d images", mode, picks, images)


def _select_batch(mode, data, feature_extractor, classifier, density, sampler, seed, alpha,
                  score, k, rounds, classes, out_dir, amount, dev) -> tuple[int, bool]:
    """One loader batch: select, update ``active``/``selected``, write the files;
    ``(centres picked, whether kNN densities were computed)``."""
    img = data["img"].to(dev)
    feat = feature_extractor(img)
    out = classifier(feat, size=img.shape[-2:])
    old = torch.as_tensor(data["origin_mask"])
    gt = torch.as_tensor(data["origin_label"])
    bsz, big_h, big_w = old.shape
    sizes = [(int(s[0]), int(s[1])) for s in torch.as_tensor(data["size"]).tolist()]
    if any(s != (big_h, big_w) for s in sizes):
        raise ValueError(f"tgt_epoch_loader's 'size' must be the (H, W) of 'origin_mask' "
                         f"{(big_h, big_w)}; got {sizes}")
    active = _indicator(data["active"], (bsz, big_h, big_w), "active").to(dev)
    selected = _indicator(data["selected"], (bsz, big_h, big_w), "selected").to(dev)
    # RIPU: the logits of each image upsampled to its original size, corners aligned
    logits = F.interpolate(out, size=(big_h, big_w), mode="bilinear", align_corners=True)
    if mode == "region":
        budget, reach, grow = ripu_regions_per_round((big_h, big_w), amount, rounds, k), \
            2 * k, k
    else:
        budget, reach, grow = ripu_pixels_per_round(amount, rounds), k, 0
    knn = False
    if isinstance(sampler, str) and sampler == "ripu":  # RIPU's own loop, image by image
        centres = [_ripu_centres(_ripu_score(logits[i:i + 1], mode, k, classes),
                                 active[i], budget, reach) for i in range(bsz)]
    else:
        x = feat["out"] if isinstance(feat, Mapping) else feat
        if density is not None:
            est = density(x)  # iteration None: detached
            x, dens = est.features, density.density(est)
        else:
            dens = "knn"
        ids = [_image_id(p, out_dir) for p in data["path_to_mask"]]
        seeds = [densecore.image_seed(seed, int(selected[i].sum()), ids[i])
                 for i in range(bsz)]
        kw = {} if sampler is _PAPER else {"sampler": sampler}
        _, seen = densecore.select_pixels(
            logits, x, dens, budget, labeled=selected, ignore=active & ~selected,
            alpha=alpha, score=score, region_size=2 * grow + 1, region_overlap="block",
            seed=seeds, from_logits=True, return_candidates=True, **kw)
        centres = [c.candidates[c.selected.to(c.candidates.device)] for c in seen]
        knn = density is None and any(c.densities is not None for c in seen)
    for i in range(bsz):
        hit = torch.zeros(big_h * big_w, dtype=torch.bool, device=dev)
        hit[centres[i].to(dev)] = True
        hit = hit.view(big_h, big_w)
        new = _dilate(hit, grow)
        act, sel = active[i] | _dilate(hit, reach), selected[i] | new
        mask = torch.where(new.cpu(), gt[i], old[i])  # the ground truth where selected
        _write(data["path_to_mask"][i], data["path_to_indicator"][i], mask, act, sel)
    return sum(int(c.numel()) for c in centres), knn
