"""GTAV, SYNTHIA RAND-CITYSCAPES and Cityscapes in their on-disk layouts.

On disk (each root is the folder the data set unpacks to):

* GTAV: ``images/NNNNN.png`` and ``labels/NNNNN.png`` (8-bit, Cityscapes label ids).
* SYNTHIA RAND-CITYSCAPES: ``RGB/NNNNNNN.png`` and ``GT/LABELS/NNNNNNN.png``
  (16-bit RGB PNG, class id in channel 0).
* Cityscapes: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
  ``gtFine/{split}/{city}/*_gtFine_labelIds.png``.
* A custom data set (``source: custom``, :func:`folders`): ``images/NAME.png``
  (or ``.jpg``) with ``labels/NAME.png`` (one channel: 8- or 16-bit grey, or a
  palette PNG's indices); the source root holds these two folders, the
  target root holds them under ``train/`` and ``val/``.

Label ids are mapped to train ids with the standard tables: 19 classes for
GTAV -> Cityscapes, 16 for SYNTHIA -> Cityscapes (mIoU* is over the 13 of them
that exclude wall, fence and pole). Everything else becomes ``IGNORE`` (255).

Shape:
    a sample is ``(image, label, index)`` with ``image`` a ``(3, H, W)`` float32
    tensor normalised with the ImageNet mean/std, ``label`` a ``(H, W)``
    int64 tensor of train ids or 255, and ``index`` the image's position in
    the data set. Target images in training carry only the queried pixels.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import torch
from PIL import Image

import densecore

from png16 import read_png

IGNORE = 255
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
                      "train", "motorcycle", "bicycle")
SYNTHIA_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
                   "vegetation", "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle")
# mIoU* of Table 2: the 16 SYNTHIA classes less wall, fence and pole.
SYNTHIA_13 = tuple(i for i, n in enumerate(SYNTHIA_CLASSES) if n not in ("wall", "fence", "pole"))

# Cityscapes label id -> train id (19 classes); GTAV uses the same label ids.
CITYSCAPES_ID_TO_TRAIN19 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                            23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# Cityscapes label id -> the 16 classes shared with SYNTHIA.
CITYSCAPES_ID_TO_TRAIN16 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9,
                            24: 10, 25: 11, 26: 12, 28: 13, 32: 14, 33: 15}
# SYNTHIA class id (GT/LABELS channel 0) -> the same 16 train ids.
SYNTHIA_ID_TO_TRAIN16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10,
                         17: 11, 8: 12, 19: 13, 12: 14, 11: 15}

# Colours for predictions (the usual Cityscapes palette, by train id).
PALETTE19 = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
             (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
             (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
             (0, 80, 100), (0, 0, 230), (119, 11, 32))


def class_names(num_classes: int, names=()) -> tuple[str, ...]:
    """``names`` if given (a custom data set), else those of 19 (GTAV/Cityscapes) or 16
    (SYNTHIA) train ids."""
    if names:
        return tuple(names)
    if num_classes == 19:
        return CITYSCAPES_CLASSES
    if num_classes == 16:
        return SYNTHIA_CLASSES
    raise ValueError(f"num_classes must be 19 or 16; got {num_classes}")


def palette(num_classes: int, names=()) -> np.ndarray:
    """``(num_classes + 1, 3)`` uint8 colours by train id; the last row (ignore) is black.

    Cityscapes class names keep their usual colours; other names (a custom
    data set) get well-separated hues in train-id order.

    Example:
        >>> palette(2, ("road", "crater")).tolist()
        [[128, 64, 128], [0, 255, 170], [0, 0, 0]]
    """
    by_name = dict(zip(CITYSCAPES_CLASSES, PALETTE19))
    colours = []
    for i, name in enumerate(class_names(num_classes, names)):
        colours.append(by_name.get(name) or _hue(i))
    return np.array(colours + [(0, 0, 0)], dtype=np.uint8)


def _hue(i: int) -> tuple[int, int, int]:
    """A bright colour; consecutive ``i`` are far apart on the colour wheel (golden angle)."""
    import colorsys
    h = (0.0625 + i * 0.381966) % 1.0
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, 1.0, 1.0 if i % 2 else 0.8))


def lookup_table(mapping: dict[int, int], size: int = 65536) -> np.ndarray:
    """A ``(size,)`` uint8 table sending every id to its train id, the rest to 255."""
    table = np.full(size, IGNORE, dtype=np.uint8)
    for k, v in mapping.items():
        table[k] = v
    return table


def encode_labels(raw: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map ``(H, W)`` raw label ids to ``(H, W)`` uint8 train ids (255 elsewhere)."""
    return lookup_table(mapping)[raw.astype(np.int64)]


