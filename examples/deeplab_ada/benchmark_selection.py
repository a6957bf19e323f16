"""Seconds per image of one selection step at Cityscapes scale, per budget setting of the configs.

One synthetic image at the label resolution 1024x2048: probabilities
19x1024x2048 (softmax of smooth random logits), DMC-like features 64x128x256
and densities (``densecore.synthetic.feature_map``), and ``select_pixels``
with the density-aware greedy exactly as ``train.py`` calls it:

* ``2.2%``: 1,026 regions of 3x3 per round, alpha 20 (20,520 candidates);
* ``5%``: 2,331 regions, alpha 10 (23,310 candidates);
* ``40px``: 21 pixels per round, alpha 20 (420 candidates);

each in round 1 (nothing labeled) and round 5 (the pixels of four earlier
rounds labeled: they are the greedy's s0), with RIPU's non-overlapping
regions (``block``, the configs' default) and, for 2.2 %, overlapping ones.

    python benchmark_selection.py --out selection.json [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

import densecore
from densecore.density import coverage_density
from densecore.synthetic import feature_map

SETTINGS = [  # name, budget per round, alpha, region size, overlap
    ("2.2%", densecore.region_budget((1024, 2048), 0.022, 5), 20, 3, "block"),
    ("2.2%", densecore.region_budget((1024, 2048), 0.022, 5), 20, 3, "allow"),
    ("5%", densecore.region_budget((1024, 2048), 0.05, 5), 10, 3, "block"),
    ("40px", densecore.pixel_budget((1024, 2048), 40, 5), 20, 1, "block"),
]


def make_inputs(seed: int, device):
    size, stride = (1024, 2048), 8
    f, _, noise = feature_map(1, 64, size[0] // stride, size[1] // stride, n_regions=12,
                              seed=seed)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 19, size[0] // stride, size[1] // stride, generator=g) * 3
    probs = torch.softmax(F.interpolate(logits, size=size, mode="bilinear",
                                        align_corners=False), 1)
    return (probs.to(device), torch.from_numpy(f).to(device),
            coverage_density(torch.from_numpy(noise)).to(device))


def earlier_rounds(probs, feats, dens, budget, alpha, region_size, overlap, rounds, seed):
    """The labeled mask after ``rounds`` earlier rounds (each selected like the timed one)."""
    labeled = torch.zeros(probs.shape[0], *probs.shape[-2:], dtype=torch.bool,
                          device=probs.device)
    for r in range(rounds):
        labeled |= densecore.select_pixels(
            probs, feats, dens, budget, labeled=labeled, alpha=alpha, region_size=region_size,
            region_overlap=overlap, sampler=densecore.DensityAwareGreedy(seed=seed + r))
    return labeled


def main(args):
    device = torch.device(args.device)
    probs, feats, dens = make_inputs(args.seed, device)
    rows = []
    for name, budget, alpha, region, overlap in SETTINGS:
        for rnd in (1, 5):
            labeled = earlier_rounds(probs, feats, dens, budget, alpha, region, overlap, rnd - 1,
                                     args.seed)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            new = densecore.select_pixels(
                probs, feats, dens, budget, labeled=labeled, alpha=alpha, region_size=region,
                region_overlap=overlap, sampler=densecore.DensityAwareGreedy(seed=args.seed))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            rows.append({"setting": name, "overlap": overlap, "round": rnd, "budget": budget,
                         "candidates": math.ceil(alpha * budget),
                         "labeled": int(labeled.sum()), "new_pixels": int(new.sum()),
                         "max_pixels": budget * region ** 2, "seconds": round(seconds, 3)})
            print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    out = {"device": str(device), "torch_threads": torch.get_num_threads(),
           "loadavg_1m": os.getloadavg()[0], "rows": rows}
    if args.out:
        from densecore.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    return out


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the rows as JSON")
    return p


if __name__ == "__main__":
    print("setting | overlap | round | budget | candidates | labeled | new_pixels | "
          "max_pixels | seconds")
    main(get_args_parser().parse_args())
