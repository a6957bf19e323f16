"""densecore.integrations.ripu.RegionSelection / PixelSelection driven the way RIPU's train.py
drives its own: RIPU's cfg attributes, a Cityscapes layout in RIPU's naming, a target loader
yielding RIPU's dicts (its "active" split: the mask PNG and the indicator read back), RIPU's
files; sampler="ripu" against a naive re-implementation of RIPU's selection loop."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import densecore
from densecore.integrations import ripu

H, W, C = 24, 32, 5
CITY_IDS = [7, 8, 11, 12, 13]  # Cityscapes label ids of train ids 0..4
NAMES = ["aachen/aachen_000000_000019_leftImg8bit.png",
         "aachen/aachen_000001_000019_leftImg8bit.png",
         "bochum/bochum_000000_000313_leftImg8bit.png"]


class Cfg(dict):
    """A small attribute dict shaped like RIPU's yacs cfg (a missing key: AttributeError)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def make_cfg(out, *, setting="RA", ratio=0.2, pixels=8, k=1, select_iter=(10, 20)):
    return Cfg(ACTIVE=Cfg(NAME="AL-RIPU", SETTING=setting, SELECT_ITER=list(select_iter),
                          RATIO=ratio, PIXELS=pixels, RADIUS_K=k),
               MODEL=Cfg(NUM_CLASSES=C), OUTPUT_DIR=str(out), SEED=0, DEBUG=0)


def make_layout(root, seed=0):
    """leftImg8bit/train/<city>/<name>_leftImg8bit.png and gtFine/.../_gtFine_labelIds.png
    (label ids, 0 = unlabeled -> train id 255), and the list file RIPU reads."""
    g = np.random.default_rng(seed)
    for name in NAMES:
        stem = name.split("_leftImg8bit")[0]
        os.makedirs(os.path.join(root, "leftImg8bit", "train", os.path.dirname(name)),
                    exist_ok=True)
        os.makedirs(os.path.join(root, "gtFine", "train", os.path.dirname(name)),
                    exist_ok=True)
        coarse = g.integers(0, C, (H // 4, W // 4))
        train_id = np.kron(coarse, np.ones((4, 4), int))
        label = np.asarray(CITY_IDS)[train_id].astype(np.uint8)
        label[:2, :5] = 0  # void
        img = (np.eye(3)[train_id % 3] * 200 + g.integers(0, 40, (H, W, 3))).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(root, "leftImg8bit", "train", name))
        Image.fromarray(label).save(os.path.join(root, "gtFine", "train",
                                                 stem + "_gtFine_labelIds.png"))
    with open(os.path.join(root, "cityscapes_train_list.txt"), "w") as f:
        f.write("\n".join(NAMES) + "\n")


def mask_path(cfg, name):
    return os.path.join(cfg.OUTPUT_DIR, "gtMask", "train",
                        name.split("_leftImg8bit")[0] + "_gtFine_labelIds.png")


def indicator_path(cfg, name):
    return os.path.join(cfg.OUTPUT_DIR, "gtIndicator", "train",
                        name.split("_leftImg8bit")[0] + "_indicator.pth")


def init_masks(cfg):
    """What RIPU does before training: an all-255 mask and a one-element indicator."""
    for name in NAMES:
        for p in (mask_path(cfg, name), indicator_path(cfg, name)):
            os.makedirs(os.path.dirname(p), exist_ok=True)
        Image.fromarray(np.full((H, W), 255, np.uint8)).save(mask_path(cfg, name))
        torch.save({"active": torch.tensor([0], dtype=torch.bool),
                    "selected": torch.tensor([0], dtype=torch.bool)}, indicator_path(cfg, name))


class ActiveSplit(Dataset):
    """RIPU's Cityscapes dataset in its "active" split: the network input (resized to
    the test size), the mask and label at the original size, the indicator."""

    def __init__(self, root, cfg, input_size=(16, 24)):
        with open(os.path.join(root, "cityscapes_train_list.txt")) as f:
            self.names = [line.strip() for line in f if line.strip()]
        self.root, self.cfg, self.input_size = root, cfg, input_size
        self.to_train = np.full(256, 255, np.uint8)
        self.to_train[CITY_IDS] = np.arange(C)

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        name = self.names[i]
        stem = name.split("_leftImg8bit")[0]
        image = np.asarray(Image.open(os.path.join(self.root, "leftImg8bit", "train", name))
                           .convert("RGB"), np.float32) / 255
        label = np.asarray(Image.open(os.path.join(
            self.root, "gtFine", "train", stem + "_gtFine_labelIds.png")), np.uint8)
        label_mask = np.asarray(Image.open(mask_path(self.cfg, name)), np.uint8)
        origin_mask = torch.from_numpy(label_mask.copy()).long()
        ind = torch.load(indicator_path(self.cfg, name))
        active, selected = ind["active"], ind["selected"]
        if active.size() == (1,):  # first time: nothing active or selected
            active = torch.zeros_like(origin_mask, dtype=torch.bool)
            selected = torch.zeros_like(origin_mask, dtype=torch.bool)
        img = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], self.input_size,
                            mode="bilinear", align_corners=False)[0]
        return {"img": img, "label": torch.from_numpy(self.to_train[label]).long(),
                "mask": origin_mask, "name": name,
                "path_to_mask": mask_path(self.cfg, name),
                "path_to_indicator": indicator_path(self.cfg, name),
                "size": torch.tensor([H, W]), "origin_mask": origin_mask,
                "origin_label": torch.from_numpy(self.to_train[label]).long(),
                "active": active, "selected": selected}


