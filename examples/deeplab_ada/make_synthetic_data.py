"""Write miniature GTAV, SYNTHIA and Cityscapes data sets with a domain gap, in their real layouts.

Each scene is a small street-like layout (sky, buildings, vegetation, road,
sidewalks, poles with lights and signs, cars, people, ...) drawn on a map of
the 19 Cityscapes train ids and written with the label ids each data set uses
(GTAV: Cityscapes ids in a palette PNG; SYNTHIA: its own class ids in channel 0
of a 16-bit RGB PNG; Cityscapes: ``*_gtFine_labelIds.png``). All 19 classes
are drawn; terrain, truck, bus, train and motorcycle are rare in both domains.

The domains differ the way a game differs from a street photo:

* **source (GTAV, SYNTHIA) looks like a game**: one flat colour per class (the
  Cityscapes palette, jittered a little per image), hard edges, almost no
  noise; SYNTHIA is brighter and has its own jitter;
* **target (Cityscapes) looks like a photo**: each class has its own camera
  colour (``TARGET_COLOURS``: grey asphalt, brownish facades, dark foliage,
  pale overcast sky, ...), textures (window grids, leaves, asphalt grain and
  lane marks, paving joints, clouds, car windows), lighting (per-image
  exposure and colour temperature, a vertical gradient, cast shadows across
  the ground), a blur of about one pixel and sensor noise;
* **object frequencies and layout differ**: the source streets hold many
  vehicles (cars, trucks, buses, trains) and few people; the target streets
  hold many people, riders, bicycles and poles, a higher horizon and taller
  buildings (``SOURCE_OBJECTS`` / ``TARGET_OBJECTS``).

A model trained on the source alone therefore mislabels much of the target
(the asphalt is grey like the source's buildings, the sidewalks pink-grey like
its roads), and a few labeled target pixels go a long way. The images are
small enough to train on a CPU in minutes.

Usage::

    python make_synthetic_data.py OUT [--train 24] [--val 8] [--seed 0] [--size 128x256]

writes ``OUT/gtav``, ``OUT/synthia`` and ``OUT/cityscapes``. ``--size`` is the
target's ``HxW``; the sources keep their aspect ratios (16:9 for GTAV,
1280:760 for SYNTHIA) at the same width. Without it the smoke-run sizes of
``SIZES`` are used.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from densecore.io import atomic_write

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

SIZES = {"gtav": (90, 160), "synthia": (76, 128), "cityscapes": (64, 128)}  # (H, W), smoke run

# Camera colour of each train id in the target (RGB). Several sit close to a
# *different* class's source colour: road ~ source building, sidewalk ~ source road.
TARGET_COLOURS = ((96, 92, 90), (150, 112, 140), (128, 108, 88), (140, 132, 112), (112, 100, 78),
                  (62, 62, 66), (214, 180, 70), (200, 196, 60), (58, 88, 42), (122, 138, 82),
                  (182, 196, 210), (150, 44, 62), (192, 60, 44), (46, 54, 112), (46, 46, 72),
                  (36, 76, 92), (52, 92, 104), (64, 44, 168), (112, 34, 52))

# Objects per scene: (min, max) counts, and the classes they are drawn from.
SOURCE_OBJECTS = {"horizon": (0.42, 0.55), "building_top": (0.05, 0.35), "trees": (1, 3),
                  "poles": (1, 3), "vehicles": (1, 5), "vehicle_classes": (13, 13, 14, 14, 15, 16),
                  "people": (0, 2), "people_classes": (11, 11, 12, 17, 18)}
TARGET_OBJECTS = {"horizon": (0.35, 0.48), "building_top": (0.0, 0.2), "trees": (2, 5),
                  "poles": (2, 5), "vehicles": (0, 3), "vehicle_classes": (13, 13, 13, 13, 14, 15),
                  "people": (2, 8), "people_classes": (11, 11, 11, 12, 12, 17, 18, 18)}


def draw_scene(height: int, width: int, rng: np.random.Generator,
               objects: dict = SOURCE_OBJECTS) -> np.ndarray:
    """``(H, W)`` uint8 map of 19-class train ids for one street-like scene.

    ``objects`` sets the layout and object frequencies (``SOURCE_OBJECTS`` or
    ``TARGET_OBJECTS``).
    """
    lab = np.full((height, width), 10, np.uint8)  # sky
    yy, xx = np.mgrid[0:height, 0:width]
    horizon = int(height * rng.uniform(*objects["horizon"]))
    # buildings with walls and fences at their feet
    x = 0
    while x < width:
        w = int(rng.integers(width // 10, width // 3))
        top = int(rng.uniform(*objects["building_top"]) * height)
        lab[top:horizon, x:x + w] = 2
        if rng.random() < 0.3:
            lab[horizon - max(2, height // 12):horizon, x:x + w] = 3 if rng.random() < 0.5 else 4
        x += w + int(rng.integers(0, width // 8))
    for _ in range(int(rng.integers(objects["trees"][0], objects["trees"][1] + 1))):
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
    for _ in range(int(rng.integers(objects["poles"][0], objects["poles"][1] + 1))):
        px = int(rng.uniform(0.05, 0.95) * width)
        ptop = int(rng.uniform(0.15, 0.35) * height)
        pw = max(1, width // 80)
        lab[ptop:horizon + height // 10, px:px + pw] = 5
        lab[ptop:ptop + max(2, height // 16), max(px - 1, 0):px + pw + 2] = \
            6 if rng.random() < 0.5 else 7
    # vehicles on the road, people and two-wheelers on the sidewalk
    for _ in range(int(rng.integers(objects["vehicles"][0], objects["vehicles"][1] + 1))):
        cls = int(rng.choice(objects["vehicle_classes"]))
        vw = int(rng.uniform(0.1, 0.25 if cls == 13 else 0.35) * width)
        vh = int(vw * (0.5 if cls == 13 else 0.7))
        vx = int(centre + rng.uniform(-0.3, 0.3) * width - vw / 2)
        vy = int(horizon + rng.uniform(0.1, 0.6) * (height - horizon))
        lab[max(vy - vh, 0):vy, max(vx, 0):max(vx + vw, 0)] = cls
    for _ in range(int(rng.integers(objects["people"][0], objects["people"][1] + 1))):
        cls = int(rng.choice(objects["people_classes"]))
        ph = int(rng.uniform(0.12, 0.25) * height)
        pw = max(2, int(ph * (0.35 if cls in (11, 12) else 0.8)))
        px = int(rng.uniform(0, width - pw))
        py = int(horizon + rng.uniform(0.05, 0.5) * (height - horizon))
        lab[max(py - ph, 0):py, px:px + pw] = cls
        if cls == 12:
            lab[py - ph // 3:py, px:px + pw + 2] = 17
    return lab


def _smooth_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``shape`` float32 noise with unit standard deviation and correlation length ``sigma``."""
    n = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / max(float(n.std()), 1e-6)


