"""examples/deeplab_ada: a run SIGKILLed anywhere and resumed equals an uninterrupted run.

The tiny configuration (6 iterations, selection rounds at 2 and 4, 3 target
images, 2 validation images) is killed with SIGKILL in a subprocess at a
point of training, of a selection round and of the final evaluation, then
resumed in this process with ``--resume auto``. Masks, manifest and
metrics.json must be byte-identical to the uninterrupted run, the model
weights equal, and log.csv must hold the same rows (iteration, losses,
labeled pixels: the same batches) apart from the clock column.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                                       "deeplab_ada"))
sys.path.insert(0, EXAMPLE)

import make_synthetic_data as gen  # noqa: E402
import train  # noqa: E402

TINY = ["backbone=tiny", "source_size=[96, 54]", "target_size=[96, 48]", "iterations=6",
        "selection_iters=[2, 4]", "estimator_detach_iter=4", "dmc_dim=16", "save_every=0",
        "print_freq=1", "lr=0.0025", "greedy_backend=torch", "flip_test=false",
        "selection_batch=2"]

# Runs train.main in a fresh interpreter and SIGKILLs itself at one event.
KILLER = """
import os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {example!r})
import train
want = tuple({point!r})
def on_event(*where):
    if where == want:
        os.kill(os.getpid(), signal.SIGKILL)
train.on_event = on_event
train.main(train.get_args_parser().parse_args({argv!r}))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ada_resume_data")
    rng = np.random.default_rng(1)
    gen.write_gtav(str(root / "gtav"), 3, rng)
    gen.write_cityscapes(str(root / "cityscapes"), 3, 2, rng)
    return root


def argv(data, out, *extra):
    return ["--source-root", str(data / "gtav"), "--target-root", str(data / "cityscapes"),
            "--output-dir", str(out), "--workers", "0", "--no-progress", "--vis-images", "1",
            "--set", *TINY, *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ada_reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(train.get_args_parser().parse_args(argv(data, out)))
    finally:
        torch.set_num_threads(before)
    return out


def files(out):
    """Relative path -> bytes of the label state and metrics.json."""
    found = {}
    for sub in ("labels",):
        for dirpath, _, names in os.walk(out / sub):
            for n in names:
                if n != ".lock" and not n.endswith(".tmp"):
                    p = os.path.join(dirpath, n)
                    found[os.path.relpath(p, out)] = open(p, "rb").read()
    found["metrics.json"] = (out / "metrics.json").read_bytes()
    return found


def log_rows(out):
    with open(out / "log.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.parametrize("point", [("iteration", 3),    # training, after the round-0 checkpoint
                                   ("select", 1, 1),    # round 1, two of three images recorded
                                   ("evaluate", 0)])    # final evaluation, one of two images
