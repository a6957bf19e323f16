"""examples/deeplab_ada/ladder.py: the measures by hand, one cell end to end and its resume,
the paired analysis against scipy and Holm."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
import yaml

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import ladder  # noqa: E402


def test_propagation_takes_the_nearest_labeled_pixel():
    # a 1 x 4 image: unit features pointing left (pixels 0, 1) or right (2, 3)
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    x = torch.nn.functional.normalize(x, dim=1)
    gt = torch.tensor([[0, 0, 1, 255]])
    both = np.array([[True, False, True, False]])
    assert ladder.propagate(x, both, gt, 3) == pytest.approx(100.0)
    # only pixel 0 labeled: every pixel becomes class 0; class 1 (present) scores 0
    one = np.array([[True, False, False, False]])
    assert ladder.propagate(x, one, gt, 3) == pytest.approx(100.0 * (2 / 3) / 2)
    # only a void pixel labeled: nothing to propagate
    assert ladder.propagate(x, np.array([[False, False, False, True]]), gt, 3) == 0.0


def test_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(20)
    x = torch.nn.functional.normalize(torch.eye(3)[y] + 0.05 * torch.randn(60, 3, generator=g),
                                      dim=1)
    assert ladder.linear_probe(x, y, x, y, 3) == pytest.approx(100.0)
    assert ladder.linear_probe(x[:0], y[:0], x, y, 3) == 0.0


def _tiny_rung(out: str) -> ladder.Rung:
    """An untrained tiny model written where ``load_rung`` reads a trained rung."""
    from config import load_config
    from models import build_model

    rung = ladder.Rung("tiny", "quick", "kcenter")
    with open(os.path.join(EXAMPLE, "configs", "study_quick.yaml")) as f:
        values = yaml.safe_load(f)
    values["target_size"] = [64, 32]
    os.makedirs(ladder.rung_dir(out, rung))
    path = os.path.join(out, "rungs", "tiny.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    cfg = load_config(path)
    torch.manual_seed(0)
    net = build_model(cfg.arch, cfg.backbone, cfg.num_classes, estimator=cfg.estimator)
    torch.save({"model": net.state_dict()}, os.path.join(ladder.rung_dir(out, rung),
                                                         "checkpoint.pth"))
    return rung


def test_one_cell_end_to_end_and_resume(tmp_path):
    out = str(tmp_path)
    rung = _tiny_rung(out)
    plan = ladder.Plan(rungs=("tiny",), data_seeds=(7,), pool=1, held=1, val=1)
    net, cfg = ladder.load_rung(out, rung)
    assert ladder.run_cell(out, rung, 7, plan, net, cfg, cache={}) == 2 * len(ladder.SAMPLERS)
    kc = ladder.read_json(ladder.record_path(out, "tiny", 7, "40px", "kcenter"))
    (im,) = kc["images"]
    assert len(im["centres"]) == len(set(im["centres"])) == 40 == im["labeled_pixels"]
    assert im["overlap_kcenter"] is None and 0.0 <= im["void_share"] <= 1.0
    for name in ladder.SAMPLERS:
        rec = ladder.read_json(ladder.record_path(out, "tiny", 7, "2.2pct", name))
        (im,) = rec["images"]
        b, _ = ladder.budget_of("2.2pct", (32, 64))
        assert len(set(im["centres"])) == b
        # non-overlapping 3x3 blocks: b * 9 pixels less those clipped at the border
        assert b * 4 <= im["labeled_pixels"] <= b * 9
        if name != "kcenter":
            assert 0.0 <= im["overlap_kcenter"] <= 1.0
        if name in ("random", "ripu"):
            assert im["calibration_r2"] is None  # picks outside the margin pool
        else:
            assert im["calibration_r2"] is None or 0.0 <= im["calibration_r2"] <= 1.0
    tau = ladder.read_json(os.path.join(out, "records", "tiny", "2.2pct", "seed7", "tau.json"))
    assert tau["tau"] in (0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 4.0)
    # resumed: every record present, nothing redone (the network is not even called)
    assert ladder.run_cell(out, rung, 7, plan, None, cfg, cache={}) == 0
    # a missing record is redone alone
    os.remove(ladder.record_path(out, "tiny", 7, "40px", "ripu"))
    assert ladder.run_cell(out, rung, 7, plan, net, cfg, cache={}) == 1
    an = ladder.analyze(ladder.load_records(out), ["tiny"])
    assert {r["sampler"] for r in an["means"]} == set(ladder.SAMPLERS)


def test_ripu_zero_scores_are_not_taken_in_index_order():
    # a confident uniform prediction: RIPU's score is 0 everywhere
    probs = torch.zeros(1, 19, 32, 64)
    probs[:, 0] = 1.0
    o = {"probs": probs, "gt": torch.zeros(32, 64, dtype=torch.long), "id": "x",
         "error": torch.rand(1, 4, 8), "dmc": torch.rand(1, 8, 4, 8)}
    _, c1, *_ = ladder.select_image(o, "ripu", "40px", 1, None)
    _, c2, *_ = ladder.select_image(o, "ripu", "40px", 2, None)
    _, c1b, *_ = ladder.select_image(o, "ripu", "40px", 1, None)
    assert np.array_equal(c1, c1b) and not np.array_equal(c1, c2)
    rows = np.asarray(c1) // 64
    assert rows.min() < 16 < rows.max()  # spread over the image, not the top rows


def _record(rung, seed, sampler, value):
    return {"rung": rung, "data_seed": seed, "budget": "2.2pct", "sampler": sampler,
            "probe": value, "select_s": 0.1, "model_miou": 10.0,
            "images": [{"prop_dmc": value + 1, "prop_backbone": value, "calibration_r2": 0.2,
                        "calibration_r2_paper": None, "overlap_kcenter": None,
                        "void_share": 0.0, "labeled_pixels": 9}]}


def test_analysis_pairs_by_seed_and_adjusts_over_the_family():
    from scipy import stats

    from densecore.stats import holm

    kc = [10.0, 12.0, 11.0, 13.0]
    da = [11.0, 12.5, 12.5, 13.2]
    recs = [_record("round0", s, "kcenter", v) for s, v in enumerate(kc)]
    recs += [_record("round0", s, "density_aware", v) for s, v in enumerate(da)]
    recs.append(_record("round0", 9, "density_aware", 50.0))  # no k-center pair: left out
    an = ladder.analyze(recs, ["round0"])
    probe = next(c for c in an["paired"] if c["measure"] == "probe")
    d = np.subtract(da, kc)
    assert probe["n"] == 4 and probe["mean"] == pytest.approx(d.mean())
    assert probe["p"] == pytest.approx(stats.ttest_rel(da, kc).pvalue)
    ps = [c["p"] for c in an["paired"]]
    assert [c["p_holm"] for c in an["paired"]] == pytest.approx(list(holm(ps)))
    assert len(an["paired"]) == len(ladder.OUTCOMES)
