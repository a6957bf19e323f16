"""GPU selection speed (target 4): torch backend on CUDA, and a host-sync check.

n=1,000,000, D=64, budget 1,000, density-aware greedy with ``backend="torch"``
(target: under 0.2 s on an H100; streaming the fp32 features once per pick
takes about 0.09 s there). Timed with ``torch.cuda.synchronize`` around each
run, best of ``--repeats`` after a warm-up. Then one run under
``torch.profiler``: host synchronisations (``cudaStreamSynchronize``,
``cudaDeviceSynchronize``, ``cudaEventSynchronize``) and device-to-host copies
must not grow with the budget (a per-pick ``.item()`` would give ~budget of
each). Also: the per-pick ``torch.linalg.norm`` + ``.item()`` loop on the GPU,
float16/bfloat16 feature storage, and the selection compared with the CPU
engine's.

    python benchmarks/gpu.py --json OUT/gpu.json
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import base_parser, emit

from densecore import DensityAwareGreedy
from densecore.bench.speed import compare_selections, make_problem, torch_norm_greedy

COLUMNS = ["method", "dtype", "validate", "picks_timed", "time_s", "per_pick_ms", "gbps",
           "host_syncs", "dtoh_copies", "identical_to_cpu", "first_divergence",
           "divergence_rel_gap"]

_SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats):
    times, out = [], None
    for _ in range(max(1, repeats)):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def count_syncs(fn) -> tuple[int, int]:
    """(host synchronisations, device-to-host copies) seen by the profiler in ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        acts.append(ProfilerActivity.CUDA)
    _sync()
    with profile(activities=acts) as prof:
        fn()
        _sync()
    syncs = dtoh = 0
    for ev in prof.events():
        name = ev.name
        if any(s in name for s in _SYNC_NAMES):
            syncs += 1
        if "DtoH" in name or "Device -> Pageable" in name or "Device -> Pinned" in name:
            dtoh += 1
    # the profiler's own trailing synchronize is counted once
    return syncs, dtoh


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="points (default 1000000; quick 200000)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-picks", type=int, default=200)
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16"])
    p.add_argument("--no-cpu-check", action="store_true",
                   help="skip the CPU engine run used to compare selections")
    p.add_argument("--device", default="cuda",
                   help="torch device (cpu only to dry-run this script)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 2
    n = args.n or (200_000 if args.quick else 1_000_000)
    budget = args.budget
    dev = torch.device(args.device)
    x, dens = make_problem(n, args.dim, args.seed)
    first = int(np.random.default_rng(args.seed).integers(n))
    cpu_idx = None
    if not args.no_cpu_check:
        cpu_idx = np.asarray(DensityAwareGreedy().select(x, budget, densities=dens,
                                                         init=first).indices)
    xc = torch.from_numpy(x).to(dev)
    dc = torch.from_numpy(dens).to(dev)
    nbytes = n * args.dim * 4
    rows = []

    def add(method, dtype, validate, picks, t, syncs=None, dtoh=None, idx=None):
        per_pick = t / picks
        row = {"method": method, "dtype": dtype, "validate": validate, "picks_timed": picks,
               "n": n, "dim": args.dim, "budget": budget,
               "time_s": per_pick * budget, "per_pick_ms": per_pick * 1e3,
               "gbps": nbytes / per_pick / 1e9, "host_syncs": syncs, "dtoh_copies": dtoh}
        if idx is not None and cpu_idx is not None:
            cmp = compare_selections(x, dens, cpu_idx[:len(idx)], idx)
            row.update(identical_to_cpu=cmp["identical"],
                       first_divergence=cmp["first_divergence"],
                       divergence_rel_gap=cmp["divergence_rel_gap"])
        rows.append(row)
        print({k: row[k] for k in ("method", "dtype", "validate", "time_s") if k in row},
              flush=True)

    for dtype in args.dtypes:
        xd = xc.to(getattr(torch, dtype))
        for validate in (True, False):
            sampler = DensityAwareGreedy(backend="torch", validate=validate)

            def run():
                return sampler.select(xd, budget, densities=dc, init=first)

            run()  # warm-up
            t, _, sel = _timed(run, args.repeats)
            # profiling every kernel of 1,000 picks takes minutes: count over 50
            syncs, dtoh = count_syncs(lambda: sampler.select(xd, min(budget, 50), densities=dc,
                                                             init=first))
            add("engine (torch backend)", dtype, validate, budget, t, syncs, dtoh,
                sel.indices.cpu().numpy())
        del xd
    k = min(budget, args.baseline_picks)
    torch_norm_greedy(xc, dc, 5, first)
    t, _, idx = _timed(lambda: torch_norm_greedy(xc, dc, k, first), 2)
    syncs, dtoh = count_syncs(lambda: torch_norm_greedy(xc, dc, 20, first))
    add("torch.linalg.norm + .item()", "float32", False, k, t, syncs, dtoh, idx)
    rows[-1]["note"] = "syncs/copies counted over 20 picks"
    emit("gpu", rows, COLUMNS, args.json, target_s=0.2,
         config={"n": n, "dim": args.dim, "budget": budget, "repeats": args.repeats})
    eng = [r for r in rows if r["dtype"] == "float32" and r["method"].startswith("engine")]
    best = min(r["time_s"] for r in eng)
    print(f"\nfloat32 engine best {best:.4f} s for {budget} picks of {n} x {args.dim} "
          f"(target < 0.2 s on an H100)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
