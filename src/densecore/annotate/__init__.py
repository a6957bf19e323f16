"""A person in the loop: a round's queries out to an annotation tool, the labels back in.

The round's queries are recorded in one :class:`~densecore.ActiveLabelState`
(by :func:`~densecore.query_round` without ``labels=``); they leave as
Label Studio tasks (:func:`label_studio_tasks`, brush pre-annotations with the
model's classes at the queried pixels) or a COCO file with RLE masks
(:func:`coco_queries`); the finished labels come back with
:func:`import_label_studio` / :func:`import_coco` into a second state, the one
the training data reads. Pixels labeled outside the queries raise
:class:`OutsideQueryError`; class names map to ids through ``class_names``
(an unknown name raises :class:`UnknownClassError`); an image whose queried
pixels are not all labeled stays pending (:class:`ImportReport`). Walk-through:
``docs/annotate.md``.

Shape:
    masks and class maps ``(H, W)`` at the state's shape of each image;
    answers ``(H, W)`` int64, ``-1`` where no label was given.
"""

from .answers import ImportReport, OutsideQueryError, UnknownClassError, class_ids, \
    record_answers
from .coco import coco_answers, coco_queries, import_coco
from .label_studio import (import_label_studio, label_studio_answers, label_studio_config,
                           label_studio_tasks)
from .rle import brush_rle_decode, brush_rle_encode, coco_rle_decode, coco_rle_encode

__all__ = [
    "ImportReport",
    "OutsideQueryError",
    "UnknownClassError",
    "brush_rle_decode",
    "brush_rle_encode",
    "class_ids",
    "coco_answers",
    "coco_queries",
    "coco_rle_decode",
    "coco_rle_encode",
    "import_coco",
    "import_label_studio",
    "label_studio_answers",
    "label_studio_config",
    "label_studio_tasks",
    "record_answers",
]
