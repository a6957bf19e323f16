"""Peak memory of a selection (target 3): 200 of 2,000,000 x 64 float32 points.

Each case runs in a fresh subprocess: imports and a numba warm-up on tiny data,
then the baseline RSS; the features are built (``gaussian_mixture``), the
peak-RSS counter is reset (``/proc/self/clear_refs``) so the float64 temporary
of the data builder does not count, then the selection runs and the peak
(``VmHWM``, else ``ru_maxrss``) is read. Reported: ``(peak - baseline) /
features.nbytes`` (target < 1.5; the features themselves are 1.0 of it).

    python benchmarks/memory.py --json benchmarks/results/memory.json
    python benchmarks/memory.py --quick
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from _common import base_parser, emit

COLUMNS = ["sampler", "validate", "n", "dim", "budget", "features_mb", "baseline_mb", "peak_mb",
           "peak_over_baseline_mb", "ratio", "hwm_reset", "time_s"]


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(sampler: str, validate: bool, n: int, dim: int, budget: int, seed: int) -> dict:
    """Measure one selection in this (fresh) process."""
    import time

    import numpy as np

    from densecore import DensityAwareGreedy, KCenterGreedy
    from densecore.synthetic import gaussian_mixture

    wx, _ = gaussian_mixture(512, dim, seed=seed)
    KCenterGreedy().select(wx, 4)
    DensityAwareGreedy().select(wx, 4, densities=np.ones(512))
    del wx
    baseline = _status_kb("VmRSS")
    x, _ = gaussian_mixture(n, dim, 16, seed=seed)
    dens = (np.random.default_rng(seed + 1).uniform(0.5, 3.0, n)
            if sampler == "density_aware" else None)
    reset = _reset_peak()
    t0 = time.perf_counter()
    if dens is None:
        sel = KCenterGreedy(seed=seed, validate=validate).select(x, budget)
    else:
        sel = DensityAwareGreedy(seed=seed, validate=validate).select(x, budget,
                                                                      densities=dens)
    elapsed = time.perf_counter() - t0
    peak = _peak_kb()
    assert len(sel.indices) == budget
    over = peak - baseline
    return {"sampler": sampler, "validate": validate, "n": n, "dim": dim, "budget": budget,
            "features_mb": x.nbytes / 2**20, "densities_mb": 0 if dens is None else dens.nbytes / 2**20,
            "baseline_mb": baseline / 1024, "peak_mb": peak / 1024,
            "peak_over_baseline_mb": over / 1024, "ratio": over * 1024 / x.nbytes,
            "hwm_reset": reset, "time_s": elapsed}


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="points (default 2000000; quick 500000)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--samplers", nargs="+", default=["kcenter", "density_aware"],
                   choices=["kcenter", "density_aware"])
    p.add_argument("--validate", nargs="+", default=["on", "off"], choices=["on", "off"],
                   help="run with the NaN/inf scan on (the default of the samplers) and/or off")
    p.add_argument("--child", default=None, help=argparse_hidden())
    args = p.parse_args(argv)
    n = args.n or (500_000 if args.quick else 2_000_000)
    if args.child:
        print(json.dumps(child(args.child, args.validate[0] == "on", n, args.dim,
                               args.budget, args.seed)))
        return 0
    rows = []
    for s in args.samplers:
        for v in args.validate:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", s, "--validate", v,
                   "--n", str(n), "--dim", str(args.dim), "--budget", str(args.budget),
                   "--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    emit("memory", rows, COLUMNS, args.json, target_ratio=1.5)
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
