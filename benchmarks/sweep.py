"""Scaling sweep (target 5): time per pick and effective GB/s over n, D and budget.

One factor at a time around a centre configuration (n=100,000, D=64,
budget=1,000; quick: n=30,000, budget=300). For each point: the engine
(density-aware greedy, best of ``--repeats``) and the naive gemv loop timed on
its first ``--naive-picks`` picks (its cost per pick is constant). Effective
GB/s is ``n * D * 4`` bytes (what the naive loop streams per pick) over the
time per pick; above the machine's memory bandwidth means work was skipped.

    python benchmarks/sweep.py --json benchmarks/results/sweep.json --png benchmarks/results/sweep.png
    python benchmarks/sweep.py --quick
"""

from __future__ import annotations

import os
import time

import numpy as np
from _common import base_parser, best_of, emit

from densecore import DensityAwareGreedy, atomic_save_figure
from densecore.bench.speed import compare_selections, make_problem, naive_gemv_greedy

COLUMNS = ["factor", "n", "dim", "budget", "engine_s", "engine_ms_per_pick", "engine_gbps",
           "naive_ms_per_pick", "naive_gbps", "speedup", "same_prefix"]

FULL = {"centre": (100_000, 64, 1000), "n": [10_000, 30_000, 100_000, 300_000, 1_000_000,
                                                2_000_000],
        "dim": [16, 32, 64, 128, 256, 512], "budget": [100, 300, 1000, 3000, 10_000]}
QUICK = {"centre": (30_000, 64, 300), "n": [10_000, 30_000, 100_000], "dim": [16, 64, 256],
         "budget": [100, 300, 1000]}


def configs(grid: dict) -> list[tuple[str, int, int, int]]:
    n0, d0, b0 = grid["centre"]
    out = [("n", n, d0, b0) for n in grid["n"]]
    out += [("dim", n0, d, b0) for d in grid["dim"]]
    out += [("budget", n0, d0, b) for b in grid["budget"]]
    return out


def measure(factor, n, dim, budget, seed, repeats, naive_picks) -> dict:
    x, dens = make_problem(n, dim, seed)
    first = int(np.random.default_rng(seed).integers(n))
    sampler = DensityAwareGreedy()
    t_eng, _, sel = best_of(lambda: sampler.select(x, budget, densities=dens, init=first),
                            repeats)
    k = min(budget, naive_picks)
    t_naive, _, nidx = best_of(lambda: naive_gemv_greedy(x, dens, k, first), repeats)
    per_eng, per_naive = t_eng / budget, t_naive / k
    nbytes = n * dim * x.dtype.itemsize
    cmp = compare_selections(x, dens, np.asarray(sel.indices)[:k], nidx)
    return {"factor": factor, "n": n, "dim": dim, "budget": budget, "engine_s": t_eng,
            "engine_ms_per_pick": per_eng * 1e3, "engine_gbps": nbytes / per_eng / 1e9,
            "naive_ms_per_pick": per_naive * 1e3, "naive_gbps": nbytes / per_naive / 1e9,
            "speedup": per_naive / per_eng, "same_prefix": cmp["identical"],
            "prefix_divergence_rel_gap": cmp["divergence_rel_gap"]}


def plot(rows: list[dict], path: str) -> None:
    """Two rows of panels (ms per pick, GB/s) against n, D and budget; atomic PNG write."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for j, factor in enumerate(["n", "dim", "budget"]):
        sub = [r for r in rows if r["factor"] == factor]
        xs = [r[factor] for r in sub]
        for i, (eng, nai, label) in enumerate([("engine_ms_per_pick", "naive_ms_per_pick",
                                                "ms per pick"),
                                               ("engine_gbps", "naive_gbps",
                                                "effective GB/s (n*D*4 / time per pick)")]):
            ax = axes[i, j]
            ax.plot(xs, [r[eng] for r in sub], "o-", label="engine (pruned numba)")
            ax.plot(xs, [r[nai] for r in sub], "s--", label="naive gemv loop")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(xs, [f"{v:,}" for v in xs], rotation=30)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel(factor)
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle("Density-aware greedy, float32 Gaussian mixture: one factor at a time")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        atomic_save_figure(fig, path, format="png", dpi=110)
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--png", default=None, metavar="PATH", help="write the plot here")
    p.add_argument("--repeats", type=int, default=None, help="engine runs (default 2; quick 1)")
    p.add_argument("--naive-picks", type=int, default=None,
                   help="picks timed for the naive loop (default 100; quick 30)")
    args = p.parse_args(argv)
    grid = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 2)
    naive_picks = args.naive_picks or (30 if args.quick else 100)
    wx, wd = make_problem(256, 8, 0)
    DensityAwareGreedy().select(wx, 4, densities=wd)  # load compiled kernels
    rows = []
    t0 = time.perf_counter()
    for factor, n, dim, budget in configs(grid):
        rows.append(measure(factor, n, dim, budget, args.seed, repeats, naive_picks))
    emit("sweep", rows, COLUMNS, args.json, quick=args.quick, repeats=repeats,
         naive_picks=naive_picks, wall_s=time.perf_counter() - t0)
    if args.png:
        plot(rows, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
