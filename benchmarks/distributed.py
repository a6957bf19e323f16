"""Sharded selection: per-pick communication bytes and time, and a model of scaling with ranks.

Density-aware greedy (Algorithm 1) on the problem of ``benchmarks/speed.py``
(``densecore.bench.speed.make_problem``: float32 Gaussian mixture, densities in
[0.5, 3)), split evenly over ``--world`` gloo processes on this machine
(default 2). Measured:

* ``single``: :func:`densecore.farthest_first` in one process on the whole pool,
  with the same numba thread count as one rank.
* ``shard_alone``: the same engine on one rank's shard alone (``N / P`` points,
  same budget): the compute part of a distributed pick.
* ``distributed``: :func:`densecore.distributed.select` on ``P`` ranks (wall time
  of rank 0, after a warm-up call); its indices are compared with ``single``.
* ``comm_only``: the per-pick collectives alone (all-gather of the ``(r,
  index)`` pairs, broadcast of one feature vector and its density), ``budget``
  times: the communication part of a pick.

Then the model (see docs/distributed.md)
``T(P) = T_setup(N/P) + B * (t_pick(N/P) + t_comm(P))`` with ``t_pick`` measured
on ``N/P`` points in one process and ``t_comm(P) = t_comm(2) * (P - 1)`` (gloo's
ring all-gather and one-to-all broadcast take ``P - 1`` latency-bound steps),
printed as ``model`` rows for P = 1, 2, 4, 8, 16 (one rank per machine).

    python benchmarks/distributed.py --json benchmarks/results/distributed.json
    python benchmarks/distributed.py --quick
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import tempfile
import time

import numpy as np
import torch.multiprocessing as mp
from _common import base_parser, emit

COLUMNS = ["method", "ranks", "n_per_rank", "budget", "time_s", "per_pick_ms",
           "comm_per_pick_ms", "bytes_per_pick", "identical"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, cfg, out_path):
    import numba
    import torch
    import torch.distributed as dist

    from densecore import distributed
    from densecore.bench.speed import make_problem

    numba.set_num_threads(cfg["threads"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=600))
    x, d = make_problem(cfg["n"], cfg["dim"], cfg["seed"])
    bounds = np.linspace(0, cfg["n"], world + 1).astype(int)
    lo, hi = bounds[rank], bounds[rank + 1]
    kw = {"densities": d[lo:hi], "init": cfg["init"], "num_threads": cfg["threads"]}
    distributed.select(x[lo:hi], min(5, cfg["budget"]), **kw)  # warm-up (numba, sockets)
    dist.barrier()
    t0 = time.perf_counter()
    sel = distributed.select(x[lo:hi], cfg["budget"], **kw)
    t_sel = time.perf_counter() - t0
    # the per-pick collectives alone
    dim = cfg["dim"]
    pair = torch.zeros(2, dtype=torch.float64)
    pairs = torch.empty((world, 2), dtype=torch.float64)
    vec = torch.zeros(dim * 4 + 8, dtype=torch.uint8)
    dist.barrier()
    t0 = time.perf_counter()
    for i in range(cfg["budget"]):
        dist.all_gather(list(pairs.unbind(0)), pair)
        dist.broadcast(vec, i % world)
    t_comm = time.perf_counter() - t0
    with open(out_path, "wb") as f:
        pickle.dump({"time": t_sel, "comm": t_comm, "indices": sel.indices}, f)
    dist.destroy_process_group()


def _run_ranks(world, cfg):
    ctx = mp.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"{r}.pkl") for r in range(world)]
        procs = [ctx.Process(target=_rank, args=(r, world, port, cfg, paths[r]))
                 for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
        out = []
        for path in paths:
            with open(path, "rb") as f:
                out.append(pickle.load(f))
    return out


def _time_single(x, d, budget, init, repeats):
    from densecore import farthest_first

    best = np.inf
    sel = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sel = farthest_first(x, budget, densities=d, init=init)
        best = min(best, time.perf_counter() - t0)
    return best, sel


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="points in all (default 200000; "
                   "quick 40000)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--budget", type=int, default=None, help="picks (default 1000; quick 300)")
    p.add_argument("--world", type=int, default=2, help="ranks on this machine")
    p.add_argument("--threads", type=int, default=None,
                   help="numba threads per rank (default: cores // world, at least 1)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    import numba

    from densecore import distributed
    from densecore.bench.speed import make_problem

    n = args.n or (40_000 if args.quick else 200_000)
    budget = args.budget or (300 if args.quick else 1000)
    world = args.world
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    cfg = {"n": n, "dim": args.dim, "budget": budget, "seed": args.seed, "init": 0,
           "threads": threads}
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    x, d = make_problem(n, args.dim, args.seed)
    shard = int(np.ceil(n / world))
    _time_single(x[:100], d[:100], 5, 0, 1)  # compile / load the numba cache
    t_single, single = _time_single(x, d, budget, 0, args.repeats)
    t_shard, _ = _time_single(x[:shard], d[:shard], budget, 0, args.repeats)
    ranks = _run_ranks(world, cfg)
    same = all(np.array_equal(r["indices"], single.indices) for r in ranks)
    t_dist = max(r["time"] for r in ranks)
    t_comm = max(r["comm"] for r in ranks)
    nbytes = distributed.message_bytes(world, args.dim)["total"]
    ms = 1e3 / budget
    rows = [
        {"method": "single", "ranks": 1, "n_per_rank": n, "budget": budget,
         "time_s": t_single, "per_pick_ms": t_single * ms, "bytes_per_pick": 0,
         "identical": True},
        {"method": "shard_alone", "ranks": 1, "n_per_rank": shard, "budget": budget,
         "time_s": t_shard, "per_pick_ms": t_shard * ms, "bytes_per_pick": 0},
        {"method": "distributed", "ranks": world, "n_per_rank": shard, "budget": budget,
         "time_s": t_dist, "per_pick_ms": t_dist * ms, "comm_per_pick_ms": t_comm * ms,
         "bytes_per_pick": nbytes, "identical": same},
        {"method": "comm_only", "ranks": world, "budget": budget, "time_s": t_comm,
         "per_pick_ms": t_comm * ms, "comm_per_pick_ms": t_comm * ms,
         "bytes_per_pick": nbytes},
    ]
    # model: compute on N/P points (measured here) + communication growing as P - 1
    comm_step = t_comm / budget / max(1, world - 1)
    for P in (1, 2, 4, 8, 16):
        m = int(np.ceil(n / P))
        t_pick, _ = _time_single(x[:m], d[:m], budget, 0, args.repeats)
        comm = comm_step * (P - 1)
        rows.append({"method": "model", "ranks": P, "n_per_rank": m, "budget": budget,
                     "time_s": t_pick + budget * comm,
                     "per_pick_ms": (t_pick / budget + comm) * 1e3,
                     "comm_per_pick_ms": comm * 1e3,
                     "bytes_per_pick": distributed.message_bytes(P, args.dim)["total"]
                     if P > 1 else 0})
    emit("distributed", rows, COLUMNS, args.json, config={**cfg, "world": world,
         "repeats": args.repeats, "cpu_count": os.cpu_count(),
         "model": "T(P) = t_alone(N/P) + B * t_comm(2) * (P - 1)"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
