"""Selection rounds inside an mmengine / mmsegmentation run: :class:`SelectionHook`
and :class:`ActiveLabels`.

Two pieces, both plain Python on top of mmengine (no compiled op):

* :class:`SelectionHook`, an ``mmengine.hooks.Hook``: at the iterations
  ``rounds_at`` (``runner.iter``, checked before each training iteration) it
  runs the model over a loader of the target images, reads their logits and
  a feature map, and records one round in an
  :class:`~densecore.ActiveLabelState` with :func:`~densecore.query_round`
  (every image of a batch in one selection, each seeded by
  :func:`~densecore.image_seed`);
* :class:`ActiveLabels`, a data-pipeline transform (a callable on the
  pipeline's ``results`` dict): it replaces ``results["gt_seg_map"]`` of a
  target image by the labels stored in the state (255 outside the labeled
  pixels), so the training loader trains on the queried labels only. Put it
  right after ``LoadAnnotations`` (before any resize, crop or flip), or in
  its place for target images that have no label file.

The model's outputs come from ``outputs=fn(model, inputs, data_samples)``
or, by default, from :func:`segmentor_outputs`, which reads an
mmsegmentation ``EncoderDecoder``: ``model.extract_feat(inputs)`` (the
backbone and neck stages), ``model.decode_head(feats)`` (the logits at the
decode head's resolution) and, when the model has a ``density`` attribute
holding a :class:`~densecore.DensityTrainer`, the estimator's features and
densities on ``feats[feature_level]``.

Batches already loaded when a round runs (the current one and those that
data-loader workers prefetched) keep the labels they were loaded with; the
next ones read the new labels (the state re-reads its manifest when it
changed, also in persistent workers).

Distributed: every rank runs its own shard of the target loader (mmengine's
``DefaultSampler`` shards it) and records the images it sees; the state's
writers serialise through a file lock and a repeated image is recorded once
(the same pixels again are a no-op), so ``root`` must be on a file system all
ranks see. A barrier follows, then every rank checks that the round is on
disk for every image.

Install with ``pip install "densecore-seg[mmseg]"`` (mmengine only). Configs
that name the hook and the transform by ``type=`` need :func:`register`
called once before the runner is built.

Shape:
    inputs ``(B, 3, H', W')`` after the model's data preprocessor (padded at
    the bottom and right); logits ``(B, C, h, w)``; features ``(B, D, h, w)``;
    densities ``(B, h, w)``; labels ``(H, W)`` at the state's shape of each
    image (the ``ori_shape`` of the image).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import densecore
from densecore.validation import check_int, check_steps

try:
    from mmengine.dist import barrier, get_dist_info
    from mmengine.hooks import Hook
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("densecore.integrations.mmseg needs mmengine: "
                      "pip install \"densecore-seg[mmseg]\"") from exc

log = logging.getLogger(__name__)

__all__ = ["ActiveLabels", "SelectionHook", "image_id_from_path", "register",
           "segmentor_outputs"]


def image_id_from_path(path: str) -> str:
    """The state's image id of an image file: its file name without the extension.

    Example:
        >>> image_id_from_path("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png")
        'aachen_000000_000019_leftImg8bit'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a string; got {type(path).__name__}")
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def _unwrap(model):
    # MMDistributedDataParallel and friends keep the model in .module
    return model.module if hasattr(model, "module") and not hasattr(model, "extract_feat") \
        else model


