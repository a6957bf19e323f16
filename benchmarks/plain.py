"""Plain loop against coverage-area pruning: where the numba engine's small-pool rule comes from.

For each pool size ``n`` and budget, density-aware greedy (Algorithm 1) on the
float32 Gaussian mixture of ``densecore.bench.speed.make_problem`` (D = 64)
runs three ways in the same process, interleaved, best of ``--repeats``:

* ``plain``: the numba engine with its plain loop forced (one serial pass per pick);
* ``pruned``: the numba engine with the plain loop switched off (pruning, dense
  hand-over, thread choice per block);
* ``naive``: the numpy gemv loop of ``densecore.bench.speed.naive_gemv_greedy``.

``plain_vs_pruned`` and ``plain_vs_naive`` are time ratios (below 1: the plain
loop is faster). ``identical``: the plain and pruned selections are the same;
``naive_same``: the naive loop's too (its float32 norm expansion may break
near-ties differently). The load
average is recorded per row.

    python benchmarks/plain.py --json benchmarks/results/plain.json
"""

from __future__ import annotations

import os

import numpy as np
from _common import base_parser, best_of, emit

from densecore import farthest_first
from densecore._backends.numba import engine as numba_engine
from densecore.bench.speed import make_problem, naive_gemv_greedy

COLUMNS = ["n", "dim", "budget", "plain_s", "pruned_s", "naive_s", "plain_vs_pruned",
           "plain_vs_naive", "identical", "naive_same", "load"]


def engine(x, dens, budget, plain: bool):
    """The engine's picks with the plain loop forced on or off."""
    keep = numba_engine.PLAIN_MAX
    numba_engine.PLAIN_MAX = 2**62 if plain else 0
    try:
        return np.asarray(farthest_first(x, budget, densities=dens, init=0).indices)
    finally:
        numba_engine.PLAIN_MAX = keep


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+",
                   default=[1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000])
    p.add_argument("--budget", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    sizes = [1000, 5000, 20_000] if args.quick else args.n
    x0, d0 = make_problem(64, args.dim, args.seed)  # compile every kernel before timing
    engine(x0, d0, 10, True), engine(x0, d0, 10, False)
    rows = []
    for n in sizes:
        x, dens = make_problem(n, args.dim, args.seed)
        for budget in args.budget:
            if budget > n:
                continue
            t = {}
            t["plain"], _, a = best_of(lambda: engine(x, dens, budget, True), args.repeats)
            t["pruned"], _, b = best_of(lambda: engine(x, dens, budget, False), args.repeats)
            t["naive"], _, c = best_of(lambda: naive_gemv_greedy(x, dens, budget, 0),
                                       args.repeats)
            row = {"n": n, "dim": args.dim, "budget": budget, "plain_s": t["plain"],
                   "pruned_s": t["pruned"], "naive_s": t["naive"],
                   "plain_vs_pruned": t["plain"] / t["pruned"],
                   "plain_vs_naive": t["plain"] / t["naive"],
                   "identical": bool(np.array_equal(a, b)),
                   "naive_same": bool(np.array_equal(a, c)),
                   "load": os.getloadavg()[0]}
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    emit("plain", rows, COLUMNS, args.json,
         config={"dim": args.dim, "repeats": args.repeats, "seed": args.seed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