class FeatureExtractor(torch.nn.Module):
    """RIPU's backbone interface: a dict with the last layer ("out") and an early one."""

    def __init__(self):
        super().__init__()
        self.low = torch.nn.Conv2d(3, 6, 3, 2, 1)
        self.high = torch.nn.Conv2d(6, 8, 3, 1, 1)

    def forward(self, x):
        low = torch.relu(self.low(x))
        return {"low": low, "out": torch.relu(self.high(low))}


class Classifier(torch.nn.Module):
    """RIPU's classifier interface: reads feat['out'], upsamples to ``size`` (corners aligned)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, C, 1)

    def forward(self, feat, size=None):
        out = self.conv(feat["out"])
        if size is not None:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return out


def models(seed=0):
    torch.manual_seed(seed)
    return FeatureExtractor(), Classifier()


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "datasets" / "cityscapes"
    make_layout(str(root))
    return str(root)


def loader(root, cfg, batch_size=1):
    return DataLoader(ActiveSplit(root, cfg), batch_size=batch_size, shuffle=False)


# --- a naive re-implementation of RIPU's selection loop ---------------------------------

def ones_conv(channels, size):
    conv = torch.nn.Conv2d(channels, channels, size, 1, size // 2, bias=False, groups=channels)
    conv.weight = torch.nn.Parameter(torch.ones(channels, 1, size, size))
    conv.requires_grad_(False)
    return conv


def naive_score(logit, mode, k):
    """RIPU's score of one image from (1, C, H, W) logits, step by step."""
    size = 2 * k + 1
    p = torch.softmax(logit.squeeze(dim=0), dim=0)
    ent = torch.sum(-p * torch.log(p + 1e-6), dim=0)
    one_hot = F.one_hot(torch.argmax(p, dim=0), num_classes=C).float()
    one_hot = one_hot.permute((2, 0, 1)).unsqueeze(dim=0)
    summary = ones_conv(C, size)(one_hot)
    count = torch.sum(summary, dim=1, keepdim=True)
    dist = summary / count
    impurity = torch.sum(-dist * torch.log(dist + 1e-6), dim=1, keepdim=True)
    if mode == "pixel":
        return ent * impurity.squeeze(dim=0).squeeze(dim=0)
    region_ent = ones_conv(1, size)(ent.unsqueeze(0).unsqueeze(0) / math.log(19))
    score = (impurity / math.log(19)) * (region_ent / count)
    return score.squeeze(dim=0).squeeze(dim=0)


