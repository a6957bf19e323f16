"""examples/deeplab_ada/prepare_weights.py: torchvision ResNet-101 weights -> --pretrained file.

No network here: the conversion is checked on randomly initialised weights
with torchvision's parameter names (the copy in models.py, and torchvision's
own resnet101 where torchvision imports).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                                       "deeplab_ada"))
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src"))
sys.path.insert(0, EXAMPLE)

import models  # noqa: E402
import prepare_weights  # noqa: E402


def _imagenet_like_state(seed: int) -> dict:
    """A ResNet-101 state dict with torchvision names and an ImageNet classifier, random."""
    torch.manual_seed(seed)
    state = models.ResNet((3, 4, 23, 3)).state_dict()
    for k, v in state.items():  # BatchNorm statistics too, so a mix-up would show
        if v.is_floating_point():
            v.normal_()
    state["fc.weight"] = torch.randn(1000, 2048)
    state["fc.bias"] = torch.randn(1000)
    return state


def _check_loads(out, reference: dict) -> None:
    backbone = models.ResNetBackbone(pretrained=str(out))
    loaded = backbone.body.state_dict()
    for k, v in reference.items():
        if not k.startswith("fc."):
            assert torch.equal(loaded[k], v), k


def test_a_torchvision_checkpoint_converts_and_loads(tmp_path):
    state = _imagenet_like_state(0)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    src = tmp_path / "resnet101-downloaded.pth"
    torch.save(wrapped, src)
    out = tmp_path / "resnet101.pth"
    args = prepare_weights.get_args_parser().parse_args(["--from", str(src), "--out", str(out)])
    written = prepare_weights.main(args)
    stored = torch.load(out, weights_only=True)
    assert set(stored) == set(written) == {k for k in state if not k.startswith("fc.")}
    _check_loads(out, state)


def test_weights_of_another_network_are_one_line_and_write_nothing(tmp_path):
    state = _imagenet_like_state(1)
    del state["layer4.2.conv3.weight"]
    src = tmp_path / "broken.pth"
    torch.save(state, src)
    out = tmp_path / "resnet101.pth"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [SRC, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLE, "prepare_weights.py"),
                           "--from", str(src), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "layer4.2.conv3.weight" in lines[0], proc.stderr
    assert not out.exists()
    state = _imagenet_like_state(1)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(prepare_weights.WeightsError, match="do not fit ResNet-101"):
        prepare_weights.convert(state)


def test_torchvision_resnet101_converts_and_loads(tmp_path):
    try:
        import torchvision
    except (ImportError, RuntimeError) as e:  # absent, or built for another torch
        pytest.skip(f"torchvision does not import here: {type(e).__name__}")
    torch.manual_seed(2)
    state = torchvision.models.resnet101(weights=None).state_dict()
    src = tmp_path / "tv.pth"
    torch.save(state, src)
    out = tmp_path / "resnet101.pth"
    prepare_weights.main(prepare_weights.get_args_parser().parse_args(
        ["--from", str(src), "--out", str(out)]))
    _check_loads(out, state)