def segmentor_outputs(model, inputs: torch.Tensor, data_samples=None, *,
                      feature_level: int = -1) -> dict:
    """Logits, features and densities of an mmsegmentation ``EncoderDecoder``.

    Calls ``model.extract_feat(inputs)`` and ``model.decode_head(feats)``
    (``BaseDecodeHead.forward``: logits before any resize). The features are
    ``feats[feature_level]``; when ``model.density`` is a
    :class:`~densecore.DensityTrainer` (or an estimator such as
    :class:`~densecore.DMCEstimator`), they are replaced by its output's
    ``features`` and the densities are its ``density(...)``; otherwise the
    densities are None (a sampler that takes none, e.g.
    :class:`~densecore.KCenterGreedy`).

    Args:
        model: the segmentor (unwrapped from its distributed wrapper).
        inputs: ``(B, 3, H', W')`` images after ``model.data_preprocessor``.
        data_samples: the batch's data samples (unused here; the signature of
            every ``outputs=`` function).
        feature_level: which stage of ``extract_feat`` the selection sees.

    Returns:
        ``{"logits": (B, C, h, w), "features": (B, D, h', w'), "densities":
        (B, h', w') or None}``.
    """
    feats = model.extract_feat(inputs)
    logits = model.decode_head(feats)
    x = feats[feature_level] if isinstance(feats, (list, tuple)) else feats
    density = getattr(model, "density", None)
    if isinstance(density, torch.nn.Module) and callable(getattr(density, "density", None)):
        est = density(x)  # a DensityTrainer (detached outside training) or an estimator
        return {"logits": logits, "features": est.features, "densities": density.density(est)}
    return {"logits": logits, "features": x, "densities": None}


def _crop_resize(x: torch.Tensor, valid: tuple[int, int], padded: tuple[int, int],
                 size: tuple[int, int] | None) -> torch.Tensor:
    """Drop the bottom/right padding of a map over the padded input, then resize.

    ``x`` ``(1, C, h, w)`` covers ``padded`` input pixels of which the top-left
    ``valid`` are the image; the kept part is resized to ``size`` (bilinear),
    or left at its own resolution when ``size`` is None.
    """
    h, w = x.shape[-2:]
    if tuple(valid) != tuple(padded):
        kh = max(1, round(h * valid[0] / padded[0]))
        kw = max(1, round(w * valid[1] / padded[1]))
        x = x[..., :kh, :kw]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return x


def _meta(sample) -> dict:
    meta = getattr(sample, "metainfo", None)
    if meta is None and isinstance(sample, Mapping):
        meta = sample
    if meta is None:
        raise TypeError(f"data samples must carry a metainfo (mmengine BaseDataElement); "
                        f"got {type(sample).__name__}")
    return meta


def _gt(sample):
    """``(H, W)`` int64 ground truth of an mmseg data sample, or None."""
    gt = getattr(sample, "gt_sem_seg", None)
    if gt is None:
        return None
    data = gt.data if hasattr(gt, "data") else gt
    data = torch.as_tensor(data)
    return data[0] if data.ndim == 3 else data