def naive_selection(mode, cfg, feature_extractor, classifier, tgt_loader):
    """RIPU's RegionSelection / PixelSelection, one pick at a time with two torch.max calls."""
    feature_extractor.eval()
    classifier.eval()
    k = cfg.ACTIVE.RADIUS_K
    rounds = len(cfg.ACTIVE.SELECT_ITER)
    with torch.no_grad():
        for data in tgt_loader:
            out = classifier(feature_extractor(data["img"]), size=data["img"].shape[-2:])
            for i in range(len(data["origin_mask"])):
                mask = data["origin_mask"][i].clone()
                gt = data["origin_label"][i]
                size = (data["size"][i][0], data["size"][i][1])
                active, selected = data["active"][i].clone(), data["selected"][i].clone()
                logit = F.interpolate(out[i:i + 1], size=size, mode="bilinear",
                                      align_corners=True)
                score = naive_score(logit, mode, k)
                score[active] = -float("inf")
                if mode == "region":
                    n = size[0] * size[1]
                    budget = math.ceil(n * (cfg.ACTIVE.RATIO / rounds) / (2 * k + 1) ** 2)
                    grow, block = k, 2 * k
                else:
                    budget = math.ceil(cfg.ACTIVE.PIXELS / rounds / (1280 * 640)
                                       * (2048 * 1024))
                    grow, block = 0, k
                for _ in range(budget):
                    values, rows = torch.max(score, dim=0)
                    _, col = torch.max(values, dim=0)
                    x = col.item()
                    y = rows[x].item()
                    ys, xs = slice(max(0, y - block), y + block + 1), \
                        slice(max(0, x - block), x + block + 1)
                    score[ys, xs] = -float("inf")
                    active[ys, xs] = True
                    ys, xs = slice(max(0, y - grow), y + grow + 1), \
                        slice(max(0, x - grow), x + grow + 1)
                    selected[ys, xs] = True
                    mask[ys, xs] = gt[ys, xs]
                Image.fromarray(mask.numpy().astype(np.uint8)).save(data["path_to_mask"][i])
                torch.save({"active": active, "selected": selected},
                           data["path_to_indicator"][i])
    feature_extractor.train()
    classifier.train()


def read_files(cfg):
    out = {}
    for name in NAMES:
        ind = torch.load(indicator_path(cfg, name))
        out[name] = (np.asarray(Image.open(mask_path(cfg, name))), ind["active"],
                     ind["selected"])
    return out


def assert_same_files(a, b):
    for name in NAMES:
        (ma, aa, sa), (mb, ab, sb) = a[name], b[name]
        np.testing.assert_array_equal(ma, mb, err_msg=name)
        assert isinstance(aa, torch.Tensor) and aa.dtype == torch.bool
        assert torch.equal(aa, ab) and torch.equal(sa, sb), name


# --- sampler="ripu" is RIPU's loop --------------------------------------------------------

@pytest.mark.parametrize("mode, kw", [
    ("region", dict(ratio=0.2, k=1)),
    ("region", dict(ratio=0.6, k=1, select_iter=(5,))),  # runs out: RIPU re-picks (0, 0)
    ("pixel", dict(pixels=8, k=2)),
])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_sampler_ripu_equals_the_naive_ripu_loop(tmp_path, data_root, mode, kw, batch_size):
    setting = "RA" if mode == "region" else "PA"
    ours, ref = make_cfg(tmp_path / "ours", setting=setting, **kw), \
        make_cfg(tmp_path / "ref", setting=setting, **kw)
    fe, cls = models(1)
    for cfg in (ours, ref):
        init_masks(cfg)
    select = ripu.RegionSelection if mode == "region" else ripu.PixelSelection
    for _ in range(len(ours.ACTIVE.SELECT_ITER)):  # every round; the later respect `active`
        select(cfg=ours, feature_extractor=fe, classifier=cls,
               tgt_epoch_loader=loader(data_root, ours, batch_size), sampler="ripu",
               progress=False)
        assert fe.training and cls.training
        naive_selection(mode, ref, fe, cls, loader(data_root, ref, batch_size))
        assert_same_files(read_files(ours), read_files(ref))
    files = read_files(ours)
    assert any(s.any() for _, _, s in files.values())


def test_sampler_ripu_follows_ripus_tie_order(tmp_path, data_root):
    """A classifier that predicts one class everywhere: every score ties; RIPU's two maxima
    take the lowest column, then row (not the lowest flat index)."""
    cfg, ref = make_cfg(tmp_path / "ours"), make_cfg(tmp_path / "ref")
    fe, cls = models(2)
    with torch.no_grad():
        cls.conv.weight.zero_()
        cls.conv.bias.copy_(torch.arange(C, dtype=torch.float32))
    for c in (cfg, ref):
        init_masks(c)
    ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                         tgt_epoch_loader=loader(data_root, cfg), sampler="ripu",
                         progress=False)
    naive_selection("region", ref, fe, cls, loader(data_root, ref))
    assert_same_files(read_files(cfg), read_files(ref))
    sel = read_files(cfg)[NAMES[0]][2]
    assert sel[:2, :2].all() and sel[3:5, :2].all()  # down the first column first


