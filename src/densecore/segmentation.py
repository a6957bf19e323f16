"""The per-image selection step: from a model's outputs to new pixel labels.

For each image (one round of Algorithm 1 with source-aided candidate filtering):

1. score every pixel (``1 - P1* + P2*`` by default) and keep the top
   ``alpha * budget`` pixels that are neither labeled nor ignored;
2. sample the feature map ``F`` and the coverage densities ``D`` bilinearly
   **at those candidate pixels only**, with the same arithmetic as
   ``F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)``
   (the full-resolution map, 512 MB for a 64-channel 1024x2048 image, is
   never built);
3. sample the image's already-labeled pixels the same way: they form the
   labeled set ``s0`` of Algorithm 1;
4. L2-normalise the sampled features (the paper's Implementation Details)
   and let the sampler pick ``budget`` of the candidates. The default, shared by
   every entry point (:data:`~densecore.samplers.DEFAULT_SAMPLER`), is
   :class:`~densecore.KCenterGreedy`: in the fixed-feature ladder
   (``examples/deeplab_ada/results/ladder/``) the paper's density-aware greedy
   never beat it (and was below it where a pair survived Holm), in the training
   study the two tie, and it stays fast at Cityscapes scale.
   :class:`~densecore.KMedoidsRefinement` (beyond the paper) lowered max ARD
   further in the benchmark, but each of its steps costs ``O(N * budget * D)``
   (minutes per image at 184,540 candidates and 9,227 picks on a CPU), so it
   is opt-in: ``sampler=KMedoidsRefinement(seed=seed)``. The paper's exact
   method is ``sampler=DensityAwareGreedy(seed=seed)``. ``sampler=None`` keeps
   the ``budget`` best-scored candidates (the "uncertainty only" baseline).

Region labels (``region_size=3``, RIPU's region setting): each pick labels
the ``region_size x region_size`` block centred on it, clipped at the image
border. A region is one budget unit: ``budget`` distinct centres are picked,
each an eligible pixel. Pixels of a block that are already labeled or
ignored are not set in the result, and blocks of two picks may overlap, so
an image gets between ``budget`` and ``budget * region_size**2`` new pixels.

Shape:
    probs ``(B, C, H, W)`` at label resolution; features ``(B, D, h, w)`` and
    densities ``(B, h, w)`` at the model's stride; labeled / ignore
    ``(B, H, W)`` bool; result ``(B, H, W)`` bool on the probabilities' device.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import validation as V
from .budgets import ripu_pixel_radius
from .filters import (entropy_score, least_confidence_score, margin_score, random_score,
                      ripu_score, top_candidates)
from .regions import blocked_candidates, ripu_select
from .samplers.names import DEFAULT_SAMPLER, make_sampler

log = logging.getLogger(__name__)

__all__ = ["ImageCandidates", "sample_at_pixels", "select_pixels"]

_SCORES = {
    "margin": margin_score,
    "entropy": entropy_score,
    "least_confidence": least_confidence_score,
}




def sample_at_pixels(maps: torch.Tensor, flat_idx: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
    """Bilinear samples of ``maps`` upsampled to ``size``, at the given pixels only.

    Equal (up to float rounding) to
    ``F.interpolate(maps[None], size=size, mode="bilinear",
    align_corners=False)[0].flatten(1)[:, flat_idx].T`` without building the
    upsampled map: output pixel ``(y, x)`` reads the source coordinate
    ``((y + 0.5) h / H - 0.5, (x + 0.5) w / W - 0.5)`` clamped to the map,
    i.e. ``grid_sample`` with ``align_corners=False``, ``padding_mode="border"``
    and the normalised coordinate ``(2 y + 1) / H - 1``.

    Args:
        maps: ``(C, h, w)`` float tensor.
        flat_idx: ``(N,)`` int64 indices ``y * W + x`` into the ``(H, W)`` grid.
        size: ``(H, W)`` output resolution.

    Returns:
        ``(N, C)`` tensor in ``maps``' dtype (16-bit maps are sampled in float32
        and returned as float32).

    Example:
        >>> import torch, torch.nn.functional as F
        >>> m = torch.arange(12.0).reshape(1, 3, 4)
        >>> idx = torch.tensor([0, 5, 47])
        >>> full = F.interpolate(m[None], size=(6, 8), mode="bilinear", align_corners=False)
        >>> torch.allclose(sample_at_pixels(m, idx, (6, 8))[:, 0], full.flatten()[idx])
        True
    """
    big_h, big_w = size
    x = maps if maps.dtype in (torch.float32, torch.float64) else maps.float()
    n = flat_idx.shape[0]
    if n == 0:
        return x.new_empty((0, x.shape[0]))
    yy = torch.div(flat_idx, big_w, rounding_mode="floor")
    xx = flat_idx - yy * big_w
    grid = torch.stack([(2 * xx + 1).to(torch.float64) / big_w - 1,
                        (2 * yy + 1).to(torch.float64) / big_h - 1], dim=-1).to(x.dtype)
    out = F.grid_sample(x[None], grid.view(1, 1, n, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, 0, :].T


@dataclass
class ImageCandidates:
    """What the sampler saw and chose for one image (``select_pixels(..., return_candidates=True)``).

    Attributes:
        candidates: ``(N,)`` int64 flat pixel indices ``y * W + x`` of the
            filtered candidates, best score first.
        features: ``(N, D)`` candidate features as given to the sampler
            (sampled at the candidates, L2-normalised when ``normalize``), or
            None for score-only ranking.
        densities: ``(N,)`` candidate densities, or None when the sampler
            takes none.
        selected: ``(budget,)`` int64 positions into ``candidates``, in
            selection order.
        labeled_features: ``(M, D)`` features of the image's labeled pixels
            (the set ``s0``), or None.
        labeled_densities: ``(M,)`` their densities, or None.
    """

    candidates: torch.Tensor
    features: torch.Tensor | None
    densities: torch.Tensor | None
    selected: torch.Tensor
    labeled_features: torch.Tensor | None = None
    labeled_densities: torch.Tensor | None = None


def _ripu_k(region_size: int, shape_ref) -> int:
    """RIPU's radius: ``region_size // 2`` for regions; for pixels (``region_size=1``)
    RIPU's pixel-setting window scaled with the label height
    (:func:`~densecore.budgets.ripu_pixel_radius`: 32 at 1024 x 2048)."""
    if region_size > 1:
        return region_size // 2
    return ripu_pixel_radius(tuple(shape_ref[-2:]))


def _scores(score, probs, shape_ref, from_logits, validate, seeds, region_size):
    if isinstance(score, str):
        if score == "random":  # per-image seeds: each image its own stream, as if alone
            b, _, h, w = shape_ref
            if isinstance(seeds, int):
                return random_score((b, h, w), seeds, device=probs.device)
            return torch.cat([random_score((1, h, w), s, device=probs.device) for s in seeds])
        if score == "ripu":  # RIPU's region score for blocks, its pixel score for pixels
            return ripu_score(probs, _ripu_k(region_size, shape_ref),
                              mode="region" if region_size > 1 else "pixel",
                              from_logits=from_logits, validate=validate)
        if score not in _SCORES:
            raise ValueError(f"score must be one of {sorted([*_SCORES, 'random', 'ripu'])} "
                             f"or a (B, H, W) tensor; got {score!r}")
        return _SCORES[score](probs, from_logits=from_logits, validate=validate)
    s = V.as_tensor_like(score, "score")
    b, _, h, w = shape_ref
    if not s.is_floating_point() or tuple(s.shape) != (b, h, w):
        raise ValueError(f"score tensor must be floating with shape {(b, h, w)}; got "
                         f"{s.dtype} {tuple(s.shape)}")
    return s


@dataclass
class _Inputs:
    """The checked inputs of :func:`select_pixels` (tensors on the probabilities' device)."""

    probs: torch.Tensor  # (B, C, H, W)
    seeds: list  # (B,) per-image seeds
    per_image_seeds: bool  # seed was given per image (passed to select_batch)
    feats: torch.Tensor | None  # (B, D, h, w), None for score-only ranking
    dens: torch.Tensor | None  # (B, h, w)
    labeled: torch.Tensor | None  # (B, H, W) bool
    ignore: torch.Tensor | None  # (B, H, W) bool
    sampler: object  # a sampler, None (score only) or "ripu"
    budget: int
    alpha: float
    region_size: int
    knn: object = None  # a KNNDensity: densities computed on each image's candidates

    @property
    def exclude(self) -> torch.Tensor | None:
        """``(B, H, W)`` bool: labeled or ignored pixels, or None."""
        if self.ignore is None:
            return self.labeled
        return self.ignore if self.labeled is None else self.labeled | self.ignore


def _channels_last(feats: torch.Tensor, big_h: int, big_w: int, dens_shape) -> bool:
    """Whether ``feats`` ``(B, ., ., .)`` reads as ``(B, h, w, D)`` rather than ``(B, D, h, w)``:
    its dims 1-2 match the densities' grid, or (without densities) they have the
    labels' aspect ratio and dims 2-3 do not."""
    _, a, b, c = feats.shape
    if dens_shape is not None and len(dens_shape) == 3:
        return tuple(dens_shape[1:]) == (a, b) and tuple(dens_shape[1:]) != (b, c)

    def off(h, w):  # how far (h, w) is from the labels' aspect ratio, as a log ratio
        return abs(math.log((h * big_w) / (w * big_h)))

    return off(a, b) < 0.2 and off(b, c) > 0.5


def _check_densities(densities, feats, bsz: int, probs_t):
    """``(densities tensor or None, KNNDensity or None)`` from the ``densities`` argument."""
    from .density.knn import KNNDensity

    if isinstance(densities, str):
        if densities != "knn":
            raise ValueError(f"densities must be a (B, h, w) array, 'knn', a KNNDensity or "
                             f"None; got {densities!r}")
        return None, KNNDensity()
    if isinstance(densities, KNNDensity):
        return None, densities
    if densities is None:
        return None, None
    dens = V.as_tensor_like(densities, "densities")
    want = (bsz, feats.shape[2], feats.shape[3])
    if tuple(dens.shape) != want or not dens.is_floating_point():
        raise ValueError(f"densities must be floating with shape {want} (the "
                         f"feature map's grid); got {dens.dtype} {tuple(dens.shape)}")
    V.check_same_device(probs_t, reference_name="probs", densities=dens)
    return dens, None


def _check(probs, features, densities, budget, labeled, ignore, alpha, sampler,
           region_size, region_overlap, seed, validate) -> _Inputs:
    """Checks of :func:`select_pixels`: shapes, devices, options; the default sampler."""
    probs_t = V.as_tensor_like(probs, "probs")
    if probs_t.ndim != 4:
        raise ValueError(f"probs must have shape (B, C, H, W); got shape "
                         f"{tuple(probs_t.shape)}")
    bsz, _, big_h, big_w = probs_t.shape
    budget = V.check_int(budget, "budget", minimum=0)
    region_size = V.check_region_size(region_size)
    if region_overlap not in ("allow", "block"):
        raise ValueError(f"region_overlap must be 'allow' or 'block'; got {region_overlap!r}")
    alpha = V.check_finite_float(alpha, "alpha", minimum=1.0)
    per_image = not isinstance(seed, (int, np.integer))
    seeds = V.check_per_pool(seed, bsz, "seed", minimum=0)
    # a name, a class or factory (called with seed=), an instance, None or "ripu"
    sampler = make_sampler(sampler, seeds[0] if seeds else 0, validate=validate)
    feats = dens = knn = None
    if sampler is not None and not isinstance(sampler, str):  # a greedy: features needed
        if features is None:
            raise ValueError("features is required unless sampler is None")
        feats = V.check_feature_map(V.as_tensor_like(features, "features"), "features")
        if feats.shape[0] != bsz:
            raise ValueError(f"features must have B = {bsz} images like probs; got shape "
                             f"{tuple(feats.shape)}")
        dens_shape = getattr(densities, "shape", None)
        if _channels_last(feats, big_h, big_w, dens_shape):
            raise ValueError(f"features must be channels-first (B, D, h, w); got shape "
                             f"{tuple(feats.shape)}, which reads as channels-last (B, h, w, "
                             f"D): pass features.permute(0, 3, 1, 2)")
        V.check_same_device(probs_t, reference_name="probs", features=feats)
        dens, knn = _check_densities(densities, feats, bsz, probs_t)
    shape = (bsz, big_h, big_w)
    lab = None if labeled is None else V.check_bool_map(labeled, shape, probs_t, "labeled")
    ign = None if ignore is None else V.check_bool_map(ignore, shape, probs_t, "ignore")
    return _Inputs(probs_t, seeds, per_image, feats, dens, lab, ign, sampler, budget, alpha,
                   region_size, knn)


def _zero_last_at_random(scores: torch.Tensor, inp: _Inputs) -> torch.Tensor:
    """``scores`` with every score ``<= 0`` moved below all positive ones, in a seeded
    random order (the image's seed, the random score's stream): no index order decides
    among pixels the score cannot tell apart."""
    b, _, h, w = inp.probs.shape
    if inp.per_image_seeds:
        u = torch.cat([random_score((1, h, w), s, device=scores.device) for s in inp.seeds])
    else:
        u = random_score((b, h, w), inp.seeds[0] if inp.seeds else 0, device=scores.device)
    return torch.where(scores > 0, scores, -1.0 - u.to(scores.dtype))


def _candidates(inp: _Inputs, scores: torch.Tensor, region_overlap: str, validate: bool,
                positive_only: bool = False):
    """Candidate filtering: ``(cand (B, k) int64 flat pixels, best first, -1 padded;
    eligible: candidates per image)``; names ``budget`` when an image has too few.

    ``positive_only`` (``score="ripu"`` with a greedy sampler): the pool holds the
    pixels with a positive score only; an image with fewer than ``budget`` of them
    is topped up to ``budget`` with zero-score pixels in a seeded random order."""
    bsz, _, big_h, big_w = inp.probs.shape
    if positive_only:
        scores = _zero_last_at_random(scores, inp)
    n_pix, budget, exclude = big_h * big_w, inp.budget, inp.exclude
    eligible = ([n_pix] * bsz if exclude is None
                else (~exclude).reshape(bsz, -1).sum(1).tolist())  # one small sync
    for b, e in enumerate(eligible):
        if e < budget:
            raise ValueError(f"budget must be at most the number of eligible pixels "
                             f"(neither labeled nor ignored) in every image; image {b} has "
                             f"{e}, got budget {budget}")
    k = (budget if inp.sampler is None
         else min(n_pix, max(budget, math.ceil(inp.alpha * budget))))
    if region_overlap == "block" and inp.region_size > 1:
        cand = blocked_candidates(scores, k, exclude, region_size=inp.region_size,
                                  validate=validate)
        eligible = (cand >= 0).sum(1).tolist()
        for b, e in enumerate(eligible):
            if e < budget:
                raise ValueError(f"budget must be at most the number of non-overlapping "
                                 f"regions (region_overlap='block') in every image; image "
                                 f"{b} has {e}, got budget {budget}")
    else:
        cand = top_candidates(scores, k, exclude, validate=validate)
    eligible = [min(k, e) for e in eligible]
    if positive_only:  # candidates are best first: the positive ones lead each row
        flat = scores.reshape(bsz, -1)
        pos = ((cand >= 0) & (flat.gather(1, cand.clamp_min(0)) > 0)).sum(1).tolist()
        eligible = [min(e, max(budget, p)) for e, p in zip(eligible, pos)]
    return cand, eligible


def _gather(inp: _Inputs, c: torch.Tensor, b: int, normalize: bool):
    """Features and densities of image ``b`` sampled at candidates ``c`` ``(N,)`` and at
    its labeled pixels: ``(f (N, D), d (N,) or None, lf (M, D) or None, ld (M,) or None)``."""
    size = tuple(inp.probs.shape[2:])
    feats, dens = inp.feats[b], None if inp.dens is None else inp.dens[b][None]
    f = sample_at_pixels(feats, c, size)
    d = None if dens is None else sample_at_pixels(dens, c, size)[:, 0]
    lf = ld = None
    if inp.labeled is not None:
        lab_idx = inp.labeled[b].reshape(-1).nonzero().squeeze(1)
        if lab_idx.numel():
            lf = sample_at_pixels(feats, lab_idx, size)
            lf = F.normalize(lf, dim=1) if normalize else lf
            ld = None if dens is None else sample_at_pixels(dens, lab_idx, size)[:, 0]
    f = F.normalize(f, dim=1) if normalize else f
    if inp.knn is not None and getattr(inp.sampler, "uses_densities", True):
        d, ld = _knn_densities(inp.knn, f, lf)  # k-center (uses_densities False): skipped
    return f, d, lf, ld


def _knn_densities(knn, f: torch.Tensor, lf: torch.Tensor | None):
    """kNN coverage densities of one image's candidates ``f`` ``(N, D)`` and labeled
    pixels ``lf`` ``(M, D)``, computed together (each point's neighbours among both):
    ``(d (N,), ld (M,) or None)`` in ``f``'s dtype and device. Fewer than ``knn.k + 1``
    points use ``k = n - 1``; a single point gets ``beta``."""
    x = f if lf is None else torch.cat([f, lf.to(f.dtype)])
    n = x.shape[0]
    if n < 2:
        d = torch.full((n,), knn.beta, dtype=f.dtype, device=f.device)
    else:
        if knn.k >= n:
            knn = copy.copy(knn)
            knn.k = n - 1
        d = torch.as_tensor(knn(x)).to(device=f.device, dtype=f.dtype)
    return d[:f.shape[0]], None if lf is None else d[f.shape[0]:]


def _select_all(sampler, budget: int, jobs: list, seeds: list | None) -> list:
    """The sampler's selection for each job ``(b, candidates, f, d, lf, ld)``, in order:
    all images in one ``select_batch`` call where the sampler has one (densecore's
    greedy samplers: :func:`~densecore.batch.farthest_first_batch` runs CPU images
    on threads and CUDA images in one launch per pick), else ``select`` per image.
    ``seeds``: the first-pick seed of each image (given to ``select_batch``), or None
    for the sampler's own seed."""
    batch = getattr(sampler, "select_batch", None)
    if not callable(batch) or (len(jobs) < 2 and seeds is None):
        return [sampler.select(f, budget, densities=d, labeled_features=lf,
                               labeled_densities=ld) for _, _, f, d, lf, ld in jobs]
    d = None if jobs[0][3] is None else torch.cat([j[3] for j in jobs])
    return batch(torch.cat([j[2] for j in jobs]), [j[2].shape[0] for j in jobs], budget,
                 densities=d, labeled_features=[j[4] for j in jobs],
                 labeled_densities=[j[5] for j in jobs],
                 seeds=None if seeds is None else [seeds[j[0]] for j in jobs])


def _mask(picks: list, inp: _Inputs) -> torch.Tensor:
    """``(B, H, W)`` bool mask of the picked flat pixels ``picks`` (one ``(budget,)``
    tensor per image), grown to ``region_size`` blocks without labeled or ignored
    pixels."""
    bsz, _, big_h, big_w = inp.probs.shape
    mask = torch.zeros((bsz, big_h * big_w), dtype=torch.bool, device=inp.probs.device)
    for b, p in enumerate(picks):
        mask[b, p] = True
    mask = mask.view(bsz, big_h, big_w)
    if inp.region_size > 1:
        r = inp.region_size // 2
        mask = F.max_pool2d(mask[:, None].to(torch.float32), inp.region_size, stride=1,
                            padding=r)[:, 0] > 0
        if inp.exclude is not None:
            mask &= ~inp.exclude
    return mask


def select_pixels(probs, features, densities, budget: int, *, labeled=None, ignore=None,
                  alpha: float = 20, sampler=DEFAULT_SAMPLER, score="margin", region_size: int = 1,
                  normalize: bool = True, seed=0, from_logits: bool = False,
                  validate: bool = True, region_overlap: str = "block",
                  return_candidates: bool = False):
    """Pick ``budget`` new pixels (or regions) per image: filter, gather, greedy.

    Args:
        probs: ``(B, C, H, W)`` class probabilities at label resolution (logits with
            ``from_logits=True``); numpy or a tensor on any device.
        features: ``(B, D, h, w)`` float feature map at the model's stride (same
            device); may be None when ``sampler`` is None.
        densities: ``(B, h, w)`` strictly positive coverage densities, or None;
            passed to every sampler (those that do not use them ignore them),
            unused by score-only ranking. ``"knn"`` (the frozen-feature path: no
            estimator to train) computes them per image with
            :class:`~densecore.KNNDensity` (k = 10) on the candidates' sampled
            features and the labeled pixels' together, in the geometry the sampler
            sees (L2-normalised with ``normalize``); a :class:`~densecore.KNNDensity`
            instance does the same with its options. Skipped for samplers whose
            ``uses_densities`` is False (k-center).
        budget: picks per image (pixels, or regions when ``region_size > 1``).
        labeled: ``(B, H, W)`` bool, pixels labeled in earlier rounds (never picked;
            they form ``s0``), or None.
        ignore: ``(B, H, W)`` bool, pixels that must never be labeled, or None.
        alpha: candidates per pick: the top ``ceil(alpha * budget)`` eligible
            pixels by score go to the sampler (the paper: 20 up to 2.2 %, 10 at 5 %).
        sampler: an object with the sampler protocol ``select(features, budget, *,
            densities=None, labeled_features=None, labeled_densities=None, ...)``
            returning a :class:`~densecore.Selection` whose ``indices`` are exactly
            ``budget`` distinct candidate indices; a sampler class or factory
            (called as ``sampler(seed=s)`` with the first image's seed, as
            :func:`~densecore.query_round` does); or a name of
            :data:`~densecore.samplers.SAMPLER_NAMES` (``"kcenter"``,
            ``"density_aware"``, ``"kmedoids_refinement"``, ``"typicality"``,
            ``"ripu"``), all through :func:`~densecore.samplers.make_sampler`; default
            :data:`~densecore.samplers.DEFAULT_SAMPLER` (``"kcenter"``, the default of
            every entry point; see the module docstring for why;
            ``"kmedoids_refinement"`` is opt-in, the paper's method is
            ``"density_aware"``); None ranks by score only. A sampler's options
            travel on the instance: ``sampler=KCenterGreedy(backend="triton",
            storage="bfloat16")`` (the opt-in 16-bit storage of the pool,
            ``docs/api.md``). With
            densecore's greedy samplers on CPU features, up to the thread limit
            of images are selected at once, one numba thread each (the picks
            are those of one image at a time; ``densecore._backends.threads(1)``
            around the call keeps one image at a time); on CUDA they share one
            kernel launch per pick with ``backend="triton"`` (opt-in until
            measured on a GPU). ``"ripu"``: RIPU's own
            selection on ``score`` (:func:`~densecore.regions.ripu_select`, region
            mode with ``k = region_size // 2``; for ``region_size=1`` RIPU's pixel
            setting, whose window scales with the label height:
            ``k = max(1, round(32 * H / 1024))``,
            :func:`~densecore.budgets.ripu_pixel_radius`, RIPU's ``RADIUS_K: 32``
            at 1024 x 2048; ``alpha``, ``features``, ``densities`` and
            ``region_overlap`` are unused: RIPU always suppresses).
        score: ``"margin"`` (``1 - P1* + P2*``), ``"entropy"``, ``"least_confidence"``,
            ``"random"`` (seeded by ``seed``), ``"ripu"`` (RIPU's region impurity
            times prediction uncertainty, :func:`~densecore.filters.ripu_score`,
            with ``k = region_size // 2``; for ``region_size=1`` its pixel score
            with RIPU's pixel window ``k = max(1, round(32 * H / 1024))``; any
            other ``k`` as a tensor), or a ``(B, H, W)`` float tensor of
            precomputed scores; higher is more informative. With a greedy
            ``sampler``, ``score="ripu"`` is a hybrid: RIPU's score picks the
            candidates, the sampler chooses among them. RIPU's score is 0 where
            the window is pure (one predicted class): such pixels carry no
            information by its measure, so the hybrid's pool holds the
            positive-score pixels only (at most ``ceil(alpha * budget)``); an
            image with fewer than ``budget`` of them is topped up to ``budget``
            with zero-score pixels in a random order seeded by ``seed``
            (never by index order, which would fill the top image rows).
        region_size: odd side of the block labeled around each pick (1: pixels).
        normalize: L2-normalise sampled candidate and labeled features.
        seed: an integer, or one integer per image (``(B,)``): the seed of each
            image's first pick (the default sampler's, and that of any sampler with
            ``select_batch``, which then receives them as ``seeds=``; other samplers
            keep their own seed) and of its random scores. Per-image seeds make an
            image's selection independent of the images it shares a call with.
        from_logits: ``probs`` holds logits.
        validate: scan inputs for bad values (device syncs on CUDA).
        region_overlap: ``"block"`` (the default): RIPU's rule, candidates are
            filtered with :func:`~densecore.regions.blocked_candidates` so that
            the blocks of any two picks of this call are disjoint and a round
            labels ``budget * region_size**2`` pixels, as budgets compared with
            RIPU's tables assume; ``"allow"``: blocks of two picks may overlap
            (fewer new pixels per round).
            No effect with ``region_size=1``.
        return_candidates: also return, per image, an :class:`ImageCandidates`
            with the candidates, their features and densities as the sampler
            saw them and the chosen positions (for tuning tau on a round's
            real candidates or for a round's bound report).

    Returns:
        ``(B, H, W)`` bool mask of the newly labeled pixels (numpy when ``probs``
        was numpy, else on ``probs``' device). With ``region_size=1`` each image
        has exactly ``budget`` of them; none is labeled or ignored. With
        ``return_candidates=True`` a pair ``(mask, [ImageCandidates] * B)``.

    Raises:
        ValueError: naming ``budget`` when an image has fewer than ``budget``
            eligible (neither labeled nor ignored) pixels; naming ``sampler`` when
            its selection is not ``budget`` distinct in-range candidate indices.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.softmax(torch.randn(2, 4, 16, 16, generator=g), 1)
        >>> feats = torch.randn(2, 8, 4, 4, generator=g)
        >>> dens = torch.rand(2, 4, 4, generator=g) + 0.5
        >>> new = select_pixels(probs, feats, dens, budget=5, alpha=4)
        >>> new.shape, new.sum((1, 2)).tolist()
        (torch.Size([2, 16, 16]), [5, 5])
    """
    from_logits = V.check_bool(from_logits, "from_logits")
    inp = _check(probs, features, densities, budget, labeled, ignore, alpha, sampler,
                 region_size, region_overlap, seed, validate)
    budget, sampler, dev = inp.budget, inp.sampler, inp.probs.device
    scores = _scores(score, inp.probs, inp.probs.shape, from_logits, validate,
                     inp.seeds if inp.per_image_seeds else int(seed), inp.region_size)
    if isinstance(sampler, str):  # "ripu" (the only string _check lets through)
        mask, centres = ripu_select(scores, budget,
                                    mode="region" if inp.region_size > 1 else "pixel",
                                    k=_ripu_k(inp.region_size, inp.probs.shape),
                                    labeled=inp.labeled,
                                    ignore=inp.ignore, validate=validate, return_centres=True)
        seen = [ImageCandidates(c, None, None, torch.arange(budget, device=dev))
                for c in centres]
    else:
        cand, eligible = _candidates(inp, scores, region_overlap, validate,
                                     positive_only=isinstance(score, str) and score == "ripu")
        picks, seen, jobs = [], [], []
        for b in range(inp.probs.shape[0]):
            c = cand[b, :eligible[b]]
            if sampler is None or budget == 0:
                picks.append(c[:budget])
                seen.append(ImageCandidates(c, None, None, torch.arange(
                    min(budget, c.numel()), device=c.device)))
            else:
                jobs.append((b, c, *_gather(inp, c, b, normalize)))
        sels = _select_all(sampler, budget, jobs, inp.seeds if inp.per_image_seeds else None)
        for (jb, jc, jf, jd, jlf, jld), sel in zip(jobs, sels):
            idx = V.check_selection(sel, budget, jc.numel(), type(sampler).__name__).to(dev)
            picks.append(jc[idx])
            seen.append(ImageCandidates(jc, jf, jd, idx, jlf, jld))
            log.debug("image %d: %d candidates, %d labeled, %d picks", jb, jc.numel(),
                      0 if jlf is None else jlf.shape[0], budget)
        mask = _mask(picks, inp)
    mask = mask.cpu().numpy() if not isinstance(probs, torch.Tensor) else mask
    return (mask, seen) if return_candidates else mask
