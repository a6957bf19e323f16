"""densecore.integrations.mmseg with mmengine's real Runner, hooks, data preprocessor and
data elements, on a tiny segmentor with mmsegmentation's interface (``extract_feat``
returns the stages, ``decode_head(feats)`` the logits, data samples carry
``gt_sem_seg`` as ``PixelData`` and ``img_path``/``ori_shape``/``img_shape`` in their
metainfo; the pipeline's results use LoadAnnotations' ``gt_seg_map``/``seg_fields``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import densecore

mmengine = pytest.importorskip("mmengine")
from mmengine.dataset import Compose  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import BaseDataElement, PixelData  # noqa: E402

from densecore.integrations.mmseg import (ActiveLabels, SelectionHook,  # noqa: E402
                                          _crop_resize, register, segmentor_outputs)

CLASSES = 4
TARGET = [f"t{i}" for i in range(4)]
SOURCE = ["s0", "s1"]


def images(ids, shape, seed):
    g = np.random.default_rng(seed)
    out = {}
    for i in ids:
        gt = np.zeros(shape, np.uint8)
        gt[:, shape[1] // 2:] = 1
        gt[shape[0] // 2:] += 2
        img = (g.random((*shape, 3)) * 60 + gt[..., None] * 40).astype(np.uint8)
        out[i] = (img, gt)
    return out


class Load:
    """What LoadImageFromFile + LoadAnnotations leave in the results."""

    def __init__(self, data, annotations=True):
        self.data, self.annotations = data, annotations

    def __call__(self, results):
        img, gt = self.data[results["id"]]
        results.update(img=img, img_path=f"data/{results['id']}.png", ori_shape=img.shape[:2],
                       img_shape=img.shape[:2])
        if self.annotations:
            results["gt_seg_map"] = gt.copy()
            results.setdefault("seg_fields", []).append("gt_seg_map")
        return results


def pack(results):
    """What mmseg's PackSegInputs makes: inputs (3, H, W) and a data sample."""
    sample = BaseDataElement(metainfo={k: results[k] for k in
                                       ("img_path", "ori_shape", "img_shape")})
    gt = torch.from_numpy(results["gt_seg_map"].astype(np.int64))
    sample.gt_sem_seg = PixelData(data=gt[None])
    return {"inputs": torch.from_numpy(results["img"]).permute(2, 0, 1).contiguous(),
            "data_samples": sample}


class Images(torch.utils.data.Dataset):
    def __init__(self, ids, pipeline):
        self.ids, self.pipeline = ids, Compose(pipeline)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, k):
        return self.pipeline({"id": self.ids[k]})


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_seg = torch.nn.Conv2d(8, CLASSES, 1)

    def forward(self, inputs):  # BaseDecodeHead.forward: the stages in, logits out
        return self.conv_seg(inputs[-1])


class TinySegmentor(BaseModel):
    def __init__(self, pad_size_divisor=1, density=True):
        super().__init__(data_preprocessor=dict(type="ImgDataPreprocessor", mean=[0, 0, 0],
                                                std=[255, 255, 255],
                                                pad_size_divisor=pad_size_divisor))
        torch.manual_seed(0)
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU())
        self.decode_head = Head()
        if density:
            self.density = densecore.DensityTrainer(
                densecore.DMCEstimator(8, dim=4, kernel_size=3, num_classes=CLASSES))
        self.seen = []  # (ids, gt) of every training batch

    def extract_feat(self, inputs):
        return (self.backbone(inputs),)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        feats = self.extract_feat(inputs)
        logits = F.interpolate(self.decode_head(feats), inputs.shape[-2:], mode="bilinear",
                               align_corners=False)
        if mode != "loss":
            return logits
        gt = torch.stack([s.gt_sem_seg.data[0] for s in data_samples])
        logits = logits[..., :gt.shape[-2], :gt.shape[-1]]  # the padding off
        self.seen.append(([densecore.integrations.mmseg.image_id_from_path(s.img_path)
                           for s in data_samples], gt.clone()))
        loss = self.density.loss(self.density(feats[-1]), gt)
        if (gt != 255).any():
            loss = loss + F.cross_entropy(logits, gt, ignore_index=255)
        return {"loss": loss}


def runner(tmp_path, model, hook, train_ids, pipeline, iters):
    train = Images(train_ids, pipeline)
    return Runner(model=model, work_dir=str(tmp_path / "work"), experiment_name=tmp_path.name,
                  train_dataloader=dict(dataset=train, batch_size=2, num_workers=0,
                                        sampler=dict(type="DefaultSampler", shuffle=True)),
                  train_cfg=dict(by_epoch=False, max_iters=iters),
                  optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
                  custom_hooks=[hook], default_hooks=dict(checkpoint=None),
                  randomness=dict(seed=0), log_level="WARNING")


