"""k-NN density at scale: time, recall@k and peak memory of ``knn_mean_distance``.

Features: ``densecore.bench.speed.make_problem`` (a 16-component Gaussian
mixture, float32); with ``--duplicates F`` the same mixture with a share ``F`` of
the points replaced by exact copies of others (as pixel features hold), and
``distinct`` counts the distinct rows. Each row is one search of every point's ``k`` nearest
neighbours (the point itself excluded), with ``search="exact"`` or
``search="hnsw"`` (approximate, recall target ``--recall``).

* ``mean_rel_err``: mean relative error of the mean distance against an exact
  float64 brute force on ``--recall-queries`` random points (seed + 1), so it
  needs no full exact run at a million points (0 for a correct exact search;
  never negative for HNSW, whose distances are exact distances of the
  neighbours it found).
* ``recall``: for HNSW, recall@k as measured by the library on its own seeded
  sample (``KNNDensity.last_recall``); for exact rows, the share of sampled
  points whose mean distance matches the brute force (1 unless wrong).
* ``extra_gb``: peak resident memory during the call minus the resident memory
  before it (sampled every 10 ms), against ``features_gb``, the features' size.
  Run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed large blocks go back
  to the system (otherwise a row reuses the memory an earlier row freed and
  shows less than it needs); list ``hnsw`` before ``exact`` for the same reason.

    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/knn.py --n 50000 200000 1000000 \
        --search hnsw exact --json benchmarks/results/knn.json
    python benchmarks/knn.py --n 1000000 --search hnsw
    python benchmarks/knn.py --device cuda --n 200000 1000000
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import torch
from _common import base_parser, emit

from densecore._backends import faiss_backend
from densecore.bench.speed import make_problem
from densecore.synthetic import gaussian_mixture
from densecore.density.knn import KNNDensity, _brute_sq

COLUMNS = ["device", "n", "distinct", "dim", "k", "search", "time_s", "recall",
           "mean_rel_err", "extra_gb", "features_gb", "load"]


def exact_mean(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact mean distance of ``x[rows]`` to their ``k`` nearest other points (float64
    from differences, no copy of ``x``)."""
    return np.sqrt(_brute_sq(x, rows, k + 1, np.ones(len(x)))[:, 1:]).mean(1)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra(fn):
    """(result of ``fn()``, seconds, peak RSS during it minus RSS before, in bytes)."""
    base, peak, stop = _rss(), [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            stop.wait(0.01)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        t = time.perf_counter() - t0
        stop.set()
        th.join()
    return out, t, max(peak[0], _rss()) - base


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=None,
                   help="sizes (default 50000 200000; quick 20000)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--search", nargs="+", default=["exact"], choices=["exact", "hnsw"])
    p.add_argument("--exact-max", type=int, default=50_000,
                   help="largest n with an exact row (exact cost grows as n^2)")
    p.add_argument("--recall", type=float, default=0.9, help="HNSW recall target")
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--duplicates", type=float, default=0.0,
                   help="share of points replaced by exact copies of others")
    args = p.parse_args(argv)
    sizes = args.n or ([20_000] if args.quick else [50_000, 200_000])
    dev = torch.device(args.device)
    if "hnsw" in args.search:
        faiss_backend.require()  # load faiss before the first row's memory is measured
    rows = []
    for n in sizes:
        if args.duplicates:
            x, _ = gaussian_mixture(n, args.dim, 16, duplicates=args.duplicates,
                                    seed=args.seed)
        else:
            x, _ = make_problem(n, args.dim, args.seed)
        x = np.ascontiguousarray(x)
        distinct = len(np.unique(x, axis=0))
        q = np.sort(np.random.default_rng(args.seed + 1).choice(
            n, min(n, args.recall_queries), replace=False)).astype(np.int64)
        ref_mean = exact_mean(x, q, args.k)
        for search in args.search:
            if search == "exact" and n > args.exact_max:
                continue
            xt = torch.from_numpy(x).to(dev)
            dens = KNNDensity(k=args.k, search=search, recall=args.recall, seed=args.seed)
            if dev.type == "cuda":
                dens(xt[:2048])  # warm-up
                torch.cuda.synchronize()

            def call():
                from densecore.density.knn import _knn_mean_distance

                out = _knn_mean_distance(xt, args.k, "auto", "euclidean", True, search,
                                         args.recall, args.seed)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                return out

            (mean, used, got), t, extra = peak_extra(call)
            mean = mean.cpu().numpy() if torch.is_tensor(mean) else np.asarray(mean)
            rel = (mean[q] - ref_mean) / np.maximum(ref_mean, 1e-30)
            recall = got if got is not None else float(np.mean(np.abs(rel) < 1e-6))
            rows.append({"device": args.device, "n": n, "distinct": distinct,
                         "dim": args.dim, "k": args.k,
                         "search": used, "time_s": t, "recall": recall,
                         "mean_rel_err": float(rel.mean()), "extra_gb": extra / 1e9,
                         "features_gb": x.nbytes / 1e9, "load": os.getloadavg()[0]})
            print(f"{args.device} n={n} {used}: {t:.2f} s recall {recall:.3f} "
                  f"rel err {rel.mean():.2e} extra {extra / 1e9:.3f} GB", flush=True)
            del xt
            if args.json:  # after every row: a long last row loses nothing
                emit("knn", rows, COLUMNS, args.json,
                     config={"dim": args.dim, "k": args.k,
                             "recall_queries": args.recall_queries,
                             "recall_target": args.recall, "duplicates": args.duplicates})
    emit("knn", rows, COLUMNS, args.json,
         config={"dim": args.dim, "k": args.k, "recall_queries": args.recall_queries,
                 "recall_target": args.recall, "duplicates": args.duplicates})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
