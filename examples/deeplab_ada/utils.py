"""Metrics, distributed helpers, checkpoints, logs and pictures for the pipeline.

Shape:
    ``ConfusionMatrix.update(target, pred)`` takes ``(N,)`` or ``(B, H, W)``
    int64 tensors of train ids; entries equal to 255 in ``target`` are skipped.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw

from densecore.io import atomic_write

# ------------------------------------------------------------------- metrics


class ConfusionMatrix:
    """Accumulates a ``(C, C)`` int64 confusion matrix (rows: truth, columns: prediction)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.mat = None

    def update(self, target, pred):
        k = (target >= 0) & (target < self.num_classes)
        idx = self.num_classes * target[k].to(torch.int64) + pred[k].to(torch.int64)
        counts = torch.bincount(idx, minlength=self.num_classes ** 2)
        counts = counts.reshape(self.num_classes, self.num_classes)
        self.mat = counts if self.mat is None else self.mat + counts

    def reduce_from_all_processes(self):
        if self.mat is not None and is_dist():
            dist.all_reduce(self.mat)

    def iou(self) -> np.ndarray:
        """``(C,)`` float64 IoU per class; NaN for classes absent from the ground truth.

        A class with no ground-truth pixel has no IoU to measure: predicting it
        somewhere is already counted as a false positive of the true classes,
        so it is NaN (left out of the mean), not 0, whether predicted or not.
        mIoU is then the mean over the classes present in the ground truth,
        the same set for every model evaluated on the same images.
        """
        m = self.mat.double().cpu().numpy() if self.mat is not None else np.zeros(
            (self.num_classes, self.num_classes))
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        present = m.sum(1) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present, inter / np.where(union > 0, union, 1), np.nan)

    def pixel_accuracy(self) -> float:
        m = self.mat.double() if self.mat is not None else torch.zeros(1)
        return float(m.diag().sum() / m.sum().clamp(min=1))


def miou(iou: np.ndarray, classes=None) -> float:
    """Mean of ``iou`` over ``classes`` (all by default), skipping NaN; in percent."""
    values = iou if classes is None else iou[list(classes)]
    values = values[~np.isnan(values)]
    return float(values.mean() * 100) if values.size else float("nan")


# --------------------------------------------------------------- distributed


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier():
    if is_dist():
        dist.barrier()


