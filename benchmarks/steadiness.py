"""Steadiness of the engine's speed: the density-aware engine against the naive gemv
loop, each in its own fresh process, several processes one after the other.

Each process runs ``benchmarks/speed.py --methods engine naive`` (100,000 x 64
float32, budget 1,000, best of 3 interleaved runs of each) and reports the
engine's time over the naive loop's (``time_vs_naive``). A thread choice that
depends on chance, or a kernel that waits on cache misses, shows as a spread of
this ratio between processes. Targets: the median over the processes at most
0.5, the worst at most 0.8.

    python benchmarks/steadiness.py --json benchmarks/results/steadiness.json
    python benchmarks/steadiness.py --quick   # 2 processes at 20,000 points
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import base_parser, emit

HERE = Path(__file__).resolve().parent
COLUMNS = ["process", "load", "engine_s", "naive_s", "time_vs_naive"]
MEDIAN_MAX, WORST_MAX = 0.5, 0.8


def one_process(n: int, budget: int, seed: int) -> dict:
    """Run speed.py in a fresh interpreter; its engine and naive rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "speed.json")
        subprocess.run([sys.executable, str(HERE / "speed.py"), "--methods", "engine", "naive",
                        "--n", str(n), "--budget", str(budget), "--seed", str(seed),
                        "--json", out], check=True, stdout=subprocess.DEVNULL)
        rows = {r["method"]: r for r in json.load(open(out))["rows"]}
    e, v = rows["engine"], rows["naive"]
    return {"load": e["load"], "engine_s": e["time_s"], "naive_s": v["time_s"],
            "time_vs_naive": e["time_s"] / v["time_s"]}


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=None, help="default 5; quick 2")
    p.add_argument("--n", type=int, default=None, help="points (default 100000; quick 20000)")
    p.add_argument("--budget", type=int, default=1000)
    args = p.parse_args(argv)
    procs = args.processes or (2 if args.quick else 5)
    n = args.n or (20_000 if args.quick else 100_000)
    rows = []
    for i in range(procs):
        rows.append({"process": i + 1, **one_process(n, args.budget, args.seed)})
        print(f"process {i + 1}/{procs}: {rows[-1]['time_vs_naive']:.3f}", file=sys.stderr)
    ratios = [r["time_vs_naive"] for r in rows]
    median, worst = statistics.median(ratios), max(ratios)
    verdict = {"median": median, "worst": worst,
               "median_ok": median <= MEDIAN_MAX, "worst_ok": worst <= WORST_MAX}
    caption = (f"time_vs_naive over {procs} processes: median {median:.3f} (target <= "
               f"{MEDIAN_MAX}), worst {worst:.3f} (target <= {WORST_MAX}); load: 1-minute "
               "load average after each process.")
    emit("steadiness", rows, COLUMNS, args.json, caption=caption,
         config={"n": n, "dim": 64, "budget": args.budget, "processes": procs,
                 "seed": args.seed}, verdict=verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