# --- the default: the paper's selection with RIPU's files -------------------------------

def spy(monkeypatch):
    calls = []
    real = densecore.select_pixels

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(densecore, "select_pixels", recording)
    return calls


def dilate(m, r):
    return F.max_pool2d(m[None, None].float(), 2 * r + 1, 1, r)[0, 0] > 0


def test_region_selection_default_files_counts_and_rounds(tmp_path, data_root, monkeypatch,
                                                          caplog):
    cfg = make_cfg(tmp_path / "out", ratio=0.2, k=1)
    init_masks(cfg)
    fe, cls = models(3)
    fe.eval()  # RIPU leaves both models in train mode, whatever they were before
    calls = spy(monkeypatch)
    budget = math.ceil(H * W * 0.2 / 2 / 9)
    gt = {n: ActiveSplit(data_root, cfg)[i]["origin_label"] for i, n in enumerate(NAMES)}
    before = {n: (torch.zeros(H, W, dtype=torch.bool),) * 2 for n in NAMES}
    for r in range(2):
        with caplog.at_level("INFO", logger="densecore.integrations.ripu"):
            ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                                 tgt_epoch_loader=loader(data_root, cfg, batch_size=2),
                                 progress=False)
        assert fe.training and cls.training
        # one select_pixels call per loader batch (2 + 1 images), per-image seeds
        batch_calls = calls[2 * r:2 * r + 2]
        assert len(calls) == 2 * r + 2
        knn = any(c.densities is not None for call in batch_calls for c in call[2][1])
        assert ("densities='knn'" in caplog.text) == knn  # noted when computed
        assert [c[0][0].shape[0] for c in batch_calls] == [2, 1]
        assert all(isinstance(c[1]["seed"], list) and c[0][2] == "knn" for c in batch_calls)
        assert "sampler" not in batch_calls[0][1]  # select_pixels' own default
        seen = [s for c in batch_calls for s in c[2][1]]
        files = read_files(cfg)
        for name, cand in zip(NAMES, seen):
            mask, active, selected = files[name]
            old_active, old_selected = before[name]
            centres = cand.candidates[cand.selected]
            assert centres.numel() == budget
            hit = torch.zeros(H * W, dtype=torch.bool)
            hit[centres] = True
            hit = hit.view(H, W)
            assert not (hit & old_active).any()  # a later round respects `active`
            ys, xs = centres // W, centres % W  # blocks of one round never overlap
            far = torch.maximum((ys[:, None] - ys).abs(), (xs[:, None] - xs).abs())
            assert (far + 3 * torch.eye(budget, dtype=torch.long) >= 3).all()
            assert torch.equal(selected, old_selected | dilate(hit, 1))
            assert torch.equal(active, old_active | dilate(hit, 2))
            assert not (dilate(hit, 1) & old_selected).any()
            want = np.where(selected.numpy(), gt[name].numpy(), 255)
            np.testing.assert_array_equal(mask, want)
            before[name] = (active, selected)


def test_pixel_selection_default_and_density_trainer(tmp_path, data_root, monkeypatch):
    cfg = make_cfg(tmp_path / "out", setting="PA", pixels=8, k=2)
    init_masks(cfg)
    fe, cls = models(4)
    opt = torch.optim.SGD([*fe.parameters(), *cls.parameters()], lr=0.01)
    density = ripu.add_density(opt, 8, C, 0.01, dim=4, kernel_size=3)
    x = fe(torch.randn(2, 3, 16, 24))["out"]
    density.loss(density(x, 0), torch.zeros(2, 8, 12, dtype=torch.long)).backward()
    calls = spy(monkeypatch)
    ripu.PixelSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                        tgt_epoch_loader=loader(data_root, cfg), density=density,
                        sampler="density_aware", progress=False)
    assert density.training and fe.training
    budget = math.ceil(8 / 2 / (1280 * 640) * (2048 * 1024))
    files = read_files(cfg)
    assert len(calls) == len(NAMES)
    for name, (args, kwargs, (_, seen)) in zip(NAMES, calls):
        assert args[1].shape[1] == 4  # the estimator's features, not the backbone's
        assert isinstance(args[2], torch.Tensor) and kwargs["sampler"] == "density_aware"
        mask, active, selected = files[name]
        hit = torch.zeros(H * W, dtype=torch.bool)
        hit[seen[0].candidates[seen[0].selected]] = True
        hit = hit.view(H, W)
        assert int(selected.sum()) == budget and torch.equal(selected, hit)
        assert torch.equal(active, dilate(hit, 2))
        assert ((mask != 255) <= selected.numpy()).all()


