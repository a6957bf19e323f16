"""Exports of an :class:`densecore.ActiveLabelState` for other tools: the queried
pixel coordinates (JSON lines or CSV, for an annotation tool) and the stored labels as
PNGs a Cityscapes-style data loader reads. Both are methods of the state
(``state.export_queries``, ``state.export_labels``); every file is written atomically.

Shape:
    label maps ``(H, W)`` uint8 (uint16 above 255), written as 8- or 16-bit
    greyscale PNGs; pixel coordinates ``(y, x)`` = (row, column).
"""

from __future__ import annotations

import csv
import io
import json
import os
import zlib

import numpy as np

from ..io import atomic_write
from ..validation import check_int
from .codec import unpack

__all__ = ["LAYOUTS", "export_labels", "export_queries", "png"]

LAYOUTS = ("flat", "cityscapes")


def png(image: np.ndarray) -> bytes:
    """A greyscale PNG (8- or 16-bit, big-endian samples) of ``(H, W)`` uint8/uint16."""
    h, w = image.shape
    depth = 16 if image.dtype == np.uint16 else 8
    rows = image.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows.reshape(h, -1)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([depth, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def export_queries(state, round: int, path: str | os.PathLike, *,
                   format: str | None = None) -> int:
    """Write the pixel coordinates recorded for ``round`` for an annotation tool.

    Formats (chosen from ``format`` or the suffix of ``path``):

    * ``"jsonl"`` (``.jsonl``/``.json``): one line per image done in that
      round, ``{"image": id, "round": r, "height": H, "width": W,
      "pixels": [[y, x], ...]}``;
    * ``"csv"`` (``.csv``): header ``image,round,y,x`` then one row per pixel.

    Images appear in the state's order, pixels in row-major order. The
    file is written atomically.

    Returns:
        ``int`` number of pixels written.

    Example:
        >>> import tempfile, os, numpy as np
        >>> from densecore import ActiveLabelState
        >>> d = tempfile.mkdtemp()
        >>> s = ActiveLabelState(os.path.join(d, "state"), ["a"], (2, 2))
        >>> s.add("a", np.eye(2, dtype=bool), round=1)
        >>> s.export_queries(1, os.path.join(d, "q.csv"))
        2
        >>> print(open(os.path.join(d, "q.csv")).read().strip())
        image,round,y,x
        a,1,0,0
        a,1,1,1
    """
    round = check_int(round, "round", minimum=0)
    path = os.fspath(path)
    if format is None:
        ext = os.path.splitext(path)[1].lower()
        format = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(ext)
        if format is None:
            raise ValueError(f"cannot tell the format from the suffix of path {path!r}; "
                             f"use .jsonl or .csv, or pass format='jsonl' or 'csv'")
    if format not in ("jsonl", "csv"):
        raise ValueError(f"format must be 'jsonl' or 'csv'; got {format!r}")
    state._refresh()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if format == "csv":
        writer.writerow(["image", "round", "y", "x"])
    count = 0
    for image_id, entry in state._m["images"].items():
        if str(round) not in entry["rounds"]:
            continue
        yx = np.argwhere(unpack(state._read_round(image_id, round), entry["shape"]))
        count += len(yx)
        if format == "jsonl":
            h, w = entry["shape"]
            out.write(json.dumps({"image": image_id, "round": round, "height": h,
                                  "width": w, "pixels": yx.tolist()}) + "\n")
        else:
            writer.writerows([image_id, round, int(y), int(x)] for y, x in yx)
    atomic_write(path, out.getvalue().encode("utf-8"))
    return count


def export_labels(state, out_dir: str | os.PathLike, *, layout: str = "cityscapes",
                  split: str = "train", rounds=None, ignore_index: int = 255) -> list[str]:
    """Write each image's stored labels as a PNG a Cityscapes-style loader reads.

    Every image with at least one done round among ``rounds`` (None: all)
    gets one greyscale PNG of :meth:`labels` (``ignore_index`` where
    nothing is labeled; 8-bit, 16-bit above 255), written atomically:

    * ``layout="cityscapes"``: ``out_dir/gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png``,
      where ``<stem>`` is the image id without a trailing ``_leftImg8bit``
      and ``<city>`` its part before the first ``_`` (Cityscapes file
      names, e.g. ``aachen_000000_000019_leftImg8bit``); the values are the
      stored ones (train ids if train ids were stored);
    * ``layout="flat"``: ``out_dir/<image id>.png`` (ids containing ``/``
      create sub-folders; ``..`` is refused).

    Returns:
        ``list[str]``: the written paths, in the state's image order.

    Example:
        >>> import tempfile, os, numpy as np
        >>> from densecore import ActiveLabelState
        >>> d = tempfile.mkdtemp()
        >>> s = ActiveLabelState(os.path.join(d, "st"), ["aachen_000001_000019_leftImg8bit"], (2, 2))
        >>> s.add(s.image_ids[0], np.eye(2, dtype=bool), round=0, labels=np.ones((2, 2), int))
        >>> [os.path.relpath(p, d) for p in s.export_labels(d)]
        ['gtFine/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png']
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if not isinstance(split, str) or not split or "/" in split or split in (".", ".."):
        raise ValueError(f"split must be a folder name such as 'train'; got {split!r}")
    out_dir = os.fspath(out_dir)
    state._refresh()
    written = []
    for image_id, entry in state._m["images"].items():
        if not state._done_rounds(entry, rounds):
            continue
        if layout == "cityscapes":
            stem = image_id[:-len("_leftImg8bit")] if image_id.endswith("_leftImg8bit") \
                else image_id
            city = stem.split("_", 1)[0]
            rel = os.path.join("gtFine", split, city, f"{stem}_gtFine_labelTrainIds.png")
        else:
            rel = image_id + ".png"
        parts = rel.replace(os.sep, "/").split("/")
        if os.path.isabs(rel) or ".." in parts or "" in parts:
            raise ValueError(f"image id {image_id!r} does not give a file name inside "
                             f"out_dir for layout {layout!r}")
        path = os.path.join(out_dir, rel)
        data = png(state.labels(image_id, rounds, ignore_index=ignore_index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, data)
        written.append(path)
    return written