def reference(hook_state, runner_, round, data, tmp_path, sampler):
    """query_round called directly on each unpadded image, after the same earlier rounds."""
    ref = densecore.ActiveLabelState(tmp_path / f"ref{round}", TARGET, hook_state.shape(TARGET[0]))
    for i in TARGET:
        for r in range(round):
            ref.add(i, hook_state.queried(i, r), round=r,
                    labels=hook_state.labels(i, rounds=[r]))
    model = runner_.model
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(data[i][0]).permute(2, 0, 1).float() / 255
                         for i in TARGET])
        out = segmentor_outputs(model, x)
        probs = F.interpolate(out["logits"], x.shape[-2:], mode="bilinear",
                              align_corners=False).softmax(1)
        gt = torch.stack([torch.from_numpy(data[i][1].astype(np.int64)) for i in TARGET])
        densecore.query_round(ref, round, TARGET, probs, out["features"], out["densities"], 6,
                              labels=gt, sampler=sampler, alpha=4)
    return {i: ref.queried(i, round) for i in TARGET}


@pytest.mark.parametrize("pad", [False, True])
def test_hook_runs_rounds_in_the_real_runner_and_the_dataset_reads_the_labels(tmp_path, pad):
    shape = (20, 28) if pad else (24, 32)
    data = images(TARGET + SOURCE, shape, seed=1)
    state = densecore.ActiveLabelState(tmp_path / "labels", TARGET, shape)
    # with padding the estimator's border differs from an unpadded image: compare with
    # k-center there (features only), with the paper's sampler without padding
    sampler = densecore.KCenterGreedy if pad else densecore.DensityAwareGreedy
    select = dict(dataset=Images(TARGET, [Load(data), pack]), batch_size=2, num_workers=0,
                  sampler=dict(type="DefaultSampler", shuffle=False))
    ends, mismatches = [], []

    def on_round_end(runner_, r, st):
        ends.append((runner_.iter, r))
        want = reference(st, runner_, r, data, tmp_path, sampler)
        mismatches.extend(i for i in TARGET if not np.array_equal(want[i], st.queried(i, r)))

    hook = SelectionHook(state, rounds_at=[2, 4], budget=6, dataloader=select, alpha=4,
                         sampler=sampler, on_round_end=on_round_end)
    model = TinySegmentor(pad_size_divisor=8 if pad else 1)
    train_pipeline = [Load(data), ActiveLabels(state.root), pack]
    run = runner(tmp_path, model, hook, TARGET + SOURCE, train_pipeline, iters=6)
    run.train()

    assert ends == [(2, 0), (4, 1)]
    assert mismatches == []  # the hook selects what query_round selects on the same outputs
    summary = state.summary()
    assert [(r["round"], r["queried"]) for r in summary["rounds"]] == [(0, 24), (1, 24)]
    for i in TARGET:  # the simulated annotator's labels are the ground truth
        m = state.labeled(i)
        assert m.sum() == 12 and np.array_equal(state.labels(i)[m], data[i][1][m])
    # the batch of an iteration is loaded before its hooks: iterations 0-2 saw no target
    # label, 3-4 round 0's, 5 rounds 0 and 1; the source images kept their ground truth
    assert len(model.seen) == 6
    for it, (ids, gt) in enumerate(model.seen):
        rounds = [] if it <= 2 else [0] if it <= 4 else [0, 1]
        for i, g in zip(ids, gt.numpy()):
            if i in SOURCE:
                assert np.array_equal(g, data[i][1])
            else:
                want = state.labels(i, rounds=rounds) if rounds else np.full(shape, 255)
                assert np.array_equal(g, want), (it, i)
    assert sum(i in TARGET for ids, _ in model.seen for i in ids) == 8  # 2 epochs of 4


def test_a_resumed_run_does_not_redo_done_rounds(tmp_path):
    shape = (16, 16)
    data = images(TARGET, shape, seed=2)
    state = densecore.ActiveLabelState(tmp_path / "labels", TARGET, shape)
    select = dict(dataset=Images(TARGET, [Load(data), pack]), batch_size=4, num_workers=0,
                  sampler=dict(type="DefaultSampler", shuffle=False))
    m = np.zeros(shape, bool)
    m[0, :3] = True
    for i in TARGET:  # round 0 is already on disk from an earlier job
        state.add(i, m, round=0, labels=data[i][1])
    ends = []
    hook = SelectionHook(state.root, rounds_at=[0, 1], budget=3, dataloader=select,
                         alpha=4, on_round_end=lambda r_, r, s: ends.append(r))
    run = runner(tmp_path, TinySegmentor(), hook, TARGET,
                 [Load(data), ActiveLabels(state), pack], iters=2)
    run.train()
    assert ends == [1] and hook.done == 2
    for i in TARGET:
        assert np.array_equal(state.queried(i, 0), m)
        assert not (state.queried(i, 1) & m).any() and state.queried(i, 1).sum() == 3


