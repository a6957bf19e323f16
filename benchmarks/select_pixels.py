"""select_pixels time per image at Cityscapes scale (filter, gather, greedy).

One image: probabilities 19x1024x2048, features 64x128x256 (stride 8),
budget 9,227 pixels (2.2 % of the image over 5 rounds), alpha 20, so the
greedy runs on 184,540 candidates. Features come from
``densecore.synthetic.feature_map`` (Voronoi regions of different noise
levels), densities from ``coverage_density`` of the per-pixel noise level,
probabilities from a softmax of smooth random logits. Rows per device and
sampler: the total select_pixels time and its greedy part (the sampler's
``select``, timed inside the call), the rest being scoring, top-k and the
bilinear gathers. CUDA rows are added when a GPU is present.

    python benchmarks/select_pixels.py --json benchmarks/results/select_pixels.json
    python benchmarks/select_pixels.py --quick
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from _common import base_parser, emit

from densecore import DensityAwareGreedy, KCenterGreedy, select_pixels
from densecore.density import coverage_density
from densecore.synthetic import feature_map

COLUMNS = ["device", "sampler", "candidates", "budget", "labeled", "total_s", "greedy_s",
           "rest_s", "picks"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timed:
    """Wraps a sampler and accumulates the wall time of its ``select`` calls."""

    def __init__(self, inner, device):
        self.inner, self.device, self.seconds = inner, device, 0.0

    def select(self, features, budget, *, densities, labeled_features=None,
               labeled_densities=None):
        _sync(self.device)
        t0 = time.perf_counter()
        if isinstance(self.inner, KCenterGreedy):
            out = self.inner.select(features, budget, labeled_features=labeled_features)
        else:
            out = self.inner.select(features, budget, densities=densities,
                                    labeled_features=labeled_features,
                                    labeled_densities=labeled_densities)
        _sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out


def make_inputs(size, stride, classes, dim, labeled, seed):
    """One synthetic image: probs (1,C,H,W), features (1,D,h,w), densities (1,h,w), labeled."""
    big_h, big_w = size
    h, w = big_h // stride, big_w // stride
    f, _, noise = feature_map(1, dim, h, w, n_regions=12, seed=seed)
    feats = torch.from_numpy(f)
    dens = coverage_density(torch.from_numpy(noise))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, classes, h, w, generator=g) * 3
    probs = torch.softmax(F.interpolate(logits, size=size, mode="bilinear",
                                        align_corners=False), 1)
    lab = torch.zeros(1, big_h * big_w, dtype=torch.bool)
    if labeled:
        lab[0, torch.randperm(big_h * big_w, generator=g)[:labeled]] = True
    return probs, feats, dens, lab.view(1, big_h, big_w)


def run(size, stride, classes, dim, budget, alpha, labeled, samplers, devices, seed):
    probs, feats, dens, lab = make_inputs(size, stride, classes, dim, labeled, seed)
    rows = []
    for dev_name in devices:
        dev = torch.device(dev_name)
        p, f, d, lb = (t.to(dev) for t in (probs, feats, dens, lab))
        for name in samplers:
            inner = {"density_aware": DensityAwareGreedy(seed=seed),
                     "kcenter": KCenterGreedy(seed=seed), "score_only": None}[name]
            timed = None if inner is None else _Timed(inner, dev)
            _sync(dev)
            t0 = time.perf_counter()
            new = select_pixels(p, f, d, budget, labeled=lb if labeled else None,
                                alpha=alpha, sampler=timed, seed=seed)
            _sync(dev)
            total = time.perf_counter() - t0
            greedy = 0.0 if timed is None else timed.seconds
            rows.append({"device": dev_name, "sampler": name,
                         "candidates": budget if inner is None else math.ceil(alpha * budget),
                         "budget": budget, "labeled": labeled, "total_s": total,
                         "greedy_s": greedy, "rest_s": total - greedy,
                         "picks": int(new.sum())})
            print(f"{dev_name} {name}: {total:.2f} s", flush=True)
    return rows


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--samplers", nargs="+", default=["density_aware", "score_only"],
                   choices=["density_aware", "kcenter", "score_only"])
    p.add_argument("--labeled", type=int, default=0,
                   help="pixels labeled in earlier rounds (the s0 set); default 0 (round 1)")
    p.add_argument("--devices", nargs="+", default=None,
                   help="default: cpu, and cuda when available")
    args = p.parse_args(argv)
    if args.quick:  # a quarter of the side: 19x256x512, 64x32x64, budget 9227/16
        size, budget = (256, 512), 577
    else:
        size, budget = (1024, 2048), 9227
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    config = {"size": list(size), "stride": 8, "classes": 19, "dim": 64, "budget": budget,
              "alpha": 20, "labeled": args.labeled, "seed": args.seed}
    rows = run(size, 8, 19, 64, budget, 20, args.labeled, args.samplers, devices, args.seed)
    emit("select_pixels", rows, COLUMNS, args.json, config=config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
