"""A person's answers to a round's queries, checked and recorded in a label state.

The queries of a round live in one :class:`~densecore.ActiveLabelState` (the
state :func:`~densecore.query_round` records into, masks only); the answers go
into a second state, the one the training data reads (e.g. through
``state.labels(image_id)`` or :class:`densecore.integrations.mmseg.ActiveLabels`).
A round of an image is recorded there only once every queried pixel has an
answer; an image with unanswered pixels stays pending (nothing recorded), so a
later import of the finished task records it. The next selection round reads
its labeled set from the queries, so pending pixels are not queried twice.

Shape:
    answers ``(H, W)`` int64 per image: a class id, or ``-1`` where the
    annotator gave none; pixel coordinates ``(y, x)`` = (row, column).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..validation import check_int

__all__ = ["ImportReport", "OutsideQueryError", "UnknownClassError", "class_ids",
           "record_answers"]

log = logging.getLogger(__name__)

NO_ANSWER = -1
OUTSIDE = ("error", "drop")


class OutsideQueryError(ValueError):
    """An answer labels pixels that were not queried in the round.

    Attributes:
        image_id: the image.
        pixels: ``(P, 2)`` int ``(y, x)`` of the offending pixels.
    """

    def __init__(self, image_id: str, round: int, pixels: np.ndarray):
        self.image_id, self.round, self.pixels = image_id, round, pixels
        y, x = (int(v) for v in pixels[0])
        super().__init__(f"the answer for image {image_id!r} labels {len(pixels)} pixels "
                         f"outside the queries of round {round} (first at y={y}, x={x}); "
                         f"label only the queried pixels, or import with outside='drop'")


class UnknownClassError(ValueError):
    """An answer names a class that ``class_names`` does not map to an id."""

    def __init__(self, name, known):
        self.name = name
        super().__init__(f"class name {name!r} is not in class_names (known: "
                         f"{sorted(known)[:20]}{' ...' if len(known) > 20 else ''})")


@dataclass
class ImportReport:
    """What an import recorded.

    Attributes:
        recorded: ids whose round is now in the label state (in input order;
            ids already recorded with the same answers included).
        pending: ``{image_id: unanswered queried pixels}`` for partial answers
            (nothing recorded for them).
        dropped: ``{image_id: answered pixels outside the queries}`` ignored
            with ``outside="drop"``.
    """

    recorded: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)


def class_ids(class_names) -> dict[str, int]:
    """``{name: id}`` from a sequence of names (id = position) or a mapping name -> id.

    Example:
        >>> class_ids(["road", "car"]), class_ids({"road": 0, "void": 255})
        ({'road': 0, 'car': 1}, {'road': 0, 'void': 255})
    """
    if isinstance(class_names, Mapping):
        out = {}
        for k, v in class_names.items():
            if not isinstance(k, str):
                raise TypeError(f"class_names keys must be strings; got {k!r}")
            out[k] = check_int(v, f"class_names[{k!r}]", minimum=0)
            if out[k] > 65535:
                raise ValueError(f"class_names[{k!r}] must lie in [0, 65535]; got {out[k]}")
        return out
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a list of names or a mapping name -> id; got "
                        f"{type(class_names).__name__}")
    names = list(class_names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("class_names must hold strings")
    if len(set(names)) != len(names):
        raise ValueError("class_names must be unique")
    return {n: i for i, n in enumerate(names)}


def class_names_by_id(class_names) -> dict[int, str]:
    """``{id: name}``, the first name of each id."""
    out: dict[int, str] = {}
    for n, i in class_ids(class_names).items():
        out.setdefault(i, n)
    return out


def record_answers(queries, labels, round: int, answers: Mapping[str, np.ndarray], *,
                   outside: str = "error") -> ImportReport:
    """Check each image's answers against its queries of ``round`` and record the complete ones.

    Args:
        queries: the :class:`~densecore.ActiveLabelState` holding the queries
            (``round`` must be done there for every answered image).
        labels: the :class:`~densecore.ActiveLabelState` the answers go to
            (another root, same images and shapes).
        round: the selection round answered.
        answers: ``{image_id: (H, W) int}`` class ids, ``-1`` where none.
        outside: ``"error"`` (default) raises :class:`OutsideQueryError` when
            an answer labels a pixel that was not queried; ``"drop"`` ignores
            those pixels (counted in the report).

    Returns:
        :class:`ImportReport`. Images with every queried pixel answered are
        recorded (``labels.add(image_id, queried, round=round, labels=...)``);
        the others are pending.

    Raises:
        OutsideQueryError: an answered pixel outside the queries (checked for
            every image before anything is recorded).
        ValueError: the round is not done in ``queries``, another shape, the
            same root for both states, or a later round already recorded in
            ``labels`` for the image (import the rounds in order).

    Example:
        >>> import tempfile, numpy as np, densecore
        >>> q = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (2, 2))
        >>> lab = densecore.ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (2, 2))
        >>> for i in "ab": q.add(i, np.eye(2, dtype=bool), round=0)
        >>> full = np.array([[3, -1], [-1, 1]]); half = np.array([[3, -1], [-1, -1]])
        >>> record_answers(q, lab, 0, {"a": full, "b": half})
        ImportReport(recorded=['a'], pending={'b': 1}, dropped={})
        >>> lab.labels("a").tolist()
        [[3, 255], [255, 1]]
    """
    round = check_int(round, "round", minimum=0)
    if outside not in OUTSIDE:
        raise ValueError(f"outside must be one of {OUTSIDE}; got {outside!r}")
    if os.path.realpath(queries.root) == os.path.realpath(labels.root):
        raise ValueError("labels must be another label state than queries (the queries "
                         "state holds the round's masks without labels; a done round "
                         "cannot be changed)")
    report = ImportReport()
    checked = []
    for image_id, answer in answers.items():
        shape = queries.shape(image_id)
        if labels.shape(image_id) != shape:
            raise ValueError(f"image {image_id!r} is {shape} in queries but "
                             f"{labels.shape(image_id)} in labels")
        a = np.asarray(answer)
        if a.shape != shape or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"answers[{image_id!r}] must be an {shape} integer map; got "
                             f"{a.dtype} {a.shape}")
        if a.size and a.min() < NO_ANSWER:
            raise ValueError(f"answers[{image_id!r}] must hold class ids >= 0 or -1 (no "
                             f"answer); got {a.min()}")
        later = [r for r in labels.rounds(image_id) if r > round]
        if later:
            raise ValueError(f"image {image_id!r} already has the answers of round {later[-1]} "
                             f"recorded; a label state's rounds never go backwards, so the "
                             f"answers of round {round} must be imported before those of "
                             f"later rounds")
        q = queries.queried(image_id, round)
        out = (a != NO_ANSWER) & ~q
        if out.any():
            if outside == "error":
                raise OutsideQueryError(image_id, round, np.argwhere(out))
            report.dropped[image_id] = int(out.sum())
        checked.append((image_id, q, a))
    with labels.batch():
        for image_id, q, a in checked:
            missing = int((q & (a == NO_ANSWER)).sum())
            if missing:
                report.pending[image_id] = missing
                continue
            labels.add(image_id, q, round=round, labels=np.where(q, a, 0))
            report.recorded.append(image_id)
    log.info("round %d: %d images recorded, %d pending", round, len(report.recorded),
             len(report.pending))
    return report
