"""select_pixels time per image at Cityscapes scale (filter, gather, greedy).

One image: probabilities 19x1024x2048, features 64x128x256 (stride 8),
budget 9,227 pixels (2.2 % of the image over 5 rounds), alpha 20, so the
greedy runs on 184,540 candidates. Features come from
``densecore.synthetic.feature_map`` (Voronoi regions of different noise
levels), densities from ``coverage_density`` of the per-pixel noise level,
probabilities from a softmax of smooth random logits. Rows per device and
sampler: the total select_pixels time and its greedy part (the sampler's
``select``, timed inside the call), the rest being scoring, top-k and the
bilinear gathers. CUDA rows are added when a GPU is present (timed after one
warm-up call); on the CPU each greedy sampler first runs once on small noise data
(:func:`warm_up`), so compiling kernels is never timed.

Per-phase split (seconds per image): ``score_s`` (margin scores of every
pixel), ``topk_s`` (the alpha * budget best candidates), ``gather_s``
(bilinear features and densities at the candidates), ``greedy_s`` (the
farthest-first selection) and ``refine_s`` (the k-medoids steps of
``KMedoidsRefinement``, sampler ``kmedoids_refinement``, which is not in the
default list: at full size it takes minutes or more per image; 0 for the
plain greedy samplers).
The phases are timed by wrapping the library's functions for the duration
of the run; ``rest_s`` is what none of them covers (checks, mask).

RIPU rows (not in the default list; ``--samplers ripu ripu+density_aware``):
``ripu`` is RIPU's own region selection (``sampler="ripu", score="ripu",
region_size=3``: ``ceil(budget / 9)`` = 1,026 disjoint 3x3 regions, the same
pixels as the budget), its ``ripu_s`` the pick-suppress-repeat
(``ripu_select``); ``ripu_pixel`` RIPU's pixel selection (``budget`` single
pixels, suppression radius 1); ``ripu+density_aware`` and ``ripu+kcenter``
are hybrids: RIPU's pixel score picks the alpha * budget candidates, the
greedy chooses among them. ``score_s`` of the RIPU rows is ``ripu_score``;
before a RIPU row on the CPU the compiled scan is loaded by a tiny call.

``--images N`` passes N such images in one call (independent feature maps
and probabilities, seeds ``seed .. seed + N - 1``); every time is then per
image (divided by N). ``select_pixels`` hands all images of a call to
``farthest_first_batch`` (its time is ``greedy_s``): on the CPU up to the
thread limit's number of images at once, one numba thread each; on CUDA one
kernel launch per pick for all images (triton engine). ``rest_s`` is left out
with several images.

    python benchmarks/select_pixels.py --json benchmarks/results/select_pixels.json
    python benchmarks/select_pixels.py --quick
    python benchmarks/select_pixels.py --images 2 --samplers density_aware kcenter
    python benchmarks/select_pixels.py --samplers score_only ripu ripu_pixel \
        ripu+density_aware ripu+kcenter density_aware kcenter \
        --json benchmarks/results/select_pixels_ripu.json
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from _common import base_parser, emit

import densecore.refine as R
import densecore.samplers.paper as SM
import densecore.segmentation as S
from densecore import (DensityAwareGreedy, KCenterGreedy, KMedoidsRefinement, ripu_select,
                       select_pixels)
from densecore.density import coverage_density
from densecore.synthetic import feature_map

COLUMNS = ["device", "sampler", "images", "candidates", "budget", "labeled", "total_s",
           "score_s",
           "topk_s", "gather_s", "greedy_s", "refine_s", "ripu_s", "rest_s", "picks"]

PHASES = {"score_s": (S, "_scores"), "topk_s": (S, "top_candidates"),
          "gather_s": (S, "sample_at_pixels"), "greedy_s": (SM, "farthest_first"),
          # several images per call go through the batched entry (one call)
          "greedy_batch_s": (SM, "farthest_first_batch"),
          "refine_s": (R, "refine_medoids"), "ripu_s": (S, "ripu_select")}

SAMPLERS = ["density_aware", "kcenter", "kmedoids_refinement", "score_only", "ripu",
            "ripu_pixel", "ripu+density_aware", "ripu+kcenter"]


def method(name, seed, budget):
    """``(sampler, score, region_size, picks)`` of a row: RIPU's region row labels
    3x3 blocks, ``ceil(budget / 9)`` of them (the same pixels as ``budget``)."""
    greedy = {"density_aware": DensityAwareGreedy(seed=seed), "kcenter": KCenterGreedy(seed=seed),
              "kmedoids_refinement": KMedoidsRefinement(seed=seed), "score_only": None}
    if name == "ripu":
        return "ripu", "ripu", 3, math.ceil(budget / 9)
    if name == "ripu_pixel":
        return "ripu", "ripu", 1, budget
    if name.startswith("ripu+"):
        return greedy[name[len("ripu+"):]], "ripu", 1, budget
    return greedy[name], "margin", 1, budget


@contextmanager
def phase_timer(device):
    """Patch the phase functions to add their wall time into the yielded dict."""
    spent = {k: 0.0 for k in PHASES}
    saved = {k: getattr(mod, name) for k, (mod, name) in PHASES.items()}

    def wrap(key, fn):
        def timed(*args, **kwargs):
            _sync(device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(device)
            spent[key] += time.perf_counter() - t0
            return out
        return timed

    for k, (mod, name) in PHASES.items():
        setattr(mod, name, wrap(k, saved[k]))
    try:
        yield spent
    finally:
        for k, (mod, name) in PHASES.items():
            setattr(mod, name, saved[k])


def warm_up(sampler) -> None:
    """Run ``sampler`` once on 12,000 noise rows of dimension 64 with 300 picks: the
    pruned pass, its hand-over to dense passes and the plain loop's kernels are then
    loaded (compiled, when the cache is cold), so the timed call measures selection."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12_000, 64, generator=g)
    sampler.select(x, 300, densities=torch.rand(12_000, generator=g, dtype=torch.float64) + 0.5)
    sampler.select(x[:2_000], 10, densities=torch.ones(2_000, dtype=torch.float64))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_inputs(size, stride, classes, dim, labeled, seed, images=1):
    """``images`` synthetic images: probs (B,C,H,W), features (B,D,h,w), densities
    (B,h,w), labeled (B,H,W); image ``i`` is the single image of seed ``seed + i``."""
    if images > 1:
        parts = [make_inputs(size, stride, classes, dim, labeled, seed + i)
                 for i in range(images)]
        return tuple(torch.cat(t) for t in zip(*parts))
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


