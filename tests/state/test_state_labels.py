"""ActiveLabelState: stored labels, their export for Cityscapes-style loaders, named errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from densecore import ActiveLabelState
from densecore.state import CorruptFileError

SHAPE = (6, 9)


def test_labels_round_trip_latest_round_wins_and_idempotent(tmp_path):
    rng = np.random.default_rng(0)
    s = ActiveLabelState(tmp_path / "st", ["a", "b"], SHAPE)
    gt = rng.integers(0, 19, size=SHAPE)
    m0 = rng.random(SHAPE) < 0.3
    s.add("a", m0, round=0, labels=gt)
    s.add("a", m0, round=0, labels=gt)  # a restarted job re-adds: no-op
    with pytest.raises(ValueError, match="other labels"):
        s.add("a", m0, round=0, labels=(gt + 1) % 19)
    m1 = rng.random(SHAPE) < 0.3
    gt1 = rng.integers(0, 19, size=SHAPE)
    s.add("a", m1, round=1, labels=gt1)
    want = np.full(SHAPE, 255, np.uint8)
    want[m0] = gt[m0]
    want[m1] = gt1[m1]
    got = ActiveLabelState(tmp_path / "st").labels("a")  # another process, read-only
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    only0 = s.labels("a", rounds=[0])
    assert np.array_equal(only0 == 255, ~m0)
    assert np.array_equal(s.labeled("a", rounds=range(1)), m0)
    assert np.array_equal(s.labeled("a"), m0 | m1)
    s.add("b", m0, round=0)  # no labels
    with pytest.raises(ValueError, match="without labels"):
        s.labels("b")
    big = np.full(SHAPE, 300)
    s.add("b", m1, round=1, labels=big)
    assert s.labels("b", rounds=[1]).dtype == np.uint16


def test_labels_are_checked(tmp_path):
    s = ActiveLabelState(tmp_path, ["a"], SHAPE)
    m = np.zeros(SHAPE, bool)
    m[0, 0] = True
    with pytest.raises(TypeError, match="labels must hold integer"):
        s.add("a", m, round=0, labels=np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError, match="labels must have shape"):
        s.add("a", m, round=0, labels=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        s.add("a", m, round=0, labels=np.full(SHAPE, -1))
    assert not s.round_done("a", 0)


def test_export_cityscapes_layout_reads_back_with_pil(tmp_path):
    ids = ["aachen_000000_000019_leftImg8bit", "bremen_000001_000019_leftImg8bit"]
    s = ActiveLabelState(tmp_path / "st", ids, SHAPE)
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 19, size=SHAPE)
    m = rng.random(SHAPE) < 0.4
    s.add(ids[0], m, round=0, labels=gt)
    paths = s.export_labels(tmp_path / "out")
    assert [os.path.relpath(p, tmp_path / "out") for p in paths] == [
        "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"]  # b: no round
    got = np.asarray(Image.open(paths[0]))
    assert np.array_equal(got, s.labels(ids[0]))
    flat = s.export_labels(tmp_path / "flat", layout="flat", ignore_index=1000)
    got16 = np.asarray(Image.open(flat[0]))
    assert got16.dtype.kind in "iu" and got16.max() == 1000
    assert np.array_equal(got16[m], gt[m])
    with pytest.raises(ValueError, match="layout"):
        s.export_labels(tmp_path, layout="voc")
    t = ActiveLabelState(tmp_path / "t", ["../escape"], SHAPE)
    t.add("../escape", m, round=0, labels=gt)
    with pytest.raises(ValueError, match="inside out_dir"):
        t.export_labels(tmp_path / "x", layout="flat")


def test_surrogate_image_id_is_a_named_error(tmp_path):
    with pytest.raises(ValueError, match="image_ids must be valid Unicode"):
        ActiveLabelState(tmp_path / "s", ["ok", "bad\udcff"], SHAPE)
    s = ActiveLabelState(tmp_path / "m", ["a"], SHAPE)
    path = tmp_path / "m" / "manifest.json"
    m = json.loads(path.read_text())
    m["images"]["bad\udcff"] = m["images"]["a"]
    path.write_text(json.dumps(m))
    with pytest.raises(CorruptFileError, match="not valid text"):
        ActiveLabelState(tmp_path / "m")
    assert s is not None


@pytest.mark.parametrize("key", ["²", "٣", "01", "-1", " 1", "1e3"])
def test_tampered_round_key_is_a_named_error(tmp_path, key):
    s = ActiveLabelState(tmp_path, ["a"], SHAPE)
    s.add("a", np.eye(*SHAPE, dtype=bool), round=0)
    path = tmp_path / "manifest.json"
    m = json.loads(path.read_text())
    m["images"]["a"]["rounds"][key] = m["images"]["a"]["rounds"].pop("0")
    path.write_text(json.dumps(m))
    with pytest.raises(CorruptFileError, match="round key"):
        ActiveLabelState(tmp_path).labeled("a")


def test_reusing_a_folder_with_recorded_rounds_is_explicit(tmp_path):
    import warnings

    import densecore

    root = tmp_path / "labels"
    state = densecore.ActiveLabelState(root, ["a", "b"], (2, 3))
    m = np.zeros((2, 3), bool)
    m[0, 1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing recorded yet: no warning
        densecore.ActiveLabelState(root, ["a", "b"], (2, 3))
    state.add("a", m, round=0)
    with pytest.warns(UserWarning, match="continuing that run.*resume=True"):
        again = densecore.ActiveLabelState(root, ["a", "b"], (2, 3))
    assert again.round_done("a", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert densecore.ActiveLabelState(root, ["a", "b"], (2, 3), resume=True).round_done(
            "a", 0)
        densecore.ActiveLabelState(root)  # read-only (loader workers): no warning
    with pytest.raises(FileExistsError, match="resume=True"):
        densecore.ActiveLabelState(root, ["a", "b"], (2, 3), resume=False)
    with pytest.raises(TypeError, match="resume"):
        densecore.ActiveLabelState(root, ["a", "b"], (2, 3), resume="yes")