def test_budgets_are_ripus_arithmetic():
    for (h, w), ratio, rounds in [((1024, 2048), 0.022, 5), ((1024, 2048), 0.05, 5),
                                  ((H, W), 0.2, 2), ((720, 1280), 0.022, 5)]:
        size = torch.tensor([h, w])
        want = math.ceil(size[0] * size[1] * (ratio / rounds) / 9)  # RIPU: tensor arithmetic
        assert ripu.ripu_regions_per_round((h, w), ratio, rounds) == want
    assert ripu.ripu_regions_per_round((1024, 2048), 0.022, 5) == \
        densecore.region_budget((1024, 2048), 0.022, 5) == 1026
    assert ripu.ripu_pixels_per_round(40, 5) == 21


def test_bad_cfg_and_loader_are_named(tmp_path, data_root):
    fe, cls = models(0)
    cfg = make_cfg(tmp_path / "out")
    init_masks(cfg)
    with pytest.raises(TypeError, match="cfg"):
        ripu.RegionSelection(cfg=Cfg(ACTIVE=Cfg()), feature_extractor=fe, classifier=cls,
                             tgt_epoch_loader=[], progress=False)
    bad = dict(next(iter(loader(data_root, cfg))))
    del bad["path_to_indicator"]
    with pytest.raises(ValueError, match="tgt_epoch_loader.*path_to_indicator"):
        ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                             tgt_epoch_loader=[bad], progress=False)
    assert fe.training and cls.training
    with pytest.raises(ValueError, match="sampler must be one of"):
        ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                             tgt_epoch_loader=[], sampler="k-centre", progress=False)


def test_density_aware_without_an_estimator_uses_knn_densities(tmp_path, data_root,
                                                               monkeypatch, caplog):
    cfg = make_cfg(tmp_path / "out")
    init_masks(cfg)
    fe, cls = models(5)
    calls = spy(monkeypatch)
    with caplog.at_level("INFO", logger="densecore.integrations.ripu"):
        ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                             tgt_epoch_loader=loader(data_root, cfg), sampler="density_aware",
                             progress=False)
    assert caplog.text.count("densities='knn'") == 1  # one line per call
    assert len(calls) == len(NAMES)
    for args, kwargs, (_, seen) in calls:
        assert args[2] == "knn" and args[1].shape[1] == 8  # the backbone's "out" features
        assert seen[0].densities is not None and (seen[0].densities > 0).all()


@pytest.mark.parametrize("sampler", ["ripu", "density_aware"])
def test_models_on_the_device_read_a_cpu_loader(tmp_path, data_root, device, sampler):
    """RIPU's models live on the GPU and its loader yields CPU tensors; the files are
    written from the CPU (RIPU's indicator tensors are CPU bool tensors)."""
    cfg = make_cfg(tmp_path / "out", ratio=0.2)
    init_masks(cfg)
    fe, cls = models(6)
    fe.to(device), cls.to(device)
    for _ in range(2):
        ripu.RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls,
                             tgt_epoch_loader=loader(data_root, cfg, batch_size=2),
                             sampler=sampler, progress=False)
    budget = math.ceil(H * W * 0.2 / 2 / 9)
    for name, (mask, active, selected) in read_files(cfg).items():
        assert active.device.type == "cpu" and selected.device.type == "cpu"
        assert (selected <= active).all()
        assert 2 * budget * 4 <= int(selected.sum()) <= 2 * budget * 9
        assert ((mask != 255) <= selected.numpy()).all()
