"""examples/deeplab_ada: each loss against a hand computation; metrics; configs."""

from __future__ import annotations

import doctest
import glob
import math
import os
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import config  # noqa: E402
import losses  # noqa: E402
import utils  # noqa: E402

import densecore  # noqa: E402


def test_doctests_of_the_losses_module():
    result = doctest.testmod(losses)
    assert result.attempted >= 3 and result.failed == 0


def test_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 255]]])
    expect = -math.log(math.exp(2) / (math.exp(2) + 1))  # only the first pixel counts
    assert math.isclose(losses.segmentation_loss(logits, target).item(), expect, rel_tol=1e-6)
    none = losses.segmentation_loss(logits.requires_grad_(), torch.full((1, 1, 2), 255))
    assert none.item() == 0 and none.requires_grad
    # logits at a lower resolution are upsampled to the target first
    assert losses.segmentation_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 8, 8,
                                    dtype=torch.long)).item() == pytest.approx(math.log(3))


def test_margin_loss_eq6_by_hand():
    # two pixels, three classes; Eq. 6 = sum_pixels sum_{c != y} [m - P_y + P_c]_+
    p = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]).T.reshape(1, 3, 1, 2)
    y = torch.tensor([[[0, 2]]])
    # pixel 1 (y=0): [1-.7+.2] + [1-.7+.1] = 0.5 + 0.4; pixel 2 (y=2): [1-.5+.2] + [1-.5+.3]
    expect = 0.9 + 1.5
    loss = densecore.CategoryMarginLoss(margin=1.0, reduction="sum")
    assert loss(p, y).item() == pytest.approx(expect, rel=1e-6)
    y_ignored = torch.tensor([[[0, 255]]])
    assert loss(p, y_ignored).item() == pytest.approx(0.9, rel=1e-6)


def test_negative_learning_loss_by_hand():
    p = torch.tensor([[0.9, 0.06, 0.04], [0.02, 0.03, 0.95]]).T.reshape(1, 3, 1, 2)
    chosen = [0.04, 0.02, 0.03]  # below 0.05
    expect = -sum(math.log(1 - q + 1e-6) for q in chosen) / 3
    assert losses.negative_learning_loss(p, 0.05).item() == pytest.approx(expect, rel=1e-5)
    assert losses.negative_learning_loss(torch.full((1, 2, 2, 2), 0.5)).item() == 0


def test_local_consistency_loss_by_hand():
    # 3 x 4 map, two classes: interior pixels (1,1) and (1,2)
    p1 = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)  # left half class 1 prob 0, right 1
    probs = torch.stack([1 - p1, p1])[None]
    # (1,1): neighbours in columns 0,1,2 -> column 2 (3 of them) differ by L1 = 2
    # (1,2): neighbours in columns 1,2,3 -> column 1 (3 of them) differ by 2
    expect = (3 * 2 + 3 * 2) / 2 / 8
    assert losses.local_consistency_loss(probs).item() == pytest.approx(expect)
    assert losses.local_consistency_loss(torch.full((2, 3, 5, 5), 1 / 3)).item() == 0


def test_confusion_matrix_iou_by_hand():
    cm = utils.ConfusionMatrix(3)
    target = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm.update(target, pred)
    iou = cm.iou()
    # class 0: tp 1, fp 1 (from 2), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: 0/1
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])
    assert utils.miou(iou) == pytest.approx(100 / 3)
    assert utils.miou(iou, [0, 1]) == pytest.approx(50.0)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    absent = utils.ConfusionMatrix(4)
    absent.update(target, pred)
    assert np.isnan(absent.iou()[3]) and utils.miou(absent.iou()) == pytest.approx(100 / 3)


def test_miou_over_the_classes_present_in_the_ground_truth():
    # class 3 has no ground-truth pixel; one run predicts it once, the other never:
    # both average over classes 0-2 only (NaN for 3), so the mIoU does not depend
    # on whether an absent class was predicted
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    never = utils.ConfusionMatrix(4)
    never.update(target, torch.tensor([0, 0, 1, 1, 2, 0]))
    once = utils.ConfusionMatrix(4)
    once.update(target, torch.tensor([0, 0, 1, 1, 2, 3]))
    assert np.isnan(never.iou()[3]) and np.isnan(once.iou()[3])
    assert utils.miou(never.iou()) == pytest.approx(100 * (2 / 3 + 1 + 1 / 2) / 3)
    assert utils.miou(once.iou()) == pytest.approx(100 * (1 + 1 + 1 / 2) / 3)


def test_poly_lr():
    assert utils.poly_lr(1.0, 0, 100) == 1.0
    assert utils.poly_lr(2.5e-4, 50, 100, 0.9) == pytest.approx(2.5e-4 * 0.5 ** 0.9)


def test_config_defaults_are_the_paper_setting(tmp_path):
    cfg = config.load_config(None)
    assert (cfg.lr, cfg.head_lr_mult, cfg.momentum, cfg.weight_decay, cfg.poly_power) == \
        (2.5e-4, 10.0, 0.9, 5e-4, 0.9)
    assert cfg.selection_iters == (10000, 12000, 14000, 16000, 18000)
    assert (cfg.iterations, cfg.estimator_detach_iter, cfg.alpha) == (40000, 18000, 20)
    assert (cfg.negative_threshold, cfg.negative_weight, cfg.consistency_weight) == \
        (0.05, 1.0, 0.1)
    path = tmp_path / "c.yaml"
    path.write_text("source: synthia\nnum_classes: 16\nselection_iters: [5, 9]\n")
    cfg = config.load_config(str(path), ["iterations=20", "flip_test=false"])
    assert cfg.selection_iters == (5, 9) and cfg.iterations == 20 and cfg.flip_test is False
    with pytest.raises(ValueError, match="unknown config fields"):
        config.load_config(str(path), ["learning_rate=1"])
    with pytest.raises(ValueError, match="num_classes"):
        config.load_config(None, ["source=synthia"])
    with pytest.raises(ValueError, match="density-aware"):
        config.load_config(None, ["estimator=none"])
    with pytest.raises(ValueError, match="selection_iters"):
        config.load_config(None, ["iterations=15000"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(EXAMPLE, "configs", "*.yaml"))),
                         ids=os.path.basename)
def test_every_shipped_config_loads(path):
    cfg = config.load_config(path)
    assert cfg.num_classes == (19 if cfg.source == "gtav" else 16)
