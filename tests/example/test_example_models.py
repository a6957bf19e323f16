"""examples/deeplab_ada: model output shapes, ResNet naming, pretrained loading, frozen BN."""

from __future__ import annotations

import os
import sys

import pytest
import torch

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import models  # noqa: E402


@pytest.mark.parametrize("arch,stride", [("deeplabv2", 8), ("deeplabv3plus", 4)])
@pytest.mark.parametrize("estimator", ["dmc", "masked-conv", "none"])
def test_tiny_model_shapes(arch, stride, estimator):
    torch.manual_seed(0)
    model = models.build_model(arch, "tiny", 19, estimator=estimator, dmc_dim=8, dmc_kernel=3)
    out = model(torch.randn(2, 3, 48, 96))
    assert out["logits"].shape == (2, 19, 48 // stride, 96 // stride)
    assert out["feats"].shape == (2, models.TinyBackbone.out_channels, 6, 12)
    if estimator == "none":
        assert out["density"] is None
    else:
        assert out["density"].features.shape == (2, 8, 6, 12)
        dens = model.estimator.density(out["density"])
        assert dens.shape == (2, 6, 12) and bool((dens > 0).all())
    both = model([torch.randn(1, 3, 32, 64), torch.randn(1, 3, 48, 96)])
    assert [o["logits"].shape[-1] for o in both] == [64 // stride, 96 // stride]


def test_detached_estimator_sends_no_gradient_to_the_backbone():
    torch.manual_seed(0)
    model = models.build_model("deeplabv2", "tiny", 19, dmc_dim=8, dmc_kernel=3)
    x = torch.randn(1, 3, 32, 64)
    for detach in (False, True):
        model.zero_grad()
        out = model(x, detach_estimator=detach)
        model.estimator.loss(out["density"]).backward()
        grad = model.backbone.stage3[0][0].weight.grad
        assert (grad is None or grad.abs().sum() == 0) == detach
        assert model.estimator.g.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def resnet101_backbone():
    torch.manual_seed(0)
    return models.ResNetBackbone().eval()


def test_resnet101_output_stride_8(resnet101_backbone):
    heads = {8: models.ASPPClassifierV2(2048, 16),
             4: models.DeepLabV3PlusHead(2048, 256, 16)}
    for stride, head in heads.items():
        model = models.Segmenter(resnet101_backbone, head).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 64))
        assert out["feats"].shape == (1, 2048, 8, 8)
        assert out["logits"].shape == (1, 16, 64 // stride, 64 // stride)


def test_resnet_has_torchvision_names_and_loads_a_local_file(tmp_path, resnet101_backbone):
    body = resnet101_backbone.body  # torchvision's when it imports, else models.ResNet
    keys = set(body.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
              "layer1.0.downsample.1.weight", "layer3.22.conv2.weight", "layer4.2.bn3.bias"):
        assert k in keys
    assert sum(p.numel() for p in body.parameters()) == 42_500_160  # resnet101 less fc
    assert body.layer4[0].conv2.dilation == (2, 2) and body.layer4[1].conv2.dilation == (4, 4)
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in body.state_dict().items()}
    state["layer3.5.conv2.weight"] = torch.full(state["layer3.5.conv2.weight"].shape, 0.5)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    loaded = models.ResNetBackbone(pretrained=str(path))
    assert bool((loaded.body.layer3[5].conv2.weight == 0.5).all())
    assert bool((loaded.body.layer3[4].conv2.weight == 0).all())
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(ValueError, match="do not fit"):
        models.ResNetBackbone(pretrained=str(bad))


def test_frozen_batchnorm_stays_in_eval_mode():
    model = models.build_model("deeplabv3plus", "tiny", 19, estimator="none", freeze_bn=True)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.head.aspp.project[1].training  # head BN still trains
    model = models.build_model("deeplabv2", "tiny", 19, estimator="none", freeze_bn=False)
    model.train()
    assert all(m.training for m in model.backbone.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_bad_choices_name_the_argument():
    with pytest.raises(ValueError, match="arch"):
        models.build_model("deeplabv4", "tiny", 19)
    with pytest.raises(ValueError, match="backbone"):
        models.build_model("deeplabv2", "resnet18", 19)
    with pytest.raises(ValueError, match="estimator"):
        models.build_model("deeplabv2", "tiny", 19, estimator="knn")
