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
from PIL import Image

from densecore.atomic import atomic_write

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
        """``(C,)`` float64 IoU per class; NaN for classes absent from truth and prediction."""
        m = self.mat.double().cpu().numpy() if self.mat is not None else np.zeros(
            (self.num_classes, self.num_classes))
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)

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


def queried_overlay(image: np.ndarray, masks_by_round, dot: int = 1) -> np.ndarray:
    """The image (dimmed) with each round's queried pixels drawn in its own colour (Fig. 8).

    Args:
        image: ``(H, W, 3)`` uint8.
        masks_by_round: list of ``(H, W)`` bool masks, one per round.
        dot: half-width in pixels of the square drawn at each queried pixel.
    """
    out = (image.astype(np.float32) * 0.6).astype(np.uint8)
    colours = np.array([(255, 40, 40), (255, 200, 0), (40, 255, 40), (0, 200, 255),
                        (255, 0, 255), (255, 255, 255)], np.uint8)
    h, w = out.shape[:2]
    for r, mask in enumerate(masks_by_round):
        ys, xs = np.nonzero(mask)
        for dy in range(-dot + 1, dot):
            for dx in range(-dot + 1, dot):
                out[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = \
                    colours[r % len(colours)]
    return out
