"""A round's queries as a COCO file with RLE masks, and an annotated COCO file back.

Export (:func:`coco_queries`): a COCO dict (``images``, ``categories``,
``annotations``) with one annotation per image and predicted class, whose
``segmentation`` is the uncompressed COCO RLE of the queried pixels the model
gives that class (the pre-annotation an annotator corrects, e.g. in CVAT's
COCO import). Each image entry also holds ``densecore_id`` and
``densecore_round``.

Import (:func:`import_coco`): the annotator's COCO file. Images are matched
by ``densecore_id`` or, without it, by the file name without extension;
categories by *name* through ``class_names`` (tools renumber category ids);
a segmentation is an RLE (list or compressed string counts) or polygons
(``[x1, y1, x2, y2, ...]`` in pixels, pixel centres inside). Later
annotations paint over earlier ones; then the answers are checked and
recorded by :func:`~densecore.annotate.record_answers`.

Shape:
    predictions ``(H, W)`` int class ids per image; scores ``(H, W)`` float.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from ..validation import check_int
from .answers import NO_ANSWER, ImportReport, UnknownClassError, class_ids, \
    class_names_by_id, record_answers
from .label_studio import _per_image, _queried_images
from .rle import coco_rle_decode, coco_rle_encode
from .shapes import polygon_mask

__all__ = ["coco_answers", "coco_queries", "import_coco"]


def coco_queries(state, round: int, predictions, *, class_names, file_names=None,
                 scores=None) -> dict:
    """A COCO dict of the queries of ``round``, pre-annotated with the model's classes.

    Args:
        state: the :class:`~densecore.ActiveLabelState` holding the queries.
        round: the selection round.
        predictions: ``{image_id: (H, W) int}`` (or ``fn(image_id)``), the
            model's predicted class of every pixel.
        class_names: names by class id (a list) or ``{name: id}``; the
            category ids are the class ids.
        file_names: ``{image_id: file name}`` (or a function); default
            ``<image_id>.png``.
        scores: optional ``{image_id: (H, W) float}``; an annotation's
            ``score`` is their mean over its pixels.

    Returns:
        ``{"images", "categories", "annotations"}``; write it with
        :func:`densecore.io.atomic_write_json`.

    Example:
        >>> import tempfile, numpy as np, densecore
        >>> s = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2))
        >>> s.add("a", np.eye(2, dtype=bool), round=0)
        >>> c = coco_queries(s, 0, {"a": np.zeros((2, 2), int)}, class_names=["road"])
        >>> c["annotations"][0]["segmentation"], c["annotations"][0]["bbox"]
        ({'size': [2, 2], 'counts': [0, 1, 2, 1]}, [0, 0, 2, 2])
    """
    round = check_int(round, "round", minimum=0)
    names = class_names_by_id(class_names)
    images, annotations = [], []
    for image_id, q, pred in _queried_images(state, round, predictions):
        h, w = q.shape
        sc = _per_image(scores, image_id, "scores")
        name = _per_image(file_names, image_id, "file_names") if file_names is not None \
            else f"{image_id}.png"
        k = len(images) + 1
        images.append({"id": k, "file_name": name, "height": h, "width": w,
                       "densecore_id": image_id, "densecore_round": round})
        for c in np.unique(pred[q]).tolist():
            if c not in names:
                raise ValueError(f"predictions[{image_id!r}] holds class id {c}, which "
                                 f"class_names does not name")
            m = q & (pred == c)
            ys, xs = np.nonzero(m)
            ann = {"id": len(annotations) + 1, "image_id": k, "category_id": c,
                   "segmentation": coco_rle_encode(m), "area": int(m.sum()),
                   "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                            int(ys.max() - ys.min() + 1)], "iscrowd": 0}
            if sc is not None:
                ann["score"] = float(np.asarray(sc, np.float64)[m].mean())
            annotations.append(ann)
    categories = [{"id": i, "name": n} for i, n in sorted(names.items())]
    return {"images": images, "categories": categories, "annotations": annotations}


def _segmentation_mask(seg, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(seg, Mapping):
        m = coco_rle_decode(seg)
        if m.shape != shape:
            raise ValueError(f"an RLE segmentation is {m.shape}; the image is {shape}")
        return m
    if isinstance(seg, list):  # polygons
        mask = np.zeros(shape, bool)
        for poly in seg:
            mask |= polygon_mask(np.asarray(poly, np.float64).reshape(-1, 2), shape)
        return mask
    raise ValueError(f"a segmentation must be an RLE dict or a list of polygons; got "
                     f"{type(seg).__name__}")


def coco_answers(coco: dict, state, round: int, *, class_names) -> dict[str, np.ndarray]:
    """``{image_id: (H, W) int64}`` answers of a COCO dict (``-1``: not labeled)."""
    round = check_int(round, "round", minimum=0)
    ids = class_ids(class_names)
    known = set(state.image_ids)
    cats = {}
    for c in coco.get("categories", []):
        if c["name"] not in ids:
            raise UnknownClassError(c["name"], ids)
        cats[c["id"]] = ids[c["name"]]
    by_k: dict = {}
    out: dict[str, np.ndarray] = {}
    for img in coco.get("images", []):
        image_id = img.get("densecore_id") or os.path.splitext(
            os.path.basename(img["file_name"]))[0]
        if image_id not in known:
            raise ValueError(f"COCO image {img.get('file_name')!r} gives image id "
                             f"{image_id!r}, which is not in the label state")
        if img.get("densecore_round", round) != round:
            continue
        by_k[img["id"]] = image_id
        out[image_id] = np.full(state.shape(image_id), NO_ANSWER, np.int64)
    for ann in coco.get("annotations", []):
        image_id = by_k.get(ann["image_id"])
        if image_id is None:
            continue
        if ann["category_id"] not in cats:
            raise ValueError(f"annotation {ann.get('id')!r} has category id "
                             f"{ann['category_id']}, which is not in the file's categories")
        m = _segmentation_mask(ann["segmentation"], state.shape(image_id))
        out[image_id][m] = cats[ann["category_id"]]
    return out


def import_coco(coco, queries, labels, round: int, *, class_names,
                outside: str = "error") -> ImportReport:
    """Record the answers of an annotated COCO file (dict or path) for ``round`` in ``labels``.

    Arguments and checks as in :func:`~densecore.annotate.import_label_studio`;
    an image of the file without annotations is pending.
    """
    if isinstance(coco, (str, os.PathLike)):
        with open(coco, encoding="utf-8") as f:
            coco = json.load(f)
    if not isinstance(coco, Mapping):
        raise TypeError(f"coco must be a COCO dict or its path; got {type(coco).__name__}")
    answers = coco_answers(coco, queries, round, class_names=class_names)
    return record_answers(queries, labels, round, answers, outside=outside)