class SelectionHook(Hook):
    """Run selection rounds at given iterations of an mmengine runner.

    Args:
        state: the run's :class:`~densecore.ActiveLabelState` (every image id
            of it is a target image), or the path of an existing state.
        rounds_at: strictly increasing iterations (``runner.iter``), one per
            round (the paper: 10000, 12000, 14000, 16000, 18000 of 40000).
        budget: picks per image per round (pixels, or regions with
            ``region_size > 1``).
        dataloader: the target images for selection: a ``DataLoader`` or an
            mmengine dataloader config (built by ``runner.build_dataloader``
            before training), its dataset's pipeline ending in mmseg's
            ``PackSegInputs`` (no random augmentation).
        outputs: ``fn(model, inputs, data_samples) -> {"logits" or "probs",
            "features", "densities"}`` (maps as in :func:`segmentor_outputs`;
            a ``densities`` that is not a tensor goes to
            :func:`~densecore.query_round` as it is), or None for
            :func:`segmentor_outputs`.
        image_id: ``fn(img_path) -> id`` (default :func:`image_id_from_path`).
        record_labels: store each data sample's ``gt_sem_seg`` at the queried
            pixels (a simulated annotator); False records the queries only
            (a human labels them, see :mod:`densecore.annotate`).
        on_round_end: optional ``fn(runner, round, state)`` called on every
            rank once the round is on disk.
        sampler, seed, alpha, score, region_size, region_overlap:
            as in :func:`~densecore.query_round` (default sampler:
            :data:`~densecore.samplers.DEFAULT_SAMPLER`, seeded per image).

    Example:
        >>> import tempfile, densecore
        >>> state = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (8, 8))
        >>> SelectionHook(state, rounds_at=[10, 20], budget=4, dataloader=None)
        SelectionHook(rounds_at=[10, 20], budget=4, done=0)
    """

    priority = "NORMAL"

    def __init__(self, state, rounds_at: Sequence[int], budget: int, dataloader, *,
                 outputs=None, image_id=image_id_from_path, record_labels: bool = True,
                 on_round_end=None, sampler=densecore.samplers.DEFAULT_SAMPLER, seed: int = 0,
                 alpha: float = 20, score="margin", region_size: int = 1,
                 region_overlap: str = "block") -> None:
        if isinstance(state, (str, os.PathLike)):
            state = densecore.ActiveLabelState(state)
        if not isinstance(state, densecore.ActiveLabelState):
            raise TypeError(f"state must be a densecore.ActiveLabelState or its root; got "
                            f"{type(state).__name__}")
        steps = check_steps(rounds_at, "rounds_at", "iterations")
        for name, fn in (("outputs", outputs), ("image_id", image_id),
                         ("on_round_end", on_round_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None; got {type(fn).__name__}")
        self.state = state
        self.rounds_at = steps
        self.budget = check_int(budget, "budget", minimum=0)
        self.dataloader = dataloader
        self.outputs = outputs
        self.image_id = image_id
        self.record_labels = bool(record_labels)
        self.on_round_end = on_round_end
        self.options = {"sampler": sampler, "seed": seed, "alpha": alpha, "score": score,
                        "region_size": region_size, "region_overlap": region_overlap}
        self.done = 0  # rounds known to be complete on disk
        self._loader = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rounds_at={self.rounds_at}, budget={self.budget}, "
                f"done={self.done})")

    # ------------------------------------------------------------------ mmengine hooks
    def before_train(self, runner) -> None:
        if self.dataloader is None:
            raise ValueError("dataloader must be a DataLoader or an mmengine dataloader "
                             "config of the target images; got None")
        self._loader = runner.build_dataloader(self.dataloader, seed=getattr(runner, "seed", None))
        self.done = 0
        while self.done < len(self.rounds_at) and self.round_complete(self.done):
            self.done += 1
        log.info("%d of %d selection rounds already on disk", self.done, len(self.rounds_at))
        self._catch_up(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._catch_up(runner)

    # ------------------------------------------------------------------ the rounds
    def round_complete(self, round: int) -> bool:
        """True when every image of the state has ``round`` on disk."""
        return not self.state.images_without(round)

    def _catch_up(self, runner) -> None:
        while self.done < len(self.rounds_at) and runner.iter >= self.rounds_at[self.done]:
            self.run_round(runner, self.done)
            self.done += 1

    def run_round(self, runner, round: int) -> None:
        """Select the images of this rank's loader for ``round``, then wait for every rank."""
        model = _unwrap(runner.model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in self._loader:
                    self._select(model, batch, round)
        finally:
            model.train(was_training)
        _, world = get_dist_info()
        if world > 1:
            barrier()
        self.state.require_round(round, "every rank has finished: does the dataloader yield "
                                        "every image of the state, and is the state's root "
                                        "shared by all ranks?")
        log.info("selection round %d done at iteration %d", round, runner.iter)
        if self.on_round_end is not None:
            self.on_round_end(runner, round, self.state)

    def _select(self, model, batch, round: int) -> None:
        samples = batch["data_samples"] if isinstance(batch, Mapping) else None
        if samples is None:
            raise TypeError("the selection dataloader must yield mmengine batches (dicts with "
                            "'inputs' and 'data_samples', as mmseg's PackSegInputs makes)")
        known = set(self.state.image_ids)
        ids = []
        for s in samples:
            meta = _meta(s)
            if "img_path" not in meta:
                raise ValueError("data samples of the selection dataloader must have an "
                                 "'img_path' in their metainfo (the image id comes from it)")
            i = self.image_id(meta["img_path"])
            if i not in known:
                raise ValueError(f"image {meta['img_path']!r} gives image id {i!r}, which is "
                                 f"not one of the {len(known)} images of the label state")
            ids.append(i)
        if all(self.state.round_done(i, round) for i in ids):
            return
        data = model.data_preprocessor(batch, False)
        inputs, samples = data["inputs"], data["data_samples"]
        out = (self.outputs or segmentor_outputs)(model, inputs, samples)
        if not isinstance(out, Mapping) or "features" not in out or \
                not ("logits" in out or "probs" in out):
            raise ValueError("outputs must return a mapping with 'logits' (or 'probs') and "
                             "'features' (and 'densities', None for a sampler that takes none)")
        densities = out.get("densities")
        sampler = self.options["sampler"]
        if densities is None and getattr(densecore.samplers.make_sampler(sampler),
                                         "uses_densities", False):
            raise ValueError(f"the sampler {sampler!r} needs densities, and the model's "
                             "outputs gave none: give the model a density attribute (a "
                             "densecore.DensityTrainer), return 'densities' from outputs= "
                             "('knn' for kNN densities on the candidates), or pass "
                             "sampler='kcenter'")
        padded = tuple(inputs.shape[-2:])
        groups: dict[tuple[int, int], list[int]] = {}
        for b, i in enumerate(ids):
            groups.setdefault(self.state.shape(i), []).append(b)
        for shape, rows in groups.items():  # one query_round per label shape
            probs, feats, dens, labels = [], [], [], []
            for b in rows:
                valid = tuple(_meta(samples[b]).get("img_shape", padded))[:2]
                if "probs" in out:
                    p = _crop_resize(out["probs"][b:b + 1], valid, padded, shape)
                else:
                    lg = _crop_resize(out["logits"][b:b + 1], valid, padded, None)
                    p = F.interpolate(lg.float(), size=shape, mode="bilinear",
                                      align_corners=False).softmax(1)
                probs.append(p)
                feats.append(_crop_resize(out["features"][b:b + 1], valid, padded, None))
                if isinstance(densities, torch.Tensor):
                    dens.append(_crop_resize(densities[b:b + 1, None], valid, padded, None)[:, 0])
                if self.record_labels:
                    gt = _gt(samples[b])
                    if gt is None:
                        raise ValueError(f"record_labels=True needs each data sample's "
                                         f"gt_sem_seg; image {ids[b]!r} has none")
                    if tuple(gt.shape) != shape:
                        raise ValueError(f"gt_sem_seg of image {ids[b]!r} is {tuple(gt.shape)} "
                                         f"but the label state's shape is {shape}; load the "
                                         f"annotations at the original size (LoadAnnotations "
                                         f"after Resize in the selection pipeline)")
                    labels.append(gt)
            fshape = {tuple(f.shape[-2:]) for f in feats}
            if len(fshape) > 1:  # different paddings: one call per image
                for k, b in enumerate(rows):
                    self._query(round, [ids[b]], probs[k], feats[k],
                                dens[k] if dens else densities, labels[k:k + 1] or None)
                continue
            self._query(round, [ids[b] for b in rows], torch.cat(probs), torch.cat(feats),
                        torch.cat(dens) if dens else densities,
                        torch.stack(labels) if labels else None)

    def _query(self, round, ids, probs, feats, dens, labels) -> None:
        if labels is not None and not isinstance(labels, torch.Tensor):
            labels = torch.stack(labels)
        densecore.query_round(self.state, round, ids, probs, feats, dens, self.budget,
                              labels=None if labels is None else labels.cpu(),
                              **self.options)


class ActiveLabels:
    """A data-pipeline transform: the ground truth of a target image becomes its queried labels.

    Replaces ``results["gt_seg_map"]`` by ``state.labels(image_id)``
    (``(H, W)`` uint8, ``ignore_index`` outside the labeled pixels; all
    ``ignore_index`` before the first round) for every image of the state, and
    leaves other images (the labeled source domain) untouched. Place it right
    after ``LoadAnnotations``, before any geometric transform; for target
    images without label files use it instead of ``LoadAnnotations``.

    The state is opened read-only on first use in each process (data-loader
    workers included) and re-reads its manifest when a round was added.

    Args:
        root: the root of the :class:`~densecore.ActiveLabelState` that holds
            the labels (the hook's state with ``record_labels=True``, or the
            state :mod:`densecore.annotate` imports a human's labels into).
        image_id: ``fn(img_path) -> id`` (default :func:`image_id_from_path`).
        ignore_index: the value of unlabeled pixels (mmseg: 255).

    Example:
        >>> import tempfile, numpy as np, densecore
        >>> root = tempfile.mkdtemp()
        >>> state = densecore.ActiveLabelState(root, ["t0"], (2, 2))
        >>> state.add("t0", np.eye(2, dtype=bool), round=0, labels=np.full((2, 2), 3))
        >>> t = ActiveLabels(root)
        >>> t({"img_path": "target/t0.png", "ori_shape": (2, 2)})["gt_seg_map"].tolist()
        [[3, 255], [255, 3]]
        >>> source = {"img_path": "source/s0.png", "gt_seg_map": np.ones((2, 2), int)}
        >>> t(source)["gt_seg_map"].tolist()  # not a target image: unchanged
        [[1, 1], [1, 1]]
    """

    def __init__(self, root, *, image_id=image_id_from_path, ignore_index: int = 255) -> None:
        if isinstance(root, densecore.ActiveLabelState):
            root = root.root
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be the path of a label state; got {type(root).__name__}")
        if not callable(image_id):
            raise TypeError(f"image_id must be callable; got {type(image_id).__name__}")
        self.root = os.fspath(root)
        self.image_id = image_id
        self.ignore_index = check_int(ignore_index, "ignore_index",
                                                           minimum=0)
        self._state = None
        self._ids: set[str] = set()

    def __getstate__(self) -> dict:  # data-loader workers open their own state
        return {**self.__dict__, "_state": None, "_ids": set()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, ignore_index={self.ignore_index})"

    def __call__(self, results: dict) -> dict:
        if "img_path" not in results:
            raise ValueError("ActiveLabels needs results['img_path'] (put it after "
                             "LoadImageFromFile)")
        if self._state is None:
            self._state = densecore.ActiveLabelState(self.root)
            self._ids = set(self._state.image_ids)
        i = self.image_id(results["img_path"])
        if i not in self._ids:
            return results
        shape = self._state.shape(i)
        if self._state.rounds(i):
            labels = self._state.labels(i, ignore_index=self.ignore_index)
        else:
            labels = np.full(shape, self.ignore_index,
                             np.uint8 if self.ignore_index <= 255 else np.uint16)
        have = results.get("ori_shape")
        if have is not None and tuple(have)[:2] != shape:
            raise ValueError(f"image {i!r} was loaded at {tuple(have)[:2]} but the label state "
                             f"records shape {shape}")
        results["gt_seg_map"] = labels
        fields = results.setdefault("seg_fields", [])
        if "gt_seg_map" not in fields:
            fields.append("gt_seg_map")
        return results


def register() -> None:
    """Register :class:`SelectionHook` and :class:`ActiveLabels` in mmengine's registries.

    Needed only for config files that name them by ``type=``; passing the
    objects themselves (``custom_hooks=[SelectionHook(...)]``, a pipeline
    holding ``ActiveLabels(...)``) needs no registry. mmsegmentation's
    registries look names up in mmengine's. Calling it again is a no-op.
    """
    from mmengine.registry import HOOKS, TRANSFORMS

    for registry, cls in ((HOOKS, SelectionHook), (TRANSFORMS, ActiveLabels)):
        if registry.get(cls.__name__) is not cls:
            registry.register_module(module=cls, force=True)
