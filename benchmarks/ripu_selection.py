"""Time of one RIPU selection round per image: RegionSelection with RIPU's cfg and dicts.

One target image at Cityscapes size (1024 x 2048, network input 512 x 1024), a
stand-in backbone whose ``"out"`` features have ``D`` channels at stride 8 (2048
for DeepLab-V2 on ResNet-101), RIPU's region budget at 2.2 % over 5 rounds
(1,026 regions of 3x3), the first round (nothing labeled). Samplers: ``ripu``
(RIPU's own selection), ``default`` (select_pixels' default sampler on margin
candidates) and ``density_aware`` (Algorithm 1 with kNN densities computed on
the candidates: the frozen-feature path). The time includes the forward pass
and writing the two files.

    python benchmarks/ripu_selection.py --json benchmarks/results/ripu_selection.json
    python benchmarks/ripu_selection.py --quick
"""

from __future__ import annotations

import os
import tempfile
import time
from types import SimpleNamespace as CN

import torch
import torch.nn.functional as F
from _common import base_parser, emit

from densecore.integrations.ripu import RegionSelection

C = 19


class Backbone(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, dim, 3, 4, 1)

    def forward(self, x):
        return {"out": self.conv(x)}  # stride 8 of the 1024 x 2048 labels


class Head(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv = torch.nn.Conv2d(dim, C, 1)

    def forward(self, feat, size=None):
        return F.interpolate(self.conv(feat["out"]), size=size, mode="bilinear",
                             align_corners=True)


def one_round(shape, dim, sampler, seed):
    h, w = shape
    out = tempfile.mkdtemp()
    cfg = CN(ACTIVE=CN(SELECT_ITER=[1, 2, 3, 4, 5], RATIO=0.022, RADIUS_K=1),
             MODEL=CN(NUM_CLASSES=C), OUTPUT_DIR=out, SEED=seed)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fe, cls = Backbone(dim), Head(dim)
    ind = os.path.join(out, "gtIndicator/train/aachen/aachen_000000_000019_indicator.pth")
    batch = {"img": torch.randn(1, 3, h // 2, w // 2, generator=g),
             "size": torch.tensor([[h, w]]), "origin_mask": torch.full((1, h, w), 255),
             "origin_label": torch.randint(0, C, (1, h, w), generator=g),
             "active": torch.zeros(1, h, w, dtype=torch.bool),
             "selected": torch.zeros(1, h, w, dtype=torch.bool),
             "path_to_mask": [os.path.join(
                 out, "gtMask/train/aachen/aachen_000000_000019_gtFine_labelIds.png")],
             "path_to_indicator": [ind]}
    kw = {} if sampler == "default" else {"sampler": sampler}
    t0 = time.perf_counter()
    RegionSelection(cfg=cfg, feature_extractor=fe, classifier=cls, tgt_epoch_loader=[batch],
                    progress=False, **kw)
    seconds = time.perf_counter() - t0
    return seconds, int(torch.load(ind)["selected"].sum())


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    shape, dims = ((512, 1024), [256]) if args.quick else ((1024, 2048), [256, 2048])
    rows = []
    for dim in dims:
        for sampler in ("ripu", "default", "density_aware"):
            seconds, selected = one_round(shape, dim, sampler, args.seed)
            rows.append({"H x W": f"{shape[0]} x {shape[1]}", "D": dim, "sampler": sampler,
                         "seconds": round(seconds, 2), "selected pixels": selected})
    emit("ripu_selection", rows, ["H x W", "D", "sampler", "seconds", "selected pixels"],
         args.json, caption=f"one image, first round, torch threads {torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
