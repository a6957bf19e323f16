"""DeepLab-V2 and DeepLab-V3+ on a dilated ResNet-101 (output stride 8), plus a tiny backbone.

* ``deeplabv2``: the ASPP classifier of DeepLab-V2 -- four 3x3 convolutions
  with dilations 6/12/18/24 straight to class scores, summed.
* ``deeplabv3plus``: ASPP with a 1x1 branch, 3x3 branches at dilations
  6/12/18 and image pooling (256 channels each, projected to 256); a decoder
  that upsamples to stride 4, concatenates the 48-channel projection of the
  low-level (layer1) features and refines with two depthwise-separable 3x3
  convolutions.
* The density estimator (``densecore.DMCEstimator`` or
  ``densecore.MaskedConvEstimator``) hangs off the backbone's last features;
  its low-dimensional features and densities feed the selection.

The ResNet is torchvision's when torchvision imports, otherwise the copy
below, which has the same module names, so an ImageNet ``resnet101`` state
dict saved by torchvision loads into either (weights come from a local file
only, never from the network; ``prepare_weights.py`` writes that file).
``tiny`` is a four-stage CNN of the same interface for CPU smoke runs.

Shape:
    input ``(B, 3, H, W)`` float32; ``logits`` ``(B, C, H/8, W/8)`` for
    DeepLab-V2 and ``(B, C, H/4, W/4)`` for DeepLab-V3+; backbone features
    ``(B, 2048, H/8, W/8)`` for ResNet-101 (``(B, 128, H/8, W/8)`` for tiny).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import densecore

# ----------------------------------------------------------------- backbones


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride on the 3x3 conv), same parameter names."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet-50/101 with torchvision's module names; layer3/4 dilated for output stride 8."""

    def __init__(self, layers=(3, 4, 23, 3), replace_stride_with_dilation=(False, True, True)):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(512, layers[3], 2, replace_stride_with_dilation[2])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1, dilate=False):
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride,
                                                 bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def _resnet101() -> nn.Module:
    try:
        import torchvision
    except (ImportError, RuntimeError):  # absent, or built against another torch
        return ResNet((3, 4, 23, 3))
    return torchvision.models.resnet101(weights=None,
                                        replace_stride_with_dilation=[False, True, True])