def _photo(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The target's look: camera colours, textures, lighting, blur and noise (float RGB)."""
    h, w = lab.shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.asarray(TARGET_COLOURS, np.float32)[np.minimum(lab, 18)]
    fine = _smooth_noise((h, w), 0.7, rng)
    coarse = _smooth_noise((h, w), max(h / 16, 1.0), rng)
    texture = 6 * fine
    period = max(4, h // 16)  # window grid on facades
    windows = ((yy % period) < period // 2) & ((xx % period) < period // 2)
    texture = texture + np.where((lab == 2) & windows, -38.0, 0.0)
    texture = texture + np.where(lab == 8, 26 * fine - 14 * coarse, 0.0)  # leaves
    texture = texture + np.where(lab == 9, 14 * fine, 0.0)
    texture = texture + np.where(lab == 10, 22 * coarse, 0.0)  # clouds
    texture = texture + np.where((lab == 1) & ((xx + yy // 2) % max(4, h // 12) == 0), -24.0, 0.0)
    texture = texture + np.where(lab == 0, 8 * fine, 0.0)
    road_rows = np.where((lab == 0).any(axis=1))[0]
    if road_rows.size:  # dashed lane mark along the middle of the road
        cols = np.where(lab[road_rows[-1]] == 0)[0]
        mid = int(cols.mean()) if cols.size else w // 2
        dash = (np.abs(xx - mid) <= max(h // 64, 0)) & ((yy // max(3, h // 20)) % 2 == 0)
        texture = texture + np.where((lab == 0) & dash, 110.0, 0.0)
    vehicle = np.isin(lab, (13, 14, 15, 16))
    upper = np.zeros_like(vehicle)  # windows in the upper third of every vehicle column run
    for x in np.where(vehicle.any(axis=0))[0]:
        rows = np.where(vehicle[:, x])[0]
        upper[rows[: max(1, len(rows) // 3)], x] = True
    texture = texture + np.where(upper, 45.0, 0.0)
    img = img + texture[..., None]
    # lighting: exposure, colour temperature, vertical gradient, cast shadows on the ground
    exposure = rng.uniform(0.65, 1.25)
    temp = rng.uniform(-0.12, 0.12)
    img = img * exposure * np.array([1 + temp, 1.0, 1 - temp], np.float32)
    img = img * np.linspace(1.1, 0.85, h, dtype=np.float32)[:, None, None]
    ground = lab <= 1
    for _ in range(int(rng.integers(1, 4))):
        slope, offset, width_ = rng.uniform(-1.5, 1.5), rng.uniform(0, w), rng.uniform(0.08, 0.25) * w
        band = np.abs(xx - offset - slope * (yy - h)) < width_
        img[band & ground] *= 0.6
    img = gaussian_filter(img, sigma=(rng.uniform(0.6, 1.2),) * 2 + (0,))
    return img + rng.normal(0, 5, size=img.shape).astype(np.float32)


def render(lab: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` uint8 image of a train-id map in the style of ``domain``.

    ``"gtav"`` and ``"synthia"``: flat game colours; ``"cityscapes"``: a photo.
    """
    if domain == "cityscapes":
        return np.clip(_photo(lab, rng), 0, 255).astype(np.uint8)
    if domain not in ("gtav", "synthia"):
        raise ValueError(f"domain must be 'gtav', 'synthia' or 'cityscapes'; got {domain!r}")
    colours = np.asarray(PALETTE19, np.float32)
    jitter = rng.normal(0, 6 if domain == "gtav" else 10, size=(19, 3)).astype(np.float32)
    img = colours[np.minimum(lab, 18)] + jitter[np.minimum(lab, 18)]
    if domain == "synthia":
        img = img * 0.85 + 35
    img = img + rng.normal(0, 2, size=img.shape).astype(np.float32)
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
        gt = np.zeros(tuple(size) + (3,), np.uint16)
        gt[:, :, 0] = _ids(lab, TRAIN19_TO_SYNTHIA)
        gt[:, :, 1] = rng.integers(0, 300, size=tuple(size))  # instance ids, unused
        write_png(os.path.join(root, "GT", "LABELS", f"{i:07d}.png"), gt)


def write_cityscapes(root: str, n_train: int, n_val: int, rng: np.random.Generator,
                     size=SIZES["cityscapes"]) -> None:
    """``leftImg8bit/{split}/{city}/..._leftImg8bit.png`` and ``gtFine/.../_gtFine_labelIds.png``."""
    for split, n, city in (("train", n_train, "synthtown"), ("val", n_val, "synthville")):
        for i in range(n):
            lab = draw_scene(*size, rng, TARGET_OBJECTS)
            ids = _ids(lab, TRAIN19_TO_ID).astype(np.uint8)
            ids[-max(1, size[0] // 16):, :] = EGO_VEHICLE
            stem = f"{city}_{i:06d}_000019"
            _save_pil(Image.fromarray(render(lab, "cityscapes", rng)),
                      os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"))
            _save_pil(Image.fromarray(ids, mode="L"),
                      os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png"))


def sizes_for(target_size=None) -> dict:
    """``{"gtav", "synthia", "cityscapes"} -> (H, W)``: ``SIZES``, or the sources at the
    target's width with their own aspect ratios when ``target_size = (H, W)`` is given.

    Example:
        >>> sizes_for((128, 256))
        {'gtav': (144, 256), 'synthia': (152, 256), 'cityscapes': (128, 256)}
    """
    if target_size is None:
        return dict(SIZES)
    h, w = (int(v) for v in target_size)
    if h < 16 or w < 16:
        raise ValueError(f"target_size must be at least 16x16; got {h}x{w}")
    return {"gtav": (round(w * 9 / 16), w), "synthia": (round(w * 760 / 1280), w),
            "cityscapes": (h, w)}


def _parse_size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit():
        raise argparse.ArgumentTypeError(f"--size must look like 128x256 (HxW); got {text!r}")
    return int(h), int(w)


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Write miniature GTAV/SYNTHIA/Cityscapes data",
                                     add_help=add_help)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train", type=int, default=24, help="images per training set")
    parser.add_argument("--val", type=int, default=8, help="Cityscapes val images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=_parse_size, default=None, metavar="HxW",
                        help="target image size, e.g. 128x256 (default: the smoke-run sizes)")
    return parser


def main(args):
    rng = np.random.default_rng(args.seed)
    sizes = sizes_for(args.size)
    write_gtav(os.path.join(args.out, "gtav"), args.train, rng, size=sizes["gtav"])
    write_synthia(os.path.join(args.out, "synthia"), args.train, rng, size=sizes["synthia"])
    write_cityscapes(os.path.join(args.out, "cityscapes"), args.train, args.val, rng,
                     size=sizes["cityscapes"])


if __name__ == "__main__":
    main(get_args_parser().parse_args())
