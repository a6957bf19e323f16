"""A round's queries as Label Studio tasks, and the finished tasks back as labels.

Export (:func:`label_studio_tasks`): one task per image done in the round,
in Label Studio's JSON import format::

    {"data": {"image": <url>, "image_id": <id>, "round": r},
     "predictions": [{"model_version": ..., "score": ...,
                      "result": [<one brushlabels result per predicted class>]}]}

The pre-annotation covers exactly the queried pixels, each painted with the
model's predicted class (a ``brushlabels`` result in Label Studio's brush RLE
with ``original_width``/``original_height`` of the image), so the annotator
sees where to label and corrects the classes. :func:`label_studio_config`
gives the matching labeling config (an ``Image`` and a ``BrushLabels`` tag).

Import (:func:`import_label_studio`): the project's export in Label Studio's
JSON format (a list of tasks with ``annotations``). Per task the latest
annotation that was not cancelled is read; its ``brushlabels``,
``polygonlabels``, ``rectanglelabels`` (rotation included) and
``keypointlabels`` results paint their pixels (later results over earlier
ones) with the class id of their label through ``class_names``; the answers
are checked and recorded by :func:`~densecore.annotate.record_answers`
(pixels outside the queries refused, partial tasks pending).

Shape:
    predictions ``(H, W)`` int class ids per image at the state's shape;
    scores ``(H, W)`` float in ``[0, 1]``; coordinates in results are percent
    of the image width/height, as Label Studio writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from xml.sax.saxutils import quoteattr

import numpy as np

from ..validation import check_int
from .answers import (NO_ANSWER, ImportReport, UnknownClassError, class_ids,
                      class_names_by_id, record_answers)
from .rle import brush_rle_decode, brush_rle_encode
from .shapes import point_mask, polygon_mask, rectangle_polygon

__all__ = ["import_label_studio", "label_studio_answers", "label_studio_config",
           "label_studio_tasks"]

_KINDS = ("brushlabels", "polygonlabels", "rectanglelabels", "keypointlabels")


def label_studio_config(class_names, *, from_name: str = "label",
                        to_name: str = "image") -> str:
    """The labeling config (XML) of a project for these tasks: an image and brush labels.

    Example:
        >>> print(label_studio_config(["road", "car"]))
        <View>
          <Image name="image" value="$image" zoom="true"/>
          <BrushLabels name="label" toName="image">
            <Label value="road"/>
            <Label value="car"/>
          </BrushLabels>
        </View>
    """
    names = list(class_ids(class_names))
    labels = "".join(f"    <Label value={quoteattr(n)}/>\n" for n in names)
    return (f"<View>\n  <Image name={quoteattr(to_name)} value=\"$image\" zoom=\"true\"/>\n"
            f"  <BrushLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>\n"
            f"{labels}  </BrushLabels>\n</View>")


def _per_image(x, image_id: str, name: str):
    if x is None:
        return None
    if callable(x) and not isinstance(x, Mapping):
        return x(image_id)
    try:
        return x[image_id]
    except KeyError:
        raise ValueError(f"{name} has no entry for image {image_id!r}") from None


def _queried_images(state, round: int, predictions):
    """``(image_id, queried (H, W) bool, prediction (H, W) int)`` for every image whose
    ``round`` is recorded in ``state``, the prediction checked against its shape."""
    for image_id in state.image_ids:
        if not state.round_done(image_id, round):
            continue
        h, w = state.shape(image_id)
        pred = np.asarray(_per_image(predictions, image_id, "predictions"))
        if pred.shape != (h, w) or not np.issubdtype(pred.dtype, np.integer):
            raise ValueError(f"predictions[{image_id!r}] must be an ({h}, {w}) integer map; "
                             f"got {pred.dtype} {pred.shape}")
        yield image_id, state.queried(image_id, round), pred


def label_studio_tasks(state, round: int, images, predictions, *, class_names,
                       scores=None, from_name: str = "label", to_name: str = "image",
                       model_version: str = "densecore") -> list[dict]:
    """Label Studio tasks (import format) for the queries of ``round``, with pre-annotations.

    Args:
        state: the :class:`~densecore.ActiveLabelState` holding the queries.
        round: the selection round.
        images: ``{image_id: url}`` or ``fn(image_id) -> url``, what Label
            Studio loads as ``data.image``.
        predictions: ``{image_id: (H, W) int}`` (or ``fn(image_id)``), the
            model's predicted class of every pixel (``probs.argmax(1)``).
        class_names: names by class id (a list) or ``{name: id}``.
        scores: optional ``{image_id: (H, W) float}`` confidences (e.g. the
            top probability); a task's prediction score is their mean over the
            queried pixels.
        from_name, to_name: the names of the ``BrushLabels`` and ``Image``
            tags of the labeling config (:func:`label_studio_config`).
        model_version: the predictions' ``model_version``.

    Returns:
        ``list[dict]``, one task per image done in ``round`` (the state's
        order); write it with :func:`densecore.io.atomic_write_json`.

    Example:
        >>> import tempfile, numpy as np, densecore
        >>> s = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2))
        >>> s.add("a", np.eye(2, dtype=bool), round=0)
        >>> t = label_studio_tasks(s, 0, {"a": "/data/a.png"}, {"a": np.array([[1, 0], [0, 0]])},
        ...                        class_names=["road", "car"])
        >>> t[0]["data"], [r["value"]["brushlabels"] for r in t[0]["predictions"][0]["result"]]
        ({'image': '/data/a.png', 'image_id': 'a', 'round': 0}, [['road'], ['car']])
    """
    round = check_int(round, "round", minimum=0)
    names = class_names_by_id(class_names)
    tasks = []
    for image_id, q, pred in _queried_images(state, round, predictions):
        h, w = q.shape
        results = []
        for c in np.unique(pred[q]).tolist():
            if c not in names:
                raise ValueError(f"predictions[{image_id!r}] holds class id {c}, which "
                                 f"class_names does not name")
            results.append({
                "id": f"{image_id}-r{round}-c{c}", "type": "brushlabels",
                "from_name": from_name, "to_name": to_name,
                "original_width": w, "original_height": h, "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle_encode(q & (pred == c)),
                          "brushlabels": [names[c]]}})
        prediction = {"model_version": model_version, "result": results}
        sc = _per_image(scores, image_id, "scores")
        if sc is not None:
            sc = np.asarray(sc, dtype=np.float64)
            if sc.shape != (h, w):
                raise ValueError(f"scores[{image_id!r}] must be ({h}, {w}); got {sc.shape}")
            prediction["score"] = float(sc[q].mean()) if q.any() else 0.0
        url = _per_image(images, image_id, "images")
        if not isinstance(url, str):
            raise TypeError(f"images[{image_id!r}] must be a string (a URL or path); got "
                            f"{type(url).__name__}")
        tasks.append({"data": {"image": url, "image_id": image_id, "round": round},
                      "predictions": [prediction]})
    return tasks


def _label(result: dict, kind: str, ids: dict[str, int]) -> int:
    value = result.get("value", {})
    names = value.get(kind) or value.get("labels")
    if not names:
        raise ValueError(f"a {kind} result (id {result.get('id')!r}) has no label")
    if names[0] not in ids:
        raise UnknownClassError(names[0], ids)
    return ids[names[0]]


def _result_mask(result: dict, kind: str, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    ow, oh = result.get("original_width"), result.get("original_height")
    if ow is not None and oh is not None and (int(oh), int(ow)) != (h, w):
        raise ValueError(f"a {kind} result was drawn on a {ow}x{oh} image; the label state's "
                         f"image is {w}x{h}")
    v = result["value"]
    sx, sy = w / 100.0, h / 100.0  # percent -> pixels
    if kind == "brushlabels":
        if v.get("format", "rle") != "rle":
            raise ValueError(f"brush results must be in the 'rle' format; got {v.get('format')!r}")
        return brush_rle_decode(v["rle"], (h, w)) >= 128
    if kind == "rectanglelabels":
        poly = rectangle_polygon(v["x"] * sx, v["y"] * sy, v["width"] * sx, v["height"] * sy,
                                 v.get("rotation", 0.0))
        return polygon_mask(poly, (h, w))
    if kind == "polygonlabels":
        pts = np.asarray(v["points"], np.float64).reshape(-1, 2) * [sx, sy]
        return polygon_mask(pts, (h, w))
    return point_mask(v["x"] * sx, v["y"] * sy, (h, w))  # keypointlabels


def _latest(task: dict):
    anns = [a for a in task.get("annotations", task.get("completions", [])) or []
            if not a.get("was_cancelled")]
    if not anns:
        return None
    return max(enumerate(anns), key=lambda p: (str(p[1].get("updated_at") or
                                                   p[1].get("created_at") or ""), p[0]))[1]


def label_studio_answers(tasks, state, round: int, *, class_names) -> dict[str, np.ndarray]:
    """``{image_id: (H, W) int64}`` answers of exported tasks (``-1``: not labeled).

    Tasks of other rounds are skipped; a task without a finished annotation
    gives an all ``-1`` answer (pending).
    """
    round = check_int(round, "round", minimum=0)
    ids = class_ids(class_names)
    known = set(state.image_ids)
    out: dict[str, np.ndarray] = {}
    for k, task in enumerate(tasks):
        data = task.get("data", {}) if isinstance(task, Mapping) else None
        if data is None or "image_id" not in data:
            raise ValueError(f"task {k} has no data.image_id; import tasks made by "
                             f"label_studio_tasks (Label Studio keeps their data)")
        image_id = data["image_id"]
        if image_id not in known:
            raise ValueError(f"task {k}: image id {image_id!r} is not in the label state")
        if data.get("round", round) != round:
            continue
        shape = state.shape(image_id)
        answer = np.full(shape, NO_ANSWER, np.int64)
        ann = _latest(task)
        for result in (ann or {}).get("result", []):
            kind = result.get("type")
            if kind not in _KINDS:
                continue  # choices, text areas, ...: not pixel labels
            answer[_result_mask(result, kind, shape)] = _label(result, kind, ids)
        out[image_id] = answer
    return out


def import_label_studio(tasks, queries, labels, round: int, *, class_names,
                        outside: str = "error") -> ImportReport:
    """Record the finished Label Studio tasks of ``round`` in ``labels``.

    Args:
        tasks: Label Studio's JSON export (the list of tasks), or its path.
        queries: the state holding the round's queries (the tasks' source).
        labels: the state the answers go to (another root).
        round: the selection round.
        class_names: names by class id (a list) or ``{name: id}`` (e.g. a
            ``"void": 255`` entry for pixels the annotator cannot tell).
        outside: ``"error"`` or ``"drop"``, as in
            :func:`~densecore.annotate.record_answers`.

    Returns:
        :class:`~densecore.annotate.ImportReport` (recorded ids, pending ids
        with their unlabeled pixel counts).

    Raises:
        OutsideQueryError: a result covers pixels that were not queried.
        UnknownClassError: a label that ``class_names`` does not map.
    """
    if isinstance(tasks, (str, os.PathLike)):
        with open(tasks, encoding="utf-8") as f:
            tasks = json.load(f)
    if isinstance(tasks, Mapping):
        tasks = [tasks]
    answers = label_studio_answers(tasks, queries, round, class_names=class_names)
    return record_answers(queries, labels, round, answers, outside=outside)
