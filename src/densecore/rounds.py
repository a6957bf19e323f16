"""One selection round for a batch of images, recorded in an :class:`~densecore.ActiveLabelState`.

:func:`query_round` is the step a training script (or a framework hook such
as :mod:`densecore.integrations.lightning`) runs at each active iteration,
for each batch of target images: skip the images whose round is already on
disk (a resumed job), read each remaining image's labeled pixels from the
earlier rounds, give each image its own seed (:func:`~densecore.image_seed`:
the same on every rank and after a restart), select with
:func:`~densecore.select_pixels` and record the new pixels (and the
annotator's labels) in one manifest write.

The default sampler is that of every entry point,
:data:`~densecore.samplers.DEFAULT_SAMPLER` (k-center greedy, chosen by the
fixed-feature ladder; see :mod:`densecore.segmentation`); the paper's
density-aware greedy (Algorithm 1) is ``sampler="density_aware"``.

Shape:
    probs ``(B, C, H, W)`` at label resolution; features ``(B, D, h, w)``;
    densities ``(B, h, w)``; labels ``(B, H, W)`` int; ignore ``(B, H, W)`` bool;
    ``H, W`` equal to the state's shape of each image.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from . import validation as V
from .samplers.names import DEFAULT_SAMPLER
from .samplers.names import make_sampler
from .seeds import image_seed
from .segmentation import select_pixels

log = logging.getLogger(__name__)

__all__ = ["query_round"]


def _rows(x, name: str, bsz: int):
    if x is None or isinstance(x, str) or not hasattr(x, "__len__"):  # "knn", KNNDensity
        return x
    if len(x) != bsz:
        raise ValueError(f"{name} must have B = {bsz} images like image_ids; got "
                         f"{len(x)}")
    return x


def query_round(state, round: int, image_ids, probs, features, densities, budget: int, *,
                labels=None, ignore=None, sampler=DEFAULT_SAMPLER, seed: int = 0,
                alpha: float = 20, score="margin", region_size: int = 1,
                region_overlap: str = "block", from_logits: bool = False) -> list[str]:
    """Select ``budget`` pixels (or regions) in each image not yet done and record them.

    Args:
        state: the :class:`~densecore.ActiveLabelState` of the run.
        round: selection round, ``>= 0``; the labeled set of an image is its
            pixels recorded in the rounds before ``round``.
        image_ids: ``B`` ids of the state, one per row of ``probs``.
        probs, features, densities: as in :func:`~densecore.select_pixels`
            (``densities`` may be None for samplers that take none, or ``"knn"``:
            kNN coverage densities computed on each image's candidates, for a
            trained model without a density estimator).
        budget: picks per image (pixels, or regions when ``region_size > 1``).
        labels: ``(B, H, W)`` integer class maps (the annotator's answers: only
            the queried pixels are stored), or None to record masks only.
        ignore: ``(B, H, W)`` bool, pixels that must never be queried, or None.
        sampler: a sampler class or factory called as ``sampler(seed=s)``
            (default: :data:`~densecore.samplers.DEFAULT_SAMPLER`, k-center), a name of
            :data:`~densecore.samplers.SAMPLER_NAMES` (built with ``seed=s``), a
            sampler instance, or None (the ``budget`` best-scored pixels). Each image's
            first pick is seeded by ``s = image_seed(seed, round, image_id)``: a
            sampler with ``select_batch`` (densecore's greedy samplers) selects
            every image of the call at once (:func:`~densecore.farthest_first_batch`)
            with those seeds; any other is built once per image with its seed
            (a factory) or used as is (an instance), one image at a time.
        seed: the run's seed.
        alpha, score, region_size, region_overlap, from_logits: as in
            :func:`~densecore.select_pixels`, except that ``region_overlap``
            defaults to ``"block"`` (RIPU's rule: the regions of one round
            never overlap).

    Returns:
        ``list[str]``: the ids recorded by this call, in input order (images
        whose round was already done are skipped).

    Example:
        >>> import tempfile, torch, densecore
        >>> state = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (8, 8))
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.softmax(torch.randn(2, 3, 8, 8, generator=g), 1)
        >>> feats = torch.randn(2, 4, 4, 4, generator=g)
        >>> dens = torch.rand(2, 4, 4, generator=g) + 0.5
        >>> query_round(state, 0, ["a", "b"], probs, feats, dens, 3, alpha=4)
        ['a', 'b']
        >>> query_round(state, 0, ["a", "b"], probs, feats, dens, 3, alpha=4)  # done: skipped
        []
        >>> int(state.labeled("a").sum()), state.round_done("b", 0)
        (3, True)
    """
    round = V.check_int(round, "round", minimum=0)
    seed = V.check_int(seed, "seed", minimum=0)
    if isinstance(image_ids, str):
        raise TypeError("image_ids must be a sequence of strings; got a single string")
    ids = list(image_ids)
    bsz = len(ids)
    _rows(probs, "probs", bsz)
    _rows(features, "features", bsz)
    _rows(densities, "densities", bsz)
    _rows(labels, "labels", bsz)
    _rows(ignore, "ignore", bsz)
    if len(set(ids)) != bsz:
        raise ValueError(f"image_ids must be unique; got {bsz - len(set(ids))} repeated")
    todo = [b for b, i in enumerate(ids) if not state.round_done(i, round)]
    if not todo:
        return []
    as_numpy = not isinstance(probs, torch.Tensor)
    seeds = [image_seed(seed, round, ids[b]) for b in todo]
    prev = np.stack([state.labeled(ids[b], rounds=range(round)) for b in todo])
    if not as_numpy:
        prev = torch.from_numpy(prev).to(probs.device)
    rows = todo if len(todo) < bsz else slice(None)

    def pick(x):
        if x is None or isinstance(x, str):
            return x
        return x[rows] if isinstance(x, (torch.Tensor, np.ndarray)) else \
            [x[b] for b in todo]

    one = make_sampler(sampler, seeds[0])
    kw = dict(ignore=pick(ignore), alpha=alpha, score=pick(score), region_size=region_size,
              from_logits=from_logits, region_overlap=region_overlap)
    if one is None or isinstance(one, str) or callable(getattr(one, "select_batch", None)):
        # every image of the call in one selection (farthest_first_batch), each with
        # its own first-pick seed
        masks = list(select_pixels(pick(probs), pick(features), pick(densities), budget,
                                   labeled=prev, sampler=one, seed=seeds, **kw))
    else:  # a sampler without select_batch: one image at a time, each its own instance
        masks = [select_pixels(
            probs[b:b + 1], None if features is None else features[b:b + 1],
            densities if densities is None or not hasattr(densities, "__len__")
            or isinstance(densities, str) else densities[b:b + 1], budget,
            labeled=prev[i:i + 1], sampler=make_sampler(sampler, s), seed=s,
            **{**kw, "ignore": None if ignore is None else ignore[b:b + 1],
               "score": score if isinstance(score, str) else score[b:b + 1]})[0]
            for i, (b, s) in enumerate(zip(todo, seeds))]
    with state.batch():  # one manifest write for the batch
        for b, mask in zip(todo, masks):
            lab = None
            if labels is not None:
                lab = labels[b]
                lab = lab.detach().cpu().numpy() if isinstance(lab, torch.Tensor) else \
                    np.asarray(lab)
            state.add(ids[b], mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask,
                      round=round, labels=lab)
    log.debug("round %d: recorded %d of %d images", round, len(todo), bsz)
    return [ids[b] for b in todo]