def load_rgb(path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB image."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_gtav_label(path) -> np.ndarray:
    """``(H, W)`` raw Cityscapes label ids of a GTAV label PNG (palette or greyscale)."""
    with Image.open(path) as im:
        return np.asarray(im)


def load_synthia_label(path) -> np.ndarray:
    """``(H, W)`` SYNTHIA class ids: channel 0 of the 16-bit ``GT/LABELS`` PNG."""
    arr = read_png(path)
    return arr if arr.ndim == 2 else arr[:, :, 0]


def load_cityscapes_label(path) -> np.ndarray:
    """``(H, W)`` raw label ids of a ``*_gtFine_labelIds.png``."""
    with Image.open(path) as im:
        return np.asarray(im)


def resize(arr: np.ndarray, size, nearest: bool) -> np.ndarray:
    """Resize ``(H, W[, 3])`` uint8 to ``size = (W, H)`` (PIL convention)."""
    if size is None or (arr.shape[1], arr.shape[0]) == tuple(size):
        return arr
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(arr).resize(tuple(size), resample))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 normalised with ImageNet mean/std."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


class SegmentationFiles(torch.utils.data.Dataset):
    """A list of (image, label) files with a label decoder; resize and flip.

    Args:
        images, labels: equal-length lists of file paths.
        decode: ``path -> (H, W)`` uint8 train ids.
        size: ``(W, H)`` to resize to (image bilinear, label nearest), or None.
        flip: random horizontal flips in training; the coin is drawn from the
            seed that the sampler passes with the index, so a run is
            reproducible and resumable.
        label_mask: ``index -> (H, W)`` bool mask of the pixels whose label may
            be used (the queried pixels), or None for all; applied at the
            label's own resolution, before resizing.
        label_size: ``(W, H)`` for the returned label when it should differ
            from ``size`` (evaluation keeps the full-resolution label).

    Items are ``(image, label, index)``; the index is an ``int`` or an
    ``(int, seed)`` pair from :class:`IterationBatchSampler`.
    """

    def __init__(self, images, labels, decode, *, size=None, flip=False, label_mask=None,
                 label_size="same"):
        if len(images) != len(labels):
            raise ValueError(f"images and labels must have the same length; got {len(images)} "
                             f"and {len(labels)}")
        self.images, self.labels, self.decode = list(images), list(labels), decode
        self.size, self.flip, self.label_mask = size, flip, label_mask
        self.label_size = size if label_size == "same" else label_size

    def __len__(self) -> int:
        return len(self.images)

    def ids(self) -> list[str]:
        """Stable image ids (file stems), used by the label state."""
        return [os.path.splitext(os.path.basename(p))[0] for p in self.images]

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = load_rgb(self.images[index])
        label = self.decode(self.labels[index])
        if self.label_mask is not None:
            label = np.where(self.label_mask(index), label, IGNORE).astype(np.uint8)
        image = resize(image, self.size, nearest=False)
        label = resize(label, self.label_size, nearest=True)
        if self.flip and seed is not None and np.random.default_rng(seed).random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return to_tensor(image), torch.from_numpy(label.astype(np.int64)), index