def run(size, stride, classes, dim, budget, alpha, labeled, samplers, devices, seed,
        images=1):
    probs, feats, dens, lab = make_inputs(size, stride, classes, dim, labeled, seed, images)
    rows = []
    for dev_name in devices:
        dev = torch.device(dev_name)
        p, f, d, lb = (t.to(dev) for t in (probs, feats, dens, lab))
        for name in samplers:
            sampler, score, region_size, picks = method(name, seed, budget)

            def call():
                return select_pixels(p, f, d, picks, labeled=lb if labeled else None,
                                     alpha=alpha, sampler=sampler, seed=seed, score=score,
                                     region_size=region_size)

            if dev.type != "cpu":  # warm-up: context, kernels, allocator
                call()
            elif sampler == "ripu":  # load the compiled scan (about 1 s once per process)
                ripu_select(torch.zeros(1, 4, 4), 1)
            elif sampler is not None:  # load (or, after a change, compile) the kernels
                warm_up(sampler)
            _sync(dev)
            with phase_timer(dev) as spent:
                t0 = time.perf_counter()
                new = call()
                _sync(dev)
                total = time.perf_counter() - t0
            spent["greedy_s"] += spent.pop("greedy_batch_s")
            greedy = sampler is not None and not isinstance(sampler, str)
            rows.append({"device": dev_name, "sampler": name, "images": images,
                         "candidates": math.ceil(alpha * picks) if greedy else picks,
                         "budget": picks, "labeled": labeled, "total_s": total / images,
                         **{k: v / images for k, v in spent.items()},
                         # with images at once the phases overlap: no rest to report
                         "rest_s": (total - sum(spent.values())) if images == 1 else None,
                         "picks": int(new.sum()) // images})
            print(f"{dev_name} {name}: {total / images:.2f} s per image", flush=True)
    return rows


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--samplers", nargs="+", default=["density_aware", "kcenter", "score_only"],
                   choices=SAMPLERS)
    p.add_argument("--labeled", type=int, default=0,
                   help="pixels labeled in earlier rounds (the s0 set); default 0 (round 1)")
    p.add_argument("--images", type=int, default=1,
                   help="images per select_pixels call (times are per image); default 1")
    p.add_argument("--devices", nargs="+", default=None,
                   help="default: cpu, and cuda when available")
    args = p.parse_args(argv)
    if args.quick:  # a quarter of the side: 19x256x512, 64x32x64, budget 9227/16
        size, budget = (256, 512), 577
    else:
        size, budget = (1024, 2048), 9227
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    config = {"size": list(size), "stride": 8, "classes": 19, "dim": 64, "budget": budget,
              "alpha": 20, "labeled": args.labeled, "seed": args.seed, "images": args.images}
    rows = run(size, 8, 19, 64, budget, 20, args.labeled, args.samplers, devices, args.seed,
               args.images)
    emit("select_pixels", rows, COLUMNS, args.json, config=config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