def init_distributed_mode(args):
    """Join the process group when started by ``torchrun`` (RANK/WORLD_SIZE in the env)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        args.rank = int(os.environ["RANK"])
        args.world_size = int(os.environ["WORLD_SIZE"])
        args.gpu = int(os.environ.get("LOCAL_RANK", 0))
    else:
        args.rank, args.world_size, args.gpu, args.distributed = 0, 1, 0, False
        return
    args.distributed = True
    backend = "nccl" if torch.cuda.is_available() and args.device == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(args.gpu)
    dist.init_process_group(backend=backend, init_method="env://", world_size=args.world_size,
                            rank=args.rank)
    dist.barrier()


# --------------------------------------------------------------- schedules


def poly_lr(base_lr: float, iteration: int, max_iter: int, power: float = 0.9) -> float:
    """``base_lr * (1 - iteration / max_iter) ** power``."""
    return base_lr * (1 - iteration / max_iter) ** power


# --------------------------------------------------------------- files


def atomic_save(obj, path: str) -> None:
    """``torch.save`` into memory, then write it to ``path`` atomically (temp file, fsync, rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


class CSVLog:
    """Appends rows to ``path`` (header written once); fsynced per row."""

    def __init__(self, path: str, fields):
        self.path, self.fields = path, list(fields)

    def truncate_after(self, iteration: int) -> None:
        """Drop the rows of iterations after ``iteration`` (a resumed run redoes them).

        Rewrites the file atomically; a missing file stays missing, a file
        with another header is an error.
        """
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is not None and reader.fieldnames != self.fields:
                raise ValueError(f"{self.path} has columns {reader.fieldnames}; expected "
                                 f"{self.fields}")
            rows = [r for r in reader if r.get("iteration") and int(r["iteration"]) <= iteration]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.fields, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, out.getvalue().encode("utf-8"))

    def write(self, row: dict):
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def save_png(array: np.ndarray, path: str) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG atomically (temp file, fsync, rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def colorize(pred: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W)`` train ids (255 = ignore) -> ``(H, W, 3)`` uint8 colours."""
    return palette[np.where(pred == 255, len(palette) - 1, pred)]


ROUND_COLOURS = np.array([(255, 40, 40), (255, 200, 0), (40, 255, 40), (0, 200, 255),
                          (255, 0, 255), (255, 255, 255)], np.uint8)


def fixed(value, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, never ``-0.0000``: a value that rounds to zero
    prints without a sign (a loss over no labelled pixel is ``-0.0``).

    Example:
        >>> fixed(-0.0), fixed(-1e-9), fixed(-0.00006), fixed(1.23456, 2)
        ('0.0000', '0.0000', '-0.0001', '1.23')
    """
    text = f"{float(value):.{digits}f}"
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return text[1:]
    return text


MIN_SIDE = 512  # pictures are enlarged until their short side has at least this many pixels


def enlarge(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``image`` ``(H, W[, 3])`` enlarged by the smallest whole factor that makes its short
    side at least ``min_side`` (nearest neighbour: each pixel becomes a square block).

    Example:
        >>> enlarge(np.zeros((64, 128, 3), np.uint8)).shape
        (512, 1024, 3)
        >>> enlarge(np.zeros((1024, 2048), np.uint8)).shape
        (1024, 2048)
    """
    factor = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


_SWATCH = 16  # a colour swatch and its gap, in unscaled pixels


def text_width(lines, swatches: bool = False) -> int:
    """Pixels the widest of ``lines`` takes in :func:`_text_strip` (at scale 1)."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max((draw.textlength(t) for t in lines), default=0)
    return int(np.ceil(widest)) + 8 + (_SWATCH if swatches else 0)


def _scaled_strip(lines, width, colours=None) -> np.ndarray:
    """:func:`_text_strip` drawn at ``width / s`` and enlarged ``s`` times.

    ``s`` grows with the width (one step per 512 pixels, readable at 2048 px)
    but never so far that the widest line would be cut off.
    """
    need = text_width(lines, colours is not None)
    scale = max(1, min(width // 512, width // need))
    strip = _text_strip(lines, width // scale, colours)
    if scale > 1:
        strip = np.asarray(Image.fromarray(strip).resize(
            (width, strip.shape[0] * scale), Image.NEAREST))
    return strip


def _text_strip(lines, width, colours=None) -> np.ndarray:
    """A black ``(h, width, 3)`` strip with one line of text per entry, colour swatches optional."""
    line_h = 14
    strip = Image.new("RGB", (width, line_h * len(lines) + 6), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for n, text in enumerate(lines):
        y = 3 + n * line_h
        x = 4
        if colours is not None:
            draw.rectangle([x, y + 2, x + 10, y + 11], fill=tuple(int(c) for c in colours[n]))
            x += _SWATCH
        draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(strip)


def class_legend(names, palette: np.ndarray, width: int, scale: int = 1) -> np.ndarray:
    """A black ``(h, width, 3)`` uint8 strip: each class's colour swatch and name, in columns.

    Args:
        names: the ``C`` class names, by train id.
        palette: ``(C + 1, 3)`` uint8 (the last row, ignore, is shown as "ignore").
        width: of the strip, in pixels.
        scale: text size, a whole factor (lowered if one entry would not fit).
    """
    entries = list(names) + ["ignore"]
    colours = [palette[min(i, len(palette) - 1)] for i in range(len(entries))]
    cell = text_width(entries, swatches=True) + 8
    scale = max(1, min(scale, width // cell))
    columns = max(1, (width // scale) // cell)
    rows = -(-len(entries) // columns)
    grid = []
    for r in range(rows):  # column-major: read down, then across
        grid.append([entries[c * rows + r] if c * rows + r < len(entries) else ""
                     for c in range(columns)])
    image = Image.new("RGB", (width // scale, 14 * rows + 6), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for c in range(columns):
        for r in range(rows):
            i = c * rows + r
            if i >= len(entries):
                continue
            x, y = 4 + c * cell, 3 + 14 * r
            draw.rectangle([x, y + 2, x + 10, y + 11],
                           fill=tuple(int(v) for v in colours[i]), outline=(128, 128, 128))
            draw.text((x + _SWATCH, y), entries[i], fill=(255, 255, 255))
    strip = np.asarray(image)
    if scale > 1 or strip.shape[1] != width:
        strip = np.asarray(Image.fromarray(strip).resize(
            (width, strip.shape[0] * scale), Image.NEAREST))
    return strip


def queried_overlay(image: np.ndarray, masks_by_round, legend=None, region_size: int = 1) -> np.ndarray:
    """The image (dimmed) with each round's queries outlined in its colour, legend below (Fig. 8).

    Every query (a pixel or a region) gets a square outline about ``W / 128``
    pixels wide (neighbouring queries share one outline), so queries stay
    visible at 2048 x 1024 where a 3 x 3 region is a speck; the queried
    pixels themselves are filled in the same colour inside it. A small image
    is then enlarged (:func:`enlarge`, nearest neighbour) so that it can be
    read without zooming.

    Args:
        image: ``(H, W, 3)`` uint8 at label resolution.
        masks_by_round: list of ``(H, W)`` bool masks, one per round.
        legend: one text line per round (default ``"round r: N px"``).
        region_size: side of the labeled block around each pick.

    Returns:
        ``(f * H + legend height, f * W, 3)`` uint8, ``f`` the factor of :func:`enlarge`.
    """
    out = (image.astype(np.float32) * 0.55).astype(np.uint8)
    w = out.shape[1]
    half = max(region_size // 2 + 2, w // 256)
    thick = max(1, w // 1024)
    colours = [ROUND_COLOURS[r % len(ROUND_COLOURS)] for r in range(len(masks_by_round))]
    for r, mask in enumerate(masks_by_round):  # outlines around every query
        ring = _dilate(mask, half) & ~_dilate(mask, half - thick)
        out[ring] = colours[r]
    for r, mask in enumerate(masks_by_round):  # the queried pixels themselves
        out[mask] = colours[r]
    if legend is None:
        legend = [f"round {r}: {int(m.sum())} px" for r, m in enumerate(masks_by_round)]
    out = enlarge(out)
    return np.concatenate([out, _scaled_strip(legend, out.shape[1], colours)], axis=0)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (square structuring element)."""
    if radius <= 0:
        return mask.copy()
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return (torch.nn.functional.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)[0, 0]
            > 0).numpy()


def side_by_side(panels, titles, legend=None) -> np.ndarray:
    """Panels ``(H, W, 3)`` uint8 (resized to the first one's size) in a row, titled.

    Small panels are enlarged (:func:`enlarge`, nearest neighbour).
    ``legend = (names, palette)`` adds a :func:`class_legend` below the row.
    """
    h, w = panels[0].shape[:2]
    row = [enlarge(p if p.shape[:2] == (h, w) else
                   np.asarray(Image.fromarray(p).resize((w, h), Image.NEAREST)))
           for p in panels]
    w = row[0].shape[1]
    tiles = [np.concatenate([_scaled_strip([title], w), p], axis=0)
             for p, title in zip(row, titles)]
    gap = np.zeros((tiles[0].shape[0], max(2, w // 200), 3), np.uint8)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [gap, t]
    out = np.concatenate(out, axis=1)
    if legend is not None:  # text as large as the titles'
        out = np.concatenate([out, class_legend(*legend, out.shape[1], max(1, w // 512))],
                             axis=0)
    return out


def pool_counts(mask: np.ndarray, size) -> np.ndarray:
    """``(h, w)`` int64 counts of the True pixels of ``mask`` in each cell of a ``size`` grid."""
    gh, gw = size
    ys, xs = np.nonzero(mask)
    cy = ys * gh // mask.shape[0]
    cx = xs * gw // mask.shape[1]
    return np.bincount(cy * gw + cx, minlength=gh * gw).reshape(gh, gw)


def round_summary(heat: np.ndarray, counts: np.ndarray, names, palette: np.ndarray,
                  title: str) -> np.ndarray:
    """One picture per round: a heat map of query positions and a bar per class.

    Args:
        heat: ``(h, w)`` counts of queried pixels per cell, summed over images.
        counts: ``(C + 1,)`` queried pixels per class, the last entry void.
        names: ``C + 1`` class names; palette: ``(C + 1, 3)`` uint8 colours.
        title: first text line.
    """
    cell = 4
    norm = heat / max(heat.max(), 1)
    hm = np.stack([255 * norm, 255 * np.sqrt(norm) * 0.6, 40 * (1 - norm)], -1).astype(np.uint8)
    hm = np.kron(hm, np.ones((cell, cell, 1), np.uint8))
    width = hm.shape[1]
    bars_h = 12 * len(names) + 6
    bars = Image.new("RGB", (width, bars_h), (0, 0, 0))
    draw = ImageDraw.Draw(bars)
    top = max(int(counts.max()), 1)
    for n, (name, c) in enumerate(zip(names, counts)):
        y = 3 + 12 * n
        draw.text((4, y), f"{name[:12]:<12} {int(c):>8}", fill=(255, 255, 255))
        length = int((width - 140) * c / top)
        draw.rectangle([136, y + 2, 136 + length, y + 10],
                       fill=tuple(int(v) for v in palette[min(n, len(palette) - 1)]))
    head = _text_strip([title, "where the queries fell (all images), then queried pixels "
                        "per class (ground truth, for this picture only)"], width)
    return np.concatenate([head, hm, np.asarray(bars)], axis=0)
