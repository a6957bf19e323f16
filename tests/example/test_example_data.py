"""examples/deeplab_ada: PNG codec, data set layouts, label maps, sampling."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import datasets  # noqa: E402
import make_synthetic_data as gen  # noqa: E402
from png16 import read_png, write_png  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ada_data")
    # the generator's own entry point: GTAV, SYNTHIA and Cityscapes from seed 0
    gen.main(gen.get_args_parser().parse_args([str(root), "--train", "3", "--val", "2"]))
    return root


def test_png16_round_trip_keeps_low_bytes(tmp_path):
    arr = np.random.default_rng(0).integers(0, 65536, size=(7, 5, 3)).astype(np.uint16)
    arr[0, 0] = (3, 258, 0)
    write_png(str(tmp_path / "a.png"), arr)
    back = read_png(str(tmp_path / "a.png"))
    assert back.dtype == np.uint16 and np.array_equal(back, arr)
    # Pillow keeps only the high byte of 16-bit RGB, which is why the reader exists.
    assert np.asarray(Image.open(tmp_path / "a.png"))[0, 0, 0] != 3


@pytest.mark.parametrize("mode,shape", [("RGB", (33, 41, 3)), ("L", (20, 17)), ("I;16", (9, 13))])
def test_read_png_matches_pillow_on_filtered_files(tmp_path, mode, shape):
    rng = np.random.default_rng(1)
    # smooth gradients + noise make Pillow pick Sub/Up/Average/Paeth filters
    base = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 3
    if len(shape) == 3:
        base = np.stack([base, base * 2, base // 2], -1)
    arr = base + rng.integers(0, 4, size=shape)
    arr = arr.astype(np.uint16 if mode == "I;16" else np.uint8)
    Image.fromarray(arr, mode=mode if mode != "I;16" else None).save(tmp_path / "b.png",
                                                                     optimize=True)
    expect = np.asarray(Image.open(tmp_path / "b.png"))
    assert np.array_equal(read_png(str(tmp_path / "b.png")).astype(np.int64),
                          expect.astype(np.int64))


def test_read_png_rejects_non_png(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="x.png"):
        read_png(str(tmp_path / "x.png"))


def test_label_maps_by_hand():
    t19 = datasets.lookup_table(datasets.CITYSCAPES_ID_TO_TRAIN19, 256)
    assert [t19[i] for i in (7, 8, 26, 33, 0, 1, 6, 34)] == [0, 1, 13, 18, 255, 255, 255, 255]
    assert sorted(datasets.CITYSCAPES_ID_TO_TRAIN19.values()) == list(range(19))
    assert sorted(datasets.SYNTHIA_ID_TO_TRAIN16.values()) == list(range(16))
    assert sorted(datasets.CITYSCAPES_ID_TO_TRAIN16.values()) == list(range(16))
    names16, names19 = datasets.SYNTHIA_CLASSES, datasets.CITYSCAPES_CLASSES
    # Cityscapes ids reach the same class name through the 19- and 16-class maps
    for cid, t16 in datasets.CITYSCAPES_ID_TO_TRAIN16.items():
        assert names16[t16] == names19[datasets.CITYSCAPES_ID_TO_TRAIN19[cid]]
    assert names16[datasets.SYNTHIA_ID_TO_TRAIN16[8]] == "car"
    assert names16[datasets.SYNTHIA_ID_TO_TRAIN16[3]] == "road"
    assert [names16[i] for i in range(16) if i not in datasets.SYNTHIA_13] == \
        ["wall", "fence", "pole"]


def test_generated_layouts_and_loaders(data_root):
    r = data_root
    assert os.path.exists(r / "gtav" / "images" / "00001.png")
    assert os.path.exists(r / "gtav" / "labels" / "00001.png")
    assert os.path.exists(r / "synthia" / "RGB" / "0000000.png")
    assert os.path.exists(r / "synthia" / "GT" / "LABELS" / "0000000.png")
    assert os.path.exists(r / "cityscapes" / "gtFine" / "val" / "synthville" /
                          "synthville_000000_000019_gtFine_labelIds.png")
    h, w = gen.SIZES["gtav"]
    for ds, n, classes in ((datasets.gtav(str(r / "gtav")), 3, 19),
                           (datasets.synthia(str(r / "synthia")), 3, 16),
                           (datasets.cityscapes(str(r / "cityscapes"), "train", 19), 3, 19),
                           (datasets.cityscapes(str(r / "cityscapes"), "val", 16), 2, 16)):
        assert len(ds) == n
        image, label, index = ds[0]
        assert image.dtype == torch.float32 and image.shape[0] == 3
        assert label.dtype == torch.int64 and label.shape == image.shape[1:]
        values = set(label.unique().tolist())
        assert values <= set(range(classes)) | {255} and len(values - {255}) >= 4
    image, label, _ = datasets.gtav(str(r / "gtav"), size=(w // 2, h // 2))[1]
    assert image.shape == (3, h // 2, w // 2) and label.shape == (h // 2, w // 2)


def test_loaders_decode_what_was_drawn(tmp_path):
    # each writer draws the first scene before anything else, so the same seed
    # reproduces the drawn train-id map
    gen.write_gtav(str(tmp_path / "g"), 1, np.random.default_rng(5))
    gen.write_synthia(str(tmp_path / "s"), 1, np.random.default_rng(5), size=(90, 160))
    drawn = gen.draw_scene(*gen.SIZES["gtav"], np.random.default_rng(5))
    got = datasets.gtav(str(tmp_path / "g"))[0][1].numpy()
    assert np.array_equal(got, drawn)
    drawn16 = gen.draw_scene(90, 160, np.random.default_rng(5))
    got16 = datasets.synthia(str(tmp_path / "s"))[0][1].numpy()
    names19 = np.array(datasets.CITYSCAPES_CLASSES)[drawn16]
    names19 = np.where(names19 == "terrain", "vegetation", names19)
    names19 = np.where(names19 == "truck", "car", names19)
    names19 = np.where(names19 == "train", "bus", names19)
    assert np.array_equal(np.array(datasets.SYNTHIA_CLASSES)[got16], names19)


def test_cityscapes_void_and_label_mask(data_root):
    root = str(data_root / "cityscapes")
    full = datasets.cityscapes(root, "train", 19)
    label = full[0][1].numpy()
    assert (label[-1] == 255).all()  # ego vehicle rows
    mask = np.zeros(label.shape, bool)
    mask[10, 20] = mask[30, 5] = True
    masked = datasets.cityscapes(root, "train", 19, label_mask=lambda i: mask)
    got = masked[0][1].numpy()
    assert np.array_equal(got != 255, mask & (label != 255))
    assert got[10, 20] == label[10, 20]


def test_flip_is_decided_by_the_seed(data_root):
    ds = datasets.gtav(str(data_root / "gtav"), flip=True)
    plain = ds[0][0]
    flips = [torch.equal(ds[(0, s)][0], plain.flip(-1)) for s in range(20)]
    assert any(flips) and not all(flips)
    assert all(torch.equal(ds[(0, s)][0], ds[(0, s)][0]) for s in range(3))


def test_iteration_sampler_resumes_exactly():
    full = list(datasets.IterationBatchSampler(10, 2, 0, 8, seed=3))
    tail = list(datasets.IterationBatchSampler(10, 2, 5, 8, seed=3))
    assert len(full) == 8 and tail == full[5:]
    other_rank = list(datasets.IterationBatchSampler(10, 2, 0, 8, seed=3, rank=1))
    assert other_rank != full


def test_class_balanced_weights_favour_rare_classes():
    freq = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.8, 0.1, 0.1]])
    w = datasets.class_balanced_weights(freq, temperature=0.1)
    assert w.shape == (3,) and np.isclose(w.sum(), 1)
    assert w[2] > 2 * w[0] and np.isclose(w[0], w[1])
    idx = [i for b in datasets.IterationBatchSampler(3, 2, 0, 300, weights=w) for i, _ in b]
    assert np.bincount(idx, minlength=3)[2] > np.bincount(idx, minlength=3)[0]


def test_class_frequencies_cache(data_root, tmp_path):
    ds = datasets.gtav(str(data_root / "gtav"))
    cache = str(tmp_path / "freq.json")
    f1 = datasets.class_frequencies(ds, 19, cache)
    assert os.path.exists(cache) and f1.shape == (3, 19)
    assert np.all(f1.sum(1) <= 1 + 1e-9) and np.all(f1.sum(1) > 0.9)
    assert np.array_equal(datasets.class_frequencies(ds, 19, cache), f1)
