"""examples/deeplab_ada: a custom data set (``source: custom``) loads and trains.

The data set is written here: three classes stored in the label files as ids
10, 20 and 30 (anything else ignored), source in ``images/`` + ``labels/``,
target in ``train/`` and ``val/`` of the same layout, as README.md describes.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                                       "deeplab_ada"))
sys.path.insert(0, EXAMPLE)

import datasets  # noqa: E402
import train  # noqa: E402
from config import load_config  # noqa: E402

NAMES = ["ground", "crater", "sky"]
IDS = {10: 0, 20: 1, 30: 2}
CONFIG = {"source": "custom", "num_classes": 3, "class_names": NAMES, "label_map": IDS,
          "backbone": "tiny", "source_size": [96, 48], "target_size": [96, 48],
          "iterations": 4, "selection_iters": [2], "estimator_detach_iter": 2, "dmc_dim": 16,
          "save_every": 0, "print_freq": 1, "greedy_backend": "torch", "flip_test": False}


def write_folder(root, n, rng, suffix=".png"):
    """``n`` scenes: sky on top, ground below with round craters; id 99 (void) in a corner."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    colours = {10: (120, 100, 60), 20: (60, 50, 40), 30: (150, 190, 230), 99: (0, 0, 0)}
    yy, xx = np.mgrid[:48, :96]
    for i in range(n):
        ids = np.where(yy < rng.integers(12, 24), 30, 10).astype(np.uint8)
        for _ in range(3):
            cy, cx, r = rng.integers(26, 44), rng.integers(8, 88), rng.integers(3, 7)
            ids[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 20
        ids[:4, :4] = 99
        image = np.array([colours[v] for v in ids.ravel()], np.float64).reshape(48, 96, 3)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "images", f"scene{i:03d}{suffix}"))
        Image.fromarray(ids, mode="L").save(os.path.join(root, "labels", f"scene{i:03d}.png"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_data")
    rng = np.random.default_rng(0)
    write_folder(str(root / "source"), 3, rng)
    write_folder(str(root / "target" / "train"), 3, rng, suffix=".jpg")
    write_folder(str(root / "target" / "val"), 2, rng)
    path = root / "custom.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return root


def test_custom_config_loads_into_the_dataclass(data):
    cfg = load_config(str(data / "custom.yaml"))
    assert cfg.source == "custom" and cfg.num_classes == 3
    assert cfg.class_names == tuple(NAMES) and cfg.label_map == IDS
    # JSON (run.json) stores the keys as text; they come back as ids
    again = load_config(None, [f"{k}={json.dumps(v)}" for k, v in CONFIG.items()
                               if k in ("source", "num_classes", "class_names")]
                        + ['label_map={"10": 0, "20": 1, "30": 2}'])
    assert again.label_map == IDS


@pytest.mark.parametrize("change, message", [
    ({"class_names": ["ground", "crater"]}, "class_names must be 3 distinct"),
    ({"class_names": ["ground", "ground", "sky"]}, "class_names must be 3 distinct"),
    ({"label_map": {10: 3}}, "label_map values must be train ids from 0 to 2"),
    ({"label_map": {-1: 0}}, "label_map keys"),
    ({"num_classes": 0, "class_names": []}, "num_classes must be an integer from 1 to 255"),
    ({"source": "gtav", "num_classes": 19, "class_names": []}, "label_map is for source 'custom'"),
    ({"class_names": "ground"}, "class_names must be a list"),
])
def test_custom_config_mistakes_name_the_field(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **change}))
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


def test_folders_map_label_ids_and_ignore_the_rest(data):
    cfg = load_config(str(data / "custom.yaml"))
    target = datasets.target_dataset(cfg, str(data / "target"), "train")
    assert len(target) == 3 and target.ids() == ["scene000", "scene001", "scene002"]
    raw = np.asarray(Image.open(target.labels[0]))
    decoded = target.decode(target.labels[0])
    for raw_id, train_id in IDS.items():
        assert np.all(decoded[raw == raw_id] == train_id)
    assert np.all(decoded[raw == 99] == datasets.IGNORE) and (raw == 99).any()
    image, label, _ = target[0]
    assert image.shape == (3, 48, 96) and set(label.unique().tolist()) <= {0, 1, 2, 255}
    with pytest.raises(FileNotFoundError, match="no images"):
        datasets.source_dataset(cfg, str(data / "target"))  # images/ is one level down


def test_a_tiny_custom_run_trains_selects_and_reports_its_classes(data, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "run"
    try:
        train.main(train.get_args_parser().parse_args(
            ["--config", str(data / "custom.yaml"), "--source-root", str(data / "source"),
             "--target-root", str(data / "target"), "--output-dir", str(out),
             "--workers", "0", "--no-progress", "--vis-images", "1"]))
    finally:
        torch.set_num_threads(before)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["per_class_iou"]) == NAMES and "mIoU13" not in metrics
    (row,) = metrics["queried_pixels_per_round"]
    assert row["images"] == 3 and row["queried"] > 0
    assert metrics["config"]["class_names"] == NAMES
    assert any(p.name.startswith("pred_scene") for p in (out / "vis").iterdir())


def test_a_run_stored_before_the_custom_fields_existed_still_resumes():
    import dataclasses

    cfg = load_config(None, ["backbone=tiny"])
    stored = dataclasses.asdict(cfg)
    del stored["class_names"], stored["label_map"]  # a run.json / checkpoint of older code
    assert train._changed(stored, cfg) == {}
    stored["lr"] = 1.0
    assert set(train._changed(stored, cfg)) == {"lr"}
    custom = load_config(None, ["source=custom", "num_classes=2", "class_names=[a, b]"])
    assert set(train._changed(stored | {"lr": custom.lr}, custom)) == {
        "source", "num_classes", "class_names", "backbone"}
