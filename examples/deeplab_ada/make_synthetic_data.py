"""Write miniature GTAV, SYNTHIA and Cityscapes data sets in their real layouts.

Each scene is a small street-like layout (sky, buildings, vegetation, road,
sidewalks, poles with lights and signs, cars, people, ...) drawn on a map of
the 19 Cityscapes train ids and written with the label ids each data set uses
(GTAV: Cityscapes ids in a palette PNG; SYNTHIA: its own class ids in channel 0
of a 16-bit RGB PNG; Cityscapes: ``*_gtFine_labelIds.png``). The domains share
the layout statistics and differ in colour and texture: the synthetic sources
are saturated with fine noise, the target is desaturated, tinted, lit by a
vertical gradient and striped. The result is small enough to train on a CPU
in seconds and exercises every loader of the pipeline.

Usage::

    python make_synthetic_data.py OUT [--train 24] [--val 8] [--seed 0]

writes ``OUT/gtav``, ``OUT/synthia`` and ``OUT/cityscapes``.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
from PIL import Image

from densecore.atomic import atomic_write

from datasets import (CITYSCAPES_ID_TO_TRAIN19, PALETTE19, SYNTHIA_CLASSES,
                      SYNTHIA_ID_TO_TRAIN16)
from png16 import write_png

TRAIN19_TO_ID = {v: k for k, v in CITYSCAPES_ID_TO_TRAIN19.items()}
_TRAIN16_TO_SYNTHIA = {v: k for k, v in SYNTHIA_ID_TO_TRAIN16.items()}
# 19-class train id -> SYNTHIA class id; terrain, truck and train have none
# in SYNTHIA's 16-class protocol and are drawn as vegetation, car and bus.
TRAIN19_TO_SYNTHIA = {t19: _TRAIN16_TO_SYNTHIA[SYNTHIA_CLASSES.index(name)]
                      for t19, name in enumerate(("road", "sidewalk", "building", "wall", "fence",
                                                  "pole", "light", "sign", "vegetation",
                                                  "vegetation", "sky", "person", "rider", "car",
                                                  "car", "bus", "bus", "motorcycle", "bicycle"))}
EGO_VEHICLE = 1  # Cityscapes label id of the ego vehicle (ignored in evaluation)

SIZES = {"gtav": (90, 160), "synthia": (76, 128), "cityscapes": (64, 128)}  # (H, W)


def draw_scene(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` uint8 map of 19-class train ids for one street-like scene."""
    lab = np.full((height, width), 10, np.uint8)  # sky
    yy, xx = np.mgrid[0:height, 0:width]
    horizon = int(height * rng.uniform(0.42, 0.55))
    # buildings with walls and fences at their feet
    x = 0
    while x < width:
        w = int(rng.integers(width // 10, width // 3))
        top = int(rng.uniform(0.05, 0.35) * height)
        lab[top:horizon, x:x + w] = 2
        if rng.random() < 0.3:
            lab[horizon - max(2, height // 12):horizon, x:x + w] = 3 if rng.random() < 0.5 else 4
        x += w + int(rng.integers(0, width // 8))
    for _ in range(int(rng.integers(1, 4))):  # trees
        cx, cy = rng.uniform(0, width), rng.uniform(0.15, 0.45) * height
        rx, ry = rng.uniform(0.05, 0.15) * width, rng.uniform(0.08, 0.18) * height
        lab[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = 8
    # road widening towards the bottom, sidewalks and terrain beside it
    frac = np.clip((yy - horizon) / max(height - horizon, 1), 0, 1)
    centre = width * rng.uniform(0.4, 0.6)
    half = width * (0.05 + 0.5 * frac)
    below = yy >= horizon
    lab[below] = 9
    side = below & (np.abs(xx - centre) < half * 1.45)
    lab[side] = 1
    lab[below & (np.abs(xx - centre) < half)] = 0
    # poles with a light or a sign on top
    for _ in range(int(rng.integers(1, 4))):
        px = int(rng.uniform(0.05, 0.95) * width)
        ptop = int(rng.uniform(0.15, 0.35) * height)
        pw = max(1, width // 80)
        lab[ptop:horizon + height // 10, px:px + pw] = 5
        lab[ptop:ptop + max(2, height // 16), px - 1:px + pw + 2] = 6 if rng.random() < 0.5 else 7
    # vehicles on the road, people and two-wheelers on the sidewalk
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.choice([13, 13, 13, 14, 15, 16]))
        vw = int(rng.uniform(0.1, 0.25 if cls == 13 else 0.35) * width)
        vh = int(vw * (0.5 if cls == 13 else 0.7))
        vx = int(centre + rng.uniform(-0.3, 0.3) * width - vw / 2)
        vy = int(horizon + rng.uniform(0.1, 0.6) * (height - horizon))
        lab[max(vy - vh, 0):vy, max(vx, 0):max(vx + vw, 0)] = cls
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.choice([11, 11, 12, 17, 18]))
        ph = int(rng.uniform(0.12, 0.25) * height)
        pw = max(2, int(ph * (0.35 if cls in (11, 12) else 0.8)))
        px = int(rng.uniform(0, width - pw))
        py = int(horizon + rng.uniform(0.05, 0.5) * (height - horizon))
        lab[max(py - ph, 0):py, px:px + pw] = cls
        if cls == 12:
            lab[py - ph // 3:py, px:px + pw + 2] = 17
    return lab


def render(lab: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` uint8 image of a train-id map in the style of ``domain``."""
    colours = np.asarray(PALETTE19, np.float32)
    img = colours[np.minimum(lab, 18)]
    h, w = lab.shape
    if domain in ("gtav", "synthia"):
        jitter = rng.normal(0, 10, size=(19, 3)).astype(np.float32)
        img = img + jitter[np.minimum(lab, 18)]
        scale = 14.0 if domain == "gtav" else 22.0
        img = img + rng.normal(0, scale, size=img.shape).astype(np.float32)
        if domain == "synthia":  # blocky texture, brighter overall
            block = rng.normal(0, 12, size=(h // 4 + 1, w // 4 + 1, 1)).astype(np.float32)
            img = img * 0.85 + 35 + np.repeat(np.repeat(block, 4, 0), 4, 1)[:h, :w]
    else:  # target: desaturated, tinted, vertical light gradient, stripes
        grey = img.mean(axis=2, keepdims=True)
        img = 0.55 * img + 0.45 * grey
        img = img * np.array([0.9, 1.0, 1.15], np.float32) + np.array([10, 5, -5], np.float32)
        gradient = np.linspace(1.15, 0.8, h, dtype=np.float32)[:, None, None]
        stripes = 8 * np.sin(np.arange(w, dtype=np.float32) / 2.0)[None, :, None]
        img = img * gradient + stripes + rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save_pil(image: Image.Image, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def _ids(lab: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.zeros(lab.shape, np.uint16)
    for train_id, raw in table.items():
        out[lab == train_id] = raw
    return out


def write_gtav(root: str, n: int, rng: np.random.Generator, size=SIZES["gtav"]) -> None:
    """``root/images/NNNNN.png`` and palette ``root/labels/NNNNN.png`` with label ids."""
    flat_palette = np.zeros((256, 3), np.uint8)
    for train_id, raw in TRAIN19_TO_ID.items():
        flat_palette[raw] = PALETTE19[train_id]
    for i in range(1, n + 1):
        lab = draw_scene(*size, rng)
        _save_pil(Image.fromarray(render(lab, "gtav", rng)),
                  os.path.join(root, "images", f"{i:05d}.png"))
        label = Image.fromarray(_ids(lab, TRAIN19_TO_ID).astype(np.uint8), mode="P")
        label.putpalette(flat_palette.ravel().tolist())
        _save_pil(label, os.path.join(root, "labels", f"{i:05d}.png"))


def write_synthia(root: str, n: int, rng: np.random.Generator, size=SIZES["synthia"]) -> None:
    """``root/RGB/NNNNNNN.png`` and 16-bit ``root/GT/LABELS/NNNNNNN.png`` (id in channel 0)."""
    os.makedirs(os.path.join(root, "GT", "LABELS"), exist_ok=True)
    for i in range(n):
        lab = draw_scene(*size, rng)
        _save_pil(Image.fromarray(render(lab, "synthia", rng)),
                  os.path.join(root, "RGB", f"{i:07d}.png"))
        gt = np.zeros(size + (3,), np.uint16)
        gt[:, :, 0] = _ids(lab, TRAIN19_TO_SYNTHIA)
        gt[:, :, 1] = rng.integers(0, 300, size=size)  # instance ids, unused
        write_png(os.path.join(root, "GT", "LABELS", f"{i:07d}.png"), gt)


def write_cityscapes(root: str, n_train: int, n_val: int, rng: np.random.Generator,
                     size=SIZES["cityscapes"]) -> None:
    """``leftImg8bit/{split}/{city}/..._leftImg8bit.png`` and ``gtFine/.../_gtFine_labelIds.png``."""
    for split, n, city in (("train", n_train, "synthtown"), ("val", n_val, "synthville")):
        for i in range(n):
            lab = draw_scene(*size, rng)
            ids = _ids(lab, TRAIN19_TO_ID).astype(np.uint8)
            ids[-max(1, size[0] // 16):, :] = EGO_VEHICLE
            stem = f"{city}_{i:06d}_000019"
            _save_pil(Image.fromarray(render(lab, "cityscapes", rng)),
                      os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"))
            _save_pil(Image.fromarray(ids, mode="L"),
                      os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png"))


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Write miniature GTAV/SYNTHIA/Cityscapes data",
                                     add_help=add_help)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train", type=int, default=24, help="images per training set")
    parser.add_argument("--val", type=int, default=8, help="Cityscapes val images")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args):
    rng = np.random.default_rng(args.seed)
    write_gtav(os.path.join(args.out, "gtav"), args.train, rng)
    write_synthia(os.path.join(args.out, "synthia"), args.train, rng)
    write_cityscapes(os.path.join(args.out, "cityscapes"), args.train, args.val, rng)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
