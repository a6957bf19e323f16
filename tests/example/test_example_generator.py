"""examples/deeplab_ada/make_synthetic_data.py: the domain gap the study has to close."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import datasets  # noqa: E402
import make_synthetic_data as gen  # noqa: E402

ROAD, SIDEWALK, BUILDING, VEGETATION = 0, 1, 2, 8
PEOPLE = (11, 12, 17, 18)
VEHICLES = (13, 14, 15, 16)


def _scenes(objects, n=40, size=(64, 128)):
    rng = np.random.default_rng(0)
    return [gen.draw_scene(*size, rng, objects) for _ in range(n)]


def _class_pixels(domain, cls, n=6, size=(64, 128)):
    """RGB values of class ``cls`` in ``n`` rendered scenes, per image."""
    rng = np.random.default_rng(1)
    out = []
    for lab in _scenes(gen.TARGET_OBJECTS if domain == "cityscapes" else gen.SOURCE_OBJECTS,
                       n, size):
        img = gen.render(lab, domain, rng).astype(np.float64)
        # stay away from class borders, where the target's blur mixes colours
        inner = lab == cls
        inner[1:-1, 1:-1] &= (inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2]
                              & inner[1:-1, 2:])
        if inner.sum() > 20:
            out.append(img[inner])
    return out


def test_object_frequencies_differ_between_domains():
    src, tgt = _scenes(gen.SOURCE_OBJECTS), _scenes(gen.TARGET_OBJECTS)
    share = lambda scenes, classes: np.mean([np.isin(s, classes).mean() for s in scenes])  # noqa: E731
    assert share(tgt, PEOPLE) > 2 * share(src, PEOPLE)
    assert share(src, VEHICLES) > 1.5 * share(tgt, VEHICLES)
    # both domains draw every class the layout knows about, sky to bicycle
    assert set(np.unique(np.concatenate([s.ravel() for s in src + tgt]))) >= {
        ROAD, SIDEWALK, BUILDING, VEGETATION, 10, 11, 13}


def test_source_is_flat_and_target_is_textured():
    # within one image a source class is one flat colour (noise sigma 2);
    # the target's foliage, asphalt and facades carry texture and noise
    for cls in (ROAD, BUILDING, VEGETATION):
        src = np.median([p.std(axis=0).mean() for p in _class_pixels("gtav", cls)])
        tgt = np.median([p.std(axis=0).mean() for p in _class_pixels("cityscapes", cls)])
        assert src < 3.0, (cls, src)
        assert tgt > 3 * src, (cls, src, tgt)


def test_target_colours_are_shifted_towards_other_source_classes():
    # the gap a source-only model falls into: target asphalt looks like source
    # facades, target sidewalks sit nearer source road than source sidewalk
    mean = lambda domain, cls: np.concatenate(_class_pixels(domain, cls)).mean(axis=0)  # noqa: E731
    road_t = mean("cityscapes", ROAD)
    assert (np.linalg.norm(road_t - mean("gtav", BUILDING))
            < np.linalg.norm(road_t - mean("gtav", ROAD)))
    side_t = mean("cityscapes", SIDEWALK)
    assert (np.linalg.norm(side_t - mean("gtav", ROAD))
            < np.linalg.norm(side_t - mean("gtav", SIDEWALK)))


def test_target_lighting_varies_from_image_to_image():
    sky = [p.mean() for p in _class_pixels("cityscapes", 10, n=10)]
    sky_src = [p.mean() for p in _class_pixels("gtav", 10, n=10)]
    assert np.std(sky) > 3 * np.std(sky_src)


def test_render_rejects_an_unknown_domain():
    with pytest.raises(ValueError, match="domain"):
        gen.render(np.zeros((8, 8), np.uint8), "carla", np.random.default_rng(0))


def test_sizes_for_keeps_source_aspect_ratios():
    assert gen.sizes_for() == gen.SIZES
    s = gen.sizes_for((128, 256))
    assert s["cityscapes"] == (128, 256) and s["gtav"] == (144, 256)
    assert s["synthia"] == (152, 256)
    with pytest.raises(ValueError, match="target_size"):
        gen.sizes_for((8, 256))


def test_main_writes_the_real_layouts_at_the_requested_size(tmp_path):
    gen.main(argparse.Namespace(out=str(tmp_path), train=2, val=1, seed=3, size=(32, 64)))
    src = datasets.gtav(str(tmp_path / "gtav"))
    syn = datasets.synthia(str(tmp_path / "synthia"))
    tgt = datasets.cityscapes(str(tmp_path / "cityscapes"), "train", 19)
    val = datasets.cityscapes(str(tmp_path / "cityscapes"), "val", 19)
    assert (len(src), len(syn), len(tgt), len(val)) == (2, 2, 2, 1)
    assert tuple(src[0][0].shape) == (3, 36, 64)
    assert tuple(syn[0][0].shape) == (3, 38, 64)
    image, label, _ = tgt[0]
    assert tuple(image.shape) == (3, 32, 64) and tuple(label.shape) == (32, 64)
    assert (label[-2:] == 255).all()  # ego vehicle rows are void
    assert set(label.unique().tolist()) - {255} <= set(range(19))


def test_size_argument_parses_and_rejects_garbage():
    parser = gen.get_args_parser()
    assert parser.parse_args(["o", "--size", "128x256"]).size == (128, 256)
    with pytest.raises(SystemExit):
        parser.parse_args(["o", "--size", "128*256"])