def _pairs(image_glob: str, label_of) -> tuple[list[str], list[str]]:
    images = sorted(glob.glob(image_glob))
    labels = [label_of(p) for p in images]
    missing = [p for p in labels if not os.path.exists(p)]
    if not images:
        raise FileNotFoundError(f"no images match {image_glob}")
    if missing:
        raise FileNotFoundError(f"{len(missing)} label files are missing, e.g. {missing[0]}")
    return images, labels


def gtav(root, *, size=None, flip=False, list_file=None) -> SegmentationFiles:
    """GTAV: ``root/images/*.png`` with ``root/labels/*.png`` (19 train ids).

    ``list_file`` optionally names the image files to use, one per line.
    """
    images, labels = _pairs(os.path.join(root, "images", "*.png"),
                            lambda p: os.path.join(root, "labels", os.path.basename(p)))
    if list_file is not None:
        with open(list_file) as f:
            keep = {line.strip() for line in f if line.strip()}
        pairs = [(i, lab) for i, lab in zip(images, labels) if os.path.basename(i) in keep]
        images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    table = lookup_table(CITYSCAPES_ID_TO_TRAIN19, 256)
    return SegmentationFiles(images, labels, lambda p: table[load_gtav_label(p)],
                             size=size, flip=flip)


def synthia(root, *, size=None, flip=False) -> SegmentationFiles:
    """SYNTHIA RAND-CITYSCAPES: ``root/RGB/*.png`` with ``root/GT/LABELS/*.png`` (16 ids)."""
    images, labels = _pairs(os.path.join(root, "RGB", "*.png"),
                            lambda p: os.path.join(root, "GT", "LABELS", os.path.basename(p)))
    table = lookup_table(SYNTHIA_ID_TO_TRAIN16)
    return SegmentationFiles(images, labels, lambda p: table[load_synthia_label(p)],
                             size=size, flip=flip)


