"""examples/ripu_adapter.md: its code, run verbatim inside a mock RIPU training loop."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import densecore

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "ripu_adapter.md")
H, W, C, FEAT = 24, 32, 4, 8


@pytest.fixture(scope="module")
def adapter():
    text = open(DOC).read()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(code, DOC, "exec"), namespace)
    return namespace


def make_data(n, seed):
    """Target images with piecewise-constant labels (some void) and matching colours."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n, H // 4, W // 4), generator=g)
    labels = labels.repeat_interleave(4, 1).repeat_interleave(4, 2)
    labels[:, :2] = 255
    images = F.one_hot(labels.clamp(max=C - 1), C).permute(0, 3, 1, 2).float()
    images = images + 0.3 * torch.randn(images.shape, generator=g)
    return images, labels


class RipuLikeLoader:
    """RIPU's target loader: image + the label PNG of the active split (255 = unlabeled)."""

    def __init__(self, root, ids, images):
        self.root, self.ids, self.images = root, ids, images

    def __iter__(self):
        for i, image_id in enumerate(self.ids):
            stem = image_id[: -len("_leftImg8bit")]
            path = os.path.join(self.root, "gtFine", "train", stem.split("_")[0],
                                f"{stem}_gtFine_labelTrainIds.png")
            if os.path.exists(path):
                label = torch.from_numpy(np.asarray(Image.open(path)).astype(np.int64))
            else:
                label = torch.full((H, W), 255, dtype=torch.long)
            yield self.images[i:i + 1], label[None]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only wait on each other
    yield
    torch.set_num_threads(before)


def test_adapter_in_a_mock_ripu_loop(adapter, tmp_path, one_thread):
    torch.manual_seed(0)
    ids = [f"city{i}_000000_00001{i}_leftImg8bit" for i in range(3)]
    images, gt = make_data(3, seed=1)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(C, FEAT, 3, stride=2, padding=1),
                                   torch.nn.ReLU())
    classifier = torch.nn.Conv2d(FEAT, C, 1)
    base_lr = 0.01
    optimizer = torch.optim.SGD([{"params": backbone.parameters()},
                                 {"params": classifier.parameters()}], lr=base_lr)
    density = adapter["add_density"](optimizer, FEAT, C, base_lr, detach_after=3)
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(10 * base_lr)

    state = densecore.ActiveLabelState(tmp_path / "labels", ids, (H, W))
    export = tmp_path / "export"
    budget, rounds = 4, {2: 0, 4: 1}
    grads = {}
    for iteration in range(6):
        density.set_lr(optimizer, base_lr * (1 - iteration / 6) ** 0.9)
        if iteration in rounds:
            batches = [(images[i:i + 1], gt[i:i + 1], [ids[i]]) for i in range(3)]
            adapter["select_round"](state, rounds[iteration], batches, budget, backbone,
                                    classifier, density)
            adapter["export_for_loader"](state, export)
        for x, y in RipuLikeLoader(export, ids, images):
            optimizer.zero_grad()
            feats = backbone(x)
            logits = F.interpolate(classifier(feats), (H, W), mode="bilinear")
            seg = F.cross_entropy(logits, y, ignore_index=255) if (y != 255).any() else 0.0
            est_only = adapter["density_loss"](density, feats, y, iteration)
            est_only.backward(retain_graph=True)
            grads[iteration] = backbone[0].weight.grad is not None and bool(
                backbone[0].weight.grad.abs().sum() > 0)
            (seg + 0 * est_only).backward() if torch.is_tensor(seg) else None
            optimizer.step()
    # the estimator trains the backbone before detach_after and not from it on
    assert grads[0] and grads[2] and not grads[3] and not grads[5]

    summary = state.summary()
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    for image_id, label in zip(ids, gt):
        both = state.labeled(image_id)
        stored = state.labels(image_id)
        assert np.array_equal(stored[both], label.numpy()[both])  # the annotator's answers
        for r in (0, 1):
            m = state.queried(image_id, r)
            assert m.sum() <= budget * 9
            # RIPU's rule: the blocks of one round never overlap, so every centre's block is
            # whole unless clipped by the border or labeled before
            ys, xs = np.nonzero(m)
            assert len(ys) >= budget
    # the loader reads exactly the state's labels through the exported PNGs
    loaded = [y[0].numpy() for _, y in RipuLikeLoader(export, ids, images)]
    assert all(np.array_equal(a, state.labels(i)) for a, i in zip(loaded, ids))
    assert sum(int((a != 255).sum()) + int(((a == 255) & state.labeled(i)).sum())
               for a, i in zip(loaded, ids)) == summary["labeled"]


def test_density_trainer_checks_and_schedule():
    est = densecore.DMCEstimator(4, dim=4, num_classes=3)
    with pytest.raises(TypeError, match="loss"):
        densecore.DensityTrainer(torch.nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="lr_mult"):
        densecore.DensityTrainer(est, lr_mult=0)
    dt = densecore.DensityTrainer(est, detach_after=10, weight=2.0, lr_mult=5.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="exactly one group"):
        dt.set_lr(opt, 0.1)
    opt.add_param_group(dt.param_group(0.1))
    dt.set_lr(opt, 0.02)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    out = dt(x, iteration=9)
    assert torch.allclose(dt.loss(out, target), 2.0 * est.loss(out, target))
    dt.loss(out, target).backward()
    assert x.grad is not None  # before detach_after: the backbone is trained too
    assert dt.detached(None) and dt.detached(10) and not dt.detached(9)
