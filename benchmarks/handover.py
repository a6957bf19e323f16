"""The numba engine's pruned/dense hand-over against both fixed modes, on a family of
candidate sets.

For every set the density-aware greedy runs three times per repeat, interleaved:
the rule (``POLICY = "auto"``: the first hand-over from rows read, then revisited
by paired timing trials, ``_backends/numba/handover.py``), pruning only and dense
passes only (the groups built at the first window). The three must pick the same
points; the table gives each time (best of the repeats), the rule's time over the
better fixed mode (``vs_best``; target at most 1.10) and the rule's mode swaps.

The family: few and many regions, uniform and varying noise and densities,
isotropic Gaussian noise, duplicates, and a ``select_pixels``-like set (300 regions
of a feature map, each with its own noise and density and a few factors of
variation, rows L2-normalised, budget 5 %; 46,000 candidates here against the
184,540 of one full image, for time).

    python benchmarks/handover.py --json benchmarks/results/handover.json
    python benchmarks/handover.py --quick
    python benchmarks/handover.py --full-image --repeats 2 --json benchmarks/results/handover_full.json

``--full-image`` runs only the ``select_pixels``-like set at one full image's size
(184,540 candidates, 9,227 picks: 2.2 % of a 1024 x 2048 image, alpha 20).
"""

from __future__ import annotations

import time

import numpy as np

from _common import base_parser, emit

import densecore
from densecore._backends.numba import engine as NE
from densecore._backends.numba import handover as HO

COLUMNS = ["set", "n", "dim", "budget", "auto_s", "pruned_s", "dense_s", "vs_best",
           "swaps", "same_picks"]
TARGET = 1.10


def regions(n, dim, k, noise=(0.2, 0.2), dens=(1.0, 1.0), dup=0.0, unit=False, rank=0,
            seed=0):
    """``n`` points in ``k`` regions (sizes from a Dirichlet draw) around normal centres,
    each region with its own noise scale in ``noise`` and density level in ``dens``
    (log-uniform), per-point density jitter of 20 % when ``dens`` varies; a share
    ``dup`` of the points duplicates of others; rows made unit when ``unit``. With
    ``rank`` > 0 a region's spread lies mostly in its own ``rank`` directions (a
    feature map's region: a few factors of variation, a tenth of the noise elsewhere).
    Returns ``(features (n, dim) float32, densities (n,) float64)``."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, 2.0)))
    centres = rng.normal(size=(k, dim))
    sig = np.exp(rng.uniform(np.log(noise[0]), np.log(noise[1]), k))
    lev = np.exp(rng.uniform(np.log(dens[0]), np.log(dens[1]), k))
    lab = np.repeat(np.arange(k), sizes)
    if rank:
        basis = rng.normal(size=(k, rank, dim)) / np.sqrt(rank)
        spread = np.einsum("nr,nrd->nd", rng.normal(size=(n, rank)), basis[lab])
        spread += 0.1 * rng.normal(size=(n, dim))
    else:
        spread = rng.normal(size=(n, dim))
    x = centres[lab] + spread * sig[lab, None]
    d = lev[lab] * (rng.uniform(0.8, 1.2, n) if dens[0] != dens[1] else 1.0)
    if dup:
        m = int(dup * n)
        x[rng.choice(n, m, replace=False)] = x[rng.choice(n, m)]
    if unit:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(n)
    return x[perm].astype(np.float32), np.asarray(d, dtype=np.float64)[perm]


def family(quick: bool, full_image: bool = False):
    """``[(name, features, densities, budget)]``."""
    if full_image:
        return [("select_pixels-like, full image", *regions(184_540, 64, 300, (0.02, 0.6),
                                                            (0.2, 5.0), unit=True, rank=3,
                                                            seed=8), 9_227)]
    s = 4 if quick else 1
    n = 40_000 // s
    return [
        ("few regions, uniform", *regions(n, 32, 8), 1000 // s),
        ("few regions, varying noise+density", *regions(n, 32, 8, (0.05, 1.0), (0.3, 3.0),
                                                        seed=1), 1000 // s),
        ("many regions, uniform", *regions(n, 64, 300, seed=2), 2000 // s),
        ("many regions, varying noise+density", *regions(n, 64, 300, (0.05, 1.0),
                                                         (0.3, 3.0), seed=3), 2000 // s),
        ("isotropic Gaussian D=64", *regions(n, 64, 1, (1.0, 1.0), seed=4), 1000 // s),
        ("isotropic Gaussian D=8", *regions(n, 8, 1, (1.0, 1.0), seed=5), 2000 // s),
        ("duplicates 30%", *regions(n, 32, 20, (0.05, 0.5), (0.5, 2.0), dup=0.3, seed=6),
         1000 // s),
        ("300 regions, 64-d noise, unit rows", *regions(46_000 // s, 64, 300, (0.02, 0.6),
                                                        (0.2, 5.0), unit=True, seed=7),
         2300 // s),
        ("select_pixels-like, 300 regions", *regions(46_000 // s, 64, 300, (0.02, 0.6),
                                                     (0.2, 5.0), unit=True, rank=3, seed=8),
         2300 // s),
    ]


def run(x, d, budget, policy):
    """Seconds and the selection of one run under ``policy``; the engine's swaps."""
    NE.POLICY = policy
    swaps = []
    follow = NE.Engine._follow

    def counting(self):
        before = self.mode.name
        follow(self)
        if self.mode.name != before:
            swaps.append(1)

    NE.Engine._follow = counting
    try:
        t0 = time.perf_counter()
        sel = densecore.farthest_first(x, budget, densities=d, init=0, backend="numba")
        return time.perf_counter() - t0, sel.indices, len(swaps)
    finally:
        NE.Engine._follow = follow
        NE.POLICY = "auto"


def main(argv=None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full-image", action="store_true",
                   help="only the select_pixels-like set at one full image's size")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    warm = np.random.default_rng(0).normal(size=(12_000, 16)).astype(np.float32)
    for pol in HO.POLICIES:  # load every kernel outside the timings
        run(warm, np.ones(len(warm)), 300, pol)
    rows = []
    for name, x, d, budget in family(args.quick, args.full_image):
        times = {pol: [] for pol in HO.POLICIES}
        picks, swaps = {}, 0
        for rep in range(repeats):
            for pol in HO.POLICIES[rep % 3:] + HO.POLICIES[:rep % 3]:  # rotate the order
                t, idx, sw = run(x, d, budget, pol)
                times[pol].append(t)
                picks[pol] = idx
                if pol == "auto":
                    swaps = sw
        best = {pol: min(v) for pol, v in times.items()}
        rows.append({"set": name, "n": len(x), "dim": x.shape[1], "budget": budget,
                     "auto_s": best["auto"], "pruned_s": best["pruned"],
                     "dense_s": best["dense"],
                     "vs_best": best["auto"] / min(best["pruned"], best["dense"]),
                     "swaps": swaps,
                     "same_picks": all(np.array_equal(picks["auto"], v) for v in picks.values())})
    worst = max(r["vs_best"] for r in rows)
    emit("handover", rows, COLUMNS, args.json,
         caption=f"worst vs_best {worst:.2f} (target <= {TARGET}); best of {repeats}",
         config={"repeats": repeats, "quick": args.quick, "full_image": args.full_image,
                 "target": TARGET},
         verdict={"worst_vs_best": worst, "ok": worst <= TARGET})


if __name__ == "__main__":
    main()
