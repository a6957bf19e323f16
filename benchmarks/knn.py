"""k-NN density at scale: time, recall@k and peak memory of ``knn_mean_distance``.

Features: ``densecore.bench.speed.make_problem`` (a 16-component Gaussian
mixture, float32). Each row is one search of every point's ``k`` nearest
neighbours (the point itself excluded). Recall@k is measured against an
exact brute force for ``--recall-queries`` random points (float64 distances),
so it needs no full exact run at a million points. ``rss_gb`` is the peak
resident memory of this process after the row, ``features_gb`` the size of
the features.

    python benchmarks/knn.py --n 50000 200000 --json OUT/knn.json
    python benchmarks/knn.py --device cuda --n 200000 1000000
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch
from _common import base_parser, emit

from densecore.density.knn import knn_mean_distance
from densecore.bench.speed import make_problem

COLUMNS = ["device", "n", "dim", "k", "search", "time_s", "recall", "mean_rel_err",
           "rss_gb", "features_gb"]


def exact_neighbours(x: torch.Tensor, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest other points of ``x[rows]``: (indices, mean distance), float64."""
    idx, mean = [], []
    xd = x.double()
    for r in rows:
        d = ((xd - xd[int(r)]) ** 2).sum(1)
        d[int(r)] = float("inf")
        v, i = torch.topk(d, k, largest=False)
        idx.append(i.cpu().numpy())
        mean.append(float(v.sqrt().mean()))
    return np.stack(idx), np.array(mean)


def _peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=None,
                   help="sizes (default 50000 200000; quick 20000)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--recall-queries", type=int, default=200)
    args = p.parse_args(argv)
    sizes = args.n or ([20_000] if args.quick else [50_000, 200_000])
    dev = torch.device(args.device)
    rows = []
    for n in sizes:
        x, _ = make_problem(n, args.dim, args.seed)
        q = np.random.default_rng(args.seed).choice(n, min(n, args.recall_queries),
                                                    replace=False)
        xt = torch.from_numpy(x).to(dev)
        ref_idx, ref_mean = exact_neighbours(xt, q, args.k)
        if dev.type == "cuda":
            knn_mean_distance(xt[:2048], args.k)  # warm-up
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        mean = knn_mean_distance(xt, args.k)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter() - t0
        mean = mean.cpu().numpy() if torch.is_tensor(mean) else np.asarray(mean)
        rel = np.abs(mean[q] - ref_mean) / np.maximum(ref_mean, 1e-30)
        rows.append({"device": args.device, "n": n, "dim": args.dim, "k": args.k,
                     "search": "exact", "time_s": t,
                     # exact search: recall is 1 unless the answer is wrong
                     "recall": float(np.mean(rel < 1e-6)),
                     "mean_rel_err": float(rel.mean()), "rss_gb": _peak_rss_gb(),
                     "features_gb": x.nbytes / 1e9})
        print(f"{args.device} n={n}: {t:.2f} s", flush=True)
    emit("knn", rows, COLUMNS, args.json,
         config={"dim": args.dim, "k": args.k, "recall_queries": args.recall_queries})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
