"""examples/deeplab_ada: end-to-end runs of train.py on generated data, and resume."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import make_synthetic_data as gen  # noqa: E402
import train  # noqa: E402

import densecore  # noqa: E402

TINY = ["backbone=tiny", "source_size=[96, 54]", "target_size=[96, 48]", "iterations=6",
        "selection_iters=[2, 4]", "estimator_detach_iter=4", "dmc_dim=16", "save_every=0",
        "print_freq=1", "lr=0.0025", "greedy_backend=torch", "flip_test=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ada_train_data")
    # the generator's own entry point: GTAV, SYNTHIA and Cityscapes from seed 0
    gen.main(gen.get_args_parser().parse_args([str(root), "--train", "3", "--val", "1"]))
    return root


def settings(overrides=()):
    """TINY with ``overrides`` replacing fields of the same name (--set refuses a key twice)."""
    merged = dict(item.split("=", 1) for item in TINY)
    merged.update(item.split("=", 1) for item in overrides)
    return [f"{k}={v}" for k, v in merged.items()]


def run(data, out, *extra, source="gtav", overrides=()):
    args = train.get_args_parser().parse_args(
        ["--source-root", str(data / source), "--target-root", str(data / "cityscapes"),
         "--output-dir", str(out), "--workers", "0", "--no-progress", "--vis-images", "1",
         "--set", *settings(overrides), *extra])
    train.main(args)
    return args


def masks(out):
    state = densecore.ActiveLabelState(os.path.join(out, "labels"))
    return {(i, r): state.queried(i, r) for i in state.image_ids for r in state.rounds(i)}


def test_resume_after_a_stop_between_rounds(data, tmp_path, one_thread):
    full, split = tmp_path / "full", tmp_path / "split"
    run(data, full)
    metrics = json.loads((full / "metrics.json").read_text())
    assert 0 <= metrics["mIoU"] <= 100 and len(metrics["per_class_iou"]) == 19
    rounds = metrics["queried_pixels_per_round"]
    assert [r["round"] for r in rounds] == [0, 1] and [r["iteration"] for r in rounds] == [2, 4]
    assert all(r["images"] == 3 and r["queried"] > 0 for r in rounds)
    assert (full / "vis").is_dir() and any(p.name.startswith("queried_")
                                           for p in (full / "vis").iterdir())

    run(data, split, "--stop-at", "3")  # round 0 done at 2, round 1 not yet
    assert not (split / "metrics.json").exists()
    assert torch.load(split / "checkpoint.pth", weights_only=False)["iteration"] == 3
    first = masks(split)
    assert sorted({r for _, r in first}) == [0]
    run(data, split, "--resume", "auto")
    second = masks(split)
    assert all(np.array_equal(second[k], v) for k, v in first.items())  # kept, not redone
    reference = masks(full)
    assert second.keys() == reference.keys()
    assert all(np.array_equal(second[k], reference[k]) for k in reference)
    a = torch.load(full / "checkpoint.pth", weights_only=False)["model"]
    b = torch.load(split / "checkpoint.pth", weights_only=False)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    with open(split / "log.csv") as f:
        iters = [int(row["iteration"]) for row in csv.DictReader(f)]
    assert iters == list(range(1, 7))
    resumed = json.loads((split / "metrics.json").read_text())
    assert resumed["queried_pixels_per_round"] == metrics["queried_pixels_per_round"]


def test_resume_refuses_another_config(data, tmp_path, one_thread):
    run(data, tmp_path, "--stop-at", "2")
    with pytest.raises(ValueError, match="another config"):
        run(data, tmp_path, "--resume", "auto", overrides=["alpha=10"])


def test_synthia_v3plus_kcenter_without_estimator(data, tmp_path, one_thread):
    run(data, tmp_path, source="synthia",
        overrides=["source=synthia", "num_classes=16", "arch=deeplabv3plus", "estimator=none",
                   "sampler=k-center", "score=entropy", "budget=pixels", "budget_pixels=40",
                   "region_size=1", "selection_iters=[3]", "source_sampling=uniform"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["per_class_iou"]) == 16 and "mIoU13" in metrics
    (r,) = metrics["queried_pixels_per_round"]
    # RIPU's 40-pixel budget: 40 pixels at 96 x 48 rescaled to 64 x 128 labels, one round
    assert r["queried"] == 3 * densecore.pixel_budget((64, 128), 40, 1, train_shape=(48, 96))


def test_source_free_from_a_source_model(data, tmp_path, one_thread):
    run(data, tmp_path / "src", overrides=["selection_iters=[]", "iterations=2"])
    run(data, tmp_path / "sf", "--init-from", str(tmp_path / "src" / "checkpoint.pth"),
        overrides=["source_free=true", "iterations=3", "selection_iters=[1]"])
    metrics = json.loads((tmp_path / "sf" / "metrics.json").read_text())
    assert metrics["queried_pixels_per_round"][0]["images"] == 3


@pytest.mark.parametrize("sampler,kind", [("kmedoids-refinement", densecore.KMedoidsRefinement),
                                          ("typicality", densecore.TypicalityGreedy)])
def test_samplers_beyond_the_paper_run_in_the_pipeline(data, tmp_path, one_thread, sampler,
                                                       kind):
    cfg = train.config_from_dict({"sampler": sampler})
    assert isinstance(train.make_sampler(cfg, 0), kind)
    run(data, tmp_path, overrides=[f"sampler={sampler}", "selection_iters=[3]"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (r,) = metrics["queried_pixels_per_round"]
    assert r["queried"] > 0 and metrics["config"]["sampler"] == sampler