def test_sigkill_then_resume_is_identical(data, reference, tmp_path, point):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.join(EXAMPLE, os.pardir, os.pardir, "src"),
                                           os.environ.get("PYTHONPATH", "")]))
    code = KILLER.format(example=EXAMPLE, point=list(point), argv=argv(data, out))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "metrics.json").exists()

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(train.get_args_parser().parse_args(argv(data, out, "--resume", "auto")))
    finally:
        torch.set_num_threads(before)

    got, want = files(out), files(reference)
    assert got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []
    assert log_rows(out) == log_rows(reference)
    with open(out / "log.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    assert seconds == sorted(seconds)  # the clock continues across the resume
    a = torch.load(reference / "checkpoint.pth", weights_only=False)["model"]
    b = torch.load(out / "checkpoint.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_used_output_dir_is_refused_without_resume(data, reference, tmp_path):
    with pytest.raises(train.UsageError, match="--resume auto"):
        train.main(train.get_args_parser().parse_args(argv(data, reference)))
    with pytest.raises(train.UsageError, match="another config"):
        train.main(train.get_args_parser().parse_args(
            argv(data, reference, "sampler=k-center", "--resume", "auto")))


def test_set_accumulates_and_refuses_a_repeated_key():
    args = train.get_args_parser().parse_args(
        ["--target-root", "x", "--out", "y", "--set", "iterations=10", "--set", "lr=0.1",
         "alpha=5"])
    assert args.set == ["iterations=10", "lr=0.1", "alpha=5"]
    cfg = train.load_config(None, args.set + ["selection_iters=[2]"])
    assert (cfg.iterations, cfg.lr, cfg.alpha) == (10, 0.1, 5)
    with pytest.raises(ValueError, match="more than once"):
        train.load_config(None, ["iterations=10", "iterations=20"])


def test_test_only_reads_the_config_from_the_checkpoint(data, reference, tmp_path, capsys):
    out = tmp_path / "eval"
    args = train.get_args_parser().parse_args(
        ["--target-root", str(data / "cityscapes"), "--output-dir", str(out), "--workers", "0",
         "--vis-images", "1", "--test-only", "--resume", str(reference / "checkpoint.pth")])
    train.main(args)
    printed = capsys.readouterr().out
    import json
    want = json.loads((reference / "metrics.json").read_text())
    got = json.loads((out / "metrics_test.json").read_text())
    assert got["mIoU"] == want["mIoU"] and f"mIoU {want['mIoU']:.2f}" in printed
    assert (out / "vis" / "pred_city0_000000_000000_leftImg8bit.png").exists() or \
        any(p.name.startswith("pred_") for p in (out / "vis").iterdir())
    with pytest.raises(train.UsageError, match="reads the config from the checkpoint"):
        train.main(train.get_args_parser().parse_args(
            ["--target-root", "x", "--output-dir", str(out), "--test-only", "--set", "lr=1"]))


def test_pictures_and_exact_counts(reference):
    from PIL import Image

    import json
    m = json.loads((reference / "metrics.json").read_text())
    for r in m["queried_pixels_per_round"]:
        assert r["picks"] > 0 and r["max_pixels"] == 9 * r["picks"]
        assert 0 < r["queried"] <= r["max_pixels"] and r["new"] <= r["queried"]
    new = [r["new"] for r in m["queried_pixels_per_round"]]
    # log.csv: labeled target pixels so far (rounds at iterations 2 and 4), not per batch
    want = {1: 0, 2: 0, 3: new[0], 4: new[0], 5: new[0] + new[1], 6: new[0] + new[1]}
    with open(reference / "log.csv") as f:
        got = {int(r["iteration"]): int(r["target_labeled_pixels"]) for r in csv.DictReader(f)}
    assert got == want
    vis = reference / "vis"
    (q,) = [p for p in vis.iterdir() if p.name.startswith("queried_")]
    label_h, label_w = 64, 128  # make_synthetic_data's Cityscapes size
    with Image.open(q) as im:  # label resolution enlarged 8x (short side 512) + legend
        assert im.size[0] == 8 * label_w and im.size[1] > 8 * label_h
    assert (vis / "round0.png").exists() and (vis / "round1.png").exists()
    (pred,) = [p for p in vis.iterdir() if p.name.startswith("pred_")]
    with Image.open(pred) as im:  # image | ground truth | prediction, enlarged, class legend
        assert im.size[0] >= 3 * 8 * label_w and im.size[1] > 8 * label_h


def test_selection_reads_no_ground_truth_unless_the_oracle_ablation_is_on(data, tmp_path):
    import densecore
    from config import load_config
    from models import build_model

    cfg = load_config(None, TINY)
    ids = []
    _, _, select_set, _ = train.build_data(
        train.get_args_parser().parse_args(argv(data, tmp_path)), cfg,
        str(tmp_path / "labels"), ids)
    state = densecore.ActiveLabelState(tmp_path / "labels", ids, train.label_shapes(select_set))
    torch.manual_seed(0)
    model = build_model(cfg.arch, cfg.backbone, cfg.num_classes, dmc_dim=cfg.dmc_dim)
    reads = []

    def decode(path):
        reads.append(path)
        raise AssertionError("selection read a label file")

    select_set.decode = decode
    train.select_round(model, select_set, state, cfg, 0, torch.device("cpu"))
    assert reads == [] and all(state.round_done(i, 0) for i in ids)

    import dataclasses
    oracle = dataclasses.replace(cfg, oracle_exclude_void=True)
    with pytest.raises(AssertionError, match="read a label file"):
        train.select_round(model, select_set, state, oracle, 1, torch.device("cpu"))


def test_select_round_selects_a_batch_of_images_per_call(data, tmp_path, monkeypatch):
    """One query_round (one farthest_first_batch) per batch of selection_batch images;
    each image's picks are those it gets when selected alone."""
    import dataclasses

    import densecore
    from config import load_config
    from models import build_model

    cfg = load_config(None, TINY)
    ids = []
    _, _, select_set, _ = train.build_data(
        train.get_args_parser().parse_args(argv(data, tmp_path)), cfg,
        str(tmp_path / "labels"), ids)
    torch.manual_seed(0)
    model = build_model(cfg.arch, cfg.backbone, cfg.num_classes, dmc_dim=cfg.dmc_dim)
    calls, batch_calls = [], []
    from densecore.samplers import paper

    real, real_batch = densecore.query_round, paper.farthest_first_batch

    def spy(state, round, image_ids, *a, **k):
        calls.append(list(image_ids))
        return real(state, round, image_ids, *a, **k)

    def spy_batch(features, lengths, *a, **k):
        batch_calls.append(len(lengths))
        return real_batch(features, lengths, *a, **k)

    monkeypatch.setattr(densecore, "query_round", spy)
    monkeypatch.setattr(paper, "farthest_first_batch", spy_batch)
    masks = {}
    for size in (2, 1):
        state = densecore.ActiveLabelState(tmp_path / f"labels{size}", ids,
                                           train.label_shapes(select_set))
        calls.clear()
        batch_calls.clear()
        train.select_round(model, select_set, state, dataclasses.replace(
            cfg, selection_batch=size), 0, torch.device("cpu"))
        assert [len(c) for c in calls] == ([2, 1] if size == 2 else [1, 1, 1])
        assert sum(batch_calls) == 3 and len(batch_calls) == len(calls)
        masks[size] = [state.queried(i, 0) for i in ids]
    assert all(m.any() for m in masks[2])
    assert all(np.array_equal(a, b) for a, b in zip(masks[2], masks[1]))
    # samplers without a seed (RIPU's own selection, score only) go through as they are
    for name in ("ripu", "score-only"):
        state = densecore.ActiveLabelState(tmp_path / f"labels_{name}", ids,
                                           train.label_shapes(select_set))
        calls.clear()
        train.select_round(model, select_set, state, dataclasses.replace(
            cfg, sampler=name, selection_batch=2), 0, torch.device("cpu"))
        assert [len(c) for c in calls] == [2, 1] and all(state.round_done(i, 0) for i in ids)


def test_resnet101_without_pretrained_weights_is_refused(data, tmp_path):
    with pytest.raises(train.UsageError, match="--pretrained"):
        train.main(train.get_args_parser().parse_args(
            argv(data, tmp_path / "r101")[:-len(TINY)] + ["iterations=6",
                                                          "selection_iters=[2]"]))
    assert not (tmp_path / "r101").exists()