def cityscapes(root, split, num_classes, *, size=None, flip=False, label_mask=None,
               label_size="same") -> SegmentationFiles:
    """Cityscapes ``split`` with labels mapped to 19 or 16 train ids."""
    pattern = os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")

    def label_of(p):
        city = os.path.basename(os.path.dirname(p))
        stem = os.path.basename(p)[: -len("_leftImg8bit.png")]
        return os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png")

    if num_classes not in (19, 16):
        raise ValueError(f"num_classes must be 19 or 16; got {num_classes}")
    images, labels = _pairs(pattern, label_of)
    mapping = CITYSCAPES_ID_TO_TRAIN19 if num_classes == 19 else CITYSCAPES_ID_TO_TRAIN16
    table = lookup_table(mapping, 256)
    return SegmentationFiles(images, labels, lambda p: table[load_cityscapes_label(p)],
                             size=size, flip=flip, label_mask=label_mask, label_size=label_size)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def folders(root, label_map, num_classes, *, size=None, flip=False, label_mask=None,
            label_size="same") -> SegmentationFiles:
    """A custom data set: ``root/images/NAME.{png,jpg,jpeg}`` with ``root/labels/NAME.png``.

    Args:
        label_map: ``{id in the label files: train id}``; ids not listed
            become ``IGNORE``. Empty: the files hold train ids
            ``0 .. num_classes - 1`` already (anything else is ignored).
        num_classes: train ids are ``0 .. num_classes - 1``.

    The other arguments are those of :class:`SegmentationFiles`.
    """
    image_dir = os.path.join(root, "images")
    images = sorted(p for p in glob.glob(os.path.join(image_dir, "*"))
                    if p.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{image_dir} holds two images with one name and different suffixes")
    labels = [os.path.join(root, "labels", stem + ".png") for stem in stems]
    missing = [p for p in labels if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} label files are missing, e.g. {missing[0]}")
    table = lookup_table(label_map or {i: i for i in range(num_classes)})

    def decode(path):
        raw = load_cityscapes_label(path)
        if raw.ndim != 2:
            raise ValueError(f"{path}: label files must have one channel (ids); got shape "
                             f"{raw.shape}")
        return table[raw]

    return SegmentationFiles(images, labels, decode, size=size, flip=flip,
                             label_mask=label_mask, label_size=label_size)


def source_dataset(cfg, root, **kwargs) -> SegmentationFiles:
    """The source training set of ``cfg.source`` under ``root`` (kwargs: size, flip)."""
    if cfg.source == "gtav":
        return gtav(root, **kwargs)
    if cfg.source == "synthia":
        return synthia(root, **kwargs)
    return folders(root, cfg.label_map, cfg.num_classes, **kwargs)


def target_dataset(cfg, root, split, **kwargs) -> SegmentationFiles:
    """The target ``split`` ("train" | "val"): Cityscapes, or ``root/split`` of a custom set.

    kwargs are those of :class:`SegmentationFiles`.
    """
    if cfg.source == "custom":
        return folders(os.path.join(root, split), cfg.label_map, cfg.num_classes, **kwargs)
    return cityscapes(root, split, cfg.num_classes, **kwargs)


def label_shape(dataset: SegmentationFiles, index: int = 0) -> tuple[int, int]:
    """``(H, W)`` of a data set's label files (read from the first file)."""
    return tuple(dataset.decode(dataset.labels[index]).shape)


# --------------------------------------------------------------------- sampling


class IterationBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(index, seed)`` for iterations ``start .. stop - 1``.

    Iteration ``i`` of rank ``r`` draws its batch from a generator seeded with
    ``(seed, i, r)`` only, so a run resumed at iteration ``i`` sees exactly the
    batches an uninterrupted run would have seen.

    Args:
        size: data set length.
        batch_size: images per batch per rank.
        start, stop: iteration range.
        weights: ``(size,)`` sampling probabilities (class-balanced sampling),
            or None for uniform.
        seed, rank: see above.
    """

    def __init__(self, size, batch_size, start, stop, *, weights=None, seed=0, rank=0):
        self.size, self.batch_size, self.start, self.stop = size, batch_size, start, stop
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for it in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, it, self.rank])
            idx = rng.choice(self.size, size=self.batch_size, replace=self.size < self.batch_size,
                             p=self.weights)
            seeds = rng.integers(0, 2 ** 31, size=self.batch_size)
            yield [(int(i), int(s)) for i, s in zip(idx, seeds)]


def class_frequencies(dataset: SegmentationFiles, num_classes: int, cache=None) -> np.ndarray:
    """``(N, num_classes)`` float64 pixel fraction of each class in each label file.

    Read once and kept in ``cache`` (a JSON file path) when given.
    """
    if cache is not None and os.path.exists(cache):
        with open(cache) as f:
            stored = json.load(f)
        if stored.get("labels") == dataset.labels:
            return np.asarray(stored["freq"], dtype=np.float64)
    freq = np.zeros((len(dataset), num_classes))
    for i, path in enumerate(dataset.labels):
        lab = dataset.decode(path)
        counts = np.bincount(lab.ravel(), minlength=256)[:num_classes]
        freq[i] = counts / max(lab.size, 1)
    if cache is not None:
        atomic_write_text(cache, json.dumps({"labels": dataset.labels, "freq": freq.tolist()}))
    return freq


def class_balanced_weights(freq: np.ndarray, temperature: float = 0.01) -> np.ndarray:
    """Image sampling probabilities that favour images with rare classes.

    A class ``c`` is drawn with probability ``softmax((1 - f_c) / T)``, where
    ``f_c`` is its share of all labelled source pixels, then an image
    containing ``c`` is drawn in proportion to its pixels of ``c``; the
    result is the marginal probability of each image, ``(N,)`` summing to 1.
    """
    total = freq.sum(axis=0)
    present = total > 0
    share = np.where(present, total / max(total.sum(), 1e-12), 0.0)
    logits = np.where(present, (1.0 - share) / temperature, -np.inf)
    p_class = np.exp(logits - logits[present].max())
    p_class /= p_class.sum()
    per_image = freq / np.where(total > 0, total, 1.0)
    weights = per_image @ p_class
    return weights / weights.sum()


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its directory if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    densecore.io.atomic_write_text(path, text)
