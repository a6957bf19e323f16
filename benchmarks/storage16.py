"""What the opt-in 16-bit storage (``storage="float16"/"bfloat16"``) changes in the picks.

For k-center and the density-aware greedy (Algorithm 1) on two candidate sets, the
selection with the pool stored in float16 and in bfloat16 against the one on the
float32 features (``storage=None``), all on the numba engine from the same seeded
first pick:

* ``same_set``: share of the picks in both selections (as sets);
* ``same_order``: share of the positions holding the same pick;
* ``first_diff``: the first position where they differ (``-`` when none);
* ``delta_rel``: the covering radius of the picks, ``max_x min_p ||x - p||`` over
  all candidates (Eq. 3's delta), in float64 on the ORIGINAL float32 features,
  over that of the float32 selection;
* ``rmax_rel`` (density-aware only): the largest ``r`` of Algorithm 1 after the
  picks, ``max_x min_p ||x - p||^2 / d_p``, the same way;
* ``time_s``: the selection's time on this CPU (best of the repeats, the storages
  interleaved), and ``time_rel`` over float32's. The numba engine widens the
  stored values back to float32, so the CPU gains nothing; the point of the mode
  is half the bytes per pick on CUDA (``MB_per_pick``: the pool's bytes in the
  engine's storage, the lower bound of one pass).

The sets: the ``select_pixels``-like set of ``handover.py`` (300 regions of a
feature map, own noise, densities and a few factors of variation each, rows
L2-normalised; 46,000 x 64, 2,300 picks: 5 %) and a Gaussian mixture
(``densecore.synthetic.gaussian_mixture``: 40,000 x 32, 8 components of unequal
weight and spread, 5 % duplicates; densities uniform in [0.5, 3]; 1,000 picks).

    python benchmarks/storage16.py --json benchmarks/results/storage16.json
    python benchmarks/storage16.py --quick
"""

from __future__ import annotations

import time

import numpy as np
import torch

from _common import base_parser, emit
from handover import regions

import densecore
from densecore._backends.nearest import search
from densecore._backends.numba import engine as NE
from densecore._backends.numba import handover as HO
from densecore.synthetic import gaussian_mixture

COLUMNS = ["set", "sampler", "storage", "n", "dim", "budget", "same_set", "same_order",
           "first_diff", "delta_rel", "rmax_rel", "time_s", "time_rel", "MB_per_pick"]
STORAGES = (None, "float16", "bfloat16")


def sets(quick: bool, seed: int):
    """``[(name, features (n, D) float32, densities (n,) float64, budget)]``."""
    s = 4 if quick else 1
    x, d = regions(46_000 // s, 64, 300, (0.02, 0.6), (0.2, 5.0), unit=True, rank=3,
                   seed=8 + seed)
    g, _ = gaussian_mixture(40_000 // s, dim=32, n_components=8, duplicates=0.05, seed=seed)
    gd = np.random.default_rng(seed).uniform(0.5, 3.0, size=len(g))
    return [("select_pixels-like, 300 regions", x, d, 2300 // s),
            ("Gaussian mixture, 8 components", g, gd, 1000 // s)]


def coverage(x64: torch.Tensor, picks: np.ndarray, dens: np.ndarray | None):
    """``(delta, rmax)``: the covering radius of the picks (plain distance) and the
    largest ``r = min_p ||x - p||^2 / d_p`` (None without densities), exact float64."""
    c = x64[torch.from_numpy(picks)]
    v, _ = search(x64, c, 1)
    delta = float(v.max().sqrt())
    if dens is None:
        return delta, None
    w = torch.from_numpy(dens[picks])
    vr, _ = search(x64, c, 1, weights=w)
    return delta, float(vr.max())


def select(sampler: str, storage, x, d, budget):
    cls = densecore.DensityAwareGreedy if sampler == "density_aware" else densecore.KCenterGreedy
    t0 = time.perf_counter()
    sel = cls(storage=storage, backend="numba").select(x, budget, densities=d)
    return time.perf_counter() - t0, sel.indices


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Sets, order and first difference of selection ``b`` against ``a``."""
    differ = np.flatnonzero(a != b)
    return {"same_set": len(np.intersect1d(a, b)) / len(a),
            "same_order": float(np.mean(a == b)),
            "first_diff": int(differ[0]) if len(differ) else "-"}


def main(argv=None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    warm = np.random.default_rng(0).normal(size=(12_000, 64)).astype(np.float32)
    try:  # load every kernel (each mode of the numba engine) outside the timings
        for pol in HO.POLICIES:
            NE.POLICY = pol
            for smp in ("kcenter", "density_aware"):
                select(smp, "float16", warm, np.ones(len(warm)), 300)
    finally:
        NE.POLICY = "auto"
    rows = []
    t_all = time.perf_counter()
    for name, x, dens, budget in sets(args.quick, args.seed):
        x64 = torch.from_numpy(x).double()
        for smp in ("kcenter", "density_aware"):
            d = dens if smp == "density_aware" else None
            times = {st: [] for st in STORAGES}
            picks = {}
            for rep in range(repeats):
                order = STORAGES[rep % 3:] + STORAGES[:rep % 3]  # rotate the order
                for st in order:
                    t, idx = select(smp, st, x, d, budget)
                    times[st].append(t)
                    picks[st] = idx
            base_delta, base_r = coverage(x64, picks[None], d)
            base_t = min(times[None])
            for st in STORAGES:
                delta, rmax = coverage(x64, picks[st], d)
                item = 4 if st is None else 2
                rows.append({"set": name, "sampler": smp, "storage": st or "float32",
                             "n": len(x), "dim": x.shape[1], "budget": budget,
                             **compare(picks[None], picks[st]),
                             "delta_rel": delta / base_delta,
                             "rmax_rel": "-" if rmax is None else rmax / base_r,
                             "time_s": min(times[st]), "time_rel": min(times[st]) / base_t,
                             "MB_per_pick": x.size * item / 1e6, "delta": delta,
                             "rmax": rmax})
    total = time.perf_counter() - t_all
    emit("storage16", rows, COLUMNS, args.json,
         caption=(f"numba engine on this CPU (16-bit widened to float32), best of {repeats}; "
                  f"delta and rmax in float64 on the original float32 features, relative "
                  f"to the float32 selection's; {total:.0f} s in all"),
         config={"repeats": repeats, "quick": args.quick, "seed": args.seed,
                 "backend": "numba"})


if __name__ == "__main__":
    main()
