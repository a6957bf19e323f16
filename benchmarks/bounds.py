"""Bound benchmark: delta (Eq. 3) vs max average radial distance (Eq. 4) vs core-set loss.

Random, k-center, density-aware greedy at the paper's tau and at the tau chosen
by ``densecore.tune_density_scaling``, the k-medoids refinement (with and
without ARD-driven moves), typicality-weighted farthest-first and the naive
exact-ARD greedy (small n), on a Gaussian mixture, a mixture of manifolds,
street-scene CNN features (kNN and DMC densities; same-population and the
paper's candidates-vs-all-pixels protocol), image-like feature maps (spatial,
DMC and masked-convolution densities) and scikit-learn's digits. The run, the
verdict and the report live in ``densecore.bench.bounds`` (also run, quick, by
``densecore bench bounds``); the data sets in ``bounds_data.py``, the exact-ARD
greedy in ``exact_ard.py`` and the plots in ``bounds_plots.py`` beside this script.

    python benchmarks/bounds.py --json benchmarks/results/bounds.json --plots docs/img
    python benchmarks/bounds.py --quick
    python benchmarks/bounds.py --verdict-from benchmarks/results/bounds.json \
        --json benchmarks/results/bounds.json   # the verdict again from stored rows

The digits data set needs scikit-learn (``pip install "densecore-seg[test]"``); plots
need matplotlib.
"""

from __future__ import annotations

import json
import time

from _common import base_parser, machine_info, write_json_atomic

from bounds_data import load_datasets
from bounds_plots import write_plots
from exact_ard import exact_ard_greedy

from densecore.bench.bounds import format_report, run_bounds, verdict


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--plots", default=None, metavar="DIR",
                   help="write bounds_<dataset>.png and density_vs_ard.png into DIR")
    p.add_argument("--budgets", type=int, nargs="+", default=None,
                   help="default 20 50 100 (quick) or 20 50 100 200 400")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default 0 (quick) or 0 1 2 3 4")
    p.add_argument("--verdict-from", default=None, metavar="JSON",
                   help="run nothing: recompute the verdict from the rows of a stored run "
                        "(its machine, timings and calibration kept) and print the report")
    args = p.parse_args(argv)
    if args.verdict_from:
        with open(args.verdict_from) as f:
            out = json.load(f)
        out["verdict"] = verdict(out["rows"])
        print(format_report(out))
        if args.json:
            write_json_atomic(args.json, out)
        return 0
    if args.plots:  # say so before the run (minutes), not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plots needs matplotlib: pip install -e \".[plots]\" (from a checkout)")
    t0 = time.perf_counter()
    # data sets are rebuilt for every seed inside run_bounds (seeds vary the data too)
    out = run_bounds(args.quick, datasets=load_datasets, budgets=args.budgets,
                     seeds=args.seeds, exact=exact_ard_greedy)
    paths = (write_plots(out, args.plots, load_datasets(args.quick, seed=0))
             if args.plots else [])
    out["seconds"] = time.perf_counter() - t0
    print(format_report(out))
    for c in out.get("calibration", []):
        print(f"calibration, {c['dataset']}: R^2 of ARD ~ 1/density = {c['r2']:.3f} "
              f"(k-center b={c['budget']}); supplementary U(0.5, 3) draw: "
              f"R^2 = {c['r2_supplementary']:.3f}, R^2 of ARD ~ area radius = "
              f"{c['r2_radius']:.3f}, {c['n_points']} points")
    for path in paths:
        print(f"wrote {path}")
    if args.json:
        write_json_atomic(args.json, {"benchmark": "bounds", "machine": machine_info(),
                                      "quick": args.quick, **out})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