def load_resnet101_weights(body: nn.Module, state: dict) -> dict:
    """Load ImageNet ResNet-101 weights (torchvision names) into ``body``; returns what it loaded.

    ``state`` is torchvision's ``resnet101`` state dict, bare or under
    ``"model"`` / ``"state_dict"``, its keys optionally prefixed ``module.``
    (a DataParallel checkpoint). The classifier (``fc.*``) is dropped.

    Raises:
        ValueError: keys missing or left over, or tensors of another shape
            (the weights are not a ResNet-101's).
    """
    if isinstance(state, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError("expected a state dict (parameter name -> tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = body.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"they do not fit ResNet-101: {str(e).splitlines()[-1].strip()}") \
            from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"they do not fit ResNet-101: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    return state


class ResNetBackbone(nn.Module):
    """Runs a ResNet to ``{"low": layer1 (B,256,H/4,W/4), "out": layer4 (B,2048,H/8,W/8)}``."""

    low_channels, out_channels = 256, 2048

    def __init__(self, pretrained: str | None = None):
        super().__init__()
        self.body = _resnet101()
        if pretrained:
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
            try:
                load_resnet101_weights(self.body, state)
            except ValueError as e:
                raise ValueError(f"pretrained weights {pretrained}: {e}") from None

    def forward(self, x):
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        low = b.layer1(x)
        out = b.layer4(b.layer3(b.layer2(low)))
        return {"low": low, "out": out}


def _conv_bn(cin, cout, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A small CNN with the ResNet backbone's interface: strides 4 (low) and 8 (out)."""

    low_channels, out_channels = 32, 128

    def __init__(self, pretrained: str | None = None):
        super().__init__()
        if pretrained:
            raise ValueError("the tiny backbone has no pretrained weights; drop --pretrained")
        self.stem = nn.Sequential(_conv_bn(3, 16, 2), _conv_bn(16, 32, 2))
        self.stage2 = nn.Sequential(_conv_bn(32, 64, 2), _conv_bn(64, 64))
        self.stage3 = nn.Sequential(_conv_bn(64, 128, dilation=2), _conv_bn(128, 128, dilation=4))

    def forward(self, x):
        low = self.stem(x)
        return {"low": low, "out": self.stage3(self.stage2(low))}


# ---------------------------------------------------------------------- heads


class ASPPClassifierV2(nn.Module):
    """DeepLab-V2 classifier: sum of 3x3 convs (dilations 6/12/18/24) to class scores."""

    def __init__(self, in_channels, num_classes, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 3, padding=d,
                                                dilation=d) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats):
        x = feats["out"]
        return sum(branch(x) for branch in self.branches)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 convolution, each with BN and ReLU."""

    def __init__(self, cin, cout, dilation=1):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin,
                                   bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """DeepLab-V3 ASPP: 1x1, 3x3 at dilations 6/12/18, image pooling; 256 channels."""

    def __init__(self, in_channels, channels=256, dilations=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False),
                           nn.BatchNorm2d(channels), nn.ReLU(inplace=True))]
            + [_conv_bn(in_channels, channels, dilation=d) for d in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                  nn.Conv2d(in_channels, channels, 1, bias=False),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(channels * (len(dilations) + 2), channels, 1,
                                               bias=False), nn.BatchNorm2d(channels),
                                     nn.ReLU(inplace=True), nn.Dropout(0.1))

    def forward(self, x):
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear",
                               align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP + decoder with a 48-channel low-level shortcut and separable convs."""

    def __init__(self, in_channels, low_channels, num_classes, channels=256):
        super().__init__()
        self.aspp = ASPP(in_channels, channels)
        self.shortcut = nn.Sequential(nn.Conv2d(low_channels, 48, 1, bias=False),
                                      nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(SeparableConv(channels + 48, channels),
                                     SeparableConv(channels, channels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        x = self.aspp(feats["out"])
        low = self.shortcut(feats["low"])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.decoder(torch.cat([x, low], dim=1)))


# ---------------------------------------------------------------------- model


class Segmenter(nn.Module):
    """Backbone + segmentation head + optional density estimator.

    ``forward(x, detach_estimator=False)`` returns a dict (a list of dicts
    when ``x`` is a list of batches, e.g. source and target of different sizes) with ``logits``
    (class scores at the head's stride), ``feats`` (the backbone's last
    features) and ``density`` (the estimator's output object, or None). With
    ``detach_estimator`` the estimator sees detached features, so its loss no
    longer reaches the backbone (the paper does this after 18k iterations).
    """

    def __init__(self, backbone, head, estimator=None, freeze_bn=True):
        super().__init__()
        self.backbone, self.head, self.estimator = backbone, head, estimator
        self.freeze_bn = freeze_bn

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn:  # batch statistics of 2 images are too noisy
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def head_parameters(self):
        """Parameters trained at 10x the base learning rate (head and estimator)."""
        params = list(self.head.parameters())
        if self.estimator is not None:
            params += list(self.estimator.parameters())
        return params

    def forward(self, x, detach_estimator: bool = False):
        if isinstance(x, (list, tuple)):  # several inputs in one call (one DDP forward)
            return [self.forward(xi, detach_estimator) for xi in x]
        feats = self.backbone(x)
        logits = self.head(feats)
        density = None
        if self.estimator is not None:
            f = feats["out"].detach() if detach_estimator else feats["out"]
            density = self.estimator(f)
        return {"logits": logits, "feats": feats["out"], "density": density}


def build_model(arch: str, backbone: str, num_classes: int, *, estimator: str = "dmc",
                dmc_dim: int = 64, dmc_kernel: int = 5, beta: float = densecore.density.BETA,
                tau: float = densecore.density.TAU, pretrained: str | None = None,
                freeze_bn: bool = True) -> Segmenter:
    """Build a :class:`Segmenter`.

    Args:
        arch: ``"deeplabv2"`` or ``"deeplabv3plus"``.
        backbone: ``"resnet101"`` or ``"tiny"``.
        num_classes: 19 or 16.
        estimator: ``"dmc"`` (``densecore.DMCEstimator``), ``"masked-conv"``
            (``densecore.MaskedConvEstimator``) or ``"none"``.
        dmc_dim, dmc_kernel, beta, tau: estimator options (paper: 64, 5, e^2.4, 0.25).
        pretrained: local path of ImageNet ResNet-101 weights (torchvision names).
        freeze_bn: keep the backbone's BatchNorm in eval mode while training.
    """
    if backbone == "resnet101":
        body = ResNetBackbone(pretrained)
    elif backbone == "tiny":
        body = TinyBackbone(pretrained)
    else:
        raise ValueError(f"backbone must be 'resnet101' or 'tiny'; got {backbone!r}")
    if arch == "deeplabv2":
        head = ASPPClassifierV2(body.out_channels, num_classes)
    elif arch == "deeplabv3plus":
        head = DeepLabV3PlusHead(body.out_channels, body.low_channels, num_classes)
    else:
        raise ValueError(f"arch must be 'deeplabv2' or 'deeplabv3plus'; got {arch!r}")
    if estimator == "dmc":
        est = densecore.DMCEstimator(body.out_channels, dim=dmc_dim, kernel_size=dmc_kernel,
                                     num_classes=num_classes, beta=beta, tau=tau)
    elif estimator == "masked-conv":
        est = densecore.MaskedConvEstimator(body.out_channels, dim=dmc_dim,
                                            kernel_size=dmc_kernel, num_classes=num_classes,
                                            beta=beta, tau=tau)
    elif estimator == "none":
        est = None
    else:
        raise ValueError(f"estimator must be 'dmc', 'masked-conv' or 'none'; got {estimator!r}")
    return Segmenter(body, head, est, freeze_bn=freeze_bn)
