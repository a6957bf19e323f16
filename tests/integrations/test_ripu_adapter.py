"""densecore.integrations.ripu (examples/ripu_adapter.md) inside a mock RIPU training loop,
and densecore.query_round, the round it runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import densecore
from densecore.integrations import ripu

H, W, C, FEAT = 24, 32, 4, 8


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


def test_adapter_in_a_mock_ripu_loop(tmp_path, one_thread):
    torch.manual_seed(0)
    ids = [f"city{i}_000000_00001{i}_leftImg8bit" for i in range(3)]
    images, gt = make_data(3, seed=1)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(C, FEAT, 3, stride=2, padding=1),
                                   torch.nn.ReLU())
    classifier = torch.nn.Conv2d(FEAT, C, 1)
    base_lr = 0.01
    optimizer = torch.optim.SGD([{"params": backbone.parameters()},
                                 {"params": classifier.parameters()}], lr=base_lr)
    density = ripu.add_density(optimizer, FEAT, C, base_lr, detach_after=3)
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(10 * base_lr)

    state = densecore.ActiveLabelState(tmp_path / "labels", ids, (H, W))
    export = tmp_path / "export"
    budget, rounds = 4, {2: 0, 4: 1}
    grads = {}
    for iteration in range(6):
        density.set_lr(optimizer, base_lr * (1 - iteration / 6) ** 0.9)
        if iteration in rounds:
            batches = [(images[i:i + 1], gt[i:i + 1], [ids[i]]) for i in range(3)]
            ripu.select_round(state, rounds[iteration], batches, budget, backbone,
                                    classifier, density)
            ripu.export_for_loader(state, export)
        for x, y in RipuLikeLoader(export, ids, images):
            optimizer.zero_grad()
            feats = backbone(x)
            logits = F.interpolate(classifier(feats), (H, W), mode="bilinear")
            seg = F.cross_entropy(logits, y, ignore_index=255) if (y != 255).any() else 0.0
            est_only = ripu.density_loss(density, feats, y, iteration)
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


def round_inputs(seed, n=3, h=16, w=20, c=5, d=6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, h, w, generator=g), 1)
    feats = torch.randn(n, d, h // 4, w // 4, generator=g)
    dens = torch.rand(n, h // 4, w // 4, generator=g) * 5 + 0.1
    labels = torch.randint(0, c, (n, h, w), generator=g)
    return probs, feats, dens, labels


def test_densities_change_the_round_with_the_paper_sampler(tmp_path):
    """With the paper's density-aware greedy the densities matter; k-center (the one
    default) ignores them, and with all-ones densities Algorithm 1 is k-center."""
    probs, feats, dens, _ = round_inputs(0)
    ids = ["a", "b", "c"]
    masks = {}
    for name, d in (("random", dens), ("ones", torch.ones_like(dens))):
        for sampler in ("density_aware", "kcenter", "default"):
            state = densecore.ActiveLabelState(tmp_path / f"{name}-{sampler}", ids, (16, 20))
            kw = {} if sampler == "default" else {"sampler": sampler}
            densecore.query_round(state, 0, ids, probs, feats, d, 6, alpha=8, region_size=1,
                                  **kw)
            masks[name, sampler] = np.stack([state.labeled(i) for i in ids])
    assert not np.array_equal(masks["random", "density_aware"], masks["ones", "density_aware"])
    assert np.array_equal(masks["random", "kcenter"], masks["ones", "kcenter"])
    assert np.array_equal(masks["ones", "density_aware"], masks["ones", "kcenter"])
    assert np.array_equal(masks["random", "default"], masks["random", "kcenter"])
    for m in masks.values():
        assert m.sum((1, 2)).tolist() == [6, 6, 6]


def test_query_round_is_select_pixels_with_per_image_seeds(tmp_path):
    probs, feats, dens, labels = round_inputs(1)
    ids = ["x0", "x1", "x2"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 20))
    for r in range(2):
        before = {i: state.labeled(i) for i in ids}
        assert densecore.query_round(state, r, ids, probs, feats, dens, 2, labels=labels,
                                     alpha=6, region_size=3, seed=5,
                                     sampler="density_aware") == ids
        for b, i in enumerate(ids):
            want = densecore.select_pixels(
                probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 2,
                labeled=torch.from_numpy(before[i])[None], alpha=6, region_size=3,
                region_overlap="block",
                sampler=densecore.DensityAwareGreedy(seed=densecore.image_seed(5, r, i)))
            assert np.array_equal(state.queried(i, r), want[0].numpy())
            q = state.queried(i, r)
            assert np.array_equal(state.labels(i, rounds=[r])[q], labels[b].numpy()[q])


def test_query_round_resumes_and_checks(tmp_path):
    probs, feats, dens, _ = round_inputs(2)
    ids = ["a", "b", "c"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 20))
    # a job killed after the first image: only the two others are selected on restart
    assert densecore.query_round(state, 0, ids[:1], probs[:1], feats[:1], dens[:1], 3,
                                 alpha=4) == ["a"]
    first = state.queried("a", 0)
    assert densecore.query_round(state, 0, ids, probs, feats, dens, 3, alpha=4) == ["b", "c"]
    assert np.array_equal(state.queried("a", 0), first)
    fresh = densecore.ActiveLabelState(tmp_path / "t", ids, (16, 20))
    densecore.query_round(fresh, 0, ids, probs, feats, dens, 3, alpha=4)
    for i in ids:  # the same masks as an uninterrupted round
        assert np.array_equal(fresh.queried(i, 0), state.queried(i, 0))
    with pytest.raises(ValueError, match="probs"):
        densecore.query_round(state, 1, ids, probs[:2], feats, dens, 3)
    with pytest.raises(ValueError, match="image_ids"):
        densecore.query_round(state, 1, ["a", "a", "b"], probs, feats, dens, 3)
    with pytest.raises(TypeError, match="image_ids"):
        densecore.query_round(state, 1, "abc", probs, feats, dens, 3)
    with pytest.raises(TypeError, match="sampler"):
        densecore.query_round(state, 1, ids, probs, feats, dens, 3, sampler=3)
    with pytest.raises(ValueError, match="densities"):  # the paper's sampler needs them
        densecore.query_round(state, 1, ids, probs, feats, None, 3, sampler="density_aware")
    assert not state.round_done("a", 1)  # nothing half-recorded by the failed calls


def test_select_round_skips_done_batches_and_restores_modes(tmp_path):
    calls = []

    class Counting(torch.nn.Conv2d):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    backbone, classifier = Counting(C, FEAT, 3, 2, 1), torch.nn.Conv2d(FEAT, C, 1)
    opt = torch.optim.SGD(backbone.parameters(), lr=0.1)
    density = ripu.add_density(opt, FEAT, C, 0.1, dim=4, kernel_size=3)
    images, gt = make_data(2, seed=3)
    ids = ["p", "q"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (H, W))
    batches = [(images[i:i + 1], gt[i:i + 1], [ids[i]]) for i in range(2)]
    ripu.select_round(state, 0, batches[:1], 3, backbone, classifier, density)
    assert calls == [1] and backbone.training and density.training
    assert ripu.select_round(state, 0, batches, 3, backbone, classifier, density) == ["q"]
    assert calls == [1, 1]  # the done image's batch was not run again
    for i in ids:
        q = state.queried(i, 0)
        assert 3 <= q.sum() <= 27


def test_round_budget_is_ripu_accounting():
    assert ripu.round_budget((1024, 2048), ratio=0.022) == densecore.region_budget(
        (1024, 2048), 0.022, 5) == 1026
    assert ripu.round_budget((1024, 2048), pixels=40) == 21
    assert ripu.round_budget((1024, 2048), ratio=0.05, rounds=5) == 2331
    with pytest.raises(ValueError, match="ratio"):
        ripu.round_budget((1024, 2048))
    with pytest.raises(ValueError, match="exactly one"):
        ripu.round_budget((1024, 2048), ratio=0.022, pixels=40)


def test_margin_loss_is_eq6_on_logits():
    x = torch.randn(2, 4, 3, 3)
    y = torch.randint(0, 4, (2, 3, 3))
    y[0, 0, 0] = 255
    p = x.softmax(1)
    keep = y != 255
    py = p.gather(1, y.clamp(max=3)[:, None])[:, 0]
    want = (4 * (1 - py))[keep].mean()  # m = 1: the hinge never clips, C (1 - P_y)
    assert torch.allclose(ripu.margin_loss()(x, y), want)