def test_crop_resize_drops_the_bottom_right_padding():
    x = torch.arange(12.).reshape(1, 1, 3, 4)
    assert _crop_resize(x, (4, 6), (6, 8), None).tolist() == [[[[0, 1, 2], [4, 5, 6]]]]
    assert tuple(_crop_resize(x, (6, 8), (6, 8), (5, 7)).shape) == (1, 1, 5, 7)


def test_bad_arguments_and_inputs_name_what_is_wrong(tmp_path):
    state = densecore.ActiveLabelState(tmp_path / "s", TARGET, (8, 8))
    with pytest.raises(ValueError, match="strictly increasing"):
        SelectionHook(state, [4, 2], 3, None)
    with pytest.raises(ValueError, match="rounds_at"):
        SelectionHook(state, [], 3, None)
    with pytest.raises(TypeError, match="state"):
        SelectionHook(object(), [1], 3, None)
    with pytest.raises(TypeError, match="outputs"):
        SelectionHook(state, [1], 3, None, outputs=3)
    data = images(["x9"], (8, 8), seed=0)  # an image the state does not know
    select = dict(dataset=Images(["x9"], [Load(data), pack]), batch_size=1,
                  sampler=dict(type="DefaultSampler", shuffle=False))
    hook = SelectionHook(state, [0], 3, select)
    run = runner(tmp_path, TinySegmentor(), hook, ["x9"], [Load(data), pack], iters=1)
    with pytest.raises(ValueError, match="'x9', which is not one of the 4 images"):
        run.train()
    labels = ActiveLabels(state)
    with pytest.raises(ValueError, match="records shape"):
        labels({"img_path": "a/t0.jpg", "ori_shape": (9, 8)})


def test_no_densities_for_the_paper_sampler_is_a_named_error(tmp_path):
    data = images(TARGET, (8, 8), seed=0)
    state = densecore.ActiveLabelState(tmp_path / "s", TARGET, (8, 8))
    select = dict(dataset=Images(TARGET, [Load(data), pack]), batch_size=4,
                  sampler=dict(type="DefaultSampler", shuffle=False))
    model = TinySegmentor(density=False)
    hook = SelectionHook(state, [0], 2, select, sampler="density_aware")
    run = runner(tmp_path, model, hook, TARGET, [Load(data), pack], iters=1)
    with pytest.raises(ValueError, match="'density_aware' needs densities.*'kcenter'"):
        run.train()


def test_register_makes_the_names_buildable_from_a_config(tmp_path):
    from mmengine.registry import HOOKS, TRANSFORMS

    register()
    register()  # again: no error
    state = densecore.ActiveLabelState(tmp_path / "s", TARGET, (8, 8))
    hook = HOOKS.build(dict(type="SelectionHook", state=state.root, rounds_at=[3], budget=2,
                            dataloader=None))
    t = TRANSFORMS.build(dict(type="ActiveLabels", root=state.root))
    assert isinstance(hook, SelectionHook) and hook.rounds_at == [3]
    assert isinstance(t, ActiveLabels) and t.root == state.root


def test_a_human_in_the_loop_run_records_queries_and_trains_on_imported_answers(tmp_path):
    from densecore.annotate import record_answers

    shape = (16, 16)
    data = images(TARGET, shape, seed=3)
    queries = densecore.ActiveLabelState(tmp_path / "queries", TARGET, shape)
    labels = densecore.ActiveLabelState(tmp_path / "labels", TARGET, shape)
    select = dict(dataset=Images(TARGET, [Load(data), pack]), batch_size=4, num_workers=0,
                  sampler=dict(type="DefaultSampler", shuffle=False))

    def annotator(runner_, r, st):  # answers every image but the last one
        answers = {i: np.where(st.queried(i, r), data[i][1].astype(np.int64), -1)
                   for i in TARGET[:-1]}
        record_answers(st, labels, r, answers)

    hook = SelectionHook(queries, rounds_at=[1], budget=5, dataloader=select, alpha=4,
                         record_labels=False, on_round_end=annotator)
    model = TinySegmentor()
    run = runner(tmp_path, model, hook, TARGET, [Load(data), ActiveLabels(labels), pack],
                 iters=4)
    run.train()
    assert all(queries.queried(i, 0).sum() == 5 for i in TARGET)
    with pytest.raises(ValueError, match="without labels"):
        queries.labels(TARGET[0])  # the queries hold no labels
    assert labels.rounds(TARGET[-1]) == []  # pending
    for it, (ids, gt) in enumerate(model.seen):
        for i, g in zip(ids, gt.numpy()):
            want = labels.labels(i) if it >= 2 and labels.rounds(i) else np.full(shape, 255)
            assert np.array_equal(g, want), (it, i)
